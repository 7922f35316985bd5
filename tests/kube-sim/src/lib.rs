//! `kube-sim`: a simulated Kubernetes API server for tests, benchmarks and demos.
//!
//! It serves, over HTTP or HTTPS on loopback, what a real API server serves on the paths a
//! backup client and `kubectl` use:
//!
//! - **Discovery** derived from recorded documents of a real server (`/version`, `/api`,
//!   `/api/v1`, `/apis`, `/apis/<group>`, `/apis/<group>/<version>`, and aggregated discovery
//!   v2 when asked for with `Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`),
//!   plus CRD-backed groups (`example.com/v1` `widgets`, and [`MONITORING_GROUP`] shaped like
//!   a prometheus-operator install: `servicemonitors` and `prometheusrules` at `v1`,
//!   `alertmanagerconfigs` only at `v1alpha1`; their `CustomResourceDefinition`s are served
//!   under `apiextensions.k8s.io`) and an aggregated group (`metrics.k8s.io/v1beta1`) that can
//!   be switched to fail with 503.
//! - **A deterministic cluster** of about N objects ([`SimConfig::objects`]) over namespaces
//!   and the common kinds, with the fields a real server adds and a realistic size mix.
//! - **Lists** on every collection path with `limit`/`continue` (etcd-like snapshot paging),
//!   `labelSelector`, `fieldSelector` (any field path, e.g. `metadata.name`,
//!   `spec.nodeName`, `involvedObject.uid`); server-side tables for `kubectl get`; **get, create,
//!   update (PUT), merge patch, delete**; errors as `Status` objects.
//! - **Watches** on every collection path (`?watch=1|true`, and the deprecated `/watch/`
//!   paths, which also watch one object): one JSON `WatchEvent` per line of a chunked
//!   response, objects typed as a GET returns them (`PartialObjectMetadata` with
//!   `Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1`, one-row
//!   Tables for `kubectl get -w`), with `resourceVersion`, `labelSelector`,
//!   `fieldSelector`, `allowWatchBookmarks` and `timeoutSeconds`. Every write is an event:
//!   [`SimServer::events`] is the log of them all.
//! - **Faults** ([`Faults`]) and **churn** ([`SimServer::churn`]) on demand.
//! - **Bearer-token auth** on every request and a **kubeconfig** for itself.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kube_sim::SimError> {
//! let server = kube_sim::SimServer::start(kube_sim::SimConfig { objects: 10_000, ..Default::default() }).await?;
//! let dir = std::env::temp_dir();
//! server.write_kubeconfig(&dir.join("kubeconfig"))?;
//! println!("{} serves {} objects", server.url(), server.objects().len());
//! server.faults().forbid("secrets", true);
//! # Ok(()) }
//! ```
//!
//! Behaviour worth knowing when writing tests against it:
//! - List items of built-in resources carry no `apiVersion`/`kind` (only the list does);
//!   items of custom resources do, as on the real server.
//! - Lists are ordered by etcd key (`namespace/name`). A continue token holds the last key
//!   returned and the list's resource version; continuing shows the snapshot of that
//!   version (objects created, changed or deleted since are seen as they were), until the
//!   history is compacted ([`SimServer::compact`], and automatically every 5 minutes), after
//!   which the token answers 410 Expired.
//! - Timestamps come from a simulated clock (2025-01-15T10:00:00Z at start, one second per
//!   write), so object content never depends on the wall clock.
//! - A create sets uid, resourceVersion, creationTimestamp, generation (for kinds that have
//!   one) and a `managedFields` entry; every write records (or refreshes, with its time) the
//!   entry of its field manager: the `fieldManager` option, else the User-Agent's program
//!   (a `fieldManager` too long or not printable is a 422 Invalid `CreateOptions`,
//!   `UpdateOptions` or `PatchOptions`); it drops `status` for resources with a status
//!   subresource (controllers own it), and answers 500 if the body carries a
//!   resourceVersion, as the real storage layer does.
//! - A create is admitted as the real server admits it for the kinds whose server-made
//!   fields a restore has to strip, with its 422 Invalid answers (every cause in
//!   `details.causes`, the real messages): a Job (`batch/v1`) gets its generated selector and
//!   uid labels, and one that carries another Job's (`spec.selector` or the
//!   `controller-uid` labels of a backup) is refused (`` `selector` not auto-generated ``,
//!   `must be '<uid>'`); a Pod with `spec.ephemeralContainers` is refused (`Forbidden:
//!   cannot be set on create`); a Service gets a ClusterIP from `10.96.0.0/12` that no other
//!   Service holds, and one asking for an address outside the range or already allocated is
//!   refused; the Priority admission plugin computes a pod's `priority` and
//!   `preemptionPolicy` from its PriorityClass and refuses (403) a pod that carries other
//!   values or names a class that does not exist. Jobs, Pods and Services also get the
//!   defaults the real server gives them
//!   (`SetDefaults_Job`, `SetDefaults_PodSpec`, `SetDefaults_Service`, IP families).
//! - A Secret is decoded, defaulted and validated as the real server does, on create and on
//!   update (PUT or patch): a `data` value that is not standard base64 is a 400 with the
//!   decoder's message (`Secret in version "v1" cannot be handled as a Secret: illegal
//!   base64 data at input byte 4`); `stringData` is merged into `data` and never stored;
//!   `type` defaults to `Opaque`; keys must be config-map keys, the data at most 1 MiB, and
//!   the built-in types need their keys (`ValidateSecret`), all as 422 Invalid; an
//!   `immutable` Secret keeps its data, its type and its immutability
//!   (`ValidateSecretUpdate`).
//! - The garbage collector ([`SimServer::collect_garbage`], or continuously with
//!   [`SimConfig::garbage_collector`]) deletes dependents whose owners are all gone, removes
//!   references to missing owners from dependents that keep one, and cascades. A delete
//!   honours `propagationPolicy`/`orphanDependents` (and the Orphan default of `batch/v1`
//!   Jobs and `v1` ReplicationControllers): orphaned dependents lose the reference at once.
//! - Watches follow the watch cache (`cacher.go`, `watch_cache.go`, `cache_watcher.go`):
//!   without `resourceVersion` (or with `"0"`) an `ADDED` event for every current object,
//!   then the changes; with a revision, every change after it, in order. A revision older
//!   than the history (the generated cluster has none; [`SimServer::compact`] drops it)
//!   answers 200 and one `ERROR` event, a Status 410 `Expired` `too old resource version:
//!   <rv> (<compacted>)`; a newer one than the server's, after 3 s, an `ERROR` 504 `Timeout`
//!   (`Too large resource version`); one that is not a number, 422 Invalid. A watcher with
//!   selectors sees an object that stops matching as `DELETED` (its last matching state at
//!   the revision of the change) and one that starts matching as `ADDED`. A deletion
//!   carries the last state at the revision of the deletion. Bookmarks (only with
//!   `allowWatchBookmarks=true`) are an object of the watched kind with nothing but
//!   `metadata.resourceVersion`, every minute ([`SimServer::set_bookmark_interval`]). A
//!   watch without `timeoutSeconds` ends after 30 to 60 minutes, as with the real server's
//!   `--min-request-timeout`. A streaming list (`sendInitialEvents=true` with
//!   `resourceVersionMatch=NotOlderThan`) sends the state as `ADDED` events, then a bookmark
//!   annotated `k8s.io/initial-events-end: "true"`; its options are checked as
//!   `validateWatchOptions` checks them (422 Invalid `ListOptions.meta.k8s.io`).
//!   [`Faults::break_watches`] drops every open watch's
//!   connection; compaction leaves open watches alone, as it leaves the watch cache.
//! - kube's default client retries 429, 503 and 504 by itself (up to 15 times, with
//!   exponential backoff up to minutes, honouring `Retry-After`): set
//!   `kube::Config::default_retry = false` to see those answers.
//!
//! Not simulated: watches of the metrics API (which does not offer them), finalizers (deletion is immediate, a foreground deletion
//! too; the collector then removes the dependents), admission beyond the kinds above (no
//! NodePort allocation, no schema validation: `fieldValidation` is accepted and not
//! enforced), JSON patch and server-side apply (415), protobuf.

