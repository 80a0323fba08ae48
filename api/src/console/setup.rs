//! Setup: domains with the DNS records to publish and their verification, webhooks with
//! their recent deliveries and a redeliver button, and API keys (a new key shown once).

use super::api::segment;
use super::session::{Posted, Signed};
use super::{Console, MAX_ROWS, context, list_page, page, problem, see_other};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

/// Deliveries shown on a webhook's page.
const RECENT_DELIVERIES: usize = 50;

#[derive(Deserialize, Default)]
pub struct Flash {
    #[serde(default)]
    done: String,
}

impl Flash {
    fn text(&self) -> Option<&'static str> {
        match self.done.as_str() {
            "verified" => Some("Checked: the domain's records are published and verified."),
            "checked" => {
                Some("Checked: the records are not all in place yet. DNS changes can take a while to appear.")
            }
            "redelivered" => Some("Redelivery scheduled: the event goes out again to its webhooks."),
            "revoked" => Some("The key is revoked: it stops working at once."),
            _ => None,
        }
    }
}

/// `GET /console/domains`.
pub async fn domains(State(c): State<Console>, s: Signed) -> Response {
    list_page(&c, &s, "domains", "Domains", "/v1/domains", "domains.html").await
}

/// `GET /console/domains/{domain}`.
pub async fn domain(
    State(c): State<Console>,
    s: Signed,
    Path(name): Path<String>,
    Query(f): Query<Flash>,
) -> Response {
    let d = or_page!(c.get(&s.who, &format!("/v1/domains/{}", segment(&name))).await);
    let mut ctx = context(&s, "domains", d["domain"].as_str().unwrap_or("Domain"));
    ctx.insert("d".into(), d);
    ctx.insert("flash".into(), json!(f.text()));
    page(StatusCode::OK, "domain.html", ctx.into())
}

/// `POST /console/domains/{domain}/verify`: checks the records now.
pub async fn verify_domain(
    State(c): State<Console>,
    Path(name): Path<String>,
    Posted { s, .. }: Posted,
) -> Response {
    let path = format!("/v1/domains/{}", segment(&name));
    match c.call(&s.who, Method::POST, &format!("{path}/verify"), None).await {
        Ok(v) if v["verified"] == true => {
            see_other(&format!("/console/domains/{}?done=verified", segment(&name)))
        }
        Ok(_) => see_other(&format!("/console/domains/{}?done=checked", segment(&name))),
        Err(r) => r.page(),
    }
}

/// `GET /console/webhooks`.
pub async fn webhooks(State(c): State<Console>, s: Signed) -> Response {
    list_page(&c, &s, "webhooks", "Webhooks", "/v1/webhooks", "webhooks.html").await
}

/// `GET /console/webhooks/{id}`.
pub async fn webhook(
    State(c): State<Console>,
    s: Signed,
    Path(id): Path<String>,
    Query(f): Query<Flash>,
) -> Response {
    let path = format!("/v1/webhooks/{}", segment(&id));
    let hook = or_page!(c.get(&s.who, &path).await);
    let deliveries = or_page!(c.get(&s.who, &format!("{path}/deliveries?limit={RECENT_DELIVERIES}")).await);
    let mut ctx = context(&s, "webhooks", "Webhook");
    ctx.insert("w".into(), hook);
    ctx.insert("deliveries".into(), deliveries["items"].clone());
    ctx.insert("flash".into(), json!(f.text()));
    page(StatusCode::OK, "webhook.html", ctx.into())
}

/// `POST /console/events/{id}/redeliver` (from a webhook's page, which it returns to).
pub async fn redeliver(
    State(c): State<Console>,
    Path(id): Path<String>,
    Posted { s, form }: Posted,
) -> Response {
    let hook = form.text("webhook");
    let body = if hook.is_empty() { json!({}) } else { json!({"webhook_id": hook}) };
    match c.call(&s.who, Method::POST, &format!("/v1/events/{}/redeliver", segment(&id)), Some(&body)).await {
        Ok(_) if !hook.is_empty() => {
            see_other(&format!("/console/webhooks/{}?done=redelivered", segment(&hook)))
        }
        Ok(_) => see_other("/console/webhooks"),
        Err(r) => r.page(),
    }
}

async fn keys_page(
    c: &Console,
    s: &Signed,
    created: Option<serde_json::Value>,
    flash: Option<&str>,
) -> Response {
    let (keys, more) = or_page!(c.all_pages(&s.who, "/v1/account/api-keys", MAX_ROWS).await);
    let (agents, _) = or_page!(c.all_pages(&s.who, "/v1/agents", MAX_ROWS).await);
    let mut ctx = context(s, "keys", "API keys");
    ctx.insert("keys".into(), json!(keys));
    ctx.insert("more".into(), json!(more));
    ctx.insert("agents".into(), json!(agents));
    ctx.insert("created".into(), json!(created));
    ctx.insert("flash".into(), json!(flash));
    page(StatusCode::OK, "keys.html", ctx.into())
}

/// `GET /console/keys`.
pub async fn keys(State(c): State<Console>, s: Signed, Query(f): Query<Flash>) -> Response {
    keys_page(&c, &s, None, f.text()).await
}

/// `POST /console/keys`: the new key is on this one answer only (not a redirect: reloading
/// would not show it again, and it is never stored).
pub async fn create_key(State(c): State<Console>, Posted { s, form }: Posted) -> Response {
    let agent = form.text("agent_email");
    let mut body = json!({"name": form.text("name")});
    if agent.is_empty() {
        body["scope"] = json!("account");
    } else {
        body["scope"] = json!("agent");
        body["agent_email"] = json!(agent);
    }
    match c.call(&s.who, Method::POST, "/v1/account/api-keys", Some(&body)).await {
        Ok(created) => keys_page(&c, &s, Some(created), None).await,
        Err(r) if r.status.is_client_error() && r.status != StatusCode::NOT_FOUND => {
            problem(r.status, "Key not created", &r.message)
        }
        Err(r) => r.page(),
    }
}

/// `POST /console/keys/{id}/revoke`.
pub async fn revoke_key(
    State(c): State<Console>,
    Path(id): Path<String>,
    Posted { s, .. }: Posted,
) -> Response {
    match c
        .call(&s.who, Method::DELETE, &format!("/v1/account/api-keys/{}?confirm=DELETE", segment(&id)), None)
        .await
    {
        Ok(_) => see_other("/console/keys?done=revoked"),
        Err(r) => r.page(),
    }
}
