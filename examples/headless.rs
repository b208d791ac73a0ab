//! Two clients without a terminal: Alice and Bob sign in, Alice sends Bob a
//! message, Bob answers, and both sign out, over real UDP sockets on
//! loopback. With no argument a server runs in this process too; with
//! `SERVER_IP:PORT` the clients use that server.
//!
//! ```text
//! cargo run --example headless [-- SERVER_IP:PORT]
//! ```
//!
//! Prints what happened; exits 0 on success, 1 on failure or after 10 s.
use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use udpchat::run::{self, Driver};
use udpchat::{ClientConfig, ClientEvent, ClientState, ServerConfig, ServerState};

/// A client and its socket, stepped in turn with the other one.
struct Peer {
    driver: Driver,
    client: ClientState,
}

impl Peer {
    fn new(name: &str, server: SocketAddr) -> Result<Peer, Box<dyn Error>> {
        let mut driver = Driver::new(run::bind("127.0.0.1:0".parse()?)?)?;
        // Two clients share this thread: neither may block the other long.
        driver.set_max_wait(Duration::from_millis(5));
        let config = ClientConfig::new(name, server);
        let client = ClientState::new(config, Instant::now(), run::os_seed()?)?;
        Ok(Peer { driver, client })
    }

    /// One step; the events it brought.
    fn step(&mut self) -> Result<Vec<ClientEvent>, Box<dyn Error>> {
        self.driver.step(&mut self.client)?;
        Ok(std::iter::from_fn(|| self.client.poll_event()).collect())
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let stop = Arc::new(AtomicBool::new(false));
    let (server_addr, server_thread) = match std::env::args().nth(1) {
        Some(addr) => (addr.parse()?, None),
        None => {
            let mut driver = Driver::new(run::bind("127.0.0.1:0".parse()?)?)?;
            let addr = driver.local_addr();
            let handle = driver.handle();
            let config = ServerConfig::with_secret(run::os_secret()?);
            let mut server = ServerState::new(config, Instant::now());
            let stop = Arc::clone(&stop);
            let thread = std::thread::spawn(move || {
                driver.run(&mut server, |server, _| {
                    while let Some(event) = server.poll_event() {
                        println!("server: {event:?}");
                    }
                    if stop.load(Ordering::SeqCst) {
                        std::ops::ControlFlow::Break(())
                    } else {
                        std::ops::ControlFlow::Continue(())
                    }
                })
            });
            println!("server on {addr}");
            (addr, Some((thread, handle)))
        }
    };

    let result = converse(server_addr);
    if let Some((thread, handle)) = server_thread {
        stop.store(true, Ordering::SeqCst);
        handle.wake();
        let _ = thread.join();
    }
    match result {
        Ok(()) => {
            println!("ok");
            Ok(())
        }
        Err(e) => {
            eprintln!("headless: {e}");
            std::process::exit(1);
        }
    }
}

/// Alice -> Bob, Bob -> Alice, both delivered, both signed out.
fn converse(server: SocketAddr) -> Result<(), Box<dyn Error>> {
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut alice = Peer::new("Alice", server)?;
    let mut bob = Peer::new("Bob", server)?;
    let (mut signed_in, mut sent, mut answered, mut delivered) = (0, false, false, 0);
    let (mut leaving, mut alice_got_answer) = (false, false);
    while !(leaving && alice.client.is_closed() && bob.client.is_closed()) {
        if Instant::now() > give_up {
            return Err("gave up after 10 s".into());
        }
        for event in alice.step()? {
            println!("Alice: {event:?}");
            match event {
                ClientEvent::SignedIn => signed_in += 1,
                ClientEvent::SignInFailed(why) => return Err(format!("Alice: {why}").into()),
                ClientEvent::MessageReceived { from, text, .. } if from == "Bob" => {
                    println!("Alice got {text:?} from Bob");
                    alice_got_answer = true;
                }
                ClientEvent::Delivered { .. } => delivered += 1,
                ClientEvent::DeliveryFailed { reason, .. } => {
                    return Err(format!("Alice's message failed: {reason:?}").into());
                }
                _ => {}
            }
        }
        for event in bob.step()? {
            println!("Bob: {event:?}");
            match event {
                ClientEvent::SignedIn => signed_in += 1,
                ClientEvent::SignInFailed(why) => return Err(format!("Bob: {why}").into()),
                ClientEvent::MessageReceived { from, text, .. } if from == "Alice" => {
                    println!("Bob got {text:?} from Alice");
                    bob.client.send(Instant::now(), "Alice", "Hi Alice!")?;
                    answered = true;
                }
                ClientEvent::Delivered { .. } => delivered += 1,
                ClientEvent::DeliveryFailed { reason, .. } => {
                    return Err(format!("Bob's answer failed: {reason:?}").into());
                }
                _ => {}
            }
        }
        if signed_in == 2 && !sent {
            alice.client.send(Instant::now(), "Bob", "Hello Bob")?;
            sent = true;
        }
        if answered && alice_got_answer && delivered == 2 && !leaving {
            leaving = true;
            alice.client.sign_out(Instant::now());
            bob.client.sign_out(Instant::now());
        }
    }
    Ok(())
}
