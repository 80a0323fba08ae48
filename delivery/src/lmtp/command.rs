//! Parsing one LMTP command line (RFC 2033 over the RFC 5321 §4.1 command set).
//!
//! Pure functions over a line without its CRLF, so the grammar is tested without sockets.
//! The parser is strict where a mistake could misroute mail (paths, parameters) and lenient
//! where clients commonly differ harmlessly (verb case, a space after `FROM:`).

use std::fmt;

/// A parsed command. Arguments the session does not need are dropped here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// `LHLO domain` (RFC 2033 §4.1).
    Lhlo(String),
    /// `HELO`/`EHLO`: not valid in LMTP (RFC 2033 §4.1), refused by the session.
    HeloOrEhlo,
    /// `MAIL FROM:<path> [SIZE=n] [BODY=…]`; `from` is `""` for the null sender `<>`.
    Mail {
        from: String,
        size: Option<u64>,
    },
    /// `RCPT TO:<path>`.
    Rcpt {
        to: String,
    },
    Data,
    Rset,
    Noop,
    Quit,
    /// `VRFY x`: answered with 252 (RFC 5321 §3.5.3), never a lookup.
    Vrfy,
    Help,
    /// A real SMTP verb this server does not offer (EXPN, BDAT, STARTTLS, AUTH, …): 502.
    NotImplemented(String),
}

/// Why a line is not an acceptable command; rendered as one reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub code: u16,
    pub enhanced: &'static str,
    pub text: &'static str,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced, self.text)
    }
}

const fn reject(code: u16, enhanced: &'static str, text: &'static str) -> Rejection {
    Rejection { code, enhanced, text }
}

const UNRECOGNIZED: Rejection = reject(500, "5.5.2", "command not recognized");
const SYNTAX: Rejection = reject(501, "5.5.4", "syntax error in parameters or arguments");
const NO_ARGS: Rejection = reject(501, "5.5.4", "this command takes no arguments");
const BAD_SENDER: Rejection = reject(501, "5.1.7", "bad sender address syntax");
const BAD_RECIPIENT: Rejection = reject(501, "5.1.3", "bad recipient address syntax");
/// RFC 6531 §3.5: without SMTPUTF8 (not offered), a non-ASCII address is refused with 553 5.6.7.
const NON_ASCII: Rejection =
    reject(553, "5.6.7", "non-ASCII address requires SMTPUTF8, which is not offered");
/// RFC 5321 §4.1.1.11: an unrecognised MAIL/RCPT parameter gets 555.
const UNKNOWN_PARAM: Rejection = reject(555, "5.5.4", "unsupported parameter");

/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle brackets.
const MAX_PATH: usize = 256;

/// Parses one command line (without the line ending).
pub(crate) fn parse(line: &[u8]) -> Result<Command, Rejection> {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches([' ', '\t']);
    let (verb, args) = match line.split_once(' ') {
        Some((v, a)) => (v, a.trim_start()),
        None => (line, ""),
    };
    let no_args = |c: Command| if args.is_empty() { Ok(c) } else { Err(NO_ARGS) };
    match verb.to_ascii_uppercase().as_str() {
        "LHLO" if args.is_empty() => Err(reject(501, "5.5.4", "LHLO requires a domain")),
        "LHLO" => Ok(Command::Lhlo(args.to_owned())),
        "HELO" | "EHLO" => Ok(Command::HeloOrEhlo),
        "MAIL" => parse_mail(args),
        "RCPT" => parse_rcpt(args),
        "DATA" => no_args(Command::Data),
        "RSET" => no_args(Command::Rset),
        "QUIT" => no_args(Command::Quit),
        // RFC 5321 §4.1.1.9: NOOP may carry a string, which is ignored.
        "NOOP" => Ok(Command::Noop),
        "VRFY" if args.is_empty() => Err(reject(501, "5.5.4", "VRFY requires an argument")),
        "VRFY" => Ok(Command::Vrfy),
        "HELP" => Ok(Command::Help),
        v @ ("EXPN" | "BDAT" | "STARTTLS" | "AUTH" | "ETRN" | "TURN" | "ATRN" | "SEND" | "SOML" | "SAML") => {
            Ok(Command::NotImplemented(v.to_owned()))
        }
        _ => Err(UNRECOGNIZED),
    }
}

