//! The audit chain, pure: the canonical encoding an entry's hash covers, signed
//! checkpoints, and verification that names the first thing wrong — a changed
//! entry, a gap, a fork, reordering, a truncated tail or a rollback.

use std::collections::HashMap;
use std::fmt::Write;

use crate::crypto::Sha256;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The predecessor of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const DOMAIN: &[u8] = b"gatehouse audit entry v1";
const CHECKPOINT_DOMAIN: &[u8] = b"gatehouse audit checkpoint v1";

/// One audit entry as stored, exported and hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub seq: i64,
    /// RFC 3339, UTC, seconds.
    pub time: String,
    pub actor: String,
    /// The actor's client address ("" when there is none, e.g. the server itself).
    pub actor_addr: String,
    pub action: String,
    pub target: String,
    pub result: String,
    /// A JSON object; hashed in canonical form (sorted keys, no spaces).
    pub details: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// What a writer supplies; sequence and hashes come from the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub actor: String,
    pub actor_addr: String,
    pub action: String,
    pub target: String,
    pub result: String,
    pub details: Value,
}

impl NewEntry {
    pub fn new(
        actor: &str,
        addr: &str,
        action: &str,
        target: &str,
        result: &str,
        details: Value,
    ) -> Self {
        NewEntry {
            actor: actor.into(),
            actor_addr: addr.into(),
            action: action.into(),
            target: target.into(),
            result: result.into(),
            details,
        }
    }
}

/// Canonical JSON: object keys sorted (serde_json's map is ordered), compact.
pub fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sorted(v)).unwrap_or_default()
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    // Length-prefixed: no two different field lists encode to the same bytes.
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The hash of an entry over every field but `hash` itself.
pub fn entry_hash(e: &Entry) -> String {
    let mut h = Sha256::new();
    field(&mut h, DOMAIN);
    field(&mut h, &e.seq.to_be_bytes());
    field(&mut h, e.time.as_bytes());
    field(&mut h, e.actor.as_bytes());
    field(&mut h, e.actor_addr.as_bytes());
    field(&mut h, e.action.as_bytes());
    field(&mut h, e.target.as_bytes());
    field(&mut h, e.result.as_bytes());
    field(&mut h, canonical_json(&e.details).as_bytes());
    field(&mut h, e.prev_hash.as_bytes());
    hex(&h.finalize())
}

/// The next entry after `prev` (seq, hash), sealed.
pub fn seal(n: &NewEntry, prev: Option<(i64, &str)>, time: String) -> Entry {
    let (seq, prev_hash) = match prev {
        Some((s, h)) => (s + 1, h.to_string()),
        None => (1, GENESIS.to_string()),
    };
    let mut e = Entry {
        seq,
        time,
        actor: n.actor.clone(),
        actor_addr: n.actor_addr.clone(),
        action: n.action.clone(),
        target: n.target.clone(),
        result: n.result.clone(),
        details: if n.details.is_object() {
            n.details.clone()
        } else {
            Value::Object(Default::default())
        },
        prev_hash,
        hash: String::new(),
    };
    e.hash = entry_hash(&e);
    e
}

/// A signed statement that the chain had `hash` at `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub time: String,
    /// HMAC-SHA256 over the fields above, hex.
    pub mac: String,
}

fn checkpoint_mac(key: &[u8], seq: i64, hash: &str, time: &str) -> String {
    hex(&crate::crypto::hmac_sha256_framed(
        key,
        &[
            CHECKPOINT_DOMAIN,
            &seq.to_be_bytes(),
            hash.as_bytes(),
            time.as_bytes(),
        ],
    ))
}

impl Checkpoint {
    pub fn sign(key: &[u8], seq: i64, hash: &str, time: String) -> Checkpoint {
        Checkpoint {
            seq,
            hash: hash.to_string(),
            mac: checkpoint_mac(key, seq, hash, &time),
            time,
        }
    }
    pub fn valid(&self, key: &[u8]) -> bool {
        let want = checkpoint_mac(key, self.seq, &self.hash, &self.time);
        crate::crypto::constant_time_eq(want.as_bytes(), self.mac.as_bytes())
    }
}

