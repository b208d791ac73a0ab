//! Command-line helpers shared by `ChatServer` and `ChatClient`.
//!
//! DESIGN.md's command lines use single-dash long options (`-sp 9090`,
//! `-sip 127.0.0.1`), which clap does not parse (a short option is one
//! character). [`args`] rewrites exactly those spellings to the double-dash
//! form clap knows, so `-sp 9090`, `-sp=9090`, `--sp 9090` all work.
//! [`parse`] also makes sure every argument error shows the usage line, and
//! names those options as users type them (`-sp`, not clap's `--sp`).

use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use clap::Parser;
use clap::error::ErrorKind;

/// Parses the process's arguments (see [`args`]). `--help` and `--version`
/// print and exit 0; any error prints clap's message with the options in
/// `longs` spelled as users type them, then `hint`'s advice for these
/// arguments if it has any, then `usage` if the message did not already hold
/// it, and exits 2.
pub fn parse<T: Parser>(longs: &[&str], usage: &str, hint: fn(&[OsString]) -> Option<String>) -> T {
    let args = args(longs);
    match T::try_parse_from(&args) {
        Ok(parsed) => parsed,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            let text = single_dash(&e.to_string(), longs);
            eprint!("{text}");
            if let Some(hint) = hint(&args) {
                eprintln!("\nhint: {hint}");
            }
            if !text.contains("Usage:") {
                eprintln!("\nUsage: {usage}");
            }
            std::process::exit(2)
        }
    }
}

/// `text` with every `--NAME` for NAME in `longs` written `-NAME`, as
/// DESIGN.md's command lines spell them.
pub fn single_dash(text: &str, longs: &[&str]) -> String {
    let mut out = text.to_string();
    for long in longs {
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        let needle = format!("--{long}");
        while let Some(at) = rest.find(&needle) {
            let after = &rest[at + needle.len()..];
            let whole_word =
                !after.starts_with(|c: char| c.is_alphanumeric() || c == '-' || c == '_');
            result.push_str(&rest[..at]);
            result.push_str(if whole_word { &needle[1..] } else { &needle });
            rest = after;
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// The value given to `--NAME` (or `--NAME=VALUE`) in rewritten arguments.
#[allow(dead_code)] // ChatClient's; ChatServer compiles this module too.
pub fn value_of(args: &[OsString], name: &str) -> Option<String> {
    let flag = format!("--{name}");
    let mut it = args.iter().filter_map(|a| a.to_str());
    while let Some(arg) = it.next() {
        if arg == flag {
            return it.next().map(str::to_string);
        }
        if let Some(value) = arg.strip_prefix(&flag).and_then(|r| r.strip_prefix('=')) {
            return Some(value.to_string());
        }
    }
    None
}

/// A host's socket address: an IP address (IPv6 optionally in brackets) as
/// it is, else a host name resolved by the system (the first address).
pub fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (bare, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address found"))
}

/// The process's arguments with `-NAME` and `-NAME=VALUE` turned into
/// `--NAME` / `--NAME=VALUE` for every NAME in `longs`. Arguments after a
/// lone `--` are left alone.
pub fn args(longs: &[&str]) -> Vec<OsString> {
    rewrite(std::env::args_os(), longs)
}

/// [`args`] on any argument list.
pub fn rewrite(args: impl IntoIterator<Item = OsString>, longs: &[&str]) -> Vec<OsString> {
    let mut done = false;
    args.into_iter()
        .map(|arg| {
            if done {
                return arg;
            }
            let Some(s) = arg.to_str() else {
                return arg;
            };
            if s == "--" {
                done = true;
                return arg;
            }
            let Some(body) = s.strip_prefix('-').filter(|b| !b.starts_with('-')) else {
                return arg;
            };
            let name = body.split_once('=').map_or(body, |(n, _)| n);
            if longs.contains(&name) {
                OsString::from(format!("-{s}"))
            } else {
                arg
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Vec<String> {
        rewrite(args.iter().map(OsString::from), &["sp", "sip"])
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_longs_become_double_dash() {
        assert_eq!(
            run(&[
                "ChatClient",
                "-u",
                "Alice",
                "-sip",
                "::1",
                "-sp=9090",
                "--sp",
                "1"
            ]),
            [
                "ChatClient",
                "-u",
                "Alice",
                "--sip",
                "::1",
                "--sp=9090",
                "--sp",
                "1"
            ]
        );
    }

    #[test]
    fn errors_spell_the_options_as_users_type_them() {
        let text = "error: the following required arguments were not provided:\n  --sp <SERVER_PORT>\n\ninvalid value 'x' for '--sip <SERVER_IP>'; see --spare and --sp=1";
        assert_eq!(
            single_dash(text, &["sp", "sip"]),
            "error: the following required arguments were not provided:\n  -sp <SERVER_PORT>\n\ninvalid value 'x' for '-sip <SERVER_IP>'; see --spare and -sp=1"
        );
    }

    #[test]
    fn values_and_addresses() {
        let args: Vec<OsString> = ["x", "--sip", "::1", "--sp=9"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(value_of(&args, "sip").as_deref(), Some("::1"));
        assert_eq!(value_of(&args, "sp").as_deref(), Some("9"));
        assert_eq!(value_of(&args, "u"), None);
        assert_eq!(resolve("[::1]", 5).unwrap(), "[::1]:5".parse().unwrap());
        assert_eq!(
            resolve("127.0.0.1", 5).unwrap(),
            "127.0.0.1:5".parse().unwrap()
        );
        assert!(resolve("localhost", 5).unwrap().ip().is_loopback());
    }

    #[test]
    fn other_arguments_are_left_alone() {
        assert_eq!(
            run(&["x", "-s", "-spx", "-v", "--", "-sp"]),
            ["x", "-s", "-spx", "-v", "--", "-sp"]
        );
    }
}
