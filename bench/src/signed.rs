//! Real signed mail for bench/inbound: a loopback DNS zone on 127.0.0.1:53 and messages signed
//! by an independent signer (Python's dkimpy, not the mail-auth library postagent verifies
//! with), RSA-2048 and Ed25519.
//!
//! Port 53 because the peer stack cannot be pointed elsewhere: OpenDMARC resolves through
//! libresolv, which reads only addresses from resolv.conf (the peer runs in a mount namespace
//! whose resolv.conf names 127.0.0.1; the host's is never touched), and OpenDKIM's libunbound
//! forwards to `Nameservers 127.0.0.1`. The sender domain is under `example.`, not `test.`:
//! libunbound answers `test.` names itself from a built-in local zone, without asking any
//! server (../shared/peer-stack.md, pitfall 1).

use anyhow::Context as _;
use postagent_lab::dns::DnsServer;
use postagent_lab::mail_lab::SENDER_DOMAIN;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The signed mail's sender domain (SPF, DKIM and DMARC `p=reject` in [`BenchZone`]).
pub const SIGNED_DOMAIN: &str = "sender.example";
/// The envelope and header sender of the signed mail.
pub const SIGNED_SENDER: &str = "alice@sender.example";

/// The key a message is signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa2048,
    Ed25519,
}

impl KeyType {
    /// The DKIM selector of this key in [`BenchZone`].
    fn selector(self) -> &'static str {
        match self {
            KeyType::Rsa2048 => "rsa",
            KeyType::Ed25519 => "ed",
        }
    }

    /// As the report names it.
    pub fn label(self) -> &'static str {
        match self {
            KeyType::Rsa2048 => "RSA-2048",
            KeyType::Ed25519 => "Ed25519",
        }
    }
}

/// The DNS zone of the bench: [`SIGNED_DOMAIN`] with an RSA and an Ed25519 DKIM key, SPF
/// for loopback and DMARC `p=reject`, and the lab's unsigned sample domain (SPF and DMARC
/// only, for the latency probes). Negative answers carry the zone's SOA.
pub struct BenchZone {
    dns: DnsServer,
    dir: tempfile::TempDir,
    python: PathBuf,
    ed25519_seed: String,
}

/// Generates an Ed25519 key with PyNaCl: prints the base64 seed (dkimpy's private key form)
/// and the base64 public key (the record's `p=`).
const ED25519_KEYGEN: &str = "import base64, nacl.signing\n\
    k = nacl.signing.SigningKey.generate()\n\
    print(base64.b64encode(bytes(k)).decode())\n\
    print(base64.b64encode(bytes(k.verify_key)).decode())\n";

/// Signs a generated message (argv: out, size, RSA key file, Ed25519 seed, `rsa` or `ed`).
const SIGN: &str = include_str!("../inbound/sign.py");

impl BenchZone {
    /// Starts the DNS server on 127.0.0.1:53 with fresh keys. `ttl` is the records' TTL (a
    /// real sender domain's live minutes to hours, and every resolver caches them).
    pub async fn start(ttl: u32) -> anyhow::Result<BenchZone> {
        let venv = postagent_lab::clients::venv("dkimpy").context("the dkimpy venv is missing")?;
        let python = venv.join("bin/python");
        let dir = tempfile::tempdir()?;
        let (_, rsa_public) =
            postagent_lab::dkimpy::rsa_key(dir.path()).context("openssl is needed for the RSA key")?;
        let out = Command::new(&python).arg("-c").arg(ED25519_KEYGEN).output()?;
        anyhow::ensure!(out.status.success(), "Ed25519 keygen: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout)?;
        let mut lines = text.lines();
        let (seed, ed_public) = (lines.next().unwrap_or_default(), lines.next().unwrap_or_default());
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
        let dns = DnsServer::start_on(addr)
            .await
            .context("the peer stack's resolvers only use port 53: is another DNS server running?")?;
        dns.set_ttl(ttl);
        for apex in [SIGNED_DOMAIN, SENDER_DOMAIN] {
            dns.add_soa(apex);
            dns.add_txt(apex, "v=spf1 ip4:127.0.0.0/8 -all");
            dns.add_txt(&format!("_dmarc.{apex}"), "v=DMARC1; p=reject");
        }
        dns.add_txt(&format!("rsa._domainkey.{SIGNED_DOMAIN}"), &format!("v=DKIM1; k=rsa; p={rsa_public}"));
        dns.add_txt(&format!("ed._domainkey.{SIGNED_DOMAIN}"), &format!("v=DKIM1; k=ed25519; p={ed_public}"));
        Ok(BenchZone { dns, dir, python, ed25519_seed: seed.to_owned() })
    }

    pub fn dns(&self) -> &DnsServer {
        &self.dns
    }

    /// A message of about `size` body bytes signed with `key`, as a file for
    /// `smtp-source -F` (made once, then reused).
    pub fn message(&self, size: u32, key: KeyType) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join(format!("signed-{}-{size}.eml", key.selector()));
        if !path.exists() {
            let out = Command::new(&self.python)
                .arg("-c")
                .arg(SIGN)
                .arg(&path)
                .arg(size.to_string())
                .arg(self.dir.path().join("dkim.pem"))
                .arg(&self.ed25519_seed)
                .arg(key.selector())
                .output()?;
            anyhow::ensure!(out.status.success(), "dkimpy: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(path)
    }

    /// Where the zone's files live (keys, messages).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
