//! The client's user interface, without any I/O: command parsing, the output
//! lines of DESIGN.md's contract, tab completion, and the prompt bookkeeping
//! of piped mode. `ChatClient.rs` does the reading and writing.
//!
//! Every output line is `<– ` (U+2013 EN DASH, then a space) followed by the
//! text; with colour the marker is dimmed and names are bold, but the
//! characters of the text are the same. Untrusted text (names, messages) is
//! always passed through [`escape`], so nothing received reaches the terminal
//! raw.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::SocketAddr;

use udpchat::name;
use udpchat::text::escape;

/// The marker every output line begins with.
pub const MARKER: &str = "<\u{2013} ";
/// The input prompt.
pub const PROMPT: &str = "+> ";
/// Continuation lines of a multi-line message are indented this much, the
/// width of [`MARKER`]: they line up with the text above them, and no
/// received line can begin at the left edge to pass for a `<– ` line or the
/// `+> ` prompt.
pub const CONTINUATION: &str = "   ";
/// A tab in received text is shown as this many spaces.
const TAB: &str = "    ";
/// The usage line of `send`.
pub const SEND_USAGE: &str = "Usage: send NAME TEXT";
/// The commands, for completion.
pub const COMMANDS: [&str; 7] = [
    "list",
    "send",
    "whois",
    "fingerprint",
    "help",
    "quit",
    "exit",
];
/// The usage line of `whois`.
pub const WHOIS_USAGE: &str = "Usage: whois NAME";
/// The `help` text, one output line each.
pub const HELP: [&str; 7] = [
    "Commands:",
    "  list             who else is signed in",
    "  send NAME TEXT   send TEXT (the rest of the line) to NAME",
    "  whois NAME       NAME's key fingerprint, to compare with NAME out of band",
    "  fingerprint      your key's fingerprint and the server's",
    "  help             this help",
    "  quit, exit       sign out and leave (also Ctrl-D, Ctrl-C)",
];

/// One line of user input, understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// Nothing but whitespace.
    Empty,
    /// `list`
    List,
    /// `send NAME TEXT`: TEXT is the rest of the line after the whitespace
    /// that follows NAME, its inner and trailing spaces kept.
    Send {
        /// The recipient, as typed.
        to: &'a str,
        /// The text.
        text: &'a str,
    },
    /// `send` without a name or without text.
    SendUsage,
    /// `whois NAME`
    Whois(&'a str),
    /// `whois` without a name, or with more than one word.
    WhoisUsage,
    /// `fingerprint`
    Fingerprint,
    /// `help` (or `?`)
    Help,
    /// `quit` or `exit`
    Quit,
    /// Anything else: the first word.
    Unknown(&'a str),
}

/// Splits off the first whitespace-delimited word of `s` (which should not
/// start with whitespace): (word, the rest starting at the whitespace).
fn first_word(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    }
}

/// Parses one input line (a trailing `\r` or `\n` is ignored). Command
/// words are case-insensitive.
pub fn parse(line: &str) -> Command<'_> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (word, rest) = first_word(line.trim_start());
    let is = |w: &str| word.eq_ignore_ascii_case(w);
    if word.is_empty() {
        Command::Empty
    } else if is("list") {
        Command::List
    } else if is("help") || word == "?" {
        Command::Help
    } else if is("quit") || is("exit") {
        Command::Quit
    } else if is("fingerprint") {
        Command::Fingerprint
    } else if is("whois") {
        let mut words = rest.split_whitespace();
        match (words.next(), words.next()) {
            (Some(name), None) => Command::Whois(name),
            _ => Command::WhoisUsage,
        }
    } else if is("send") {
        let (to, text) = first_word(rest.trim_start());
        let text = text.trim_start();
        if to.is_empty() || text.is_empty() {
            Command::SendUsage
        } else {
            Command::Send { to, text }
        }
    } else {
        Command::Unknown(word)
    }
}

/// How output lines look.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    /// ANSI colour (only at a terminal, and only when `NO_COLOR` is unset).
    pub colour: bool,
}

impl Style {
    /// A complete output line (without newline): the marker, `[time] ` if
    /// given, then `body`.
    pub fn line(&self, body: &str, time: Option<&str>) -> String {
        let mut out = String::with_capacity(body.len() + 24);
        if self.colour {
            out.push_str("\x1b[2m");
            out.push_str(MARKER);
            out.push_str("\x1b[0m");
        } else {
            out.push_str(MARKER);
        }
        if let Some(time) = time {
            let _ = write!(out, "[{time}] ");
        }
        out.push_str(body);
        out
    }

    /// `name`, escaped, and bold with colour.
    pub fn name(&self, name: &str) -> String {
        if self.colour {
            format!("\x1b[1m{}\x1b[0m", escape(name))
        } else {
            escape(name).into_owned()
        }
    }

