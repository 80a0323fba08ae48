//! Signed, opaque pagination cursors: base64url(JSON position) + "." + base64url(HMAC).
//!
//! The list's filters are pinned inside (`f`), so a cursor from one listing cannot be
//! replayed against another; any change to the bytes is 400 `invalid_cursor`.

use crate::body::QueryParams;
use crate::error::ApiError;
use crate::views::Page;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use postagent_core::mail::lifecycle::NewStage;
use postagent_core::secret::Secret;
use postagent_core::sign::{ct_eq, hmac_sha256};
use postagent_core::store::{
    After, Agent, ApiKey, Contact, ConversationSummary, Delivery, Domain, Engagement, Hold, Message,
    PageQuery, StoredEvent, StoredTemplate, Suppression, Webhook,
};
use postagent_core::time::Timestamp;
use serde::{Deserialize, Serialize};

/// A row of a paged listing: where it sits in the listing's order (newest first by
/// `created_at`, ties broken by `key`).
pub trait Positioned {
    fn position(&self) -> After;
}

macro_rules! positioned {
    ($($row:ty => |$r:ident| ($at:expr, $key:expr)),+ $(,)?) => {
        $(impl Positioned for $row {
            fn position(&self) -> After {
                let $r = self;
                After { created_at: $at, key: $key }
            }
        })+
    };
}

positioned! {
    ApiKey => |k| (k.created_at, k.id.to_string()),
    Agent => |a| (a.created_at, a.email.clone()),
    ConversationSummary => |c| (c.last_message_at, c.id.clone()),
    Domain => |d| (d.created_at, d.domain.clone()),
    StoredEvent => |e| (e.created_at, e.id.clone()),
    Message => |m| (m.created_at, m.id.clone()),
    (Hold, Message) => |r| (r.0.created_at, r.0.message_id.clone()),
    Webhook => |w| (w.created_at, w.id.clone()),
    Delivery => |d| (d.created_at, d.id.clone()),
    Suppression => |s| (s.created_at, s.address.clone()),
    NewStage => |r| (r.occurred_at, r.id.clone()),
    StoredTemplate => |t| (t.created_at, t.id.clone()),
    Contact => |c| (c.created_at, c.address.clone()),
    Engagement => |e| (e.created_at, e.address.clone()),
}

/// One page of a listing: the rows to read (`?cursor=` and `?limit=`), with its filters
/// pinned in the cursor so a continuation cannot change the listing. Every list handler
/// reads through it: `Listing::new`, the store call with [`Listing::query`], then
/// [`Listing::page`].
pub struct Listing<'a> {
    secret: &'a Secret,
    pin: String,
    pub query: PageQuery,
}

impl<'a> Listing<'a> {
    pub fn new(secret: &'a Secret, pin: impl Into<String>, q: &QueryParams) -> Result<Self, ApiError> {
        Self::with_default(secret, pin, q, 100)
    }

    /// [`Listing::new`] for a listing whose page is `default` rows unless `?limit=` says.
    pub fn with_default(
        secret: &'a Secret,
        pin: impl Into<String>,
        q: &QueryParams,
        default: u32,
    ) -> Result<Self, ApiError> {
        let pin = pin.into();
        let limit = q.limit_or(default)?;
        let query = page_query(secret, &pin, q.get("cursor"), limit)?;
        Ok(Self { secret, pin, query })
    }

    /// The store's `limit + 1` rows trimmed to the page, and the next cursor when more exist.
    pub fn trim<T: Positioned>(&self, rows: Vec<T>) -> (Vec<T>, Option<String>) {
        finish_page(self.secret, &self.pin, rows, self.query.limit, T::position)
    }

    /// The page as the client sees it, each row through `view`.
    pub fn page<T: Positioned, V: Serialize>(&self, rows: Vec<T>, view: impl FnMut(&T) -> V) -> Page<V> {
        let (rows, next_cursor) = self.trim(rows);
        Page { items: rows.iter().map(view).collect(), next_cursor }
    }
}

const LABEL: &[u8] = b"postagent-cursor-v1\n";

#[derive(Serialize, Deserialize)]
struct Position {
    c: i64,
    k: String,
    f: String,
}

pub fn encode(secret: &Secret, filter: &str, after: &After) -> String {
    let pos = Position { c: after.created_at.as_micros(), k: after.key.clone(), f: filter.to_owned() };
    let payload = B64.encode(serde_json::to_vec(&pos).unwrap_or_default());
    let mac = hmac_sha256(secret.expose(), &[LABEL, payload.as_bytes()]);
    format!("{payload}.{}", B64.encode(mac))
}

pub fn decode(secret: &Secret, filter: &str, cursor: &str) -> Result<After, ApiError> {
    let invalid =
        || ApiError::bad_request("invalid_cursor", "the cursor is invalid or belongs to another listing");
    let (payload, mac) = cursor.split_once('.').ok_or_else(invalid)?;
    let mac = B64.decode(mac).map_err(|_| invalid())?;
    let expected = hmac_sha256(secret.expose(), &[LABEL, payload.as_bytes()]);
    if !ct_eq(&mac, &expected) {
        return Err(invalid());
    }
    let bytes = B64.decode(payload).map_err(|_| invalid())?;
    let pos: Position = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if pos.f != filter {
        return Err(invalid());
    }
    Ok(After { created_at: Timestamp::from_micros(pos.c), key: pos.k })
}

/// The page to read for a `cursor`/`limit` query.
pub fn page_query(
    secret: &Secret,
    filter: &str,
    cursor: Option<&str>,
    limit: u32,
) -> Result<PageQuery, ApiError> {
    let after = cursor.filter(|c| !c.is_empty()).map(|c| decode(secret, filter, c)).transpose()?;
    Ok(PageQuery { after, limit })
}

/// Trims the store's `limit + 1` rows to a page and mints the next cursor when more exist.
pub fn finish_page<T>(
    secret: &Secret,
    filter: &str,
    mut rows: Vec<T>,
    limit: u32,
    position: impl Fn(&T) -> After,
) -> (Vec<T>, Option<String>) {
    let limit = limit as usize;
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let next = rows.last().map(|last| encode(secret, filter, &position(last)));
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let secret = Secret::new(vec![7; 32]);
        let after = After { created_at: Timestamp::from_micros(42), key: "a@b.org".into() };
        let c = encode(&secret, "agents:live", &after);
        assert_eq!(decode(&secret, "agents:live", &c).expect("valid"), after);
        assert!(decode(&secret, "agents:trash", &c).is_err(), "filter is pinned");
        assert!(decode(&Secret::new(vec![8; 32]), "agents:live", &c).is_err(), "other secret");
        let mut bytes = c.clone().into_bytes();
        bytes[3] ^= 1;
        assert!(decode(&secret, "agents:live", &String::from_utf8_lossy(&bytes)).is_err());
        assert!(decode(&secret, "agents:live", "garbage").is_err());
    }
}
