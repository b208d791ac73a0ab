//! A client's half of the protocol done by hand, for the programs that
//! measure the server without a whole `ClientState` per user: the sign-in
//! (a padded Hello, the Retry's cookie and key, a Noise IK ServerInit
//! carrying the SignIn, the ServerResp), then requests sealed under the
//! session it makes and replies opened. [`RawSession`] also serves the fuzz
//! targets that play the server or a peer, with keys from their own
//! handshakes.
//!
//! It follows `src/client/link.rs` (the handshake) and replicates the few
//! lines of the crate-private `src/session.rs` (the Sealed envelope): a
//! datagram is the 15-byte header `[0x05, receiver u32, counter u64, len u16]`
//! (big-endian; `len` counts the ciphertext and its 16-byte tag), then the
//! ChaCha20-Poly1305 ciphertext of the plaintext packet and the tag, with the
//! header as associated data.
//!
//! Contracts:
//!
//! * Nothing here panics on what the network sends: every reply is decoded
//!   and checked, and a bad one is an error value.
//! * [`RawSession::seal`] uses each counter once, counting up. The server
//!   keeps a replay window of 64 counters, so datagrams sealed ahead of time
//!   must reach it in about the order they were sealed.
//! * [`RawSession::open`] authenticates but keeps no replay window: it is for
//!   reading replies to one's own requests, where a duplicate only repeats
//!   an answer.
//!
//! Included with `#[path]` by the examples, benches and fuzz targets that need
//! it; each uses a part.
#![allow(dead_code, reason = "shared by several programs, each using a part")]

use std::fmt;

use udpchat::codec::{
    AddrList, MAX_DATAGRAM, Packet, PacketType, SEALED_HEADER_LEN, SEALED_TAG_LEN,
};
use udpchat::crypto::{CryptoError, Initiator, PublicKey, StaticKeypair, TransportKeys};
use udpchat::server::SERVER_PROLOGUE;
use udpchat::{DecodeError, EncodeError};

/// Why a step of the hand-made protocol failed.
#[derive(Debug)]
pub enum RawError {
    /// A packet to send did not encode.
    Encode(EncodeError),
    /// A datagram received did not decode.
    Decode(DecodeError),
    /// A handshake step or an opening failed.
    Crypto(CryptoError),
    /// The plaintext would not fit one datagram.
    TooLong(usize),
    /// The session has used every counter.
    Exhausted,
    /// A packet that makes no sense here (another request's reply, a refusal).
    Unexpected(String),
}

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawError::Encode(e) => write!(f, "encode: {e}"),
            RawError::Decode(e) => write!(f, "decode: {e}"),
            RawError::Crypto(e) => write!(f, "crypto: {e}"),
            RawError::TooLong(len) => write!(f, "a {len}-byte plaintext does not fit a datagram"),
            RawError::Exhausted => f.write_str("the session has used every counter"),
            RawError::Unexpected(what) => write!(f, "unexpected: {what}"),
        }
    }
}

impl std::error::Error for RawError {}

impl From<EncodeError> for RawError {
    fn from(e: EncodeError) -> Self {
        RawError::Encode(e)
    }
}

impl From<DecodeError> for RawError {
    fn from(e: DecodeError) -> Self {
        RawError::Decode(e)
    }
}

impl From<CryptoError> for RawError {
    fn from(e: CryptoError) -> Self {
        RawError::Crypto(e)
    }
}

/// The padded Hello that asks for a cookie and the server's key.
pub fn hello(request: u32) -> Result<Vec<u8>, RawError> {
    Ok(Packet::Hello { request }.to_bytes()?.to_vec())
}

/// Reads the Retry answering the Hello `request`: the cookie and the
/// server's static key.
pub fn read_retry(datagram: &[u8], request: u32) -> Result<(Vec<u8>, PublicKey), RawError> {
    match Packet::decode(datagram)? {
        Packet::Retry {
            request: r,
            cookie,
            key,
        } if r == request => {
            let key: [u8; 32] = key
                .try_into()
                .map_err(|_| RawError::Unexpected(format!("a {}-byte server key", key.len())))?;
            Ok((cookie.to_vec(), PublicKey(key)))
        }
        other => Err(RawError::Unexpected(format!(
            "{other:?} for hello {request}"
        ))),
    }
}

