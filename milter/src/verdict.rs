//! SPF, DKIM and DMARC for one message (mail-auth), as the contract's `authentication`
//! object (e2a contract §6.1).
//!
//! Time bounds: every DNS query has `dns_timeout` (one attempt). SPF and DKIM run
//! concurrently, each capped at 2 × `dns_timeout` in total (SPF may chain ten lookups); DMARC
//! policy discovery and alignment then get another 2 × `dns_timeout`. A message therefore
//! never waits more than 4 × `dns_timeout` for DNS, and a phase that runs out is a
//! `temperror`, never a hang: with the 5 s default that is 20 s, under Postfix's 30 s
//! `milter_command_timeout` and far under its 300 s `milter_content_timeout`.
//!
//! Mapping from mail-auth onto the contract:
//! * `spf`: the check_host() result for MAIL FROM (HELO for the null sender); `domain` is that
//!   identity's domain; `aligned` only for a pass when a DMARC record was found.
//! * `dkim[]`: one entry per `DKIM-Signature`, in header order. mail-auth reports a body hash
//!   mismatch as `neutral`; RFC 6376 §6.1.3 calls it a failed verification, so it is `fail`.
//!   Signatures with `l=` are refused (`policy`): content appended after the signed length
//!   would otherwise ride on a valid signature. Other unparsable signatures are `permerror`.
//!   `aligned` is set for passing signatures when a DMARC record was found.
//! * `dmarc`: mail-auth's RFC 9989 evaluation (tree walk, relaxed/strict alignment); `policy`
//!   is the policy that applies to the From domain (after `sp`/`np`/`t`), only when a record
//!   was found; `aligned_by` lists the aligned passing mechanisms and is empty unless `pass`.

use crate::headers::SpfIdentity;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DmarcOutput, DnsError, Error, MessageAuthenticator, Parameters,
    ResolverCache, SpfOutput, Txt,
};
use postagent_core::auth::{Authentication, DkimResult, DmarcResult, SpfResult};
use postagent_core::vocab::{Alignment, AuthStatus};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::time::{timeout, timeout_at};

/// The DNS-backed evaluator, shared by every connection.
#[derive(Clone)]
pub struct Verifier {
    auth: MessageAuthenticator,
    dns_timeout: Duration,
    txt: std::sync::Arc<SharedTxt>,
}

/// What SMTP told us about a message, and the message itself.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The connecting client; `None` when Postfix did not say (no SPF is possible).
    pub client_ip: Option<IpAddr>,
    pub helo: &'a str,
    /// MAIL FROM without angle brackets; empty for the null sender.
    pub mail_from: &'a str,
    /// Our own host name (SPF's `%{r}`).
    pub host_name: &'a str,
    /// Headers and body as received (CRLF line ends).
    pub message: &'a [u8],
    /// False when the body was cut at the size cap: DKIM cannot be checked.
    pub body_complete: bool,
}

/// The verdict and the facts the log line and the signed claims need.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub authentication: Authentication,
    /// The single RFC 5322 From address (exactly one From field with one address).
    pub from: Option<String>,
    pub spf_identity: SpfIdentity,
}

