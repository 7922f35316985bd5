//! The cluster as kube-autosave sees it: connecting with the standard kubeconfig chain, the
//! request client with its bounded retries, discovery, lists walked page by page, what could
//! not be read, and watches that say which objects changed. It reads and (for `restore`
//! only) writes objects; it knows nothing of snapshots or the repository.
//!
//! Discovery is hand-rolled instead of kube's `Discovery`: one failing group (an aggregated
//! API whose backend is down) must be skipped and reported, not fail all; aggregated
//! discovery v2 answers for every group in one request; every served version is needed, not
//! only the preferred one; and lists are asked for as metadata only and parsed item by item,
//! which kube's typed `Api` does not offer for dynamic resources.

pub mod api;
pub mod connect;
pub mod discovery;
pub mod identity;
pub mod paging;
pub mod skipped;
pub mod watch;

pub use api::{Api, ApiError, RetryPolicy};
pub use connect::{ClusterOptions, ConnectError, connect};
pub use discovery::{Discovered, DiscoveryError, ResourceType, discover};
pub use identity::kube_system_uid;
pub use paging::Paging;
pub use skipped::Skipped;
