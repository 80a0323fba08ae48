//! The configuration loader: layering, errors naming their source, every value read back.

use super::*;

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn flags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn defaults_run_on_a_laptop() {
    let cfg = Config::default();
    cfg.validate().expect("defaults are valid");
    assert_eq!(cfg.database_url(), "sqlite://./postagent.db");
    assert_eq!(cfg.hmac_secret_path(), PathBuf::from("./hmac.secret"));
    assert_eq!(cfg.api_listen, ListenAddr::Tcp("127.0.0.1:8080".into()));
}

#[test]
fn file_then_env_then_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("postagent.toml");
    std::fs::write(&path, "api_listen = \"127.0.0.1:9000\"\nshared_domain = \"agents.test\"\n")
        .expect("write");
    let env = vec![
        ("POSTAGENT_API_LISTEN".to_owned(), "127.0.0.1:9001".to_owned()),
        ("POSTAGENT_DNS_SERVER".to_owned(), "127.0.0.1:5353".to_owned()),
        ("HOME".to_owned(), "/nowhere".to_owned()),
    ];
    let (cfg, used) = Config::load(Some(&path), env, &flags(&[("dns_server", "127.0.0.2")])).expect("valid");
    assert_eq!(used.as_deref(), Some(path.as_path()));
    assert_eq!(cfg.api_listen.to_string(), "127.0.0.1:9001");
    assert_eq!(cfg.shared_domain, "agents.test");
    assert_eq!(cfg.dns_server, Some("127.0.0.2:53".parse().expect("addr")));
}

#[test]
fn errors_name_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "api_lisen = \"x\"\n").expect("write");
    let err = Config::load(Some(&path), no_env(), &[]).expect_err("unknown key");
    assert!(err.message.contains("api_lisen"), "{err}");

    let env = vec![("POSTAGENT_NOPE".to_owned(), "1".to_owned())];
    let err = Config::load(None, env, &[]).expect_err("unknown env");
    assert_eq!(err.key, "POSTAGENT_NOPE");

    let err = Config::load(None, no_env(), &flags(&[("lmtp_listen", "nowhere")])).expect_err("bad");
    assert_eq!(err.key, "--lmtp-listen");
    let err = Config::load(None, no_env(), &flags(&[("database_url", "mysql://x")])).expect_err("bad");
    assert_eq!(err.key, "--database-url");
    let env = vec![("POSTAGENT_DNS_TIMEOUT".to_owned(), "soon".to_owned())];
    let err = Config::load(None, env, &[]).expect_err("bad");
    assert_eq!(err.key, "POSTAGENT_DNS_TIMEOUT");
    std::fs::write(&path, "log_format = \"xml\"\n").expect("write");
    let err = Config::load(Some(&path), no_env(), &[]).expect_err("bad value in file");
    assert_eq!(err.key, format!("log_format in {}", path.display()));
    let err = Config::load(None, no_env(), &flags(&[("nope", "1")])).expect_err("bad flag");
    assert_eq!(err.key, "--nope");
}

#[test]
fn domain_names_are_normalised() {
    let set = flags(&[
        ("shared_domain", "Agents.Example.ORG."),
        ("mail_hostname", "MX.example.org."),
        ("public_url", "https://api.example.org/"),
    ]);
    let (cfg, _) = Config::load(None, no_env(), &set).expect("valid");
    assert_eq!(cfg.shared_domain, "agents.example.org");
    assert_eq!(cfg.mail_hostname(), "mx.example.org");
    assert_eq!(cfg.public_url(), "https://api.example.org");
    let err = Config::load(None, no_env(), &flags(&[("mail_hostname", "mx")])).expect_err("short name");
    assert_eq!(err.key, "--mail-hostname");
}

#[test]
fn listen_addresses_and_durations() {
    assert_eq!(ListenAddr::parse("unix:/run/x.sock"), Ok(ListenAddr::Unix("/run/x.sock".into())));
    assert!(ListenAddr::parse("[::1]:25").is_ok());
    assert!(ListenAddr::parse(":25").is_err());
    assert!(ListenAddr::parse("host:99999").is_err());
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("x"), None);
}

