//! Where webhooks may point: the SSRF guard, applied when a URL is registered and again to
//! every address the delivery client is about to connect to (so a name that resolved to a
//! public address at registration and to `127.0.0.1` later — DNS rebinding — is refused).
//!
//! Admitted: global unicast only. Refused everywhere: private (RFC 1918, ULA), link-local
//! (incl. the 169.254.169.254 metadata address), CGNAT, multicast, unspecified, broadcast,
//! reserved and documentation ranges, IPv6 outside 2000::/3, and IPv4 addresses smuggled
//! inside IPv6 (mapped, well-known NAT64, 6to4, Teredo), which are judged by the IPv4 address
//! they reach. The local-use NAT64 prefix `64:ff9b:1::/48` (RFC 8215) is refused whole: IANA
//! lists it as not globally reachable, and where in it the IPv4 address sits (RFC 6052's /48,
//! /56, /64 or /96 layout) is the local operator's choice, so no reading of it is safe.
//! Loopback and raw
//! IP URLs are refused in production; [`WebhookMode::Development`] allows loopback receivers
//! (and plain `http://`) so a developer, or a test, can point a webhook at a local port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookMode {
    /// HTTPS only, public addresses only, no IP literals.
    Production,
    /// Also `http://` and loopback receivers (`localhost`, `127.0.0.1`, `[::1]`).
    Development,
}

impl WebhookMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "production" => Some(Self::Production),
            "development" => Some(Self::Development),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Development => "development",
        }
    }
}

impl std::str::FromStr for WebhookMode {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or("must be production or development")
    }
}

impl std::fmt::Display for WebhookMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an address or URL is refused; the text is shown to API callers and in attempt rows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the URL is not valid: {0}")]
    Malformed(String),
    #[error("the URL must use https")]
    NotHttps,
    #[error("the URL must use http or https")]
    Scheme,
    #[error("the URL must name a host")]
    NoHost,
    #[error("the URL must not carry credentials")]
    Credentials,
    #[error("the URL must name a host, not an IP address")]
    IpLiteral,
    #[error("{ip} is a {class} address, which webhooks may not reach")]
    Address { ip: IpAddr, class: &'static str },
    #[error("{host} does not resolve: {reason}")]
    Unresolvable { host: String, reason: String },
}

/// The class of a refused address, or `None` when webhooks may reach it.
pub fn classify(ip: IpAddr, mode: WebhookMode) -> Option<&'static str> {
    let class = match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }?;
    (class != "loopback" || mode == WebhookMode::Production).then_some(class)
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (127, _, _) => "loopback",
        (0, _, _) => "unspecified",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "private",
        (169, 254, _) => "link-local",
        (100, 64..=127, _) => "CGNAT (shared address space)",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        (192, 0, 0) => "reserved (IETF protocol assignments)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "reserved (benchmarking)",
        (192, 88, 99) => "reserved (6to4 relay anycast)",
        (192, 31, 196) | (192, 175, 48) => "reserved (AS112)",
        (192, 52, 193) => "reserved (AMT)",
        _ => return None,
    })
}

fn v4(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
}

