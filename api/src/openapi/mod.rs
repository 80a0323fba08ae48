//! Our OpenAPI 3.1 document, generated from the route table (`routes::table`): every `/v1`
//! operation the router serves is described by the same [`Op`] the router was built from, so
//! the document cannot list a route that does not exist or miss one that does. Served at
//! `GET /v1/openapi.json`; `tests/it/openapi.rs` holds it against e2a's published spec.

mod schemas;

use crate::body::RequestBody;
use serde_json::{Map, Value, json};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials.
    Public,
    /// Account-scoped keys only (an agent key is 403).
    Account,
    /// Account keys, or the path agent's own agent-scoped key.
    Agent,
}

/// A request body: the component schema's name, the fields the parser accepts and the
/// required ones.
#[derive(Debug, Clone)]
pub struct Body {
    pub schema: &'static str,
    pub fields: &'static [&'static str],
}

/// One `/v1` operation as the router serves it.
#[derive(Debug, Clone)]
pub struct Op {
    pub method: &'static str,
    pub path: &'static str,
    pub id: &'static str,
    pub tag: &'static str,
    pub access: Access,
    /// Success status codes and their response schema.
    pub success: Vec<(u16, &'static str)>,
    /// Error statuses this operation answers beyond the ones every operation of its kind
    /// does (401, 403, 404, 422, 503; see [`Op::error_statuses`]).
    pub errors: Vec<u16>,
    pub body: Option<Body>,
    /// Query parameters, with their enum values when closed.
    pub query: Vec<(&'static str, &'static [&'static str])>,
    /// Honours `Idempotency-Key`.
    pub keyed: bool,
    /// `false`: answered 501 `not_implemented` (listed so clients see what exists).
    pub implemented: bool,
    pub beta: bool,
}

impl Op {
    pub fn new(
        method: &'static str,
        path: &'static str,
        id: &'static str,
        tag: &'static str,
        access: Access,
    ) -> Self {
        Self {
            method,
            path,
            id,
            tag,
            access,
            success: Vec::new(),
            errors: Vec::new(),
            body: None,
            query: Vec::new(),
            keyed: false,
            implemented: true,
            beta: false,
        }
    }

    pub fn ok(mut self, status: u16, schema: &'static str) -> Self {
        self.success.push((status, schema));
        self
    }

    pub fn err(mut self, statuses: &[u16]) -> Self {
        self.errors.extend_from_slice(statuses);
        self
    }

    pub fn body<T: RequestBody>(mut self, schema: &'static str) -> Self {
        self.body = Some(Body { schema, fields: T::FIELDS });
        self
    }

    /// A JSON body the handler parses itself (its schema is in the components).
    pub fn raw_body(mut self, schema: &'static str) -> Self {
        self.body = Some(Body { schema, fields: &[] });
        self
    }

    pub fn query(mut self, name: &'static str, values: &'static [&'static str]) -> Self {
        self.query.push((name, values));
        self
    }

    /// `cursor` and `limit`.
    pub fn paged(self) -> Self {
        self.query("cursor", &[]).query("limit", &[])
    }

    pub fn keyed(mut self) -> Self {
        self.keyed = true;
        self.errors.extend_from_slice(&[409, 422]);
        self
    }

    pub fn beta(mut self) -> Self {
        self.beta = true;
        self
    }

    pub fn not_implemented(mut self) -> Self {
        self.implemented = false;
        self
    }

    /// Every error status the operation may answer.
    pub fn error_statuses(&self) -> Vec<u16> {
        let mut s: Vec<u16> = Vec::new();
        if self.access != Access::Public {
            s.push(401);
        }
        if self.access == Access::Account || self.path.contains("{email}") {
            s.push(403);
        }
        if self.path.contains('{') {
            s.push(404);
        }
        if self.body.is_some() {
            s.extend([400, 413, 415, 422]);
        }
        if !self.query.is_empty() {
            s.push(422);
        }
        if !self.implemented {
            s.push(501);
        }
        s.push(503);
        s.extend(&self.errors);
        s.sort_unstable();
        s.dedup();
        s
    }

    fn path_params(&self) -> Vec<&str> {
        self.path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect()
    }

    fn to_json(&self) -> Value {
        let mut params: Vec<Value> = self
            .path_params()
            .into_iter()
            .map(|p| json!({"in": "path", "name": p, "required": true, "schema": {"type": "string"}}))
            .collect();
        for (name, values) in &self.query {
            let schema = if values.is_empty() {
                json!({"type": "string"})
            } else {
                json!({"type": "string", "enum": values})
            };
            params.push(json!({"in": "query", "name": name, "schema": schema}));
        }
        if self.keyed {
            params.push(json!({"in": "header", "name": "Idempotency-Key", "schema": {"type": "string", "maxLength": 255}}));
        }
        let mut responses = Map::new();
        for (status, schema) in &self.success {
            responses.insert(
                status.to_string(),
                json!({"description": "success", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}),
            );
        }
        for status in self.error_statuses() {
            responses.insert(
                status.to_string(),
                json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}}),
            );
        }
        let mut op = json!({
            "operationId": self.id,
            "tags": [self.tag],
            "parameters": params,
            "responses": responses,
        });
        if let Some(obj) = op.as_object_mut() {
            if let Some(body) = &self.body {
                obj.insert(
                    "requestBody".into(),
                    json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", body.schema)}}}}),
                );
            }
            if self.access != Access::Public {
                obj.insert("security".into(), json!([{"bearer": []}]));
            }
            if self.beta {
                obj.insert("x-stability-level".into(), json!("beta"));
            }
            if !self.implemented {
                obj.insert("x-postagent-implemented".into(), json!(false));
            }
        }
        op
    }
}

/// The document for `ops`.
pub fn document(ops: &[Op]) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for op in ops {
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(op.method.to_owned(), op.to_json());
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "postagent /v1 (e2a-compatible)",
            "version": crate::API_VERSION,
            "x-server-version": env!("CARGO_PKG_VERSION"),
            "license": {"name": "GPL-3.0-or-later"},
        },
        "paths": paths,
        "components": {
            "schemas": schemas::components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}