/// `MAIL FROM:<reverse-path> [SP mail-parameters]` (RFC 5321 §4.1.1.2, §4.1.2).
fn parse_mail(args: &str) -> Result<Command, Rejection> {
    let rest = strip_keyword(args, "FROM:").ok_or(SYNTAX)?;
    let (from, params) = parse_path(rest, BAD_SENDER)?;
    if !from.is_empty() {
        check_mailbox(&from, BAD_SENDER)?;
    }
    let mut size = None;
    let mut body = false;
    for param in params {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match key.to_ascii_uppercase().as_str() {
            // RFC 1870 §3: SIZE=1*20DIGIT, the sender's estimate in octets.
            "SIZE" if size.is_none() => {
                let digits =
                    !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit());
                if !digits {
                    return Err(SYNTAX);
                }
                // 20 digits can exceed u64; such a message is over any limit anyway.
                size = Some(value.parse::<u64>().unwrap_or(u64::MAX));
            }
            // RFC 6152 §2: BODY=7BIT or BODY=8BITMIME; both are stored as received.
            "BODY" if !body => {
                if !value.eq_ignore_ascii_case("7BIT") && !value.eq_ignore_ascii_case("8BITMIME") {
                    return Err(SYNTAX);
                }
                body = true;
            }
            "SIZE" | "BODY" => return Err(reject(501, "5.5.4", "duplicate parameter")),
            _ => return Err(UNKNOWN_PARAM),
        }
    }
    Ok(Command::Mail { from, size })
}

/// `RCPT TO:<forward-path>` (RFC 5321 §4.1.1.3). No parameters are offered (no DSN).
fn parse_rcpt(args: &str) -> Result<Command, Rejection> {
    let rest = strip_keyword(args, "TO:").ok_or(SYNTAX)?;
    let (to, mut params) = parse_path(rest, BAD_RECIPIENT)?;
    if params.next().is_some() {
        return Err(UNKNOWN_PARAM);
    }
    // RFC 5321 §4.1.1.3: `<Postmaster>` without a domain must be accepted as a recipient.
    if !to.eq_ignore_ascii_case("postmaster") {
        check_mailbox(&to, BAD_RECIPIENT)?;
    }
    Ok(Command::Rcpt { to })
}

/// Strips a case-insensitive `keyword` (`FROM:`/`TO:`) and any spaces after it: RFC 5321
/// has none there, but widely deployed clients send `MAIL FROM: <a@b>`.
fn strip_keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let head = args.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword).then(|| args[keyword.len()..].trim_start())
}

/// Splits `<path> params…` into the address inside the brackets (source route removed,
/// RFC 5321 §4.1.2 / §C: servers SHOULD ignore it) and the space-separated parameters.
fn parse_path(s: &str, bad: Rejection) -> Result<(String, std::str::SplitWhitespace<'_>), Rejection> {
    let inner = s.strip_prefix('<').ok_or(SYNTAX)?;
    let mut in_quotes = false;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '>' if !in_quotes => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let end = end.ok_or(SYNTAX)?;
    let (path, rest) = (&inner[..end], &inner[end + 1..]);
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(SYNTAX);
    }
    if path.len() + 2 > MAX_PATH {
        return Err(bad);
    }
    if !path.is_ascii() {
        return Err(NON_ASCII);
    }
    let mailbox = match path.strip_prefix('@') {
        Some(route) => route.split_once(':').ok_or(bad.clone())?.1,
        None => path,
    };
    Ok((mailbox.to_owned(), rest.split_whitespace()))
}

