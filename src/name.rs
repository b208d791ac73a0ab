//! User names: what is allowed, and when two names are the same.
//!
//! A name is 1 to [`MAX_NAME_CHARS`] characters in Unicode normal form C
//! (NFC), none of them
//!
//! * a control character, whitespace, `,`, `:` or `>` (those would break the
//!   output lines `Signed In Users: A, B` and `<From IP:PORT:NAME>`), or
//! * an invisible character: a `Default_Ignorable_Code_Point` (zero-width
//!   spaces and joiners, bidi controls, the soft hyphen, Hangul fillers,
//!   variation selectors, tag characters, ...) or another character that
//!   shows as nothing ([`is_invisible`]). `Alice` followed by U+200B would
//!   otherwise be a second `Alice` on every screen.
//!
//! **NFC.** The wire carries names in NFC only, so one name has one spelling
//! in bytes: the server refuses any other as invalid
//! ([`NameError::NotNfc`]). A client normalises what its user typed
//! ([`normalize`]) before signing in or sending, so `Zoë` typed as `e` plus a
//! combining diaeresis works. [`MAX_NAME_CHARS`] counts characters after NFC.
//!
//! **The same name.** Two names are the same name when they look alike:
//! [`same`] says so when either
//!
//! * their [`NameKey`]s are equal: the UTS #39 confusable skeleton of the
//!   lower-cased name, lower-cased again. This ignores case (`Alice`, `aLICE`)
//!   and catches look-alikes from other scripts (`Аlice` with a Cyrillic А,
//!   `B0b` with a zero), or
//! * their [`Shape`]s are equal: the plain UTS #39 skeleton, which keeps case.
//!   This catches `AIice` with a capital I, which the skeleton maps to `l`;
//!   lower-casing first would have turned it into an `i` and missed it.
//!
//! No single key can do both without making `i` and `l` the same letter
//! everywhere (`AIice` is `aiice` by case and `Alice` by shape), so the
//! server indexes signed-in names by both. Lookups go by [`NameKey`] alone:
//! `AIice` is not found while `Alice` is signed in, and cannot sign in then.
//!
//! The server computes the keys where a name enters (a sign-in, a lookup) and
//! again when it leaves, rather than keep them in every session. ASCII names
//! take a fast path: a lookup ([`NameKey::with_str`]) allocates nothing, a
//! sign-in only the keys it files.

use std::borrow::{Borrow, Cow};
use std::fmt;

use thiserror::Error;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// The most characters (Unicode scalar values, after NFC) in a name.
pub const MAX_NAME_CHARS: usize = 32;

/// Why a string is not a valid name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("a name cannot be empty")]
    Empty,
    /// The name has more than [`MAX_NAME_CHARS`] characters.
    #[error("a name has at most {MAX_NAME_CHARS} characters, this one has {0}")]
    TooLong(usize),
    /// The name holds a character names may not hold.
    #[error("a name cannot contain {0:?} (no spaces, control characters, ',', ':' or '>')")]
    BadChar(char),
    /// The name holds a character that shows as nothing.
    #[error("a name cannot contain U+{:04X} (an invisible character)", u32::from(*.0))]
    Invisible(char),
    /// The name is not in Unicode normal form C ([`normalize`] puts it there).
    #[error("a name must be in Unicode normal form C (NFC)")]
    NotNfc,
}

/// `Default_Ignorable_Code_Point` (Unicode 16 `DerivedCoreProperties.txt`;
/// the set UTS #39 drops from skeletons), then other characters that show as
/// nothing: the interlinear annotation controls and the blank Braille
/// pattern. Sorted, not overlapping.
const INVISIBLE: &[(char, char)] = &[
    ('\u{ad}', '\u{ad}'),
    ('\u{34f}', '\u{34f}'),
    ('\u{61c}', '\u{61c}'),
    ('\u{115f}', '\u{1160}'),
    ('\u{17b4}', '\u{17b5}'),
    ('\u{180b}', '\u{180f}'),
    ('\u{200b}', '\u{200f}'),
    ('\u{202a}', '\u{202e}'),
    ('\u{2060}', '\u{206f}'),
    ('\u{2800}', '\u{2800}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{fe00}', '\u{fe0f}'),
    ('\u{feff}', '\u{feff}'),
    ('\u{ffa0}', '\u{ffa0}'),
    ('\u{fff0}', '\u{fffb}'),
    ('\u{1bca0}', '\u{1bca3}'),
    ('\u{1d173}', '\u{1d17a}'),
    ('\u{e0000}', '\u{e0fff}'),
];

