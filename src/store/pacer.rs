//! How many requests the S3 backend sends at once: an AIMD limit, in the manner of TCP's
//! congestion control. A throttling answer (`503 SlowDown`, `429`) halves the limit (once per
//! round of requests, not once per answer of the same burst) and the request is sent again
//! after a jittered, growing pause; while answers come back without throttling and their
//! latency stays flat, the limit grows again by about one request per round. The callers'
//! own concurrency (`exportConcurrency` for the export) is the ceiling in practice: the
//! limit only grows while it is what holds requests back.
//!
//! It only paces: it never changes what a request does, and it retries nothing but a
//! throttled request, which the store did not carry out.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The most tries of one throttled request: about 40 s of pauses in all.
pub const MAX_TRIES: u32 = 12;
/// The first pause after a throttled answer, doubled at each try up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// The least a limit grows by per answer.
const MIN_STEP: f64 = 1.0 / 8.0;
/// A request no larger than this has a latency worth following; a pack upload's time is
/// its size's, not the store's load.
pub const SMALL_REQUEST: u64 = 256 * 1024;

#[derive(Debug)]
struct State {
    /// The most requests in flight; fractional, so that it grows by about one per round.
    limit: f64,
    in_flight: usize,
    /// Requests waiting for room: the limit is what holds them back.
    waiting: usize,
    /// The most requests in flight at once since the last decrease: a decrease halves what
    /// was sent, not a limit nobody reached.
    peak: usize,
    /// Bumped at each decrease: answers to requests sent before it are of the same burst.
    round: u64,
    /// No throttling seen yet: grow by one per answer (slow start), not one per round.
    slow_start: bool,
    /// Latency of small requests: a quick average, and the lowest it has been (which
    /// drifts up slowly, so that a store that got slower for good is the new normal).
    latency: Option<(f64, f64)>,
}

/// The limit shared by every request of one backend.
#[derive(Debug)]
pub struct Pacer {
    ceiling: usize,
    state: Mutex<State>,
    freed: Notify,
    throttled: AtomicU64,
    lowest: AtomicU64,
}

/// A request counted as waiting until it gets its place or gives up.
struct Waiting<'a>(&'a Pacer);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.state().waiting -= 1;
    }
}

/// One request's place in the limit; given back when dropped.
#[derive(Debug)]
pub struct Permit<'a> {
    pacer: &'a Pacer,
    round: u64,
    started: Instant,
}

