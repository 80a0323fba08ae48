//! Every `/v1` operation of the e2a contract, in the contract's order: its description
//! ([`Op`], which the OpenAPI document is generated from) and its handler. Operations
//! postagent does not implement are routed too, to a handler answering the contract's
//! `501 not_implemented` envelope, so a client never gets a bare 404 or an HTML page.

use super::{
    account, agents, contacts, conversations, data, domains, events, lifecycle, messages, meta, metrics,
    reviews, send, suppressions, templates, webhooks,
};
use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::openapi::{Access, Op};
use axum::http::StatusCode;
use axum::routing::{MethodFilter, MethodRouter, delete, get, on, patch, post, put};

const DIRECTION: &[&str] = &["inbound", "outbound", "all"];
const READ_STATUS: &[&str] = &["unread", "read", "all"];
const SORT: &[&str] = &["asc", "desc"];

/// The handler of an operation postagent does not implement: authenticated like any other
/// (so it reveals nothing to strangers), then 501 in the error envelope.
fn not_implemented(op: &Op) -> MethodRouter<AppState> {
    let id = op.id;
    let filter = match op.method {
        "get" => MethodFilter::GET,
        "post" => MethodFilter::POST,
        "put" => MethodFilter::PUT,
        "patch" => MethodFilter::PATCH,
        _ => MethodFilter::DELETE,
    };
    on(filter, move |_who: Principal| async move { Err::<(), _>(nyi(id)) })
}

fn nyi(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        format!("{what} is not implemented by this server (postagent); see docs/compat.md"),
    )
}

