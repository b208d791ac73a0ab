//! Command-line helpers shared by `ChatServer` and `ChatClient`.
//!
//! DESIGN.md's command lines use single-dash long options (`-sp 9090`,
//! `-sip 127.0.0.1`), which clap does not parse (a short option is one
//! character). [`args`] rewrites exactly those spellings to the double-dash
//! form clap knows, so `-sp 9090`, `-sp=9090`, `--sp 9090` all work.
//! [`parse`] also makes sure every argument error shows the usage line.

use std::ffi::OsString;

use clap::Parser;
use clap::error::ErrorKind;

/// Parses the process's arguments (see [`args`]). `--help` and `--version`
/// print and exit 0; any error prints clap's message, then `usage` if the
/// message did not already hold it, and exits 2.
pub fn parse<T: Parser>(longs: &[&str], usage: &str) -> T {
    match T::try_parse_from(args(longs)) {
        Ok(parsed) => parsed,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            let text = e.to_string();
            eprint!("{text}");
            if !text.contains("Usage:") {
                eprintln!("\nUsage: {usage}");
            }
            std::process::exit(2)
        }
    }
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
    fn other_arguments_are_left_alone() {
        assert_eq!(
            run(&["x", "-s", "-spx", "-v", "--", "-sp"]),
            ["x", "-s", "-spx", "-v", "--", "-sp"]
        );
    }
}