mod admission;
mod churn;
mod discovery;
mod faults;
mod fixtures;
mod gc;
mod generate;
mod handlers;
mod objects;
mod openapi;
mod rng;
mod secret;
mod selector;
mod server;
mod status;
mod store;
mod tls;
mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::Value;

pub use discovery::{METRICS_GROUP, METRICS_VERSION};
pub use faults::Faults;
pub use generate::MONITORING_GROUP;

use discovery::{BuiltinApis, GroupDef, Served, VersionDef, View};
use store::{Obj, ResourceType, Store};

/// Configuration of a [`SimServer`].
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Approximate total number of stored objects N (the generator lands on it exactly for
    /// N ≥ about 100; smaller values give the smallest coherent cluster).
    pub objects: usize,
    /// Seed of every generated value: the same seed and N give byte-identical objects.
    pub seed: u64,
    /// Number of generated namespaces (besides `default`, `kube-system`, `kube-public` and
    /// `kube-node-lease`); `None` = N/100, at least 3.
    pub namespaces: Option<usize>,
    /// HTTPS with a certificate for 127.0.0.1/localhost, signed by a fresh CA that the
    /// written kubeconfig trusts. kubectl (client-go) sends bearer tokens only over HTTPS:
    /// use TLS for kubectl; kube-rs sends them over plain HTTP too.
    pub tls: bool,
    /// Bearer token required on every request (401 otherwise).
    pub token: String,
    /// A fresh cluster (a restore target): only the four system namespaces, no other
    /// object, and no CRD installed (so `example.com` is not served until a
    /// `CustomResourceDefinition` for it is created).
    pub empty: bool,
    /// Run the garbage collector in the background at this period, as kube-controller-manager
    /// runs it continuously (see [`SimServer::collect_garbage`] for what it does). `None`
    /// (the default): dependents are collected only when a test calls
    /// [`SimServer::collect_garbage`].
    pub garbage_collector: Option<Duration>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            objects: 1000,
            seed: 1,
            namespaces: None,
            tls: false,
            token: "kube-sim-token".to_string(),
            empty: false,
            garbage_collector: None,
        }
    }
}