/// The IPv4 addresses an IPv6 address reaches through a translation or tunnel, judged in its
/// place: mapped (`::ffff:0:0/96`), NAT64 well-known (`64:ff9b::/96`), 6to4 (`2002::/16`) and
/// Teredo (`2001::/32`: the server, and the client obfuscated in the last 32 bits, RFC 4380 §4).
fn embedded_v4(s: [u16; 8]) -> Option<Vec<Ipv4Addr>> {
    Some(match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => vec![v4(hi, lo)],
        [0x2002, hi, lo, ..] => vec![v4(hi, lo)],
        [0x2001, 0, server_hi, server_lo, _, _, client_hi, client_lo] => {
            vec![v4(server_hi, server_lo), v4(!client_hi, !client_lo)]
        }
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    let s = ip.segments();
    if let [0x64, 0xff9b, 0x1, ..] = s {
        return Some("reserved (local-use NAT64)");
    }
    if let Some(inner) = embedded_v4(s) {
        // A public address behind the prefix is fine; the prefix alone is not a reason. Of
        // several classes the strictest counts: loopback (allowed in development) only when
        // every embedded address is loopback or public.
        let classes: Vec<&'static str> = inner.into_iter().filter_map(classify_v4).collect();
        return classes.iter().find(|class| **class != "loopback").or(classes.first()).copied();
    }
    // Only global unicast (2000::/3) is reachable at all, less its special-purpose blocks.
    Some(match s[0] {
        0x2000..=0x3fff => match s {
            [0x2001, 0x0db8, ..] => "documentation",
            [0x3fff, b, ..] if b < 0x1000 => "documentation",
            [0x2001, 0x0002, 0, ..] => "reserved (benchmarking)",
            [0x2001, 0x0000..=0x01ff, ..] => "reserved (IETF protocol assignments)",
            _ => return None,
        },
        0xfc00..=0xfdff => "private (unique local)",
        0xfe80..=0xfebf => "link-local",
        0xff00..=0xffff => "multicast",
        _ => "reserved (not global unicast)",
    })
}

/// A parsed webhook URL that passed the static checks (scheme, host, credentials, literal).
#[derive(Debug, Clone)]
pub struct Target {
    pub url: url::Url,
    /// The host to resolve; `None` when the URL is an allowed IP literal (development only).
    pub host: Option<String>,
    pub literal: Option<IpAddr>,
}

/// The checks that need no DNS.
pub fn check_url(raw: &str, mode: WebhookMode) -> Result<Target, Refused> {
    let url = url::Url::parse(raw).map_err(|e| Refused::Malformed(e.to_string()))?;
    match (url.scheme(), mode) {
        ("https", _) | ("http", WebhookMode::Development) => {}
        ("http", WebhookMode::Production) => return Err(Refused::NotHttps),
        _ => return Err(Refused::Scheme),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused::Credentials);
    }
    let literal = match url.host() {
        None => return Err(Refused::NoHost),
        Some(url::Host::Domain("")) => return Err(Refused::NoHost),
        Some(url::Host::Domain(_)) => None,
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
    };
    if let Some(ip) = literal {
        // A raw IP is only ever a development loopback receiver.
        if mode == WebhookMode::Production {
            return Err(Refused::IpLiteral);
        }
        if let Some(class) = classify(ip, mode) {
            return Err(Refused::Address { ip, class });
        }
        if !ip.is_loopback() {
            return Err(Refused::IpLiteral);
        }
        return Ok(Target { url, host: None, literal: Some(ip) });
    }
    let host = url.host_str().unwrap_or_default().trim_end_matches('.').to_ascii_lowercase();
    Ok(Target { url, host: Some(host), literal: None })
}

/// The resolved addresses of `host`, all of which must be allowed (one bad address refuses
/// the URL: a round-robin set with one internal member is still an SSRF).
pub fn check_addresses(host: &str, addrs: &[IpAddr], mode: WebhookMode) -> Result<(), Refused> {
    if addrs.is_empty() {
        return Err(Refused::Unresolvable { host: host.to_owned(), reason: "no A or AAAA records".into() });
    }
    for ip in addrs {
        if let Some(class) = classify(*ip, mode) {
            return Err(Refused::Address { ip: *ip, class });
        }
    }
    Ok(())
}

