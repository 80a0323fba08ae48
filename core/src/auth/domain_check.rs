//! The `X-E2A-Auth-Domain-Check` value: every result of [`Authentication`], in one signed,
//! human-readable line that parses back to the same object.
//!
//! ```text
//! spf=pass (domain=example.org aligned=yes); dkim=pass (d=example.org s=sel1 aligned=yes);
//!     dmarc=pass (domain=example.org policy=reject aligned_by=spf,dkim)
//! ```
//! (one line in the header). Mechanisms are separated by `"; "`, one `dkim=` per signature in
//! header order (`dkim=none` alone when there is none), properties by single spaces. Property
//! values are percent-encoded outside `[A-Za-z0-9._,-]` (a hostile `d=` cannot break the
//! grammar); an absent value or a `null` flag is simply left out. `detail` is not carried.

use super::{Authentication, DkimResult, DmarcResult, SpfResult};
use crate::vocab::{Alignment, AuthStatus, Word};

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b',' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode(v: &str) -> Option<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = v.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `mech=status (k=v k=v)`; properties with `None` values are skipped.
fn item(mech: &str, status: AuthStatus, props: &[(&str, Option<String>)]) -> String {
    let props: Vec<String> =
        props.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v)))).collect();
    if props.is_empty() {
        format!("{mech}={status}")
    } else {
        format!("{mech}={status} ({})", props.join(" "))
    }
}

fn flag(b: Option<bool>) -> Option<String> {
    b.map(|b| if b { "yes".to_owned() } else { "no".to_owned() })
}

pub fn format(a: &Authentication) -> String {
    let mut parts = vec![item(
        "spf",
        a.spf.status,
        &[("domain", a.spf.domain.clone()), ("aligned", flag(a.spf.aligned))],
    )];
    if a.dkim.is_empty() {
        parts.push("dkim=none".to_owned());
    }
    for d in &a.dkim {
        parts.push(item(
            "dkim",
            d.status,
            &[("d", d.domain.clone()), ("s", d.selector.clone()), ("aligned", flag(d.aligned))],
        ));
    }
    let aligned_by = (!a.dmarc.aligned_by.is_empty())
        .then(|| a.dmarc.aligned_by.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","));
    parts.push(item(
        "dmarc",
        a.dmarc.status,
        &[("domain", a.dmarc.domain.clone()), ("policy", a.dmarc.policy.clone()), ("aligned_by", aligned_by)],
    ));
    parts.join("; ")
}

/// One parsed `mech=status (props)`.
struct Item {
    mech: String,
    status: AuthStatus,
    props: Vec<(String, String)>,
}

impl Item {
    fn get(&self, k: &str) -> Option<String> {
        self.props.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
    }

    fn flag(&self, k: &str) -> Result<Option<bool>, String> {
        match self.get(k).as_deref() {
            None => Ok(None),
            Some("yes") => Ok(Some(true)),
            Some("no") => Ok(Some(false)),
            Some(other) => Err(format!("{k}={other} is not yes or no")),
        }
    }
}

fn parse_item(s: &str) -> Result<Item, String> {
    let (head, props) = match s.split_once(" (") {
        Some((h, rest)) => {
            (h, rest.strip_suffix(')').ok_or_else(|| format!("unclosed properties in {s:?}"))?)
        }
        None => (s, ""),
    };
    let (mech, status) = head.split_once('=').ok_or_else(|| format!("{s:?} is not mechanism=status"))?;
    let status = AuthStatus::parse(status).map_err(|e| format!("{e} in {s:?}"))?;
    let props = props
        .split(' ')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').ok_or_else(|| format!("{p:?} is not key=value"))?;
            Ok((k.to_owned(), decode(v).ok_or_else(|| format!("bad encoding in {p:?}"))?))
        })
        .collect::<Result<_, String>>()?;
    Ok(Item { mech: mech.to_owned(), status, props })
}

pub fn parse(s: &str) -> Result<Authentication, String> {
    let items: Vec<Item> = s.split("; ").map(parse_item).collect::<Result<_, _>>()?;
    let (first, rest) = items.split_first().ok_or("empty")?;
    let (last, middle) = rest.split_last().ok_or("missing dkim and dmarc")?;
    if first.mech != "spf"
        || last.mech != "dmarc"
        || middle.is_empty()
        || middle.iter().any(|i| i.mech != "dkim")
    {
        return Err("expected spf=…; dkim=…[; dkim=…]; dmarc=…".into());
    }
    let spf = SpfResult {
        status: first.status,
        domain: first.get("domain"),
        aligned: first.flag("aligned")?,
        detail: None,
    };
    let unsigned = middle.len() == 1 && middle[0].status == AuthStatus::None && middle[0].props.is_empty();
    let dkim = if unsigned {
        Vec::new()
    } else {
        middle
            .iter()
            .map(|i| {
                Ok(DkimResult {
                    status: i.status,
                    domain: i.get("d"),
                    selector: i.get("s"),
                    aligned: i.flag("aligned")?,
                    detail: None,
                })
            })
            .collect::<Result<_, String>>()?
    };
    let dmarc = DmarcResult {
        status: last.status,
        domain: last.get("domain"),
        policy: last.get("policy"),
        aligned_by: match last.get("aligned_by") {
            Some(v) => {
                v.split(',').map(Alignment::parse).collect::<Result<_, _>>().map_err(|e| e.to_string())?
            }
            None => Vec::new(),
        },
        detail: None,
    };
    Ok(Authentication { spf, dkim, dmarc })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Authentication {
        let mut a = Authentication::aligned_pass("example.org", "sel1");
        a.dkim.push(DkimResult {
            status: AuthStatus::Fail,
            domain: Some("evil; dmarc=pass (x)".into()),
            selector: None,
            aligned: Some(false),
            detail: None,
        });
        a
    }

    #[test]
    fn formats_readably_and_round_trips() {
        let a = sample();
        let text = format(&a);
        assert!(
            text.starts_with("spf=pass (domain=example.org aligned=yes); dkim=pass (d=example.org s=sel1 aligned=yes); dkim=fail (d=evil%3B%20dmarc%3Dpass%20%28x%29 aligned=no); dmarc=pass (domain=example.org policy=reject aligned_by=spf,dkim)"),
            "{text}"
        );
        assert_eq!(parse(&text), Ok(a));
    }

    #[test]
    fn unsigned_and_sparse_results_round_trip() {
        let a = Authentication {
            spf: SpfResult {
                status: AuthStatus::TempError,
                domain: None,
                aligned: None,
                detail: Some("dns".into()),
            },
            dkim: vec![],
            dmarc: DmarcResult {
                status: AuthStatus::None,
                domain: Some("x.org".into()),
                policy: None,
                aligned_by: vec![],
                detail: None,
            },
        };
        let text = format(&a);
        assert_eq!(text, "spf=temperror; dkim=none; dmarc=none (domain=x.org)");
        let back = parse(&text).expect("parses");
        assert_eq!(back.spf.detail, None, "detail is not carried");
        assert!(back.dkim.is_empty());
        assert_eq!(back.dmarc, a.dmarc);
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "spf=pass",
            "spf=pass; dmarc=pass",
            "dkim=pass; spf=pass; dmarc=pass",
            "spf=PASS; dkim=none; dmarc=none",
            "spf=pass (aligned=maybe); dkim=none; dmarc=none",
            "spf=pass (domain=%zz); dkim=none; dmarc=none",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
