//! The operator's documentation keeps up with the code: every configuration key has its entry
//! in postagent.toml(5), every command in postagent(8), and the configuration the Debian
//! package installs is valid.

use crate::common;

use common::bin::{run, text};
use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn every_configuration_key_is_in_the_man_page() {
    let page = read("man/postagent.toml.5");
    let keys = serde_json::to_value(postagent_core::Config::default()).expect("config as JSON");
    for key in keys.as_object().expect("object").keys() {
        assert!(
            page.lines()
                .any(|l| l.trim() == format!(".B {key}") || l.trim().starts_with(&format!(".B {key} "))),
            "man/postagent.toml.5 has no `.B {key}` entry"
        );
    }
}

#[test]
fn every_command_is_in_the_man_page() {
    let page = read("man/postagent.8");
    let dir = tempfile::tempdir().expect("tempdir");
    let help = text(&run(dir.path(), &["--help"]).stdout);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 10, "{help}");
    for c in commands {
        assert!(
            page.contains(&format!(".B {c}")) || page.contains(&format!("\\fB{c}\\fR")),
            "man/postagent.8 does not describe `{c}`"
        );
    }
}

/// The subcommands `postagent ARGS --help` lists.
fn subcommands(dir: &std::path::Path, args: &[&str]) -> Vec<String> {
    let mut all = args.to_vec();
    all.push("--help");
    let help = text(&run(dir, &all).stdout);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_client_command_is_in_the_cli_guide_and_the_man_page() {
    let guide = read("docs/cli.md");
    let page = read("man/postagent.8");
    let dir = tempfile::tempdir().expect("tempdir");
    let client = [
        "whoami",
        "agents",
        "keys",
        "protection",
        "domains",
        "send",
        "reply",
        "forward",
        "messages",
        "attachments",
        "reviews",
        "listen",
        "completions",
    ];
    let top = subcommands(dir.path(), &[]);
    for c in client {
        assert!(top.iter().any(|t| t == c), "`postagent {c}` is a command");
        let subs = subcommands(dir.path(), &[c]);
        let names: Vec<String> = if subs.is_empty() {
            vec![c.to_owned()]
        } else {
            subs.iter().map(|s| format!("{c} {s}")).collect()
        };
        for name in names {
            assert!(
                guide.contains(&format!("postagent {name}")),
                "docs/cli.md does not describe `postagent {name}`"
            );
            assert!(page.contains(&format!(".B {name}")), "man/postagent.8 does not describe `{name}`");
        }
    }
    for c in ["get", "set", "unset", "list", "path"] {
        assert!(guide.contains(&format!("postagent config {c}")), "docs/cli.md: config {c}");
    }
    // Every exit code the CLI returns has its row.
    for code in 0..=7 {
        assert!(guide.contains(&format!("\n| {code} | ")), "docs/cli.md has no row for exit code {code}");
    }
}

#[test]
fn the_debian_configuration_is_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/debian/postagent.toml");
    let out = run(dir.path(), &["config", "--config", file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("/var/spool/postfix/postagent/milter.sock") && shown.contains("syslog"),
        "{shown}"
    );
}