/// What is wrong with a chain, at the first place it goes wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Break {
    /// An entry (line `at` of a file, or a row) cannot be read at all.
    Unreadable { at: String, why: String },
    /// The entry's fields do not hash to its `hash`: it was changed.
    HashMismatch { seq: i64 },
    /// The entry's `prev_hash` is not its predecessor's hash.
    BrokenLink { seq: i64 },
    /// Sequence numbers jump: entries are missing.
    Gap { after: i64, next: i64 },
    /// Two entries claim the same sequence number or the same predecessor.
    Fork { seq: i64 },
    /// Entries are not in sequence order.
    Reordered { seq: i64 },
    /// The first entry is not the chain's beginning.
    BadStart { seq: i64 },
    /// A checkpoint was signed for a later entry than the log has.
    TruncatedTail { last: i64, checkpoint: i64 },
    /// A checkpoint names another hash for one of the log's entries.
    Rollback { seq: i64 },
    /// A checkpoint's signature is wrong (forged, or another key).
    BadCheckpoint { seq: i64 },
}

impl Break {
    pub fn seq(&self) -> Option<i64> {
        match self {
            Self::Unreadable { .. } => None,
            Self::HashMismatch { seq }
            | Self::BrokenLink { seq }
            | Self::Fork { seq }
            | Self::Reordered { seq }
            | Self::BadStart { seq }
            | Self::Rollback { seq }
            | Self::BadCheckpoint { seq } => Some(*seq),
            Self::Gap { next, .. } => Some(*next),
            Self::TruncatedTail { checkpoint, .. } => Some(*checkpoint),
        }
    }
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreadable { at, why } => write!(f, "entry at {at} cannot be read: {why}"),
            Self::HashMismatch { seq } => write!(f, "entry {seq} was altered: its hash does not match its contents"),
            Self::BrokenLink { seq } => write!(f, "entry {seq} does not follow its predecessor (prev_hash mismatch)"),
            Self::Gap { after, next } => write!(f, "entries missing between {after} and {next}"),
            Self::Fork { seq } => write!(f, "the chain forks at entry {seq}: two entries share a sequence number or a predecessor"),
            Self::Reordered { seq } => write!(f, "entry {seq} is out of order"),
            Self::BadStart { seq } => write!(f, "the chain starts at entry {seq}, not at 1 from the genesis hash"),
            Self::TruncatedTail { last, checkpoint } => write!(f, "the log ends at entry {last} but a checkpoint was signed at entry {checkpoint}: its tail was deleted"),
            Self::Rollback { seq } => write!(f, "checkpoint at entry {seq} names another hash: the log was rolled back or rewritten"),
            Self::BadCheckpoint { seq } => write!(f, "checkpoint at entry {seq} has an invalid signature"),
        }
    }
}

/// The verdict on a log and its checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub ok: bool,
    pub entries: i64,
    pub head: String,
    /// Entries after the last valid checkpoint (not yet covered by a signature).
    pub unanchored: i64,
    pub checkpoints: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Break>,
}

/// An entry as read, or why it could not be read (with where it was).
pub type Read = Result<Entry, (String, String)>;

