//! The validated-token cache: from a token's SHA-256 to the identity it
//! proved, until the token expires (or five minutes, whichever is first),
//! bounded by the bytes its entries hold.
//!
//! Built for the decision path rather than taken from a general cache crate:
//! a hit is a read lock on one of [`SHARDS`] shards, a hash-table probe and a
//! reference-count increment — no queue of reads to replay, no timer wheel, no
//! per-entry bookkeeping beyond the entry itself (a general cache spent more
//! than the identity on each entry: about a kilobyte). Expiry is by the wall
//! clock ([`crate::clock::Clock::wall`], which never goes back), checked on
//! every hit; expired entries are swept from a shard at most every
//! [`SWEEP_EVERY`] seconds, when something is inserted into it. When a shard
//! holds more than its share of the byte budget, the entries least recently
//! used go first (by the second of their last hit) until it holds 7/8 of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use crate::decision::Identity;

/// Independent parts of the cache (by a byte of the key), so that inserts and
/// sweeps in one do not stop hits in the others.
pub const SHARDS: usize = 16;
/// Seconds between sweeps of a shard's expired entries.
pub const SWEEP_EVERY: i64 = 30;

/// What one entry costs besides what its identity holds: the key and the
/// entry in the hash table (with the table's control byte and its spare
/// room) and the identity's reference counts.
pub const ENTRY_OVERHEAD: usize = 160;

struct Entry {
    identity: Arc<Identity>,
    /// Wall-clock second after which the entry is not used.
    valid_until: i64,
    /// Wall-clock second of the last hit (for eviction).
    used: AtomicU32,
    weight: u32,
}

/// Hashes a cache key, which is already a SHA-256 digest, by taking eight of its
/// bytes: a second hash over it would add nothing. Only verified tokens enter
/// the cache, so nobody can choose keys to crowd one bucket.
#[derive(Debug, Clone, Copy, Default)]
pub struct DigestHasher;

impl std::hash::BuildHasher for DigestHasher {
    type Hasher = DigestHash;
    fn build_hasher(&self) -> DigestHash {
        DigestHash(0)
    }
}

/// See [`DigestHasher`].
#[derive(Debug, Default)]
pub struct DigestHash(u64);

impl std::hash::Hasher for DigestHash {
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its bytes (arrays have no length prefix);
        // fold whatever arrives so any other input still spreads.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Default)]
struct Shard {
    map: HashMap<[u8; 32], Entry, DigestHasher>,
    bytes: usize,
    next_sweep: i64,
}

impl Shard {
    fn remove_where(&mut self, mut drop_it: impl FnMut(&Entry) -> bool) {
        let mut freed = 0usize;
        self.map.retain(|_, e| {
            let d = drop_it(e);
            if d {
                freed += e.weight as usize;
            }
            !d
        });
        self.bytes -= freed;
        // Give back the table's room after a mass expiry.
        if self.map.capacity() > 4 * self.map.len().max(64) {
            self.map.shrink_to_fit();
        }
    }

    /// Expired entries out; then, while over `budget`, the least recently used.
    fn make_room(&mut self, now: i64, budget: usize) {
        self.remove_where(|e| e.valid_until <= now);
        if self.bytes <= budget {
            return;
        }
        let target = budget - budget / 8;
        let mut by_age: Vec<(u32, [u8; 32])> = self
            .map
            .iter()
            .map(|(k, e)| (e.used.load(Ordering::Relaxed), *k))
            .collect();
        by_age.sort_unstable();
        for (_, k) in by_age {
            if self.bytes <= target {
                break;
            }
            if let Some(e) = self.map.remove(&k) {
                self.bytes -= e.weight as usize;
            }
        }
    }
}

/// See the module documentation.
pub struct TokenCache {
    shards: Box<[RwLock<Shard>]>,
    shard_budget: usize,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.len())
            .field("bytes", &self.bytes())
            .finish()
    }
}

fn second(now: i64) -> u32 {
    now.clamp(0, u32::MAX as i64) as u32
}

impl TokenCache {
    /// A cache holding at most `max_bytes` (by the weights given to [`Self::insert`]).
    pub fn new(max_bytes: u64) -> Self {
        let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        TokenCache {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            shard_budget: max / SHARDS,
        }
    }

    fn shard(&self, key: &[u8; 32]) -> &RwLock<Shard> {
        &self.shards[key[31] as usize % SHARDS]
    }

    /// The identity cached for `key`, if its entry is still valid at `now`
    /// (wall-clock seconds).
    pub fn get(&self, key: &[u8; 32], now: i64) -> Option<Arc<Identity>> {
        // A poisoned lock (a panic while holding it) only means a half-done
        // sweep: every entry in the map is still a whole, verified one.
        let shard = self.shard(key).read().unwrap_or_else(|p| p.into_inner());
        let e = shard.map.get(key)?;
        if e.valid_until <= now {
            return None;
        }
        let s = second(now);
        if e.used.load(Ordering::Relaxed) != s {
            e.used.store(s, Ordering::Relaxed);
        }
        Some(e.identity.clone())
    }

