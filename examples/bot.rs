//! A bot: signs in and answers every message it gets.
//!
//! ```text
//! cargo run --example bot -- 127.0.0.1:9090 EchoBot 60   # server, name, seconds to stay
//! ```
//!
//! Real sockets through the run loop the programs use ([`Driver`]); it
//! leaves (signing out) after the given seconds, or after its first answer
//! when the seconds are 0. Its identity (the static key the server binds its
//! name to) is new each run, drawn from the operating system: a bot meant to
//! keep its name would keep the key in a file (`run::keystore`).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use udpchat::run::{self, Driver};
use udpchat::{ClientConfig, ClientEvent, ClientState};

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let server: SocketAddr = args
        .next()
        .unwrap_or("127.0.0.1:9090".into())
        .parse()
        .map_err(io::Error::other)?;
    let name = args.next().unwrap_or_else(|| "EchoBot".to_string());
    let seconds: u64 = args
        .next()
        .map_or(Ok(60), |s| s.parse())
        .map_err(io::Error::other)?;

    let local = match server {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let mut driver = Driver::new(run::bind(local)?)?;
    let mut config = ClientConfig::new(name, server, run::os_seed()?);
    // Its interface addresses, so that peers on its LAN reach it directly.
    config.host_candidates = run::host_candidates(driver.local_addr());
    let mut bot =
        ClientState::new(config, Instant::now(), run::os_seed()?).map_err(io::Error::other)?;
    let leave_at = Instant::now() + Duration::from_secs(seconds);
    let mut answered = 0u64;
    let mut failed = None;

    driver.run(&mut bot, |bot, _step| {
        let now = Instant::now();
        while let Some(event) = bot.poll_event() {
            match event {
                ClientEvent::SignedIn => println!("signed in as {}", bot.name()),
                ClientEvent::MessageReceived { from, text, .. } => {
                    println!("{from}: {text}");
                    let reply = format!("you said: {text}");
                    if bot.send(now, &from, &reply).is_ok() {
                        answered += 1;
                    }
                }
                ClientEvent::SignInFailed(why) => failed = Some(why.to_string()),
                ClientEvent::SignedOut => println!("signed out after {answered} answers"),
                _ => {}
            }
        }
        if (seconds == 0 && answered > 0) || (seconds > 0 && now >= leave_at) {
            bot.sign_out(now);
        }
        if bot.is_closed() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    match failed {
        Some(why) => Err(io::Error::other(format!("sign-in failed: {why}"))),
        None => Ok(()),
    }
}