/// A sign-in handshake under way: our index for the session and the Noise
/// initiator waiting for message 2.
#[derive(Debug)]
pub struct Handshake {
    index: u32,
    request: u32,
    initiator: Initiator,
}

/// Starts signing in as `name` with `identity` to the server whose key is
/// `server_key`: returns the handshake and the ServerInit datagram, which
/// carries `cookie` (from the Retry), our session index `index` (not 0) and
/// a SignIn with request id `request` (replacing no earlier session, and
/// giving no host candidates).
/// `seed` draws the ephemeral key: never the same twice with one identity.
pub fn server_init(
    identity: &StaticKeypair,
    server_key: &PublicKey,
    cookie: &[u8],
    index: u32,
    seed: [u8; 32],
    request: u32,
    name: &str,
) -> Result<(Handshake, Vec<u8>), RawError> {
    let sign_in = Packet::SignIn {
        request,
        name,
        replaces: 0,
        candidates: AddrList::EMPTY,
    };
    server_init_with(identity, server_key, cookie, index, seed, &sign_in)
}

/// As [`server_init`], with `sign_in` (a [`Packet::SignIn`], which may
/// replace a session or give host candidates) as the handshake's payload.
pub fn server_init_with(
    identity: &StaticKeypair,
    server_key: &PublicKey,
    cookie: &[u8],
    index: u32,
    seed: [u8; 32],
    sign_in: &Packet<'_>,
) -> Result<(Handshake, Vec<u8>), RawError> {
    let Packet::SignIn { request, .. } = *sign_in else {
        return Err(RawError::Unexpected(format!(
            "a {} as a sign-in",
            sign_in.packet_type().name()
        )));
    };
    let (initiator, msg1) = Initiator::start(
        identity,
        server_key,
        SERVER_PROLOGUE,
        seed,
        &sign_in.to_bytes()?,
    )?;
    let init = Packet::ServerInit {
        cookie,
        sender: index,
        handshake: &msg1,
    }
    .to_bytes()?;
    Ok((
        Handshake {
            index,
            request,
            initiator,
        },
        init.to_vec(),
    ))
}

impl Handshake {
    /// Our index for the session this handshake makes.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Whether `datagram` is a ServerResp for this handshake (and so worth
    /// [`Handshake::finish`]ing with; anything else is someone else's).
    pub fn answers(&self, datagram: &[u8]) -> bool {
        matches!(Packet::decode(datagram), Ok(Packet::ServerResp { receiver, .. }) if receiver == self.index)
    }

    /// Reads the ServerResp: the session if the sign-in was accepted; a
    /// refusal or anything else is an error.
    pub fn finish(self, datagram: &[u8]) -> Result<RawSession, RawError> {
        let Packet::ServerResp {
            sender,
            receiver,
            handshake,
        } = Packet::decode(datagram)?
        else {
            return Err(RawError::Unexpected("not a server-resp".into()));
        };
        if receiver != self.index {
            return Err(RawError::Unexpected(format!(
                "a server-resp for index {receiver}, not {}",
                self.index
            )));
        }
        let (answer, keys) = self.initiator.finish(handshake)?;
        match Packet::decode(&answer)? {
            Packet::SignInAccepted { request, .. } if request == self.request => {
                Ok(RawSession::new(keys, self.index, sender))
            }
            other => Err(RawError::Unexpected(format!("{other:?}"))),
        }
    }
}

/// An established session with the server (see the module docs).
#[derive(Debug)]
pub struct RawSession {
    keys: TransportKeys,
    /// Our index: in the header of what the server seals to us.
    local: u32,
    /// The server's index: in the header of what we seal.
    remote: u32,
    next_counter: u64,
}

impl RawSession {
    /// A session under `keys` (from either side of a handshake) where we are
    /// `local` and the other side `remote`, sealing from counter 0.
    pub fn new(keys: TransportKeys, local: u32, remote: u32) -> Self {
        RawSession {
            keys,
            local,
            remote,
            next_counter: 0,
        }
    }

    /// Our index for the session.
    pub fn local_index(&self) -> u32 {
        self.local
    }

    /// The server's index for the session.
    pub fn remote_index(&self) -> u32 {
        self.remote
    }

    /// Replaces `out` with a whole Sealed datagram carrying `packet`; returns
    /// the counter it was sealed under.
    pub fn seal(&mut self, packet: &Packet<'_>, out: &mut Vec<u8>) -> Result<u64, RawError> {
        let plaintext = packet.to_bytes()?;
        self.seal_plaintext(&plaintext, out)
    }

