//! Faults that tests switch on and off at runtime: denied resources, unavailable groups,
//! expiring continue tokens, throttling, latency, dropped connections (of lists, and of
//! open watches), lists that cannot
//! be rendered as metadata only, and lists that carry an object no real API server would
//! accept (as a broken aggregated API may serve).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Default)]
struct State {
    forbidden: HashSet<String>,
    forbidden_verbs: HashSet<String>,
    unavailable: HashSet<String>,
    expire_after: Option<usize>,
    throttle_left: usize,
    retry_after: u64,
    latency: Duration,
    drop_after: Option<usize>,
    full_lists_only: bool,
    /// Plural → a raw item appended to the last page of its lists.
    extra_items: std::collections::HashMap<String, serde_json::Value>,
}

/// Switchable faults of a [`crate::SimServer`]; every method takes `&self` and applies to
/// the requests that arrive after it returns.
#[derive(Debug)]
pub struct Faults {
    state: Mutex<State>,
    /// Counts [`Faults::break_watches`]; every open watch ends when it changes.
    watch_breaks: tokio::sync::watch::Sender<u64>,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            state: Mutex::default(),
            watch_breaks: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Faults {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic while holding the lock cannot leave the fault switches inconsistent, so a
        // poisoned lock is still usable.
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Denies every request (any verb) on resources with this plural, in any group, with
    /// 403 Forbidden, as RBAC would for the `kube-autosave` service account. Both
    /// `configmaps` and, say, `pods` of `metrics.k8s.io` and the core group are matched by
    /// their plural alone.
    pub fn forbid(&self, resource: &str, on: bool) {
        self.with(|s| {
            if on {
                s.forbidden.insert(resource.to_string());
            } else {
                s.forbidden.remove(resource);
            }
        });
    }

    /// Denies every request with this verb (`get`, `list`, ...) on every resource with 403
    /// Forbidden, as RBAC does for a role that does not grant the verb: `forbid_verb("get")`
    /// plays a service account that may only list and watch.
    pub fn forbid_verb(&self, verb: &str, on: bool) {
        self.with(|s| {
            if on {
                s.forbidden_verbs.insert(verb.to_string());
            } else {
                s.forbidden_verbs.remove(verb);
            }
        });
    }

    pub(crate) fn is_verb_forbidden(&self, verb: &str) -> bool {
        self.with(|s| s.forbidden_verbs.contains(verb))
    }

    /// Makes an API group unavailable, as an aggregated API whose backend is down: its
    /// version documents (`/apis/<group>/<version>`) and every request on its resources
    /// answer 503 ServiceUnavailable, `/apis` and `/apis/<group>` still list it, and
    /// aggregated discovery keeps its last known resources marked `freshness: Stale` (what
    /// the real aggregator does). Use `""` for the core group.
    pub fn group_unavailable(&self, group: &str, on: bool) {
        self.with(|s| {
            if on {
                s.unavailable.insert(group.to_string());
            } else {
                s.unavailable.remove(group);
            }
        });
    }

    /// With `Some(k)`, a continue token handed out with the k-th page of a list (or later) is
    /// too old: the request answers 410 Gone (`reason: Expired`) with a fresh, inconsistent
    /// continue token in the Status, as the real server does after an etcd compaction. The
    /// fresh token starts a new count, so a client that follows it gets k more pages.
    /// Applies to every list while on; `None` switches it off.
    pub fn expire_continue_after(&self, pages: Option<usize>) {
        self.with(|s| s.expire_after = pages);
    }

    /// The next `requests` requests (any path, authenticated or not) answer
    /// 429 TooManyRequests with a `Retry-After: <retry_after_secs>` header.
    pub fn throttle(&self, requests: usize, retry_after_secs: u64) {
        self.with(|s| {
            s.throttle_left = requests;
            s.retry_after = retry_after_secs;
        });
    }

    /// Delays every response by this much (`Duration::ZERO` switches it off).
    pub fn latency(&self, per_request: Duration) {
        self.with(|s| s.latency = per_request);
    }

    /// With `Some(k)`, the next paged list request (one with `limit`) that asks for the page
    /// after the k-th page of its list (k = 0: the first page) gets its connection closed
    /// without a response. It fires once per call: after one dropped connection the fault
    /// switches itself off, so a client that retries the same request succeeds.
    pub fn drop_connection_after_pages(&self, pages: Option<usize>) {
        self.with(|s| s.drop_after = pages);
    }

    /// With `true`, a list asked for as `PartialObjectMetadataList` answers with the full
    /// objects (the next media type of the client's Accept header), as an aggregated API
    /// server that cannot render metadata only does.
    pub fn full_lists_only(&self, on: bool) {
        self.with(|s| s.full_lists_only = on);
    }

    /// With `Some(item)`, every list of resources with this plural ends with `item` as it is,
    /// unvalidated: an object a real API server would refuse to create (a namespace of `..`,
    /// a name with a slash), as a misbehaving aggregated API can still serve one. Both full
    /// and metadata-only lists carry it. `None` switches it off.
    pub fn extra_list_item(&self, resource: &str, item: Option<serde_json::Value>) {
        self.with(|s| match item {
            Some(item) => {
                s.extra_items.insert(resource.to_string(), item);
            }
            None => {
                s.extra_items.remove(resource);
            }
        });
    }

    pub(crate) fn extra_item(&self, resource: &str) -> Option<serde_json::Value> {
        self.with(|s| s.extra_items.get(resource).cloned())
    }

    /// Drops the connection of every open watch now, mid-stream (the response ends without
    /// its last chunk), as a restarted API server or a broken network does. Watches opened
    /// afterwards are not affected.
    pub fn break_watches(&self) {
        self.watch_breaks.send_modify(|n| *n += 1);
    }

    /// A receiver that changes when open watches must break.
    pub(crate) fn watch_breaks(&self) -> tokio::sync::watch::Receiver<u64> {
        self.watch_breaks.subscribe()
    }

    /// Switches every fault off.
    pub fn clear(&self) {
        self.with(|s| *s = State::default());
    }

    pub(crate) fn is_forbidden(&self, resource: &str) -> bool {
        self.with(|s| s.forbidden.contains(resource))
    }

    pub(crate) fn is_unavailable(&self, group: &str) -> bool {
        self.with(|s| s.unavailable.contains(group))
    }

    pub(crate) fn is_full_lists_only(&self) -> bool {
        self.with(|s| s.full_lists_only)
    }

    pub(crate) fn expire_after(&self) -> Option<usize> {
        self.with(|s| s.expire_after)
    }

    /// Consumes one throttled request, returning its Retry-After seconds.
    pub(crate) fn take_throttle(&self) -> Option<u64> {
        self.with(|s| {
            if s.throttle_left > 0 {
                s.throttle_left -= 1;
                Some(s.retry_after)
            } else {
                None
            }
        })
    }

    pub(crate) fn current_latency(&self) -> Duration {
        self.with(|s| s.latency)
    }

    /// True (once) when a request for the page after `pages_served` pages must be dropped.
    pub(crate) fn take_drop(&self, pages_served: usize) -> bool {
        self.with(|s| {
            if s.drop_after == Some(pages_served) {
                s.drop_after = None;
                true
            } else {
                false
            }
        })
    }
}
