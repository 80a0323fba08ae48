//! Peer allowlists for the TCP mail listeners (`milter_peers`, `lmtp_peers`).
//!
//! Whoever can talk to the milter can have a verdict signed for a client address it chooses,
//! and whoever can talk to LMTP can file mail straight into the store; only Postfix should
//! ever do either. Unix sockets are guarded by their mode and group; a TCP listener refuses
//! every peer outside its list before it says a word.

use std::fmt;
use std::net::IpAddr;

/// One `address/prefix` (a bare address is a host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| {
            format!("{s:?} is not an IP address or network (like 127.0.0.1, 10.0.0.0/8 or ::1)")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has a prefix length outside 0..={max}"))?,
        };
        Ok(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Whether every address of this network is a loopback address.
    pub fn is_loopback(&self) -> bool {
        match self.addr {
            IpAddr::V4(a) => a.is_loopback() && self.prefix >= 8,
            IpAddr::V6(a) => a.is_loopback() && self.prefix == 128,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A comma-separated list of networks; the listener's only admitted peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerList(Vec<Cidr>);

impl PeerList {
    /// The default: the loopback networks only.
    pub const LOOPBACK: &'static str = "127.0.0.0/8, ::1";

    pub fn parse(s: &str) -> Result<Self, String> {
        let list =
            s.split(',').filter(|p| !p.trim().is_empty()).map(Cidr::parse).collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err("lists no network: name at least one (127.0.0.1 for Postfix on this host)".into());
        }
        Ok(Self(list))
    }

    pub fn loopback() -> Self {
        Self(vec![
            Cidr { addr: IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 0)), prefix: 8 },
            Cidr { addr: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), prefix: 128 },
        ])
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// Admits loopback peers only.
    pub fn is_loopback_only(&self) -> bool {
        self.0.iter().all(Cidr::is_loopback)
    }

    /// Admits every address (a `/0` somewhere).
    pub fn admits_anyone(&self) -> bool {
        self.0.iter().any(|c| c.prefix == 0)
    }
}

impl std::str::FromStr for PeerList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl fmt::Display for PeerList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn networks_and_hosts() {
        let l = PeerList::parse("127.0.0.0/8, ::1, 10.1.2.0/24, 192.0.2.7").expect("valid");
        for ok in ["127.0.0.1", "127.9.9.9", "::1", "10.1.2.200", "192.0.2.7", "::ffff:127.0.0.1"] {
            assert!(l.allows(ip(ok)), "{ok}");
        }
        for no in ["10.1.3.1", "192.0.2.8", "::2", "8.8.8.8", "fe80::1"] {
            assert!(!l.allows(ip(no)), "{no}");
        }
        assert!(!l.is_loopback_only());
        assert!(PeerList::loopback().is_loopback_only());
        assert_eq!(PeerList::parse(PeerList::LOOPBACK), Ok(PeerList::loopback()));
        assert!(PeerList::parse("0.0.0.0/0").expect("valid").admits_anyone());
        assert!(PeerList::parse("").is_err());
        assert!(PeerList::parse("10.0.0.0/33").is_err());
        assert!(PeerList::parse("example.org").is_err());
        assert_eq!(PeerList::loopback().to_string(), "127.0.0.0/8, ::1/128");
    }
}
