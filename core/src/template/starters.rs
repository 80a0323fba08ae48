//! The starter catalog: ready-made templates an account copies (`from_starter`) and edits.
//! Same aliases, variables and subjects as e2a's catalog, with postagent's own bodies: one
//! plain-text part and one HTML part in a shared, inline-styled 600px layout.

use std::sync::LazyLock;

pub const VERSION: &str = "1.0.0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    pub required: bool,
    /// Inserted with `{{{…}}}`: pre-rendered HTML, never escaped.
    pub raw: bool,
    pub description: &'static str,
    pub example: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Starter {
    pub alias: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub subject: &'static str,
    pub variables: Vec<Variable>,
    pub text: String,
    pub html: String,
}

const fn var(name: &'static str, description: &'static str, example: &'static str) -> Variable {
    Variable { name, required: true, raw: false, description, example }
}

const fn raw(name: &'static str, description: &'static str, example: &'static str) -> Variable {
    Variable { name, required: true, raw: true, description, example }
}

fn shared() -> Vec<Variable> {
    vec![
        var("company_name", "Your company or product name.", "Acme"),
        var("support_email", "Where recipients can write for help.", "support@acme.com"),
        var(
            "company_address",
            "Physical mailing address for the footer (CAN-SPAM).",
            "100 Main St, San Francisco, CA 94105",
        ),
        Variable {
            name: "preheader",
            required: false,
            raw: false,
            description: "Hidden preview text shown next to the subject in most inboxes.",
            example: "Your account is ready. One step to get started.",
        },
    ]
}

const TEXT_FOOTER: &str =
    "\n----------\n{{company_name}} · {{company_address}}\nSupport: {{support_email}}\n";
const AUTOMATED: &str = "This is an automated message from {{agent_name}} via {{company_name}}.\n";

/// The HTML layout around a starter's `content` (which uses `{{…}}` like the rest).
fn layout(content: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{{{{company_name}}}}</title></head>\n\
<body style=\"margin:0;padding:0;background:#f4f4f7;font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1f2937\">\n\
<div style=\"display:none;max-height:0;overflow:hidden\">{{{{preheader}}}}</div>\n\
<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\"><tr><td align=\"center\" style=\"padding:24px 12px\">\n\
<table role=\"presentation\" width=\"600\" cellpadding=\"0\" cellspacing=\"0\" style=\"max-width:600px;background:#ffffff;border-radius:8px\">\n\
<tr><td style=\"padding:32px 32px 8px;font-size:15px;line-height:1.6\">\n{content}\n</td></tr>\n\
<tr><td style=\"padding:16px 32px 32px;font-size:12px;line-height:1.5;color:#6b7280;border-top:1px solid #e5e7eb\">\
{{{{company_name}}}} · {{{{company_address}}}}<br>Support: <a href=\"mailto:{{{{support_email}}}}\" style=\"color:#4f46e5\">{{{{support_email}}}}</a></td></tr>\n\
</table></td></tr></table>\n</body></html>\n"
    )
}

fn button(url: &str, label: &str) -> String {
    format!(
        "<p style=\"margin:24px 0\"><a href=\"{url}\" style=\"display:inline-block;background:#4f46e5;color:#ffffff;\
text-decoration:none;padding:12px 20px;border-radius:6px;font-weight:600\">{label}</a></p>"
    )
}

fn starter(
    alias: &'static str,
    name: &'static str,
    description: &'static str,
    subject: &'static str,
    own: Vec<Variable>,
    text: &str,
    html: &str,
) -> Starter {
    let mut variables = shared();
    variables.extend(own);
    Starter {
        alias,
        name,
        description,
        subject,
        variables,
        text: format!("{text}{TEXT_FOOTER}"),
        html: layout(html),
    }
}

