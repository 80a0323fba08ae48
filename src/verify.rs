//! `postagent verify [--secret-file F] [--max-age S] < message.eml`: checks the signed
//! `X-E2A-Auth-*` set of a delivered message. Exit 0 when it verifies (the claims are
//! printed), 1 with the reason when it does not, 2 when it cannot run.

use crate::GlobalFlags;
use postagent_core::auth::headers;
use postagent_core::time::Timestamp;
use postagent_core::{Config, secret};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

pub fn run(global: &GlobalFlags, secret_file: Option<&Path>, max_age: Option<i64>) -> ExitCode {
    let path = match secret_file {
        Some(p) => p.to_path_buf(),
        None => match Config::load(global.config.as_deref(), std::env::vars(), &global.pairs()) {
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
    match headers::verify(&secret, &raw, Timestamp::now(), max_age) {
        Ok(claims) => {
            println!("valid: message {} signed at {}", claims.message_id, claims.timestamp);
            println!("verified: {}", claims.verified());
            println!("sender: {}", claims.sender);
            println!("entity_type: {}", claims.entity_type.as_str());
            println!("domain_check: {}", postagent_core::auth::domain_check::format(&claims.authentication));
            if let Some(domain) = claims.authentication.verified_domain() {
                println!("verified_domain: {domain}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("invalid: {e}");
            ExitCode::from(1)
        }
    }
}