    /// Replaces `out` with a whole Sealed datagram carrying `plaintext` (any
    /// bytes: the server decodes them after opening); returns the counter.
    pub fn seal_plaintext(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<u64, RawError> {
        let sealed_len = plaintext.len() + SEALED_TAG_LEN;
        let len = u16::try_from(sealed_len)
            .ok()
            .filter(|_| SEALED_HEADER_LEN + sealed_len <= MAX_DATAGRAM)
            .ok_or(RawError::TooLong(plaintext.len()))?;
        let counter = self.next_counter;
        self.next_counter = counter.checked_add(1).ok_or(RawError::Exhausted)?;
        out.clear();
        out.reserve(SEALED_HEADER_LEN + sealed_len);
        out.push(PacketType::Sealed as u8);
        out.extend_from_slice(&self.remote.to_be_bytes());
        out.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        let mut body = Vec::with_capacity(sealed_len);
        self.keys
            .seal_into(counter, &out[..SEALED_HEADER_LEN], plaintext, &mut body);
        out.extend_from_slice(&body);
        Ok(counter)
    }

    /// Opens a Sealed datagram the other side sent under this session into
    /// `scratch` and decodes the packet inside. Anything else, or a forgery,
    /// is an error.
    pub fn open<'s>(
        &self,
        datagram: &[u8],
        scratch: &'s mut Vec<u8>,
    ) -> Result<Packet<'s>, RawError> {
        Ok(Packet::decode(self.open_plaintext(datagram, scratch)?)?)
    }

    /// Opens a Sealed datagram the other side sent under this session into
    /// `scratch`: the plaintext, not yet decoded. Anything else, or a
    /// forgery, is an error.
    pub fn open_plaintext<'s>(
        &self,
        datagram: &[u8],
        scratch: &'s mut Vec<u8>,
    ) -> Result<&'s [u8], RawError> {
        let (receiver, counter, sealed) = sealed_parts(datagram)?;
        if receiver != self.local {
            return Err(RawError::Unexpected(format!(
                "sealed for index {receiver}, not {}",
                self.local
            )));
        }
        self.open_sealed(datagram, counter, sealed, scratch)
    }

    /// Runs the AEAD open of a Sealed `datagram` under this session whatever
    /// index it names, into `scratch`: what opening costs, also for a
    /// datagram not sealed for this session (which then fails its tag
    /// check). For a load generator that must do the same work for an echo
    /// of its request as for an answer.
    pub fn open_any<'s>(
        &self,
        datagram: &[u8],
        scratch: &'s mut Vec<u8>,
    ) -> Result<&'s [u8], RawError> {
        let (_, counter, sealed) = sealed_parts(datagram)?;
        self.open_sealed(datagram, counter, sealed, scratch)
    }

    fn open_sealed<'s>(
        &self,
        datagram: &[u8],
        counter: u64,
        sealed: &[u8],
        scratch: &'s mut Vec<u8>,
    ) -> Result<&'s [u8], RawError> {
        let header = datagram
            .get(..SEALED_HEADER_LEN)
            .ok_or(RawError::Crypto(CryptoError::TooShort))?;
        scratch.clear();
        scratch.extend_from_slice(sealed);
        Ok(self.keys.open_in_place(counter, header, scratch)?)
    }
}

/// The counter in a Sealed datagram's header, without opening it (to match
/// an echoed datagram with the one sent).
/// A Sealed datagram's receiver index, counter and sealed bytes.
fn sealed_parts(datagram: &[u8]) -> Result<(u32, u64, &[u8]), RawError> {
    match Packet::decode(datagram)? {
        Packet::Sealed {
            receiver,
            counter,
            sealed,
        } => Ok((receiver, counter, sealed)),
        other => Err(RawError::Unexpected(format!(
            "{other:?} where a sealed packet was expected"
        ))),
    }
}

pub fn sealed_counter(datagram: &[u8]) -> Option<u64> {
    let bytes = datagram.get(5..13)?;
    let bytes: [u8; 8] = bytes.try_into().ok()?;
    (datagram.first() == Some(&(PacketType::Sealed as u8))).then(|| u64::from_be_bytes(bytes))
}
