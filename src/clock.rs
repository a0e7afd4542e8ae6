//! Injected time. Two readings, because a system clock can step (a wrong
//! clock set right, a VM resumed, an operator's `date -s`):
//!
//! - [`Clock::now`] is gatehouse's own time, for the deadlines it sets itself
//!   (session inactivity and lifetime, bans, failure windows, caches). It
//!   follows the wall clock while that runs smoothly (NTP slewing included),
//!   but a step of more than [`STEP_MS`] (looked for once a second) is not
//!   followed: its size is noted
//!   (a warning, `gatehouse_clock_steps_total`) and gatehouse's time goes on
//!   from where it was, so nothing it granted ends early and nothing it ended
//!   comes back. A restart adopts the wall clock again.
//! - [`Clock::wall`] is the wall clock as the identity provider sees it, for
//!   instants others wrote (`exp`, `nbf`, `iat`, revocation cut-offs, audit
//!   timestamps): it follows a step forward (usually a wrong clock set right),
//!   but not a step back — it goes on from where it was — so a token seen
//!   expired stays expired and one about to expire does not live longer.
//!
//! Both are seconds since the Unix epoch.

use std::sync::atomic::{fence, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Seconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// gatehouse's own time (steps of the system clock are not followed).
    fn now(&self) -> i64;
    /// The wall clock: steps forward followed, steps back not.
    fn wall(&self) -> i64 {
        self.now()
    }
    /// Both readings at once ([`Clock::now`], [`Clock::wall`]): one look at
    /// the time for the decision path.
    fn now_and_wall(&self) -> (i64, i64) {
        (self.now(), self.wall())
    }
    /// System clock steps seen so far (for the metrics).
    fn steps(&self) -> u64 {
        0
    }
    /// Nanoseconds on a clock that never steps, from some fixed point: for
    /// durations and for knowing when a second has passed.
    fn stamp(&self) -> i64 {
        process_ns()
    }
    /// [`Clock::now_and_wall`] and the [`Clock::stamp`] they were read at:
    /// the decision path's one look at the time before it decides.
    fn now_wall_stamp(&self) -> (i64, i64, i64) {
        let stamp = self.stamp();
        let (now, wall) = self.now_and_wall();
        (now, wall, stamp)
    }
}

/// Nanoseconds since this process first asked (a monotonic clock).
fn process_ns() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos()
        .try_into()
        .unwrap_or(i64::MAX)
}

/// The wall clock, read directly (command-line tools; no step handling).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemSource::wall_ms_now() / 1000
    }
}

/// A clock that only moves when told to (tests). As a [`Clock`] it is the
/// bare wall reading; as a [`TimeSource`] under a [`SteadyClock`] it can
/// also be stepped without time passing ([`ManualClock::step`]).
#[derive(Debug, Default)]
pub struct ManualClock {
    wall: AtomicI64,
    elapsed: AtomicI64,
}

impl ManualClock {
    pub fn new(start: i64) -> Arc<Self> {
        Arc::new(ManualClock {
            wall: AtomicI64::new(start),
            elapsed: AtomicI64::new(0),
        })
    }
    /// Sets the wall clock (a step; no time passes).
    pub fn set(&self, t: i64) {
        self.wall.store(t, Ordering::SeqCst);
    }
    /// Time passes: the wall clock and elapsed time move together.
    pub fn advance(&self, secs: i64) {
        self.elapsed.fetch_add(secs, Ordering::SeqCst);
        self.wall.fetch_add(secs, Ordering::SeqCst);
    }
    /// The wall clock steps by `secs` (either way) without time passing.
    pub fn step(&self, secs: i64) {
        self.wall.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.wall.load(Ordering::SeqCst)
    }
}

/// Where a [`SteadyClock`] reads time, in milliseconds.
pub trait TimeSource: Send + Sync + std::fmt::Debug {
    /// The wall clock (may step).
    fn wall_ms(&self) -> i64;
    /// Time passed since some fixed point, in nanoseconds, never stepping
    /// (including time the machine was suspended).
    fn elapsed_ns(&self) -> i64;
    /// [`TimeSource::elapsed_ns`] in milliseconds.
    fn elapsed_ms(&self) -> i64 {
        self.elapsed_ns().div_euclid(1_000_000)
    }
}

