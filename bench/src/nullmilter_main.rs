//! `bench-nullmilter SOCKET`: a milter that asks for every header and body chunk and does
//! nothing with them, accepting every message. bench/inbound's (d): the least any milter that
//! verifies DKIM (and so must see the whole message) can cost Postfix, on the same library
//! (indymilter) and runtime postagent's milter uses, with the same saving where it applies (no
//! replies to headers and body chunks), so it stays a lower bound.

use indymilter::{Callbacks, Config, ProtoOpts, Status};
use std::os::unix::fs::PermissionsExt;
use std::process::ExitCode;
use tokio::net::UnixListener;

const NOREPLY: ProtoOpts = ProtoOpts::NOREPLY_HEADER.union(ProtoOpts::NOREPLY_BODY);

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
        let listener = UnixListener::bind(&path)?;
        // smtpd runs as user postfix.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        // The session data: whether Postfix agreed to expect no replies.
        let callbacks: Callbacks<bool> = Callbacks::new()
            .on_negotiate(|cx, _actions, offered| {
                Box::pin(async move {
                    let noreply = offered.contains(NOREPLY);
                    if noreply {
                        cx.requested_opts |= NOREPLY;
                    }
                    cx.data = Some(noreply);
                    Status::Continue
                })
            })
            .on_header(|cx, _name, _value| Box::pin(async move { ack(cx.data) }))
            .on_body(|cx, _chunk| Box::pin(async move { ack(cx.data) }))
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

fn ack(noreply: Option<bool>) -> Status {
    if noreply == Some(true) { Status::Noreply } else { Status::Continue }
}
