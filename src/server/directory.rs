//! Who is signed in: a slab of users, found by name or by session index.
//!
//! Users live in slots; a [`UserId`] is a slot index plus the slot's
//! generation, so an id kept by a probe after its user left (and the slot was
//! reused) finds nothing instead of the wrong user. The id, packed into 32
//! bits ([`Directory::wire`]: 24 bits of slot, 8 of generation, masked with a
//! number of the run), is the server's session index on the wire: a Sealed
//! packet finds its session with one slot read. The index is a hint, not a
//! proof: the session's keys decide whether the packet is the user's. Two
//! hash tables of slot indices find a user by name key ([`NameKey`]: case
//! and look-alike characters ignored; a `NameTable` of its own) and by
//! shape ([`Shape`]: the case-keeping skeleton, which catches `AIice` for
//! `Alice`; a hashbrown table of bare indices). They hash with SipHash-1-3
//! under a key from the server's secret, so nobody can choose names that
//! collide. Addresses find nothing: a session is found by its index, so a
//! client may move, and many may share one address behind a NAT.
//!
//! Memory per user, for a million of them: one [`Slot`] of 168 bytes (the
//! session's keys and counters, the static key, the name inline up to
//! [`NAME_INLINE`] bytes, an IPv4 address and port, the first host candidate
//! when it is IPv4, the last-heard second, the introduction budgets and the
//! expiry wheel's link), 8 bytes at a load of at most 0.6 in the name table
//! (16 bytes a user at a million) and a `u32` plus a control byte in the
//! shape table.
//! Slots come in chunks of [`CHUNK`], allocated whole, so growing never
//! copies a slot and never leaves more than one chunk unused. What most
//! users do not have lives in side tables keyed by slot index: a name longer
//! than [`NAME_INLINE`] bytes, an IPv6 address, host candidates after an
//! IPv4 first one (or all of them when the first is IPv6), packed as on the
//! wire (7 bytes an IPv4 address, 19 an IPv6 one). A home client registers
//! one private IPv4 address, so a typical user has no side entry at all.
//! The name table keeps 32 bits of each hash (so it grows without hashing
//! a name); the shape table keeps none: growing it hashes the names again.
//! Removing a user hashes its name (no allocation for an ASCII name).
//!
//! A lookup costs a hash, one read in the name table (one cache line, most
//! often) and one slot read (the fields a lookup reads come first in the
//! slot), whatever the number of users: at a million users each of them is
//! a cache and TLB miss, so there are as few as can be.
//!
//! Paging walks the slab in slot order from a cursor: a user signed in for the
//! whole walk is listed exactly once (its slot does not move); one who signs in
//! or out during the walk may or may not be.

use std::collections::HashMap;
use std::hash::Hasher;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::BufMut;

use hashbrown::HashTable;
use siphasher::sip::SipHasher13;

use crate::codec::{AddrIter, MAX_CANDIDATES};
use crate::crypto::{KEY_LEN, TransportKeys};
use crate::name::{NameKey, Shape};

use super::expiry::{Links, NOT_LINKED};
use super::introductions::{HostCandidates, IntroBudget};
use super::session::ServerSession;

/// The most slots: a slot index fits the 24 bits [`Directory::wire`] gives it.
pub(crate) const MAX_SLOTS: usize = 1 << 24;

/// Name bytes kept in the slot (zero-padded: a valid name holds no NUL); a
/// longer name, or one with a NUL, goes to a side table.
pub(crate) const NAME_INLINE: usize = 14;

/// Slots allocated at once.
pub(crate) const CHUNK: usize = 1024;

/// A signed-in user's handle: stale once the user leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct UserId {
    index: u32,
    generation: u8,
}

impl UserId {
    /// The slot it names.
    pub(crate) fn slot(self) -> u32 {
        self.index
    }

    /// The id of slot `index`'s first user, for tests of what keeps ids.
    #[cfg(test)]
    pub(crate) fn first_in(index: u32) -> Self {
        UserId {
            index,
            generation: 0,
        }
    }

    /// Slot (plus one) in the high 24 bits, the generation below; see
    /// [`Directory::wire`].
    fn packed(self) -> u32 {
        ((self.index + 1) << 8) | u32::from(self.generation)
    }
}

/// `Slot::flags`: a user holds the slot.
const OCCUPIED: u8 = 1;
/// `Slot::flags`: the address is IPv6, in [`Directory`]'s side table.
const V6: u8 = 2;
/// `Slot::flags`: the name is longer than [`NAME_INLINE`] (or holds a NUL),
/// in a side table.
const LONG_NAME: u8 = 4;
/// `Slot::flags`: the user's first host candidate is IPv4, in the slot.
const HOST4: u8 = 8;
/// `Slot::flags`: the user's host candidates (after the first, if
/// [`HOST4`]) are in a side table.
const MORE_HOSTS: u8 = 16;

