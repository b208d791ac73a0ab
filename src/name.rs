//! User names: what is allowed, and when two names are the same.
//!
//! A name is 1 to [`MAX_NAME_CHARS`] characters, none of them a control
//! character, whitespace, `,`, `:` or `>` (those would break the output lines
//! `Signed In Users: A, B` and `<From IP:PORT:NAME>`). Names that differ only
//! in case are the same name: [`fold`] gives the key both compare by.

use thiserror::Error;

/// The most characters (Unicode scalar values) in a name.
pub const MAX_NAME_CHARS: usize = 32;

/// Why a string is not a valid name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
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
}

/// Checks `name` against the naming rules.
pub fn validate(name: &str) -> Result<(), NameError> {
    let mut count = 0;
    for c in name.chars() {
        if c.is_control() || c.is_whitespace() || matches!(c, ',' | ':' | '>') {
            return Err(NameError::BadChar(c));
        }
        count += 1;
    }
    match count {
        0 => Err(NameError::Empty),
        n if n > MAX_NAME_CHARS => Err(NameError::TooLong(n)),
        _ => Ok(()),
    }
}

/// The case-folded key two names compare by: `fold("Alice") == fold("aLICE")`.
pub fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// Whether two names are the same name, ignoring case.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.eq_ignore_ascii_case(b) || fold(a) == fold(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["Alice", "bob_2", "Zoë", "a", &"x".repeat(32), "名前"] {
            assert_eq!(validate(name), Ok(()), "{name}");
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
    fn case_insensitive() {
        assert!(same("Alice", "aLICE"));
        assert!(same("ZOË", "zoë"));
        assert!(!same("Alice", "Alicia"));
        assert_eq!(fold("Alice"), fold("ALICE"));
    }
}
