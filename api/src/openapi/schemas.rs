//! The component schemas of our OpenAPI document: what each response body carries (required
//! fields always present, optional ones only when they apply) and what each request body
//! accepts. Request schemas take their field lists from the parsers themselves
//! ([`RequestBody::FIELDS`]), so a field the server accepts cannot be missing here.

use crate::body::RequestBody;
use crate::routes::{
    account, agents, domains, events, messages, reviews, send, suppressions, templates, webhooks,
};
use postagent_core::vocab::{LifecycleOutcome, LifecycleReason, LifecycleStage, texts};
use serde_json::{Map, Value, json};

/// An object schema: `required` and `optional` property names, and enums by property.
fn object(required: &[&str], optional: &[&str], enums: &[(&str, &[&str])], open: bool) -> Value {
    let mut props = Map::new();
    for name in required.iter().chain(optional) {
        let mut p = json!({});
        if let Some((_, values)) = enums.iter().find(|(k, _)| k == name) {
            p = json!({"type": "string", "enum": values});
        }
        props.insert((*name).to_owned(), p);
    }
    json!({
        "type": "object",
        "additionalProperties": open,
        "properties": props,
        "required": required,
    })
}

/// A response body (open: clients must tolerate new fields).
fn view(required: &[&str], optional: &[&str]) -> Value {
    object(required, optional, &[], true)
}

/// A strict request body whose properties are exactly what `T` parses.
fn request<T: RequestBody>(required: &[&str], enums: &[(&str, &[&str])]) -> Value {
    let optional: Vec<&str> = T::FIELDS.iter().copied().filter(|f| !required.contains(f)).collect();
    object(required, &optional, enums, false)
}

fn page(item: &str) -> Value {
    json!({
        "type": "object",
        "additionalProperties": true,
        "properties": {
            "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
            "next_cursor": {"type": ["string", "null"]},
        },
        "required": ["items", "next_cursor"],
    })
}

const DIRECTION: &[&str] = &["inbound", "outbound"];
const SUMMARY_REQUIRED: &[&str] = &[
    "id",
    "direction",
    "header_from",
    "envelope_from",
    "verified_domain",
    "to",
    "delivered_to",
    "subject",
    "read_status",
    "labels",
    "created_at",
];
const SUMMARY_OPTIONAL: &[&str] = &[
    "cc",
    "conversation_id",
    "deleted_at",
    "delivery_detail",
    "delivery_status",
    "flag_reason",
    "flagged",
    "reply_to",
    "review_status",
    "scheduled_at",
    "sent_as",
    "size_bytes",
];
const API_KEY: &[&str] = &["id", "name", "key_prefix", "scope", "created_at"];
const API_KEY_OPTIONAL: &[&str] = &["agent_email", "expires_at", "last_used_at"];
const WEBHOOK: &[&str] = &["id", "url", "description", "events", "filters", "enabled", "created_at"];
const WEBHOOK_OPTIONAL: &[&str] = &["auto_disabled_at", "last_delivered_at"];
const CONVERSATION: &[&str] = &[
    "id",
    "last_message_at",
    "first_message_at",
    "message_count",
    "inbound_count",
    "outbound_count",
    "has_unread",
    "latest_subject",
    "latest_from",
];