/// Identity of a stored object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// API group, `""` for the core group.
    pub group: String,
    /// The version the object is stored and reported at (the group's preferred version that
    /// serves the resource).
    pub version: String,
    /// Resource (plural), e.g. `configmaps`.
    pub resource: String,
    pub kind: String,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    /// `apiVersion` of the object (`v1`, `apps/v1`, ...).
    pub fn api_version(&self) -> String {
        discovery::group_version(&self.group, &self.version)
    }

    /// The resource as `kubectl get` names it: `configmaps` in the core group,
    /// `deployments.apps` in the others.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// What a write did to an object, as a watch reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    /// The `type` of a `WatchEvent`: `ADDED`, `MODIFIED` or `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One change of the stored objects, see [`SimServer::events`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimEvent {
    /// The resource version of the change (for a deletion, the revision it was deleted at).
    pub rv: u64,
    pub kind: EventKind,
    pub key: ObjectKey,
}

/// What [`SimServer::churn`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChurnReport {
    pub modified: Vec<ObjectKey>,
    pub added: Vec<ObjectKey>,
    pub deleted: Vec<ObjectKey>,
}

/// What [`SimServer::collect_garbage`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Dependents deleted because none of their owners exists any more (in deletion order;
    /// a cascade lists owners before their own dependents).
    pub deleted: Vec<ObjectKey>,
    /// Dependents that still have an owner and lost their references to missing ones.
    pub orphan_refs_removed: Vec<ObjectKey>,
}

