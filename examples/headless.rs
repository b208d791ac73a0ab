//! Two clients and a server in one process, over real loopback sockets,
//! with no terminal: Alice writes to Bob, Bob answers, both sign out. Prints
//! what happened; exits 0 when it all worked within ten seconds, 1 if not.
//!
//! ```text
//! cargo run --example headless
//! ```
//!
//! Each state machine has its own socket and [`Driver`]; one thread steps
//! them in turn, each wait kept short so none holds up the others. Every
//! identity (the server's and the clients' static keys) is new each run,
//! from the operating system.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use udpchat::run::{self, Driver};
use udpchat::{ClientConfig, ClientEvent, ClientState, ServerConfig, ServerState};

fn driver() -> io::Result<Driver> {
    let mut driver = Driver::new(run::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?)?;
    driver.set_max_wait(Duration::from_millis(2));
    Ok(driver)
}

/// A client named `name` of `server`, receiving on `io`'s socket.
fn client(name: &str, server: SocketAddr, io: &Driver) -> io::Result<ClientState> {
    let mut config = ClientConfig::new(name, server, run::os_seed()?);
    // Where peers reach it without a NAT: here, its loopback address.
    config.host_candidates = run::host_candidates(io.local_addr());
    ClientState::new(config, Instant::now(), run::os_seed()?).map_err(io::Error::other)
}

fn run_all() -> io::Result<bool> {
    let (mut server_io, mut alice_io, mut bob_io) = (driver()?, driver()?, driver()?);
    let server_addr = server_io.local_addr();
    let config = ServerConfig::from_os_entropy(run::os_seed()?)?;
    let mut server = ServerState::new(config, Instant::now());
    println!("server key {}", server.public_key().fingerprint());
    let mut alice = client("Alice", server_addr, &alice_io)?;
    let mut bob = client("Bob", server_addr, &bob_io)?;
    let (mut signed_in, mut answered, mut done) = (0, false, false);
    let deadline = Instant::now() + Duration::from_secs(10);

    while Instant::now() < deadline && !(alice.is_closed() && bob.is_closed()) {
        server_io.step(&mut server)?;
        alice_io.step(&mut alice)?;
        bob_io.step(&mut bob)?;
        let now = Instant::now();
        while let Some(event) = server.poll_event() {
            println!("server: {event:?}");
        }
        while let Some(event) = bob.poll_event() {
            match event {
                ClientEvent::SignedIn => signed_in += 1,
                ClientEvent::MessageReceived {
                    from,
                    key,
                    address,
                    text,
                    ..
                } => {
                    println!(
                        "Bob got {text:?} from {from} (key {}) at {address}",
                        key.fingerprint()
                    );
                    let _ = bob.send(now, &from, "Hello Alice, Bob here");
                    answered = true;
                }
                other => println!("Bob: {other:?}"),
            }
        }
        while let Some(event) = alice.poll_event() {
            match event {
                ClientEvent::SignedIn => signed_in += 1,
                ClientEvent::MessageReceived { from, text, .. } => {
                    println!("Alice got {text:?} from {from}");
                    done = answered;
                    alice.sign_out(now);
                    bob.sign_out(now);
                }
                other => println!("Alice: {other:?}"),
            }
        }
        if signed_in == 2 {
            signed_in += 1; // Once both are in, Alice writes once.
            let _ = alice.send(now, "Bob", "Hello Bob, Alice here");
        }
    }
    Ok(done && alice.is_closed() && bob.is_closed() && server.user_count() == 0)
}

fn main() -> ExitCode {
    match run_all() {
        Ok(true) => {
            println!("headless: all went through");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!("headless: not everything went through within 10 s");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("headless: {e}");
            ExitCode::FAILURE
        }
    }
}
