//! `postagent postfix setup` and `remove` against a private Postfix that starts knowing
//! nothing of postagent: the printed plan changes nothing, `--apply` makes Postfix deliver
//! agent mail through postagent's milter and LMTP, a second apply changes nothing more, and
//! remove puts every setting back.

use crate::common;

use common::bin::{Server, run, text};
use common::mail::{AGENT_DOMAIN, HOSTNAME, deliver_through, inbox_at, seed};
use postagent_lab::free_port;
use postagent_lab::mail_lab::{SENDER_DOMAIN, SampleZone};
use postagent_lab::postfix::{PostfixBuilder, require_postfix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_plugs_postagent_in_and_remove_takes_it_out() {
    if !require_postfix() {
        return;
    }
    let zone = SampleZone::start().await.expect("zone");
    let pf = tokio::task::spawn_blocking(|| PostfixBuilder::new().main_cf("myhostname", HOSTNAME).start())
        .await
        .expect("join")
        .expect("postfix");
    let data = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", data.path().join("postagent.db").display());
    let key = seed(&db, &["bot@agents.test"]).await;
    let (milter, lmtp, originating, maps) =
        (free_port().expect("p"), free_port().expect("p"), free_port().expect("p"), free_port().expect("p"));
    let (m, l, o, s) = (
        format!("127.0.0.1:{milter}"),
        format!("127.0.0.1:{lmtp}"),
        format!("127.0.0.1:{originating}"),
        format!("127.0.0.1:{maps}"),
    );
    let dir = pf.config_dir().display().to_string();
    let flags = [
        "--database-url",
        db.as_str(),
        "--shared-domain",
        AGENT_DOMAIN,
        "--milter-listen",
        m.as_str(),
        "--lmtp-listen",
        l.as_str(),
        "--socketmap-listen",
        s.as_str(),
        "--submission-relay",
        o.as_str(),
    ];
    let setup = |apply: bool| {
        let mut args = vec!["postfix", "setup", "--config-dir", dir.as_str()];
        if apply {
            args.push("--apply");
        }
        args.extend(flags);
        let out = run(data.path(), &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    // As on a stock Debian main.cf: relay_domains left at its default, an expression
    // (`${{$compatibility_level} <level {2} ? …}`) that setup must not take apart as a list.
    pf.postconf(&["-X", "relay_domains"]).expect("-X relay_domains");
    let before = pf.postconf(&["-n"]).expect("postconf -n");
    let dns = zone.dns().addr().to_string();
    zone.dns().add_mx(AGENT_DOMAIN, 10, HOSTNAME);
    let doctor = |extra: &[&str]| {
        let mut args = vec![
            "doctor",
            "--postfix-config-dir",
            dir.as_str(),
            "--dns-server",
            dns.as_str(),
            "--mail-hostname",
            HOSTNAME,
        ];
        args.extend(flags);
        args.extend(extra);
        let out = run(data.path(), &args);
        (out.status.success(), text(&out.stdout))
    };
    let (ok, report) = doctor(&[]);
    assert!(!ok, "doctor fails before setup:\n{report}");
    assert!(
        report.contains("FAIL  smtpd_milters") && report.contains("fix: postagent postfix setup --apply"),
        "{report}"
    );
    assert!(report.contains("FAIL  agents.test has no transport_maps entry"), "{report}");
    let plan = setup(false);
    assert!(plan.contains(&format!("postconf -c {dir} -e 'smtpd_milters = inet:{m}'")), "{plan}");
    assert!(plan.contains(&format!("transport_maps = socketmap:inet:{s}:transport")), "{plan}");
    assert!(
        plan.contains(&format!("relay_recipient_maps = socketmap:inet:{s}:recipients-or-foreign")),
        "{plan}"
    );
    assert!(plan.contains("ORIGINATING"), "{plan}");
    assert_eq!(pf.postconf(&["-n"]).expect("postconf -n"), before, "printing changes nothing");

    setup(true);
    assert_eq!(pf.postconf(&["-h", "smtpd_milters"]).expect("milters").trim(), format!("inet:{m}"));
    assert_eq!(
        pf.postconf(&["-h", "non_smtpd_milters"]).expect("milters").trim(),
        format!("inet:{m}"),
        "sendmail-submitted mail passes the milter too"
    );
    assert_eq!(pf.postconf(&["-h", "milter_default_action"]).expect("action").trim(), "tempfail");
    assert_eq!(
        pf.postconf(&["-h", "relay_domains"]).expect("relay_domains").trim(),
        format!("socketmap:inet:{s}:domains")
    );
    let service = pf.postconf(&["-M", &format!("{o}/inet")]).expect("service");
    assert!(service.contains("milter_macro_daemon_name=ORIGINATING"), "{service}");
    assert_eq!(service.split_whitespace().nth(4), Some("n"), "chrooted like the instance's smtpd: {service}");
    let applied = pf.postconf(&["-n"]).expect("postconf -n");
    let again = setup(true);
    assert_eq!(pf.postconf(&["-n"]).expect("postconf -n"), applied, "a second apply changes nothing");
    assert!(again.contains("# smtpd_milters is already"), "{again}");

    // The instance now delivers agent mail through postagent.
    pf.reload().expect("reload");
    let mut serve = vec![
        "serve",
        "--api-listen",
        "127.0.0.1:0",
        "--dns-server",
        dns.as_str(),
        "--mail-hostname",
        HOSTNAME,
    ];
    serve.extend(flags);
    let server = Server::start(data.path(), &serve);
    let smtp_addr = pf.smtp_addr().to_string();
    let (ok, report) =
        doctor(&["--api-listen", server.addr.as_str(), "--send-test", "--smtp", smtp_addr.as_str()]);
    assert!(ok, "doctor is green after setup:\n{report}");
    for line in [
        "ok    smtpd_milters includes",
        "ok    agents.test is routed to postagent:inet:",
        "ok    bot@agents.test is in relay_recipient_maps",
        "ok    agents.test MX points at",
        "ok    non_smtpd_milters includes",
        "ok    originating listener",
        "ok    test message through Postfix stored for bot@agents.test",
        "WARN  milter listens on loopback TCP",
        "WARN  LMTP listens on loopback TCP",
        "WARN  socketmap listens on loopback TCP",
        "0 failed, 3 warnings",
    ] {
        assert!(report.contains(line), "{line:?} missing:\n{report}");
    }
    deliver_through(&pf, "bot@agents.test", "via setup").await;
    let inbox = inbox_at(&server.addr, &key, "bot@agents.test").await;
    assert_eq!(inbox["items"][0]["verified_domain"], SENDER_DOMAIN, "through the milter: {inbox}");
    drop(server);

    // Since setup, the operator added a milter and Debian's submission service (which also
    // says ORIGINATING): remove must take out only what setup put in.
    pf.postconf(&["-e", &format!("smtpd_milters = inet:{m}, inet:127.0.0.1:8891")]).expect("-e");
    pf.postconf(&["-M", "submission/inet=submission inet n - n - - smtpd"]).expect("-M");
    pf.postconf(&["-P", "submission/inet/milter_macro_daemon_name=ORIGINATING"]).expect("-P");
    let out = run(data.path(), &["postfix", "remove", "--apply", "--config-dir", dir.as_str()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(pf.postconf(&["-h", "smtpd_milters"]).expect("milters").trim(), "inet:127.0.0.1:8891");
    assert!(!pf.postconf(&["-M", "submission/inet"]).expect("-M").is_empty(), "the operator's service stays");
    pf.postconf(&["-X", "smtpd_milters"]).expect("-X");
    pf.postconf(&["-MX", "submission/inet"]).expect("-MX");
    assert_eq!(pf.postconf(&["-n"]).expect("postconf -n"), before, "remove restores every other setting");
    assert!(pf.postconf(&["-M", &format!("{o}/inet")]).expect("-M").is_empty(), "the listener is gone");
    let out = run(data.path(), &["postfix", "remove", "--config-dir", dir.as_str()]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("nothing to remove"),
        "{}",
        text(&out.stderr)
    );
}

/// An instance set up by an earlier version (the agent domains in a `texthash:` table that
/// Postfix read only at start): setup replaces the table with the socketmap, deletes the file,
/// and remove still restores the instance exactly as it was before the first setup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_migrates_the_texthash_table_of_earlier_versions() {
    if !require_postfix() {
        return;
    }
    let pf = tokio::task::spawn_blocking(|| PostfixBuilder::new().main_cf("myhostname", HOSTNAME).start())
        .await
        .expect("join")
        .expect("postfix");
    let data = tempfile::tempdir().expect("tempdir");
    let dir = pf.config_dir().display().to_string();
    let before = pf.postconf(&["-n"]).expect("postconf -n");
    let s = format!("127.0.0.1:{}", free_port().expect("p"));
    let o = format!("127.0.0.1:{}", free_port().expect("p"));
    let db = format!("sqlite://{}", data.path().join("never-created.db").display());
    let setup = || {
        let args = [
            "postfix",
            "setup",
            "--apply",
            "--config-dir",
            &dir,
            "--socketmap-listen",
            &s,
            "--submission-relay",
            &o,
            "--database-url",
            &db,
        ];
        let out = run(data.path(), &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    setup();
    // What the earlier version left: the table, main.cf naming it, and its saved "before".
    let table = format!("texthash:{dir}/postagent_domains");
    std::fs::write(format!("{dir}/postagent_domains"), "agents.test\tlmtp:inet:127.0.0.1:2424\n")
        .expect("table");
    pf.postconf(&["-e", &format!("relay_domains = {table}")]).expect("-e");
    pf.postconf(&["-e", &format!("transport_maps = {table}")]).expect("-e");
    pf.postconf(&["-X", "relay_recipient_maps"]).expect("-X");
    let previous = format!("{dir}/postagent.previous");
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&previous).expect("previous")).expect("json");
    saved["items"]["relay_domains"] = table.clone().into();
    saved["items"]["transport_maps"] = table.clone().into();
    saved["main"].as_object_mut().expect("main").remove("relay_recipient_maps");
    saved["items"].as_object_mut().expect("items").remove("relay_recipient_maps");
    std::fs::write(&previous, saved.to_string()).expect("previous");

    let out = setup();
    assert!(out.contains("Removed") && out.contains("postagent_domains"), "{out}");
    assert!(!std::path::Path::new(&format!("{dir}/postagent_domains")).exists(), "the table file is gone");
    assert_eq!(
        pf.postconf(&["-h", "relay_domains"]).expect("-h").trim(),
        format!("socketmap:inet:{s}:domains")
    );
    assert_eq!(
        pf.postconf(&["-h", "transport_maps"]).expect("-h").trim(),
        format!("socketmap:inet:{s}:transport")
    );
    assert!(pf.postconf(&["-h", "relay_recipient_maps"]).expect("-h").contains(":recipients-or-foreign"));
    assert!(!data.path().join("never-created.db").exists(), "setup never creates a database");

    let out = run(data.path(), &["postfix", "remove", "--apply", "--config-dir", dir.as_str()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(pf.postconf(&["-n"]).expect("postconf -n"), before, "remove restores the instance");
}