    /// `Signed In Users: A, B`: every name but `me` (compared as names
    /// compare, ignoring case), in the order given. Nobody else gives
    /// `Signed In Users: ` and nothing after, as the template says.
    pub fn users(&self, me: &str, names: &[String]) -> String {
        let others: Vec<String> = names
            .iter()
            .filter(|n| !name::same(n, me))
            .map(|n| self.name(n))
            .collect();
        format!("Signed In Users: {}", others.join(", "))
    }

    /// `<From IP:PORT:NAME>: TEXT`, IP:PORT the sender's real address (IPv6
    /// in brackets).
    #[cfg(test)]
    pub fn incoming(&self, from: &str, address: SocketAddr, text: &str) -> String {
        let mut out = self.incoming_prefix(from, address);
        push_text(&mut out, text);
        out
    }

    /// `<From ADDRESS:NAME>: `, what [`Style::incoming`] puts before the
    /// text: the same for a sender's every message, so worth keeping.
    pub fn incoming_prefix(&self, from: &str, address: SocketAddr) -> String {
        format!("<From {address}:{}>: ", self.name(from))
    }

    /// `No such user: NAME`
    pub fn no_such_user(&self, to: &str) -> String {
        format!("No such user: {}", self.name(to))
    }

    /// `Message to NAME not delivered: WHY`
    pub fn not_delivered(&self, to: &str, why: &dyn std::fmt::Display) -> String {
        format!("Message to {} not delivered: {why}", self.name(to))
    }

    /// The hint for an unknown command.
    pub fn unknown(&self, word: &str) -> String {
        format!(
            "Unknown command: {} (try help; commands: list, send NAME TEXT, whois NAME, quit)",
            escape(word)
        )
    }
}

/// Received text made safe to show: each line escaped (see [`escape`]),
/// tabs as spaces, and every line after the first on a line of its own,
/// indented by [`CONTINUATION`]. `\r\n` ends a line as `\n` does.
#[cfg(test)]
pub fn display_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    push_text(&mut out, text);
    out
}

/// Appends `text` to `out` as [`display_text`] shows it.
pub fn push_text(out: &mut String, text: &str) {
    out.reserve(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(CONTINUATION);
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.contains('\t') {
            out.push_str(&escape(&line.replace('\t', TAB)));
        } else {
            out.push_str(&escape(line));
        }
    }
}

/// Tab completion: for the word ending at byte `pos` of `line`, the byte
/// offset where it starts and the candidates that replace it. The first word
/// completes to a command; the second word of `send` to a name from `names`
/// other than `me` (prefix compared ignoring case). A unique candidate ends
/// with a space, so the user can type on.
pub fn complete(line: &str, pos: usize, me: &str, names: &[String]) -> (usize, Vec<String>) {
    let before = line.get(..pos).unwrap_or(line);
    let lead = before.len() - before.trim_start().len();
    let (word, rest) = first_word(&before[lead..]);
    if rest.is_empty() {
        // Completing the command word.
        let candidates = COMMANDS
            .iter()
            .filter(|c| c.starts_with(&word.to_ascii_lowercase()))
            .map(|c| format!("{c} "))
            .collect();
        return (lead, candidates);
    }
    if !word.eq_ignore_ascii_case("send") {
        return (pos, Vec::new());
    }
    let arg = rest.trim_start();
    if arg.contains(char::is_whitespace) {
        return (pos, Vec::new()); // Past the name: free text.
    }
    let start = before.len() - arg.len();
    let prefix = name::fold(arg);
    let mut candidates: Vec<String> = names
        .iter()
        .filter(|n| !name::same(n, me) && name::fold(n).starts_with(&prefix))
        .map(|n| format!("{n} "))
        .collect();
    candidates.sort();
    candidates.dedup();
    (start, candidates)
}

/// Output for piped mode: writes whole lines so that every `<– ` line starts
/// at the beginning of a line even when a prompt is waiting on the current
/// one, and flushes after every write. At most one prompt is pending; since
/// piped input is not echoed, reading a line does not use the prompt up.
#[derive(Debug)]
pub struct PlainScreen<W: Write> {
    out: W,
    /// `+> ` is the last thing written (no newline after it).
    prompt_pending: bool,
    /// Prompts are shown (input is being read).
    prompting: bool,
}

impl<W: Write> PlainScreen<W> {
    /// A screen writing to `out`; no prompts until [`PlainScreen::start_prompting`].
    pub fn new(out: W) -> Self {
        PlainScreen {
            out,
            prompt_pending: false,
            prompting: false,
        }
    }

