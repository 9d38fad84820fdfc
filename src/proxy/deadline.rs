//! One timer whose deadline moves often: the HTTP/1.1 fast path's per-connection timeouts,
//! and how long a streamed upstream body may go without data.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A deadline whose moves later cost no timer operation: the timer is armed at most `step`
/// ahead, and when it fires before the deadline it is armed again. (`step` is the shortest
/// timeout, so a new deadline is never earlier than the armed time and re-arming is never
/// needed when a deadline is set.)
pub(crate) struct Deadline {
    sleep: Pin<Box<Sleep>>,
    at: Instant,
    step: Duration,
}

impl Deadline {
    pub(crate) fn new(at: Instant, step: Duration) -> Self {
        let first = at.min(Instant::now() + step);
        Deadline {
            sleep: Box::pin(tokio::time::sleep_until(first)),
            at,
            step,
        }
    }

    pub(crate) fn set(&mut self, at: Instant) {
        self.at = at;
        if at < self.sleep.deadline() {
            self.sleep.as_mut().reset(at);
        }
    }

    /// Ready once the deadline has passed.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.sleep.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if now >= self.at {
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(self.at.min(now + self.step));
        }
        Poll::Pending
    }

    /// Resolves once the deadline has passed.
    pub(crate) async fn expired(&mut self) {
        poll_fn(|cx| self.poll_expired(cx)).await
    }
}