/// `Local-part "@" Domain` (RFC 5321 §4.1.2): a dot-atom or quoted local part, and a domain
/// of letters, digits, hyphens and dots or an address literal in brackets.
fn check_mailbox(mailbox: &str, bad: Rejection) -> Result<(), Rejection> {
    let (local, domain) = mailbox.rsplit_once('@').ok_or(bad.clone())?;
    let local_ok = if let Some(q) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        q.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
    } else {
        !local.is_empty()
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b))
    };
    let domain_ok = if domain.starts_with('[') && domain.ends_with(']') {
        domain.len() > 2 && domain.bytes().all(|b| b.is_ascii_graphic())
    } else {
        !domain.is_empty()
            && domain.split('.').all(|label| {
                !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    if local_ok && domain_ok { Ok(()) } else { Err(bad) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Command, Rejection> {
        parse(line.as_bytes())
    }

    fn code(line: &str) -> String {
        match p(line) {
            Ok(c) => format!("ok {c:?}"),
            Err(r) => format!("{} {}", r.code, r.enhanced),
        }
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(p("lhlo mx.example"), Ok(Command::Lhlo("mx.example".into())));
        assert_eq!(p("LHLO mx.example  "), Ok(Command::Lhlo("mx.example".into())));
        assert_eq!(p("Data"), Ok(Command::Data));
        assert_eq!(p("NOOP anything goes"), Ok(Command::Noop));
        assert_eq!(p("ehlo x"), Ok(Command::HeloOrEhlo));
        assert_eq!(p("EXPN list"), Ok(Command::NotImplemented("EXPN".into())));
        assert_eq!(code("FROB"), "500 5.5.2");
        assert_eq!(code(""), "500 5.5.2");
        assert_eq!(code("LHLO"), "501 5.5.4");
        assert_eq!(code("DATA now"), "501 5.5.4");
        assert_eq!(code("VRFY"), "501 5.5.4");
    }

    #[test]
    fn mail_from() {
        assert_eq!(
            p("MAIL FROM:<a@b.example>"),
            Ok(Command::Mail { from: "a@b.example".into(), size: None })
        );
        assert_eq!(p("MAIL FROM:<>"), Ok(Command::Mail { from: String::new(), size: None }));
        assert_eq!(
            p("mail from: <a@b.example> SIZE=1234 BODY=8BITMIME"),
            Ok(Command::Mail { from: "a@b.example".into(), size: Some(1234) })
        );
        assert_eq!(
            p("MAIL FROM:<@relay.example,@r2.example:a@b.example> body=7bit"),
            Ok(Command::Mail { from: "a@b.example".into(), size: None })
        );
        assert_eq!(
            p(r#"MAIL FROM:<"odd > local"@b.example>"#),
            Ok(Command::Mail { from: r#""odd > local"@b.example"#.into(), size: None })
        );
        assert_eq!(
            p("MAIL FROM:<a@b> SIZE=99999999999999999999"),
            Ok(Command::Mail { from: "a@b".into(), size: Some(u64::MAX) })
        );
        assert_eq!(code("MAIL FROM:a@b.example"), "501 5.5.4");
        assert_eq!(code("MAIL TO:<a@b.example>"), "501 5.5.4");
        assert_eq!(code("MAIL FROM:<a@b.example"), "501 5.5.4");
        assert_eq!(code("MAIL FROM:<a@b.example>SIZE=1"), "501 5.5.4");
        assert_eq!(code("MAIL FROM:<a@b> SIZE=x"), "501 5.5.4");
        assert_eq!(code("MAIL FROM:<a@b> SIZE=1 SIZE=2"), "501 5.5.4");
        assert_eq!(code("MAIL FROM:<a@b> BODY=BINARYMIME"), "501 5.5.4");
        assert_eq!(code("MAIL FROM:<a@b> SMTPUTF8"), "555 5.5.4");
        assert_eq!(code("MAIL FROM:<a b@c>"), "501 5.1.7");
        assert_eq!(code("MAIL FROM:<a@>"), "501 5.1.7");
        assert_eq!(code("MAIL FROM:<nodomain>"), "501 5.1.7");
        assert_eq!(code("MAIL FROM:<jörg@b.example>"), "553 5.6.7");
        assert_eq!(code(&format!("MAIL FROM:<{}@b.example>", "a".repeat(250))), "501 5.1.7");
    }

    #[test]
    fn rcpt_to() {
        assert_eq!(p("RCPT TO:<Bot@Agents.Test>"), Ok(Command::Rcpt { to: "Bot@Agents.Test".into() }));
        assert_eq!(p("RCPT TO:<Postmaster>"), Ok(Command::Rcpt { to: "Postmaster".into() }));
        assert_eq!(p("rcpt to:<a@[127.0.0.1]>"), Ok(Command::Rcpt { to: "a@[127.0.0.1]".into() }));
        assert_eq!(code("RCPT TO:<>"), "501 5.1.3");
        assert_eq!(code("RCPT TO:<a..b@c>"), "501 5.1.3");
        assert_eq!(code("RCPT TO:<a@b..c>"), "501 5.1.3");
        assert_eq!(code("RCPT TO:<a@b> NOTIFY=NEVER"), "555 5.5.4");
        assert_eq!(code("RCPT FROM:<a@b>"), "501 5.5.4");
        assert_eq!(code("RCPT TO:<a@b\u{0}c>"), "501 5.1.3");
    }
}
