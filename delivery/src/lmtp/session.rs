//! One LMTP connection: the command loop, the transaction state and the DATA phase.
//!
//! State has two lifetimes (RFC 5321 §4.1.4): the connection's (the LHLO name) and the
//! transaction's ([`Transaction`], created at MAIL and dropped at end of DATA, RSET, LHLO or
//! disconnect), so nothing leaks from one message to the next on a reused connection, which
//! Postfix does (`lmtp_connection_cache_on_demand`).
//!
//! PIPELINING (RFC 2920 §3.1): replies are queued in `output` and written only when the
//! session must wait for more input. Postfix sends MAIL, every RCPT and DATA in one write and
//! then reads all the replies, so this answers a whole group with one write, in order.

use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::command::{self, Command, Rejection};
use super::data::{DotDecoder, Message, Progress};
use super::reply::format_line;
use super::{Envelope, LmtpBackend, LmtpConfig, Reply};

/// Longest command line accepted, CRLF included. RFC 5321 §4.5.3.1.4 sets 512 as the
/// minimum a server must take and §4.5.3.1 asks servers to be liberal; Postfix's smtpd uses
/// 2048 (`line_length_limit`), which we follow. Longer lines are discarded with a 500.
pub(crate) const MAX_COMMAND_LINE: usize = 2048;

/// Errors (bad syntax, bad sequence, overlong lines) after which the connection is closed,
/// so a client stuck in a loop cannot keep a session busy forever (Postfix's
/// `smtpd_hard_error_limit` is also 20).
const HARD_ERROR_LIMIT: u32 = 20;

const READ_CHUNK: usize = 16 * 1024;

/// Serves one accepted connection until QUIT, EOF, a timeout, an I/O error or shutdown.
pub(crate) async fn serve<S>(
    stream: S,
    client: String,
    backend: Arc<dyn LmtpBackend>,
    config: Arc<LmtpConfig>,
    stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let deadline = tokio::time::Instant::now() + config.session_deadline;
    let mut session = Session {
        stream,
        deadline,
        input: BytesMut::with_capacity(READ_CHUNK),
        output: Vec::new(),
        config,
        backend,
        stop,
        client,
        lhlo: None,
        txn: None,
        errors: 0,
    };
    tracing::debug!("lmtp: connected");
    match session.run().await {
        Ok(end) => tracing::debug!(?end, "lmtp: disconnected"),
        Err(e) => tracing::info!(error = %e, "lmtp: connection failed"),
    }
    if let Some(txn) = session.txn {
        tracing::info!(
            "NOQUEUE: lmtp transaction abandoned by client: from=<{}> rcpts={}",
            txn.mail_from,
            txn.recipients.len()
        );
    }
}

/// Why a session ended (for the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Quit,
    /// `session_deadline` ran out.
    Deadline,
    Eof,
    Timeout,
    Shutdown,
    TooManyErrors,
}

/// Which timeout applies to a read, and whether shutdown interrupts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Command,
    Data,
}

enum Input {
    Line(BytesMut),
    TooLong,
    End(End),
}

/// Message state: created by MAIL, consumed by DATA.
#[derive(Debug)]
struct Transaction {
    mail_from: String,
    size_hint: Option<u64>,
    recipients: Vec<String>,
}

struct Session<S> {
    stream: S,
    /// When the session must end, whatever it is doing (`session_deadline`).
    deadline: tokio::time::Instant,
    input: BytesMut,
    output: Vec<u8>,
    config: Arc<LmtpConfig>,
    backend: Arc<dyn LmtpBackend>,
    stop: watch::Receiver<bool>,
    client: String,
    lhlo: Option<String>,
    txn: Option<Transaction>,
    errors: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    async fn run(&mut self) -> io::Result<End> {
        let greeting = format!("220 {} LMTP postagent ready\r\n", self.config.hostname);
        self.output.extend_from_slice(greeting.as_bytes());
        let end = loop {
            let line = match self.next_line().await? {
                Input::Line(line) => line,
                Input::TooLong => {
                    // RFC 5321 §4.5.3.1.10: 500 for a line that is too long.
                    self.error(&Rejection { code: 500, enhanced: "5.5.2", text: "line too long" });
                    continue;
                }
                Input::End(end) => break end,
            };
            let ended = match command::parse(&line) {
                Ok(cmd) => self.handle(cmd).await?,
                Err(rejection) => {
                    self.error(&rejection);
                    None
                }
            };
            if let Some(end) = ended {
                break end;
            }
            if self.errors >= HARD_ERROR_LIMIT {
                self.reply(421, "4.7.0", "too many errors, closing connection");
                break End::TooManyErrors;
            }
        };
        match end {
            End::Timeout => self.reply(421, "4.4.2", "timeout exceeded, closing connection"),
            End::Deadline => self.reply(421, "4.4.2", "session time limit reached, closing connection"),
            // RFC 3463 §3.4: X.3.2 "system not accepting network messages".
            End::Shutdown => self.reply(421, "4.3.2", "shutting down"),
            End::Quit | End::Eof | End::TooManyErrors => {}
        }
        if end != End::Eof {
            self.flush().await?;
        }
        Ok(end)
    }

