//! Name → key bindings kept across a restart, and the reservations they
//! give.
//!
//! Without them, the first client to sign in after a restart could take any
//! name, and its real owner would be locked out for as long as the taker
//! stays. So the server hands out its bindings as bytes (the binary writes
//! them to a small file whenever they change) and, after a restart, reserves
//! each name for its last key for a grace period: its owner signs in again
//! at once, anyone else is refused `name in use` until the grace ends. This
//! was chosen over "clients re-register with priority" because it needs no
//! trust in who comes back first, and works however slowly the owner notices
//! the restart.
//!
//! The format is text, one binding a line: 64 hex digits of the key, a
//! space, the name. Bad bytes restore nothing and say which line is wrong.

use std::collections::HashMap;
use std::time::Instant;

use thiserror::Error;

use crate::crypto::KEY_LEN;
use crate::name::{self, NameKey};

/// Why saved bindings could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BindingsError {
    /// A line is not `HEXKEY NAME`.
    #[error("line {line}: {reason}")]
    BadLine {
        /// The line, counting from 1.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// More bindings than the server takes users.
    #[error("more than {0} bindings")]
    TooMany(usize),
}

/// Names reserved for their last key until a deadline.
#[derive(Debug, Default)]
pub(crate) struct Reservations {
    by_name: HashMap<NameKey, ([u8; KEY_LEN], Box<str>)>,
    until: Option<Instant>,
}

impl Reservations {
    /// Reserves each `(name, key)` until `until`.
    pub(crate) fn new(bindings: Vec<(String, [u8; KEY_LEN])>, until: Instant) -> Self {
        let by_name = bindings
            .into_iter()
            .map(|(name, key)| (NameKey::new(&name), (key, name.into_boxed_str())))
            .collect();
        Reservations {
            by_name,
            until: Some(until),
        }
    }

    /// The reserved spelling, when `name` is reserved for a key other than `key`.
    pub(crate) fn other_owner(&self, name: &str, key: &[u8; KEY_LEN]) -> Option<&str> {
        if self.by_name.is_empty() {
            return None;
        }
        let (owner, spelling) = NameKey::with_str(name, |k| self.by_name.get(k))?;
        (owner != key).then_some(&**spelling)
    }

    /// When the reservations end, while any are held.
    pub(crate) fn until(&self) -> Option<Instant> {
        self.until.filter(|_| !self.by_name.is_empty())
    }

    /// Drops everything once the grace is over.
    pub(crate) fn expire(&mut self, now: Instant) {
        if self.until.is_some_and(|u| u <= now) {
            *self = Reservations::default();
        }
    }
}

/// The bindings of `users`, and of the reservations still held (so a second
/// restart within the grace loses nothing), one a line.
pub(crate) fn encode<'a>(
    users: impl IntoIterator<Item = (&'a str, &'a [u8; KEY_LEN])>,
    reservations: &'a Reservations,
) -> Vec<u8> {
    let mut out = String::new();
    let mut seen = std::collections::HashSet::new();
    let reserved = reservations.by_name.values().map(|(k, n)| (&**n, k));
    for (name, key) in users.into_iter().chain(reserved) {
        if !seen.insert(NameKey::new(name)) {
            continue; // Signed in, and still reserved: once is enough.
        }
        for byte in key {
            out.push_str(&format!("{byte:02x}"));
        }
        out.push(' ');
        out.push_str(name);
        out.push('\n');
    }
    out.into_bytes()
}

/// Reads what [`encode`] wrote; at most `max` bindings.
pub(crate) fn decode(
    bytes: &[u8],
    max: usize,
) -> Result<Vec<(String, [u8; KEY_LEN])>, BindingsError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        BindingsError::BadLine {
            line,
            reason: "not UTF-8",
        }
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |reason| BindingsError::BadLine {
            line: i + 1,
            reason,
        };
        if line.is_empty() {
            continue;
        }
        if out.len() == max {
            return Err(BindingsError::TooMany(max));
        }
        let (hex, name) = line.split_once(' ').ok_or(bad("no space after the key"))?;
        let mut key = [0u8; KEY_LEN];
        if hex.len() != 2 * KEY_LEN || !hex.is_ascii() {
            return Err(bad("the key is not 64 hex digits"));
        }
        for (k, pair) in key.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad("the key is not hex"))?;
            *k = u8::from_str_radix(pair, 16).map_err(|_| bad("the key is not hex"))?;
        }
        name::validate(name).map_err(|_| bad("not a valid name"))?;
        out.push((name.to_owned(), key));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bindings_round_trip_and_reserve_until_the_deadline() {
        let now = Instant::now();
        let users = [("Alice", &[1u8; 32]), ("Zoë", &[2u8; 32])];
        let bytes = encode(users, &Reservations::default());
        let parsed = decode(&bytes, 10).unwrap();
        assert_eq!(parsed.len(), 2);
        let r = Reservations::new(parsed, now + Duration::from_secs(120));
        assert_eq!(r.other_owner("alice", &[1; 32]), None, "its own key");
        assert_eq!(r.other_owner("ALICE", &[9; 32]), Some("Alice"));
        assert_eq!(
            r.other_owner("Аlice", &[9; 32]),
            Some("Alice"),
            "Cyrillic А"
        );
        assert_eq!(r.other_owner("Bob", &[9; 32]), None);
        assert_eq!(r.until(), Some(now + Duration::from_secs(120)));
        // A second restart within the grace keeps what is still reserved.
        let again = decode(&encode([("Bob", &[3u8; 32])], &r), 10).unwrap();
        assert_eq!(again.len(), 3);
        let mut r = r;
        r.expire(now + Duration::from_secs(119));
        assert!(r.other_owner("alice", &[9; 32]).is_some());
        r.expire(now + Duration::from_secs(120));
        assert_eq!(r.other_owner("alice", &[9; 32]), None);
        assert_eq!(r.until(), None);
    }

    #[test]
    fn bad_bindings_say_which_line() {
        let key = "ab".repeat(32);
        let cases: [(String, usize); 5] = [
            (format!("{key} Alice\nnospace\n"), 2),
            (format!("{} Alice\n", &key[..62]), 1),
            (format!("{}zz Alice\n", &key[..62]), 1),
            (format!("{key} \u{200b}Alice\n"), 1),
            (format!("\n{key} Al\u{0}ice\n"), 2),
        ];
        for (text, line) in cases {
            let err = decode(text.as_bytes(), 10).unwrap_err();
            assert!(
                matches!(err, BindingsError::BadLine { line: l, .. } if l == line),
                "{text:?}: {err}"
            );
        }
        assert!(matches!(
            decode(b"\xff\n", 10),
            Err(BindingsError::BadLine { line: 1, .. })
        ));
        let two = format!("{key} A\n{key} B\n");
        assert_eq!(decode(two.as_bytes(), 1), Err(BindingsError::TooMany(1)));
    }
}
