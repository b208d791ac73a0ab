//! `ChatClient -u NAME -sip SERVER_IP -sp SERVER_PORT`: the udpchat client.
//!
//! Signs in (printing nothing until it is in; a refused or unanswered sign-in
//! prints why on standard error and exits 2), then reads commands: `list`,
//! `send NAME TEXT`, `whois NAME`, `fingerprint`, `help`, `quit`/`exit`. End
//! of input (Ctrl-D), Ctrl-C, SIGTERM and `quit` sign out, after pending
//! messages are delivered or have failed, and exit 0.
//!
//! Keys (see `udpchat::run::keystore`), in `$XDG_CONFIG_HOME/udpchat` (else
//! `~/.config/udpchat`):
//!
//! * `identity-<name>.key`: this name's secret key, made on first use
//!   (`--identity FILE` uses another file);
//! * `known_servers`: each server's key, pinned on first sign-in; a server
//!   showing another key is refused (exit 2) with its new fingerprint,
//!   unless `--accept-new-server-key` is given;
//! * `known_peers`: each peer's key, remembered at its first message; a
//!   changed key is warned about before that peer's next message.
//!
//! Two faces, one set of output lines (every one `<– ...`, see `client_ui`):
//!
//! * **At a terminal** (standard input and output both TTYs): a rustyline
//!   editor with history, emacs-style editing and tab completion of commands
//!   and signed-in names; incoming lines are printed above the input line
//!   through rustyline's external printer, so a half-typed line stays intact.
//!   Colour unless `NO_COLOR` is set.
//! * **Otherwise**: plain line reading, no escape codes; `+> ` prompts are
//!   printed too, but every `<– ` line starts at the beginning of a line.
//!
//! Threads: the main thread runs the network loop ([`udpchat::run::Driver`])
//! and owns the [`ClientState`] and all output. A reader thread (started
//! once signed in) reads lines and hands them to the loop in batches over a
//! bounded channel, waking it with a [`run::LoopHandle`]; when the loop is
//! behind, the channel is full and reading waits (back-pressure), so no line
//! is ever dropped, and lines run in the order they were typed. The reader
//! stops after `quit`. The Ctrl-C / SIGTERM handler counts the interrupt
//! and wakes the loop.
#![allow(non_snake_case)] // The binary's name is fixed by DESIGN.md.

#[path = "cli_common/mod.rs"]
mod cli_common;
#[path = "client_ui/mod.rs"]
mod ui;

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use clap::Parser;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, EditMode, Editor, ExternalPrinter, Helper};
use udpchat::client::{
    ClientConfig, ClientEvent, ClientState, CommandId, DeliveryFailure, SendError, SignInError,
};
use udpchat::crypto::PublicKey;
use udpchat::name::NameKey;
use udpchat::run::keystore::{self, KnownKeys};
use udpchat::run::{self, Driver};

use ui::{Command, PlainScreen, Style};

/// The usage line.
const USAGE: &str = "ChatClient -u NAME -sip SERVER_IP -sp SERVER_PORT [--timestamps] \
                     [--identity FILE] [--accept-new-server-key]";

/// The exit codes, for `--help`.
const EXIT_CODES: &str = "Exit codes:
  0    signed out; every command succeeded
  1    signed out; some command failed (a message not delivered, no such
       user, a list the server did not answer, an unknown command)
  2    bad arguments, or the sign-in was refused or not answered
  130  a second Ctrl-C (or SIGTERM) left at once";

/// Longest input line read in plain mode; longer ones are refused whole.
const MAX_LINE: usize = 1 << 20;

/// The udpchat client: sign in as NAME at the directory server, then chat.
///
/// Commands: list, send NAME TEXT, whois NAME, fingerprint, help, quit (or
/// Ctrl-D).
#[derive(Debug, Parser)]
#[command(name = "ChatClient", version, override_usage = USAGE, after_help = EXIT_CODES)]
struct Args {
    /// Your name: 1 to 32 characters, no spaces, control characters, ',', ':' or '>'.
    #[arg(short = 'u', value_name = "NAME", value_parser = parse_name, allow_hyphen_values = true)]
    name: String,
    /// The server's IPv4 or IPv6 address, or host name (written -sip or --sip).
    #[arg(long = "sip", value_name = "SERVER_IP")]
    server_ip: String,
    /// The server's UDP port (written -sp or --sp).
    #[arg(long = "sp", value_name = "SERVER_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    server_port: u16,
    /// Put the local time on every output line.
    #[arg(long)]
    timestamps: bool,
    /// The secret key file to sign in with [default:
    /// $XDG_CONFIG_HOME/udpchat/identity-NAME.key, made on first use].
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// The server's key differs from the one remembered for it: accept the
    /// new one (only when the server's operator confirmed it).
    #[arg(long)]
    accept_new_server_key: bool,
}