/// Whether `c` shows as nothing: a default-ignorable code point (U+200B,
/// U+200D, U+FEFF, bidi controls, variation selectors, tags, Hangul
/// fillers, ...) or another invisible formatting character.
pub fn is_invisible(c: char) -> bool {
    if c < '\u{ad}' {
        return false;
    }
    INVISIBLE
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Checks `name` against the naming rules. `name` must already be in NFC
/// (see [`normalize`]); the length is counted in characters.
pub fn validate(name: &str) -> Result<(), NameError> {
    let mut count = 0;
    for c in name.chars() {
        if c.is_control() || c.is_whitespace() || matches!(c, ',' | ':' | '>') {
            return Err(NameError::BadChar(c));
        }
        if is_invisible(c) {
            return Err(NameError::Invisible(c));
        }
        count += 1;
    }
    match count {
        0 => return Err(NameError::Empty),
        n if n > MAX_NAME_CHARS => return Err(NameError::TooLong(n)),
        _ => {}
    }
    if name.is_ascii() {
        return Ok(());
    }
    match is_nfc_quick(name.chars()) {
        IsNormalized::Yes => Ok(()),
        IsNormalized::No => Err(NameError::NotNfc),
        IsNormalized::Maybe if name.chars().eq(name.chars().nfc()) => Ok(()),
        IsNormalized::Maybe => Err(NameError::NotNfc),
    }
}

/// `name` in Unicode normal form C, borrowed when it already is. A client
/// passes what its user typed through this before [`validate`].
pub fn normalize(name: &str) -> Cow<'_, str> {
    if name.is_ascii() || is_nfc_quick(name.chars()) == IsNormalized::Yes {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.nfc().collect())
    }
}

/// What the ASCII character `b` becomes in a UTS #39 skeleton (the
/// `confusables.txt` prototypes of the ASCII range), or `None` when it stays
/// itself. The unit tests check this against `unicode-security`.
const fn ascii_prototype(b: u8) -> Option<&'static str> {
    Some(match b {
        b'"' => "''",
        b'%' => "\u{b0}/\u{2080}",
        b'0' => "O",
        b'1' | b'I' | b'|' => "l",
        b'`' => "'",
        b'm' => "rn",
        _ => return None,
    })
}

/// Each ASCII byte's one-byte key (lower-cased, its prototype, lower-cased),
/// or 0 where the key has more than one byte (`m` is `rn`) or is NUL.
const ASCII_KEY: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut b: u8 = 0;
    while b < 128 {
        let lower = b.to_ascii_lowercase();
        table[b as usize] = match ascii_prototype(lower) {
            None => lower,
            Some(p) if p.len() == 1 => p.as_bytes()[0].to_ascii_lowercase(),
            Some(_) => 0,
        };
        b += 1;
    }
    table
};

/// The skeleton of an ASCII string, lower-cased first and after when `fold`.
/// One allocation of the exact size, so boxing it does not reallocate.
fn ascii_skeleton(name: &str, fold: bool) -> String {
    let len = name
        .bytes()
        .map(|b| {
            let b = if fold { b.to_ascii_lowercase() } else { b };
            ascii_prototype(b).map_or(1, str::len)
        })
        .sum();
    let mut out = String::with_capacity(len);
    for &b in name.as_bytes() {
        let b = if fold { b.to_ascii_lowercase() } else { b };
        match ascii_prototype(b) {
            Some(p) if fold => out.extend(p.chars().map(|c| c.to_ascii_lowercase())),
            Some(p) => out.push_str(p),
            None => out.push(char::from(b)),
        }
    }
    out
}

