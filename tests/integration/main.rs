//! kube-autosave's integration tests, one binary: each module tells one part of the user's
//! story against real servers on loopback (an S3 server, the simulated API server).

mod support;

mod checkpoints;
mod cli;
mod daemon;
mod deploy;
mod encryption;
mod export;
mod fresh_cluster;
mod history;
mod inspect;
mod prune;
mod restore;
mod secrets;
mod shared_bucket;
mod snapshot;
mod store;