/// Where the keys live, and the peers' keys read so far.
struct Keys {
    /// `None` without a config directory: nothing is remembered.
    known_servers: Option<KnownKeys>,
    known_peers: Option<KnownKeys>,
    /// `known_peers`, read once at start and kept in step with the file.
    peers: HashMap<String, [u8; 32]>,
    /// The server's address as `known_servers` names it.
    server: String,
    /// The server key was pinned before this run.
    pinned: bool,
    /// `--accept-new-server-key` replaced a pin.
    replacing: bool,
}

impl Keys {
    /// The entry `known_peers` files a peer under: its name key in hex, so
    /// names that differ only in ways the directory ignores share one entry
    /// and every name makes a valid, unambiguous one.
    fn peer_entry(name: &str) -> String {
        NameKey::new(name)
            .as_str()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// A valid user name (see `udpchat::name`), in NFC whatever the terminal
/// sent. A name may start with `-` (`-u -dash`), but not with `--`: that is
/// an option, and `-u` was given no name.
fn parse_name(s: &str) -> Result<String, String> {
    if let Some(option) = s.strip_prefix("--") {
        return Err(format!(
            "-u needs a name; -{option} is an option (a name may not start with --)"
        ));
    }
    let name = udpchat::name::normalize(s).into_owned();
    udpchat::name::validate(&name)
        .map(|()| name)
        .map_err(|e| e.to_string())
}

/// Advice for `-sip ADDRESS:PORT`: the port goes with `-sp`.
fn port_hint(sip: &str) -> Option<String> {
    let addr: SocketAddr = sip.parse().ok()?;
    let ip = match addr.ip() {
        IpAddr::V6(ip) => format!("{ip}"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    Some(format!(
        "-sip takes the address alone; give the port with -sp: -sip {ip} -sp {}",
        addr.port()
    ))
}

/// Advice for arguments clap refused: `-u` followed by an option instead of
/// a name, or [`port_hint`].
fn args_hint(args: &[std::ffi::OsString]) -> Option<String> {
    let after_u = args
        .windows(2)
        .find(|w| w[0] == "-u")
        .and_then(|w| w[1].to_str());
    if let Some(option) = after_u.and_then(|v| v.strip_prefix("--")) {
        return Some(format!("-u needs a name; -{option} is an option"));
    }
    port_hint(&cli_common::value_of(args, "sip")?)
}

/// What the reader thread tells the loop.
#[derive(Debug)]
enum Input {
    /// Lines the user entered, in order (a batch: whatever was already
    /// buffered when the first one was read).
    Lines(Vec<String>),
    /// A line longer than [`MAX_LINE`] was skipped.
    TooLong,
    /// End of input (Ctrl-D), an unreadable terminal, or `quit`.
    End,
}

/// Batches in flight between the reader and the loop. The channel is
/// bounded: when the loop is behind, the reader blocks (back-pressure), so
/// typed and piped lines are slowed down, never dropped.
const INPUT_QUEUE: usize = 4;

/// Most lines in one batch.
const MAX_BATCH: usize = 1024;

/// Sends input to the loop and wakes it.
#[derive(Clone)]
struct ToLoop {
    tx: SyncSender<Input>,
    waker: run::LoopHandle,
    /// Ctrl-C and SIGTERM so far (not queued: a full queue must not
    /// delay them).
    interrupts: Arc<AtomicUsize>,
}

impl ToLoop {
    /// Blocks while the queue is full; false if the loop is gone.
    fn send(&self, input: Input) -> bool {
        let ok = self.tx.send(input).is_ok();
        self.waker.wake();
        ok
    }

    /// Sends `lines` (if any) and ends reading after a `quit` among them:
    /// false when the reader must stop.
    fn lines(&self, lines: &mut Vec<String>) -> bool {
        if lines.is_empty() {
            return true;
        }
        let quit = lines
            .iter()
            .position(|l| matches!(ui::parse(l), Command::Quit));
        if let Some(i) = quit {
            lines.truncate(i + 1);
        }
        if !self.send(Input::Lines(std::mem::take(lines))) {
            return false;
        }
        quit.is_none()
    }

    /// Ctrl-C or SIGTERM.
    fn interrupt(&self) {
        self.interrupts.fetch_add(1, Ordering::SeqCst);
        self.waker.wake();
    }
}

// ---- terminal mode ------------------------------------------------------

/// Tab completion of commands and of the names the client knows.
struct ChatHelper {
    me: String,
    names: Arc<Mutex<Vec<String>>>,
}

impl Completer for ChatHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(ui::complete(line, pos, &self.me, &names))
    }
}

impl Hinter for ChatHelper {
    type Hint = String;
}
impl Highlighter for ChatHelper {}
impl Validator for ChatHelper {}
impl Helper for ChatHelper {}

type ChatEditor = Editor<ChatHelper, DefaultHistory>;

/// A line editor and its external printer, if standard input and output are
/// a terminal rustyline supports.
fn terminal_editor(
    me: &str,
    names: &Arc<Mutex<Vec<String>>>,
) -> Option<(ChatEditor, Box<dyn ExternalPrinter + Send>)> {
    if !(io::stdin().is_terminal() && io::stdout().is_terminal()) {
        return None;
    }
    let config = Config::builder()
        .edit_mode(EditMode::Emacs)
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .history_ignore_dups(true)
        .ok()?
        .max_history_size(1000)
        .ok()?
        .build();
    let mut editor = ChatEditor::with_config(config).ok()?;
    editor.set_helper(Some(ChatHelper {
        me: me.to_string(),
        names: Arc::clone(names),
    }));
    let printer = editor.create_external_printer().ok()?;
    Some((editor, Box::new(printer)))
}

/// The terminal reader thread's body.
///
/// Lines typed ahead (or pasted without bracketed paste) are kept by
/// rustyline between calls (its `buffer-redux` feature; without it the
/// bytes read past the first line were dropped) and read one `readline`
/// each. A bracketed paste of several lines is one line whose text holds
/// the newlines, so it is sent as one message.
fn read_terminal(mut editor: ChatEditor, to_loop: ToLoop) {
    loop {
        match editor.readline(ui::PROMPT) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                if !to_loop.lines(&mut vec![line]) {
                    return;
                }
            }
            Err(ReadlineError::Interrupted) => {
                to_loop.interrupt();
                return;
            }
            Err(_) => {
                to_loop.send(Input::End);
                return;
            }
        }
    }
}

