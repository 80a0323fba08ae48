//! The tools, as e2a's MCP interface names them (`../shared/e2a/mcp.md` §3–4): name, title,
//! tier, annotations, inputs, and the `/v1` operation each one calls. One table; `tools/list`,
//! validation and dispatch all read it.

use super::schema::{Field, Ty, opt, req};
use serde_json::{Value, json};

/// Which credentials see a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Agent-scoped and account-scoped keys.
    Runtime,
    /// Account-scoped keys only.
    Admin,
}

/// The annotation sets of mcp.md §4.0, in their exact key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ann {
    Ro,
    RoI,
    Nro,
    W,
    Iw,
    Wni,
    D,
    Dx,
}

impl Ann {
    pub fn json(self) -> Value {
        match self {
            Self::Ro => json!({"readOnlyHint": true}),
            Self::RoI => json!({"readOnlyHint": true, "idempotentHint": true}),
            Self::Nro => json!({"readOnlyHint": false}),
            Self::W => json!({"destructiveHint": false}),
            Self::Iw => json!({"idempotentHint": true, "destructiveHint": false}),
            Self::Wni => json!({"destructiveHint": false, "idempotentHint": false}),
            Self::D => json!({"destructiveHint": true, "idempotentHint": true}),
            Self::Dx => json!({"destructiveHint": true}),
        }
    }
}

/// How a per-agent tool finds its agent (mcp.md §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    /// Not per-agent.
    None,
    /// Optional `email`, else the key's agent.
    Email,
    /// Optional `agent_email`, else the key's agent (the legacy aliases).
    AgentEmail,
    /// Optional `email` in email format, else the key's agent.
    EmailChecked,
    /// Required `email` in email format.
    EmailRequired,
}

/// How the result is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The REST body.
    Rest,
    /// `{<plural>: items, next_cursor?}`.
    List(&'static str),
    /// The trimmed message shape (§4.11); `hold_reason` appended for the review tools.
    Trimmed { hold_reason: bool },
    /// `{index, filename, content_type, size_bytes, download_url, expires_at, data?}`.
    Attachment,
    /// `{filename, content_type, size_bytes, data}` (the legacy inline alias).
    AttachmentData,
    /// Every page of the review queue as `{messages}` (the legacy alias).
    AllReviews,
}

/// Where the `Idempotency-Key` of a call comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyed {
    No,
    /// The `idempotency_key` argument, else a fresh key.
    FromArg,
    /// Always a fresh key.
    Minted,
}

/// Calls that are more than one request with copied fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    None,
    /// `text` defaults to `""`.
    ForwardText,
    /// The body's `scope` is always `agent`.
    AgentKey,
    /// `inline=true` when the `inline` argument is true.
    InlineIfAsked,
    /// Always `inline=true`.
    InlineAlways,
    /// Read the protection, overlay the supplied leaves, write it back.
    ProtectionOverlay,
}

#[derive(Debug, Clone)]
pub struct Tool {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub tier: Tier,
    pub ann: Ann,
    /// The `/v1` operationId.
    pub op: &'static str,
    pub fields: Vec<Field>,
    pub address: Address,
    /// The argument that fills the path's `{id}`.
    pub id_arg: Option<&'static str>,
    /// `(query parameter, argument)`.
    pub query: Vec<(&'static str, &'static str)>,
    /// `(body key, argument)`; an empty list sends no body.
    pub body: Vec<(&'static str, &'static str)>,
    pub keyed: Keyed,
    /// Sends `?confirm=DELETE` (the argument `confirm: true` is required).
    pub confirm: bool,
    pub output: Output,
    pub special: Special,
}

fn tool(name: &'static str, title: &'static str, tier: Tier, ann: Ann, op: &'static str) -> Tool {
    Tool {
        name,
        title,
        description: "",
        tier,
        ann,
        op,
        fields: Vec::new(),
        address: Address::None,
        id_arg: None,
        query: Vec::new(),
        body: Vec::new(),
        keyed: Keyed::No,
        confirm: false,
        output: Output::Rest,
        special: Special::None,
    }
}

