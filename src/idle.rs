//! What a runtime thread does when it runs out of work: sleep at once, or, while it has been
//! nearly always busy, spin a few microseconds first.
//!
//! Under saturating load a thread that sleeps in `epoll_wait` as soon as its queue is empty is
//! woken again microseconds later by a peer on another core, which pays an inter-processor
//! interrupt for it; spinning briefly lets those events arrive and be handled in one batch.
//! Under light load the same spin is only burnt CPU, so it runs only while the thread's busy
//! share (work, not spinning or sleeping) stayed high over the last window.

use std::cell::RefCell;
use std::time::{Duration, Instant};

/// When spinning switches on and off.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// How long to spin before sleeping; zero turns spinning off.
    pub spin: Duration,
    /// Busy share of a window at or above which spinning starts.
    pub on: f64,
    /// Busy share of a window below which spinning stops.
    pub off: f64,
    /// Length of the window the busy share is measured over.
    pub window: Duration,
}

impl Policy {
    /// The policy for a spin of `spin`: on at 85% busy, off below 70%, 2 ms windows.
    pub fn new(spin: Duration) -> Self {
        Self {
            spin,
            on: 0.85,
            off: 0.70,
            window: Duration::from_millis(2),
        }
    }
}

/// One thread's account of busy and idle time in the current window.
#[derive(Debug)]
pub struct Tracker {
    policy: Policy,
    busy: Duration,
    idle: Duration,
    spinning: bool,
    /// When the current phase (busy or idle) began.
    since: Instant,
}

impl Tracker {
    /// A tracker whose first busy phase begins at `now`.
    pub fn new(policy: Policy, now: Instant) -> Self {
        Self {
            policy,
            busy: Duration::ZERO,
            idle: Duration::ZERO,
            spinning: false,
            since: now,
        }
    }

    /// The thread is about to park at `now`: how long to spin first (zero: none).
    pub fn parking(&mut self, now: Instant) -> Duration {
        self.busy += now.saturating_duration_since(self.since);
        self.since = now;
        self.decide();
        if self.spinning {
            self.policy.spin
        } else {
            Duration::ZERO
        }
    }

    /// The thread woke at `now`: its idle phase (spin and sleep) ended.
    pub fn unparked(&mut self, now: Instant) {
        self.idle += now.saturating_duration_since(self.since);
        self.since = now;
    }

    /// Whether the last finished window turned spinning on.
    pub fn spinning(&self) -> bool {
        self.spinning
    }

    fn decide(&mut self) {
        let total = self.busy + self.idle;
        if total < self.policy.window {
            return;
        }
        let share = self.busy.as_secs_f64() / total.as_secs_f64();
        self.spinning = if self.spinning {
            share >= self.policy.off
        } else {
            share >= self.policy.on
        };
        self.busy = Duration::ZERO;
        self.idle = Duration::ZERO;
    }
}

thread_local! {
    static TRACKER: RefCell<Option<Tracker>> = const { RefCell::new(None) };
}

/// Installs the policy on a runtime's threads; a zero spin installs nothing.
pub fn install(builder: &mut tokio::runtime::Builder, spin: Duration) {
    if spin.is_zero() {
        return;
    }
    let policy = Policy::new(spin);
    builder
        .on_thread_park(move || {
            let now = Instant::now();
            let spin = TRACKER.with_borrow_mut(|t| {
                t.get_or_insert_with(|| Tracker::new(policy, now))
                    .parking(now)
            });
            if !spin.is_zero() {
                let end = now + spin;
                while Instant::now() < end {
                    std::hint::spin_loop();
                }
            }
        })
        .on_thread_unpark(|| {
            TRACKER.with_borrow_mut(|t| {
                if let Some(t) = t {
                    t.unparked(Instant::now());
                }
            })
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    /// Runs `cycles` of `busy` work then `idle` rest; returns the spin asked for at the last park.
    fn run(
        t: &mut Tracker,
        now: &mut Instant,
        busy: Duration,
        idle: Duration,
        cycles: u32,
    ) -> Duration {
        let mut spin = Duration::ZERO;
        for _ in 0..cycles {
            *now += busy;
            spin = t.parking(*now);
            *now += idle.max(spin);
            t.unparked(*now);
        }
        spin
    }

    #[test]
    fn light_load_never_spins() {
        let mut now = Instant::now();
        let mut t = Tracker::new(Policy::new(10 * US), now);
        assert_eq!(
            run(&mut t, &mut now, 10 * US, 15 * US, 1_000),
            Duration::ZERO
        );
        assert!(!t.spinning());
    }

    #[test]
    fn saturation_spins_and_a_drop_in_load_stops_it() {
        let mut now = Instant::now();
        let mut t = Tracker::new(Policy::new(10 * US), now);
        // 95% busy: on after the first full window.
        assert_eq!(run(&mut t, &mut now, 95 * US, 5 * US, 100), 10 * US);
        assert!(t.spinning());
        // Between the thresholds (the spin itself counts as idle): stays on.
        assert_eq!(run(&mut t, &mut now, 30 * US, 10 * US, 200), 10 * US);
        // 50% busy: off again.
        assert_eq!(run(&mut t, &mut now, 20 * US, 20 * US, 200), Duration::ZERO);
        assert!(!t.spinning());
        // Between the thresholds from below: stays off.
        assert_eq!(run(&mut t, &mut now, 30 * US, 10 * US, 200), Duration::ZERO);
    }

    #[test]
    fn nothing_changes_before_a_window_is_full() {
        let mut now = Instant::now();
        let mut t = Tracker::new(Policy::new(10 * US), now);
        assert_eq!(run(&mut t, &mut now, 99 * US, US, 10), Duration::ZERO);
        assert!(!t.spinning());
    }
}
