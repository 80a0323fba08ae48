//! Read-only resources beyond e2a's interface: each agent's inbox and conversations, and one
//! conversation by id. A host that subscribes to an inbox hears `notifications/resources/updated`
//! on its session's GET stream when new mail arrives (fed by the bus, as the WebSocket is).
//! Reads run the `/v1` list operations, so scopes and tenancy are the REST ones, and reading
//! never marks mail read.

use super::call::{self, Caller};
use axum::Router;
use serde_json::{Value, json};

const SCHEME: &str = "postagent://agents/";
/// Agents listed per `resources/list` (one page of the account's agents).
const MAX_AGENTS: usize = 100;

/// What a resource URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Inbox(String),
    Conversations(String),
    Conversation(String, String),
}

impl Resource {
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(SCHEME)?;
        let mut parts = rest.split('/');
        let agent = parts.next().filter(|a| a.contains('@'))?.to_ascii_lowercase();
        let found = match (parts.next(), parts.next(), parts.next()) {
            (Some("inbox"), None, None) => Self::Inbox(agent),
            (Some("conversations"), None, None) => Self::Conversations(agent),
            (Some("conversations"), Some(id), None) if !id.is_empty() => {
                Self::Conversation(agent, id.to_owned())
            }
            _ => return None,
        };
        Some(found)
    }

    pub fn agent(&self) -> &str {
        match self {
            Self::Inbox(a) | Self::Conversations(a) | Self::Conversation(a, _) => a,
        }
    }

    pub fn uri(&self) -> String {
        match self {
            Self::Inbox(a) => format!("{SCHEME}{a}/inbox"),
            Self::Conversations(a) => format!("{SCHEME}{a}/conversations"),
            Self::Conversation(a, id) => format!("{SCHEME}{a}/conversations/{id}"),
        }
    }

    /// The resources new mail for `agent` changes.
    pub fn changed_by_mail(agent: &str) -> [String; 2] {
        [Self::Inbox(agent.to_owned()).uri(), Self::Conversations(agent.to_owned()).uri()]
    }
}

fn entry(r: &Resource, title: &str, description: &str) -> Value {
    json!({"uri": r.uri(), "name": r.uri(), "title": title, "description": description, "mimeType": "application/json"})
}

/// `resources/list`: the inbox and conversations of every agent the key reaches.
pub async fn list(api: &Router, caller: &Caller) -> Result<Value, String> {
    let agents: Vec<String> = match &caller.agent {
        Some(a) => vec![a.clone()],
        None => {
            let page =
                call::rest(api, caller, "listAgents", &[], &[("limit", MAX_AGENTS.to_string())]).await?;
            page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["email"].as_str().map(str::to_owned))
                .collect()
        }
    };
    let mut resources = Vec::new();
    for a in &agents {
        resources.push(entry(
            &Resource::Inbox(a.clone()),
            &format!("Inbox of {a}"),
            "The newest messages (summaries), read or not.",
        ));
        resources.push(entry(
            &Resource::Conversations(a.clone()),
            &format!("Conversations of {a}"),
            "The newest conversations.",
        ));
    }
    Ok(json!({"resources": resources}))
}

pub fn templates() -> Value {
    json!({"resourceTemplates": [
        {"uriTemplate": format!("{SCHEME}{{email}}/inbox"), "name": "inbox", "title": "An agent's inbox", "mimeType": "application/json"},
        {"uriTemplate": format!("{SCHEME}{{email}}/conversations"), "name": "conversations", "title": "An agent's conversations", "mimeType": "application/json"},
        {"uriTemplate": format!("{SCHEME}{{email}}/conversations/{{conversation_id}}"), "name": "conversation", "title": "One conversation with its messages", "mimeType": "application/json"},
    ]})
}

/// `resources/read`.
pub async fn read(api: &Router, caller: &Caller, uri: &str) -> Result<Value, String> {
    let r = Resource::parse(uri).ok_or_else(|| format!("Resource not found: {uri}"))?;
    let agent = r.agent().to_owned();
    let body = match &r {
        Resource::Inbox(_) => {
            let query = [("read_status", "all".to_owned()), ("limit", "50".to_owned())];
            call::rest(api, caller, "listMessages", &[("email", agent)], &query).await?
        }
        Resource::Conversations(_) => {
            call::rest(api, caller, "listConversations", &[("email", agent)], &[("limit", "50".to_owned())])
                .await?
        }
        Resource::Conversation(_, id) => {
            call::rest(api, caller, "getConversation", &[("email", agent), ("id", id.clone())], &[]).await?
        }
    };
    let text = serde_json::to_string_pretty(&body).unwrap_or_default();
    Ok(json!({"contents": [{"uri": r.uri(), "mimeType": "application/json", "text": text}]}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip_and_strangers_are_refused() {
        for uri in [
            "postagent://agents/bot@agents.test/inbox",
            "postagent://agents/bot@agents.test/conversations",
            "postagent://agents/bot@agents.test/conversations/conv_1",
        ] {
            assert_eq!(Resource::parse(uri).expect(uri).uri(), uri);
        }
        for bad in [
            "postagent://agents/bot/inbox",
            "postagent://agents/bot@x/inbox/more",
            "file:///etc/passwd",
            "postagent://agents/a@b/conversations/",
        ] {
            assert_eq!(Resource::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Resource::parse("postagent://agents/Bot@Agents.Test/inbox"),
            Some(Resource::Inbox("bot@agents.test".into()))
        );
    }
}