/// The page inputs.
const PAGE: [Field; 2] = [opt("cursor", Ty::Str), opt("limit", Ty::Limit)];
const PAGE_QUERY: [(&str, &str); 2] = [("cursor", "cursor"), ("limit", "limit")];
const ATT: Field = opt("attachments", Ty::Attachments);
const CONFIRM: Field = req("confirm", Ty::ConfirmTrue);
const GATE: &[&str] = &["open", "allowlist", "domain"];
const ACTION: &[&str] = &["flag", "review", "block"];
const SENSITIVITY: &[&str] = &["off", "low", "medium", "high"];

impl Tool {
    fn describe(mut self, d: &'static str) -> Self {
        self.description = d;
        self
    }
    fn fields(mut self, f: &[Field]) -> Self {
        self.fields.extend_from_slice(f);
        self
    }
    fn address(mut self, a: Address) -> Self {
        self.address = a;
        self.fields.push(match a {
            Address::None => return self,
            Address::Email => opt("email", Ty::Str),
            Address::AgentEmail => opt("agent_email", Ty::Str),
            Address::EmailChecked => opt("email", Ty::Email),
            Address::EmailRequired => req("email", Ty::Email),
        });
        self
    }
    fn id(mut self, arg: &'static str) -> Self {
        self.id_arg = Some(arg);
        self
    }
    fn query(mut self, q: &[(&'static str, &'static str)]) -> Self {
        self.query.extend_from_slice(q);
        self
    }
    fn paged(self, plural: &'static str) -> Self {
        let mut t = self.fields(&PAGE).query(&PAGE_QUERY);
        t.output = Output::List(plural);
        t
    }
    /// The body copies these arguments under the same names.
    fn body(mut self, args: &[&'static str]) -> Self {
        self.body.extend(args.iter().map(|a| (*a, *a)));
        self
    }
    fn body_renamed(mut self, pairs: &[(&'static str, &'static str)]) -> Self {
        self.body.extend_from_slice(pairs);
        self
    }
    fn keyed(mut self, k: Keyed) -> Self {
        if k == Keyed::FromArg {
            self.fields.push(opt("idempotency_key", Ty::Str));
        }
        self.keyed = k;
        self
    }
    fn confirmed(mut self) -> Self {
        self.confirm = true;
        self.fields.push(CONFIRM);
        self
    }
    fn output(mut self, o: Output) -> Self {
        self.output = o;
        self
    }
    fn special(mut self, s: Special) -> Self {
        self.special = s;
        self
    }
}

use Ann::*;
use Tier::{Admin, Runtime};

fn mail_tools() -> Vec<Tool> {
    vec![
        tool("send_message", "Send email", Runtime, W, "sendMessage")
            .describe("Start a new email thread from the agent. For an answer inside a thread use reply_to_message. The result `accepted` (queued for delivery) and `pending_review` (held for a human) are both success: never send again.")
            .fields(&[req("to", Ty::StrList), opt("subject", Ty::Str), opt("text", Ty::Str), opt("html", Ty::Str),
                opt("template_id", Ty::Str), opt("template_alias", Ty::Str), opt("template_data", Ty::Map),
                opt("cc", Ty::StrList), opt("bcc", Ty::StrList), ATT, opt("conversation_id", Ty::Str), opt("reply_to", Ty::Str)])
            .body(&["to", "subject", "text", "html", "template_id", "template_alias", "template_data", "cc", "bcc",
                "attachments", "conversation_id", "reply_to"])
            .keyed(Keyed::FromArg)
            .address(Address::Email),
        tool("reply_to_message", "Reply to a message", Runtime, W, "replyToMessage")
            .describe("Reply inside the thread of a received (or the agent's own sent) message; threading headers are set for you.")
            .fields(&[req("message_id", Ty::Str), req("text", Ty::Str), opt("html", Ty::Str), opt("reply_all", Ty::Bool),
                opt("cc", Ty::StrList), opt("bcc", Ty::StrList), ATT, opt("conversation_id", Ty::Str), opt("reply_to", Ty::Str)])
            .id("message_id")
            .body(&["text", "html", "reply_all", "cc", "bcc", "attachments", "conversation_id", "reply_to"])
            .keyed(Keyed::FromArg)
            .address(Address::Email),
        tool("forward_message", "Forward a message", Runtime, W, "forwardMessage")
            .describe("Forward a message (with its attachments) to new recipients, as a new thread.")
            .fields(&[req("message_id", Ty::Str), req("to", Ty::StrList), opt("cc", Ty::StrList), opt("bcc", Ty::StrList),
                opt("text", Ty::Str), opt("html", Ty::Str), ATT, opt("conversation_id", Ty::Str), opt("reply_to", Ty::Str)])
            .id("message_id")
            .body(&["to", "text", "cc", "bcc", "html", "attachments", "conversation_id", "reply_to"])
            .keyed(Keyed::FromArg)
            .special(Special::ForwardText)
            .address(Address::Email),
        tool("update_message_labels", "Add or remove labels on an inbound message", Runtime, Iw, "updateMessage")
            .describe("Add or remove labels on an inbound message.")
            .fields(&[req("message_id", Ty::Str), opt("add_labels", Ty::StrList), opt("remove_labels", Ty::StrList)])
            .id("message_id")
            .body(&["add_labels", "remove_labels"])
            .address(Address::Email),
        tool("list_conversations", "List conversations for the agent", Runtime, Ro, "listConversations")
            .describe("List the agent's conversations, most recent first.")
            .paged("conversations")
            .fields(&[opt("since", Ty::Str), opt("until", Ty::Str)])
            .query(&[("since", "since"), ("until", "until")])
            .address(Address::Email),
        tool("get_conversation", "Get a single conversation with all member messages", Runtime, Ro, "getConversation")
            .describe("One conversation with every message in it.")
            .fields(&[req("conversation_id", Ty::Str)])
            .id("conversation_id")
            .address(Address::Email),
        tool("list_messages", "List messages (inbox or sent)", Runtime, Ro, "listMessages")
            .describe("List the agent's messages. Defaults: inbound, unread, newest first. Summaries only; get_message reads one (and marks it read).")
            .fields(&[opt("direction", Ty::Enum(&["inbound", "outbound", "all"])),
                opt("read_status", Ty::Enum(&["unread", "read", "all"]))])
            .paged("messages")
            .fields(&[opt("sort", Ty::Enum(&["asc", "desc"])), opt("from_", Ty::StrMax(200)),
                opt("subject_contains", Ty::StrMax(200)), opt("conversation_id", Ty::StrMax(200)),
                opt("since", Ty::Str), opt("until", Ty::Str), opt("labels", Ty::StrList), opt("deleted", Ty::Bool)])
            .query(&[("direction", "direction"), ("read_status", "read_status"), ("sort", "sort"), ("from", "from_"),
                ("subject_contains", "subject_contains"), ("conversation_id", "conversation_id"), ("since", "since"),
                ("until", "until"), ("labels", "labels"), ("deleted", "deleted")])
            .address(Address::Email),
        tool("restore_message", "Restore a message from trash", Runtime, Wni, "restoreMessage")
            .describe("Move a message out of the trash.")
            .fields(&[req("message_id", Ty::Str)])
            .id("message_id")
            .address(Address::Email),
        tool("delete_message", "Delete a message (move to trash)", Runtime, D, "deleteMessage")
            .describe("Move a message to the trash (restore_message brings it back). Never a permanent delete.")
            .fields(&[req("message_id", Ty::Str)])
            .id("message_id")
            .address(Address::Email)
            .confirmed(),
        tool("get_message", "Get a message", Runtime, Nro, "getMessage")
            .describe("Read one message: verified sender, authentication, text and attachments. Reading an unread inbound message marks it read.")
            .fields(&[req("message_id", Ty::Str)])
            .id("message_id")
            .output(Output::Trimmed { hold_reason: false })
            .address(Address::Email),
        tool("get_message_lifecycle", "Get message lifecycle (beta)", Runtime, RoI, "getMessageLifecycle")
            .describe("The state transitions of one message.")
            .fields(&[req("message_id", Ty::Str)])
            .id("message_id")
            .address(Address::Email)
            .fields(&[opt("cursor", Ty::Str), opt("limit", Ty::LimitMin1)])
            .query(&PAGE_QUERY)
            .output(Output::List("transitions")),
        tool("get_attachment", "Get one attachment (download URL; bytes by reference)", Runtime, Ro, "getAttachment")
            .describe("One attachment's metadata and a short-lived download URL; `inline: true` also returns small files' bytes (base64).")
            .fields(&[req("message_id", Ty::Str), req("attachment_index", Ty::Index), opt("inline", Ty::Bool)])
            .id("message_id")
            .output(Output::Attachment)
            .special(Special::InlineIfAsked)
            .address(Address::Email),
    ]
}

fn agent_tools() -> Vec<Tool> {
    vec![
        tool("list_agents", "List agents", Admin, Ro, "listAgents")
            .describe("List the account's agents (inboxes); `deleted: true` lists the trash.")
            .paged("agents")
            .fields(&[opt("deleted", Ty::Bool)])
            .query(&[("deleted", "deleted")]),
        tool("get_agent", "Get one agent's configuration", Runtime, Ro, "getAgent")
            .describe("One agent's configuration.")
            .address(Address::EmailRequired),
        tool("whoami", "Get the authenticated account's identity", Runtime, Ro, "getAccount")
            .describe("Who this credential is: the account, the key's scope and, for an agent key, its agent."),
        tool("create_agent", "Create a new agent inbox", Admin, W, "createAgent")
            .describe("Create an agent inbox at an address on one of the account's verified domains (or the shared domain).")
            .address(Address::EmailRequired)
            .fields(&[opt("name", Ty::Str)])
            .body(&["email", "name"]),
        tool("update_agent", "Rename an agent", Admin, Iw, "updateAgent")
            .describe("Rename an agent.")
            .address(Address::EmailChecked)
            .fields(&[req("name", Ty::StrMax(200))])
            .body(&["name"]),
        tool("get_protection", "Get an agent's protection config (beta)", Admin, Ro, "getAgentProtection")
            .describe("The agent's inbound and outbound gates, scan sensitivity and hold settings.")
            .address(Address::EmailChecked),
        tool("update_protection", "Update an agent's protection config (beta)", Admin, Iw, "putAgentProtection")
            .describe("Change some protection settings; the others keep their values.")
            .address(Address::EmailChecked)
            .fields(&[opt("inbound_gate_policy", Ty::Enum(GATE)), opt("inbound_gate_allowlist", Ty::StrList),
                opt("inbound_gate_action", Ty::Enum(ACTION)), opt("inbound_scan_sensitivity", Ty::Enum(SENSITIVITY)),
                opt("outbound_gate_policy", Ty::Enum(GATE)), opt("outbound_gate_allowlist", Ty::StrList),
                opt("outbound_gate_action", Ty::Enum(ACTION)), opt("outbound_scan_sensitivity", Ty::Enum(SENSITIVITY)),
                opt("holds_ttl_seconds", Ty::Index), opt("holds_on_expiry", Ty::Enum(&["approve", "reject"])),
                opt("holds_suppress_notifications", Ty::Bool)])
            .special(Special::ProtectionOverlay),
        tool("restore_agent", "Restore an agent from trash", Admin, Wni, "restoreAgent")
            .describe("Bring an agent back from the trash.")
            .address(Address::EmailRequired),
        tool("delete_agent", "Delete an agent inbox (DESTRUCTIVE)", Admin, D, "deleteAgent")
            .describe("Move an agent and its mail to the trash (restore_agent brings it back).")
            .address(Address::EmailChecked)
            .confirmed(),
    ]
}

fn account_tools() -> Vec<Tool> {
    let webhook_fields = [opt("description", Ty::Str), opt("filters", Ty::Filters)];
    vec![
        tool("list_domains", "List domains", Admin, Ro, "listDomains").describe("The account's mail domains.").paged("domains"),
        tool("register_domain", "Register a custom mail domain (returns DNS records to publish)", Admin, Iw, "registerDomain")
            .describe("Register a domain; publish the returned DNS records verbatim, then verify_domain.")
            .fields(&[req("domain", Ty::NonEmpty)])
            .body(&["domain"]),
        tool("get_domain", "Get one domain (poll sending status)", Admin, Ro, "getDomain")
            .describe("One domain and its verification state.")
            .fields(&[req("domain", Ty::NonEmpty)]),
        tool("verify_domain", "Verify a custom mail domain's DNS records", Admin, Iw, "verifyDomain")
            .describe("Check the domain's DNS records now.")
            .fields(&[req("domain", Ty::NonEmpty)]),
        tool("delete_domain", "Delete a custom mail domain (DESTRUCTIVE)", Admin, D, "deleteDomain")
            .describe("Delete a domain.")
            .fields(&[req("domain", Ty::NonEmpty)])
            .confirmed(),
        tool("list_reviews", "List messages awaiting review", Admin, Ro, "listReviews")
            .describe("Held messages waiting for a human decision.")
            .paged("reviews"),
        tool("get_review", "Get a review (full detail)", Admin, Ro, "getReview")
            .describe("One held message in full, with why it was held.")
            .fields(&[req("message_id", Ty::Str)])
            .id("message_id")
            .output(Output::Trimmed { hold_reason: true }),
        tool("approve_review", "Approve a held message (review)", Admin, W, "approveReview")
            .describe("Approve a held message: outbound mail is sent (with any overrides), inbound mail is released to the inbox.")
            .fields(&[req("message_id", Ty::Str), opt("subject", Ty::Str), opt("text", Ty::Str), opt("html", Ty::Str),
                opt("to", Ty::StrList), opt("cc", Ty::StrList), opt("bcc", Ty::StrList), ATT])
            .id("message_id")
            .body(&["subject", "text", "html", "to", "cc", "bcc", "attachments"])
            .keyed(Keyed::FromArg),
        tool("reject_review", "Reject a held message (review)", Admin, Dx, "rejectReview")
            .describe("Reject a held message.")
            .fields(&[req("message_id", Ty::Str), opt("reason", Ty::Str)])
            .id("message_id")
            .body(&["reason"]),
        tool("list_webhooks", "List webhook subscribers", Admin, Ro, "listWebhooks").describe("The account's webhooks.").paged("webhooks"),
        tool("get_webhook", "Show one webhook subscriber", Admin, Ro, "getWebhook")
            .describe("One webhook.")
            .fields(&[req("id", Ty::NonEmpty)])
            .id("id"),
        tool("create_webhook", "Create a webhook subscriber (returns plaintext signing_secret ONCE)", Admin, W, "createWebhook")
            .describe("Subscribe a URL to events; the signing secret is shown once.")
            .fields(&[req("url", Ty::NonEmpty), req("events", Ty::NonEmptyList)])
            .fields(&webhook_fields)
            .body(&["url", "events", "description", "filters"])
            .keyed(Keyed::Minted),
        tool("update_webhook", "Update a webhook subscriber", Admin, Iw, "updateWebhook")
            .describe("Change a webhook; lists replace the old ones.")
            .fields(&[req("id", Ty::NonEmpty), opt("url", Ty::Str), opt("events", Ty::NonEmptyItems),
                opt("filters", Ty::Filters), opt("description", Ty::Str), opt("enabled", Ty::Bool)])
            .id("id")
            .body(&["url", "events", "filters", "description", "enabled"]),
        tool("delete_webhook", "Delete a webhook subscriber (DESTRUCTIVE)", Admin, D, "deleteWebhook")
            .describe("Delete a webhook.")
            .fields(&[req("id", Ty::NonEmpty)])
            .id("id")
            .confirmed(),
        tool("rotate_webhook_secret", "Rotate a webhook's signing secret (returns new plaintext ONCE)", Admin, W, "rotateWebhookSecret")
            .describe("A new signing secret (shown once); the old one stays valid for a while.")
            .fields(&[req("id", Ty::NonEmpty)])
            .id("id")
            .keyed(Keyed::Minted),
        tool("test_webhook", "Fire a synthetic event to a webhook for debugging", Admin, W, "testWebhook")
            .describe("Send a synthetic event to a webhook.")
            .fields(&[req("id", Ty::NonEmpty), opt("type", Ty::Str)])
            .id("id")
            .body(&["type"]),
        tool("list_webhook_deliveries", "List recent delivery attempts for a webhook", Admin, Ro, "listWebhookDeliveries")
            .describe("Recent deliveries of one webhook.")
            .fields(&[req("id", Ty::NonEmpty), opt("status", Ty::Enum(&["pending", "delivered", "failed"]))])
            .id("id")
            .query(&[("status", "status")])
            .paged("deliveries"),
        tool("list_events", "List webhook events", Admin, Ro, "listEvents")
            .describe("The event log, newest first, with filters.")
            .fields(&[opt("type", Ty::Str), opt("agent_email", Ty::Str), opt("conversation_id", Ty::Str),
                opt("message_id", Ty::Str), opt("since", Ty::Str), opt("until", Ty::Str)])
            .query(&[("type", "type"), ("agent_email", "agent_email"), ("conversation_id", "conversation_id"),
                ("message_id", "message_id"), ("since", "since"), ("until", "until")])
            .paged("events"),
        tool("get_event", "Get one webhook event", Admin, Ro, "getEvent")
            .describe("One event and its payload.")
            .fields(&[req("event_id", Ty::Str)])
            .id("event_id"),
        tool("redeliver_event", "Replay a webhook event", Admin, W, "redeliverEvent")
            .describe("Deliver an event again, to one webhook or to every matching one.")
            .fields(&[req("event_id", Ty::Str), opt("webhook_id", Ty::Str)])
            .id("event_id")
            .body(&["webhook_id"]),
    ]
}

fn template_and_key_tools() -> Vec<Tool> {
    let source = [
        opt("name", Ty::Str),
        opt("alias", Ty::Str),
        opt("subject", Ty::Str),
        opt("text", Ty::Str),
        opt("html", Ty::Str),
    ];
    vec![
        tool("list_templates", "List email templates (beta)", Admin, Ro, "listTemplates").describe("Email templates.").paged("templates"),
        tool("get_template", "Get one email template (beta)", Admin, Ro, "getTemplate")
            .describe("One template.")
            .fields(&[req("id", Ty::NonEmpty)])
            .id("id"),
        tool("create_template", "Create an email template (beta)", Admin, W, "createTemplate")
            .describe("Create a template from source or from a starter.")
            .fields(&source)
            .fields(&[opt("from_starter", Ty::Str)])
            .body(&["name", "alias", "subject", "text", "html", "from_starter"]),
        tool("update_template", "Update an email template (beta)", Admin, Iw, "updateTemplate")
            .describe("Change a template.")
            .fields(&[req("id", Ty::NonEmpty)])
            .fields(&source)
            .id("id")
            .body(&["name", "alias", "subject", "text", "html"]),
        tool("delete_template", "Delete an email template (DESTRUCTIVE, beta)", Admin, D, "deleteTemplate")
            .describe("Delete a template.")
            .fields(&[req("id", Ty::NonEmpty)])
            .id("id")
            .confirmed(),
        tool("validate_template", "Validate template source (dry run, beta)", Admin, Ro, "validateTemplate")
            .describe("Check template source without saving it.")
            .fields(&[opt("subject", Ty::Str), opt("text", Ty::Str), opt("html", Ty::Str), opt("test_data", Ty::Map)])
            .body(&["subject", "text", "html", "test_data"]),
        tool("list_starter_templates", "List starter templates (beta)", Admin, Ro, "listStarterTemplates")
            .describe("Starter templates.")
            .paged("starter_templates"),
        tool("get_starter_template", "Get a starter template (beta)", Admin, Ro, "getStarterTemplate")
            .describe("One starter template.")
            .fields(&[req("alias", Ty::NonEmpty)]),
        tool("list_api_keys", "List API keys (metadata only)", Admin, Ro, "listApiKeys")
            .describe("The account's API keys (never the secrets).")
            .paged("api_keys"),
        tool("create_api_key", "Mint an AGENT-scoped API key (returns plaintext key ONCE)", Admin, W, "createApiKey")
            .describe("A new key limited to one agent; the key is shown once. Account-scoped keys cannot be minted here.")
            .fields(&[req("agent_email", Ty::NonEmpty), opt("name", Ty::Str), opt("expires_at", Ty::DateTime)])
            .body(&["agent_email", "name", "expires_at"])
            .keyed(Keyed::Minted)
            .special(Special::AgentKey),
        tool("delete_api_key", "Revoke an API key (DESTRUCTIVE)", Admin, D, "deleteApiKey")
            .describe("Revoke a key by its id.")
            .fields(&[req("id", Ty::NonEmpty)])
            .id("id")
            .confirmed(),
    ]
}

fn legacy_tools() -> Vec<Tool> {
    let approve = [opt("to", Ty::StrList), opt("cc", Ty::StrList), opt("bcc", Ty::StrList), ATT];
    vec![
        tool("send_email", "Deprecated alias: send_message", Runtime, W, "sendMessage")
            .describe("Deprecated: use send_message.")
            .fields(&[
                req("to", Ty::StrList),
                req("subject", Ty::Str),
                req("body", Ty::Str),
                opt("html_body", Ty::Str),
                opt("cc", Ty::StrList),
                opt("bcc", Ty::StrList),
                ATT,
                opt("conversation_id", Ty::Str),
            ])
            .body_renamed(&[
                ("to", "to"),
                ("subject", "subject"),
                ("text", "body"),
                ("html", "html_body"),
                ("cc", "cc"),
                ("bcc", "bcc"),
                ("attachments", "attachments"),
                ("conversation_id", "conversation_id"),
            ])
            .keyed(Keyed::FromArg)
            .address(Address::AgentEmail),
        tool("get_attachment_data", "Deprecated alias: get_attachment", Runtime, Ro, "getAttachment")
            .describe("Deprecated: use get_attachment with inline.")
            .fields(&[req("message_id", Ty::Str), req("attachment_index", Ty::Index)])
            .id("message_id")
            .output(Output::AttachmentData)
            .special(Special::InlineAlways)
            .address(Address::AgentEmail),
        tool("list_pending_messages", "Deprecated alias: list_reviews", Admin, Ro, "listReviews")
            .describe("Deprecated: use list_reviews.")
            .output(Output::AllReviews),
        tool("get_pending_message", "Deprecated alias: get_review", Admin, Ro, "getReview")
            .describe("Deprecated: use get_review.")
            .fields(&[req("message_id", Ty::Str)])
            .id("message_id")
            .output(Output::Trimmed { hold_reason: true }),
        tool("approve_pending_message", "Deprecated alias: approve_review", Admin, W, "approveReview")
            .describe("Deprecated: use approve_review.")
            .fields(&[
                req("message_id", Ty::Str),
                opt("subject", Ty::Str),
                opt("body_text", Ty::Str),
                opt("body_html", Ty::Str),
            ])
            .fields(&approve)
            .id("message_id")
            .body_renamed(&[
                ("subject", "subject"),
                ("text", "body_text"),
                ("html", "body_html"),
                ("to", "to"),
                ("cc", "cc"),
                ("bcc", "bcc"),
                ("attachments", "attachments"),
            ])
            .keyed(Keyed::FromArg),
        tool("approve_message", "Deprecated alias: approve_review", Admin, W, "approveReview")
            .describe("Deprecated: use approve_review.")
            .fields(&[
                req("message_id", Ty::Str),
                opt("subject", Ty::Str),
                opt("text", Ty::Str),
                opt("html", Ty::Str),
            ])
            .fields(&approve)
            .id("message_id")
            .body(&["subject", "text", "html", "to", "cc", "bcc", "attachments"])
            .keyed(Keyed::FromArg),
        tool("reject_pending_message", "Deprecated alias: reject_review", Admin, Dx, "rejectReview")
            .describe("Deprecated: use reject_review.")
            .fields(&[req("message_id", Ty::Str), opt("reason", Ty::Str)])
            .id("message_id")
            .body(&["reason"]),
        tool("reject_message", "Deprecated alias: reject_review", Admin, Dx, "rejectReview")
            .describe("Deprecated: use reject_review.")
            .fields(&[req("message_id", Ty::Str), opt("reason", Ty::Str)])
            .id("message_id")
            .body(&["reason"]),
    ]
}

/// The registration order of mcp.md §3.1.
const ORDER: [&str; 60] = [
    "send_message",
    "reply_to_message",
    "forward_message",
    "update_message_labels",
    "list_conversations",
    "get_conversation",
    "list_messages",
    "restore_message",
    "delete_message",
    "get_message",
    "get_message_lifecycle",
    "get_attachment",
    "list_agents",
    "get_agent",
    "whoami",
    "create_agent",
    "update_agent",
    "get_protection",
    "update_protection",
    "restore_agent",
    "delete_agent",
    "list_domains",
    "register_domain",
    "get_domain",
    "verify_domain",
    "delete_domain",
    "list_reviews",
    "get_review",
    "approve_review",
    "reject_review",
    "list_webhooks",
    "get_webhook",
    "create_webhook",
    "update_webhook",
    "delete_webhook",
    "rotate_webhook_secret",
    "test_webhook",
    "list_webhook_deliveries",
    "list_events",
    "get_event",
    "redeliver_event",
    "list_templates",
    "get_template",
    "create_template",
    "update_template",
    "delete_template",
    "validate_template",
    "list_starter_templates",
    "get_starter_template",
    "list_api_keys",
    "create_api_key",
    "delete_api_key",
    "send_email",
    "get_attachment_data",
    "list_pending_messages",
    "get_pending_message",
    "approve_pending_message",
    "approve_message",
    "reject_pending_message",
    "reject_message",
];

/// Every tool, in registration order.
pub fn all() -> Vec<Tool> {
    let mut tools: Vec<Tool> =
        [mail_tools(), agent_tools(), account_tools(), template_and_key_tools(), legacy_tools()].concat();
    tools.sort_by_key(|t| ORDER.iter().position(|n| *n == t.name).unwrap_or(usize::MAX));
    tools
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_tools_sixteen_for_agents_in_the_published_order() {
        let tools = all();
        let names: Vec<&str> = tools.iter().map(|t| t.name).collect();
        assert_eq!(names, ORDER);
        assert_eq!(tools.iter().filter(|t| t.tier == Tier::Runtime).count(), 16);
        let ops: Vec<&str> = crate::routes::table::table().into_iter().map(|(op, _)| op.id).collect();
        for t in &tools {
            assert!(ops.contains(&t.op), "{} calls {}, which the route table does not have", t.name, t.op);
            for (_, arg) in t.body.iter().chain(&t.query) {
                assert!(t.fields.iter().any(|f| f.name == *arg), "{}: {arg} is not an input", t.name);
            }
            if let Some(id) = t.id_arg {
                assert!(t.fields.iter().any(|f| f.name == id), "{}: {id} is not an input", t.name);
            }
            let mut seen: Vec<&str> = t.fields.iter().map(|f| f.name).collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), t.fields.len(), "{}: an input is declared twice", t.name);
        }
    }
}