    /// Runs one command; `Some` ends the session.
    async fn handle(&mut self, cmd: Command) -> io::Result<Option<End>> {
        match cmd {
            Command::Lhlo(name) => {
                // RFC 5321 §4.1.4: a new greeting resets the transaction, like RSET.
                self.txn = None;
                self.lhlo = Some(name);
                // RFC 2034 §3: no enhanced codes in the LHLO/EHLO reply.
                let caps = format!(
                    "250-{}\r\n250-PIPELINING\r\n250-SIZE {}\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n",
                    self.config.hostname, self.config.max_message_bytes
                );
                self.output.extend_from_slice(caps.as_bytes());
            }
            Command::HeloOrEhlo => self.error(&Rejection {
                code: 500,
                enhanced: "5.5.1",
                text: "this is LMTP, use LHLO (RFC 2033 section 4.1)",
            }),
            Command::Mail { from, size } => self.handle_mail(from, size),
            Command::Rcpt { to } => self.handle_rcpt(to).await,
            Command::Data => return self.handle_data().await,
            Command::Rset => {
                self.txn = None;
                self.reply(250, "2.0.0", "OK");
            }
            Command::Noop => self.reply(250, "2.0.0", "OK"),
            // RFC 5321 §3.5.3: 252 when we will not verify but will accept and try.
            Command::Vrfy => {
                self.reply(252, "2.1.5", "cannot VRFY user, but will accept message and attempt delivery")
            }
            Command::Help => {
                self.reply(214, "2.0.0", "postagent LMTP (RFC 2033): LHLO MAIL RCPT DATA RSET NOOP QUIT")
            }
            Command::NotImplemented(_) => {
                self.error(&Rejection { code: 502, enhanced: "5.5.1", text: "command not implemented" })
            }
            Command::Quit => {
                self.reply(221, "2.0.0", "bye");
                return Ok(Some(End::Quit));
            }
        }
        Ok(None)
    }

    fn handle_mail(&mut self, from: String, size: Option<u64>) {
        if self.lhlo.is_none() {
            self.error(&bad_sequence("send LHLO first"));
        } else if self.txn.is_some() {
            self.error(&bad_sequence("nested MAIL command"));
        } else if size.is_some_and(|s| s > self.config.max_message_bytes as u64) {
            // RFC 1870 §6.1: a declared size above the fixed limit is refused at MAIL.
            self.reply(552, "5.3.4", "message size exceeds fixed limit");
        } else {
            self.reply(250, "2.1.0", &format!("<{from}> sender OK"));
            self.txn = Some(Transaction { mail_from: from, size_hint: size, recipients: Vec::new() });
        }
    }

    async fn handle_rcpt(&mut self, to: String) {
        let Some(txn) = &self.txn else {
            return self.error(&bad_sequence("need MAIL before RCPT"));
        };
        if txn.recipients.len() >= self.config.max_recipients {
            return self.reply(452, "4.5.3", "too many recipients");
        }
        let verdict = self.backend.check_recipient(&to).await;
        let line = verdict.line("2.1.5", &format!("<{to}> recipient OK"));
        self.output.extend_from_slice(line.as_bytes());
        if verdict.is_ok() {
            if let Some(txn) = &mut self.txn {
                txn.recipients.push(to);
            }
        } else {
            tracing::debug!(rcpt = %to, reply = verdict.code(), "lmtp: recipient refused");
        }
    }

    /// DATA (RFC 5321 §4.1.1.4) with LMTP's one reply per accepted recipient (RFC 2033 §4.2).
    async fn handle_data(&mut self) -> io::Result<Option<End>> {
        let Some(txn) = self.txn.take_if(|t| !t.recipients.is_empty()) else {
            // RFC 2033 §4.2: DATA without a successful RCPT MUST fail with 503.
            let why = if self.txn.is_some() { "no valid recipients" } else { "need MAIL before DATA" };
            self.error(&bad_sequence(why));
            return Ok(None);
        };
        // RFC 2034 §3 covers 2xx/4xx/5xx only, so 354 carries no enhanced code.
        self.output.extend_from_slice(b"354 end data with <CR><LF>.<CR><LF>\r\n");
        let mut decoder = DotDecoder::new(self.config.max_message_bytes, txn.size_hint);
        while decoder.feed(&mut self.input) == Progress::NeedMore {
            if let Some(end) = self.fill(Phase::Data).await? {
                // Connection lost or timed out mid-message: no replies, so Postfix retries.
                tracing::info!(
                    "NOQUEUE: lmtp message abandoned in DATA ({end:?}): from=<{}> rcpts={}",
                    txn.mail_from,
                    txn.recipients.len()
                );
                return Ok(Some(end));
            }
        }
        self.finish_message(txn, decoder.finish()).await;
        Ok(None)
    }