    /// From now on a prompt follows each output line; shows one now.
    pub fn start_prompting(&mut self) -> io::Result<()> {
        self.prompting = true;
        self.prompt()
    }

    /// No more prompts (the client is leaving).
    pub fn stop_prompting(&mut self) {
        self.prompting = false;
    }

    /// Shows the prompt unless one is already pending (or prompts are off).
    pub fn prompt(&mut self) -> io::Result<()> {
        if self.prompting && !self.prompt_pending {
            self.out.write_all(PROMPT.as_bytes())?;
            self.prompt_pending = true;
        }
        self.out.flush()
    }

    /// Writes `lines` (complete output lines, no newlines) each on a line
    /// of its own, then the prompt again.
    pub fn lines(&mut self, lines: &[String]) -> io::Result<()> {
        if self.prompt_pending {
            self.out.write_all(b"\n")?;
            self.prompt_pending = false;
        }
        for line in lines {
            self.out.write_all(line.as_bytes())?;
            self.out.write_all(b"\n")?;
        }
        self.prompt()
    }

    /// Ends the output with a newline if a prompt is pending.
    pub fn finish(&mut self) -> io::Result<()> {
        self.prompting = false;
        if self.prompt_pending {
            self.out.write_all(b"\n")?;
            self.prompt_pending = false;
        }
        self.out.flush()
    }