/// One user's place in the directory (see the module docs). Fields the
/// server changes as packets come are open to it; the rest is reached
/// through [`UserRef`].
///
/// In this order (`repr(C)`), with no padding: what a lookup of the user
/// reads (name, generation, flags, key, address, first host candidate) is
/// the first 60 bytes, so it spans one or two adjacent cache lines; the
/// session, which only the user's own packets touch, comes last.
#[repr(C)]
pub(crate) struct Slot {
    /// The name as the user spelled it, zero-padded (unless [`LONG_NAME`]).
    name: [u8; NAME_INLINE],
    generation: u8,
    flags: u8,
    /// The static public key the name is bound to.
    key: [u8; KEY_LEN],
    /// The IPv4 address the latest authenticated packet came from (unless
    /// [`V6`]).
    ip4: [u8; 4],
    port: u16,
    /// The first host candidate (if [`HOST4`]).
    host4: [u8; 4],
    host4_port: u16,
    /// The client's index for the session: in every packet sealed to it.
    remote_index: u32,
    /// When the user was last heard from, in whole seconds since the server
    /// started, rounded up (so a timeout counted from it is never early).
    pub(crate) last_heard: u32,
    /// Introductions made on the user's behalf (its lookups to write).
    pub(crate) intros_made: IntroBudget,
    /// Introductions sent to the user.
    pub(crate) intros_received: IntroBudget,
    /// The expiry wheel's link ([`Links`]); it outlives the user, since the
    /// wheel lets go of a slot only when the slot's tick comes.
    wheel_next: u32,
    /// The session with the user's client.
    pub(crate) session: ServerSession,
}

impl Slot {
    fn vacant() -> Self {
        Slot {
            session: ServerSession::new(TransportKeys::from_raw(&[0; 32], &[0; 32])),
            key: [0; KEY_LEN],
            remote_index: 0,
            last_heard: 0,
            intros_made: IntroBudget::new(0, super::introductions::ASKER),
            intros_received: IntroBudget::new(0, super::introductions::TARGET),
            wheel_next: NOT_LINKED,
            ip4: [0; 4],
            port: 0,
            host4: [0; 4],
            host4_port: 0,
            name: [0; NAME_INLINE],
            generation: 0,
            flags: 0,
        }
    }

    fn occupied(&self) -> bool {
        self.flags & OCCUPIED != 0
    }
}

/// A user to sign in.
pub(crate) struct NewUser<'a> {
    /// The name as the user spelled it.
    pub(crate) name: &'a str,
    /// The static public key the name is bound to.
    pub(crate) key: [u8; KEY_LEN],
    /// Where the sign-in came from.
    pub(crate) addr: SocketAddr,
    /// The session the handshake made.
    pub(crate) session: ServerSession,
    /// The client's index for it.
    pub(crate) remote_index: u32,
    /// Now, in whole seconds since the server started, rounded up.
    pub(crate) last_heard: u32,
    /// The host candidates the user registered; past [`MAX_CANDIDATES`],
    /// the rest are not kept.
    pub(crate) candidates: &'a [SocketAddr],
}

/// The slots and what does not fit in them.
struct Store {
    chunks: Vec<Vec<Slot>>,
    slots: usize,
    long_names: HashMap<u32, Box<str>>,
    v6: HashMap<u32, SocketAddrV6>,
    /// Host candidates not in the slot, as `addr` fields on the wire.
    hosts: HashMap<u32, Box<[u8]>>,
}

impl Store {
    fn slot(&self, index: u32) -> Option<&Slot> {
        let i = usize::try_from(index).ok()?;
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    fn slot_mut(&mut self, index: u32) -> Option<&mut Slot> {
        let i = usize::try_from(index).ok()?;
        self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
    }

    /// A new slot at the end.
    fn push(&mut self) -> u32 {
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(Slot::vacant());
        }
        self.slots += 1;
        // At most MAX_SLOTS, checked by the caller.
        u32::try_from(self.slots - 1).unwrap_or(u32::MAX)
    }

    /// The name in slot `index` ("" for a vacant one).
    fn name(&self, index: u32) -> &str {
        let Some(slot) = self.slot(index) else {
            return "";
        };
        if slot.flags & LONG_NAME != 0 {
            return self.long_names.get(&index).map_or("", |n| n);
        }
        let len = slot
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(NAME_INLINE);
        // Copied from a `&str` that fitted: always UTF-8.
        std::str::from_utf8(&slot.name[..len]).unwrap_or("")
    }

    /// The host candidates of the user in slot `index`.
    fn hosts(&self, index: u32, slot: &Slot) -> HostCandidates {
        let mut hosts = HostCandidates::default();
        if slot.flags & HOST4 != 0 {
            let first = SocketAddrV4::new(Ipv4Addr::from(slot.host4), slot.host4_port);
            hosts.push(SocketAddr::V4(first));
        }
        if slot.flags & MORE_HOSTS != 0
            && let Some(packed) = self.hosts.get(&index)
        {
            for addr in AddrIter::Encoded(packed) {
                hosts.push(addr);
            }
        }
        hosts
    }