static CATALOG: LazyLock<Vec<Starter>> = LazyLock::new(|| {
    vec![
        starter(
            "agent-status",
            "Agent status",
            "Factual, numbers-first status report from an automated agent, with pre-rendered report sections and a dashboard link. Carries the automated-sender disclosure.",
            "{{agent_name}}: {{run_summary}}",
            vec![
                var("agent_name", "The agent's display name.", "Billing agent"),
                var("run_summary", "One line: what happened in this run.", "42 invoices sent, 0 failed"),
                raw(
                    "sections_html",
                    "Pre-rendered HTML sections of the report.",
                    "<h3>Invoices</h3><p>42 sent.</p>",
                ),
                var("sections_text", "The same sections as plain text.", "Invoices\n42 sent."),
                var("dashboard_url", "Where the full report lives.", "https://app.acme.com/agents/billing"),
            ],
            &format!(
                "{AUTOMATED}\n{{{{run_summary}}}}\n\n{{{{sections_text}}}}\n\nDashboard: {{{{dashboard_url}}}}\n"
            ),
            &format!(
                "<p style=\"color:#6b7280;font-size:13px\">This is an automated message from {{{{agent_name}}}} via {{{{company_name}}}}.</p>\
<h2 style=\"margin:0 0 12px\">{{{{run_summary}}}}</h2>{{{{{{sections_html}}}}}}{}",
                button("{{dashboard_url}}", "Open the dashboard")
            ),
        ),
        starter(
            "approval-request",
            "Approval request",
            "Human-in-the-loop approval request from an automated agent: action details, Approve and Reject buttons with fallback links, and an expiry line. Carries the automated-sender disclosure.",
            "Approval needed: {{action_summary}}",
            vec![
                var("agent_name", "The agent asking.", "Procurement agent"),
                var(
                    "action_summary",
                    "What the agent wants to do, in one line.",
                    "Pay invoice #1042 ($1,250.00)",
                ),
                raw(
                    "details_html",
                    "Pre-rendered <tr> rows, two <td> each: label and value.",
                    "<tr><td>Vendor</td><td>Globex</td></tr>",
                ),
                var("details_text", "The same details as plain text.", "Vendor: Globex"),
                var("approve_url", "The one-click approve link.", "https://app.acme.com/approve/abc"),
                var("reject_url", "The one-click reject link.", "https://app.acme.com/reject/abc"),
                var("expires_at", "When the request lapses.", "Friday 17:00 UTC"),
            ],
            &format!(
                "{AUTOMATED}\n{{{{agent_name}}}} needs your approval: {{{{action_summary}}}}\n\n{{{{details_text}}}}\n\n\
Approve: {{{{approve_url}}}}\nReject: {{{{reject_url}}}}\n\nThis request expires {{{{expires_at}}}}.\n"
            ),
            &format!(
                "<p style=\"color:#6b7280;font-size:13px\">This is an automated message from {{{{agent_name}}}} via {{{{company_name}}}}.</p>\
<h2 style=\"margin:0 0 12px\">{{{{action_summary}}}}</h2><table role=\"presentation\" cellpadding=\"6\">{{{{{{details_html}}}}}}</table>\
{}{}<p style=\"font-size:13px;color:#6b7280\">This request expires {{{{expires_at}}}}.</p>",
                button("{{approve_url}}", "Approve"),
                button("{{reject_url}}", "Reject")
            ),
        ),
        starter(
            "daily-digest",
            "Daily digest",
            "Recurring daily summary from an automated agent: a headline, pre-rendered sections, a dashboard link, and an unsubscribe link in the footer. Carries the automated-sender disclosure.",
            "{{agent_name}} daily digest — {{date}}",
            vec![
                var("agent_name", "The agent sending the digest.", "Research agent"),
                var("date", "The day the digest covers.", "7 December 2026"),
                var("headline", "The day in one sentence.", "Three new papers on DMARC adoption."),
                raw("sections_html", "Pre-rendered HTML sections.", "<h3>Papers</h3><p>…</p>"),
                var("sections_text", "The same sections as plain text.", "Papers\n…"),
                var("dashboard_url", "Where everything lives.", "https://app.acme.com/digest"),
                raw(
                    "unsubscribe_html",
                    "A single <a> unsubscribe link.",
                    "<a href=\"https://app.acme.com/u/x\">Unsubscribe</a>",
                ),
            ],
            &format!(
                "{AUTOMATED}\n{{{{headline}}}}\n\n{{{{sections_text}}}}\n\nDashboard: {{{{dashboard_url}}}}\n"
            ),
            &format!(
                "<p style=\"color:#6b7280;font-size:13px\">This is an automated message from {{{{agent_name}}}} via {{{{company_name}}}}.</p>\
<h2 style=\"margin:0 0 12px\">{{{{headline}}}}</h2>{{{{{{sections_html}}}}}}{}<p style=\"font-size:12px\">{{{{{{unsubscribe_html}}}}}}</p>",
                button("{{dashboard_url}}", "Open the dashboard")
            ),
        ),
        starter(
            "password-reset",
            "Password reset",
            "Terse, security-neutral password reset email with a single reset button and expiry notice.",
            "Reset your {{company_name}} password",
            vec![
                var("action_url", "The reset link.", "https://app.acme.com/reset/abc"),
                var("expires_minutes", "How long the link works.", "30"),
            ],
            "Someone asked to reset the password of your {{company_name}} account.\n\nReset it here:\n{{action_url}}\n\n\
The link expires in {{expires_minutes}} minutes. If you did not ask, ignore this email.\n",
            &format!(
                "<p>Someone asked to reset the password of your {{{{company_name}}}} account.</p>{}\
<p style=\"font-size:13px;color:#6b7280\">The link expires in {{{{expires_minutes}}}} minutes. If you did not ask, ignore this email.</p>",
                button("{{action_url}}", "Reset password")
            ),
        ),
        starter(
            "receipt",
            "Receipt",
            "Order receipt with a line-item table, right-aligned total, and a link to the hosted receipt. The template owns the items table; items_html supplies only the rows.",
            "Your {{company_name}} receipt — {{order_id}}",
            vec![
                var("order_id", "The order number.", "A-1042"),
                var("order_date", "When it was ordered.", "7 December 2026"),
                raw(
                    "items_html",
                    "Pre-rendered <tr> rows: item and amount.",
                    "<tr><td>Pro plan</td><td align=\"right\">$20.00</td></tr>",
                ),
                var("items_text", "The same items as plain text.", "Pro plan  $20.00"),
                var("total", "The total, formatted.", "$20.00"),
                var("receipt_url", "The hosted receipt.", "https://app.acme.com/receipts/A-1042"),
            ],
            "Thanks for your order {{order_id}} of {{order_date}}.\n\n{{items_text}}\n\nTotal: {{total}}\n\nReceipt: {{receipt_url}}\n",
            &format!(
                "<p>Thanks for your order {{{{order_id}}}} of {{{{order_date}}}}.</p>\
<table role=\"presentation\" width=\"100%\" cellpadding=\"6\">{{{{{{items_html}}}}}}\
<tr><td style=\"border-top:1px solid #e5e7eb\"><strong>Total</strong></td><td align=\"right\" style=\"border-top:1px solid #e5e7eb\"><strong>{{{{total}}}}</strong></td></tr></table>{}",
                button("{{receipt_url}}", "View receipt")
            ),
        ),
        starter(
            "verify-code",
            "Verification code",
            "Terse one-time verification code email. The code is selectable text in a monospace chip; there is no button.",
            "{{code}} is your {{company_name}} code",
            vec![
                var("code", "The one-time code.", "493021"),
                var("expires_minutes", "How long the code works.", "10"),
            ],
            "Your {{company_name}} verification code is:\n\n{{code}}\n\nIt expires in {{expires_minutes}} minutes.\n",
            "<p>Your {{company_name}} verification code is:</p>\
<p style=\"font-family:Menlo,Consolas,monospace;font-size:24px;letter-spacing:4px;background:#f3f4f6;display:inline-block;padding:8px 14px;border-radius:6px\">{{code}}</p>\
<p style=\"font-size:13px;color:#6b7280\">It expires in {{expires_minutes}} minutes.</p>",
        ),
        starter(
            "welcome",
            "Welcome",
            "Warm, brief welcome for new users with a single primary call to action.",
            "Welcome to {{company_name}}",
            vec![
                var("recipient_name", "The new user's first name.", "Sam"),
                var("cta_url", "Where the first step is.", "https://app.acme.com/onboarding"),
                var("cta_label", "The first step, as a button label.", "Set up your workspace"),
            ],
            "Welcome to {{company_name}}, {{recipient_name}} — your account is ready.\n\n\
Thanks for joining. There is just one thing to do to get started.\n\n{{cta_label}}:\n{{cta_url}}\n\n\
Questions? Reply to this email or write to the support address\nbelow.\n",
            &format!(
                "<h2 style=\"margin:0 0 12px\">Welcome to {{{{company_name}}}}, {{{{recipient_name}}}}</h2>\
<p>Your account is ready. Thanks for joining. There is just one thing to do to get started.</p>{}\
<p style=\"font-size:13px;color:#6b7280\">Questions? Reply to this email.</p>",
                button("{{cta_url}}", "{{cta_label}}")
            ),
        ),
    ]
});

