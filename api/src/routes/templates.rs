//! Templates (beta): `/v1/templates…` (an account's stored templates, validate) and
//! `/v1/starter-templates…` (the catalog), plus [`resolve`], which renders a stored template
//! for a send before anything else sees the message.

use crate::AppState;
use crate::auth::AccountScope;
use crate::body::{QueryParams, RequestBody, StrictJson};
use crate::cursor::{Listing, finish_page, page_query};
use crate::error::{ApiError, FieldError};
use crate::idempotency;
use crate::views::Page;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use postagent_core::ids::{AccountId, mint};
use postagent_core::store::{After, MAX_TEMPLATES, StoredTemplate, TemplateWrite};
use postagent_core::template::{self, Part, starters};
use postagent_core::time::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value, json};

const MAX_NAME_BYTES: usize = 200;

fn alias_ok(a: &str) -> bool {
    let mut c = a.chars();
    a.len() <= 128
        && c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
}

pub fn view(t: &StoredTemplate) -> Value {
    let mut v = json!({
        "id": t.id, "name": t.name, "subject": t.subject, "text": t.text,
        "created_at": t.created_at, "updated_at": t.updated_at,
    });
    if let Some(obj) = v.as_object_mut() {
        for (k, val) in [
            ("alias", &t.alias),
            ("html", &t.html),
            ("from_starter_alias", &t.from_starter_alias),
            ("from_starter_version", &t.from_starter_version),
        ] {
            if let Some(val) = val.as_ref().filter(|s| !s.is_empty()) {
                obj.insert(k.into(), json!(val));
            }
        }
    }
    v
}

fn summary(t: &StoredTemplate) -> Value {
    let mut v = json!({"id": t.id, "name": t.name, "subject": t.subject,
        "created_at": t.created_at, "updated_at": t.updated_at});
    if let (Some(a), Some(obj)) = (&t.alias, v.as_object_mut()) {
        obj.insert("alias".into(), json!(a));
    }
    v
}

/// The rules a template must meet to be stored (create, and a patch's result).
fn check(t: &StoredTemplate) -> Result<(), ApiError> {
    let bad = |m: &str| ApiError::bad_request("invalid_request", m.to_owned());
    if t.name.is_empty() {
        return Err(bad("name is required"));
    }
    if t.name.len() > MAX_NAME_BYTES {
        return Err(bad("name too long (max 200 chars)"));
    }
    if let Some(a) = &t.alias
        && !alias_ok(a)
    {
        return Err(bad("alias must match [A-Za-z][A-Za-z0-9._-]{0,127}"));
    }
    if t.subject.is_empty() || t.text.is_empty() {
        return Err(bad("subject and text are required"));
    }
    for (src, part) in
        [(Some(&t.subject), Part::Subject), (Some(&t.text), Part::Text), (t.html.as_ref(), Part::Html)]
    {
        if let Some(src) = src
            && let Err(e) = template::parse(src)
        {
            return Err(ApiError::bad_request(
                "invalid_template",
                format!("template part {} failed to parse: {e}", part.as_str()),
            )
            .with_details(json!({"part": part.as_str(), "message": e})));
        }
    }
    Ok(())
}

fn write_error(w: TemplateWrite) -> Result<(), ApiError> {
    match w {
        TemplateWrite::Done => Ok(()),
        TemplateWrite::AliasTaken => {
            Err(ApiError::conflict("alias_taken", "a template with this alias already exists"))
        }
        TemplateWrite::LimitReached => Err(ApiError::bad_request(
            "template_limit_reached",
            format!("an account may have at most {MAX_TEMPLATES} templates"),
        )),
        TemplateWrite::NotFound => Err(ApiError::not_found("template")),
    }
}

#[derive(Deserialize, Debug)]
pub struct CreateRequest {
    alias: Option<String>,
    from_starter: Option<String>,
    html: Option<String>,
    name: Option<String>,
    subject: Option<String>,
    text: Option<String>,
}

impl RequestBody for CreateRequest {
    const FIELDS: &'static [&'static str] = &["alias", "from_starter", "html", "name", "subject", "text"];
    fn validate(&self, _errors: &mut Vec<FieldError>) {}
}

/// A string field that counts as absent when empty (e2a's rule for these bodies).
pub(super) fn given(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.is_empty())
}