#[test]
fn debug_redacts_database_password() {
    let cfg = Config { database_url: "postgres://pa:hunter2@db/postagent".into(), ..Config::default() };
    let shown = format!("{cfg:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("postgres://pa:<redacted>@db/postagent"));
    let q = redact_url("postgres://pa@db/x?sslmode=require&password=hunter2&host=/run");
    assert_eq!(q, "postgres://pa@db/x?sslmode=require&password=<redacted>&host=/run");
}

#[test]
fn every_value_reads_back_from_its_text_in_every_layer() {
    // The defaults, printed and read back, are the defaults.
    let table = Config::default().table();
    let back: Config = toml::Value::Table(table.clone()).try_into().expect("defaults read back");
    assert_eq!(back, Config::default());
    // Each key set through the environment and through a flag, from its text form.
    for (key, value) in &table {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let env = vec![(format!("POSTAGENT_{}", key.to_ascii_uppercase()), text.clone())];
        let (from_env, _) = Config::load(None, env, &[]).unwrap_or_else(|e| panic!("{key} via env: {e}"));
        assert_eq!(from_env, Config::default(), "{key} via env");
        let from_flag = Config::from_flags(&flags(&[(key, &text)])).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(from_flag, Config::default(), "{key} via flag");
    }
    let err =
        Config::load(None, no_env(), &flags(&[("webhook_concurrency", "many")])).expect_err("not a number");
    assert_eq!(err.key, "--webhook-concurrency");
    let err = Config::load(None, no_env(), &flags(&[("milter_peers", "nowhere")])).expect_err("bad peers");
    assert_eq!(err.key, "--milter-peers");
    let set =
        flags(&[("milter_listen", ""), ("webhook_retry_schedule", "1s, 2m"), ("unix_socket_mode", "0600")]);
    let cfg = Config::from_flags(&set).expect("valid");
    assert_eq!(cfg.milter_listen, None);
    assert_eq!(cfg.webhook_retry_schedule, vec![Duration::from_secs(1), Duration::from_secs(120)]);
    assert_eq!(cfg.unix_socket_mode, SocketMode(0o600));
}

#[test]
fn the_sample_file_is_valid_and_documents_every_key() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../postfix-conf/postagent.toml");
    let cfg = Config::from_file(&sample).expect("the sample parses");
    cfg.validate().expect("the sample is valid");
    let text = std::fs::read_to_string(&sample).expect("read");
    let keys = toml::Table::try_from(Config::default()).expect("serialize");
    for key in keys.keys() {
        assert!(text.contains(&format!("\n{key} = ")), "postfix-conf/postagent.toml lacks {key}");
    }
}

#[test]
fn the_postfix_map_keys_are_checked() {
    let mut cfg = Config::default();
    assert_eq!(cfg.lmtp_transport(), "postagent:inet:127.0.0.1:2424");
    cfg.lmtp_listen = Some(ListenAddr::Unix("/var/spool/postfix/postagent/lmtp.sock".into()));
    assert_eq!(cfg.lmtp_transport(), "postagent:unix:postagent/lmtp.sock", "as chrooted daemons see it");
    for ok in ["+", "-", "+-", ""] {
        cfg.recipient_delimiter = ok.into();
        cfg.validate().unwrap_or_else(|e| panic!("{ok:?}: {e}"));
    }
    for bad in ["a", "@", ".", " ", "+++++++++"] {
        cfg.recipient_delimiter = bad.into();
        let e = cfg.validate().expect_err(bad).to_string();
        assert!(e.contains("recipient_delimiter"), "{e}");
    }
    cfg.recipient_delimiter = "+".into();
    cfg.lmtp_transport = "lmtp".into();
    assert!(cfg.validate().expect_err("no nexthop").to_string().contains("lmtp_transport"));
    cfg.lmtp_transport = "lmtp:unix:postagent/lmtp.sock".into();
    assert_eq!(cfg.lmtp_transport(), "lmtp:unix:postagent/lmtp.sock");
    cfg.validate().expect("valid");
}