// ---- plain mode ---------------------------------------------------------

/// The plain reader thread's body: lines from standard input, invalid UTF-8
/// replaced, at most [`MAX_LINE`] bytes each. Lines already buffered when
/// one is read go with it in one batch (up to [`MAX_BATCH`]).
fn read_plain(to_loop: ToLoop) {
    let mut stdin = io::BufReader::with_capacity(64 * 1024, io::stdin().lock());
    let mut buf = Vec::new();
    let mut batch = Vec::new();
    loop {
        buf.clear();
        let read = (&mut stdin)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf);
        match read {
            Ok(0) | Err(_) => {
                if to_loop.lines(&mut batch) {
                    to_loop.send(Input::End);
                }
                return;
            }
            Ok(_) if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') => {
                // Skip the rest of the overlong line.
                let mut sink = Vec::new();
                loop {
                    sink.clear();
                    match (&mut stdin).take(64 * 1024).read_until(b'\n', &mut sink) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if sink.last() == Some(&b'\n') => break,
                        Ok(_) => {}
                    }
                }
                if !to_loop.lines(&mut batch) || !to_loop.send(Input::TooLong) {
                    return;
                }
            }
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                batch.push(String::from_utf8_lossy(&buf).into_owned());
                // Send when nothing more is buffered (the next read would
                // wait for the writer) or the batch is full.
                let more_buffered = stdin.buffer().contains(&b'\n');
                if (!more_buffered || batch.len() >= MAX_BATCH) && !to_loop.lines(&mut batch) {
                    return;
                }
            }
        }
    }
}

// ---- output ---------------------------------------------------------------

/// Where output lines go.
enum Screen {
    /// Through rustyline, above the input line.
    Terminal(Box<dyn ExternalPrinter + Send>),
    /// Straight to standard output.
    Plain(PlainScreen<io::BufWriter<io::Stdout>>),
}

impl Screen {
    /// Shows complete output lines, together. Output errors (a closed pipe)
    /// are ignored: the chat goes on, and end of input still signs out.
    fn lines(&mut self, lines: &[String]) {
        match self {
            Screen::Terminal(printer) => {
                let mut text = lines.join("\n");
                text.push('\n');
                if printer.print(text.clone()).is_err() {
                    let _ = io::stdout().lock().write_all(text.as_bytes());
                }
            }
            Screen::Plain(screen) => {
                let _ = screen.lines(lines);
            }
        }
    }
}

// ---- the loop -------------------------------------------------------------

/// How the client run ended.
enum Outcome {
    /// Signed out.
    Done,
    /// The sign-in was refused or unanswered.
    SignInFailed,
    /// A second Ctrl-C (or SIGTERM) while signing out.
    Forced,
}

/// What running one line did.
enum Ran {
    /// Done; go on.
    More,
    /// `quit`.
    Quit,
    /// A `send` found the client's send queue full: run it again later.
    QueueFull,
}

