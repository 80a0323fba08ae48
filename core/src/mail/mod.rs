//! The mail rules: what postagent decides about a message, apart from how it is stored or
//! carried. [`inbound`] checks the signed set and builds what a delivery stores;
//! [`protection`] is the scan policy both directions share; [`review`] holds and decides
//! held mail; [`outbound`] composes, gates and queues what agents send (and reads bounces);
//! [`event`] builds every event payload.

pub mod event;
pub mod inbound;
pub mod lifecycle;
pub mod loops;
pub mod outbound;
pub mod protection;
pub mod review;