/// Errors of starting a [`SimServer`].
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("the recorded discovery documents cannot be used: {0}")]
    Fixtures(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A CRD known to the server.
#[derive(Clone, Debug)]
pub(crate) struct CrdEntry {
    pub group: String,
    pub plural: String,
    pub versions: Vec<VersionDef>,
    pub established: bool,
}

/// Everything that changes while the server runs, under one lock.
pub(crate) struct State {
    pub store: Store,
    /// CRDs by object name (`<plural>.<group>`).
    pub crds: BTreeMap<String, CrdEntry>,
    /// The Services' ClusterIPs, for allocating new ones.
    pub cluster_ips: admission::ClusterIps,
}

/// Counts of what the resource endpoints served, see [`SimServer::served`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServedCount {
    /// Objects sent in full as items of lists.
    pub full_list_items: u64,
    /// Objects sent as `PartialObjectMetadata` items of lists.
    pub metadata_list_items: u64,
    /// Single objects sent by GET requests, in any rendering.
    pub gets: u64,
    /// Lists narrowed to one name by a `metadata.name` field selector: how a client that may
    /// only list and watch reads one object.
    pub named_lists: u64,
}

impl std::ops::Sub for ServedCount {
    type Output = ServedCount;
    fn sub(self, before: ServedCount) -> ServedCount {
        ServedCount {
            full_list_items: self.full_list_items - before.full_list_items,
            metadata_list_items: self.metadata_list_items - before.metadata_list_items,
            gets: self.gets - before.gets,
            named_lists: self.named_lists - before.named_lists,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct ServedCounters {
    full_list_items: AtomicU64,
    metadata_list_items: AtomicU64,
    gets: AtomicU64,
    named_lists: AtomicU64,
}

impl ServedCounters {
    pub(crate) fn list_items(&self, metadata: bool, n: usize) {
        let counter = if metadata {
            &self.metadata_list_items
        } else {
            &self.full_list_items
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn get_one(&self) {
        self.gets.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn named_list(&self) {
        self.named_lists.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> ServedCount {
        ServedCount {
            full_list_items: self.full_list_items.load(Ordering::Relaxed),
            metadata_list_items: self.metadata_list_items.load(Ordering::Relaxed),
            gets: self.gets.load(Ordering::Relaxed),
            named_lists: self.named_lists.load(Ordering::Relaxed),
        }
    }
}

/// State shared by the server tasks and the [`SimServer`] handle.
pub(crate) struct Shared {
    pub config: SimConfig,
    pub apis: BuiltinApis,
    pub state: RwLock<State>,
    pub faults: Faults,
    pub requests: AtomicU64,
    pub served: ServedCounters,
    pub create_log: Mutex<Vec<ObjectKey>>,
    pub crd_delay: Mutex<Duration>,
    /// Resource version at the end of start-up; the simulated clock counts from it.
    pub start_rv: u64,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: Mutex<Duration>,
    pub address: String,
}

impl Shared {
    pub(crate) fn bookmark_interval(&self) -> Duration {
        *self
            .bookmark_interval
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // The state stays consistent across a panicking request handler (each write is one
        // store call), so a poisoned lock is still usable.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves a URL's group, version and plural to a served resource (built-in, metrics,
    /// or from an established CRD).
    pub(crate) fn resolve(
        &self,
        state: &State,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Served> {
        if let Some(s) = self.apis.lookup(group, version, plural) {
            return Some(s.clone());
        }
        for crd in state.crds.values() {
            if !crd.established || crd.group != group || crd.plural != plural {
                continue;
            }
            if let Some(v) = crd.versions.iter().find(|v| v.version == version) {
                let def = v.resources.first()?.clone();
                return Some(Served {
                    group: group.to_string(),
                    version: version.to_string(),
                    def,
                    storage: (group.to_string(), plural.to_string()),
                    view: View::Native,
                });
            }
        }
        None
    }

    /// Every served group, in discovery order: built-in groups, CRD groups, then the
    /// aggregated metrics group. Unavailable groups are marked stale.
    pub(crate) fn groups(&self, state: &State) -> Vec<GroupDef> {
        let mut groups: Vec<GroupDef> = self.apis.groups.clone();
        let parts: Vec<(String, Vec<VersionDef>)> = state
            .crds
            .values()
            .filter(|c| c.established)
            .map(|c| (c.group.clone(), c.versions.clone()))
            .collect();
        for crd_group in discovery::merge_crd_groups(parts) {
            // A CRD in a built-in group would be rejected by the real server; ignore it here.
            if !groups.iter().any(|g| g.name == crd_group.name) {
                groups.push(crd_group);
            }
        }
        groups.push(self.apis.metrics.clone());
        for g in &mut groups {
            if self.faults.is_unavailable(&g.name) {
                for v in &mut g.versions {
                    v.fresh = false;
                }
            }
        }
        groups
    }

    pub(crate) fn core_group(&self) -> GroupDef {
        let mut core = self.apis.core.clone();
        if self.faults.is_unavailable("") {
            for v in &mut core.versions {
                v.fresh = false;
            }
        }
        core
    }
}

/// Registers (or re-registers) the API of a CRD object and makes sure its collection
/// exists. Returns the CRD's name.
pub(crate) fn register_crd(state: &mut State, crd: &Value, established: bool) -> Option<String> {
    let name = crd.pointer("/metadata/name")?.as_str()?.to_string();
    let (group, versions) = discovery::crd_group(crd)?;
    let first = versions.first()?.resources.first()?.clone();
    let storage_version = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        })
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
        .unwrap_or(&versions[0].version)
        .to_string();
    state.store.ensure_collection(ResourceType {
        group: group.clone(),
        version: storage_version,
        plural: first.plural.clone(),
        kind: first.kind.clone(),
        namespaced: first.namespaced,
        persisted: true,
        custom: true,
    });
    state.crds.insert(
        name.clone(),
        CrdEntry {
            group,
            plural: first.plural,
            versions,
            established,
        },
    );
    Some(name)
}

/// A running simulated API server. Dropping it (or [`SimServer::shutdown`]) stops it.
pub struct SimServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: Option<String>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SimServer {
    /// Generates the cluster and serves it on `127.0.0.1` on a free port. Must be called
    /// within a Tokio runtime; the server runs on that runtime.
    pub async fn start(config: SimConfig) -> Result<SimServer, SimError> {
        SimServer::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Like [`SimServer::start`], on the given address (port 0 = any free port).
    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> Result<SimServer, SimError> {
        // When this crate is built together with crates that enable rustls' other back end
        // (aws-lc, through the AWS SDK), rustls cannot pick a process default by itself; the
        // server and the clients of its tests use ring. A second install is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let addr = listener.local_addr()?;
        let tls = if config.tls {
            Some(tls::generate().map_err(SimError::Tls)?)
        } else {
            None
        };
        let apis = BuiltinApis::load().map_err(SimError::Fixtures)?;
        let state = build_state(&config, &apis);
        let start_rv = state.store.current_rv();
        let shared = Arc::new(Shared {
            config: config.clone(),
            apis,
            state: RwLock::new(state),
            faults: Faults::default(),
            requests: AtomicU64::new(0),
            served: ServedCounters::default(),
            create_log: Mutex::new(Vec::new()),
            crd_delay: Mutex::new(Duration::ZERO),
            start_rv,
            bookmark_interval: Mutex::new(Duration::from_secs(60)),
            address: addr.to_string(),
        });
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
        let acceptor = tls.map(|t| t.acceptor);
        let mut tasks = vec![tokio::spawn(server::serve(
            listener,
            acceptor,
            shared.clone(),
            stop_rx.clone(),
        ))];
        if let Some(period) = config.garbage_collector {
            tasks.push(tokio::spawn(gc::run(
                shared.clone(),
                period,
                stop_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(compactor(shared.clone(), stop_rx)));
        Ok(SimServer {
            shared,
            addr,
            ca_pem,
            stop,
            tasks,
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:43123` (`https://` with [`SimConfig::tls`]).
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the CA that signed the server certificate (with [`SimConfig::tls`]).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// A kubeconfig for this server: cluster, user (with the token) and context, all named
    /// `kube-sim`; the CA as `certificate-authority-data` with TLS.
    pub fn kubeconfig_yaml(&self) -> String {
        tls::kubeconfig(
            &self.url(),
            &self.shared.config.token,
            self.ca_pem.as_deref(),
        )
    }

    /// Writes [`SimServer::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// The fault switches.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Modifies `round(fraction × N)` objects (new resourceVersion; changed `data`, `spec`
    /// or, failing both, an annotation), adds `round(fraction × N / 10)` config maps and
    /// secrets and deletes as many existing objects (config maps, secrets, events, pods,
    /// service accounts). N is the current object count. Namespaces, CRDs and APIServices
    /// are never touched. Deterministic for the same cluster state and seed.
    pub fn churn(&self, fraction: f64, seed: u64) -> ChurnReport {
        churn::churn(&self.shared, fraction, seed)
    }

    /// Runs the garbage collector to a fixed point, as kube-controller-manager's does: an
    /// owner reference dangles when no object of its apiVersion and kind has its name (in
    /// the dependent's namespace for a namespaced owner, at the cluster scope otherwise) or
    /// the one that does has another uid. A dependent whose references all dangle is deleted
    /// (its own dependents then dangle in turn: the cascade); one with an existing owner
    /// loses only its dangling references (a new resource version). An object with a
    /// reference to a kind the server does not serve is left alone. Deterministic.
    pub fn collect_garbage(&self) -> GcReport {
        gc::collect(&self.shared)
    }

    /// Every object currently stored (not the metrics API's objects, which are not stored),
    /// ordered by group, resource, then namespace/name.
    pub fn objects(&self) -> Vec<ObjectKey> {
        self.shared.read().store.keys()
    }

    /// The stored object as a GET returns it (with `apiVersion` and `kind`).
    pub fn object(&self, key: &ObjectKey) -> Option<Value> {
        let state = self.shared.read();
        let k = store::object_key(key.namespace.as_deref(), &key.name);
        let obj = state.store.get(&key.group, &key.resource, &k)?;
        obj.full_value(&key.api_version(), &key.kind)
    }

    /// Every successful create made through the HTTP API, in order.
    pub fn create_log(&self) -> Vec<ObjectKey> {
        self.shared
            .create_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Number of HTTP requests received so far (including rejected ones).
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// What the resource endpoints have served so far: objects in full and as metadata only.
    pub fn served(&self) -> ServedCount {
        self.shared.served.get()
    }

    /// The newest resource version.
    pub fn resource_version(&self) -> u64 {
        self.shared.read().store.current_rv()
    }

    /// Every change of the stored objects since start-up, in order: each create, update,
    /// patch and delete through the API, the garbage collector's, churn's, and the
    /// deletions a namespace or CRD takes with it (each at its own revision, before the
    /// namespace's or the CRD's). Revisions only grow.
    /// Watches report exactly these (filtered by resource, namespace and selectors). Never
    /// compacted.
    pub fn events(&self) -> Vec<SimEvent> {
        self.shared.read().store.journal().to_vec()
    }

    /// Compacts the history now: every continue token issued so far becomes too old and
    /// answers 410 Expired, as after an etcd compaction, and so does a new watch from any
    /// resource version handed out so far (an `ERROR` event with a 410 Expired Status, as
    /// when the watch cache no longer holds the changes). Open watches go on.
    pub fn compact(&self) {
        let mut state = self.shared.write();
        // A fresh revision, so that tokens issued at the newest one expire too.
        let rv = state.store.next_rv();
        state.store.compact(rv);
    }

    /// How often a watch with `allowWatchBookmarks=true` gets a `BOOKMARK` (a minute by
    /// default, as the watch cache sends them).
    pub fn set_bookmark_interval(&self, every: Duration) {
        *self
            .shared
            .bookmark_interval
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = every.max(Duration::from_millis(1));
    }

    /// How long a created CRD takes to become `Established` (and its resources served).
    /// Zero (the default) establishes it before the create returns.
    pub fn set_crd_establish_delay(&self, delay: Duration) {
        *self
            .shared
            .crd_delay
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = delay;
    }

    /// Stops the server; open connections are closed.
    pub fn shutdown(self) {}
}

impl Drop for SimServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Compacts every 5 minutes to the revision of the previous run, as the API server does
/// with etcd: history stays available for at least 5 minutes.
async fn compactor(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut previous = shared.read().store.current_rv();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(300)) => {}
            _ = stop.changed() => return,
        }
        let mut state = shared.write();
        state.store.compact(previous);
        previous = state.store.current_rv();
    }
}

/// Generates the initial cluster into a fresh store.
fn build_state(config: &SimConfig, apis: &BuiltinApis) -> State {
    let mut state = State {
        store: Store::new(),
        crds: BTreeMap::new(),
        cluster_ips: admission::ClusterIps::default(),
    };
    for s in apis.storage_resources() {
        let persisted = s.group != METRICS_GROUP;
        state.store.ensure_collection(ResourceType {
            group: s.group.clone(),
            version: s.version.clone(),
            plural: s.def.plural.clone(),
            kind: s.def.kind.clone(),
            namespaced: s.def.namespaced,
            persisted,
            custom: false,
        });
    }
    let mut api_services: Vec<(String, String)> = Vec::new();
    api_services.push((String::new(), "v1".to_string()));
    for g in &apis.groups {
        for v in &g.versions {
            api_services.push((g.name.clone(), v.version.clone()));
        }
    }
    api_services.push((METRICS_GROUP.to_string(), METRICS_VERSION.to_string()));
    api_services.push(("example.com".to_string(), "v1".to_string()));
    // The CRD registration controller registers every served version of a CRD group.
    for version in ["v1", "v1alpha1"] {
        api_services.push((MONITORING_GROUP.to_string(), version.to_string()));
    }
    let plan = generate::Plan {
        seed: config.seed,
        objects: config.objects,
        namespaces: config.namespaces,
        empty: config.empty,
        api_services,
    };
    let targets = {
        let state_ref = &mut state;
        let mut sink = |k: &generate::K, mut v: Value| -> u64 { load_object(state_ref, k, &mut v) };
        let generator = generate::Generator::new(&plan, &mut sink);
        generator.run(&plan)
    };
    for (k, mut v) in generate::metrics_objects(config.seed, &targets) {
        load_object(&mut state, &k, &mut v);
    }
    state.store.finish_bulk();
    // The generated cluster has no history: a watch starts at its revision or later.
    let generated = state.store.current_rv();
    state.store.compact(generated);
    state
}

/// Stores one generated object, giving it the next resource version (unless it is computed
/// on each request, as metrics and component statuses are).
fn load_object(state: &mut State, k: &generate::K, v: &mut Value) -> u64 {
    let persisted = k.group != METRICS_GROUP;
    let computed = !persisted || (k.group.is_empty() && k.plural == "componentstatuses");
    let rv = if !computed {
        let rv = state.store.next_rv();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        rv
    } else {
        0
    };
    if k.plural == "customresourcedefinitions" {
        register_crd(state, v, true);
    }
    let custom = state
        .store
        .collection(k.group, k.plural)
        .is_some_and(|c| c.rtype.custom);
    let alt = (k.group.is_empty() && k.plural == "events").then(|| objects::events_v1_view(v));
    match Obj::from_value(std::mem::take(v), custom, alt.as_ref()) {
        Ok(obj) => state.store.bulk_insert(k.group, k.plural, obj),
        Err(e) => debug_assert!(false, "generated object is malformed: {e}"),
    }
    rv
}
