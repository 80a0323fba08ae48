//! An authoritative DNS server on 127.0.0.1 whose records tests change while it runs.
//!
//! Why: SPF, DKIM, DMARC and MX checks are DNS lookups, and postagent must be tested against
//! a real resolver doing real UDP/TCP, including the awkward cases (long DKIM keys split into
//! several character-strings, UDP truncation and the TCP retry, SERVFAIL, timeouts). Point
//! the code under test at [`DnsServer::addr`].
//!
//! Semantics, kept deliberately small but protocol-correct:
//! * every answer is authoritative (AA) and echoes the query id and question;
//! * records matching (name, type) are answered; `ANY` returns every record of the name;
//! * NOERROR with an empty answer when the name exists with other types only (or is an empty
//!   non-terminal, e.g. `_domainkey.example.org` when `sel._domainkey.example.org` exists);
//! * NXDOMAIN when the name is unknown;
//! * over UDP, an answer larger than 512 bytes (or the client's EDNS payload size, if larger)
//!   is replaced by an empty one with TC set, so the client retries on TCP;
//! * TCP uses 2-byte length framing and serves any number of queries per connection.
//!
//! Records carry TTL 0 so that resolvers with caches see a mutation on the next lookup
//! ([`DnsServer::set_ttl`] gives them a real one, for a benchmark of a stable zone).

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context as _;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, MX, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// TTL of every answer by default: 0, so caching resolvers never hide a change made by the
/// test.
const TTL: u32 = 0;
/// The classic UDP payload limit (RFC 1035) used when the query carries no EDNS OPT record.
const UDP_LIMIT: usize = 512;
/// The payload size this server advertises in its own OPT record (the DNS-flag-day value).
const OUR_EDNS_PAYLOAD: u16 = 1232;

#[derive(Default)]
struct Zone {
    /// Lower-case name without trailing dot -> records (type, data) in insertion order.
    records: HashMap<String, Vec<RData>>,
    servfail: HashSet<String>,
    drop: HashSet<String>,
    ttl: u32,
    /// Zone apexes whose negative answers carry their SOA (see [`DnsServer::add_soa`]).
    soa: Vec<String>,
}

impl Zone {
    /// The SOA record of the zone `name` lies in, if it was made one by `add_soa`: its
    /// minimum (the negative-caching TTL) and its own TTL are the zone's TTL.
    fn soa_of(&self, name: &str) -> Option<Record> {
        let apex = self.soa.iter().find(|a| name == a.as_str() || name.ends_with(&format!(".{a}")))?;
        let mname = fqdn(&format!("ns.{apex}")).ok()?;
        let rname = fqdn(&format!("hostmaster.{apex}")).ok()?;
        let soa = SOA::new(mname, rname, 1, 3600, 600, 86400, self.ttl);
        Some(Record::from_rdata(fqdn(apex).ok()?, self.ttl, RData::SOA(soa)))
    }

    fn name_exists(&self, name: &str) -> bool {
        if self.records.get(name).is_some_and(|r| !r.is_empty()) {
            return true;
        }
        // Empty non-terminal: some existing name lies below `name`.
        let suffix = format!(".{name}");
        self.records.iter().any(|(n, r)| !r.is_empty() && n.ends_with(&suffix))
    }
}