pub async fn create(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    headers: HeaderMap,
    body: StrictJson<CreateRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency::key_from(&headers)?;
    let r = body.value;
    idempotency::once(&state, &who.account_id, key, "POST /v1/templates", &body.raw, || async {
        let now = Timestamp::now();
        let mut t = StoredTemplate {
            id: mint("tmpl_", 16),
            account_id: who.account_id.clone(),
            alias: given(&r.alias),
            name: r.name.clone().unwrap_or_default(),
            subject: r.subject.clone().unwrap_or_default(),
            text: r.text.clone().unwrap_or_default(),
            html: given(&r.html),
            from_starter_alias: None,
            from_starter_version: None,
            created_at: now,
            updated_at: now,
        };
        if let Some(alias) = given(&r.from_starter) {
            if given(&r.subject).is_some() || given(&r.text).is_some() || t.html.is_some() {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "from_starter is mutually exclusive with subject, text and html: the starter is copied \
                     verbatim; edit the template after creating it",
                ));
            }
            let s = starters::find(&alias).ok_or_else(|| starter_not_found(&alias))?;
            t.subject = s.subject.to_owned();
            t.text = s.text.clone();
            t.html = Some(s.html.clone());
            t.name = given(&r.name).unwrap_or_else(|| s.name.to_owned());
            t.alias = given(&r.alias).or_else(|| Some(s.alias.to_owned()));
            t.from_starter_alias = Some(s.alias.to_owned());
            t.from_starter_version = Some(starters::VERSION.to_owned());
        }
        check(&t)?;
        write_error(state.store.create_template(&t).await?)?;
        tracing::info!(account = %who.account_id, template = %t.id, "template created");
        Ok((StatusCode::CREATED, view(&t)))
    })
    .await
}

pub async fn list(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    q: QueryParams,
) -> Result<Json<Page<Value>>, ApiError> {
    let list = Listing::new(&state.secret, "templates", &q)?;
    let rows = state.store.list_templates(&who.account_id, &list.query).await?;
    Ok(Json(list.page(rows, summary)))
}

async fn find(state: &AppState, account: &AccountId, id: &str) -> Result<StoredTemplate, ApiError> {
    state.store.get_template(account, id).await?.ok_or_else(|| ApiError::not_found("template"))
}

pub async fn get(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(view(&find(&state, &who.account_id, &id).await?)))
}

#[derive(Deserialize, Debug)]
pub struct UpdateRequest {
    alias: Option<String>,
    html: Option<String>,
    name: Option<String>,
    subject: Option<String>,
    text: Option<String>,
}

impl RequestBody for UpdateRequest {
    const FIELDS: &'static [&'static str] = &["alias", "html", "name", "subject", "text"];
    fn validate(&self, _errors: &mut Vec<FieldError>) {}
}

pub async fn update(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(id): Path<String>,
    body: StrictJson<UpdateRequest>,
) -> Result<Json<Value>, ApiError> {
    let r = body.value;
    let old = find(&state, &who.account_id, &id).await?;
    let mut t = old.clone();
    if let Some(a) = r.alias {
        t.alias = Some(a).filter(|a| !a.is_empty());
    }
    if let Some(h) = r.html {
        t.html = Some(h).filter(|h| !h.is_empty());
    }
    t.name = r.name.unwrap_or(t.name);
    t.subject = r.subject.unwrap_or(t.subject);
    t.text = r.text.unwrap_or(t.text);
    if t == old {
        return Ok(Json(view(&t)));
    }
    check(&t)?;
    t.updated_at = Timestamp::now();
    write_error(state.store.update_template(&t).await?)?;
    Ok(Json(view(&t)))
}

pub async fn delete(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(id): Path<String>,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    q.require_confirm()?;
    if !state.store.delete_template(&who.account_id, &id).await? {
        return Err(ApiError::not_found("template"));
    }
    Ok(Json(json!({"deleted": true, "id": id})))
}

#[derive(Deserialize, Debug)]
pub struct ValidateRequest {
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
    test_data: Option<Map<String, Value>>,
}

impl RequestBody for ValidateRequest {
    const FIELDS: &'static [&'static str] = &["subject", "text", "html", "test_data"];
    fn validate(&self, _errors: &mut Vec<FieldError>) {}
}