impl Pacer {
    /// A limit that starts at, and never grows beyond, `ceiling` requests at once.
    pub fn new(ceiling: usize) -> Self {
        let ceiling = ceiling.max(1);
        Self {
            ceiling,
            state: Mutex::new(State {
                limit: ceiling as f64,
                in_flight: 0,
                waiting: 0,
                peak: 0,
                round: 0,
                slow_start: true,
                latency: None,
            }),
            freed: Notify::new(),
            throttled: AtomicU64::new(0),
            lowest: AtomicU64::new(ceiling as u64),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for room under the limit.
    pub async fn acquire(&self) -> Permit<'_> {
        let mut waiting: Option<Waiting<'_>> = None;
        loop {
            let freed = self.freed.notified();
            {
                let mut state = self.state();
                if state.in_flight < (state.limit as usize).max(1) {
                    state.in_flight += 1;
                    state.peak = state.peak.max(state.in_flight);
                    let round = state.round;
                    // `Waiting` takes the lock to count itself out.
                    drop(state);
                    drop(waiting);
                    return Permit {
                        pacer: self,
                        round,
                        started: Instant::now(),
                    };
                }
                if waiting.is_none() {
                    state.waiting += 1;
                    waiting = Some(Waiting(self));
                }
            }
            freed.await;
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        (self.state().limit as usize).max(1)
    }

    /// Throttled answers so far, and the lowest the limit went.
    pub fn throttled(&self) -> (u64, u64) {
        (
            self.throttled.load(Ordering::Relaxed),
            self.lowest.load(Ordering::Relaxed),
        )
    }
}

impl Permit<'_> {
    /// The request was answered without throttling; `size` is what it sent or received.
    pub fn succeeded(self, size: u64) {
        let pacer = self.pacer;
        let mut state = pacer.state();
        let flat = if size <= SMALL_REQUEST {
            let sample = self.started.elapsed().as_secs_f64();
            let (quick, lowest) = state.latency.unwrap_or((sample, sample));
            let quick = quick + (sample - quick) * 0.2;
            let lowest = lowest.min(quick) + (quick - lowest.min(quick)) * 0.01;
            state.latency = Some((quick, lowest));
            quick <= 2.0 * lowest + 0.005
        } else {
            true
        };
        // Grow only while the limit is what holds requests back, and the store keeps up.
        let saturated = state.waiting > 0;
        if saturated && flat && state.limit < pacer.ceiling as f64 {
            // About one more per round; at a small limit at least one more per eight
            // answers, so that one throttled request at a quiet moment is not a long crawl.
            let step = if state.slow_start {
                1.0
            } else {
                (1.0 / state.limit).max(MIN_STEP)
            };
            state.limit = (state.limit + step).min(pacer.ceiling as f64);
        }
    }

    /// The request was throttled: lowers the limit (once per round) and returns how long to
    /// wait before its try number `tries + 1`.
    pub fn throttled(self, tries: u32) -> Duration {
        let pacer = self.pacer;
        pacer.throttled.fetch_add(1, Ordering::Relaxed);
        let mut state = pacer.state();
        state.slow_start = false;
        if self.round == state.round {
            let before = state.limit;
            state.limit = (state.limit.min(state.peak as f64) / 2.0).max(1.0);
            state.peak = state.in_flight;
            state.round += 1;
            pacer
                .lowest
                .fetch_min(state.limit as u64, Ordering::Relaxed);
            tracing::info!(
                before = before as u64,
                after = state.limit as u64,
                "the destination is throttling requests (SlowDown); sending fewer at once"
            );
        }
        drop(state);
        pause(tries)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.pacer.state().in_flight -= 1;
        self.pacer.freed.notify_one();
    }
}

/// A random pause up to `FIRST_PAUSE * 2^(tries - 1)`, at most [`MAX_PAUSE`] ("full
/// jitter"), so that throttled requests do not come back together.
fn pause(tries: u32) -> Duration {
    let ceiling = FIRST_PAUSE
        .saturating_mul(1 << tries.saturating_sub(1).min(16))
        .min(MAX_PAUSE);
    ceiling.mul_f64(random_fraction())
}

/// `pause` made a random half to whole of itself, so that tries of many requests spread out.
pub(crate) fn jittered(pause: Duration) -> Duration {
    pause.mul_f64(random_fraction())
}

/// A number in [0.5, 1): enough randomness to spread pauses, without a generator crate.
fn random_fraction() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let mut x = STATE.fetch_add(nanos | 1, Ordering::Relaxed) ^ nanos;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    0.5 + (x >> 11) as f64 / (1u64 << 53) as f64 / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_throttled_round_halves_the_limit_once_and_answers_grow_it_back() {
        let pacer = Pacer::new(16);
        let permits: Vec<Permit<'_>> =
            futures::future::join_all((0..16).map(|_| pacer.acquire())).await;
        assert_eq!(pacer.limit(), 16);
        // Three answers of the same burst are throttled: one decrease.
        let mut permits = permits.into_iter();
        for tries in 1..=3 {
            let pause = permits.next().unwrap().throttled(tries);
            assert!(pause <= MAX_PAUSE);
        }
        assert_eq!(pacer.limit(), 8);
        assert_eq!(pacer.throttled(), (3, 8));
        drop(permits);
        // A later round's throttling halves it again: from the most that were in flight
        // since (the first burst's 16), not from the one request throttled.
        pacer.acquire().await.throttled(1);
        assert_eq!(pacer.limit(), 4);
        // With one request sent since, halving what was sent leaves one.
        pacer.acquire().await.throttled(1);
        assert_eq!(pacer.limit(), 1);
        // Answers without throttling, while the limit holds requests back, raise it by
        // about one per round, never beyond the ceiling.
        use futures::StreamExt;
        futures::stream::iter(0..2000)
            .for_each_concurrent(32, |_| async {
                let permit = pacer.acquire().await;
                tokio::task::yield_now().await;
                permit.succeeded(100);
            })
            .await;
        assert_eq!(pacer.limit(), 16);
    }

    #[tokio::test]
    async fn an_idle_limit_does_not_grow_and_a_full_one_waits() {
        let pacer = std::sync::Arc::new(Pacer::new(2));
        pacer.acquire().await.throttled(1);
        assert_eq!(pacer.limit(), 1);
        // One request at a time, never more than the limit: it stays.
        for _ in 0..50 {
            pacer.acquire().await.succeeded(100);
        }
        let held = pacer.acquire().await;
        let waiting = tokio::spawn({
            let pacer = pacer.clone();
            async move {
                pacer.acquire().await.succeeded(100);
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "a second request went past a limit of one"
        );
        drop(held);
        waiting.await.unwrap();
    }

    #[test]
    fn pauses_grow_and_stay_bounded() {
        for tries in 1..=MAX_TRIES {
            let ceiling = FIRST_PAUSE.saturating_mul(1 << (tries - 1)).min(MAX_PAUSE);
            let pause = pause(tries);
            assert!(
                pause >= ceiling / 2 && pause <= ceiling,
                "{tries}: {pause:?}"
            );
        }
    }
}
