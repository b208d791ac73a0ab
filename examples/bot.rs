//! A bot that signs in and answers every message it gets, over real sockets,
//! with the crate's run loop.
//!
//! ```text
//! cargo run --example bot -- NAME SERVER_IP:PORT [--for SECONDS] [--messages N]
//! ```
//!
//! It signs out and exits 0 after SECONDS, or after answering N messages.
use std::error::Error;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use udpchat::run::{self, Driver};
use udpchat::{ClientConfig, ClientEvent, ClientState};

const USAGE: &str = "usage: bot NAME SERVER_IP:PORT [--for SECONDS] [--messages N]";

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().ok_or(USAGE)?;
    let server: SocketAddr = args.next().ok_or(USAGE)?.parse()?;
    let (mut until, mut budget) = (None, None);
    while let Some(flag) = args.next() {
        let value: u64 = args.next().ok_or(USAGE)?.parse()?;
        match flag.as_str() {
            "--for" => until = Some(Instant::now() + Duration::from_secs(value)),
            "--messages" => budget = Some(value),
            _ => return Err(USAGE.into()),
        }
    }

    let local = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let mut driver = Driver::new(run::bind(local.parse()?)?)?;
    driver.set_max_wait(Duration::from_millis(100)); // to notice --for in time
    let config = ClientConfig::new(name, server);
    let mut client = ClientState::new(config, Instant::now(), run::os_seed()?)?;
    let mut leaving = false;
    loop {
        driver.step(&mut client)?;
        let now = Instant::now();
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::SignedIn => println!("signed in as {}", client.name()),
                ClientEvent::SignInFailed(why) => return Err(format!("sign-in: {why}").into()),
                ClientEvent::MessageReceived { from, text, .. } if !leaving => {
                    println!("{from}: {text}");
                    if let Err(e) = client.send(now, &from, &format!("You said: {text}")) {
                        eprintln!("cannot answer {from}: {e}");
                    }
                    budget = budget.map(|n: u64| n.saturating_sub(1));
                }
                ClientEvent::SignedOut => return Ok(()),
                _ => {}
            }
        }
        if !leaving && (budget == Some(0) || until.is_some_and(|t| now >= t)) {
            leaving = true;
            client.sign_out(now); // after the answers in flight are delivered
        }
        if leaving && client.is_closed() {
            return Ok(());
        }
    }
}