    /// What was written (for tests).
    #[cfg(test)]
    pub fn inner(&self) -> &W {
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_text_is_indented_and_cannot_fake_a_line() {
        let style = Style { colour: false };
        let from: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let body = style.incoming(
            "Bob",
            from,
            "first\r\nsecond\n<– Fake reply\n+> fake prompt\n",
        );
        let shown = style.line(&body, None);
        let lines: Vec<&str> = shown.split('\n').collect();
        assert_eq!(
            lines,
            [
                "<– <From 192.0.2.1:5000:Bob>: first",
                "   second",
                "   <– Fake reply",
                "   +> fake prompt",
                "   ",
            ]
        );
        for line in &lines[1..] {
            assert!(line.starts_with(CONTINUATION));
        }
    }

    #[test]
    fn tabs_become_spaces_and_other_controls_stay_escaped() {
        assert_eq!(display_text("a\tb"), "a    b");
        assert_eq!(display_text("bell\u{7}\u{1b}[2J"), "bell\\u{7}\\u{1b}[2J");
        assert_eq!(display_text("lone\rcarriage"), "lone\\u{d}carriage");
        assert_eq!(display_text("one line"), "one line");
    }

    #[test]
    fn parses_commands() {
        assert_eq!(parse(""), Command::Empty);
        assert_eq!(parse("   \r\n"), Command::Empty);
        assert_eq!(parse("list"), Command::List);
        assert_eq!(parse("  LIST  "), Command::List);
        assert_eq!(parse("help"), Command::Help);
        assert_eq!(parse("whois  Bob "), Command::Whois("Bob"));
        assert_eq!(parse("WHOIS"), Command::WhoisUsage);
        assert_eq!(parse("whois Bob Carole"), Command::WhoisUsage);
        assert_eq!(parse("fingerprint"), Command::Fingerprint);
        assert_eq!(parse("?"), Command::Help);
        assert_eq!(parse("quit"), Command::Quit);
        assert_eq!(parse("exit\n"), Command::Quit);
        assert_eq!(parse("frobnicate now"), Command::Unknown("frobnicate"));
    }

    #[test]
    fn send_keeps_the_rest_of_the_line() {
        assert_eq!(
            parse("send Carole Hello this is Alice."),
            Command::Send {
                to: "Carole",
                text: "Hello this is Alice."
            }
        );
        assert_eq!(
            parse("send\tBob   two  spaces inside, one after \r\n"),
            Command::Send {
                to: "Bob",
                text: "two  spaces inside, one after "
            }
        );
        assert_eq!(parse("send"), Command::SendUsage);
        assert_eq!(parse("send Bob"), Command::SendUsage);
        assert_eq!(parse("send Bob    "), Command::SendUsage);
    }

    #[test]
    fn contract_lines_without_colour() {
        let s = Style::default();
        let names = ["Alice", "Bob", "Carole"].map(String::from);
        assert_eq!(
            s.line(&s.users("alice", &names), None),
            "<\u{2013} Signed In Users: Bob, Carole"
        );
        assert_eq!(
            s.line(&s.users("Alice", &names[..1]), None),
            "<– Signed In Users: "
        );
        let addr: SocketAddr = "127.0.0.1:51234".parse().unwrap();
        assert_eq!(
            s.line(&s.incoming("Carole", addr, "Hi Alice! How are you"), None),
            "<– <From 127.0.0.1:51234:Carole>: Hi Alice! How are you"
        );
        let v6: SocketAddr = "[::1]:5000".parse().unwrap();
        assert_eq!(s.incoming("Bob", v6, "x"), "<From [::1]:5000:Bob>: x");
        assert_eq!(s.no_such_user("Bob"), "No such user: Bob");
        assert_eq!(
            s.not_delivered("Bob", &"no answer from the recipient"),
            "Message to Bob not delivered: no answer from the recipient"
        );
        assert_eq!(s.line("x", Some("12:34:56")), "<– [12:34:56] x");
    }

    #[test]
    fn received_text_is_escaped() {
        let s = Style { colour: true };
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let line = s.incoming("Eve\u{1b}", addr, "\u{1b}[2Jgone\rX");
        assert!(line.contains("\\u{1b}[2Jgone\\u{d}X"), "{line}");
        // The only escape characters are our own colour codes.
        assert_eq!(line.matches('\u{1b}').count(), 2, "{line:?}");
    }

    #[test]
    fn colour_keeps_the_text() {
        let plain = Style::default();
        let colour = Style { colour: true };
        let names = ["Bob", "Carole"].map(String::from);
        let strip = |s: String| {
            let mut out = String::new();
            let mut in_escape = false;
            for c in s.chars() {
                match (in_escape, c) {
                    (false, '\u{1b}') => in_escape = true,
                    (false, c) => out.push(c),
                    (true, 'm') => in_escape = false,
                    (true, _) => {}
                }
            }
            out
        };
        let body = colour.users("Alice", &names);
        assert_eq!(
            strip(colour.line(&body, None)),
            plain.line(&plain.users("Alice", &names), None)
        );
        assert!(colour.line("x", None).starts_with("\x1b[2m<– "));
    }

    #[test]
    fn completes_commands_and_names() {
        let names = ["Alice", "Bob", "bea", "Carole"].map(String::from);
        assert_eq!(
            complete("se", 2, "Alice", &names),
            (0, vec!["send ".into()])
        );
        assert_eq!(
            complete("  l", 3, "Alice", &names),
            (2, vec!["list ".into()])
        );
        assert_eq!(complete("", 0, "Alice", &names).1.len(), COMMANDS.len());
        assert_eq!(
            complete("send b", 6, "Alice", &names),
            (5, vec!["Bob ".into(), "bea ".into()])
        );
        assert_eq!(
            complete("send  Ca", 8, "Alice", &names),
            (6, vec!["Carole ".into()])
        );
        // Not yourself; nothing after the name; nothing for other commands.
        assert_eq!(
            complete("send Al", 7, "Alice", &names).1,
            Vec::<String>::new()
        );
        assert_eq!(complete("send Bob hi", 11, "Alice", &names).1.len(), 0);
        assert_eq!(complete("list B", 6, "Alice", &names).1.len(), 0);
        // A position inside a character or past the end does not panic.
        assert_eq!(complete("send é", 6, "Alice", &names).1.len(), 0);
        assert_eq!(complete("se", 99, "Alice", &names).1.len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn any_input_parses_and_completes_without_panic(line in "\\PC*", pos in 0usize..64) {
            let names = ["Bob".to_string(), "Zoë".to_string()];
            let _ = parse(&line);
            let (start, candidates) = complete(&line, pos, "Alice", &names);
            proptest::prop_assert!(start <= line.len().max(pos));
            for c in candidates {
                proptest::prop_assert!(c.ends_with(' '));
            }
        }
    }

    fn written(screen: &PlainScreen<Vec<u8>>) -> String {
        String::from_utf8(screen.inner().clone()).unwrap()
    }

    #[test]
    fn plain_screen_starts_every_line_at_the_left() {
        let mut screen = PlainScreen::new(Vec::new());
        let one = |s: &str| vec![s.to_string()];
        screen.lines(&one("<– early")).unwrap(); // before prompting: no prompt
        screen.start_prompting().unwrap();
        screen.prompt().unwrap(); // already pending: not repeated
        screen
            .lines(&one("<– Signed In Users: Bob, Carole"))
            .unwrap();
        screen
            .lines(&one("<– <From 127.0.0.1:51234:Carole>: Hi"))
            .unwrap();
        screen.lines(&["<– a".into(), "<– b".into()]).unwrap();
        screen.finish().unwrap();
        assert_eq!(
            written(&screen),
            "<– early\n+> \n<– Signed In Users: Bob, Carole\n+> \n\
             <– <From 127.0.0.1:51234:Carole>: Hi\n+> \n<– a\n<– b\n+> \n"
        );
        for line in written(&screen).lines() {
            assert!(line.starts_with("<– ") || line == "+> ", "{line:?}");
        }
    }
}
