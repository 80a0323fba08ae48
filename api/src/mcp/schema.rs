//! Tool inputs: each field is declared once, as a [`Field`], and gives both the published JSON
//! Schema (draft-07, strict) and the validation run before any work is done. Validation
//! failures are reported the way e2a's server reports them: a list of issues, each with a
//! `code`, a `path` and a `message`.

use base64::Engine;
use serde_json::{Map, Value, json};

/// The e2a email pattern (zod's), for `format: email` fields.
const EMAIL_PATTERN: &str =
    r"^(?!\.)(?!.*\.\.)([A-Za-z0-9_'+\-\.]*)[A-Za-z0-9_+-]@([A-Za-z0-9][A-Za-z0-9\-]*\.)+[A-Za-z]{2,}$";
/// RFC 3339 date-time with a mandatory offset.
const DATE_TIME_PATTERN: &str = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})$";
const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;
/// Attachment limits (decoded bytes), as the REST API applies them.
const ATTACHMENT_MAX: usize = 10 * 1024 * 1024;
const ATTACHMENTS_TOTAL_MAX: usize = 25 * 1024 * 1024;
const ATTACHMENTS_MAX_ITEMS: usize = 10;

/// The type of one input field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ty {
    Str,
    /// A string of at most this many characters.
    StrMax(usize),
    /// A non-empty string (`id1`).
    NonEmpty,
    Email,
    DateTime,
    Bool,
    /// `confirm`: literally `true`.
    ConfirmTrue,
    /// A page size: 1..=100 written as `exclusiveMinimum: 0`.
    Limit,
    /// A page size written as `minimum: 1` (the lifecycle tool's form).
    LimitMin1,
    /// An integer 0..=2^53-1.
    Index,
    StrList,
    /// A list of non-empty strings, at least one.
    NonEmptyList,
    /// A list of non-empty strings.
    NonEmptyItems,
    Enum(&'static [&'static str]),
    /// A free-form object.
    Map,
    Attachments,
    /// Webhook filters: `agent_emails`, `conversation_ids`, `labels` (strict).
    Filters,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
}

pub const fn req(name: &'static str, ty: Ty) -> Field {
    Field { name, ty, required: true }
}

pub const fn opt(name: &'static str, ty: Ty) -> Field {
    Field { name, ty, required: false }
}

fn str_list() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

