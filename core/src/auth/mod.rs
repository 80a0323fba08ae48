//! Inbound sender authentication as postagent records and signs it.
//!
//! [`Authentication`] is the contract's `authentication` object (spf, dkim[], dmarc). The
//! milter computes it; [`headers`] turns it, with the other claims, into the signed
//! `X-E2A-Auth-*` header set that travels inside the message, and checks such a set again
//! (in the LMTP server and in `postagent verify`). The exact byte-level rules are in
//! `docs/auth-headers.md`.

pub mod canon;
pub mod domain_check;
pub mod headers;
pub mod submission;

use crate::vocab::{Alignment, AuthStatus};
use serde::{Deserialize, Serialize};

/// The contract's `authentication` object (e2a contract §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authentication {
    pub spf: SpfResult,
    /// One entry per DKIM-Signature, in header order; empty when the message is unsigned.
    pub dkim: Vec<DkimResult>,
    pub dmarc: DmarcResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpfResult {
    /// pass | fail | none | neutral | softfail | temperror | permerror
    pub status: AuthStatus,
    /// The RFC 5321 identity's domain: MAIL FROM's, or HELO's for the null sender.
    pub domain: Option<String>,
    /// Set only for a pass when a DMARC record was found: aligned with the From domain?
    pub aligned: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimResult {
    /// pass | fail | none | neutral | policy | temperror | permerror
    pub status: AuthStatus,
    /// `d=`
    pub domain: Option<String>,
    /// `s=`
    pub selector: Option<String>,
    pub aligned: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmarcResult {
    /// pass | fail | none | temperror | permerror
    pub status: AuthStatus,
    /// The RFC 5322 From (author) domain.
    pub domain: Option<String>,
    /// none | quarantine | reject, from the discovered record.
    pub policy: Option<String>,
    /// Which aligned mechanisms made it pass: a subset of `["spf", "dkim"]`, empty unless pass.
    pub aligned_by: Vec<Alignment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Authentication {
    /// A message from `domain` that passes DMARC aligned through both SPF and a DKIM
    /// signature (selector `selector`) under policy `reject`: what the milter records for
    /// well-configured mail, and the fixture every test of the trust chain starts from.
    pub fn aligned_pass(domain: &str, selector: &str) -> Self {
        let pass = AuthStatus::Pass;
        Self {
            spf: SpfResult { status: pass, domain: Some(domain.into()), aligned: Some(true), detail: None },
            dkim: vec![DkimResult {
                status: pass,
                domain: Some(domain.into()),
                selector: Some(selector.into()),
                aligned: Some(true),
                detail: None,
            }],
            dmarc: DmarcResult {
                status: pass,
                domain: Some(domain.into()),
                policy: Some("reject".into()),
                aligned_by: vec![Alignment::Spf, Alignment::Dkim],
                detail: None,
            },
        }
    }

    /// postagent's one meaning of "verified": DMARC passed, which requires an SPF or DKIM pass
    /// aligned with the From domain. An unaligned pass is not verification.
    pub fn verified(&self) -> bool {
        self.dmarc.status == AuthStatus::Pass
            && self.dmarc.domain.is_some()
            && !self.dmarc.aligned_by.is_empty()
    }

    /// `verified_domain` in the message views: the DMARC-passing author domain.
    pub fn verified_domain(&self) -> Option<&str> {
        if self.verified() { self.dmarc.domain.as_deref() } else { None }
    }
}