impl Verifier {
    /// `server = None` uses the system resolver configuration (`/etc/resolv.conf`).
    pub fn new(server: Option<SocketAddr>, dns_timeout: Duration) -> Result<Self, String> {
        let (config, mut opts) = match server {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                (ResolverConfig::from_name_servers(vec![ns]), ResolverOpts::default())
            }
            None => {
                mail_auth::hickory_resolver::system_conf::read_system_conf().map_err(|e| e.to_string())?
            }
        };
        opts.timeout = dns_timeout;
        // One try per query: the phase budgets below, not resolver retries, bound the wait.
        opts.attempts = 1;
        let auth = MessageAuthenticator::new(config, opts).map_err(|e| e.to_string())?;
        Ok(Self { auth, dns_timeout, txt: std::sync::Arc::default() })
    }

    /// The per-phase budget (see the module documentation).
    fn phase(&self) -> Duration {
        self.dns_timeout.saturating_mul(2)
    }

    pub async fn evaluate(&self, input: &Input<'_>) -> Evaluation {
        let parsed = AuthenticatedMessage::parse(input.message);
        let cache = &TxtCache::new(&self.txt);
        let (spf_out, identity) = self.spf(input, cache);
        let dkim_fut = async {
            match &parsed {
                Some(msg) if input.body_complete => {
                    let params = Parameters::new(msg).with_txt_cache(cache);
                    timeout(self.phase(), self.auth.verify_dkim(params)).await.ok()
                }
                _ => None,
            }
        };
        let (spf_out, dkim_outputs) = tokio::join!(spf_out, dkim_fut);
        let Some(msg) = parsed.as_ref() else {
            // No header at all: nothing to sign or align with.
            let authentication = Authentication {
                spf: spf_result(&spf_out, identity),
                dkim: Vec::new(),
                dmarc: dmarc_none(None, "the message has no header fields"),
            };
            return Evaluation { authentication, from: None, spf_identity: identity.kind() };
        };
        let from = single_from(msg);
        let dkim = match dkim_outputs {
            Some(outputs) => Dkim::Checked(outputs),
            None if input.body_complete => Dkim::Unchecked(Unchecked::OutOfTime),
            None => Dkim::Unchecked(Unchecked::TooLarge),
        };
        let mut sigs = signatures(input.message, msg, dkim);
        let for_dmarc: Vec<DkimOutput<'_>> = sigs.iter().map(|s| s.for_dmarc.clone()).collect();
        let dmarc_domain = identity.domain().to_ascii_lowercase();
        let dmarc_params = Parameters::new(DmarcParameters::new(msg, &for_dmarc, &dmarc_domain, &spf_out))
            .with_txt_cache(cache);
        // Policy discovery and the alignment re-checks share one budget.
        let deadline = tokio::time::Instant::now() + self.phase();
        let dmarc_out = match timeout_at(deadline, self.auth.verify_dmarc(dmarc_params)).await {
            Ok(out) => out,
            Err(_) => {
                let err =
                    || mail_auth::DmarcResult::TempError(Error::Dns(DnsError::Resolver("timeout".into())));
                let domain = from.as_deref().and_then(|f| f.rsplit_once('@')).map_or("", |(_, d)| d);
                DmarcOutput::new(domain.to_owned()).with_spf_result(err()).with_dkim_result(err())
            }
        };
        let record_found = dmarc_out.dmarc_record().is_some();
        self.dkim_alignment(msg, &mut sigs, &dmarc_out, &dmarc_domain, cache, deadline).await;
        let mut spf = spf_result(&spf_out, identity);
        if spf.status == AuthStatus::Pass && record_found {
            spf.aligned = Some(*dmarc_out.spf_result() == mail_auth::DmarcResult::Pass);
        }
        let authentication = Authentication {
            spf,
            dkim: sigs.into_iter().map(|s| s.result).collect(),
            dmarc: dmarc_result(&dmarc_out),
        };
        Evaluation { authentication, from, spf_identity: identity.kind() }
    }

    /// The SPF future for `input` and the identity it checks.
    fn spf<'a>(
        &'a self,
        input: &'a Input<'a>,
        cache: &'a TxtCache<'_>,
    ) -> (impl Future<Output = SpfOutput> + 'a, Identity<'a>) {
        let identity = if input.mail_from.is_empty() {
            Identity::Helo(input.helo)
        } else {
            Identity::MailFrom(input.mail_from)
        };
        let fut = async move {
            let Some(ip) = input.client_ip else {
                return SpfOutput::new(identity.domain().to_owned());
            };
            let checkable = match identity {
                Identity::MailFrom(_) => true,
                // An address literal or an empty HELO names no domain to check.
                Identity::Helo(h) => h.contains('.') && !h.starts_with('['),
            };
            if !checkable {
                return SpfOutput::new(identity.domain().to_owned());
            }
            let params = match identity {
                Identity::MailFrom(from) => {
                    SpfParameters::verify_mail_from(ip, input.helo, input.host_name, from)
                }
                Identity::Helo(helo) => SpfParameters::verify_ehlo(ip, helo, input.host_name),
            };
            let params = Parameters::new(params).with_txt_cache(cache);
            match timeout(self.phase(), self.auth.verify_spf(params)).await {
                Ok(out) => out,
                Err(_) => {
                    SpfOutput::new(identity.domain().to_owned()).with_result(mail_auth::SpfResult::TempError)
                }
            }
        };
        (fut, identity)
    }

    /// Sets `aligned` on passing signatures when a DMARC record was found. mail-auth stops at
    /// the first aligned signature, so with several passing ones each is re-evaluated alone
    /// (the TXT cache makes that free of new DNS traffic except an organisational-domain walk).
    async fn dkim_alignment<'m>(
        &self,
        msg: &'m AuthenticatedMessage<'m>,
        sigs: &mut [Signature<'m>],
        dmarc_out: &DmarcOutput,
        mail_from_domain: &str,
        cache: &TxtCache<'_>,
        deadline: tokio::time::Instant,
    ) {
        if dmarc_out.dmarc_record().is_none() {
            return;
        }
        let passing: Vec<usize> = sigs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.result.status == AuthStatus::Pass)
            .map(|(i, _)| i)
            .collect();
        match dmarc_out.dkim_result() {
            mail_auth::DmarcResult::Pass if passing.len() == 1 => {
                sigs[passing[0]].result.aligned = Some(true)
            }
            mail_auth::DmarcResult::Pass => {
                let no_spf = SpfOutput::new(String::new());
                let check = async {
                    for &i in &passing {
                        let one = std::slice::from_ref(&sigs[i].for_dmarc);
                        let params =
                            Parameters::new(DmarcParameters::new(msg, one, mail_from_domain, &no_spf))
                                .with_txt_cache(cache);
                        let out = self.auth.verify_dmarc(params).await;
                        let aligned = *out.dkim_result() == mail_auth::DmarcResult::Pass;
                        sigs[i].result.aligned = Some(aligned);
                    }
                };
                // Left unknown (None) for whatever the budget did not cover.
                let _ = timeout_at(deadline, check).await;
            }
            mail_auth::DmarcResult::Fail(_) => {
                for i in passing {
                    sigs[i].result.aligned = Some(false);
                }
            }
            _ => {}
        }
    }
}