/// The fixed answer for `localhost` (never sent to DNS, RFC 6761).
pub fn localhost(host: &str) -> Option<Vec<IpAddr>> {
    (host == "localhost" || host.ends_with(".localhost"))
        .then(|| vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use WebhookMode::{Development as Dev, Production as Prod};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn every_refused_range_and_some_public_ones() {
        for (addr, class) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("::1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("fd12::1", "private (unique local)"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("100.64.0.1", "CGNAT (shared address space)"),
            ("100.127.255.254", "CGNAT (shared address space)"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("255.255.255.255", "reserved"),
            ("240.0.0.1", "reserved"),
            ("192.0.2.7", "documentation"),
            ("2001:db8::1", "documentation"),
            ("198.18.0.1", "reserved (benchmarking)"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:c0a8:0101::1", "private"),
            // Local-use NAT64, whatever it embeds (here 10.0.0.1 in the /64 layout, 8.8.8.8).
            ("64:ff9b:1:abcd:a:0:100:0", "reserved (local-use NAT64)"),
            ("64:ff9b:1::808:808", "reserved (local-use NAT64)"),
            ("64:ff9b:1:5db8:d8:2200::", "reserved (local-use NAT64)"),
            // Teredo: the server, or the (obfuscated) client, embeds a private address.
            ("2001:0:c0a8:101::", "private"),
            ("2001:0:5db8:d822::f5ff:fffe", "private"),
            ("3fff::1", "documentation"),
            ("2001:2::1", "reserved (benchmarking)"),
            ("2001:10::1", "reserved (IETF protocol assignments)"),
            ("5f00::1", "reserved (not global unicast)"),
            ("100::1", "reserved (not global unicast)"),
            ("::1.2.3.4", "reserved (not global unicast)"),
            ("192.31.196.1", "reserved (AS112)"),
        ] {
            assert_eq!(classify(ip(addr), Prod), Some(class), "{addr}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:5db8:d822::1",
            "2001:0:5db8:d822::a247:27dd",
        ] {
            assert_eq!(classify(ip(public), Prod), None, "{public}");
        }
    }

    #[test]
    fn development_allows_loopback_only() {
        assert_eq!(classify(ip("127.0.0.1"), Dev), None);
        assert_eq!(classify(ip("::1"), Dev), None);
        assert_eq!(classify(ip("10.0.0.1"), Dev), Some("private"));
        assert_eq!(classify(ip("169.254.169.254"), Dev), Some("link-local"));
        // Teredo with a loopback server and a private client: the private one counts.
        assert_eq!(classify(ip("2001:0:7f00:1::f5ff:fffe"), Dev), Some("private"));
        assert_eq!(classify(ip("2001:0:7f00:1::f5ff:fffe"), Prod), Some("private"));
    }

    #[test]
    fn url_rules() {
        assert!(check_url("https://hooks.example.com/x", Prod).is_ok());
        assert_eq!(check_url("http://hooks.example.com/x", Prod).err(), Some(Refused::NotHttps));
        assert!(check_url("http://hooks.example.com/x", Dev).is_ok());
        assert_eq!(check_url("ftp://hooks.example.com/", Dev).err(), Some(Refused::Scheme));
        assert_eq!(check_url("https://user:pw@hooks.example.com/", Prod).err(), Some(Refused::Credentials));
        assert_eq!(check_url("https://93.184.216.34/", Prod).err(), Some(Refused::IpLiteral));
        assert_eq!(check_url("https://[::1]/", Prod).err(), Some(Refused::IpLiteral));
        assert!(check_url("http://127.0.0.1:8080/h", Dev).is_ok_and(|t| t.literal.is_some()));
        assert!(check_url("http://[::1]:8080/h", Dev).is_ok());
        assert!(matches!(check_url("http://10.0.0.1/h", Dev), Err(Refused::Address { .. })));
        assert_eq!(check_url("http://93.184.216.34/h", Dev).err(), Some(Refused::IpLiteral));
        assert!(matches!(check_url("not a url", Prod), Err(Refused::Malformed(_))));
        // Decimal and hex spellings of 127.0.0.1 are parsed as IPs by the URL standard.
        assert_eq!(check_url("https://2130706433/", Prod).err(), Some(Refused::IpLiteral));
        assert_eq!(check_url("https://0x7f.1/", Prod).err(), Some(Refused::IpLiteral));
    }

    #[test]
    fn one_bad_address_refuses_the_set() {
        let mixed = [ip("93.184.216.34"), ip("10.0.0.5")];
        assert!(matches!(check_addresses("h", &mixed, Prod), Err(Refused::Address { .. })));
        assert!(check_addresses("h", &[ip("93.184.216.34")], Prod).is_ok());
        assert!(matches!(check_addresses("h", &[], Prod), Err(Refused::Unresolvable { .. })));
    }
}
