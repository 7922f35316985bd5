//! Tests of the simulated API server over real HTTP(S) on loopback.

mod common;

mod admission;
mod churn;
mod discovery;
mod faults;
mod gc;
mod generated;
mod kubectl;
mod paging;
mod scale;
mod secrets;
mod watch;
mod writes;
