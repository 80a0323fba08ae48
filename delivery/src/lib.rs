//! The postagent delivery service (LMTP server, ingest, webhook worker, WebSocket hub).
//!
//! [`lmtp`] is the protocol side of inbound delivery: Postfix hands agent mail to it over
//! LMTP (RFC 2033), and it passes each message to an [`lmtp::LmtpBackend`] (the ingest:
//! signature check, parsing, threading, storing). The webhook worker and WebSocket hub
//! are built by the Fan-out issue.

pub mod ingest;
pub mod lmtp;