impl TimeSource for ManualClock {
    fn wall_ms(&self) -> i64 {
        self.wall.load(Ordering::SeqCst) * 1000
    }
    fn elapsed_ns(&self) -> i64 {
        self.elapsed.load(Ordering::SeqCst) * 1_000_000_000
    }
}

/// The system's clocks: the wall clock, and the boot-time clock (Linux
/// `CLOCK_BOOTTIME`, which counts suspended time too) for elapsed time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemSource;

impl SystemSource {
    fn wall_ms_now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

impl TimeSource for SystemSource {
    fn wall_ms(&self) -> i64 {
        Self::wall_ms_now()
    }
    fn elapsed_ns(&self) -> i64 {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            // Through libc (not a raw vDSO call), so it also runs under valgrind.
            if let Ok(t) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
                return t.tv_sec() * 1_000_000_000 + t.tv_nsec();
            }
        }
        process_ns()
    }
}

/// A wall clock reading further than this from what elapsed time predicts is a step.
pub const STEP_MS: i64 = 2_000;
/// How often a read also looks at the wall clock (to follow slewing and see steps).
const CHECK_MS: i64 = 1_000;

/// Where gatehouse's time was at one elapsed-time reading.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    elapsed_ms: i64,
    own_ms: i64,
    /// Steps absorbed so far: own time = wall - offset.
    offset_ms: i64,
    /// The forward steps among them: the wall reading = own time + forward.
    forward_ms: i64,
}

/// The anchor, read on every decision and written about once a second (by
/// the one reader holding `SteadyClock::moving`): a sequence lock over atomics,
/// so a read is a few plain loads, where a swapped pointer's costs two atomic
/// read-modify-writes.
#[derive(Debug)]
struct AnchorCell {
    /// Odd while a write is under way.
    seq: AtomicU64,
    elapsed_ms: AtomicI64,
    own_ms: AtomicI64,
    offset_ms: AtomicI64,
    forward_ms: AtomicI64,
}

impl AnchorCell {
    fn new(a: Anchor) -> Self {
        AnchorCell {
            seq: AtomicU64::new(0),
            elapsed_ms: AtomicI64::new(a.elapsed_ms),
            own_ms: AtomicI64::new(a.own_ms),
            offset_ms: AtomicI64::new(a.offset_ms),
            forward_ms: AtomicI64::new(a.forward_ms),
        }
    }

    fn read(&self) -> Anchor {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before.is_multiple_of(2) {
                let a = Anchor {
                    elapsed_ms: self.elapsed_ms.load(Ordering::Relaxed),
                    own_ms: self.own_ms.load(Ordering::Relaxed),
                    offset_ms: self.offset_ms.load(Ordering::Relaxed),
                    forward_ms: self.forward_ms.load(Ordering::Relaxed),
                };
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    return a;
                }
            }
            std::hint::spin_loop();
        }
    }

    /// Only under `SteadyClock::moving` (one writer at a time).
    fn write(&self, a: Anchor) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.elapsed_ms.store(a.elapsed_ms, Ordering::Relaxed);
        self.own_ms.store(a.own_ms, Ordering::Relaxed);
        self.offset_ms.store(a.offset_ms, Ordering::Relaxed);
        self.forward_ms.store(a.forward_ms, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }
}

/// The production clock: see the module's description.
#[derive(Debug)]
pub struct SteadyClock<S: TimeSource> {
    src: S,
    anchor: AnchorCell,
    /// Held by the reader that checks the wall clock (others never wait for it).
    moving: Mutex<()>,
    /// The largest values handed out (seconds): neither reading goes back.
    own_high: AtomicI64,
    wall_high: AtomicI64,
    steps: AtomicU64,
}

impl SteadyClock<SystemSource> {
    pub fn system() -> Self {
        Self::over(SystemSource)
    }
}

impl<S: TimeSource> SteadyClock<S> {
    pub fn over(src: S) -> Self {
        let (wall, elapsed) = (src.wall_ms(), src.elapsed_ms());
        SteadyClock {
            anchor: AnchorCell::new(Anchor {
                elapsed_ms: elapsed,
                own_ms: wall,
                offset_ms: 0,
                forward_ms: 0,
            }),
            src,
            moving: Mutex::new(()),
            own_high: AtomicI64::new(wall.div_euclid(1000)),
            wall_high: AtomicI64::new(wall.div_euclid(1000)),
            steps: AtomicU64::new(0),
        }
    }

