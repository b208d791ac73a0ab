//! Making untrusted text safe to print at a terminal.
//!
//! Message text and names arrive from anyone. [`escape`] keeps printable text
//! as it is and shows every control character (ESC, BEL, carriage return, the
//! C1 controls, bidirectional overrides ...) as a visible `\u{..}` escape, so
//! nothing received can move the cursor, recolour the screen or retitle the
//! window.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` could change the terminal's state or hide text if printed raw.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200e}' | '\u{200f}'            // LRM, RLM
            | '\u{202a}'..='\u{202e}'          // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}'          // bidi isolates
            | '\u{2028}' | '\u{2029}'          // line and paragraph separators
            | '\u{feff}')
}

/// `text` with every unsafe character written as `\u{XX}` and backslashes
/// doubled so an escape cannot be forged; borrowed when nothing needed
/// escaping.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) || c == '\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_unsafe(c) {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(escape("Hello this is Alice."), Cow::Borrowed(_)));
        assert_eq!(escape("Zoë 名前 🎉"), "Zoë 名前 🎉");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("\u{1b}[2Jboom"), "\\u{1b}[2Jboom");
        assert_eq!(escape("a\rb\nc\u{7}"), "a\\u{d}b\\u{a}c\\u{7}");
        assert_eq!(escape("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(escape("abc\u{202e}def"), "abc\\u{202e}def");
    }

    #[test]
    fn backslashes_cannot_forge_escapes() {
        assert_eq!(escape("\\u{1b}"), "\\\\u{1b}");
    }
}
