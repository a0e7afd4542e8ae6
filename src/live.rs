//! Denials as live events: the decision path offers each denial here, and
//! the admin sockets subscribed to `denials` receive a sample of them.
//!
//! The decision path must never wait or do work for nobody: when no socket
//! listens, an offer is one atomic load; when one does, at most
//! `admin.live.denials_per_second` offers a second (over all sockets) are
//! built and sent on a broadcast channel (a send never waits; a socket that
//! falls behind loses events, which it is told). The denials left out are
//! counted in the next event's `skipped`. Each event is serialized once, as
//! the socket message, and shared by every socket.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

/// One denial, as an admin sees it (no credentials, no query string).
#[derive(Debug, Clone, Serialize)]
pub struct Denial {
    pub time: i64,
    pub endpoint: &'static str,
    pub result: &'static str,
    pub reason: &'static str,
    /// Why a credential was refused (`token_expired`, ...), when one was.
    pub detail: Option<&'static str>,
    pub rule: Option<usize>,
    pub user: Option<String>,
    pub method: String,
    pub host: String,
    pub path: String,
    pub client: IpAddr,
    /// Denials since the previous event that were not sent (rate limit).
    pub skipped: u64,
}

#[derive(Debug)]
pub struct DenialFeed {
    tx: broadcast::Sender<Arc<str>>,
    listeners: AtomicUsize,
    /// `(second << 32) | sent in that second`.
    window: AtomicU64,
    skipped: AtomicU64,
    per_second: u32,
}

/// A subscription; the feed stops building events when the last is dropped.
pub struct DenialListener {
    rx: broadcast::Receiver<Arc<str>>,
    feed: Arc<DenialFeed>,
}

impl Drop for DenialListener {
    fn drop(&mut self) {
        self.feed.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

impl DenialListener {
    /// The next event: the whole socket message
    /// (`{"type":"event","topic":"denials","denial":{...}}`).
    pub async fn recv(&mut self) -> Result<Arc<str>, broadcast::error::RecvError> {
        self.rx.recv().await
    }
}

impl DenialFeed {
    pub fn new(per_second: u32) -> Arc<DenialFeed> {
        Arc::new(DenialFeed {
            tx: broadcast::channel(256).0,
            listeners: AtomicUsize::new(0),
            window: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            per_second,
        })
    }

    pub fn listen(self: &Arc<Self>) -> DenialListener {
        self.listeners.fetch_add(1, Ordering::Relaxed);
        DenialListener {
            rx: self.tx.subscribe(),
            feed: self.clone(),
        }
    }

    /// Does anybody listen? (One atomic load: the decision path asks first.)
    #[inline]
    pub fn wanted(&self) -> bool {
        self.listeners.load(Ordering::Relaxed) > 0
    }

    /// Offer a denial at `now` (seconds); `make` runs only for one that is sent.
    pub fn offer(&self, now: i64, make: impl FnOnce(u64) -> Denial) {
        if !self.wanted() {
            return;
        }
        if !self.admit(now as u64) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let skipped = self.skipped.swap(0, Ordering::Relaxed);
        let message =
            serde_json::json!({"type": "event", "topic": "denials", "denial": make(skipped)});
        let _ = self.tx.send(message.to_string().into());
    }

    /// Take one of this second's places, if any is left.
    fn admit(&self, sec: u64) -> bool {
        let mut cur = self.window.load(Ordering::Relaxed);
        loop {
            let (s, n) = (cur >> 32, cur & 0xffff_ffff);
            let next = if s != (sec & 0xffff_ffff) {
                ((sec & 0xffff_ffff) << 32) | 1
            } else if n < u64::from(self.per_second) {
                cur + 1
            } else {
                return false;
            };
            match self
                .window
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(skipped: u64) -> Denial {
        Denial {
            time: 0,
            endpoint: "forward",
            result: "forbidden",
            reason: "rule",
            detail: None,
            rule: Some(1),
            user: None,
            method: "GET".into(),
            host: "h".into(),
            path: "/".into(),
            client: IpAddr::from([127, 0, 0, 1]),
            skipped,
        }
    }

    #[tokio::test]
    async fn nothing_is_built_without_a_listener_and_the_rate_is_bounded() {
        let feed = DenialFeed::new(3);
        feed.offer(100, |_| panic!("built for nobody"));
        let mut l = feed.listen();
        for _ in 0..10 {
            feed.offer(100, denial);
        }
        feed.offer(101, denial);
        let mut got = vec![];
        while let Ok(m) = l.rx.try_recv() {
            let v: serde_json::Value = serde_json::from_str(&m).unwrap();
            assert_eq!(v["topic"], "denials");
            got.push(v["denial"]["skipped"].as_u64().unwrap());
        }
        assert_eq!(
            got,
            vec![0, 0, 0, 7],
            "3 a second, then the 7 left out are counted"
        );
        drop(l);
        assert!(!feed.wanted());
        feed.offer(102, |_| panic!("built after the last listener left"));
    }
}
