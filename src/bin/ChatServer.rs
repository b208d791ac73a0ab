//! `ChatServer -sp PORT`: the udpchat directory server.
//!
//! Binds the port (by default on every interface, IPv4 and IPv6 through one
//! dual-stack socket), prints `Server Initialized...`, and runs a
//! [`ServerState`] with [`udpchat::run::Driver`] until Ctrl-C or SIGTERM,
//! then exits 0. A second line, `Listening on ADDR`, tells where (with
//! `-sp 0` the system picks a free port). `--bind` takes an address or a
//! host name, resolved as the client resolves the server's.
//!
//! Keys: the server's static key lives in `--key FILE` (default
//! `$XDG_STATE_HOME/udpchat/server.key`, else `~/.local/state/udpchat/`),
//! made on first start (mode 0600); its fingerprint is printed after
//! `Server Initialized...` for the operator to publish. The name → key
//! bindings of signed-in users are kept in `--bindings FILE` (default
//! `bindings-PORT` beside the key), rewritten atomically within seconds of a
//! change and at exit, and read back at start: for two minutes after a
//! restart each name is reserved for its last key.
//!
//! Output (standard output): one line per sign-in and sign-out
//! (`Alice signed in from 127.0.0.1:5000`) unless `-q`; with `-v` also the
//! socket's receive buffer size and one line per datagram in and out. A
//! receive buffer too small for a burst of requests is warned about. Errors
//! go to standard error; bad arguments and a port in use exit non-zero.
#![allow(non_snake_case)] // The binary's name is fixed by DESIGN.md.

#[path = "cli_common/mod.rs"]
mod cli_common;

use std::io::{self, Write};

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use udpchat::codec::Packet;
use udpchat::run::{self, Driver, Trace, keystore};
use udpchat::server::{ServerConfig, ServerEvent, ServerState, SignOutReason};
use udpchat::text::escape;

/// The usage line.
const USAGE: &str = "ChatServer -sp PORT [--bind ADDR] [--key FILE] [--bindings FILE] [-q | -v]";

/// A receive buffer smaller than this (as the kernel reports it) may not
/// hold a burst of 256 requests in flight: worth a warning.
const LOW_RECV_BUFFER: usize = 256 * 1024;

/// How often changed bindings are written out.
const BINDINGS_EVERY: Duration = Duration::from_secs(2);

/// The udpchat directory server: knows who is signed in and where.
///
/// Message text never passes through it. Stop it with Ctrl-C or SIGTERM.
#[derive(Debug, Parser)]
#[command(
    name = "ChatServer",
    version,
    override_usage = USAGE
)]
struct Args {
    /// UDP port to listen on (written -sp or --sp); 0 picks a free port and
    /// prints it.
    #[arg(long = "sp", value_name = "PORT")]
    port: u16,
    /// Listen on this address or host name only [default: every interface,
    /// IPv4 and IPv6].
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// The server's secret key file, made on first start [default:
    /// $XDG_STATE_HOME/udpchat/server.key].
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Where to keep the name → key bindings across restarts [default:
    /// `bindings-PORT` beside the key file].
    #[arg(long, value_name = "FILE")]
    bindings: Option<PathBuf>,
    /// Do not print a line per sign-in and sign-out.
    #[arg(short, long, conflicts_with = "verbose")]
    quiet: bool,
    /// Also print a line per datagram received and sent.
    #[arg(short, long)]
    verbose: bool,
}

/// Writes one line to standard output and flushes. A closed or full
/// standard output is not a reason to stop serving, so errors are ignored.
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Writes one line to standard error, ignoring errors (see [`say`]).
fn warn(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "ChatServer: {line}");
}

/// What a datagram is, for `-v`.
fn describe(datagram: &[u8]) -> String {
    match Packet::decode(datagram) {
        Ok(packet) => packet.packet_type().name().to_string(),
        Err(e) => format!("undecodable ({e})"),
    }
}

