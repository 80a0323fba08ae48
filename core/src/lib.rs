//! postagent's shared library: configuration, typed ids, the store (one trait, SQLite and
//! PostgreSQL behind it), signing helpers and the DNS resolver every role uses.

pub mod apikey;
pub mod auth;
pub mod bus;
pub mod config;
pub mod dns;
pub mod export;
pub mod ids;
pub mod janitor;
pub mod magic;
pub mod mail;
pub mod metrics;
pub mod mime;
pub mod net;
pub mod peers;
pub mod seal;
pub mod secret;
pub mod service;
pub mod sign;
pub mod ssrf;
pub mod store;
pub mod template;
pub mod time;
pub mod vocab;
pub mod webhook_sig;

pub use config::Config;
pub use store::{Store, StoreError};
pub use time::Timestamp;