fn schema_of(ty: Ty) -> Value {
    match ty {
        Ty::Str => json!({"type": "string"}),
        Ty::StrMax(n) => json!({"type": "string", "maxLength": n}),
        Ty::NonEmpty => json!({"type": "string", "minLength": 1}),
        Ty::Email => json!({"type": "string", "format": "email", "pattern": EMAIL_PATTERN}),
        Ty::DateTime => json!({"type": "string", "format": "date-time", "pattern": DATE_TIME_PATTERN}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::ConfirmTrue => json!({"type": "boolean", "const": true}),
        Ty::Limit => json!({"type": "integer", "exclusiveMinimum": 0, "maximum": 100}),
        Ty::LimitMin1 => json!({"type": "integer", "minimum": 1, "maximum": 100}),
        Ty::Index => json!({"type": "integer", "minimum": 0, "maximum": MAX_SAFE_INTEGER}),
        Ty::StrList => str_list(),
        Ty::NonEmptyList => {
            json!({"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1})
        }
        Ty::NonEmptyItems => json!({"type": "array", "items": {"type": "string", "minLength": 1}}),
        Ty::Enum(values) => json!({"type": "string", "enum": values}),
        Ty::Map => json!({"type": "object", "propertyNames": {"type": "string"}, "additionalProperties": {}}),
        Ty::Attachments => json!({
            "type": "array",
            "maxItems": ATTACHMENTS_MAX_ITEMS,
            "items": {
                "type": "object",
                "properties": {
                    "filename": {"type": "string", "minLength": 1, "maxLength": 255},
                    "content_type": {"type": "string", "pattern": r"^[a-zA-Z][a-zA-Z0-9.+-]*\/[a-zA-Z0-9.+-]+$"},
                    "data": {"type": "string", "minLength": 1, "pattern": r"^[A-Za-z0-9+/]+={0,2}$"}
                },
                "required": ["filename", "content_type", "data"]
            }
        }),
        Ty::Filters => json!({
            "type": "object",
            "properties": {"agent_emails": str_list(), "conversation_ids": str_list(), "labels": str_list()},
            "additionalProperties": false
        }),
    }
}

/// The published input schema of a tool.
pub fn input_schema(fields: &[Field]) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for f in fields {
        properties.insert(f.name.to_owned(), schema_of(f.ty));
        if f.required {
            required.push(json!(f.name));
        }
    }
    let mut schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        schema["required"] = Value::Array(required);
    }
    schema
}

/// One validation failure.
fn issue(code: &str, path: &[&str], message: impl Into<String>) -> Value {
    json!({"code": code, "path": path, "message": message.into()})
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    let local_ok = !local.is_empty()
        && !local.starts_with('.')
        && !local.contains("..")
        && local.chars().all(|c| c.is_ascii_alphanumeric() || "_'+-.".contains(c))
        && local.chars().last().is_some_and(|c| c.is_ascii_alphanumeric() || "_+-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels[..labels.len() - 1].iter().all(|l| {
            l.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    local_ok && domain_ok && !s.contains("..")
}

fn is_date_time(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
        || (s.len() >= 17 && {
            // Seconds are optional in the pattern: add them and try again.
            let (head, tail) = s.split_at(16);
            time::OffsetDateTime::parse(
                &format!("{head}:00{tail}"),
                &time::format_description::well_known::Rfc3339,
            )
            .is_ok()
        })
}

fn check_attachments(items: &[Value], path: &str, issues: &mut Vec<Value>) {
    if items.len() > ATTACHMENTS_MAX_ITEMS {
        issues.push(issue("too_big", &[path], format!("at most {ATTACHMENTS_MAX_ITEMS} attachments")));
        return;
    }
    let mut total = 0usize;
    for (i, item) in items.iter().enumerate() {
        let at = i.to_string();
        let Some(obj) = item.as_object() else {
            issues.push(issue("invalid_type", &[path, &at], "expected object"));
            continue;
        };
        let text = |k: &str| obj.get(k).and_then(Value::as_str);
        match text("filename") {
            Some(f) if !f.is_empty() && f.chars().count() <= 255 => {}
            _ => {
                issues.push(issue("invalid_type", &[path, &at, "filename"], "filename: 1 to 255 characters"))
            }
        }
        let ct_ok = text("content_type").is_some_and(|ct| {
            ct.split_once('/').is_some_and(|(t, s)| {
                t.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && t.chars().all(|c| c.is_ascii_alphanumeric() || ".+-".contains(c))
                    && !s.is_empty()
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || ".+-".contains(c))
            })
        });
        if !ct_ok {
            issues.push(issue("invalid_format", &[path, &at, "content_type"], "content_type: type/subtype"));
        }
        let Some(data) = text("data").filter(|d| !d.is_empty()) else {
            issues.push(issue("invalid_type", &[path, &at, "data"], "data: base64 content is required"));
            continue;
        };
        let decoded = base64::engine::general_purpose::STANDARD.decode(data).ok().filter(|d| {
            data.len().is_multiple_of(4) && base64::engine::general_purpose::STANDARD.encode(d) == data
        });
        match decoded {
            None => issues.push(issue("custom", &[path, &at, "data"], "data is not canonical padded base64")),
            Some(d) if d.is_empty() || d.len() > ATTACHMENT_MAX => issues.push(issue(
                "custom",
                &[path, &at, "data"],
                format!("each attachment must be 1 to {ATTACHMENT_MAX} bytes"),
            )),
            Some(d) => total += d.len(),
        }
    }
    if total > ATTACHMENTS_TOTAL_MAX {
        issues.push(issue(
            "custom",
            &[path],
            format!("attachments total more than {ATTACHMENTS_TOTAL_MAX} bytes"),
        ));
    }
}

/// The strings of an array of strings.
fn strings(v: &Value) -> Option<Option<Vec<&str>>> {
    v.as_array().map(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
}

fn check(ty: Ty, v: &Value, name: &str, issues: &mut Vec<Value>) {
    let bad_type = |expected: &str| issue("invalid_type", &[name], format!("expected {expected}"));
    match ty {
        Ty::Str => {
            if !v.is_string() {
                issues.push(bad_type("string"));
            }
        }
        Ty::StrMax(n) => match v.as_str() {
            None => issues.push(bad_type("string")),
            Some(s) if s.chars().count() > n => {
                issues.push(issue("too_big", &[name], format!("at most {n} characters")))
            }
            Some(_) => {}
        },
        Ty::NonEmpty => match v.as_str() {
            None => issues.push(bad_type("string")),
            Some("") => issues.push(issue("too_small", &[name], "must not be empty")),
            Some(_) => {}
        },
        Ty::Email => match v.as_str() {
            None => issues.push(bad_type("string")),
            Some(s) if !is_email(s) => issues.push(issue("invalid_format", &[name], "invalid email address")),
            Some(_) => {}
        },
        Ty::DateTime => match v.as_str() {
            None => issues.push(bad_type("string")),
            Some(s) if !is_date_time(s) => {
                issues.push(issue("invalid_format", &[name], "invalid date-time (RFC 3339 with an offset)"))
            }
            Some(_) => {}
        },
        Ty::Bool => {
            if !v.is_boolean() {
                issues.push(bad_type("boolean"));
            }
        }
        Ty::ConfirmTrue => {
            if v != &Value::Bool(true) {
                issues.push(issue("invalid_value", &[name], "confirm must be true"));
            }
        }
        Ty::Limit | Ty::LimitMin1 | Ty::Index => {
            let (lo, hi) = if ty == Ty::Index { (0, MAX_SAFE_INTEGER) } else { (1, 100) };
            match v.as_i64() {
                None => issues.push(bad_type("integer")),
                Some(n) if n < lo => {
                    issues.push(issue("too_small", &[name], format!("must be at least {lo}")))
                }
                Some(n) if n > hi => issues.push(issue("too_big", &[name], format!("must be at most {hi}"))),
                Some(_) => {}
            }
        }
        Ty::StrList => {
            if strings(v).flatten().is_none() {
                issues.push(bad_type("array of strings"));
            }
        }
        Ty::NonEmptyList | Ty::NonEmptyItems => match strings(v).flatten() {
            None => issues.push(bad_type("array of strings")),
            Some(items) if ty == Ty::NonEmptyList && items.is_empty() => {
                issues.push(issue("too_small", &[name], "at least one item"))
            }
            Some(items) if items.iter().any(|s| s.is_empty()) => {
                issues.push(issue("too_small", &[name], "items must not be empty"))
            }
            Some(_) => {}
        },
        Ty::Enum(values) => match v.as_str() {
            Some(s) if values.contains(&s) => {}
            _ => {
                issues.push(issue("invalid_value", &[name], format!("expected one of {}", values.join(", "))))
            }
        },
        Ty::Map => {
            if !v.is_object() {
                issues.push(bad_type("object"));
            }
        }
        Ty::Attachments => match v.as_array() {
            None => issues.push(bad_type("array")),
            Some(items) => check_attachments(items, name, issues),
        },
        Ty::Filters => match v.as_object() {
            None => issues.push(bad_type("object")),
            Some(obj) => {
                let known = ["agent_emails", "conversation_ids", "labels"];
                let unknown: Vec<&String> = obj.keys().filter(|k| !known.contains(&k.as_str())).collect();
                if !unknown.is_empty() {
                    issues.push(json!({"code": "unrecognized_keys", "path": [name], "keys": unknown,
                        "message": "unknown keys"}));
                }
                for k in known {
                    if let Some(list) = obj.get(k)
                        && strings(list).flatten().is_none()
                    {
                        issues.push(issue("invalid_type", &[name, k], "expected array of strings"));
                    }
                }
            }
        },
    }
}

/// Checks `args` against `fields`: unknown keys, missing required fields, each value's type
/// and limits. `None` when valid, else the issues.
pub fn validate(fields: &[Field], args: &Map<String, Value>) -> Option<Vec<Value>> {
    let mut issues = Vec::new();
    let unknown: Vec<&String> =
        args.keys().filter(|k| !fields.iter().any(|f| f.name == k.as_str())).collect();
    if !unknown.is_empty() {
        issues.push(json!({"code": "unrecognized_keys", "path": [], "keys": unknown,
            "message": format!("Unrecognized key(s) in object: {}", unknown.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", "))}));
    }
    for f in fields {
        match args.get(f.name) {
            None if f.required => issues.push(issue("invalid_type", &[f.name], "Required")),
            None => {}
            Some(v) => check(f.ty, v, f.name, &mut issues),
        }
    }
    (!issues.is_empty()).then_some(issues)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn strict_schema_and_validation_from_one_declaration() {
        let fields = [req("message_id", Ty::Str), opt("limit", Ty::Limit), req("confirm", Ty::ConfirmTrue)];
        let schema = input_schema(&fields);
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["required"], json!(["message_id", "confirm"]));
        assert_eq!(schema["properties"]["confirm"], json!({"type": "boolean", "const": true}));
        assert!(validate(&fields, &args(json!({"message_id": "m", "confirm": true}))).is_none());
        let issues =
            validate(&fields, &args(json!({"message_id": "m", "confirm": false, "x": 1}))).expect("bad");
        let codes: Vec<&str> = issues.iter().filter_map(|i| i["code"].as_str()).collect();
        assert_eq!(codes, ["unrecognized_keys", "invalid_value"]);
        let issues = validate(&fields, &args(json!({"confirm": true, "limit": 101}))).expect("bad");
        let codes: Vec<&str> = issues.iter().filter_map(|i| i["code"].as_str()).collect();
        assert_eq!(codes, ["invalid_type", "too_big"]);
        assert!(input_schema(&[]).get("required").is_none());
    }

    #[test]
    fn emails_dates_and_attachments() {
        assert!(is_email("bot@agents.example.org"));
        assert!(!is_email(".bot@example.org") && !is_email("a..b@example.org") && !is_email("bot@localhost"));
        assert!(is_date_time("2027-01-01T00:00:00+02:00") && is_date_time("2027-01-01T00:00Z"));
        assert!(!is_date_time("2027-01-01T00:00:00") && !is_date_time("tomorrow"));
        let fields = [opt("attachments", Ty::Attachments)];
        let ok =
            json!({"attachments": [{"filename": "a.txt", "content_type": "text/plain", "data": "aGk="}]});
        assert!(validate(&fields, &args(ok)).is_none());
        let bad =
            json!({"attachments": [{"filename": "a.txt", "content_type": "text/plain", "data": "aGk"}]});
        assert_eq!(validate(&fields, &args(bad)).expect("bad")[0]["code"], "custom");
        let many: Vec<Value> =
            (0..11).map(|_| json!({"filename": "a", "content_type": "text/plain", "data": "aGk="})).collect();
        assert_eq!(
            validate(&fields, &args(json!({"attachments": many}))).expect("bad")[0]["code"],
            "too_big"
        );
    }
}