    /// Hands a complete message to the backend and queues the per-recipient replies.
    async fn finish_message(&mut self, txn: Transaction, message: Message) {
        let queue_id = postagent_core::mail::inbound::postfix_queue_id(&message.data);
        let envelope = Envelope {
            mail_from: txn.mail_from,
            recipients: txn.recipients,
            lhlo: self.lhlo.clone().unwrap_or_default(),
            client: self.client.clone(),
        };
        let n = envelope.recipients.len();
        let replies = if message.too_big {
            // The whole message was read (the client cannot stop mid-DATA), but never stored.
            vec![Reply::message_too_big(); n]
        } else {
            let mut replies = self.backend.deliver(&envelope, message.data).await;
            if replies.len() != n {
                tracing::error!(
                    expected = n,
                    got = replies.len(),
                    "lmtp: backend returned the wrong number of replies; missing ones become 451"
                );
                replies.resize(n, Reply::store_unavailable());
            }
            replies
        };
        for (rcpt, reply) in envelope.recipients.iter().zip(&replies) {
            let line = reply.line("2.0.0", &format!("<{rcpt}> delivered"));
            self.output.extend_from_slice(line.as_bytes());
        }
        let codes: Vec<String> = replies.iter().map(|r| r.code().to_string()).collect();
        tracing::info!(
            "{}: lmtp done client={} from=<{}> rcpts={n} size={} replies={}",
            queue_id.as_deref().unwrap_or("NOQUEUE"),
            self.client,
            envelope.mail_from,
            message.size,
            codes.join(",")
        );
    }

    /// The next command line without its line ending (a bare LF is accepted as one).
    async fn next_line(&mut self) -> io::Result<Input> {
        let mut discarding = false;
        loop {
            let lf = self.input.iter().position(|&b| b == b'\n');
            match lf {
                Some(lf) if discarding => {
                    self.input.advance(lf + 1);
                    return Ok(Input::TooLong);
                }
                Some(lf) if lf + 1 > MAX_COMMAND_LINE => {
                    self.input.advance(lf + 1);
                    return Ok(Input::TooLong);
                }
                Some(lf) => {
                    let mut line = self.input.split_to(lf + 1);
                    line.truncate(if line[..lf].ends_with(b"\r") { lf - 1 } else { lf });
                    return Ok(Input::Line(line));
                }
                // Keep memory bounded: drop what we have of an overlong line, skip to its end.
                None if discarding || self.input.len() > MAX_COMMAND_LINE => {
                    discarding = true;
                    self.input.clear();
                }
                None => {}
            }
            if let Some(end) = self.fill(Phase::Command).await? {
                return Ok(Input::End(end));
            }
        }
    }

    /// Sends the queued replies, then reads more input; `Some` when the session must end.
    async fn fill(&mut self, phase: Phase) -> io::Result<Option<End>> {
        self.flush().await?;
        let timeout = match phase {
            Phase::Command => self.config.command_timeout,
            Phase::Data => self.config.data_timeout,
        };
        let left = self.deadline.saturating_duration_since(tokio::time::Instant::now());
        let by_deadline = left < timeout;
        self.input.reserve(READ_CHUNK);
        let read = tokio::time::timeout(timeout.min(left), self.stream.read_buf(&mut self.input));
        let result = match phase {
            // Shutdown interrupts only a session that waits for a command (see `run` in
            // mod.rs); one inside DATA finishes its message first.
            Phase::Command => tokio::select! {
                biased;
                _ = self.stop.wait_for(|stop| *stop) => return Ok(Some(End::Shutdown)),
                result = read => result,
            },
            Phase::Data => read.await,
        };
        match result {
            Err(_elapsed) if by_deadline => Ok(Some(End::Deadline)),
            Err(_elapsed) => Ok(Some(End::Timeout)),
            Ok(Ok(0)) => Ok(Some(End::Eof)),
            Ok(Ok(_)) => Ok(None),
            Ok(Err(e)) => Err(e),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let timeout = self.config.command_timeout;
        let (stream, output) = (&mut self.stream, &self.output);
        let write = async {
            stream.write_all(output).await?;
            stream.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(result) => result?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "writing replies timed out")),
        }
        self.output.clear();
        Ok(())
    }

    fn reply(&mut self, code: u16, enhanced: &str, text: &str) {
        self.output.extend_from_slice(format_line(code, enhanced, text).as_bytes());
    }

    fn error(&mut self, rejection: &Rejection) {
        self.errors += 1;
        self.reply(rejection.code, rejection.enhanced, rejection.text);
    }
}

/// RFC 5321 §4.3.2 / RFC 3463 §3.6: 503 5.5.1 for a command out of sequence.
fn bad_sequence(text: &'static str) -> Rejection {
    Rejection { code: 503, enhanced: "5.5.1", text }
}
