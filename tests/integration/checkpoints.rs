//! Checkpoints between daily snapshots: the daemon's watches, what a checkpoint holds, and
//! that every change the simulator's event log has reaches one, through broken and expired
//! watches.
