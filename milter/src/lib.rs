//! The postagent milter (SPF, DKIM, DMARC verdicts; signed `X-E2A-Auth-*` headers).
//!
//! Built by the Inbound issue; the crate exists now so the workspace has its final shape.