/// The `-v` and send-error log. Send errors are always reported, but
/// without `-v` only the 1st, 2nd, 4th, 8th ... so a flood cannot fill the
/// log.
fn tracer(verbose: bool) -> impl FnMut(Trace<'_>) + Send + 'static {
    let mut send_errors: u64 = 0;
    move |event| match event {
        Trace::Received { from, datagram } if verbose => say(format_args!(
            "in  {from} {} ({} bytes)",
            describe(datagram),
            datagram.len()
        )),
        Trace::Sent { to, datagram } if verbose => say(format_args!(
            "out {to} {} ({} bytes)",
            describe(datagram),
            datagram.len()
        )),
        Trace::SendFailed { to, error } => {
            send_errors += 1;
            if verbose || send_errors.is_power_of_two() {
                warn(format_args!(
                    "sending to {to} failed: {error} (send errors so far: {send_errors})"
                ));
            }
        }
        _ => {}
    }
}

fn report(event: ServerEvent) {
    match event {
        ServerEvent::SignedIn { name, address } => {
            say(format_args!("{} signed in from {address}", escape(&name)));
        }
        ServerEvent::SignedOut {
            name,
            address,
            reason,
        } => {
            let why = match reason {
                SignOutReason::Requested => "",
                SignOutReason::TimedOut => " (timed out)",
                SignOutReason::Unresponsive => " (did not answer when the name was claimed)",
                SignOutReason::Replaced => " (the same key signed in again)",
                _ => " (for a reason this version does not know)",
            };
            say(format_args!(
                "{} signed out from {address}{why}",
                escape(&name)
            ));
        }
        // Newer events are not worth a line to this version.
        _ => {}
    }
}

fn main() -> ExitCode {
    let args = cli_common::parse::<Args>(&["sp"], USAGE, |_| None);
    // The address to bind, resolved as the client resolves the server's.
    let bind = match args
        .bind
        .as_deref()
        .map(|host| cli_common::resolve(host, args.port))
    {
        None => None,
        Some(Ok(addr)) => Some(addr),
        Some(Err(e)) => {
            warn(format_args!(
                "cannot find the address {:?}: {e}\nUsage: {USAGE}",
                args.bind.as_deref().unwrap_or_default()
            ));
            return ExitCode::from(2);
        }
    };

    let key_path = match args
        .key
        .clone()
        .map_or_else(|| keystore::state_dir().map(|d| d.join("server.key")), Ok)
    {
        Ok(path) => path,
        Err(e) => {
            warn(format_args!(
                "cannot find where to keep the server key: {e} (use --key FILE)"
            ));
            return ExitCode::FAILURE;
        }
    };

    let identity = keystore::load_or_create_secret(
        &key_path,
        "udpchat server key: keep it secret; clients pin its public half",
        || run::os_seed().unwrap_or_default(),
    );
    let config = match identity
        .map(|(key, _)| key)
        .and_then(ServerConfig::from_os_entropy)
    {
        Ok(config) if config.identity != [0; 32] => config,
        Ok(_) => {
            warn(format_args!("cannot get randomness for a new key"));
            return ExitCode::FAILURE;
        }
        Err(e) => {
            warn(format_args!("cannot load the server key: {e}"));
            return ExitCode::FAILURE;
        }
    };

    let bound = match bind {
        Some(addr) => run::bind(addr),
        None => run::bind_all(args.port),
    };
    let socket = match bound {
        Ok(socket) => socket,
        Err(e) => {
            let place = match bind {
                Some(addr) => addr.to_string(),
                None => format!("UDP port {}", args.port),
            };
            match e.kind() {
                io::ErrorKind::AddrInUse => warn(format_args!(
                    "cannot listen on {place}: it is already in use (another ChatServer?)"
                )),
                io::ErrorKind::AddrNotAvailable => warn(format_args!(
                    "cannot listen on {place}: not an address of this host"
                )),
                _ => warn(format_args!("cannot listen on {place}: {e}")),
            }
            return ExitCode::FAILURE;
        }
    };
    let mut driver = match Driver::new(socket) {
        Ok(driver) => driver,
        Err(e) => {
            warn(format_args!("cannot use the socket: {e}"));
            return ExitCode::FAILURE;
        }
    };
    driver.set_trace(tracer(args.verbose));

    // Ctrl-C and SIGTERM set `stop` and wake the loop.
    let stop = Arc::new(AtomicBool::new(false));
    let handle = driver.handle();
    let handler_stop = Arc::clone(&stop);
    if let Err(e) = ctrlc::set_handler(move || {
        handler_stop.store(true, Ordering::SeqCst);
        handle.wake();
    }) {
        warn(format_args!("cannot catch Ctrl-C and SIGTERM: {e}"));
    }

    // One bindings file per port: two servers of one user keep theirs apart.
    let bindings_path = args.bindings.clone().unwrap_or_else(|| {
        key_path.with_file_name(format!("bindings-{}", driver.local_addr().port()))
    });
    let mut server = ServerState::new(config, Instant::now());
    say(format_args!("Server Initialized..."));
    say(format_args!("Listening on {}", driver.local_addr()));
    say(format_args!(
        "Server key fingerprint: {} (in {})",
        server.public_key().fingerprint(),
        key_path.display()
    ));
    match driver.recv_buffer_size() {
        Ok(size) if size < LOW_RECV_BUFFER => warn(format_args!(
            "the socket's receive buffer is only {size} bytes: bursts of requests may be \
             dropped (raise net.core.rmem_max, or run with CAP_NET_ADMIN)"
        )),
        Ok(size) if args.verbose => say(format_args!(
            "Receive buffer: {size} bytes (as the kernel reports it)"
        )),
        _ => {}
    }
    match std::fs::read(&bindings_path) {
        Ok(bytes) => match server.restore(Instant::now(), &bytes) {
            Ok(0) => {}
            Ok(n) => say(format_args!(
                "Restored {n} name binding{} from {}: each name is kept for its key for 2 minutes",
                if n == 1 { "" } else { "s" },
                bindings_path.display()
            )),
            Err(e) => warn(format_args!("ignoring {}: {e}", bindings_path.display())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => warn(format_args!("cannot read {}: {e}", bindings_path.display())),
    }

    let quiet = args.quiet;
    let mut dirty = false;
    let mut written_at = Instant::now();
    let save = |server: &ServerState| {
        let bytes = server.bindings();
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = keystore::write_atomic(&bindings_path, &text) {
            warn(format_args!("cannot save the name bindings: {e}"));
        }
    };
    driver.set_max_wait(BINDINGS_EVERY);
    let result = driver.run(&mut server, |server, _| {
        while let Some(event) = server.poll_event() {
            dirty = true;
            if !quiet {
                report(event);
            }
        }
        if dirty && written_at.elapsed() >= BINDINGS_EVERY {
            save(server);
            dirty = false;
            written_at = Instant::now();
        }
        if stop.load(Ordering::SeqCst) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    save(&server);
    match result {
        Ok(()) => {
            if !quiet {
                say(format_args!(
                    "Server stopped ({} signed in).",
                    server.user_count()
                ));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            warn(format_args!("the socket failed: {e}"));
            ExitCode::FAILURE
        }
    }
}
