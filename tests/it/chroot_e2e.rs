//! A Postfix whose smtpd, cleanup and lmtp run chrooted in the queue directory, as Debian
//! ships them, wired the way postagent ships: the milter and LMTP are unix sockets under that
//! directory with group postfix and mode 0660, the originating listener is a unix service in
//! its `public/` directory, `postfix setup` names them relative to it, and mail goes in
//! through the milter and LMTP, and out from an agent through the originating listener (with
//! its submission token) back to another agent, all from inside the chroot.

use crate::common;

use common::bin::{Server, run, text};
use common::mail::{AGENT_DOMAIN, HOSTNAME, deliver_through, inbox_at, seed};
use postagent_lab::mail_lab::{SENDER_DOMAIN, SampleZone};
use postagent_lab::postfix::{PostfixBuilder, require_postfix};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

fn gid_of(group: &str) -> u32 {
    let groups = std::fs::read_to_string("/etc/group").expect("/etc/group");
    groups
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == group).then(|| f[2].parse().expect("gid"))
        })
        .unwrap_or_else(|| panic!("no group {group}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chrooted_postfix_reaches_the_sockets_under_its_queue_directory() {
    if !require_postfix() {
        return;
    }
    let zone = SampleZone::start().await.expect("zone");
    let pf = tokio::task::spawn_blocking(|| {
        PostfixBuilder::new().main_cf("myhostname", HOSTNAME).chrooted().start()
    })
    .await
    .expect("join")
    .expect("postfix");
    let smtpd = pf.postconf(&["-M", &format!("{}/inet", pf.smtp_addr())]).expect("-M");
    assert_eq!(smtpd.split_whitespace().nth(4), Some("y"), "smtpd is chrooted: {smtpd}");
    let spool = pf.spool_dir();
    let data = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", data.path().join("postagent.db").display());
    let key = seed(&db, &["bot@agents.test", "peer@agents.test"]).await;
    let milter = format!("unix:{}/postagent/milter.sock", spool.display());
    let lmtp = format!("unix:{}/postagent/lmtp.sock", spool.display());
    let maps = format!("unix:{}/postagent/socketmap.sock", spool.display());
    let relay = format!("unix:{}/public/postagent-submit", spool.display());
    let dns = zone.dns().addr().to_string();
    let flags = [
        "--database-url",
        db.as_str(),
        "--shared-domain",
        AGENT_DOMAIN,
        "--milter-listen",
        milter.as_str(),
        "--lmtp-listen",
        lmtp.as_str(),
        "--socketmap-listen",
        maps.as_str(),
        // This instance's queue directory is not /var/spool/postfix: name the LMTP socket
        // as the chrooted lmtp client sees it (setup says so when it differs).
        "--lmtp-transport",
        "postagent:unix:postagent/lmtp.sock",
        "--submission-relay",
        relay.as_str(),
        "--dns-server",
        dns.as_str(),
        "--mail-hostname",
        HOSTNAME,
    ];
    let mut serve = vec!["serve", "--api-listen", "127.0.0.1:0"];
    serve.extend(flags);
    // unix_socket_group has no flag: the environment sets it, as an operator's unit might.
    let server = {
        std::fs::write(
            data.path().join("postagent.toml"),
            "unix_socket_group = \"postfix\"\nunix_socket_mode = \"0660\"\n",
        )
        .expect("config");
        let cfg = data.path().join("postagent.toml");
        let mut args = vec!["--config", cfg.to_str().expect("utf-8")];
        args.extend(&serve);
        Server::start(data.path(), &args)
    };
    for sock in [
        spool.join("postagent/milter.sock"),
        spool.join("postagent/lmtp.sock"),
        spool.join("postagent/socketmap.sock"),
    ] {
        let meta = std::fs::metadata(&sock).expect("socket exists");
        assert!(meta.file_type().is_socket(), "{}", sock.display());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660, "{}", sock.display());
        assert_eq!(meta.gid(), gid_of("postfix"), "{} belongs to group postfix", sock.display());
    }

    let dir = pf.config_dir().display().to_string();
    let cfg = data.path().join("postagent.toml");
    let mut args = vec![
        "--config",
        cfg.to_str().expect("utf-8"),
        "postfix",
        "setup",
        "--apply",
        "--config-dir",
        dir.as_str(),
    ];
    args.extend(flags);
    let out = run(data.path(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(pf.postconf(&["-h", "smtpd_milters"]).expect("milters").trim(), "unix:postagent/milter.sock");
    // Postfix asks postagent's socketmap, named as the chrooted daemons see it.
    let out_text = text(&out.stdout);
    assert!(!out_text.contains("# note:"), "nothing to adjust: {out_text}");
    for (key, map) in [
        ("relay_domains", "domains"),
        ("transport_maps", "transport"),
        ("relay_recipient_maps", "recipients-or-foreign"),
    ] {
        assert_eq!(
            pf.postconf(&["-h", key]).expect(key).trim(),
            format!("socketmap:unix:postagent/socketmap.sock:{map}")
        );
    }
    let service = pf.postconf(&["-M", "postagent-submit/unix"]).expect("-M");
    assert!(
        service.starts_with("postagent-submit unix n")
            && service.contains("milter_macro_daemon_name=ORIGINATING"),
        "{service}"
    );
    pf.reload().expect("reload");
    let public = std::fs::metadata(spool.join("public")).expect("public/");
    assert_eq!(public.permissions().mode() & 0o007, 0, "public/ is closed to other users");
    pf.wait_service_socket("public/postagent-submit", common::mail::WAIT)
        .await
        .expect("the originating socket");

    deliver_through(&pf, "bot+chroot@agents.test", "through the chroot").await;
    let inbox = inbox_at(&server.addr, &key, "bot@agents.test").await;
    assert_eq!(inbox["items"][0]["subject"], "through the chroot");
    assert_eq!(inbox["items"][0]["delivered_to"], "bot+chroot@agents.test", "plus-addressed: {inbox}");
    assert_eq!(inbox["items"][0]["verified_domain"], SENDER_DOMAIN, "the chrooted smtpd reached the milter");

    // Out through the unix originating listener and back in: our agent's mail, proven by the
    // submission token, threaded in the same account.
    let http = reqwest::Client::new();
    let sent: serde_json::Value = http
        .post(format!("http://{}/v1/agents/bot@agents.test/messages", server.addr))
        .bearer_auth(&key)
        .json(&serde_json::json!({"to": ["peer@agents.test"], "subject": "via the unix listener", "text": "hi"}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(sent["status"], "accepted", "{sent}");
    pf.wait_log_line(&["to=<peer@agents.test>", "status=sent"], common::mail::WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}\npostagent:\n{}", pf.read_log(), server.log()));
    let inbox = inbox_at(&server.addr, &key, "peer@agents.test").await;
    let got = &inbox["items"][0];
    assert_eq!(got["subject"], "via the unix listener", "{inbox}");
    let id = got["id"].as_str().expect("id");
    let full: serde_json::Value = http
        .get(format!("http://{}/v1/agents/peer@agents.test/messages/{id}", server.addr))
        .bearer_auth(&key)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let raw = String::from_utf8(common::mail::raw_of(&full)).expect("utf-8");
    assert!(raw.contains("X-E2A-Auth-Entity-Type: agent\r\n"), "{raw}");
    assert!(!raw.contains("X-E2A-Submission"), "{raw}");
    assert!(full["conversation_id"].as_str().is_some_and(|c| c.starts_with("conv_")), "{full}");
}