fn skeleton(s: &str) -> String {
    unicode_security::skeleton(s).collect()
}

/// The key the directory files a name under: equal for names that differ in
/// case or only in characters that look alike (UTS #39 confusables), so
/// `Alice`, `aLICE`, `Аlice` (Cyrillic А) and `A1ice` share one key. Computed
/// once where a name comes in; any string has one, valid name or not.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NameKey(Box<str>);

impl NameKey {
    /// The key of `name`: its skeleton, case-insensitively.
    pub fn new(name: &str) -> NameKey {
        if name.is_ascii() {
            return NameKey(ascii_skeleton(name, true).into_boxed_str());
        }
        // Lower-case before the skeleton (case is ignored) and after
        // (prototypes may be capitals: `0` is `O`), until nothing changes,
        // so a key is its own key.
        let mut key = name.to_lowercase();
        for _ in 0..4 {
            let next = skeleton(&key).to_lowercase();
            if next == key {
                break;
            }
            key = next;
        }
        NameKey(key.into_boxed_str())
    }

    /// Calls `f` with the key of `name` as a string, the key a map of
    /// `NameKey`s can be searched by (a `NameKey` borrows as its string).
    /// An ASCII name of up to 32 characters allocates nothing: this is the
    /// path of a directory lookup.
    pub fn with_str<R>(name: &str, f: impl FnOnce(&str) -> R) -> R {
        // The longest prototype of an ASCII character has 6 bytes.
        let mut buf = [0u8; 6 * MAX_NAME_CHARS];
        if name.is_ascii() && name.len() <= MAX_NAME_CHARS {
            let mut len = 0;
            for b in name.bytes() {
                let one_byte = ASCII_KEY.get(usize::from(b)).copied().unwrap_or(0);
                if one_byte != 0
                    && let Some(slot) = buf.get_mut(len)
                {
                    *slot = one_byte;
                    len += 1;
                    continue;
                }
                let b = b.to_ascii_lowercase();
                let (part, one);
                match ascii_prototype(b) {
                    Some(p) => part = p.as_bytes(),
                    None => {
                        one = [b];
                        part = &one;
                    }
                }
                let Some(slot) = buf.get_mut(len..len + part.len()) else {
                    return f(NameKey::new(name).as_str());
                };
                for (to, from) in slot.iter_mut().zip(part) {
                    *to = from.to_ascii_lowercase();
                }
                len += part.len();
            }
            // ASCII and whole prototypes: always UTF-8.
            if let Ok(key) = std::str::from_utf8(&buf[..len]) {
                return f(key);
            }
        }
        f(NameKey::new(name).as_str())
    }

    /// The key as a string, for ordering and hashing; not for display.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// So a map keyed by `NameKey` can be searched with [`NameKey::with_str`]
/// without allocating a key; the order is the string's.
impl Borrow<str> for NameKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NameKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NameKey({:?})", &*self.0)
    }
}

/// The plain UTS #39 skeleton of a name, case kept: equal for `AIice` (capital
/// I) and `Alice`, which their [`NameKey`]s tell apart. See the module docs.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shape(Box<str>);

impl Shape {
    /// The shape of `name`.
    pub fn new(name: &str) -> Shape {
        if name.is_ascii() {
            return Shape(ascii_skeleton(name, false).into_boxed_str());
        }
        Shape(skeleton(name).into_boxed_str())
    }

    /// The shape as a string; not for display.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Shape({:?})", &*self.0)
    }
}

/// [`NameKey::new`] as a string, for callers that key their own maps by name.
pub fn fold(name: &str) -> String {
    NameKey::new(name).0.into_string()
}