/// Everything the loop thread owns besides the socket.
struct App {
    client: ClientState,
    style: Style,
    timestamps: bool,
    screen: Screen,
    /// The editor, until the reader thread takes it at sign-in.
    editor: Option<ChatEditor>,
    names: Arc<Mutex<Vec<String>>>,
    to_loop: ToLoop,
    /// The reader thread was started.
    reading: bool,
    /// Interrupts acted on so far.
    interrupts_seen: usize,
    /// Lines received but not yet run, because the client's send queue is
    /// full; no more input is taken until they have run.
    held: VecDeque<String>,
    /// Lists run for tab completion only; not shown.
    silent_lists: Vec<CommandId>,
    /// The reader thread is (or may be) inside the line editor.
    editing: Arc<AtomicBool>,
    quitting: bool,
    /// Ctrl-C or SIGTERM came once; a second time leaves at once.
    interrupted: bool,
    /// Some command failed: the exit code will say so.
    failed: bool,
    keys: Keys,
    /// Lines said and not yet shown (see [`App::show`]).
    output: Vec<String>,
    /// The last sender shown, where from, and its line's prefix.
    incoming_prefix: Option<(String, SocketAddr, String)>,
    /// The last sender whose key was checked, and the key.
    key_checked: Option<(String, PublicKey)>,
}

impl App {
    /// Shows one output line with the marker (and time).
    fn say(&mut self, body: &str) {
        self.say_all(&[body]);
    }

    /// Shows output lines with the marker (and time), together.
    fn say_all(&mut self, bodies: &[&str]) {
        let time = self
            .timestamps
            .then(|| jiff::ZonedDateTime::now().strftime("%H:%M:%S").to_string());
        let lines = bodies
            .iter()
            .map(|body| self.style.line(body, time.as_deref()));
        self.output.extend(lines);
    }

    /// Says an incoming message: `<From ADDRESS:NAME>: TEXT`. The part
    /// before the text is made once for a run of messages from one sender
    /// (a burst costs one allocation a line).
    fn show_incoming(&mut self, from: &str, address: SocketAddr, text: &str) {
        let fresh = matches!(&self.incoming_prefix, Some((f, a, _)) if f == from && *a == address);
        if !fresh {
            let prefix = self.style.incoming_prefix(from, address);
            self.incoming_prefix = Some((from.to_owned(), address, prefix));
        }
        let prefix = self.incoming_prefix.as_ref().map_or("", |(_, _, p)| p);
        let time = self
            .timestamps
            .then(|| jiff::ZonedDateTime::now().strftime("%H:%M:%S").to_string());
        let mut line = self.style.line(prefix, time.as_deref());
        ui::push_text(&mut line, text);
        self.output.push(line);
    }

    /// Shows the lines said since the last call, with one write: a batch of
    /// incoming messages costs one system call, not one per line.
    fn show(&mut self) {
        if !self.output.is_empty() {
            self.screen.lines(&self.output);
            self.output.clear();
        }
    }

    /// Handles every pending event; `Some` when the run is over.
    fn events(&mut self) -> Option<Outcome> {
        let mut any = false;
        let mut outcome = None;
        while let Some(event) = self.client.poll_event() {
            any = true;
            match event {
                ClientEvent::SignedIn => {
                    let body = format!("Signed in as {}", self.style.name(self.client.name()));
                    self.say(&body);
                    self.pin_server();
                    self.signed_in();
                }
                ClientEvent::SignInFailed(why) => {
                    // (Also after a lost server, if the name was taken
                    // meanwhile.) End a pending prompt's line first.
                    self.show();
                    if let Screen::Plain(screen) = &mut self.screen {
                        let _ = screen.finish();
                    }
                    let why = match why {
                        SignInError::ServerKeyChanged { pinned, offered } => format!(
                            "the server at {} has a new key (fingerprint {}; it was {}). If the \
                             server's operator confirms the new key, run again with \
                             --accept-new-server-key.",
                            self.keys.server,
                            offered.fingerprint(),
                            pinned.fingerprint()
                        ),
                        other => other.to_string(),
                    };
                    let _ = writeln!(io::stderr().lock(), "{}Sign-in failed: {why}", ui::MARKER);
                    return Some(Outcome::SignInFailed);
                }
                ClientEvent::Reconnected => {
                    self.say("Signed in again (the server had forgotten us)");
                }
                ClientEvent::ServerLost => {
                    self.say("Lost contact with the server; still trying");
                }
                ClientEvent::UserList { id, names } => {
                    if let Some(i) = self.silent_lists.iter().position(|l| *l == id) {
                        self.silent_lists.swap_remove(i);
                    } else {
                        let body = self.style.users(self.client.name(), &names);
                        self.say(&body);
                    }
                }
                ClientEvent::ListFailed { id, reason } => {
                    if let Some(i) = self.silent_lists.iter().position(|l| *l == id) {
                        self.silent_lists.swap_remove(i);
                    } else {
                        self.failed = true;
                        self.say(&format!("List failed: {reason}"));
                    }
                }
                ClientEvent::MessageReceived {
                    from,
                    key,
                    address,
                    text,
                    ..
                } => {
                    self.check_peer_key(&from, key);
                    self.show_incoming(&from, address, &text);
                }
                ClientEvent::PeerKey { name, key, .. } => {
                    let body = match key {
                        Some(key) => {
                            let remembered = self.keys.peers.get(&Keys::peer_entry(&name));
                            let note = match remembered {
                                Some(k) if *k == key.0 => " (the key you know)",
                                Some(_) => " (NOT the key you knew: compare it with them)",
                                None => " (not talked to yet)",
                            };
                            format!(
                                "{}'s key fingerprint: {}{note}",
                                self.style.name(&name),
                                key.fingerprint()
                            )
                        }
                        None => {
                            self.failed = true;
                            self.style.no_such_user(&name)
                        }
                    };
                    self.say(&body);
                }
                ClientEvent::Delivered { .. } => {}
                ClientEvent::DeliveryFailed { to, reason, .. } => {
                    self.failed = true;
                    let body = not_delivered(&self.style, &to, reason);
                    self.say(&body);
                }
                // Counted by the library; not worth a line an attacker
                // could fill the screen with.
                ClientEvent::ForgedMessage { .. } => {}
                ClientEvent::SignedOut => outcome = Some(Outcome::Done),
                // Events newer than this program: nothing to show.
                _ => {}
            }
        }
        if any {
            *self.names.lock().unwrap_or_else(PoisonError::into_inner) = self.client.known_users();
        }
        if outcome.is_none() && self.quitting && self.client.is_closed() {
            outcome = Some(Outcome::Done);
        }
        outcome
    }