/// Verifies entries in the order they were read, then the checkpoints against
/// them. `key` is the checkpoint key; without one, checkpoints are not checked.
pub fn verify(
    entries: impl IntoIterator<Item = Read>,
    checkpoints: &[Checkpoint],
    key: Option<&[u8]>,
) -> Report {
    let mut count = 0i64;
    let mut prev: Option<Entry> = None;
    let mut by_seq: HashMap<i64, String> = HashMap::new();
    let mut seen_prev: std::collections::HashSet<String> = Default::default();
    let fail = |count: i64, head: &Option<Entry>, b: Break| Report {
        ok: false,
        entries: count,
        head: head
            .as_ref()
            .map(|e| e.hash.clone())
            .unwrap_or_else(|| GENESIS.into()),
        unanchored: 0,
        checkpoints: checkpoints.len(),
        error: Some(b),
    };
    let mut all = Vec::new();
    for r in entries {
        match r {
            Ok(e) => all.push(e),
            Err((at, why)) => return fail(0, &None, Break::Unreadable { at, why }),
        }
    }
    let mut seqs = std::collections::HashSet::new();
    for e in &all {
        if !seqs.insert(e.seq) {
            return fail(0, &None, Break::Fork { seq: e.seq });
        }
    }
    // Out of order (a file's lines moved): say so rather than report a gap.
    if let Some(w) = all.windows(2).find(|w| w[1].seq < w[0].seq) {
        if w[1].seq != w[0].seq {
            return fail(0, &None, Break::Reordered { seq: w[1].seq });
        }
    }
    for e in all {
        if by_seq.contains_key(&e.seq) {
            return fail(count, &prev, Break::Fork { seq: e.seq });
        }
        if seen_prev.contains(&e.prev_hash) {
            return fail(count, &prev, Break::Fork { seq: e.seq });
        }
        if entry_hash(&e) != e.hash {
            return fail(count, &prev, Break::HashMismatch { seq: e.seq });
        }
        match &prev {
            None => {
                if e.seq != 1 || e.prev_hash != GENESIS {
                    return fail(count, &prev, Break::BadStart { seq: e.seq });
                }
            }
            Some(p) => {
                if e.seq < p.seq {
                    return fail(count, &prev, Break::Reordered { seq: e.seq });
                }
                if e.seq > p.seq + 1 {
                    return fail(
                        count,
                        &prev,
                        Break::Gap {
                            after: p.seq,
                            next: e.seq,
                        },
                    );
                }
                if e.prev_hash != p.hash {
                    return fail(count, &prev, Break::BrokenLink { seq: e.seq });
                }
            }
        }
        by_seq.insert(e.seq, e.hash.clone());
        seen_prev.insert(e.prev_hash.clone());
        count += 1;
        prev = Some(e);
    }
    let last = prev.as_ref().map_or(0, |e| e.seq);
    let mut anchored = 0i64;
    if let Some(key) = key {
        for c in checkpoints {
            if !c.valid(key) {
                return fail(count, &prev, Break::BadCheckpoint { seq: c.seq });
            }
            if c.seq > last {
                return fail(
                    count,
                    &prev,
                    Break::TruncatedTail {
                        last,
                        checkpoint: c.seq,
                    },
                );
            }
            match by_seq.get(&c.seq) {
                Some(h) if *h == c.hash => anchored = anchored.max(c.seq),
                _ => return fail(count, &prev, Break::Rollback { seq: c.seq }),
            }
        }
    }
    Report {
        ok: true,
        entries: count,
        head: prev.map(|e| e.hash).unwrap_or_else(|| GENESIS.into()),
        unanchored: last - anchored,
        checkpoints: checkpoints.len(),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: i64) -> Vec<Entry> {
        let mut out: Vec<Entry> = vec![];
        for i in 0..n {
            let ne = NewEntry::new(
                "alice",
                "192.0.2.1",
                "allowlist.add",
                &format!("10.0.{i}.0/24"),
                "ok",
                json!({"i": i}),
            );
            let prev = out.last().map(|e| (e.seq, e.hash.as_str()));
            let e = seal(&ne, prev, format!("2026-11-23T00:00:{:02}Z", i % 60));
            out.push(e);
        }
        out
    }

    fn ok(v: &[Entry]) -> Vec<Read> {
        v.iter().cloned().map(Ok).collect()
    }

    const KEY: &[u8] = b"checkpoint key";

    #[test]
    fn intact_chain_verifies() {
        let c = chain(10);
        let cps = vec![Checkpoint::sign(KEY, 5, &c[4].hash, "t".into())];
        let r = verify(ok(&c), &cps, Some(KEY));
        assert!(r.ok, "{r:?}");
        assert_eq!((r.entries, r.unanchored), (10, 5));
        assert_eq!(r.head, c[9].hash);
        let empty = verify(vec![], &[], Some(KEY));
        assert!(empty.ok && empty.entries == 0 && empty.head == GENESIS);
    }

    #[test]
    fn encoding_is_unambiguous() {
        let a = seal(
            &NewEntry::new("ab", "", "c", "", "", json!({})),
            None,
            "t".into(),
        );
        let b = seal(
            &NewEntry::new("a", "", "bc", "", "", json!({})),
            None,
            "t".into(),
        );
        assert_ne!(a.hash, b.hash);
        let c = seal(
            &NewEntry::new("a", "", "b", "", "", json!({"x": 1, "y": 2})),
            None,
            "t".into(),
        );
        let mut d = c.clone();
        d.details = serde_json::from_str(r#"{"y":2,"x":1}"#).unwrap();
        assert_eq!(entry_hash(&d), c.hash, "key order does not matter");
    }

    #[test]
    fn each_tampering_is_named() {
        let c = chain(10);
        let mut edited = c.clone();
        edited[4].target = "0.0.0.0/0".into();
        assert_eq!(
            verify(ok(&edited), &[], None).error,
            Some(Break::HashMismatch { seq: 5 })
        );

        // Edited and re-hashed: the next link breaks.
        let mut rehashed = c.clone();
        rehashed[4].target = "0.0.0.0/0".into();
        rehashed[4].hash = entry_hash(&rehashed[4]);
        assert_eq!(
            verify(ok(&rehashed), &[], None).error,
            Some(Break::BrokenLink { seq: 6 })
        );

        let mut deleted = c.clone();
        deleted.remove(4);
        assert_eq!(
            verify(ok(&deleted), &[], None).error,
            Some(Break::Gap { after: 4, next: 6 })
        );

        let mut reordered = c.clone();
        reordered.swap(3, 4);
        assert_eq!(
            verify(ok(&reordered), &[], None).error,
            Some(Break::Reordered { seq: 4 })
        );
        let mut back = c.clone();
        let e = back.remove(2);
        back.insert(6, e);
        assert_eq!(
            verify(ok(&back), &[], None).error,
            Some(Break::Reordered { seq: 3 })
        );

        // Two writers that both appended after entry 5.
        let mut fork = c[..5].to_vec();
        let prev = (c[4].seq, c[4].hash.as_str());
        fork.push(seal(
            &NewEntry::new("x", "", "a", "", "", json!({})),
            Some(prev),
            "t".into(),
        ));
        fork.push(seal(
            &NewEntry::new("y", "", "b", "", "", json!({})),
            Some(prev),
            "t".into(),
        ));
        assert_eq!(
            verify(ok(&fork), &[], None).error,
            Some(Break::Fork { seq: 6 })
        );

        let headless = c[1..].to_vec();
        assert_eq!(
            verify(ok(&headless), &[], None).error,
            Some(Break::BadStart { seq: 2 })
        );

        // The tail deleted after a checkpoint at 8.
        let cps = vec![Checkpoint::sign(KEY, 8, &c[7].hash, "t".into())];
        assert_eq!(
            verify(ok(&c[..6]), &cps, Some(KEY)).error,
            Some(Break::TruncatedTail {
                last: 6,
                checkpoint: 8
            })
        );
        // Rolled back to an older copy and continued differently.
        let mut rolled = c[..6].to_vec();
        let prev = (rolled[5].seq, rolled[5].hash.clone());
        for i in 0..4 {
            let p = rolled
                .last()
                .map(|e| (e.seq, e.hash.clone()))
                .unwrap_or(prev.clone());
            rolled.push(seal(
                &NewEntry::new("z", "", "other", &i.to_string(), "", json!({})),
                Some((p.0, &p.1)),
                "t".into(),
            ));
        }
        assert_eq!(
            verify(ok(&rolled), &cps, Some(KEY)).error,
            Some(Break::Rollback { seq: 8 })
        );
        // A forged checkpoint.
        let forged = vec![Checkpoint::sign(b"another key", 8, &c[7].hash, "t".into())];
        assert_eq!(
            verify(ok(&c), &forged, Some(KEY)).error,
            Some(Break::BadCheckpoint { seq: 8 })
        );
        // Unreadable.
        let mut reads = ok(&c);
        reads[3] = Err(("line 4".into(), "not JSON".into()));
        assert_eq!(
            verify(reads, &[], None).error,
            Some(Break::Unreadable {
                at: "line 4".into(),
                why: "not JSON".into()
            })
        );
    }
}
