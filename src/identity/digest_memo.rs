//! The SHA-256 of recently seen bearer tokens, remembered per thread so that a
//! token asked about again is not hashed again.
//!
//! The token cache is keyed by the token's SHA-256 (collision-resistant against
//! tokens an attacker chooses, 32 bytes a token however long it is). Hashing is
//! the largest single cost of a cached decision: ~0.6 µs for a 770-byte
//! Keycloak-shaped token even with the CPU's SHA extensions. This memo maps a
//! token's exact bytes to its digest: a small direct-mapped table per thread,
//! the slot chosen by the token's last eight bytes (a JWT's signature), an entry
//! found only when every byte is equal — compared in constant time, so that how
//! long a comparison takes says nothing about a remembered token. A digest is
//! a pure function of the bytes, so nothing here can go stale: whether the
//! token is still valid stays the cache's question. Only tokens the cache
//! vouched for are remembered (callers call [`remember`] after a hit or a
//! verification); attacker-chosen garbage can at worst push one out, which
//! costs a hash, never a wrong answer. A thread keeps at most 64 tokens (as
//! its connections' read buffers hold the ones being read), each at most
//! [`MAX_LEN`] bytes.

use crate::crypto::Sha256;
use std::cell::RefCell;

/// Slots per thread (a power of two).
const SLOTS: usize = 64;
/// Below this a token's SHA-256 is a block or two: cheaper than the lookup.
pub const MIN_LEN: usize = 96;
/// Above this a token is not kept (the memo holds at most SLOTS × MAX_LEN bytes
/// a thread).
pub const MAX_LEN: usize = 4096;

#[derive(Default)]
struct Slot {
    token: Vec<u8>,
    digest: [u8; 32],
}

thread_local! {
    static MEMO: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

fn slot_of(token: &[u8]) -> usize {
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&token[token.len() - 8..]);
    let mixed = u64::from_le_bytes(tail).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> (64 - SLOTS.trailing_zeros())) as usize
}

/// Equal lengths and equal bytes, in time that depends only on the length.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    let words = a8.zip(b8).fold(0u64, |acc, (x, y)| {
        let x = u64::from_ne_bytes(x.try_into().unwrap_or_default());
        let y = u64::from_ne_bytes(y.try_into().unwrap_or_default());
        acc | (x ^ y)
    });
    (words | u64::from(tail)) == 0
}

fn kept(token: &[u8]) -> bool {
    (MIN_LEN..=MAX_LEN).contains(&token.len())
}

/// The remembered SHA-256 of exactly these bytes, if this thread has it.
pub fn recall(token: &[u8]) -> Option<[u8; 32]> {
    if !kept(token) {
        return None;
    }
    MEMO.with(|m| {
        let m = m.borrow();
        let slot = m.get(slot_of(token))?;
        same(&slot.token, token).then_some(slot.digest)
    })
}

/// Remembers `digest` as the SHA-256 of `token` (which the caller computed).
pub fn remember(token: &[u8], digest: &[u8; 32]) {
    if !kept(token) {
        return;
    }
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        if m.is_empty() {
            m.resize_with(SLOTS, Slot::default);
        }
        let slot = &mut m[slot_of(token)];
        // The slot's buffer is reused: no allocation once it has grown.
        slot.token.clear();
        slot.token.extend_from_slice(token);
        slot.digest = *digest;
    });
}

/// The token's SHA-256: remembered, or computed (and not remembered: see
/// [`remember`]). The flag says whether it was remembered.
pub fn sha256(token: &[u8]) -> ([u8; 32], bool) {
    match recall(token) {
        Some(d) => (d, true),
        None => (Sha256::digest(token), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(n: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| b'A' + ((i as u8).wrapping_mul(7) ^ n) % 58)
            .collect()
    }

    #[test]
    fn only_the_exact_bytes_recall_their_own_digest() {
        let t = token(1, 700);
        assert_eq!(recall(&t), None, "nothing is remembered before remember()");
        assert_eq!(sha256(&t), (Sha256::digest(&t), false));
        remember(&t, &Sha256::digest(&t));
        assert_eq!(sha256(&t), (Sha256::digest(&t), true));
        // Same slot (same last eight bytes), one byte different anywhere: not found.
        for i in 0..t.len() - 8 {
            let mut u = t.clone();
            u[i] ^= 1;
            assert_eq!(slot_of(&u), slot_of(&t));
            assert_eq!(recall(&u), None, "byte {i} differs");
        }
        // A prefix or an extension with the same tail is not the token either.
        let mut longer = t[..t.len() - 8].to_vec();
        longer.extend_from_slice(b"x");
        longer.extend_from_slice(&t[t.len() - 8..]);
        assert_eq!(recall(&longer), None);
        assert_eq!(recall(&t[1..]), None);
    }

    #[test]
    fn a_slot_holds_the_last_token_remembered_in_it() {
        let a = token(2, 500);
        let mut b = token(3, 520);
        let n = b.len();
        b[n - 8..].copy_from_slice(&a[a.len() - 8..]); // the same slot
        remember(&a, &Sha256::digest(&a));
        remember(&b, &Sha256::digest(&b));
        assert_eq!(recall(&a), None, "pushed out, not confused");
        assert_eq!(recall(&b), Some(Sha256::digest(&b)));
        remember(&a, &Sha256::digest(&a));
        assert_eq!(recall(&b), None);
        assert_eq!(recall(&a), Some(Sha256::digest(&a)));
    }

    #[test]
    fn short_and_huge_tokens_are_not_kept() {
        for len in [0, 1, 8, MIN_LEN - 1, MAX_LEN + 1] {
            let t = token(4, len);
            remember(&t, &Sha256::digest(&t));
            assert_eq!(recall(&t), None, "length {len}");
            assert_eq!(sha256(&t), (Sha256::digest(&t), false));
        }
    }

    #[test]
    fn the_comparison_is_byte_equality() {
        for len in [0usize, 1, 7, 8, 9, 15, 16, 17, 100] {
            let a = token(5, len);
            assert!(same(&a, &a.clone()));
            for i in 0..len {
                let mut b = a.clone();
                b[i] ^= 0x80;
                assert!(!same(&a, &b), "len {len}, byte {i}");
            }
            assert!(!same(&a, &token(5, len + 1)));
        }
    }
}