    /// After the first sign-in: pin the server's key if it was not.
    fn pin_server(&mut self) {
        if self.keys.pinned {
            return;
        }
        let Some(key) = self.client.server_key() else {
            return;
        };
        self.keys.pinned = true;
        let how = if self.keys.replacing {
            "new key accepted"
        } else {
            "first sign-in here"
        };
        let body = match &self.keys.known_servers {
            Some(file) => match file.set(&self.keys.server, &key.0) {
                Ok(()) => format!(
                    "Server key fingerprint: {} ({how}; remembered)",
                    key.fingerprint()
                ),
                Err(e) => format!(
                    "Server key fingerprint: {} ({how}; could not remember it: {e})",
                    key.fingerprint()
                ),
            },
            None => format!(
                "Server key fingerprint: {} ({how}; not remembered: no config directory)",
                key.fingerprint()
            ),
        };
        self.say(&body);
    }

    /// A message from the holder of `key`: remember the key at first, and
    /// warn when it changed since.
    fn check_peer_key(&mut self, from: &str, key: PublicKey) {
        // A burst from one sender: checked (and remembered) at its first
        // message.
        if matches!(&self.key_checked, Some((f, k)) if f == from && *k == key) {
            return;
        }
        self.key_checked = Some((from.to_owned(), key));
        let entry = Keys::peer_entry(from);
        match self.keys.peers.get(&entry) {
            Some(known) if *known == key.0 => return,
            Some(known) => {
                let body = format!(
                    "Warning: {}'s key has changed since you last talked (fingerprint {}; it \
                     was {}). Compare it with them out of band (whois {}).",
                    self.style.name(from),
                    key.fingerprint(),
                    PublicKey(*known).fingerprint(),
                    self.style.name(from),
                );
                self.say(&body);
            }
            None => {}
        }
        self.keys.peers.insert(entry.clone(), key.0);
        if let Some(file) = &self.keys.known_peers
            && let Err(e) = file.set(&entry, &key.0)
        {
            let body = format!("Could not remember {}'s key: {e}", self.style.name(from));
            self.say(&body);
        }
    }

    /// The first sign-in: start reading input.
    fn signed_in(&mut self) {
        if self.quitting || self.reading {
            return;
        }
        self.reading = true;
        let to_loop = self.to_loop.clone();
        match self.editor.take() {
            Some(editor) => {
                // Fill tab completion's names without showing the list.
                let id = self.client.list(Instant::now());
                self.silent_lists.push(id);
                self.editing.store(true, Ordering::SeqCst);
                let editing = Arc::clone(&self.editing);
                thread::spawn(move || {
                    read_terminal(editor, to_loop);
                    editing.store(false, Ordering::SeqCst);
                });
            }
            None => {
                self.show();
                if let Screen::Plain(screen) = &mut self.screen {
                    let _ = screen.start_prompting();
                }
                thread::spawn(move || read_plain(to_loop));
            }
        }
    }

