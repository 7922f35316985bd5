//! Points in time: `list --checkpoints`, `restore --at`, `diff` between any two points, and
//! `history` of one object, against checkpoints and snapshots at a real destination.
