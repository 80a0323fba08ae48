//! The postagent delivery service (LMTP server, ingest, webhook worker, WebSocket hub).
//!
//! Built by the Inbound and Fan-out issues; the crate exists now so the workspace has its final shape.