    /// Handles every pending input; `Some` when the run must end at once.
    fn inputs(&mut self, inputs: &Receiver<Input>) -> Option<Outcome> {
        let interrupts = self.to_loop.interrupts.load(Ordering::SeqCst);
        if interrupts > self.interrupts_seen {
            // Already leaving (quit, end of input, or a Ctrl-C before):
            // this one leaves at once.
            let again = self.interrupted || self.quitting || interrupts - self.interrupts_seen > 1;
            self.interrupts_seen = interrupts;
            if again {
                return Some(Outcome::Forced);
            }
            self.interrupted = true;
            self.quit();
        }
        if !self.run_held() {
            // Held back: the reader waits on the full channel meanwhile.
            return None;
        }
        // Batches queued now, not those that arrive meanwhile: the
        // network gets its turn between batches.
        let mut batches = 0;
        while batches < INPUT_QUEUE {
            let Ok(input) = inputs.try_recv() else { break };
            batches += 1;
            let more = match input {
                Input::Lines(lines) => {
                    self.held.extend(lines);
                    if !self.run_held() {
                        return None;
                    }
                    !self.quitting
                }
                Input::TooLong => {
                    self.say("Line too long; ignored");
                    true
                }
                Input::End => false,
            };
            if !more {
                self.quit();
            }
            self.show();
            if more
                && !self.quitting
                && let Screen::Plain(screen) = &mut self.screen
            {
                let _ = screen.prompt();
            }
        }
        None
    }

    /// Runs held lines in order until one must wait for room in the send
    /// queue (false) or none is left (true). After `quit`, the rest are
    /// dropped: they came after it.
    fn run_held(&mut self) -> bool {
        while let Some(line) = self.held.pop_front() {
            if self.quitting {
                self.held.clear();
                break;
            }
            match self.command(&line) {
                Ran::More => {}
                Ran::Quit => self.quit(),
                Ran::QueueFull => {
                    self.held.push_front(line);
                    return false;
                }
            }
        }
        true
    }

    /// Acts on one line.
    fn command(&mut self, line: &str) -> Ran {
        let now = Instant::now();
        match ui::parse(line) {
            Command::Empty => {}
            Command::List => {
                self.client.list(now);
            }
            Command::Send { to, text } => {
                if let Err(e) = self.client.send(now, to, text) {
                    if matches!(e, SendError::QueueFull) {
                        return Ran::QueueFull;
                    }
                    self.failed = true;
                    let body = match e {
                        SendError::InvalidName(_) => self.style.no_such_user(to),
                        other => format!("Message to {} not sent: {other}", self.style.name(to)),
                    };
                    self.say(&body);
                }
            }
            Command::SendUsage => {
                self.failed = true;
                self.say(ui::SEND_USAGE);
            }
            Command::Whois(name) => {
                if self.client.whois(now, name).is_err() {
                    self.failed = true;
                    let body = self.style.no_such_user(name);
                    self.say(&body);
                }
            }
            Command::WhoisUsage => {
                self.failed = true;
                self.say(ui::WHOIS_USAGE);
            }
            Command::Fingerprint => {
                let mine = self.client.public_key().fingerprint();
                let server = self.client.server_key().map_or_else(
                    || "unknown yet".to_string(),
                    |k| k.fingerprint().to_string(),
                );
                self.say_all(&[
                    &format!("Your key fingerprint: {mine}"),
                    &format!("The server's: {server}"),
                ]);
            }
            Command::Help => self.say_all(&ui::HELP),
            Command::Quit => return Ran::Quit,
            Command::Unknown(word) => {
                self.failed = true;
                let body = self.style.unknown(word);
                self.say(&body);
            }
        }
        Ran::More
    }

    /// Starts signing out (once); the loop runs on until `SignedOut`.
    fn quit(&mut self) {
        if !self.quitting {
            self.quitting = true;
            self.show();
            if let Screen::Plain(screen) = &mut self.screen {
                screen.stop_prompting();
            }
            self.client.sign_out(Instant::now());
            let pending = self.client.pending();
            if !pending.is_empty() {
                let count: usize = pending.iter().map(|(_, n)| n).sum();
                let names: Vec<String> =
                    pending.iter().map(|(to, _)| self.style.name(to)).collect();
                let body = format!(
                    "Waiting for {count} message{} to {} to be delivered ({} to leave now)",
                    if count == 1 { "" } else { "s" },
                    names.join(", "),
                    if self.interrupted {
                        "Ctrl-C again"
                    } else {
                        "Ctrl-C"
                    }
                );
                self.say(&body);
            }
        }
    }
}

/// The line for a message to `to` that was not delivered: `No such user:
/// Bob`, or `Message to Bob not delivered: WHY`, where a missing direct path
/// names the recipient again (`no direct path to Bob (both of you are behind
/// strict NATs)`).
fn not_delivered(style: &Style, to: &str, reason: DeliveryFailure) -> String {
    match reason {
        DeliveryFailure::NoSuchUser => style.no_such_user(to),
        DeliveryFailure::NoDirectPath => {
            let why = format!(
                "no direct path to {} (both of you are behind strict NATs)",
                style.name(to)
            );
            style.not_delivered(to, &why)
        }
        other => style.not_delivered(to, &other),
    }
}