/// Which RFC 5321 identity SPF checks.
#[derive(Debug, Clone, Copy)]
enum Identity<'a> {
    MailFrom(&'a str),
    Helo(&'a str),
}

impl Identity<'_> {
    fn domain(&self) -> &str {
        match self {
            Self::MailFrom(from) => from.rsplit_once('@').map_or(*from, |(_, d)| d),
            Self::Helo(helo) => helo,
        }
    }

    fn kind(&self) -> SpfIdentity {
        match self {
            Self::MailFrom(_) => SpfIdentity::MailFrom,
            Self::Helo(_) => SpfIdentity::Helo,
        }
    }
}

fn spf_result(out: &SpfOutput, identity: Identity<'_>) -> SpfResult {
    use mail_auth::SpfResult as S;
    let status = match out.result() {
        S::Pass => AuthStatus::Pass,
        S::Fail => AuthStatus::Fail,
        S::SoftFail => AuthStatus::SoftFail,
        S::Neutral => AuthStatus::Neutral,
        S::TempError => AuthStatus::TempError,
        S::PermError => AuthStatus::PermError,
        S::None => AuthStatus::None,
    };
    let domain = identity.domain().trim_end_matches('.').to_ascii_lowercase();
    SpfResult {
        status,
        domain: (!domain.is_empty()).then_some(domain),
        aligned: None,
        detail: out.explanation().map(str::to_owned),
    }
}

fn dmarc_none(domain: Option<String>, detail: &str) -> DmarcResult {
    DmarcResult {
        status: AuthStatus::None,
        domain,
        policy: None,
        aligned_by: Vec::new(),
        detail: Some(detail.to_owned()),
    }
}