/// A running DNS server (UDP and TCP on the same 127.0.0.1 port). Its tasks stop when it is
/// dropped. Mutation methods take `&self` and apply to the very next query.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Lower-case, without trailing dot: the key records are stored and looked up under.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    /// Binds UDP on 127.0.0.1:0, then TCP on the same port (retrying with a new port if
    /// something else holds the TCP side), and starts serving. Must be called within a tokio
    /// runtime; the server runs on that runtime.
    pub async fn start() -> anyhow::Result<DnsServer> {
        let (udp, tcp) = bind_pair().await?;
        Self::serve(udp, tcp)
    }

    /// [`Self::start`] on a fixed address, e.g. 127.0.0.1:53 for resolvers that cannot be
    /// told a port (libresolv reads only `nameserver` addresses from resolv.conf).
    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<DnsServer> {
        let udp = UdpSocket::bind(addr).await.with_context(|| format!("cannot bind UDP {addr}"))?;
        let tcp = TcpListener::bind(addr).await.with_context(|| format!("cannot bind TCP {addr}"))?;
        Self::serve(udp, tcp)
    }

    fn serve(udp: UdpSocket, tcp: TcpListener) -> anyhow::Result<DnsServer> {
        let addr = udp.local_addr()?;
        let zone = Arc::new(Mutex::new(Zone { ttl: TTL, ..Zone::default() }));
        let tasks =
            vec![tokio::spawn(serve_udp(udp, zone.clone())), tokio::spawn(serve_tcp(tcp, zone.clone()))];
        tracing::debug!(%addr, "test DNS server started");
        Ok(DnsServer { addr, zone, tasks })
    }

    /// The address to point resolvers at (same port for UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn zone(&self) -> MutexGuard<'_, Zone> {
        // A panic in another test thread while holding the lock leaves the data consistent
        // (every critical section is a single map operation), so poisoning is ignored.
        self.zone.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, name: &str, data: RData) {
        self.zone().records.entry(key(name)).or_default().push(data);
    }

    /// Adds a TXT record. `value` is split into 255-byte character-strings, as DNS requires
    /// for long values such as DKIM public keys (verifiers concatenate them again).
    pub fn add_txt(&self, name: &str, value: &str) {
        let chunks: Vec<&[u8]> =
            if value.is_empty() { vec![&[][..]] } else { value.as_bytes().chunks(255).collect() };
        self.add(name, RData::TXT(TXT::from_bytes(chunks)));
    }

    /// Adds an MX record.
    ///
    /// # Panics
    /// When `exchange` is not a valid domain name (a bug in the test, not a runtime condition).
    pub fn add_mx(&self, name: &str, preference: u16, exchange: &str) {
        let exchange = fqdn(exchange).unwrap_or_else(|e| panic!("invalid MX exchange {exchange:?}: {e}"));
        self.add(name, RData::MX(MX::new(preference, exchange)));
    }

    /// Adds an A record.
    pub fn add_a(&self, name: &str, ip: Ipv4Addr) {
        self.add(name, RData::A(A(ip)));
    }

    /// Adds an AAAA record.
    pub fn add_aaaa(&self, name: &str, ip: std::net::Ipv6Addr) {
        self.add(name, RData::AAAA(hickory_proto::rr::rdata::AAAA(ip)));
    }

    /// Removes every record at `name`.
    pub fn clear(&self, name: &str) {
        self.zone().records.remove(&key(name));
    }

    /// Removes all records of `record_type` at `name` (`RecordType::ANY` removes them all).
    pub fn remove(&self, name: &str, record_type: RecordType) {
        let mut zone = self.zone();
        let k = key(name);
        if let Some(records) = zone.records.get_mut(&k) {
            records.retain(|r| record_type != RecordType::ANY && r.record_type() != record_type);
            if records.is_empty() {
                zone.records.remove(&k);
            }
        }
    }

    /// While `on`, every query for `name` (any type) is answered SERVFAIL, to test how the
    /// code under test treats a temporary DNS failure (e.g. SPF `temperror`).
    pub fn set_servfail(&self, name: &str, on: bool) {
        toggle(&mut self.zone().servfail, key(name), on);
    }

    /// The TTL of every later answer. Real zones have minutes to hours, and a resolver then
    /// answers repeated lookups from its cache; a test that changes records keeps 0.
    pub fn set_ttl(&self, seconds: u32) {
        self.zone().ttl = seconds;
    }

    /// Makes `apex` a zone: negative answers (NXDOMAIN, or no record of the asked type) for
    /// names at or below it carry its SOA in the authority section, as real authoritative
    /// servers send, so resolvers can cache the negative answer (RFC 2308) for the zone's TTL
    /// instead of asking again for every message.
    pub fn add_soa(&self, apex: &str) {
        self.zone().soa.push(key(apex));
    }

    /// While `on`, queries for `name` are never answered (UDP and TCP), to test timeouts.
    pub fn set_drop(&self, name: &str, on: bool) {
        toggle(&mut self.zone().drop, key(name), on);
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        // Aborting the TCP accept task drops its JoinSet, which aborts every open connection.
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn toggle(set: &mut HashSet<String>, k: String, on: bool) {
    if on {
        set.insert(k);
    } else {
        set.remove(&k);
    }
}

fn fqdn(name: &str) -> anyhow::Result<Name> {
    let mut n = Name::from_ascii(name)?;
    n.set_fqdn(true);
    Ok(n)
}

async fn bind_pair() -> anyhow::Result<(UdpSocket, TcpListener)> {
    let mut last_err = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = udp.local_addr()?.port();
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.map_or_else(|| anyhow::anyhow!("no attempt made"), anyhow::Error::from))
        .context("cannot bind UDP and TCP on the same 127.0.0.1 port")
}

