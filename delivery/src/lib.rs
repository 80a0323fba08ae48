//! The postagent delivery service: inbound over LMTP and outbound fan-out to webhooks.
//!
//! [`lmtp`] is the protocol side of inbound delivery: Postfix hands agent mail to it over
//! LMTP (RFC 2033), and it passes each message to an [`lmtp::LmtpBackend`] (the ingest:
//! signature check, parsing, threading, storing, with the `email.received` event and its
//! webhook deliveries in the same transaction). [`webhook`] is the worker that POSTs those
//! deliveries. The WebSocket stream lives with the API (`postagent_api::ws`), which owns
//! the HTTP listener it upgrades from.

pub mod ingest;
pub mod jobs;
pub mod lmtp;
pub mod relay;
pub mod submit;
pub mod webhook;
