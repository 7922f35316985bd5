//! kube-autosave keeps restorable snapshots of every Kubernetes resource of a cluster in S3:
//! a content-addressed store of deduplicated objects (`store`), the reader that turns a
//! cluster into a snapshot (`snapshot`), and the exporter that publishes each snapshot in the
//! plain `backup/<ts>/<namespace>/<resource>.json` layout (`export`).

pub mod cli;
pub mod config;
pub mod daemon;
pub mod export;
pub mod inspect;
pub mod job;
pub mod kube;
pub mod object_name;
pub mod repo;
pub mod restore;
pub mod seal;
pub mod snapshot;
pub mod store;
mod task;
