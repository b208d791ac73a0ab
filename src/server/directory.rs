//! Who is signed in: a slab of users, found by name or by session index.
//!
//! Users live in a `Vec` of slots; a [`UserId`] is a slot index plus the
//! slot's generation, so an id kept by a timer or a probe after its user left
//! (and the slot was reused) finds nothing instead of the wrong user. The
//! id, packed into 32 bits ([`Directory::wire`]: 24 bits of slot, 8 of
//! generation, masked with a number of the run), is the server's session
//! index on the wire: a Sealed packet
//! finds its session with one slot read. The index is a hint, not a proof:
//! the session's keys decide whether the packet is the user's. Two hash
//! tables of bare slot indices find a user by name key ([`NameKey`]: case and
//! look-alike characters ignored) and by shape ([`Shape`]: the case-keeping
//! skeleton, which catches `AIice` for `Alice`). They hash with SipHash-1-3
//! under a key from the server's secret, so nobody can choose names that
//! collide. Addresses find nothing: a session is found by its index, so a
//! client may move, and many may share one address behind a NAT.
//!
//! Memory per user: one slot (the name's pointer, static key, address,
//! session keys and counters, generation, last-heard second and two name
//! hashes), the name's bytes, and a `u32` plus a control byte in each table;
//! no per-user allocation but the name. Lookups cost a hash, one table probe
//! and one slot read, whatever the number of users.
//!
//! Paging walks the slab in slot order from a cursor: a user signed in for the
//! whole walk is listed exactly once (its slot does not move); one who signs in
//! or out during the walk may or may not be.

use std::hash::Hasher;
use std::net::SocketAddr;

use hashbrown::HashTable;
use siphasher::sip::SipHasher13;

use crate::crypto::KEY_LEN;
use crate::name::{NameKey, Shape};
use crate::session::Session;

use super::introductions::IntroBudget;

/// The most slots: a slot index fits the 24 bits [`Directory::wire`] gives it.
pub(crate) const MAX_SLOTS: usize = 1 << 24;

/// A signed-in user's handle: stale once the user leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct UserId {
    index: u32,
    generation: u32,
}

impl UserId {
    /// Slot (plus one) in the high 24 bits, the low 8 bits of the
    /// generation below; see [`Directory::wire`].
    fn packed(self) -> u32 {
        ((self.index + 1) << 8) | (self.generation & 0xff)
    }
}

/// A signed-in user.
pub(crate) struct User {
    /// The name as the user spelled it.
    pub(crate) name: Box<str>,
    /// The static public key the name is bound to.
    pub(crate) key: [u8; KEY_LEN],
    /// Where the user's latest authenticated packet came from.
    pub(crate) addr: SocketAddr,
    /// The session with the user's client.
    pub(crate) session: Session<2>,
    /// When the user was last heard from, in whole seconds since the server
    /// started, rounded up (so a timeout counted from it is never early).
    pub(crate) last_heard: u32,
    /// The host candidates the user registered (its interface addresses).
    pub(crate) candidates: Box<[SocketAddr]>,
    /// Introductions made on the user's behalf (its lookups to write).
    pub(crate) intros_made: IntroBudget,
    /// Introductions sent to the user.
    pub(crate) intros_received: IntroBudget,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("candidates", &self.candidates)
            .field("last_heard", &self.last_heard)
            .finish()
    }
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    /// Hash of the name's key (see [`Directory::name_hash`]).
    name_hash: u64,
    /// Hash of the name's shape (see [`Directory::shape_hash`]).
    shape_hash: u64,
    user: Option<User>,
}

