//! `bench-nullmilter SOCKET`: a milter that asks for every header and body chunk and does
//! nothing with them, accepting every message. bench/inbound's (d): the least any milter that
//! verifies DKIM (and so must see the whole message) can cost Postfix, on the same library
//! (indymilter) and runtime postagent's milter uses.

use indymilter::{Callbacks, Config, Status};
use std::os::unix::fs::PermissionsExt;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: bench-nullmilter SOCKET");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench-nullmilter: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async move {
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)?;
        // smtpd runs as user postfix.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        let callbacks: Callbacks<()> = Callbacks::new()
            .on_header(|_cx, _name, _value| Box::pin(async { Status::Continue }))
            .on_body(|_cx, _chunk| Box::pin(async { Status::Continue }))
            .on_eom(|_cx| Box::pin(async { Status::Accept }));
        indymilter::run(listener, callbacks, Config::default(), std::future::pending::<()>()).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-nullmilter: {e}");
            ExitCode::FAILURE
        }
    }
}