/// The identity, the pinned server key and the known peers, from the files
/// (see the module docs), and the client's configuration with them.
fn load_keys(args: &Args, server: SocketAddr) -> io::Result<(ClientConfig, Keys)> {
    let dir = keystore::config_dir();
    let identity_path = match &args.identity {
        Some(path) => path.clone(),
        None => {
            let key = NameKey::new(&args.name);
            let hex: String = key.as_str().bytes().map(|b| format!("{b:02x}")).collect();
            dir.as_ref()
                .map_err(|e| io::Error::new(e.kind(), format!("{e} (use --identity FILE)")))?
                .join(format!("identity-{hex}.key"))
        }
    };
    let comment = format!(
        "udpchat identity for {} (keep it secret; its fingerprint is what others compare)",
        args.name
    );
    let (identity, _) = keystore::load_or_create_secret(&identity_path, &comment, || {
        run::os_seed().unwrap_or_default()
    })?;
    if identity == [0; 32] {
        return Err(io::Error::other("no randomness for a new identity"));
    }
    // Without a config directory (no HOME), keys are kept for this run only.
    let base = dir.ok();
    let known_servers = base
        .as_ref()
        .map(|d| KnownKeys::new(d.join("known_servers")));
    let known_peers = base.as_ref().map(|d| KnownKeys::new(d.join("known_peers")));
    let server_name = server.to_string();
    let pinned = match &known_servers {
        Some(file) => file.get(&server_name)?,
        None => None,
    };
    let peers = match &known_peers {
        Some(file) => file.read()?.into_iter().collect(),
        None => HashMap::new(),
    };
    let mut config = ClientConfig::new(args.name.clone(), server, identity);
    config.server_key = pinned
        .filter(|_| !args.accept_new_server_key)
        .map(PublicKey);
    let keys = Keys {
        known_servers,
        known_peers,
        peers,
        server: server_name,
        pinned: config.server_key.is_some(),
        replacing: pinned.is_some() && args.accept_new_server_key,
    };
    Ok((config, keys))
}