/// The directory of signed-in users (see the module docs).
pub(crate) struct Directory {
    slots: Vec<Slot>,
    /// Indices of empty slots, reused last-freed first.
    free: Vec<u32>,
    by_name: HashTable<u32>,
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
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// An empty directory whose tables hash under `hash_key`.
    pub(crate) fn new(hash_key: [u8; 16]) -> Self {
        Directory {
            slots: Vec::new(),
            free: Vec::new(),
            by_name: HashTable::new(),
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

    fn hash_str(&self, s: &str) -> u64 {
        let mut h = SipHasher13::new_with_key(&self.hash_key);
        h.write(s.as_bytes());
        h.finish()
    }

    /// The hash of `name`'s [`NameKey`] (no allocation for ASCII names).
    fn name_hash(&self, name: &str) -> u64 {
        NameKey::with_str(name, |key| self.hash_str(key))
    }

    /// The hash of `name`'s [`Shape`].
    fn shape_hash(&self, name: &str) -> u64 {
        self.hash_str(Shape::new(name).as_str())
    }

    fn id_of(&self, index: u32) -> UserId {
        let generation = usize::try_from(index)
            .ok()
            .and_then(|i| self.slots.get(i))
            .map_or(0, |s| s.generation);
        UserId { index, generation }
    }

    /// The user holding a name with `name`'s key.
    pub(crate) fn by_name(&self, name: &str) -> Option<UserId> {
        let hash = self.name_hash(name);
        let found = self.by_name.find(hash, |&i| {
            let slot = &self.slots[i as usize];
            slot.name_hash == hash
                && slot.user.as_ref().is_some_and(|u| {
                    NameKey::with_str(&u.name, |a| NameKey::with_str(name, |b| a == b))
                })
        })?;
        Some(self.id_of(*found))
    }

    /// The user holding a name with `name`'s shape.
    pub(crate) fn by_shape(&self, name: &str) -> Option<UserId> {
        let hash = self.shape_hash(name);
        let shape = Shape::new(name);
        let found = self.by_shape.find(hash, |&i| {
            let slot = &self.slots[i as usize];
            slot.shape_hash == hash
                && slot
                    .user
                    .as_ref()
                    .is_some_and(|u| Shape::new(&u.name) == shape)
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
        let slot = self.slots.get(usize::try_from(index).ok()?)?;
        let id = UserId {
            index,
            generation: slot.generation,
        };
        (slot.user.is_some() && id.packed() == packed).then_some(id)
    }

    /// Whether another user fits ([`MAX_SLOTS`]).
    pub(crate) fn has_room(&self) -> bool {
        !self.free.is_empty() || self.slots.len() < MAX_SLOTS
    }

    /// The user `id` names, if still signed in.
    pub(crate) fn get(&self, id: UserId) -> Option<&User> {
        let slot = self.slots.get(usize::try_from(id.index).ok()?)?;
        (slot.generation == id.generation)
            .then_some(slot.user.as_ref())
            .flatten()
    }

    /// The user `id` names, if still signed in.
    pub(crate) fn get_mut(&mut self, id: UserId) -> Option<&mut User> {
        let slot = self.slots.get_mut(usize::try_from(id.index).ok()?)?;
        (slot.generation == id.generation)
            .then_some(slot.user.as_mut())
            .flatten()
    }

    /// Adds a user. The caller has checked that its name is free and that
    /// there is room ([`Directory::has_room`]).
    pub(crate) fn insert(&mut self, user: User) -> UserId {
        debug_assert!(self.by_name(&user.name).is_none());
        debug_assert!(self.by_shape(&user.name).is_none());
        debug_assert!(self.has_room());
        let name_hash = self.name_hash(&user.name);
        let shape_hash = self.shape_hash(&user.name);
        let index = match self.free.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.name_hash = name_hash;
                slot.shape_hash = shape_hash;
                slot.user = Some(user);
                index
            }
            None => {
                // More than u32::MAX users would exhaust memory long before.
                let index = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push(Slot {
                    generation: 0,
                    name_hash,
                    shape_hash,
                    user: Some(user),
                });
                index
            }
        };
        let slots = &self.slots;
        self.by_name
            .insert_unique(name_hash, index, |&i| slots[i as usize].name_hash);
        self.by_shape
            .insert_unique(shape_hash, index, |&i| slots[i as usize].shape_hash);
        self.len += 1;
        self.id_of(index)
    }

    /// Removes the user `id` names; `None` if it had already left.
    pub(crate) fn remove(&mut self, id: UserId) -> Option<User> {
        let slot = self.slots.get_mut(usize::try_from(id.index).ok()?)?;
        if slot.generation != id.generation {
            return None;
        }
        let user = slot.user.take()?;
        let (name_hash, shape_hash) = (slot.name_hash, slot.shape_hash);
        slot.generation = slot.generation.wrapping_add(1);
        let index = id.index;
        if let Ok(entry) = self.by_name.find_entry(name_hash, |&i| i == index) {
            entry.remove();
        }
        if let Ok(entry) = self.by_shape.find_entry(shape_hash, |&i| i == index) {
            entry.remove();
        }
        self.free.push(index);
        self.len -= 1;
        Some(user)
    }

    /// Users in slot order from `cursor`, as long as `take` accepts them.
    /// Returns the cursor to continue from, or `None` when the walk reached
    /// the end.
    pub(crate) fn page<'a>(
        &'a self,
        cursor: u32,
        mut take: impl FnMut(&'a User) -> bool,
    ) -> Option<u32> {
        let start = usize::try_from(cursor).unwrap_or(usize::MAX);
        for (i, slot) in self.slots.iter().enumerate().skip(start) {
            if let Some(user) = &slot.user
                && !take(user)
            {
                return Some(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::TransportKeys;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn user(name: &str, port: u16) -> User {
        User {
            name: name.into(),
            key: [port as u8; KEY_LEN],
            addr: addr(port),
            session: Session::new(TransportKeys::from_raw(&[9; 32], &[8; 32]), 1),
            last_heard: 0,
            candidates: Box::new([]),
            intros_made: IntroBudget::new(0, crate::server::introductions::ASKER),
            intros_received: IntroBudget::new(0, crate::server::introductions::TARGET),
        }
    }

    #[test]
    fn finds_by_name_case_insensitively_and_by_session_index() {
        let mut d = Directory::new([3; 16]);
        let alice = d.insert(user("Alice", 1));
        let zoe = d.insert(user("Zoë", 2));
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
        let carole = e.insert(user("Carole", 3));
        assert_eq!(e.by_wire(d.wire(alice)), None);
        assert_eq!(e.by_wire(e.wire(carole)), Some(carole));
        assert_eq!(d.get(alice).map(|u| &*u.name), Some("Alice"));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn a_stale_id_finds_nothing_after_its_slot_is_reused() {
        let mut d = Directory::new([3; 16]);
        let alice = d.insert(user("Alice", 1));
        assert!(d.remove(alice).is_some());
        assert!(d.remove(alice).is_none());
        let bob = d.insert(user("Bob", 2));
        assert_ne!(alice, bob);
        assert!(d.get(alice).is_none());
        assert!(d.get_mut(alice).is_none());
        assert_eq!(d.get(bob).map(|u| &*u.name), Some("Bob"));
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
            .map(|i| d.insert(user(&format!("u{i}"), i)))
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
                seen.push(u.name.to_string());
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
        d.insert(User {
            session: Session::new(TransportKeys::from_raw(&[0xAB; 32], &[0xAB; 32]), 1),
            ..user("Alice", 1)
        });
        let id = d.by_name("Alice").unwrap();
        let text = format!("{d:?} {:?}", d.get(id).unwrap());
        assert!(text.contains("Alice"));
        assert!(!text.contains("171") && !text.contains("[3, 3"), "{text}");
    }
}
