//! Recorded discovery documents of a real API server, embedded so that the crate does not
//! depend on the current directory. `fixtures/k8s-discovery/README.md` explains which of them
//! are the consistent source of truth (the three embedded here); the other recorded legacy
//! documents in that directory are used only by the tests, to check the shape of the
//! documents derived from these.

/// Aggregated discovery (`apidiscovery.k8s.io/v2`) of every group under `/apis`.
pub(crate) const AGGREGATED_V2: &str = include_str!("../fixtures/k8s-discovery/aggregated_v2.json");

/// The legacy `APIResourceList` of the core group, `/api/v1`.
pub(crate) const API_V1: &str = include_str!("../fixtures/k8s-discovery/api__v1.json");

/// The legacy `APIVersions` of `/api`.
pub(crate) const API: &str = include_str!("../fixtures/k8s-discovery/api.json");
