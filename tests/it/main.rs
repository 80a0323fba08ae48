//! The integration tests, in one binary (one link step for the lot): a module per area, the
//! shared helpers (a test app, the `postagent` binary, Postfix worlds, Python clients) in
//! `common`. `cargo test --test it <filter>` runs part of it, e.g. `cargo test --test it
//! messages::` or `… trust_e2e`.

#[macro_use]
mod common;

mod api;
mod chroot_e2e;
mod cli;
mod client_e2e;
mod console;
mod console_e2e;
mod contacts;
mod data_rights;
mod docs;
mod domains;
mod fanout_e2e;
mod inbound_e2e;
mod lab;
mod lifecycle;
mod loops;
mod loops_e2e;
mod mcp;
mod mcp_clients;
mod mcp_conformance;
mod messages;
mod openapi;
mod operator;
mod outbound;
mod outbound_e2e;
mod postfix_maps_e2e;
mod postfix_setup;
mod rate_limits;
mod retention;
mod reviews;
mod scheduled;
mod sdk_compat;
mod sdk_mail;
mod suppressions;
mod templates;
mod trust_e2e;
mod webhooks;
mod ws;
