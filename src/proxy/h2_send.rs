//! The send timeout for HTTP/2 streams. hyper stops polling a stream's response body while the
//! client has given it no flow-control window, so neither the body's stall timer nor the
//! connection's write watch runs: a client that keeps its connection alive but never opens a
//! stream's window would hold that stream, and its upstream connection, forever. hyper spawns
//! every stream's task through [`StreamExecutor`], which cancels a stream (RST_STREAM CANCEL,
//! the upstream body dropped) once its response has waited `--client-send-timeout` for window.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::body::Stall;

/// What the response body did during one poll of the stream's task.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Seen {
    /// Nothing: the task is still waiting for the response, or for window.
    Nothing,
    /// A streamed response body was made and not polled yet.
    Made,
    /// The body gave a piece, which hyper now has to send.
    Yielded,
    /// The body had nothing: the task waits on the upstream (the body's own stall timer).
    Waiting,
}

thread_local! {
    static SEEN: Cell<Seen> = const { Cell::new(Seen::Nothing) };
}

/// Notes that a streamed response body was made in the task being polled.
pub(crate) fn body_made() {
    SEEN.with(|s| {
        if s.get() == Seen::Nothing {
            s.set(Seen::Made)
        }
    })
}

/// Notes the outcome of a poll of a streamed response body.
pub(crate) fn body_polled(pending: bool) {
    SEEN.set(if pending {
        Seen::Waiting
    } else {
        Seen::Yielded
    });
}

/// Spawns hyper's HTTP/2 stream tasks, each under the send timeout.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamExecutor {
    limit: Duration,
}

impl StreamExecutor {
    pub(crate) fn new(limit: Duration) -> Self {
        StreamExecutor { limit }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        // Boxed, as the listener boxes its connections: tokio moves a task's future by value
        // as it starts and ends it, and hyper's stream future is several KiB.
        tokio::spawn(Box::pin(send_timeout(fut, self.limit)));
    }
}

pin_project_lite::pin_project! {
    /// Runs a stream's task to its end, or drops it once its response body has waited `limit`
    /// without being polled (hyper has a piece it cannot send); `None` when dropped. A struct,
    /// not an `async fn`, so the task (hyper's stream future, several KiB) is not copied again.
    struct SendTimeout<F> {
        #[pin]
        fut: F,
        wait: SendWait,
    }
}

fn send_timeout<F: Future>(fut: F, limit: Duration) -> SendTimeout<F> {
    SendTimeout {
        fut,
        wait: SendWait::new(limit),
    }
}

impl<F: Future> Future for SendTimeout<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = self.project();
        let before = SEEN.replace(Seen::Nothing);
        let polled = me.fut.poll(cx);
        let seen = SEEN.replace(before);
        match polled {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending if me.wait.expired(seen, cx) => {
                tracing::debug!("HTTP/2 stream had no window for --client-send-timeout; cancelled");
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Whether a stream's task, pending, has waited too long to send its response body.
struct SendWait {
    stall: Stall,
    has_body: bool,
    /// The task waits to send: the stall timer runs.
    waiting: bool,
}

impl SendWait {
    fn new(limit: Duration) -> Self {
        SendWait {
            stall: Stall::new(limit),
            has_body: false,
            waiting: false,
        }
    }

    /// Notes what the body did in a poll that left the task pending: whether the response
    /// has now waited longer than the limit to be sent.
    fn expired(&mut self, seen: Seen, cx: &mut Context<'_>) -> bool {
        match seen {
            Seen::Waiting => {
                self.waiting = false;
                return false;
            }
            Seen::Made | Seen::Yielded => {
                self.has_body = true;
                self.waiting = false;
            }
            Seen::Nothing if !self.has_body => return false,
            Seen::Nothing => {}
        }
        if !self.waiting {
            self.waiting = true;
            self.stall.progressed();
        }
        self.stall.expired(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::task::Waker;

    fn expired(w: &mut SendWait, seen: Seen) -> bool {
        w.expired(seen, &mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_waiting_for_window_is_cut_at_the_limit_and_each_piece_sent_restarts_it() {
        let limit = Duration::from_secs(10);
        let mut w = SendWait::new(limit);
        // Waiting for the upstream's response: not this timer's business, however long.
        assert!(!expired(&mut w, Seen::Nothing));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!expired(&mut w, Seen::Nothing));
        // A piece given to hyper, then no window: the wait starts.
        assert!(!expired(&mut w, Seen::Yielded));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!expired(&mut w, Seen::Nothing));
        // Window came and the next piece went out: the wait restarts.
        assert!(!expired(&mut w, Seen::Yielded));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!expired(&mut w, Seen::Nothing));
        // Waiting on the upstream pauses it; the next wait for window starts afresh.
        assert!(!expired(&mut w, Seen::Waiting));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!expired(&mut w, Seen::Yielded));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!expired(&mut w, Seen::Nothing));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(expired(&mut w, Seen::Nothing), "11 s without window");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_never_polled_counts_from_when_it_was_made() {
        let limit = Duration::from_secs(10);
        let mut w = SendWait::new(limit);
        assert!(!expired(&mut w, Seen::Made));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(expired(&mut w, Seen::Nothing));
    }

    #[tokio::test(start_paused = true)]
    async fn the_executor_drops_a_task_stuck_after_its_body_and_finishes_one_that_ends() {
        let limit = Duration::from_secs(10);
        let done = send_timeout(async { 7 }, limit).await;
        assert_eq!(done, Some(7));
        let mut first = true;
        let stuck = send_timeout(
            poll_fn(|_| {
                if std::mem::take(&mut first) {
                    body_made();
                }
                Poll::<()>::Pending
            }),
            limit,
        );
        let start = tokio::time::Instant::now();
        assert_eq!(stuck.await, None);
        assert_eq!(start.elapsed(), limit);
    }
}
