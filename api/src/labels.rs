//! Message labels as e2a checks them: trimmed and lowercased, 1–64 of `[a-z0-9:_-]`, the
//! `e2a:` prefix reserved for the system on changes (allowed in filters, to find system
//! labels), at most 50 per change or filter and 100 per message. Every failure is a 400: these
//! are the handler's checks, after the request schema (e2a's order), with e2a's messages.

use crate::error::ApiError;

pub const MAX_PER_CHANGE: usize = 50;
pub const MAX_PER_MESSAGE: usize = 100;
pub const MAX_IN_FILTER: usize = 50;
const MAX_LEN: usize = 64;
const RESERVED: &str = "e2a:";

/// One label, normalized, or why it is not one.
pub fn normalize(label: &str) -> Result<String, String> {
    let l = label.trim().to_ascii_lowercase();
    if l.is_empty() {
        return Err("label must not be empty".into());
    }
    if l.chars().count() > MAX_LEN {
        return Err(format!("label too long (max {MAX_LEN} chars)"));
    }
    if !l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b":_-".contains(&b)) {
        return Err(format!("label {l:?} has invalid character; allowed: a-z 0-9 : - _"));
    }
    Ok(l)
}

/// `add_labels` or `remove_labels` of a PATCH (`name` is the field), normalized and
/// deduplicated; 400 `invalid_request` otherwise.
pub fn change(name: &str, list: &[String]) -> Result<Vec<String>, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_request", m);
    if list.len() > MAX_PER_CHANGE {
        return Err(bad(format!("{name} exceeds per-request cap of {MAX_PER_CHANGE}")));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for l in list {
        let l = normalize(l).map_err(bad)?;
        if l.starts_with(RESERVED) {
            return Err(bad(format!("labels starting with {RESERVED:?} are reserved for system use")));
        }
        if !out.contains(&l) {
            out.push(l);
        }
    }
    Ok(out)
}

/// A message's labels after a change: 400 `invalid_request` past [`MAX_PER_MESSAGE`].
pub fn check_total(labels: &[String]) -> Result<(), ApiError> {
    if labels.len() > MAX_PER_MESSAGE {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("label limit exceeded — a message may carry at most {MAX_PER_MESSAGE} labels"),
        ));
    }
    Ok(())
}

/// The `?labels=` filter (comma-separated, all must match), normalized; 400 `invalid_filter`
/// past [`MAX_IN_FILTER`] values or for a value that is not a label.
pub fn filter(raw: Option<&str>) -> Result<Vec<String>, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_filter", m);
    let values: Vec<&str> = raw.unwrap_or("").split(',').filter(|s| !s.trim().is_empty()).collect();
    if values.len() > MAX_IN_FILTER {
        return Err(bad(format!("labels filter exceeds cap of {MAX_IN_FILTER}")));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        let l = normalize(v).map_err(|e| bad(format!("labels filter: {e}")))?;
        if !out.contains(&l) {
            out.push(l);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_normalized_and_bounded() {
        assert_eq!(normalize(" Urgent:Q1 ").as_deref(), Ok("urgent:q1"));
        assert_eq!(normalize("").unwrap_err(), "label must not be empty");
        assert_eq!(normalize(&"a".repeat(65)).unwrap_err(), "label too long (max 64 chars)");
        assert!(normalize("a b").unwrap_err().contains("has invalid character"));
        let reserved = change("add_labels", &["e2a:spam".into()]).unwrap_err();
        assert_eq!((reserved.status.as_u16(), reserved.code), (400, "invalid_request"));
        assert_eq!(change("add_labels", &["A".into(), "a".into()]).ok(), Some(vec!["a".to_owned()]));
        let many: Vec<String> = (0..51).map(|i| format!("l{i}")).collect();
        assert_eq!(
            change("remove_labels", &many).unwrap_err().message,
            "remove_labels exceeds per-request cap of 50"
        );
        let f = filter(Some(&many.join(","))).unwrap_err();
        assert_eq!((f.code, f.message.as_str()), ("invalid_filter", "labels filter exceeds cap of 50"));
        assert_eq!(
            filter(Some("e2a:flagged, Work,,")).ok(),
            Some(vec!["e2a:flagged".to_owned(), "work".to_owned()])
        );
        assert_eq!(filter(None).ok(), Some(Vec::new()));
    }
}
