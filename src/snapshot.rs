//! A snapshot that is nearly always empty — the bans and the revocations in
//! force — read on every decision. An [`ArcSwap`] load costs two atomic
//! read-modify-writes (its guard's debt slot); asking [`Sparse::nonempty`]
//! costs one plain atomic read while the snapshot is empty, and the load only
//! when there is something to look at.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};

/// What a [`Sparse`] snapshot needs to know about its value.
pub trait Emptiness {
    fn is_empty(&self) -> bool;
}

/// An [`ArcSwap`]ped value with an "anything in it?" flag that always agrees
/// with the last value stored: writers go one at a time and set the flag
/// after the value, so a reader that sees the flag up sees that value or a
/// later one, and a reader that sees it down read before the value arrived —
/// as it could have with a plain load.
#[derive(Debug)]
pub struct Sparse<T> {
    value: ArcSwap<T>,
    nonempty: AtomicBool,
    writer: Mutex<()>,
}

impl<T: Emptiness> Sparse<T> {
    pub fn new(value: T) -> Self {
        Sparse {
            nonempty: AtomicBool::new(!value.is_empty()),
            value: ArcSwap::from_pointee(value),
            writer: Mutex::new(()),
        }
    }

    /// The current value, empty or not.
    pub fn load(&self) -> Guard<Arc<T>> {
        self.value.load()
    }

    /// The current value when it has anything in it; `None` (without loading
    /// it) when it is empty.
    pub fn nonempty(&self) -> Option<Guard<Arc<T>>> {
        if !self.nonempty.load(Ordering::Acquire) {
            return None;
        }
        let v = self.value.load();
        (!v.is_empty()).then_some(v)
    }

    pub fn store(&self, value: T) {
        self.update(|_| value);
    }

    /// Replaces the value with one made from it, with no other write between.
    pub fn update(&self, f: impl FnOnce(&T) -> T) {
        let _one_writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let next = f(&self.value.load());
        let nonempty = !next.is_empty();
        self.value.store(Arc::new(next));
        self.nonempty.store(nonempty, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Emptiness for Vec<u32> {
        fn is_empty(&self) -> bool {
            <[u32]>::is_empty(self)
        }
    }

    #[test]
    fn the_flag_follows_every_write() {
        let s = Sparse::new(Vec::new());
        assert!(s.nonempty().is_none());
        s.store(vec![1]);
        assert_eq!(**s.nonempty().unwrap(), vec![1]);
        s.update(|v| v.iter().map(|x| x + 1).collect());
        assert_eq!(**s.nonempty().unwrap(), vec![2]);
        s.update(|_| Vec::new());
        assert!(s.nonempty().is_none());
        assert!(s.load().is_empty());
        s.update(|v| {
            let mut v = v.clone();
            v.push(7);
            v
        });
        assert_eq!(**s.nonempty().unwrap(), vec![7]);
    }

    #[test]
    fn concurrent_writers_leave_flag_and_value_agreeing() {
        let s = Arc::new(Sparse::new(Vec::new()));
        let writers: Vec<_> = (0..4u32)
            .map(|w| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000u32 {
                        if (i + w) % 2 == 0 {
                            s.store(vec![i]);
                        } else {
                            s.store(Vec::new());
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(s.nonempty().is_some(), !s.load().is_empty());
        assert_eq!(s.nonempty.load(Ordering::SeqCst), !s.load().is_empty());
    }
}