fn dmarc_result(out: &DmarcOutput) -> DmarcResult {
    use mail_auth::DmarcResult as D;
    let result = out.result();
    let (status, detail) = match &result {
        D::Pass => (AuthStatus::Pass, None),
        D::Fail(e) => (AuthStatus::Fail, Some(e.to_string())),
        D::TempError(e) => (AuthStatus::TempError, Some(e.to_string()).filter(|s| !s.is_empty())),
        D::PermError(e) => (AuthStatus::PermError, Some(e.to_string())),
        D::None => (AuthStatus::None, None),
    };
    let mut aligned_by = Vec::new();
    if result == D::Pass {
        if *out.spf_result() == D::Pass {
            aligned_by.push(Alignment::Spf);
        }
        if *out.dkim_result() == D::Pass {
            aligned_by.push(Alignment::Dkim);
        }
    }
    DmarcResult {
        status,
        domain: (!out.domain().is_empty()).then(|| out.domain().to_owned()),
        policy: out.dmarc_record().map(|_| out.policy().to_string()),
        aligned_by,
        detail,
    }
}

/// The From address when there is exactly one From field holding exactly one address.
fn single_from(msg: &AuthenticatedMessage<'_>) -> Option<String> {
    let fields = msg.headers.iter().filter(|(n, _)| n.trim_ascii().eq_ignore_ascii_case(b"from")).count();
    match (fields, msg.from.as_slice()) {
        (1, [one]) => Some(one.clone()),
        _ => None,
    }
}

/// One `DKIM-Signature` field: its contract result and what DMARC may count.
struct Signature<'m> {
    result: DkimResult,
    for_dmarc: DkimOutput<'m>,
}

/// mail-auth's verification of the signatures, or why it did not run.
enum Dkim<'m> {
    Checked(Vec<DkimOutput<'m>>),
    Unchecked(Unchecked),
}

#[derive(Debug, Clone, Copy)]
enum Unchecked {
    /// The DKIM phase ran out of its DNS budget: retrying later may succeed.
    OutOfTime,
    /// The body was cut at `max_message_bytes`: a retry meets the same cap.
    TooLarge,
}

