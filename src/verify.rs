//! `postagent verify [--secret-file F] [--max-age S] [--recipient ADDR] < message.eml`: checks
//! the signed `X-E2A-Auth-*` set of a delivered message, with every binding the LMTP server
//! checks: the content (header and body hashes), the Sender against the From, the queue id
//! of the message's own trace header and, with `--recipient`, the recipient. Exit 0 when it
//! verifies (the claims are printed), 1 with the reason and the binding that failed, 2 when
//! it cannot run.

use crate::GlobalFlags;
use postagent_core::mail::inbound;
use postagent_core::time::Timestamp;
use postagent_core::{Config, secret};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

pub fn run(
    global: &GlobalFlags,
    secret_file: Option<&Path>,
    max_age: Option<i64>,
    recipient: Option<&str>,
) -> ExitCode {
    let path = match secret_file {
        Some(p) => p.to_path_buf(),
        None => match Config::load(global.config.as_deref(), std::env::vars(), &global.keys) {
            Ok((cfg, _)) => cfg.hmac_secret_path(),
            Err(e) => {
                eprintln!("postagent verify: configuration error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    if !path.exists() {
        eprintln!("postagent verify: secret file {} does not exist", path.display());
        return ExitCode::from(2);
    }
    let secret = match secret::load_or_create(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("postagent verify: {e}");
            return ExitCode::from(2);
        }
    };
    let mut raw = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut raw) {
        eprintln!("postagent verify: cannot read the message from stdin: {e}");
        return ExitCode::from(2);
    }
    let from = inbound::parse(&raw).header_from;
    match inbound::verify_delivered(&secret, &raw, from.as_deref(), recipient, Timestamp::now(), max_age) {
        Ok(claims) => {
            println!("valid: message {} signed at {}", claims.message_id, claims.timestamp);
            println!("verified: {}", claims.verified());
            println!("sender: {}", claims.sender);
            println!("entity_type: {}", claims.entity_type.as_str());
            if !claims.delegation.is_empty() {
                println!("delegation: {}", claims.delegation);
            }
            println!("domain_check: {}", postagent_core::auth::domain_check::format(&claims.authentication));
            if let Some(domain) = claims.authentication.verified_domain() {
                println!("verified_domain: {domain}");
            }
            println!("queue_id: {} (matches the trace header)", claims.queue_id);
            match recipient {
                Some(r) => println!("recipient: <{r}> is one of the {} signed", claims.recipients.len()),
                None => {
                    println!("recipients: {} signed (pass --recipient to check one)", claims.recipients.len())
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("invalid: {e}");
            println!("binding: {}", e.binding());
            ExitCode::from(1)
        }
    }
}