/// Prints a start-up error and gives the exit code.
fn fail(code: u8, message: std::fmt::Arguments<'_>) -> ExitCode {
    let _ = writeln!(io::stderr().lock(), "ChatClient: {message}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let args = cli_common::parse::<Args>(&["sp", "sip"], USAGE, args_hint);
    if let Some(hint) = port_hint(&args.server_ip) {
        return fail(2, format_args!("{hint}\nUsage: {USAGE}"));
    }
    let server = match cli_common::resolve(&args.server_ip, args.server_port) {
        Ok(server) => server,
        Err(e) => {
            return fail(
                2,
                format_args!(
                    "cannot find the server {:?}: {e}\nUsage: {USAGE}",
                    args.server_ip
                ),
            );
        }
    };
    let seed = match run::os_seed() {
        Ok(seed) => seed,
        Err(e) => return fail(1, format_args!("{e}")),
    };
    // One dual-stack socket where the system has IPv6, whatever the server's
    // family: a client that reached the server over IPv4 can still write to
    // a peer that signed in over IPv6, and back. An IPv4-only system gets an
    // IPv4 socket (and an IPv6 server address then fails to send).
    let socket = match server {
        SocketAddr::V4(_) => run::bind_all(0),
        SocketAddr::V6(_) => run::bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0)),
    };
    let mut driver = match socket.and_then(Driver::new) {
        Ok(driver) => driver,
        Err(e) => return fail(1, format_args!("cannot open a UDP socket: {e}")),
    };
    let (mut config, keys) = match load_keys(&args, server) {
        Ok(loaded) => loaded,
        Err(e) => return fail(1, format_args!("{e}")),
    };
    // Registered at sign-in, so that a peer behind the same router reaches
    // us on the LAN.
    config.host_candidates = run::host_candidates(driver.local_addr());
    let client = match ClientState::new(config, Instant::now(), seed) {
        Ok(client) => client,
        Err(e) => return fail(2, format_args!("invalid name {:?}: {e}", args.name)),
    };

    let (tx, inputs) = mpsc::sync_channel(INPUT_QUEUE);
    let to_loop = ToLoop {
        tx,
        waker: driver.handle(),
        interrupts: Arc::new(AtomicUsize::new(0)),
    };
    let signals = to_loop.clone();
    // Without the handler, Ctrl-C still ends the client (not signed out).
    let _ = ctrlc::set_handler(move || signals.interrupt());

    let names = Arc::new(Mutex::new(Vec::new()));
    let (editor, screen, colour) = match terminal_editor(&args.name, &names) {
        Some((editor, printer)) => {
            let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            (Some(editor), Screen::Terminal(printer), colour)
        }
        None => (
            None,
            Screen::Plain(PlainScreen::new(io::BufWriter::new(io::stdout()))),
            false,
        ),
    };
    #[cfg(unix)]
    let saved_terminal = editor
        .as_ref()
        .and_then(|_| nix::sys::termios::tcgetattr(io::stdin()).ok());

    let mut app = App {
        client,
        style: Style { colour },
        timestamps: args.timestamps,
        screen,
        editor,
        names,
        to_loop,
        reading: false,
        interrupts_seen: 0,
        held: VecDeque::new(),
        silent_lists: Vec::new(),
        editing: Arc::new(AtomicBool::new(false)),
        quitting: false,
        interrupted: false,
        failed: false,
        keys,
        output: Vec::new(),
        incoming_prefix: None,
        key_checked: None,
    };
    let body = format!(
        "Signing in to {server} as {}...",
        app.style.name(app.client.name())
    );
    app.say(&body);

    let outcome = loop {
        if let Err(e) = driver.step(&mut app.client) {
            let _ = writeln!(io::stderr().lock(), "ChatClient: the socket failed: {e}");
            break None;
        }
        let outcome = app.events().or_else(|| app.inputs(&inputs));
        app.show();
        if outcome.is_some() {
            break outcome;
        }
    };
    driver.flush(&mut app.client);
    app.show();

    if let Screen::Plain(screen) = &mut app.screen {
        let _ = screen.finish();
    }
    // Leaving while the reader is still inside the line editor (SIGTERM):
    // give the terminal its modes back.
    #[cfg(unix)]
    if app.editing.load(Ordering::SeqCst)
        && let Some(saved) = &saved_terminal
    {
        let _ =
            nix::sys::termios::tcsetattr(io::stdin(), nix::sys::termios::SetArg::TCSANOW, saved);
        let _ = writeln!(io::stdout().lock());
    }
    match outcome {
        Some(Outcome::Done) if app.failed => ExitCode::from(1),
        Some(Outcome::Done) => ExitCode::SUCCESS,
        Some(Outcome::SignInFailed) => ExitCode::from(2),
        Some(Outcome::Forced) => ExitCode::from(130),
        None => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn to_loop() -> (ToLoop, Receiver<Input>) {
        let driver = run::bind("127.0.0.1:0".parse().unwrap())
            .and_then(Driver::new)
            .unwrap();
        let (tx, rx) = mpsc::sync_channel(INPUT_QUEUE);
        let to_loop = ToLoop {
            tx,
            waker: driver.handle(),
            interrupts: Arc::new(AtomicUsize::new(0)),
        };
        (to_loop, rx)
    }

    #[test]
    fn a_slow_loop_slows_the_reader_and_loses_no_line() {
        let (to_loop, rx) = to_loop();
        let handed = Arc::new(AtomicUsize::new(0));
        let reader = {
            let handed = Arc::clone(&handed);
            thread::spawn(move || {
                for b in 0..100 {
                    let mut batch: Vec<String> = (0..100)
                        .map(|i| format!("send Bob {}", b * 100 + i))
                        .collect();
                    assert!(to_loop.lines(&mut batch));
                    handed.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        // The loop is busy: the reader stops once the queue is full.
        thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(handed.load(Ordering::SeqCst), INPUT_QUEUE);
        let mut lines = Vec::new();
        while lines.len() < 10_000 {
            match rx.recv_timeout(std::time::Duration::from_secs(5)) {
                Ok(Input::Lines(batch)) => lines.extend(batch),
                other => panic!("{other:?} after {} lines", lines.len()),
            }
        }
        reader.join().unwrap();
        let expected: Vec<String> = (0..10_000).map(|i| format!("send Bob {i}")).collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn failed_deliveries_say_why_and_a_missing_path_names_the_recipient() {
        let plain = Style::default();
        let line = |reason| plain.line(&not_delivered(&plain, "Bob", reason), None);
        assert_eq!(
            line(DeliveryFailure::NoDirectPath),
            "<\u{2013} Message to Bob not delivered: no direct path to Bob (both of you are \
             behind strict NATs)"
        );
        assert_eq!(
            line(DeliveryFailure::NoAnswer),
            "<– Message to Bob not delivered: no answer from the recipient"
        );
        assert_eq!(line(DeliveryFailure::NoSuchUser), "<– No such user: Bob");
        // Both names escaped (and bold with colour), like every name shown.
        let colour = Style { colour: true };
        let body = not_delivered(&colour, "Eve\u{1b}", DeliveryFailure::NoDirectPath);
        assert_eq!(
            body.matches("\x1b[1mEve\\u{1b}\x1b[0m").count(),
            2,
            "{body:?}"
        );
    }

    #[test]
    fn reading_stops_after_quit_and_lines_after_it_are_not_sent() {
        let (to_loop, rx) = to_loop();
        let mut batch = vec!["list".to_string(), "quit".to_string(), "list".to_string()];
        assert!(!to_loop.lines(&mut batch));
        match rx.try_recv() {
            Ok(Input::Lines(sent)) => assert_eq!(sent, ["list", "quit"]),
            other => panic!("{other:?}"),
        }
    }
}