    fn addr(&self, index: u32, slot: &Slot) -> SocketAddr {
        if slot.flags & V6 != 0
            && let Some(a) = self.v6.get(&index)
        {
            return SocketAddr::V6(*a);
        }
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(slot.ip4), slot.port))
    }

    fn set_addr(&mut self, index: u32, addr: SocketAddr) {
        let Some(slot) = self.slot_mut(index) else {
            return;
        };
        match addr {
            SocketAddr::V4(a) => {
                slot.ip4 = a.ip().octets();
                slot.port = a.port();
                if slot.flags & V6 != 0 {
                    slot.flags &= !V6;
                    self.v6.remove(&index);
                }
            }
            SocketAddr::V6(a) => {
                slot.flags |= V6;
                slot.port = a.port();
                self.v6.insert(index, a);
            }
        }
    }
}

/// A signed-in user, read through the directory.
#[derive(Clone, Copy)]
pub(crate) struct UserRef<'a> {
    store: &'a Store,
    index: u32,
    slot: &'a Slot,
}

impl<'a> UserRef<'a> {
    /// The name as the user spelled it.
    pub(crate) fn name(&self) -> &'a str {
        self.store.name(self.index)
    }

    /// The static public key the name is bound to.
    pub(crate) fn key(&self) -> &'a [u8; KEY_LEN] {
        &self.slot.key
    }

    /// Where the user's latest authenticated packet came from.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.store.addr(self.index, self.slot)
    }

    /// The host candidates the user registered (its interface addresses),
    /// in order.
    pub(crate) fn candidates(&self) -> HostCandidates {
        self.store.hosts(self.index, self.slot)
    }

    /// The session with the user's client.
    pub(crate) fn session(&self) -> &'a ServerSession {
        &self.slot.session
    }

    /// The client's index for the session.
    pub(crate) fn remote_index(&self) -> u32 {
        self.slot.remote_index
    }

    /// See [`Slot::last_heard`].
    pub(crate) fn last_heard(&self) -> u32 {
        self.slot.last_heard
    }

    /// Introductions sent to the user.
    pub(crate) fn intros_received(&self) -> IntroBudget {
        self.slot.intros_received
    }
}

impl std::fmt::Debug for UserRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name())
            .field("addr", &self.addr())
            .field("candidates", &self.candidates())
            .field("last_heard", &self.slot.last_heard)
            .finish()
    }
}

/// An entry of a [`NameTable`].
#[derive(Clone, Copy, PartialEq, Eq)]
struct NameEntry {
    /// The high 32 bits of the name key's hash.
    tag: u32,
    /// The slot index plus one; 0 for an empty entry.
    slot: u32,
}

const EMPTY: NameEntry = NameEntry { tag: 0, slot: 0 };

/// Slot indices by a 32-bit tag of their name key's hash: open addressing
/// in one array of 8-byte entries, linear probing, removal by backward
/// shift (no tombstones). A lookup reads the entries from the tag's home to
/// the first empty one (at a load of at most 0.6, most often one or two, in
/// one cache line) and asks the caller about those with its tag, so a
/// lookup at a million users costs one miss here before the slot's, where
/// a hashbrown table costs two (control bytes, then buckets).
///
/// The home of a tag is its top bits (as many as the capacity's), so the
/// table grows and shifts entries back from the tags alone, without hashing
/// a name.
struct NameTable {
    /// A power of two long (at least [`NameTable::MIN`]), or empty.
    entries: Box<[NameEntry]>,
    /// 32 minus the capacity's log2: a tag shifted right by it is its home.
    shift: u32,
    len: usize,
}

impl NameTable {
    /// The smallest capacity allocated.
    const MIN: usize = 16;

    fn new() -> Self {
        NameTable {
            entries: Box::default(),
            shift: 32,
            len: 0,
        }
    }

    /// Where a probe for `tag` starts.
    fn home(&self, tag: u32) -> usize {
        // The capacity is at most 2^25 (MAX_SLOTS at a load of 0.6), so
        // the shift is at least 7.
        usize::try_from(tag.checked_shr(self.shift).unwrap_or(0)).unwrap_or(0)
    }