    /// gatehouse's own time in milliseconds, and the forward steps absorbed.
    /// A read costs one elapsed-time reading; at most every [`CHECK_MS`] a
    /// read also looks at the wall clock, follows its slewing and notes a
    /// step (so a step is seen within a second, and own time never jumps).
    fn own_ms(&self) -> (i64, i64) {
        self.own_ms_at(self.src.elapsed_ms())
    }

    /// [`SteadyClock::own_ms`] at an elapsed-time reading just taken.
    fn own_ms_at(&self, elapsed: i64) -> (i64, i64) {
        let a = self.anchor.read();
        let expected = a.own_ms + (elapsed - a.elapsed_ms);
        if elapsed - a.elapsed_ms < CHECK_MS {
            return (expected, a.forward_ms);
        }
        // One reader checks; the others go on from the anchor meanwhile.
        let Ok(_g) = self.moving.try_lock() else {
            return (expected, a.forward_ms);
        };
        let cur = self.anchor.read();
        if cur.elapsed_ms != a.elapsed_ms || cur.offset_ms != a.offset_ms {
            return (cur.own_ms + (elapsed - cur.elapsed_ms), cur.forward_ms);
        }
        let candidate = self.src.wall_ms() - a.offset_ms;
        let step = candidate - expected;
        let to = if step.abs() <= STEP_MS {
            // Running smoothly (slewing included): follow the wall clock.
            Anchor {
                elapsed_ms: elapsed,
                own_ms: candidate,
                ..a
            }
        } else {
            // A step: keep time going from the anchor, remember the difference.
            self.steps.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                step_secs = step as f64 / 1000.0,
                "the system clock stepped; gatehouse keeps its own time for sessions, bans and \
                 other deadlines it set (no early ends, nothing ended comes back), and compares \
                 token times with the wall clock (never going back); a restart adopts the new time"
            );
            Anchor {
                elapsed_ms: elapsed,
                own_ms: expected,
                offset_ms: a.offset_ms + step,
                forward_ms: a.forward_ms + step.max(0),
            }
        };
        self.anchor.write(to);
        (to.own_ms, to.forward_ms)
    }
}

/// `v`, or the largest value handed out before when `v` is below it.
fn never_back(high: &AtomicI64, v: i64) -> i64 {
    let h = high.load(Ordering::Relaxed);
    if v > h {
        high.fetch_max(v, Ordering::Relaxed).max(v)
    } else {
        h
    }
}

impl<S: TimeSource> Clock for SteadyClock<S> {
    fn now(&self) -> i64 {
        never_back(&self.own_high, self.own_ms().0.div_euclid(1000))
    }
    fn wall(&self) -> i64 {
        let (own, forward) = self.own_ms();
        never_back(&self.wall_high, (own + forward).div_euclid(1000))
    }
    fn now_and_wall(&self) -> (i64, i64) {
        let (now, wall, _) = self.now_wall_stamp();
        (now, wall)
    }
    fn stamp(&self) -> i64 {
        self.src.elapsed_ns()
    }
    fn now_wall_stamp(&self) -> (i64, i64, i64) {
        // One reading of the elapsed-time clock for all three.
        let stamp = self.src.elapsed_ns();
        let (own, forward) = self.own_ms_at(stamp.div_euclid(1_000_000));
        (
            never_back(&self.own_high, own.div_euclid(1000)),
            never_back(&self.wall_high, (own + forward).div_euclid(1000)),
            stamp,
        )
    }
    fn steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }
}