pub fn components() -> Map<String, Value> {
    let mut s = Map::new();
    let mut put = |name: &str, schema: Value| {
        s.insert(name.to_owned(), schema);
    };
    put(
        "ErrorEnvelope",
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message", "request_id"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                    "request_id": {"type": "string"}, "details": {"type": "object"}},
            }},
        }),
    );
    put(
        "DeploymentInfoView",
        view(&["version", "shared_domain", "slug_registration_enabled"], &["public_url"]),
    );
    put(
        "AccountView",
        view(&["user", "scope", "plan_code", "limits", "usage", "upgrade_url"], &["agent_email"]),
    );
    put("APIKeyView", view(API_KEY, API_KEY_OPTIONAL));
    put("PageAPIKeyView", page("APIKeyView"));
    put("CreateAPIKeyResponse", view(&[&["key"], API_KEY].concat(), API_KEY_OPTIONAL));
    put("DeleteApiKeyResult", view(&["deleted", "id"], &[]));
    put(
        "UserExport",
        view(
            &[
                "generated_at",
                "schema_version",
                "user",
                "domains",
                "agents",
                "api_keys",
                "messages",
                "suppressions",
                "protection_events",
            ],
            &[],
        ),
    );
    put(
        "DeleteUserDataResult",
        view(
            &[
                "deleted",
                "usage_events_deleted",
                "usage_summaries_deleted",
                "messages_deleted",
                "agents_deleted",
                "domains_deleted",
                "api_keys_deleted",
                "sessions_deleted",
                "agent_suppressions_deleted",
                "agent_unsubscribe_tokens_deleted",
                "user_deleted",
            ],
            &[
                "suppressions_deleted",
                "events_deleted",
                "webhooks_deleted",
                "conversations_deleted",
                "jobs_deleted",
            ],
        ),
    );
    put(
        "CreateAPIKeyRequest",
        request::<account::CreateKeyRequest>(&[], &[("scope", &["account", "agent"])]),
    );
    put(
        "DomainView",
        view(
            &[
                "domain",
                "verified",
                "verification_token",
                "dns_records",
                "created_at",
                "agent_count",
                "sending_status",
                "sending_ramp",
            ],
            &["capabilities", "last_checked_at", "verified_at"],
        ),
    );
    put("PageDomainView", page("DomainView"));
    put("DeleteDomainResult", view(&["deleted", "domain"], &[]));
    put("VerifyDomainView", view(&["domain", "verified"], &["dkim", "mx", "spf", "verified_at"]));
    put("RegisterDomainRequest", request::<domains::RegisterDomainRequest>(&["domain"], &[]));
    put(
        "AgentView",
        view(
            &["domain", "registered_domain", "email", "name", "domain_verified", "created_at"],
            &["deleted_at"],
        ),
    );
    put("PageAgentView", page("AgentView"));
    put("SuppressionView", view(&["address", "source", "created_at"], &["reason", "source_message_id"]));
    put("PageSuppressionView", page("SuppressionView"));
    put("AgentSuppressionView", view(&["agent_email", "address", "source", "created_at"], &["reason"]));
    put("PageAgentSuppressionView", page("AgentSuppressionView"));
    put("DeleteSuppressionResult", view(&["deleted", "address"], &[]));
    put(
        "CreateAgentSuppressionRequest",
        request::<suppressions::CreateAgentSuppressionRequest>(&["address"], &[]),
    );
    put("DeleteAgentResult", view(&["deleted", "email", "messages_deleted"], &[]));
    put("CreateAgentRequest", request::<agents::CreateAgentRequest>(&["email"], &[]));
    put("UpdateAgentRequest", request::<agents::UpdateAgentRequest>(&[], &[]));
    put("ProtectionConfigView", view(&["inbound", "outbound", "holds"], &[]));
    put("ProtectionConfigRequest", object(&["inbound", "outbound", "holds"], &[], &[], false));
    put("MessageSummaryView", object(SUMMARY_REQUIRED, SUMMARY_OPTIONAL, &[("direction", DIRECTION)], true));
    put("PageMessageSummaryView", page("MessageSummaryView"));
    put(
        "MessageView",
        object(
            &[
                "id",
                "header_from",
                "envelope_from",
                "verified_domain",
                "authentication",
                "to",
                "cc",
                "reply_to",
                "delivered_to",
                "subject",
                "conversation_id",
                "direction",
                "read_status",
                "labels",
                "created_at",
                "raw_message",
                "attachments",
            ],
            &[
                "body",
                "deleted_at",
                "delivery_detail",
                "delivery_status",
                "flag_reason",
                "flagged",
                "hold_reason",
                "parsed",
                "review_status",
                "scheduled_at",
                "sent_as",
                "size_bytes",
            ],
            &[("direction", DIRECTION)],
            true,
        ),
    );
    put("UpdateMessageResultView", view(&["message_id", "labels"], &[]));
    put("UpdateMessageRequest", request::<messages::UpdateMessageRequest>(&[], &[]));
    put("DeleteMessageResult", view(&["deleted", "id"], &[]));
    put(
        "AttachmentView",
        view(
            &["index", "size_bytes", "download_url", "expires_at"],
            &["content_id", "content_type", "data", "filename"],
        ),
    );
    put(
        "SendResultView",
        view(
            &["status", "message_id"],
            &["approval_expires_at", "edited", "method", "provider_message_id", "scheduled_at", "sent_as"],
        ),
    );
    put("SendEmailRequest", request::<send::SendRequest>(&["to"], &[]));
    put("ReplyRequest", request::<send::ReplyRequest>(&["text"], &[]));
    put("ForwardRequest", request::<send::ForwardRequest>(&["to", "text"], &[]));
    put("ConversationSummaryView", view(CONVERSATION, &[]));
    put("PageConversationSummaryView", page("ConversationSummaryView"));
    put(
        "ConversationDetailView",
        view(&[&["participants", "labels", "messages"], CONVERSATION].concat(), &[]),
    );
    put(
        "ReviewView",
        object(
            &[
                "id",
                "agent_email",
                "direction",
                "header_from",
                "envelope_from",
                "verified_domain",
                "to",
                "subject",
                "review_status",
                "created_at",
            ],
            &[
                "approval_expires_at",
                "conversation_id",
                "flag_reason",
                "flagged",
                "hold_reason",
                "scheduled_at",
            ],
            &[("direction", DIRECTION)],
            true,
        ),
    );
    put("PageReviewView", page("ReviewView"));
    put("RejectResultView", view(&["status", "message_id"], &["rejection_reason"]));
    put("ApproveRequest", request::<reviews::ApproveRequest>(&[], &[]));
    put("RejectRequest", request::<reviews::RejectRequest>(&[], &[]));
    put("WebhookView", view(WEBHOOK, WEBHOOK_OPTIONAL));
    put("PageWebhookView", page("WebhookView"));
    put("CreateWebhookResponse", view(&[&["signing_secret"], WEBHOOK].concat(), WEBHOOK_OPTIONAL));
    put("DeleteWebhookResult", view(&["deleted", "id"], &[]));
    put("RotateSecretResponse", view(&["signing_secret", "previous_secret_expires_at"], &[]));
    put("TestWebhookResponse", view(&["delivery_id"], &[]));
    put(
        "WebhookDeliveryView",
        view(
            &["id", "type", "status", "attempts", "next_retry_at", "created_at"],
            &["event_id", "last_attempt_at", "last_error", "last_status_code"],
        ),
    );
    put("PageWebhookDeliveryView", page("WebhookDeliveryView"));
    put("CreateWebhookRequest", request::<webhooks::CreateRequest>(&["url", "events"], &[]));
    put("UpdateWebhookRequest", request::<webhooks::UpdateRequest>(&[], &[]));
    let event_types = postagent_core::vocab::texts::<postagent_core::vocab::EventKind>();
    put("TestWebhookRequest", request::<webhooks::TestRequest>(&[], &[("type", &event_types)]));
    put(
        "EventView",
        view(
            &["id", "type", "schema_version", "created_at", "status", "data"],
            &["agent_email", "conversation_id", "delivery_status", "message_id"],
        ),
    );
    put("PageEventView", page("EventView"));
    put("RedeliverView", view(&["event_id", "status"], &["deliveries", "delivery_id", "webhook_id"]));
    put("RedeliverEventRequest", request::<events::RedeliverRequest>(&[], &[]));
    let (stages, outcomes, reasons) =
        (texts::<LifecycleStage>(), texts::<LifecycleOutcome>(), texts::<LifecycleReason>());
    put(
        "MessageLifecycleTransition",
        object(
            &[
                "id",
                "message_id",
                "direction",
                "stage",
                "outcome",
                "reason_code",
                "retryable",
                "evidence",
                "correlation_ids",
                "occurred_at",
                "reconstructed",
            ],
            &["recipient"],
            &[
                ("direction", DIRECTION),
                ("stage", &stages),
                ("outcome", &outcomes),
                ("reason_code", &reasons),
            ],
            true,
        ),
    );
    put("PageMessageLifecycleTransition", page("MessageLifecycleTransition"));
    const TEMPLATE: &[&str] = &["id", "name", "subject", "created_at", "updated_at"];
    put(
        "TemplateView",
        view(
            &[TEMPLATE, &["text"]].concat(),
            &["alias", "html", "from_starter_alias", "from_starter_version"],
        ),
    );
    put("TemplateSummaryView", view(TEMPLATE, &["alias"]));
    put("PageTemplateSummaryView", page("TemplateSummaryView"));
    put("CreateTemplateRequest", request::<templates::CreateRequest>(&[], &[]));
    put("UpdateTemplateRequest", request::<templates::UpdateRequest>(&[], &[]));
    put("ValidateTemplateRequest", request::<templates::ValidateRequest>(&[], &[]));
    put("ValidateTemplateResponse", view(&["valid", "errors"], &["rendered", "suggested_data"]));
    put("DeleteTemplateResult", view(&["deleted", "id"], &[]));
    const STARTER: &[&str] = &["alias", "name", "description", "version", "subject", "variables"];
    put("StarterTemplateView", view(STARTER, &[]));
    put("StarterTemplateDetailView", view(&[STARTER, &["text", "html"]].concat(), &[]));
    put("PageStarterTemplateView", page("StarterTemplateView"));
    s
}