    /// The first slot whose entry has `tag` and that `is` accepts.
    fn find(&self, tag: u32, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        let mask = self.entries.len().checked_sub(1)?;
        let mut i = self.home(tag);
        loop {
            // Never full: the loop meets an empty entry.
            let e = *self.entries.get(i)?;
            let slot = e.slot.checked_sub(1)?;
            if e.tag == tag && is(slot) {
                return Some(slot);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `slot` under `tag` (not there yet), growing first if the load
    /// would pass 0.6.
    fn insert(&mut self, tag: u32, slot: u32) {
        if (self.len + 1) * 5 > self.entries.len() * 3 {
            self.grow();
        }
        self.place(NameEntry {
            tag,
            slot: slot + 1,
        });
        self.len += 1;
    }

    /// Puts `entry` in the first empty place from its home.
    fn place(&mut self, entry: NameEntry) {
        let mask = self.entries.len().wrapping_sub(1);
        let mut i = self.home(entry.tag);
        while let Some(e) = self.entries.get_mut(i) {
            if e.slot == 0 {
                *e = entry;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Doubles the capacity, placing every entry again by its tag.
    fn grow(&mut self) {
        let capacity = (self.entries.len() * 2).max(Self::MIN);
        let old = std::mem::replace(&mut self.entries, vec![EMPTY; capacity].into_boxed_slice());
        self.shift = 32 - capacity.trailing_zeros();
        for entry in old.iter().filter(|e| e.slot != 0) {
            self.place(*entry);
        }
    }

    /// Removes `slot`'s entry under `tag`, if there, and shifts back the
    /// entries after it that may move nearer their homes, so every entry
    /// stays reachable from its home without crossing an empty one.
    fn remove(&mut self, tag: u32, slot: u32) {
        let Some(mask) = self.entries.len().checked_sub(1) else {
            return;
        };
        let wanted = NameEntry {
            tag,
            slot: slot + 1,
        };
        let mut hole = self.home(tag);
        loop {
            match self.entries.get(hole) {
                Some(e) if *e == wanted => break,
                Some(e) if e.slot != 0 => hole = (hole + 1) & mask,
                _ => return,
            }
        }
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let Some(&e) = self.entries.get(i) else {
                return;
            };
            if e.slot == 0 {
                break;
            }
            // `e` may fill the hole if the hole lies between its home and
            // where it is (cyclically).
            let home = self.home(e.tag);
            if (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask) {
                if let Some(h) = self.entries.get_mut(hole) {
                    *h = e;
                }
                hole = i;
            }
        }
        if let Some(h) = self.entries.get_mut(hole) {
            *h = EMPTY;
        }
        self.len -= 1;
    }
}

/// The tag a [`NameTable`] keeps of a name key's hash.
fn name_tag(hash: u64) -> u32 {
    u32::try_from(hash >> 32).unwrap_or(0)
}

/// The directory of signed-in users (see the module docs).
pub(crate) struct Directory {
    store: Store,
    /// Indices of empty slots, reused last-freed first.
    free: Vec<u32>,
    by_name: NameTable,
    by_shape: HashTable<u32>,
    hash_key: [u8; 16],
    /// XORed into every session index: a client still holding an index from
    /// before a restart almost never names a live session of the new run
    /// (it gets "unknown session" and signs in again at once).
    index_mask: u32,
    len: usize,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash key is derived from the server's secret: not shown.
        f.debug_struct("Directory")
            .field("users", &self.len)
            .field("slots", &self.store.slots)
            .finish_non_exhaustive()
    }
}

fn hash_str(key: &[u8; 16], s: &str) -> u64 {
    let mut h = SipHasher13::new_with_key(key);
    h.write(s.as_bytes());
    h.finish()
}

/// The hash of `name`'s [`NameKey`] (no allocation for ASCII names).
fn name_hash(key: &[u8; 16], name: &str) -> u64 {
    NameKey::with_str(name, |k| hash_str(key, k))
}

/// The hash of `name`'s [`Shape`].
fn shape_hash(key: &[u8; 16], name: &str) -> u64 {
    hash_str(key, Shape::new(name).as_str())
}

impl Directory {
    /// An empty directory whose tables hash under `hash_key`.
    pub(crate) fn new(hash_key: [u8; 16]) -> Self {
        Directory {
            store: Store {
                chunks: Vec::new(),
                slots: 0,
                long_names: HashMap::new(),
                v6: HashMap::new(),
                hosts: HashMap::new(),
            },
            free: Vec::new(),
            by_name: NameTable::new(),
            by_shape: HashTable::new(),
            hash_key,
            index_mask: u32::from_be_bytes([hash_key[0], hash_key[1], hash_key[2], hash_key[3]]),
            len: 0,
        }
    }

    /// Users signed in.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn id_of(&self, index: u32) -> UserId {
        let generation = self.store.slot(index).map_or(0, |s| s.generation);
        UserId { index, generation }
    }

    /// The user holding a name with `name`'s key.
    pub(crate) fn by_name(&self, name: &str) -> Option<UserId> {
        let store = &self.store;
        let found = NameKey::with_str(name, |key| {
            let tag = name_tag(hash_str(&self.hash_key, key));
            self.by_name.find(tag, |i| {
                NameKey::with_str(store.name(i), |other| other == key)
            })
        })?;
        Some(self.id_of(found))
    }

    /// The user holding a name with `name`'s shape.
    pub(crate) fn by_shape(&self, name: &str) -> Option<UserId> {
        let shape = Shape::new(name);
        let store = &self.store;
        let found = self
            .by_shape
            .find(hash_str(&self.hash_key, shape.as_str()), |&i| {
                Shape::new(store.name(i)) == shape
            })?;
        Some(self.id_of(*found))
    }

    /// The session index on the wire for `id`: its slot and generation,
    /// masked with a number of this run's.
    pub(crate) fn wire(&self, id: UserId) -> u32 {
        id.packed() ^ self.index_mask
    }

    /// The user whose session index is `wire` (see [`Directory::wire`]).
    pub(crate) fn by_wire(&self, wire: u32) -> Option<UserId> {
        let packed = wire ^ self.index_mask;
        let index = (packed >> 8).checked_sub(1)?;
        let slot = self.store.slot(index)?;
        let id = UserId {
            index,
            generation: slot.generation,
        };
        (slot.occupied() && id.packed() == packed).then_some(id)
    }

    /// The user in slot `slot`, if any.
    pub(crate) fn occupant(&self, slot: u32) -> Option<UserId> {
        let s = self.store.slot(slot)?;
        s.occupied().then_some(UserId {
            index: slot,
            generation: s.generation,
        })
    }

    /// Whether another user fits ([`MAX_SLOTS`]).
    pub(crate) fn has_room(&self) -> bool {
        !self.free.is_empty() || self.store.slots < MAX_SLOTS
    }

    /// The user `id` names, if still signed in.
    pub(crate) fn get(&self, id: UserId) -> Option<UserRef<'_>> {
        let slot = self.store.slot(id.index)?;
        (slot.generation == id.generation && slot.occupied()).then_some(UserRef {
            store: &self.store,
            index: id.index,
            slot,
        })
    }

    /// The user `id` names, if still signed in.
    pub(crate) fn get_mut(&mut self, id: UserId) -> Option<&mut Slot> {
        let slot = self.store.slot_mut(id.index)?;
        (slot.generation == id.generation && slot.occupied()).then_some(slot)
    }

    /// Where `id`'s packets now go.
    pub(crate) fn set_addr(&mut self, id: UserId, addr: SocketAddr) {
        if self.get(id).is_some() {
            self.store.set_addr(id.index, addr);
        }
    }

    /// Adds a user. The caller has checked that its name is free and that
    /// there is room ([`Directory::has_room`]). Returns its id, and whether
    /// its slot still waits in the expiry wheel from an earlier user (then,
    /// at a tick no later than the new user's deadline, so the wheel need
    /// not be told).
    pub(crate) fn insert(&mut self, user: NewUser<'_>) -> (UserId, bool) {
        debug_assert!(self.by_name(user.name).is_none());
        debug_assert!(self.by_shape(user.name).is_none());
        debug_assert!(self.has_room());
        let name_h = name_hash(&self.hash_key, user.name);
        let shape_h = shape_hash(&self.hash_key, user.name);
        let index = match self.free.pop() {
            Some(index) => index,
            None => self.store.push(),
        };
        let bytes = user.name.as_bytes();
        let mut flags = OCCUPIED;
        if bytes.len() > NAME_INLINE || bytes.contains(&0) {
            flags |= LONG_NAME;
            self.store.long_names.insert(index, user.name.into());
        }
        let hosts = &user.candidates[..user.candidates.len().min(MAX_CANDIDATES)];
        let (host4, rest) = match hosts.split_first() {
            Some((SocketAddr::V4(first), rest)) => {
                flags |= HOST4;
                (Some(*first), rest)
            }
            _ => (None, hosts),
        };
        if !rest.is_empty() {
            flags |= MORE_HOSTS;
            self.store.hosts.insert(index, pack(rest));
        }
        let Some(slot) = self.store.slot_mut(index) else {
            unreachable!("a slot just pushed or freed");
        };
        let mut name = [0; NAME_INLINE];
        if flags & LONG_NAME == 0
            && let Some(inline) = name.get_mut(..bytes.len())
        {
            inline.copy_from_slice(bytes);
        }
        slot.session = user.session;
        slot.key = user.key;
        slot.remote_index = user.remote_index;
        slot.last_heard = user.last_heard;
        slot.intros_made = IntroBudget::new(user.last_heard, super::introductions::ASKER);
        slot.intros_received = IntroBudget::new(user.last_heard, super::introductions::TARGET);
        slot.name = name;
        if let Some(first) = host4 {
            slot.host4 = first.ip().octets();
            slot.host4_port = first.port();
        }
        slot.flags = flags;
        let linked = slot.wheel_next != NOT_LINKED;
        self.store.set_addr(index, user.addr);
        self.by_name.insert(name_tag(name_h), index);
        let (store, key) = (&self.store, &self.hash_key);
        self.by_shape
            .insert_unique(shape_h, index, |&i| shape_hash(key, store.name(i)));
        self.len += 1;
        (self.id_of(index), linked)
    }

    /// Removes the user `id` names, returning its name and address; `None`
    /// if it had already left. Its keys are overwritten.
    pub(crate) fn remove(&mut self, id: UserId) -> Option<(String, SocketAddr)> {
        let user = self.get(id)?;
        let (name, addr) = (user.name().to_owned(), user.addr());
        let index = id.index;
        let name_h = name_hash(&self.hash_key, &name);
        let shape_h = shape_hash(&self.hash_key, &name);
        self.by_name.remove(name_tag(name_h), index);
        if let Ok(entry) = self.by_shape.find_entry(shape_h, |&i| i == index) {
            entry.remove();
        }
        let slot = self.store.slot_mut(index)?;
        let flags = slot.flags;
        // Everything but the generation (moved on) and the wheel's link.
        *slot = Slot {
            generation: slot.generation.wrapping_add(1),
            wheel_next: slot.wheel_next,
            ..Slot::vacant()
        };
        if flags & LONG_NAME != 0 {
            self.store.long_names.remove(&index);
        }
        if flags & V6 != 0 {
            self.store.v6.remove(&index);
        }
        if flags & MORE_HOSTS != 0 {
            self.store.hosts.remove(&index);
        }
        self.free.push(index);
        self.len -= 1;
        Some((name, addr))
    }

    /// Users in slot order from `cursor`, as long as `take` accepts them.
    /// Returns the cursor to continue from, or `None` when the walk reached
    /// the end.
    pub(crate) fn page<'a>(
        &'a self,
        cursor: u32,
        mut take: impl FnMut(UserRef<'a>) -> bool,
    ) -> Option<u32> {
        let start = usize::try_from(cursor).unwrap_or(usize::MAX);
        let slots = self.store.chunks.iter().flatten().enumerate().skip(start);
        for (i, slot) in slots {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            if slot.occupied()
                && !take(UserRef {
                    store: &self.store,
                    index,
                    slot,
                })
            {
                return Some(index);
            }
        }
        None
    }
}

/// `addrs` as `addr` fields back to back, as on the wire (what
/// [`AddrIter::Encoded`] reads).
fn pack(addrs: &[SocketAddr]) -> Box<[u8]> {
    let len = addrs
        .iter()
        .map(|a| if a.is_ipv4() { 1 + 4 + 2 } else { 1 + 16 + 2 })
        .sum();
    let mut out = Vec::with_capacity(len);
    for addr in addrs {
        match addr {
            SocketAddr::V4(a) => {
                out.put_u8(4);
                out.put_slice(&a.ip().octets());
                out.put_u16(a.port());
            }
            SocketAddr::V6(a) => {
                out.put_u8(6);
                out.put_slice(&a.ip().octets());
                out.put_u16(a.port());
            }
        }
    }
    out.into_boxed_slice()
}

impl Links for Directory {
    fn link(&self, slot: u32) -> u32 {
        self.store.slot(slot).map_or(NOT_LINKED, |s| s.wheel_next)
    }

    fn set_link(&mut self, slot: u32, link: u32) {
        if let Some(s) = self.store.slot_mut(slot) {
            s.wheel_next = link;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn user(name: &str, port: u16) -> NewUser<'_> {
        NewUser {
            name,
            key: [port as u8; KEY_LEN],
            addr: addr(port),
            session: ServerSession::new(TransportKeys::from_raw(&[9; 32], &[8; 32])),
            remote_index: 1,
            last_heard: 0,
            candidates: &[],
        }
    }

    #[test]
    fn finds_by_name_case_insensitively_and_by_session_index() {
        let mut d = Directory::new([3; 16]);
        let alice = d.insert(user("Alice", 1)).0;
        let zoe = d.insert(user("Zoë", 2)).0;
        assert_eq!(d.by_name("aLICE"), Some(alice));
        assert_eq!(d.by_name("Аlice"), Some(alice), "Cyrillic А");
        assert_eq!(d.by_name("AIice"), None, "capital I: another key");
        assert_eq!(d.by_shape("AIice"), Some(alice), "... but Alice's shape");
        assert_eq!(d.by_name("ZOË"), Some(zoe));
        assert_eq!(d.by_name("Bob"), None);
        assert_eq!(d.by_wire(d.wire(zoe)), Some(zoe));
        assert_eq!(d.by_wire(d.wire(alice)), Some(alice));
        assert_eq!(d.by_wire(d.index_mask), None, "slot 0 is never packed as 0");
        assert_eq!(d.by_wire(d.wire(zoe) ^ 1), None, "another generation");
        assert_eq!(d.by_wire(u32::MAX), None);
        // Another run's directory (another key) finds nothing there.
        let mut e = Directory::new([4; 16]);
        let carole = e.insert(user("Carole", 3)).0;
        assert_eq!(e.by_wire(d.wire(alice)), None);
        assert_eq!(e.by_wire(e.wire(carole)), Some(carole));
        assert_eq!(d.get(alice).map(|u| u.name()), Some("Alice"));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn a_stale_id_finds_nothing_after_its_slot_is_reused() {
        let mut d = Directory::new([3; 16]);
        let alice = d.insert(user("Alice", 1)).0;
        assert!(d.remove(alice).is_some());
        assert!(d.remove(alice).is_none());
        let bob = d.insert(user("Bob", 2)).0;
        assert_ne!(alice, bob);
        assert!(d.get(alice).is_none());
        assert!(d.get_mut(alice).is_none());
        assert_eq!(d.get(bob).map(|u| u.name()), Some("Bob"));
        assert_eq!(d.by_name("alice"), None);
        assert_eq!(d.by_shape("Alice"), None);
        assert_eq!(d.by_wire(d.wire(alice)), None, "the old index is stale");
        assert_eq!(d.by_wire(d.wire(bob)), Some(bob));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn pages_list_every_steady_user_once() {
        let mut d = Directory::new([3; 16]);
        let ids: Vec<UserId> = (0..100)
            .map(|i| d.insert(user(&format!("u{i}"), i)).0)
            .collect();
        let mut seen = Vec::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            // Churn between pages: one user leaves, a new one arrives.
            if round > 0 {
                d.remove(ids[round * 7 % 100]);
                d.insert(user(&format!("new{round}"), 1000 + round as u16));
            }
            round += 1;
            let mut n = 0;
            let next = d.page(cursor, |u| {
                if n == 9 {
                    return false;
                }
                n += 1;
                seen.push(u.name().to_string());
                true
            });
            match next {
                Some(c) => cursor = c,
                None => break,
            }
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "a user listed twice");
        for i in 0..100 {
            let name = format!("u{i}");
            if d.by_name(&name).is_some() {
                assert!(seen.contains(&name), "{name} was signed in throughout");
            }
        }
    }

    #[test]
    fn debug_hides_the_session_keys_and_hash_key() {
        let mut d = Directory::new([3; 16]);
        d.insert(NewUser {
            session: ServerSession::new(TransportKeys::from_raw(&[0xAB; 32], &[0xAB; 32])),
            ..user("Alice", 1)
        });
        let id = d.by_name("Alice").unwrap();
        let text = format!("{d:?} {:?}", d.get(id).unwrap());
        assert!(text.contains("Alice"));
        assert!(!text.contains("171") && !text.contains("[3, 3"), "{text}");
    }

    #[test]
    fn a_slot_is_168_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 168);
    }

    #[test]
    fn long_names_ipv6_addresses_and_candidates_live_beside_the_slot() {
        let mut d = Directory::new([3; 16]);
        let long = "Bartholomew-Featherstonehaugh";
        assert!(long.len() > NAME_INLINE);
        let v6: SocketAddr = "[2001:db8::7]:4000".parse().unwrap();
        let lan: SocketAddr = "192.168.1.7:4000".parse().unwrap();
        let (bart, _) = d.insert(NewUser {
            addr: v6,
            candidates: &[lan],
            ..user(long, 1)
        });
        let (zoe, _) = d.insert(user("Zoë", 2));
        let b = d.get(bart).unwrap();
        assert_eq!((b.name(), b.addr()), (long, v6));
        assert_eq!(b.candidates().as_slice(), &[lan]);
        assert_eq!(d.by_name("bartholomew-featherstonehaugh"), Some(bart));
        assert_eq!(d.by_shape(long), Some(bart));
        assert_eq!(d.get(zoe).unwrap().candidates().as_slice(), &[]);
        d.set_addr(bart, addr(9));
        assert_eq!(d.get(bart).unwrap().addr(), addr(9));
        assert!(d.store.v6.is_empty(), "back on IPv4: the side entry goes");
        d.set_addr(bart, v6);
        assert_eq!(d.remove(bart), Some((long.to_owned(), v6)));
        let s = &d.store;
        assert!(s.v6.is_empty() && s.long_names.is_empty() && s.hosts.is_empty());
        assert_eq!(d.by_name(long), None);
        assert_eq!(d.by_name("zoë"), Some(zoe));
    }

    #[test]
    fn a_first_ipv4_candidate_lives_in_the_slot_and_the_rest_packed_beside_it() {
        let mut d = Directory::new([3; 16]);
        let lan: SocketAddr = "192.168.1.10:5000".parse().unwrap();
        let lan2: SocketAddr = "10.0.0.7:5001".parse().unwrap();
        let global: SocketAddr = "[2001:db8::10]:5000".parse().unwrap();
        let home = d.insert(NewUser {
            candidates: &[lan],
            ..user("home", 1)
        });
        assert!(
            d.store.hosts.is_empty(),
            "one IPv4 candidate: no side entry"
        );
        let dual = d.insert(NewUser {
            candidates: &[lan, global, lan2],
            ..user("dual", 2)
        });
        let v6_first = d.insert(NewUser {
            candidates: &[global, lan],
            ..user("v6first", 3)
        });
        let get = |d: &Directory, id: (UserId, bool)| d.get(id.0).unwrap().candidates();
        assert_eq!(get(&d, home).as_slice(), &[lan]);
        assert_eq!(get(&d, dual).as_slice(), &[lan, global, lan2], "in order");
        assert_eq!(get(&d, v6_first).as_slice(), &[global, lan], "in order");
        // Packed as on the wire: 19 bytes an IPv6 address, 7 an IPv4 one.
        let packed = |id: (UserId, bool)| d.store.hosts.get(&id.0.slot()).map(|b| b.len());
        assert_eq!(packed(dual), Some(19 + 7));
        assert_eq!(packed(v6_first), Some(19 + 7));
        // Leaving takes the side entry; the slot's next user has none of
        // the last one's candidates.
        d.remove(dual.0);
        d.remove(home.0);
        assert_eq!(d.store.hosts.len(), 1);
        let next = d.insert(user("next", 4));
        assert_eq!(next.0.slot(), home.0.slot(), "the slot is reused");
        assert_eq!(get(&d, next).as_slice(), &[]);
        // At most MAX_CANDIDATES are kept.
        let many: Vec<SocketAddr> = (1..=20)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 5000)))
            .collect();
        let crowd = d.insert(NewUser {
            candidates: &many,
            ..user("crowd", 5)
        });
        assert_eq!(get(&d, crowd).as_slice(), &many[..MAX_CANDIDATES]);
    }

    #[test]
    fn names_up_to_the_inline_length_stay_in_the_slot() {
        let mut d = Directory::new([3; 16]);
        let fits = "a".repeat(NAME_INLINE);
        let over = "b".repeat(NAME_INLINE + 1);
        let nul = "c\0d";
        let ids: Vec<UserId> = [fits.as_str(), &over, nul, "Zoë"]
            .iter()
            .enumerate()
            .map(|(i, n)| d.insert(user(n, i as u16)).0)
            .collect();
        assert_eq!(d.store.long_names.len(), 2, "the long one and the NUL one");
        for (id, n) in ids.iter().zip([fits.as_str(), &over, nul, "Zoë"]) {
            assert_eq!(d.get(*id).unwrap().name(), n);
            assert_eq!(d.by_name(n), Some(*id));
        }
    }

    #[test]
    fn a_reused_slot_keeps_its_place_in_the_expiry_wheel() {
        let mut d = Directory::new([3; 16]);
        let (alice, linked) = d.insert(user("Alice", 1));
        assert!(!linked);
        assert_eq!(d.link(alice.slot()), NOT_LINKED);
        d.set_link(alice.slot(), 42);
        d.remove(alice);
        assert_eq!(d.occupant(alice.slot()), None);
        assert_eq!(d.link(alice.slot()), 42, "still in its bucket");
        let (bob, linked) = d.insert(user("Bob", 2));
        assert_eq!(bob.slot(), alice.slot());
        assert!(linked, "the wheel will hand the slot back; no second entry");
        assert_eq!(d.occupant(bob.slot()), Some(bob));
        assert_eq!(d.link(12345), NOT_LINKED, "a slot never made");
    }

    /// Slots `table` finds under `tag`.
    fn found(table: &NameTable, tag: u32, slots: &[u32]) -> Vec<u32> {
        slots
            .iter()
            .filter_map(|&s| table.find(tag, |i| i == s))
            .collect()
    }

    #[test]
    fn the_name_table_finds_removes_and_grows_with_colliding_tags() {
        let mut t = NameTable::new();
        assert_eq!(t.find(5, |_| true), None, "empty, nothing allocated");
        t.remove(5, 0);
        // 40 slots under one tag (one home, one long run) and 40 under
        // tags of their own whose homes wrap past the table's end.
        let same: Vec<u32> = (0..40).collect();
        let wrapping: Vec<u32> = (40..80).collect();
        let wrap_tag = |s: u32| u32::MAX - s;
        for (&a, &b) in same.iter().zip(&wrapping) {
            t.insert(7, a);
            t.insert(wrap_tag(b), b);
        }
        assert_eq!(t.len, 80);
        assert_eq!(t.entries.len(), 256, "grown to keep the load <= 0.6");
        assert_eq!(found(&t, 7, &same), same);
        for &b in &wrapping {
            assert_eq!(t.find(wrap_tag(b), |i| i == b), Some(b));
            assert_eq!(t.find(wrap_tag(b), |_| true), Some(b));
        }
        assert_eq!(t.find(7, |i| i == 40), None, "another tag's slot");
        assert_eq!(t.find(8, |_| true), None);
        // Remove every other one; the rest stay reachable.
        for &s in same.iter().chain(&wrapping).step_by(2) {
            let tag = if s < 40 { 7 } else { wrap_tag(s) };
            t.remove(tag, s);
            t.remove(tag, s);
            assert_eq!(t.find(tag, |i| i == s), None);
        }
        assert_eq!(t.len, 40);
        let kept: Vec<u32> = same.iter().copied().skip(1).step_by(2).collect();
        assert_eq!(found(&t, 7, &same), kept);
        for &b in wrapping.iter().skip(1).step_by(2) {
            assert_eq!(t.find(wrap_tag(b), |i| i == b), Some(b));
        }
        assert_eq!(t.entries.iter().filter(|e| e.slot != 0).count(), 40);
    }

    #[test]
    fn the_name_table_agrees_with_a_map_under_random_churn() {
        let mut t = NameTable::new();
        let mut model: HashMap<u32, u32> = HashMap::new();
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let slot = u32::try_from(x % 600).unwrap();
            // Few distinct tags, spread over the homes: long shared runs.
            let tag = u32::try_from((x >> 20) % 24).unwrap() << 27;
            match model.get(&slot) {
                Some(&old) => {
                    t.remove(old, slot);
                    model.remove(&slot);
                }
                None => {
                    t.insert(tag, slot);
                    model.insert(slot, tag);
                }
            }
        }
        assert_eq!(t.len, model.len());
        assert!(t.len * 5 <= t.entries.len() * 3);
        for slot in 0..600 {
            let at = model.get(&slot).copied();
            for tag in (0..24).map(|k| k << 27) {
                let hit = t.find(tag, |i| i == slot);
                assert_eq!(hit.is_some(), at == Some(tag), "slot {slot} tag {tag}");
            }
        }
    }

    #[test]
    fn slots_come_in_whole_chunks() {
        let mut d = Directory::new([3; 16]);
        let names: Vec<String> = (0..CHUNK + 1).map(|i| format!("u{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            d.insert(user(name, i as u16));
        }
        assert_eq!(d.store.chunks.len(), 2);
        assert!(d.store.chunks.iter().all(|c| c.capacity() == CHUNK));
        let last = d.by_name(&names[CHUNK]).unwrap();
        assert_eq!(d.by_wire(d.wire(last)), Some(last));
        assert_eq!(d.get(last).unwrap().name(), names[CHUNK]);
    }
}