async fn serve_udp(sock: UdpSocket, zone: Arc<Mutex<Zone>>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (len, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            // E.g. ICMP port unreachable from an earlier reply surfacing on Linux; keep serving.
            Err(e) => {
                tracing::debug!(error = %e, "test DNS: UDP recv error");
                continue;
            }
        };
        if let Some(reply) = answer(&buf[..len], &zone, true) {
            let _ = sock.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<Mutex<Zone>>) {
    // Owned by this task: when the task is aborted, the set is dropped and aborts every
    // connection task with it.
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, _)) => {
                conns.spawn(serve_tcp_conn(stream, zone.clone()));
            }
            Err(e) => tracing::debug!(error = %e, "test DNS: TCP accept error"),
        }
    }
}

async fn serve_tcp_conn(mut stream: TcpStream, zone: Arc<Mutex<Zone>>) {
    let _ = stream.set_nodelay(true);
    loop {
        let Ok(len) = stream.read_u16().await else { return };
        let mut msg = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut msg).await.is_err() {
            return;
        }
        let Some(reply) = answer(&msg, &zone, false) else { continue };
        let Ok(reply_len) = u16::try_from(reply.len()) else { return };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

/// Builds the wire reply to `query`, or `None` when no reply must be sent (undecodable
/// garbage, a response instead of a query, or a name under [`DnsServer::set_drop`]).
fn answer(query: &[u8], zone: &Mutex<Zone>, udp: bool) -> Option<Vec<u8>> {
    let request = match Message::from_vec(query) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "test DNS: undecodable query");
            // With at least a header, tell the client it sent garbage rather than time out.
            let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
            return (query.len() >= 12)
                .then(|| Message::error_msg(id, OpCode::Query, ResponseCode::FormErr).to_vec().ok())
                .flatten();
        }
    };
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        // RFC 6891 §6.1.1: a responder that sees an OPT record must include one.
        let mut edns = Edns::new();
        edns.set_max_payload(OUR_EDNS_PAYLOAD);
        response.set_edns(edns);
    }
    let rcode = if request.metadata.op_code != OpCode::Query {
        ResponseCode::NotImp
    } else if request.queries.len() != 1 {
        ResponseCode::FormErr
    } else {
        let q = &request.queries[0];
        let k = key(&q.name().to_ascii());
        let z = zone.lock().unwrap_or_else(PoisonError::into_inner);
        if z.drop.contains(&k) {
            tracing::debug!(name = %k, "test DNS: dropping query");
            return None;
        }
        let rcode = if z.servfail.contains(&k) {
            ResponseCode::ServFail
        } else if !z.name_exists(&k) {
            ResponseCode::NXDomain
        } else {
            let qtype = q.query_type();
            for data in z.records.get(&k).into_iter().flatten() {
                if qtype == RecordType::ANY || data.record_type() == qtype {
                    // Echo the query's spelling of the name, as real servers do.
                    response.add_answer(Record::from_rdata(q.name().clone(), z.ttl, data.clone()));
                }
            }
            ResponseCode::NoError
        };
        let negative = rcode == ResponseCode::NXDomain
            || (rcode == ResponseCode::NoError && response.answers.is_empty());
        if negative && let Some(soa) = z.soa_of(&k) {
            response.add_authority(soa);
        }
        rcode
    };
    response.metadata.response_code = rcode;
    let wire = response.to_vec().ok()?;
    let limit = if udp { usize::from(request.max_payload()).max(UDP_LIMIT) } else { usize::from(u16::MAX) };
    if wire.len() <= limit {
        return Some(wire);
    }
    // Too big for this transport: header + question (+ OPT) with TC set, no records. The
    // client must retry over TCP; a partial RRset could be mistaken for the whole set.
    response.answers.clear();
    response.metadata.truncation = true;
    response.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_resolver::TokioResolver;
    use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    use hickory_resolver::net::{DnsError, NetError};
    use std::time::Duration;

    /// Built like postagent's core resolver (core/src/dns.rs): one server at IP:PORT for UDP
    /// and TCP, no cache, one attempt.
    fn resolver(addr: SocketAddr, edns0: bool) -> TokioResolver {
        let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
        for c in &mut ns.connections {
            c.port = addr.port();
        }
        let mut builder = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![ns]),
            TokioRuntimeProvider::default(),
        );
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 1;
        opts.cache_size = 0;
        opts.edns0 = edns0;
        *builder.options_mut() = opts;
        builder.build().expect("build resolver")
    }

    async fn txt(r: &TokioResolver, name: &str) -> Result<Vec<String>, NetError> {
        let lookup = r.txt_lookup(name).await?;
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|rec| match &rec.data {
                RData::TXT(t) => Some(t.txt_data.iter().map(|s| String::from_utf8_lossy(s)).collect()),
                _ => None,
            })
            .collect())
    }

    fn long_value(len: usize) -> String {
        // A DKIM-like record: tag prefix then base64-ish filler.
        let mut v = String::from("v=DKIM1; k=rsa; p=");
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut i = 0;
        while v.len() < len {
            v.push(char::from(alphabet[i % alphabet.len()]));
            i += 1;
        }
        v
    }

    fn raw_query(name: &str, qtype: RecordType, id: u16) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        m.to_vec().expect("encode")
    }

    #[tokio::test]
    async fn resolver_sees_txt_mx_nxdomain_servfail() {
        let dns = DnsServer::start().await.expect("start dns");
        let short = "v=spf1 ip4:127.0.0.1 -all";
        let over_255 = long_value(400);
        let over_512 = long_value(900);
        dns.add_txt("example.org", short);
        dns.add_txt("Sel1._DomainKey.Example.ORG.", &over_255);
        dns.add_txt("sel2._domainkey.example.org", &over_512);
        dns.add_mx("example.org.", 10, "mx1.example.org");
        dns.add_mx("example.org", 20, "mx2.example.org.");
        dns.add_a("mx1.example.org", Ipv4Addr::new(127, 0, 0, 1));

        for edns0 in [true, false] {
            let r = resolver(dns.addr(), edns0);
            assert_eq!(txt(&r, "example.org.").await.expect("txt"), vec![short.to_owned()]);
            // Case-insensitive, with or without trailing dot.
            assert_eq!(txt(&r, "EXAMPLE.org").await.expect("txt"), vec![short.to_owned()]);
            assert_eq!(
                txt(&r, "sel1._domainkey.example.org.").await.expect("txt 400"),
                vec![over_255.clone()]
            );
            // 900 bytes: over 512 → TC over UDP without EDNS → the resolver retries on TCP.
            assert_eq!(
                txt(&r, "sel2._domainkey.example.org.").await.expect("txt 900"),
                vec![over_512.clone()]
            );

            let mx = r.mx_lookup("example.org.").await.expect("mx");
            let mut mx: Vec<(u16, String)> = mx
                .answers()
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::MX(m) => Some((m.preference, m.exchange.to_ascii())),
                    _ => None,
                })
                .collect();
            mx.sort();
            assert_eq!(mx, vec![(10, "mx1.example.org.".to_owned()), (20, "mx2.example.org.".to_owned())]);
            let a = r.ipv4_lookup("mx1.example.org.").await.expect("a");
            assert_eq!(a.answers().len(), 1);

            let nx = txt(&r, "nope.example.org.").await.expect_err("nxdomain");
            assert!(nx.is_nx_domain(), "{nx:?}");
            // Name exists with another type: NOERROR/NODATA, not NXDOMAIN.
            let nodata = txt(&r, "mx1.example.org.").await.expect_err("nodata");
            assert!(nodata.is_no_records_found() && !nodata.is_nx_domain(), "{nodata:?}");
            // Empty non-terminal.
            let ent = txt(&r, "_domainkey.example.org.").await.expect_err("ent");
            assert!(ent.is_no_records_found() && !ent.is_nx_domain(), "{ent:?}");
        }

        let r = resolver(dns.addr(), true);
        dns.set_servfail("example.org", true);
        let e = txt(&r, "example.org.").await.expect_err("servfail");
        assert!(matches!(e, NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))), "{e:?}");
        dns.set_servfail("EXAMPLE.ORG.", false);
        assert_eq!(txt(&r, "example.org.").await.expect("txt after servfail"), vec![short.to_owned()]);

        dns.remove("example.org", RecordType::TXT);
        let e = txt(&r, "example.org.").await.expect_err("removed");
        assert!(e.is_no_records_found() && !e.is_nx_domain(), "{e:?}");
        dns.remove("example.org", RecordType::MX);
        let e = txt(&r, "example.org.").await.expect_err("removed");
        // The name still exists as an empty non-terminal (sel1._domainkey... lies below it).
        assert!(!e.is_nx_domain(), "{e:?}");
    }

    #[tokio::test]
    async fn dropped_name_times_out() {
        let dns = DnsServer::start().await.expect("start dns");
        dns.add_txt("slow.test", "x");
        dns.set_drop("slow.test", true);
        let r = resolver(dns.addr(), true);
        let t0 = std::time::Instant::now();
        let e = txt(&r, "slow.test.").await.expect_err("timeout");
        assert!(t0.elapsed() >= Duration::from_millis(1900), "{:?} {e:?}", t0.elapsed());
        assert!(!e.is_no_records_found(), "{e:?}");
        dns.set_drop("slow.test", false);
        assert_eq!(txt(&r, "slow.test.").await.expect("txt"), vec!["x".to_owned()]);
    }

    #[tokio::test]
    async fn udp_truncates_and_tcp_carries_several_queries() {
        let dns = DnsServer::start().await.expect("start dns");
        dns.add_txt("big.test", &long_value(900));
        dns.add_txt("small.test", "hello");

        // Raw UDP without EDNS: 900 bytes do not fit in 512 → TC, no answers, question echoed.
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        sock.send_to(&raw_query("big.test.", RecordType::TXT, 4242), dns.addr()).await.expect("send");
        let mut buf = [0u8; 4096];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("udp reply in time")
            .expect("recv");
        assert!(n <= 512);
        let m = Message::from_vec(&buf[..n]).expect("decode");
        assert_eq!(m.metadata.id, 4242);
        assert!(m.metadata.truncation && m.metadata.authoritative);
        assert!(m.answers.is_empty());
        assert_eq!(m.queries.len(), 1);

        // TCP: two queries on one connection, 2-byte framing.
        let mut tcp = TcpStream::connect(dns.addr()).await.expect("connect");
        for (id, name) in [(1u16, "big.test."), (2, "small.test."), (3, "missing.test.")] {
            let q = raw_query(name, RecordType::TXT, id);
            tcp.write_u16(u16::try_from(q.len()).expect("len")).await.expect("write");
            tcp.write_all(&q).await.expect("write");
            let len = tcp.read_u16().await.expect("read len");
            let mut reply = vec![0u8; usize::from(len)];
            tcp.read_exact(&mut reply).await.expect("read");
            let m = Message::from_vec(&reply).expect("decode");
            assert_eq!(m.metadata.id, id);
            assert!(!m.metadata.truncation);
            if id == 3 {
                assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
            } else {
                assert_eq!(m.answers.len(), 1);
            }
        }
    }

    #[tokio::test]
    async fn drop_stops_the_server() {
        let dns = DnsServer::start().await.expect("start dns");
        let addr = dns.addr();
        let conn = TcpStream::connect(addr).await.expect("connect while running");
        drop(dns);
        tokio::task::yield_now().await;
        // The listener and the open connection are gone.
        let mut conn = conn;
        let mut b = [0u8; 1];
        let read =
            tokio::time::timeout(Duration::from_secs(5), conn.read(&mut b)).await.expect("closed in time");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert!(TcpStream::connect(addr).await.is_err());
    }

    async fn dig(port: u16, args: &[&str]) -> String {
        let out = tokio::process::Command::new("dig")
            .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=1"])
            .args(args)
            .output()
            .await
            .expect("run dig");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[tokio::test]
    async fn dig_agrees() {
        if !crate::require("dig", "install the dnsutils package") {
            return;
        }
        let dns = DnsServer::start().await.expect("start dns");
        let long = long_value(700);
        dns.add_txt("d.test", &long);
        dns.add_mx("d.test", 5, "mx.d.test");
        let port = dns.addr().port();
        // dig follows TC to TCP by default; the reassembled strings equal the value.
        let out = dig(port, &["+short", "d.test", "TXT"]).await;
        let joined: String = out.split('"').skip(1).step_by(2).collect();
        assert_eq!(joined, long, "{out}");
        let out = dig(port, &["+noedns", "+ignore", "d.test", "TXT"]).await;
        assert!(out.contains(" tc") || out.contains("tc "), "{out}");
        let out = dig(port, &["+short", "d.test", "MX"]).await;
        assert_eq!(out.trim(), "5 mx.d.test.");
        let out = dig(port, &["nx.d.test", "A"]).await;
        assert!(out.contains("status: NXDOMAIN") && out.contains(" aa"), "{out}");
    }

    #[tokio::test]
    async fn answers_carry_ttl_zero_unless_set() {
        let dns = DnsServer::start().await.expect("start dns");
        dns.add_txt("t.test", "v=spf1 -all");
        let r = resolver(dns.addr(), true);
        let lookup = r.txt_lookup("t.test").await.expect("lookup");
        assert_eq!(lookup.answers().iter().map(|a| a.ttl).collect::<Vec<_>>(), [0]);
        dns.set_ttl(300);
        let lookup = r.txt_lookup("t.test").await.expect("lookup");
        assert_eq!(lookup.answers().iter().map(|a| a.ttl).collect::<Vec<_>>(), [300]);
    }
}