    /// Caches `identity` for `key` until `valid_until` (wall-clock seconds);
    /// `weight` is the bytes the entry holds ([`ENTRY_OVERHEAD`] plus the
    /// identity's).
    pub fn insert(
        &self,
        key: [u8; 32],
        identity: Arc<Identity>,
        valid_until: i64,
        weight: usize,
        now: i64,
    ) {
        let weight = u32::try_from(weight).unwrap_or(u32::MAX);
        if weight as usize > self.shard_budget || valid_until <= now {
            return;
        }
        let mut shard = self.shard(&key).write().unwrap_or_else(|p| p.into_inner());
        if now >= shard.next_sweep {
            shard.remove_where(|e| e.valid_until <= now);
            shard.next_sweep = now + SWEEP_EVERY;
        }
        let entry = Entry {
            identity,
            valid_until,
            used: AtomicU32::new(second(now)),
            weight,
        };
        if let Some(old) = shard.map.insert(key, entry) {
            shard.bytes -= old.weight as usize;
        }
        shard.bytes += weight as usize;
        if shard.bytes > self.shard_budget {
            shard.make_room(now, self.shard_budget);
        }
    }

    /// Forgets one token.
    pub fn remove(&self, key: &[u8; 32]) {
        let mut shard = self.shard(key).write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = shard.map.remove(key) {
            shard.bytes -= old.weight as usize;
        }
    }

    /// Forgets every token (a key was withdrawn).
    pub fn clear(&self) {
        for s in self.shards.iter() {
            let mut shard = s.write().unwrap_or_else(|p| p.into_inner());
            shard.map = HashMap::default();
            shard.bytes = 0;
        }
    }

    /// Entries held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The weight of everything held, in bytes.
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).bytes)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::PrincipalParts;

    fn identity() -> Arc<Identity> {
        Arc::new(Identity::new(
            PrincipalParts {
                issuer: "https://issuer.example".into(),
                sub: "alice".into(),
                ..Default::default()
            },
            None,
            0,
        ))
    }

    fn key(i: u32) -> [u8; 32] {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_be_bytes());
        k[31] = (i % 251) as u8;
        k
    }

    #[test]
    fn entries_expire_by_the_wall_clock() {
        let c = TokenCache::new(1 << 20);
        c.insert(key(1), identity(), 100, 200, 50);
        assert!(c.get(&key(1), 99).is_some());
        assert!(c.get(&key(1), 100).is_none());
        assert!(c.get(&key(2), 50).is_none());
        // Already expired: not inserted at all.
        c.insert(key(3), identity(), 100, 200, 100);
        assert_eq!(c.len(), 1);
        // The next insert into the same shard after the sweep interval sweeps.
        let same_shard = (0..10_000u32)
            .find(|i| *i != 1 && key(*i)[31] as usize % SHARDS == key(1)[31] as usize % SHARDS)
            .unwrap();
        c.insert(key(same_shard), identity(), 500, 200, 100 + SWEEP_EVERY);
        assert_eq!(c.len(), 1);
        assert_eq!(c.bytes(), 200);
    }

    #[test]
    fn the_budget_holds_and_the_least_recently_used_go_first() {
        let budget = SHARDS * 10_000;
        let c = TokenCache::new(budget as u64);
        for i in 0..5_000u32 {
            c.insert(key(i), identity(), 10_000, 300, 1_000 + (i / 100) as i64);
        }
        assert!(c.bytes() <= budget, "{}", c.bytes());
        assert!(c.len() > budget / 300 / 2, "{}", c.len());
        // The newest entries stayed; the oldest went.
        assert!(c.get(&key(4_999), 2_000).is_some());
        assert!(c.get(&key(0), 2_000).is_none());
        // A hit makes an old entry young again.
        let survivor = (4_000..5_000u32)
            .find(|i| c.get(&key(*i), 3_000).is_some())
            .unwrap();
        for i in 5_000..10_000u32 {
            let now = 3_000 + (i / 100) as i64;
            c.insert(key(i), identity(), 10_000, 300, now);
            c.get(&key(survivor), now);
        }
        assert!(c.bytes() <= budget);
        assert!(c.get(&key(survivor), 3_000).is_some());
        // Something larger than a shard's budget is not cached.
        c.insert(key(20_000), identity(), 10_000, budget, 3_000);
        assert!(c.get(&key(20_000), 3_000).is_none());
        c.clear();
        assert_eq!((c.len(), c.bytes()), (0, 0));
    }
}