/// Whether two names are the same name: equal [`NameKey`]s (case and
/// look-alike characters ignored) or equal [`Shape`]s (`AIice` and `Alice`).
pub fn same(a: &str, b: &str) -> bool {
    a == b || NameKey::new(a) == NameKey::new(b) || Shape::new(a) == Shape::new(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_names() {
        let long = "x".repeat(32);
        let names = [
            "Alice", "bob_2", "Zoë", "a", &long, "名前", "山田", "a-b", "Ünal", "Ωmega",
        ];
        for name in names {
            assert_eq!(validate(name), Ok(()), "{name}");
            assert_eq!(normalize(name), name, "{name}");
        }
    }

    #[test]
    fn rejects_breaking_characters() {
        assert_eq!(validate(""), Err(NameError::Empty));
        assert_eq!(validate(&"x".repeat(33)), Err(NameError::TooLong(33)));
        assert_eq!(validate("a b"), Err(NameError::BadChar(' ')));
        assert_eq!(validate("a,b"), Err(NameError::BadChar(',')));
        assert_eq!(validate("a:b"), Err(NameError::BadChar(':')));
        assert_eq!(validate("a>b"), Err(NameError::BadChar('>')));
        assert_eq!(validate("a\u{1b}[2J"), Err(NameError::BadChar('\u{1b}')));
        assert_eq!(validate("a\u{85}"), Err(NameError::BadChar('\u{85}')));
    }

    #[test]
    fn rejects_invisible_characters_and_says_which() {
        let invisible = [
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{2060}',
            '\u{2061}',
            '\u{2062}',
            '\u{2063}',
            '\u{2064}',
            '\u{feff}',
            '\u{ad}',
            '\u{34f}',
            '\u{115f}',
            '\u{1160}',
            '\u{3164}',
            '\u{ffa0}',
            '\u{fe00}',
            '\u{fe0f}',
            '\u{e0100}',
            '\u{e0001}',
            '\u{e0041}',
            '\u{e007f}',
            '\u{202a}',
            '\u{202e}',
            '\u{2066}',
            '\u{2069}',
            '\u{61c}',
            '\u{180e}',
            '\u{17b4}',
            '\u{fff9}',
            '\u{2800}',
        ];
        for c in invisible {
            for name in [
                format!("Alice{c}"),
                format!("{c}Alice"),
                format!("Al{c}ice"),
            ] {
                assert_eq!(validate(&name), Err(NameError::Invisible(c)), "{name:?}");
            }
        }
        assert_eq!(
            NameError::Invisible('\u{200b}').to_string(),
            "a name cannot contain U+200B (an invisible character)"
        );
        assert_eq!(
            NameError::Invisible('\u{e0041}').to_string(),
            "a name cannot contain U+E0041 (an invisible character)"
        );
    }

    /// Our table covers every character `unicode-security` treats as
    /// default-ignorable (it drops them from skeletons): a newer data set
    /// with more of them fails here rather than letting them through.
    #[test]
    fn invisible_table_covers_what_the_skeleton_ignores() {
        assert!(INVISIBLE.windows(2).all(|w| w[0].1 < w[1].0));
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let mut buf = [0; 4];
            if unicode_security::skeleton(c.encode_utf8(&mut buf))
                .next()
                .is_none()
            {
                assert!(is_invisible(c), "U+{:04X}", u32::from(c));
            }
        }
        for &(lo, hi) in INVISIBLE {
            assert!(is_invisible(lo) && is_invisible(hi));
        }
        assert!(!is_invisible('a') && !is_invisible('\u{ac}') && !is_invisible('\u{ae}'));
    }

    #[test]
    fn nfc_only_on_the_wire_and_normalize_gets_there() {
        let decomposed = "Zoe\u{308}";
        assert_eq!(validate(decomposed), Err(NameError::NotNfc));
        assert_eq!(normalize(decomposed), "Zoë");
        assert_eq!(validate(&normalize(decomposed)), Ok(()));
        // Hangul jamo compose to one syllable.
        assert_eq!(normalize("\u{1100}\u{1161}"), "\u{ac00}");
        // The limit counts characters after NFC: 32 decomposed é (64 chars)
        // are 32 composed ones.
        let long = "e\u{301}".repeat(32);
        assert_eq!(validate(&normalize(&long)), Ok(()));
        let too_long = "e\u{301}".repeat(33);
        assert_eq!(validate(&normalize(&too_long)), Err(NameError::TooLong(33)));
        // Singletons NFC replaces: the Kelvin and Ohm signs.
        assert_eq!(validate("\u{212a}elvin"), Err(NameError::NotNfc));
        assert_eq!(normalize("\u{2126}"), "\u{3a9}");
    }

    #[test]
    fn look_alikes_are_the_same_name() {
        assert!(same("Alice", "aLICE"));
        assert!(same("Alice", "ALICE"));
        assert!(same("ZOË", "zoë"));
        assert!(same("Alice", "\u{410}lice"), "Cyrillic А");
        assert!(same("Alice", "Al\u{456}ce"), "Cyrillic і");
        assert!(same("Alice", "AIice"), "capital I by shape");
        assert!(same("Alice", "A1ice"));
        assert!(same("Alice", "A|ice"));
        assert!(same("Bob", "B0b"));
        assert!(same("Bob", "b0B"));
        assert!(same("Amy", "Arny"));
        assert!(same("Zoë", "Zoe\u{308}"), "NFC and NFD");
        assert_eq!(NameKey::new("Alice"), NameKey::new("\u{410}LICE"));
        assert_eq!(NameKey::new("Alice"), NameKey::new("aLICE"));
        assert_eq!(Shape::new("Alice"), Shape::new("AIice"));
        // AIice differs by key (it is `aiice` ignoring case) and matches by shape.
        assert_ne!(NameKey::new("Alice"), NameKey::new("AIice"));
        assert_eq!(fold("Alice"), fold("ALICE"));
    }

    #[test]
    fn different_names_stay_different() {
        assert!(!same("Alice", "Alicia"));
        assert!(!same("Alice", "Bob"));
        assert!(!same("山田", "名前"));
        assert!(!same("Zoë", "Zoe"));
        assert!(!same("a", "b"));
        assert!(!same("a-b", "a_b"));
        assert!(!same("alice", "aiice"), "a lower-case i has its dot");
    }

    /// The ASCII fast path gives what the general path gives, for every
    /// ASCII character alone and in a name.
    #[test]
    fn ascii_fast_path_matches_unicode_security() {
        for b in 0..0x80u8 {
            let s = char::from(b).to_string();
            assert_eq!(ascii_skeleton(&s, false), skeleton(&s), "{s:?}");
            let slow = skeleton(&s.to_lowercase()).to_lowercase();
            assert_eq!(ascii_skeleton(&s, true), slow, "{s:?}");
        }
        // Past the stack buffer (32 `%` are 192 bytes of key), and non-ASCII.
        for s in ["%".repeat(32), "Mm%1I0".repeat(6), "\u{410}lice".into()] {
            let key = NameKey::new(&s);
            assert_eq!(NameKey::with_str(&s, str::to_owned), key.as_str(), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_keys_are_their_own_keys(s in any::<String>()) {
            let _ = validate(&s);
            let n = normalize(&s);
            prop_assert_eq!(normalize(&n), n.clone());
            let key = NameKey::new(&s);
            prop_assert_eq!(NameKey::new(key.as_str()), key.clone());
            prop_assert_eq!(NameKey::new(&n), key.clone());
            prop_assert_eq!(NameKey::with_str(&s, str::to_owned), key.as_str());
            let shape = Shape::new(&s);
            prop_assert_eq!(Shape::new(shape.as_str()), shape);
            prop_assert!(same(&s, &s));
        }

        #[test]
        fn ascii_names_take_the_same_key_either_way(s in "[ -~]{0,40}") {
            let slow_key = {
                let mut k = s.to_lowercase();
                loop {
                    let next = skeleton(&k).to_lowercase();
                    if next == k { break k; }
                    k = next;
                }
            };
            prop_assert_eq!(NameKey::new(&s).as_str().to_owned(), slow_key.clone());
            prop_assert_eq!(NameKey::with_str(&s, str::to_owned), slow_key);
            prop_assert_eq!(Shape::new(&s).as_str().to_owned(), skeleton(&s));
        }

        #[test]
        fn valid_names_stay_valid_after_normalize(s in "\\PC{1,32}") {
            if validate(&s).is_ok() {
                prop_assert_eq!(normalize(&s), s.as_str());
            }
        }
    }
}