/// `(operation, handler)` for every `/v1` operation.
pub fn table() -> Vec<(Op, MethodRouter<AppState>)> {
    use Access::{Account, Agent, Public};
    let big = || axum::extract::DefaultBodyLimit::max(crate::MAX_SEND_BODY_BYTES);
    let served: Vec<(Op, MethodRouter<AppState>)> = vec![
        (
            Op::new("get", "/v1/info", "getInfo", "meta", Public).ok(200, "DeploymentInfoView"),
            get(meta::info),
        ),
        (
            Op::new("get", "/v1/account", "getAccount", "account", Agent).ok(200, "AccountView"),
            get(account::get_account),
        ),
        (
            Op::new("delete", "/v1/account", "deleteAccount", "account", Account)
                .ok(200, "DeleteUserDataResult")
                .query("confirm", &["DELETE"]),
            delete(data::delete),
        ),
        (
            Op::new("get", "/v1/account/export", "exportAccount", "account", Account).ok(200, "UserExport"),
            get(data::export),
        ),
        (
            Op::new("get", "/v1/account/api-keys", "listApiKeys", "account", Account)
                .ok(200, "PageAPIKeyView")
                .paged(),
            get(account::list_keys),
        ),
        (
            Op::new("post", "/v1/account/api-keys", "createApiKey", "account", Account)
                .ok(201, "CreateAPIKeyResponse")
                .body::<account::CreateKeyRequest>("CreateAPIKeyRequest")
                .keyed(),
            post(account::create_key),
        ),
        (
            Op::new("delete", "/v1/account/api-keys/{id}", "deleteApiKey", "account", Account)
                .ok(200, "DeleteApiKeyResult")
                .query("confirm", &["DELETE"]),
            delete(account::delete_key),
        ),
        (
            Op::new("get", "/v1/agents", "listAgents", "agents", Account)
                .ok(200, "PageAgentView")
                .paged()
                .query("deleted", &[]),
            get(agents::list),
        ),
        (
            Op::new("post", "/v1/agents", "createAgent", "agents", Account)
                .ok(201, "AgentView")
                .body::<agents::CreateAgentRequest>("CreateAgentRequest")
                .err(&[409]),
            post(agents::create),
        ),
        (
            Op::new("get", "/v1/agents/{email}", "getAgent", "agents", Agent).ok(200, "AgentView"),
            get(agents::get),
        ),
        (
            Op::new("patch", "/v1/agents/{email}", "updateAgent", "agents", Account)
                .ok(200, "AgentView")
                .body::<agents::UpdateAgentRequest>("UpdateAgentRequest"),
            patch(agents::update),
        ),
        (
            Op::new("delete", "/v1/agents/{email}", "deleteAgent", "agents", Account)
                .ok(200, "DeleteAgentResult")
                .query("confirm", &["DELETE"])
                .query("permanent", &[]),
            delete(agents::delete),
        ),
        (
            Op::new("post", "/v1/agents/{email}/restore", "restoreAgent", "agents", Account)
                .ok(200, "AgentView")
                .err(&[409]),
            post(agents::restore),
        ),
        (
            Op::new("post", "/v1/agents/{email}/test", "testAgent", "agents", Agent)
                .ok(202, "SendResultView"),
            post(send::test),
        ),
        (
            Op::new("get", "/v1/agents/{email}/protection", "getAgentProtection", "agents", Account)
                .ok(200, "ProtectionConfigView")
                .beta(),
            get(reviews::get_protection),
        ),
        (
            Op::new("put", "/v1/agents/{email}/protection", "putAgentProtection", "agents", Account)
                .ok(200, "ProtectionConfigView")
                .raw_body("ProtectionConfigRequest")
                .beta(),
            put(reviews::put_protection),
        ),
        (
            Op::new("get", "/v1/agents/{email}/messages", "listMessages", "messages", Agent)
                .ok(200, "PageMessageSummaryView")
                .query("direction", DIRECTION)
                .query("read_status", READ_STATUS)
                .query("sort", SORT)
                .query("from", &[])
                .query("subject_contains", &[])
                .query("conversation_id", &[])
                .query("labels", &[])
                .query("since", &[])
                .query("until", &[])
                .paged()
                .query("deleted", &[]),
            get(messages::list),
        ),
        (
            Op::new("post", "/v1/agents/{email}/messages", "sendMessage", "messages", Agent)
                .ok(200, "SendResultView")
                .ok(202, "SendResultView")
                .body::<send::SendRequest>("SendEmailRequest")
                .query("wait", &[])
                .keyed(),
            post(send::send).layer(big()),
        ),
        (
            Op::new("get", "/v1/agents/{email}/messages/{id}", "getMessage", "messages", Agent)
                .ok(200, "MessageView"),
            get(messages::get),
        ),
        (
            Op::new(
                "get",
                "/v1/agents/{email}/messages/{id}/lifecycle",
                "getMessageLifecycle",
                "messages",
                Agent,
            )
            .ok(200, "PageMessageLifecycleTransition")
            .paged()
            .beta(),
            get(lifecycle::get),
        ),
        (
            Op::new("patch", "/v1/agents/{email}/messages/{id}", "updateMessage", "messages", Agent)
                .ok(200, "UpdateMessageResultView")
                .body::<messages::UpdateMessageRequest>("UpdateMessageRequest"),
            patch(messages::update),
        ),
        (
            Op::new("delete", "/v1/agents/{email}/messages/{id}", "deleteMessage", "messages", Agent)
                .ok(200, "DeleteMessageResult")
                .query("permanent", &[])
                .query("confirm", &[])
                .err(&[409]),
            delete(messages::delete),
        ),
        (
            Op::new("post", "/v1/agents/{email}/messages/{id}/restore", "restoreMessage", "messages", Agent)
                .ok(200, "MessageView")
                .err(&[409]),
            post(messages::restore),
        ),
        (
            Op::new("post", "/v1/agents/{email}/messages/{id}/reply", "replyToMessage", "messages", Agent)
                .ok(200, "SendResultView")
                .ok(202, "SendResultView")
                .body::<send::ReplyRequest>("ReplyRequest")
                .query("wait", &[])
                .keyed(),
            post(send::reply).layer(big()),
        ),
        (
            Op::new("post", "/v1/agents/{email}/messages/{id}/forward", "forwardMessage", "messages", Agent)
                .ok(200, "SendResultView")
                .ok(202, "SendResultView")
                .body::<send::ForwardRequest>("ForwardRequest")
                .query("wait", &[])
                .keyed(),
            post(send::forward).layer(big()),
        ),
        (
            Op::new(
                "get",
                "/v1/agents/{email}/messages/{id}/attachments/{index}",
                "getAttachment",
                "messages",
                Agent,
            )
            .ok(200, "AttachmentView")
            .query("inline", &[])
            .err(&[413]),
            get(messages::attachment),
        ),
        (
            Op::new("get", "/v1/agents/{email}/conversations", "listConversations", "conversations", Agent)
                .ok(200, "PageConversationSummaryView")
                .query("since", &[])
                .query("until", &[])
                .paged(),
            get(conversations::list),
        ),
        (
            Op::new(
                "get",
                "/v1/agents/{email}/conversations/{id}",
                "getConversation",
                "conversations",
                Agent,
            )
            .ok(200, "ConversationDetailView"),
            get(conversations::get),
        ),
        (
            Op::new("get", "/v1/domains", "listDomains", "domains", Account)
                .ok(200, "PageDomainView")
                .paged(),
            get(domains::list),
        ),
        (
            Op::new("post", "/v1/domains", "registerDomain", "domains", Account)
                .ok(201, "DomainView")
                .body::<domains::RegisterDomainRequest>("RegisterDomainRequest")
                .err(&[409]),
            post(domains::register),
        ),
        (
            Op::new("get", "/v1/domains/{domain}", "getDomain", "domains", Account).ok(200, "DomainView"),
            get(domains::get),
        ),
        (
            Op::new("delete", "/v1/domains/{domain}", "deleteDomain", "domains", Account)
                .ok(200, "DeleteDomainResult")
                .query("confirm", &["DELETE"]),
            delete(domains::delete),
        ),
        (
            Op::new("post", "/v1/domains/{domain}/verify", "verifyDomain", "domains", Account)
                .ok(200, "VerifyDomainView"),
            post(domains::verify),
        ),
        (
            Op::new("get", "/v1/reviews", "listReviews", "reviews", Account)
                .ok(200, "PageReviewView")
                .paged()
                .beta(),
            get(reviews::list),
        ),
        (
            Op::new("get", "/v1/reviews/{id}", "getReview", "reviews", Account).ok(200, "MessageView").beta(),
            get(reviews::get),
        ),
        (
            Op::new("post", "/v1/reviews/{id}/approve", "approveReview", "reviews", Account)
                .ok(200, "SendResultView")
                .ok(202, "SendResultView")
                .body::<reviews::ApproveRequest>("ApproveRequest")
                .keyed()
                .beta(),
            post(reviews::approve).layer(big()),
        ),
        (
            Op::new("post", "/v1/reviews/{id}/reject", "rejectReview", "reviews", Account)
                .ok(200, "RejectResultView")
                .body::<reviews::RejectRequest>("RejectRequest")
                .err(&[409])
                .beta(),
            post(reviews::reject),
        ),
        (
            Op::new("get", "/v1/webhooks", "listWebhooks", "webhooks", Account)
                .ok(200, "PageWebhookView")
                .paged(),
            get(webhooks::list),
        ),
        (
            Op::new("post", "/v1/webhooks", "createWebhook", "webhooks", Account)
                .ok(201, "CreateWebhookResponse")
                .body::<webhooks::CreateRequest>("CreateWebhookRequest")
                .keyed(),
            post(webhooks::create),
        ),
        (
            Op::new("get", "/v1/webhooks/{id}", "getWebhook", "webhooks", Account).ok(200, "WebhookView"),
            get(webhooks::get),
        ),
        (
            Op::new("patch", "/v1/webhooks/{id}", "updateWebhook", "webhooks", Account)
                .ok(200, "WebhookView")
                .body::<webhooks::UpdateRequest>("UpdateWebhookRequest")
                .err(&[409]),
            patch(webhooks::update),
        ),
        (
            Op::new("delete", "/v1/webhooks/{id}", "deleteWebhook", "webhooks", Account)
                .ok(200, "DeleteWebhookResult")
                .query("confirm", &["DELETE"]),
            delete(webhooks::delete),
        ),
        (
            Op::new("get", "/v1/webhooks/{id}/deliveries", "listWebhookDeliveries", "webhooks", Account)
                .ok(200, "PageWebhookDeliveryView")
                .query("status", &["pending", "delivered", "failed"])
                .paged(),
            get(webhooks::deliveries),
        ),
        (
            Op::new("post", "/v1/webhooks/{id}/rotate-secret", "rotateWebhookSecret", "webhooks", Account)
                .ok(200, "RotateSecretResponse")
                .keyed(),
            post(webhooks::rotate),
        ),
        (
            Op::new("post", "/v1/webhooks/{id}/test", "testWebhook", "webhooks", Account)
                .ok(200, "TestWebhookResponse")
                .body::<webhooks::TestRequest>("TestWebhookRequest")
                .err(&[409]),
            post(webhooks::test),
        ),
        (
            Op::new("get", "/v1/events", "listEvents", "events", Account)
                .ok(200, "PageEventView")
                .query("type", &[])
                .query("agent_email", &[])
                .query("conversation_id", &[])
                .query("message_id", &[])
                .query("since", &[])
                .query("until", &[])
                .paged(),
            get(events::list),
        ),
        (
            Op::new("get", "/v1/events/{id}", "getEvent", "events", Account).ok(200, "EventView").err(&[410]),
            get(events::get),
        ),
        (
            Op::new("post", "/v1/events/{id}/redeliver", "redeliverEvent", "events", Account)
                .ok(202, "RedeliverView")
                .body::<events::RedeliverRequest>("RedeliverEventRequest"),
            post(events::redeliver),
        ),
        (
            Op::new("get", "/v1/account/suppressions", "listSuppressions", "account", Account)
                .ok(200, "PageSuppressionView")
                .paged(),
            get(suppressions::list_account),
        ),
        (
            Op::new("delete", "/v1/account/suppressions/{address}", "deleteSuppression", "account", Account)
                .ok(200, "DeleteSuppressionResult")
                .query("confirm", &["DELETE"]),
            delete(suppressions::delete_account),
        ),
        (
            Op::new("get", "/v1/agents/{email}/suppressions", "listAgentSuppressions", "agents", Account)
                .ok(200, "PageAgentSuppressionView")
                .paged()
                .beta(),
            get(suppressions::list_agent),
        ),
        (
            Op::new("post", "/v1/agents/{email}/suppressions", "createAgentSuppression", "agents", Account)
                .ok(200, "AgentSuppressionView")
                .body::<suppressions::CreateAgentSuppressionRequest>("CreateAgentSuppressionRequest")
                .beta(),
            post(suppressions::create_agent),
        ),
        (
            Op::new(
                "delete",
                "/v1/agents/{email}/suppressions/{address}",
                "deleteAgentSuppression",
                "agents",
                Account,
            )
            .ok(200, "DeleteSuppressionResult")
            .query("confirm", &["DELETE"])
            .beta(),
            delete(suppressions::delete_agent),
        ),
        (
            Op::new("get", "/v1/templates", "listTemplates", "templates", Account)
                .ok(200, "PageTemplateSummaryView")
                .paged()
                .beta(),
            get(templates::list),
        ),
        (
            Op::new("post", "/v1/templates", "createTemplate", "templates", Account)
                .ok(201, "TemplateView")
                .body::<templates::CreateRequest>("CreateTemplateRequest")
                .keyed()
                .beta(),
            post(templates::create),
        ),
        (
            Op::new("post", "/v1/templates/validate", "validateTemplate", "templates", Account)
                .ok(200, "ValidateTemplateResponse")
                .body::<templates::ValidateRequest>("ValidateTemplateRequest")
                .beta(),
            post(templates::validate),
        ),
        (
            Op::new("get", "/v1/templates/{id}", "getTemplate", "templates", Account)
                .ok(200, "TemplateView")
                .beta(),
            get(templates::get),
        ),
        (
            Op::new("patch", "/v1/templates/{id}", "updateTemplate", "templates", Account)
                .ok(200, "TemplateView")
                .body::<templates::UpdateRequest>("UpdateTemplateRequest")
                .beta(),
            patch(templates::update),
        ),
        (
            Op::new("delete", "/v1/templates/{id}", "deleteTemplate", "templates", Account)
                .ok(200, "DeleteTemplateResult")
                .query("confirm", &["DELETE"])
                .beta(),
            delete(templates::delete),
        ),
        (
            Op::new("get", "/v1/starter-templates", "listStarterTemplates", "templates", Account)
                .ok(200, "PageStarterTemplateView")
                .paged()
                .beta(),
            get(templates::list_starters),
        ),
        (
            Op::new("get", "/v1/starter-templates/{alias}", "getStarterTemplate", "templates", Account)
                .ok(200, "StarterTemplateDetailView")
                .beta(),
            get(templates::get_starter),
        ),
    ];
    let missing: [Op; 0] = [];
    let mut all = served;
    for op in missing {
        let op = op.not_implemented();
        let handler = not_implemented(&op);
        all.push((op, handler));
    }
    all
}

/// Routes newer SDKs know that e2a's spec snapshot does not (contacts from 5.5, metrics from
/// 5.7); documented in docs/api.md, outside the snapshot's OpenAPI document.
pub fn newer_sdk_paths() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/v1/contacts", get(contacts::list).post(contacts::create)),
        ("/v1/contacts/import", post(contacts::import)),
        ("/v1/contacts/imports/{batch_id}", delete(contacts::delete_import)),
        ("/v1/contacts/{address}", get(contacts::get).patch(contacts::update).delete(contacts::delete)),
        ("/v1/agents/{email}/contacts", get(contacts::outreach)),
        (
            "/v1/agents/{email}/contacts/{address}",
            get(contacts::get_outreach).put(contacts::set_outreach).delete(contacts::delete_outreach),
        ),
        ("/v1/metrics", get(metrics::account)),
        ("/v1/agents/{email}/metrics", get(metrics::agent)),
    ]
}
