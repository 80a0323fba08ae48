//! The console's templates (minijinja, compiled into the binary, HTML-escaped by default) and
//! its stylesheet.

use minijinja::Environment;
use serde_json::Value;
use std::sync::OnceLock;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("templates/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = templates![
    "base.html",
    "message.html",
    "login.html",
    "link.html",
    "sessions.html",
    "reviews.html",
    "review.html",
    "agents.html",
    "agent.html",
    "mail.html",
    "conversation.html",
    "conversations.html",
    "domains.html",
    "domain.html",
    "webhooks.html",
    "webhook.html",
    "keys.html",
];

pub const STYLESHEET: &str = include_str!("templates/console.css");

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            // A template that does not parse fails every render of it, loudly, and the
            // test that renders each page catches it.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "console template does not parse");
            }
        }
        env.add_filter("when", when);
        env
    })
}

/// `2026-12-07T09:01:54.123456Z` → `2026-12-07 09:01 UTC`.
fn when(v: String) -> String {
    match (v.get(..10), v.get(11..16)) {
        (Some(day), Some(hm)) if v.len() >= 16 => format!("{day} {hm} UTC"),
        _ => v,
    }
}

pub fn render(name: &str, ctx: &Value) -> Result<String, minijinja::Error> {
    environment().get_template(name)?.render(ctx)
}
