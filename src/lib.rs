//! postagent's production wiring, as a library: what `postagent serve` (and each single-role
//! command) starts, one function per role, so the integration tests start exactly the same
//! thing on port 0. The binary (`main.rs`) only parses flags and calls in here.

pub mod cli;
pub mod logging;
pub mod notify;
pub mod serve;