/// Every DKIM-Signature in header order, with its contract result and its DMARC input.
fn signatures<'m>(raw: &'m [u8], msg: &'m AuthenticatedMessage<'m>, dkim: Dkim<'m>) -> Vec<Signature<'m>> {
    let offset = |value: &[u8]| (value.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
    let mut found: Vec<(usize, Signature<'m>)> = Vec::new();
    // Signatures mail-auth could not parse sit in `errors` beside other headers' errors; the
    // field name tells them apart (the error kind does not: a bad base64 `b=` is not
    // `Error::Dkim`).
    let malformed = msg.errors.iter().filter(|h| h.name.trim_ascii().eq_ignore_ascii_case(b"DKIM-Signature"));
    for h in malformed {
        let (status, detail) = match &h.header {
            Error::Dkim(DkimError::SignatureLength) => (
                AuthStatus::Policy,
                "l= (body length limit) is refused: unsigned content could be appended".to_owned(),
            ),
            e => (AuthStatus::PermError, format!("malformed signature: {e}")),
        };
        let result = DkimResult {
            status,
            domain: tag(h.value, "d"),
            selector: tag(h.value, "s"),
            aligned: None,
            detail: Some(detail),
        };
        let for_dmarc = DkimOutput::perm_err(h.header.clone());
        found.push((offset(h.value), Signature { result, for_dmarc }));
    }
    match dkim {
        Dkim::Checked(outputs) => {
            for out in outputs {
                // Outputs without a signature are the malformed ones handled above.
                let Some(sig) = out.signature() else { continue };
                let Some(header) = msg.dkim_headers.iter().find(|h| std::ptr::eq(&h.header, sig)) else {
                    continue;
                };
                let result = dkim_result(&out, sig);
                found.push((offset(header.value), Signature { result, for_dmarc: out }));
            }
        }
        Dkim::Unchecked(why) => {
            for h in &msg.dkim_headers {
                let (status, detail, err) = match why {
                    Unchecked::OutOfTime => (
                        AuthStatus::TempError,
                        "DNS lookups did not finish in time",
                        DkimOutput::temp_err(Error::Dns(DnsError::Resolver("timeout".into()))),
                    ),
                    Unchecked::TooLarge => (
                        AuthStatus::PermError,
                        "message larger than max_message_bytes; signature not checked",
                        DkimOutput::perm_err(Error::Io("message too large".into())),
                    ),
                };
                let result = DkimResult {
                    status,
                    domain: Some(h.header.d.to_ascii_lowercase()),
                    selector: Some(h.header.s.clone()),
                    aligned: None,
                    detail: Some(detail.to_owned()),
                };
                found.push((offset(h.value), Signature { result, for_dmarc: err.with_signature(&h.header) }));
            }
        }
    }
    found.sort_by_key(|(pos, _)| *pos);
    found.into_iter().map(|(_, s)| s).collect()
}

fn dkim_result(out: &DkimOutput<'_>, sig: &mail_auth::dkim::Signature) -> DkimResult {
    use mail_auth::DkimResult as K;
    let (status, detail) = match out.result() {
        K::Pass => (AuthStatus::Pass, None),
        K::Neutral(Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            (AuthStatus::Fail, Some("body hash did not verify".to_owned()))
        }
        K::Fail(e) => (AuthStatus::Fail, Some(e.to_string())),
        K::Neutral(e) => (AuthStatus::Neutral, Some(e.to_string())),
        K::PermError(e) => (AuthStatus::PermError, Some(e.to_string())),
        K::TempError(e) => (AuthStatus::TempError, Some(e.to_string())),
        K::None => (AuthStatus::None, None),
    };
    DkimResult {
        status,
        domain: Some(sig.d.to_ascii_lowercase()),
        selector: Some(sig.s.clone()),
        aligned: None,
        detail,
    }
}

/// A tag's value in a raw `DKIM-Signature` field (`d=`, `s=`), for signatures mail-auth
/// could not parse; whitespace inside the value is folding and is dropped.
fn tag(value: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    text.split(';').find_map(|t| {
        let (k, v) = t.split_once('=')?;
        (k.trim() == name).then(|| v.split_whitespace().collect::<String>()).filter(|v| !v.is_empty())
    })
}

/// Parsed TXT records (SPF, DKIM keys, DMARC) that outlive a message, until their DNS TTL runs
/// out, so the next message from the same domain is not parsed again. Only a record that
/// parsed as the type its name is for is kept here ([`shareable`]): mail-auth caches by name
/// alone, so a lookup a sender provokes with the wrong type (an SPF `include:` naming another
/// domain's `_dmarc` or DKIM key) yields an error or a wrong-typed entry that must never be
/// served to another sender's message. A record with TTL 0 is never served from here.
#[derive(Default)]
struct SharedTxt(Mutex<HashMap<Box<str>, (Txt, Instant)>>);

/// Records kept at most; the cache is emptied when full (a flood of distinct sender domains
/// costs lookups, never memory).
const MAX_TXT_CACHED: usize = 10_000;

/// Whether `value`, found at `name`, is the record that name holds for everyone: a DKIM key
/// under `_domainkey`, a DMARC policy at `_dmarc`, an SPF policy anywhere else. Errors, SPF
/// macros and every other type stay with the message that asked.
fn shareable(name: &str, value: &Txt) -> bool {
    let name = name.to_ascii_lowercase();
    let (dkim, dmarc) = (name.contains("._domainkey."), name.starts_with("_dmarc."));
    match value {
        Txt::DomainKey(_) => dkim && !dmarc,
        Txt::Dmarc(_) => dmarc && !dkim,
        Txt::Spf(_) => !dkim && !dmarc,
        _ => false,
    }
}

/// One message's TXT cache: SPF, DKIM, DMARC and the alignment re-checks of one message share
/// every lookup (the organisational-domain walk repeats `_dmarc` queries otherwise), in front
/// of the process-wide [`SharedTxt`].
struct TxtCache<'a> {
    local: Mutex<HashMap<Box<str>, Txt>>,
    shared: &'a SharedTxt,
}

impl<'a> TxtCache<'a> {
    fn new(shared: &'a SharedTxt) -> Self {
        Self { local: Mutex::default(), shared }
    }
}

impl ResolverCache<Box<str>, Txt> for TxtCache<'_> {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(txt) = self.local.lock().unwrap_or_else(PoisonError::into_inner).get(name) {
            return Some(txt.clone());
        }
        let shared = self.shared.0.lock().unwrap_or_else(PoisonError::into_inner);
        shared.get(name).filter(|(_, until)| Instant::now() < *until).map(|(txt, _)| txt.clone())
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.local.lock().unwrap_or_else(PoisonError::into_inner).remove(name)
    }

    fn insert(&self, key: Box<str>, value: Txt, valid_until: Instant) {
        if shareable(&key, &value) {
            let mut shared = self.shared.0.lock().unwrap_or_else(PoisonError::into_inner);
            if shared.len() >= MAX_TXT_CACHED {
                shared.clear();
            }
            shared.insert(key.clone(), (value.clone(), valid_until));
        }
        self.local.lock().unwrap_or_else(PoisonError::into_inner).insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_records_of_their_own_names_are_shared_across_messages() {
        use mail_auth::common::parse::TxtRecordParser;
        use mail_auth::common::verify::DomainKey;
        use mail_auth::dmarc::Dmarc;
        use mail_auth::spf::Spf;
        let spf = Txt::Spf(std::sync::Arc::new(Spf::parse(b"v=spf1 -all").expect("spf")));
        let key = Txt::DomainKey(std::sync::Arc::new(
            DomainKey::parse(b"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
                .expect("key"),
        ));
        let dmarc = Txt::Dmarc(std::sync::Arc::new(Dmarc::parse(b"v=DMARC1; p=reject").expect("dmarc")));
        assert!(shareable("example.org", &spf));
        assert!(shareable("sel._domainkey.Example.org", &key));
        assert!(shareable("_dmarc.example.org", &dmarc));
        // What a sender can make another domain's names yield: never served to anyone else.
        assert!(!shareable("sel._domainkey.example.org", &spf), "an SPF include of a DKIM key name");
        assert!(!shareable("_dmarc.example.org", &spf), "an SPF include of a DMARC name");
        assert!(!shareable("example.org", &key));
        assert!(!shareable("_dmarc.example.org", &key));
        assert!(!shareable("example.org", &dmarc));
        assert!(!shareable("_dmarc.example.org", &Txt::Error(mail_auth::Error::ParseError)));

        // Within one message everything is served; across messages only what is shareable.
        let shared = SharedTxt::default();
        let later = Instant::now() + Duration::from_secs(300);
        let first = TxtCache::new(&shared);
        first.insert("_dmarc.example.org".into(), Txt::Error(mail_auth::Error::ParseError), later);
        first.insert("example.org".into(), spf.clone(), later);
        assert!(first.get("_dmarc.example.org").is_some());
        let second = TxtCache::new(&shared);
        assert!(second.get("_dmarc.example.org").is_none(), "an error stays with its message");
        assert!(second.get("example.org").is_some(), "a record outlives its message");
        let now = TxtCache::new(&shared);
        now.insert("zero.example".into(), spf, Instant::now());
        assert!(TxtCache::new(&shared).get("zero.example").is_none(), "TTL 0 is never served");
    }

    #[test]
    fn reads_tags_of_unparsable_signatures() {
        let v = b" v=1; a=rsa-sha256; d=Example.org;\r\n\ts=sel\r\n 1; l=10; b=abc";
        assert_eq!(tag(v, "d").as_deref(), Some("Example.org"));
        assert_eq!(tag(v, "s").as_deref(), Some("sel1"));
        assert_eq!(tag(v, "x"), None);
    }
}