impl<S: TimeSource> TimeSource for Arc<S> {
    fn wall_ms(&self) -> i64 {
        (**self).wall_ms()
    }
    fn elapsed_ns(&self) -> i64 {
        (**self).elapsed_ns()
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch (UTC).
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Parses what [`rfc3339`] writes (also with fractional seconds or a `+00:00`
/// offset), or plain Unix seconds; `None` for anything else.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" | "+00:00" | "-00:00" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (rest.get(1..3)?.parse::<i64>().ok()? * 3600
                + rest.get(4..6)?.parse::<i64>().ok()? * 60)
        }
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    // days_from_civil
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2.rem_euclid(400);
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t = days * 86_400 + h * 3600 + mi * 60 + se - offset;
    // Only real dates round-trip (no 31 February).
    let written = format!("{}T{}", &s[..10], &s[11..19]);
    (rfc3339(t + offset).get(..19) == Some(written.as_str())).then_some(t)
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_400_000), "2026-11-23T02:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for t in [0, 1, 86_399, 951_782_400, 1_795_400_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(
            parse_rfc3339("2026-11-23T03:13:20+01:00"),
            Some(1_795_400_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-23T02:13:20.123Z"),
            Some(1_795_400_000)
        );
        assert_eq!(parse_rfc3339("1795400000"), Some(1_795_400_000));
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-31T00:00:00Z",
            "2026-11-23 00:53:20Z",
            "2026-11-23T00:53:20",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_reads_are_never_torn() {
        let cell = Arc::new(AnchorCell::new(Anchor {
            elapsed_ms: 0,
            own_ms: 0,
            offset_ms: 0,
            forward_ms: 0,
        }));
        let writer = {
            let cell = cell.clone();
            std::thread::spawn(move || {
                for i in 1..=200_000 {
                    cell.write(Anchor {
                        elapsed_ms: i,
                        own_ms: i,
                        offset_ms: -i,
                        forward_ms: 2 * i,
                    });
                }
            })
        };
        let mut last = 0;
        while !writer.is_finished() {
            let a = cell.read();
            assert_eq!(
                (a.own_ms, a.offset_ms, a.forward_ms),
                (a.elapsed_ms, -a.elapsed_ms, 2 * a.elapsed_ms)
            );
            assert!(a.elapsed_ms >= last, "went back");
            last = a.elapsed_ms;
        }
        writer.join().unwrap();
        assert_eq!(cell.read().elapsed_ms, 200_000);
    }

    #[test]
    fn one_reading_serves_now_wall_and_stamp() {
        let src = ManualClock::new(1_000);
        let clock = SteadyClock::over(src.clone());
        src.advance(5);
        assert_eq!(clock.now_wall_stamp(), (1_005, 1_005, 5_000_000_000));
        assert_eq!(clock.stamp(), 5_000_000_000);
        src.step(100);
        src.advance(1);
        let (now, wall, stamp) = clock.now_wall_stamp();
        assert_eq!((now, stamp), (1_006, 6_000_000_000));
        assert_eq!(wall, 1_106, "a forward step shows in the wall reading");
        assert_eq!((now, wall), clock.now_and_wall());
    }

    #[test]
    fn steps_are_absorbed_for_own_time_and_only_forward_ones_for_the_wall() {
        let m = ManualClock::new(1_000_000);
        let c = SteadyClock::over(m.clone());
        assert_eq!((c.now(), c.wall()), (1_000_000, 1_000_000));
        // Time passing, with a slew of up to a second per reading, is followed.
        for _ in 0..20 {
            m.advance(5);
            m.step(1);
            let _ = c.now();
        }
        assert_eq!((c.now(), c.wall(), c.steps()), (1_000_120, 1_000_120, 0));
        // Forward two hours: own time stays, the wall follows (seen within a second).
        m.step(7200);
        assert_eq!((c.now(), c.wall(), c.steps()), (1_000_120, 1_000_120, 0));
        m.advance(1);
        assert_eq!((c.now(), c.wall(), c.steps()), (1_000_121, 1_007_321, 1));
        m.advance(59);
        assert_eq!((c.now(), c.wall()), (1_000_180, 1_007_380));
        assert_eq!(c.now_and_wall(), (1_000_180, 1_007_380));
        // Back three hours: neither goes back; both go on with time.
        m.step(-10_800);
        m.advance(1);
        assert_eq!((c.now(), c.wall(), c.steps()), (1_000_181, 1_007_381, 2));
        m.advance(29);
        assert_eq!(c.now_and_wall(), (1_000_210, 1_007_410));
        assert_eq!((c.now(), c.wall()), (1_000_210, 1_007_410));
        // A small step back (within STEP_MS) does not take either back.
        m.step(-1);
        m.advance(1);
        assert_eq!((c.now(), c.wall()), (1_000_210, 1_007_410));
    }

    #[test]
    fn the_system_clock_moves_on() {
        let c = SteadyClock::system();
        let (a, w) = (c.now(), c.wall());
        assert!((a - SystemClock.now()).abs() <= 1 && (w - a).abs() <= 1);
        assert_eq!(c.steps(), 0);
    }
}