/// Every starter, by alias.
pub fn all() -> &'static [Starter] {
    &CATALOG
}

pub fn find(alias: &str) -> Option<&'static Starter> {
    CATALOG.iter().find(|s| s.alias == alias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    #[test]
    fn every_starter_parses_names_its_variables_and_renders_its_examples() {
        let aliases: Vec<&str> = all().iter().map(|s| s.alias).collect();
        let mut sorted = aliases.clone();
        sorted.sort_unstable();
        assert_eq!(aliases, sorted, "listed by alias");
        assert_eq!(aliases.len(), 7);
        for s in all() {
            let declared: Vec<&str> = s.variables.iter().map(|v| v.name).collect();
            let mut used = Vec::new();
            for (src, part) in [
                (s.subject, super::super::Part::Subject),
                (&s.text, super::super::Part::Text),
                (&s.html, super::super::Part::Html),
            ] {
                let t =
                    super::super::parse(src).unwrap_or_else(|e| panic!("{} {}: {e}", s.alias, part.as_str()));
                used.extend(t.variables().iter().map(|v| (*v).to_owned()));
            }
            for u in &used {
                assert!(declared.contains(&u.as_str()), "{}: {u} is not declared", s.alias);
            }
            for d in &declared {
                assert!(used.iter().any(|u| u == d), "{}: {d} is declared but unused", s.alias);
            }
            let data: Map<String, Value> = s
                .variables
                .iter()
                .map(|v| (v.name.to_owned(), Value::String(v.example.to_owned())))
                .collect();
            let r = super::super::render_all(s.subject, &s.text, Some(&s.html), &Value::Object(data))
                .expect("renders");
            assert!(!r.subject.contains("{{") && !r.text.contains("{{"), "{}", s.alias);
        }
        let welcome = find("welcome").expect("welcome");
        let data = serde_json::json!({"company_name": "Acme", "recipient_name": "Sam"});
        let r = super::super::render_all(welcome.subject, &welcome.text, None, &data).expect("renders");
        assert_eq!(r.subject, "Welcome to Acme");
        assert!(r.text.contains("Welcome to Acme, Sam — your account is ready."));
    }
}