/// Always 200: the verdict is in the body (`valid`, `errors`), with the preview when valid
/// and a placeholder for every variable the source names.
pub async fn validate(
    AccountScope(_who): AccountScope,
    body: StrictJson<ValidateRequest>,
) -> Result<Json<Value>, ApiError> {
    let r = body.value;
    let data = Value::Object(r.test_data.unwrap_or_default());
    let mut errors = Vec::new();
    let mut variables: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut rendered = Map::new();
    let data_ok =
        template::check_data(&data).map_err(|e| errors.push(json!({"part": "subject", "message": e})));
    for (src, part) in [(r.subject, Part::Subject), (r.text, Part::Text), (r.html, Part::Html)] {
        let src = src.unwrap_or_default();
        match template::parse(&src) {
            Err(e) => errors.push(json!({"part": part.as_str(), "message": e})),
            Ok(t) => {
                for v in t.variables() {
                    if seen.insert((*v).to_owned()) {
                        variables.push((*v).to_owned());
                    }
                }
                if data_ok.is_ok() {
                    match t.render(&data, part) {
                        Ok(out) if part == Part::Html && out.is_empty() => {}
                        Ok(out) => {
                            rendered.insert(part.as_str().into(), json!(out));
                        }
                        Err(e) => errors.push(json!({"part": part.as_str(), "message": e})),
                    }
                }
            }
        }
    }
    let mut out = json!({"valid": errors.is_empty(), "errors": errors});
    if let Some(obj) = out.as_object_mut() {
        if errors_empty(obj) {
            obj.insert("rendered".into(), Value::Object(rendered));
        }
        if !variables.is_empty() {
            let suggested = template::suggested_data(variables.iter().map(String::as_str));
            obj.insert("suggested_data".into(), Value::Object(suggested));
        }
    }
    Ok(Json(out))
}

fn errors_empty(obj: &Map<String, Value>) -> bool {
    obj.get("errors").and_then(Value::as_array).is_some_and(Vec::is_empty)
}

fn starter_not_found(alias: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "starter_template_not_found",
        format!("no starter template named {alias:?}"),
    )
}

fn starter_view(s: &starters::Starter) -> Value {
    let variables: Vec<Value> = s
        .variables
        .iter()
        .map(|v| {
            json!({"name": v.name, "required": v.required, "raw": v.raw,
                "description": v.description, "example": v.example})
        })
        .collect();
    json!({"alias": s.alias, "name": s.name, "description": s.description, "version": starters::VERSION,
        "subject": s.subject, "variables": variables})
}

pub async fn list_starters(
    State(state): State<AppState>,
    AccountScope(_who): AccountScope,
    q: QueryParams,
) -> Result<Json<Page<Value>>, ApiError> {
    let page = page_query(&state.secret, "starters", q.get("cursor"), q.limit()?)?;
    let after = page.after.as_ref().map(|a| a.key.clone());
    let rows: Vec<&starters::Starter> = starters::all()
        .iter()
        .filter(|s| after.as_deref().is_none_or(|a| s.alias > a))
        .take(page.limit as usize + 1)
        .collect();
    let (rows, next_cursor) = finish_page(&state.secret, "starters", rows, page.limit, |s| After {
        created_at: Timestamp::from_micros(0),
        key: s.alias.to_owned(),
    });
    Ok(Json(Page { items: rows.into_iter().map(starter_view).collect(), next_cursor }))
}

pub async fn get_starter(
    AccountScope(_who): AccountScope,
    Path(alias): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = starters::find(&alias).ok_or_else(|| starter_not_found(&alias))?;
    let mut v = starter_view(s);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("text".into(), json!(s.text));
        obj.insert("html".into(), json!(s.html));
    }
    Ok(Json(v))
}

/// What a send names: a stored template by id or alias, and its data.
pub struct Reference {
    pub id: Option<String>,
    pub alias: Option<String>,
    pub data: Value,
}

/// Renders the referenced template for a send: `(subject, text, html)`. The send's own
/// checks (header safety, sizes) then run on the result, as on any literal send.
pub async fn resolve(
    state: &AppState,
    account: &AccountId,
    r: &Reference,
) -> Result<template::Rendered, ApiError> {
    let found = match (&r.id, &r.alias) {
        (Some(id), _) => state.store.get_template(account, id).await?,
        (None, Some(alias)) => state.store.template_by_alias(account, alias).await?,
        (None, None) => None,
    };
    let t = found.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "template_not_found", "the referenced template does not exist")
    })?;
    let out = template::render_all(&t.subject, &t.text, t.html.as_deref(), &r.data).map_err(|e| {
        ApiError::bad_request(
            "template_render_failed",
            format!("template part {} failed to render: {}", e.part.as_str(), e.message),
        )
        .with_details(json!({"part": e.part.as_str(), "message": e.message}))
    })?;
    for (rendered, src, part) in [(&out.subject, &t.subject, Part::Subject), (&out.text, &t.text, Part::Text)]
    {
        if rendered.trim().is_empty() {
            let variables: Vec<String> = template::parse(src)
                .map(|p| p.variables().iter().map(|v| (*v).to_owned()).collect())
                .unwrap_or_default();
            return Err(ApiError::bad_request(
                "template_rendered_empty",
                format!(
                    "template part {} rendered empty; supply values for its variables ({}) in template_data",
                    part.as_str(),
                    variables.join(", ")
                ),
            )
            .with_details(json!({"part": part.as_str(), "variables": variables})));
        }
    }
    Ok(out)
}
