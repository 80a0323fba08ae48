//! Showing a message's HTML without trusting it. Three layers, each enough alone for scripts:
//! the HTML is cleaned by ammonia (an allowlist of elements and attributes: no script, no
//! event handlers, no `style`, no forms); it is served as its own document whose
//! Content-Security-Policy sandboxes it and allows no script and no remote load; and the
//! console embeds it in an `<iframe sandbox>`. Remote images are removed before the browser
//! sees them (a tracking pixel would tell the sender the message was read); the page says how
//! many.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// HTML cleaned at most (larger bodies are cut first; the text part is shown whole).
const MAX_HTML_BYTES: usize = 2 * 1024 * 1024;

/// The policy of the body document: styles inline, images only inline `data:`, no script.
const BODY_CSP: &str =
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'";

/// The cleaned HTML and how many remote resources were removed.
pub fn clean(html: &str) -> (String, usize) {
    let mut end = html.len().min(MAX_HTML_BYTES);
    while !html.is_char_boundary(end) {
        end -= 1;
    }
    let blocked = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&blocked);
    let cleaned = ammonia::Builder::default()
        .url_schemes(HashSet::from(["http", "https", "mailto", "data"]))
        .link_rel(Some("noopener noreferrer nofollow"))
        .attribute_filter(move |element, attribute, value| {
            // Anything the browser would fetch by itself: only inline data.
            let fetched =
                matches!((element, attribute), ("img", "src") | ("img", "srcset") | (_, "background"));
            if fetched && !value.trim_start().to_ascii_lowercase().starts_with("data:image/") {
                counter.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Some(value.into())
        })
        .clean(&html[..end])
        .to_string();
    (cleaned, blocked.load(Ordering::Relaxed))
}

/// The response of a body frame: the cleaned HTML as a sandboxed document.
pub fn frame(cleaned: &str) -> Response {
    let doc = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><base target=\"_blank\"></head><body>{cleaned}</body></html>"
    );
    let mut res = (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], doc).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(BODY_CSP));
    h.insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_handlers_and_remote_images_are_removed() {
        let (out, blocked) = clean(
            "<p onclick=\"x()\">hi<script>alert(1)</script><img src=\"https://t.example/p.gif\">\
             <img src=\"data:image/png;base64,AAAA\"><a href=\"javascript:alert(1)\">j</a>\
             <iframe src=\"https://x.example\"></iframe><style>body{}</style></p>",
        );
        assert!(!out.contains("script") && !out.contains("onclick") && !out.contains("javascript:"), "{out}");
        assert!(!out.contains("t.example") && !out.contains("iframe") && !out.contains("<style"), "{out}");
        assert!(out.contains("data:image/png;base64,AAAA"), "{out}");
        assert_eq!(blocked, 1);
    }

    #[test]
    fn a_huge_body_is_cut_before_it_is_parsed() {
        let big = "<b>é</b>".repeat(MAX_HTML_BYTES / 4);
        let (out, _) = clean(&big);
        assert!(out.len() <= MAX_HTML_BYTES + 64);
    }
}
