//! The parsed view of a message within caps: whatever a sender builds, parsing it costs a
//! bounded amount of memory and time, and a message past a cap is still stored once, whole,
//! with a view of what came before the cap (`parsed.truncated`).
//!
//! mail-parser builds one `MessagePart` per MIME part and one `Header` per header field, so a
//! 10 MB message of 400,000 empty parts would cost hundreds of megabytes to parse whole. Every
//! view therefore goes through [`parse`], which
//!
//! 1. refuses to read past the caps of the top-level header block (`max_header_fields`,
//!    `max_header_bytes`): the view then has those headers and no body;
//! 2. finds, in one pass over the bytes and without allocating, the longest prefix whose
//!    parse is bounded: every part mail-parser makes starts at a `--` pair (a boundary; it
//!    matches them anywhere, not only at a line start) or at a `message` content type, and
//!    every header it keeps is a line of a header block (at the top, after a boundary, or
//!    after a `message` part's headers). Past [`BUDGET_FACTOR`] times the caps of either, the
//!    rest of the message is left out of the view. Ordinary mail never comes near it;
//! 3. makes encoded `message/rfc822` parts (RFC 2046 §5.2.1 allows only 7bit, 8bit and binary
//!    for them) and `multipart/digest` opaque, because mail-parser decodes such a part and
//!    parses what it finds inside, structure the pass of step 2 cannot see;
//! 4. parses that prefix, and if it holds more than `max_parts` parts or parts deeper than
//!    `max_depth`, parses again up to the first part past the cap.
//!
//! Attachments past `max_attachments` are left to the callers, which take the first ones.
//! The same caps apply to every view of a message (rows at delivery, bodies and downloads
//! later), so attachment indices agree; [`configure`] sets them once per process.

use mail_parser::{Message, MessageParser, PartType};
use std::borrow::Cow;
use std::sync::OnceLock;

/// What one message's view may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_parts: usize,
    pub max_attachments: usize,
    pub max_depth: usize,
    pub max_header_fields: usize,
    pub max_header_bytes: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            max_parts: 250,
            max_attachments: 100,
            max_depth: 20,
            max_header_fields: 1000,
            max_header_bytes: 256 * 1024,
        }
    }
}

/// How far past the caps the pre-parse bound may go before bytes are left out: generous, so
/// only hostile structure is ever cut there (the exact caps are applied after parsing).
pub const BUDGET_FACTOR: usize = 16;

static CAPS: OnceLock<Caps> = OnceLock::new();

/// Sets this process's caps (from the configuration, at start); later calls are ignored.
pub fn configure(caps: Caps) {
    let _ = CAPS.set(caps);
}

/// This process's caps.
pub fn caps() -> Caps {
    CAPS.get().copied().unwrap_or_default()
}

/// The bytes a view is parsed from: the message itself, or a prefix of it, or a copy with
/// opaque encoded nested messages.
pub struct Source<'a> {
    text: Cow<'a, [u8]>,
    /// Something was left out: a cap was reached.
    pub truncated: bool,
}

impl Source<'_> {
    /// The view: the parsed message (`None` when not even a header could be read).
    pub fn parse(&self) -> Option<Message<'_>> {
        guarded(self.text.as_ref())
    }
}

/// mail-parser's parse, with a panic inside it (it has `debug_assert!`s that hostile MIME
/// reaches, found by `core/tests/props.rs`) turned into "nothing could be read" instead of a
/// dead LMTP session or API request: a message is never refused or lost for its formatting.
fn guarded(text: &[u8]) -> Option<Message<'_>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| MessageParser::default().parse(text)))
        .unwrap_or_else(|_| {
            tracing::warn!(bytes = text.len(), "the MIME parser gave up on a message; its view is empty");
            None
        })
}

/// The bounded view of `raw` under `caps`, parsed: what [`parse`] then [`Source::parse`]
/// give, without parsing twice when the first parse (the one that checks the parts against
/// the caps) already is the view, as it is for every message within the caps.
pub enum View<'a> {
    /// The parsed view of `raw` itself (`None` when not even a header could be read) and
    /// whether something was left out.
    Parsed(Option<Message<'a>>, bool),
    /// A prefix or a neutralized copy of `raw`, still to be parsed.
    Source(Source<'a>),
}

/// [`View`] of `raw` under `caps`.
pub fn view(raw: &[u8], caps: Caps) -> View<'_> {
    match bounded(raw, caps) {
        Bounded::Whole(parsed, truncated) => View::Parsed(parsed, truncated),
        Bounded::Source(source) => View::Source(source),
    }
}

/// The bounded view of `raw` under `caps`.
pub fn parse(raw: &[u8], caps: Caps) -> Source<'_> {
    match bounded(raw, caps) {
        Bounded::Whole(_, truncated) => Source { text: Cow::Borrowed(raw), truncated },
        Bounded::Source(source) => source,
    }
}

enum Bounded<'a> {
    /// All of `raw`, parsed once on the way.
    Whole(Option<Message<'a>>, bool),
    Source(Source<'a>),
}

fn bounded(raw: &[u8], caps: Caps) -> Bounded<'_> {
    if let Some(cut) = header_cut(raw, caps) {
        return Bounded::Source(Source { text: Cow::Borrowed(&raw[..cut]), truncated: true });
    }
    let scan = scan(raw, caps);
    let mut truncated = scan.cut.is_some();
    let end = scan.cut.unwrap_or(raw.len());
    if scan.neutralize.is_empty() && end == raw.len() {
        let parsed = guarded(raw);
        if parsed.is_none() && !raw.is_empty() {
            truncated = true;
        }
        match parsed.as_ref().and_then(|m| part_cut(m, caps)) {
            None => return Bounded::Whole(parsed, truncated),
            Some(cut) => {
                return Bounded::Source(Source { text: Cow::Borrowed(&raw[..cut]), truncated: true });
            }
        }
    }
    let text: Cow<'_, [u8]> = if scan.neutralize.is_empty() {
        Cow::Borrowed(&raw[..end])
    } else {
        Cow::Owned(neutralized(&raw[..end], &scan.neutralize))
    };
    let parsed = guarded(text.as_ref());
    if parsed.is_none() && !text.is_empty() {
        truncated = true;
    }
    let cut = parsed.and_then(|m| part_cut(&m, caps));
    let text = match cut {
        Some(cut) => {
            truncated = true;
            match text {
                Cow::Borrowed(b) => Cow::Borrowed(&b[..cut]),
                Cow::Owned(mut v) => {
                    v.truncate(cut);
                    Cow::Owned(v)
                }
            }
        }
        None => text,
    };
    Bounded::Source(Source { text, truncated })
}

/// Where the top-level header block goes past its caps, if it does.
fn header_cut(raw: &[u8], caps: Caps) -> Option<usize> {
    let mut fields = 0usize;
    let mut start = 0usize;
    while start < raw.len() {
        let end = raw[start..].iter().position(|&b| b == b'\n').map_or(raw.len(), |i| start + i + 1);
        let line = &raw[start..end];
        if line == b"\n" || line == b"\r\n" {
            return None;
        }
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            fields += 1;
            if fields > caps.max_header_fields {
                return Some(start);
            }
        }
        if end > caps.max_header_bytes {
            return Some(start);
        }
        start = end;
    }
    None
}

struct Scan {
    /// Where the bound is exceeded (a line start).
    cut: Option<usize>,
    /// `Content-Type` media types (byte ranges) whose `message`/`digest` tokens must be made
    /// opaque.
    neutralize: Vec<(usize, usize)>,
}

/// One pass over the lines: an upper bound on the parts and header fields mail-parser would
/// make of each prefix, and the header blocks that would make it decode and re-parse. Only a
/// `Content-Type` field's media type can make a part a nested message (`message/…`) or a
/// digest, so only that is looked at and neutralized: a `Message-ID`, a subject that says
/// "message" or "digest", or a file name such as `voice-message.mp3` stays as it is.
///
/// A line is taken for a `Content-Type` field the way mail-parser reads field names, which is
/// looser than RFC 5322: whitespace anywhere in the name and leading colons are ignored, and
/// a line that starts with whitespace may still begin a field. So every line of a header
/// block is tested, continuation or not.
fn scan(raw: &[u8], caps: Caps) -> Scan {
    let parts_budget = caps.max_parts.saturating_mul(BUDGET_FACTOR).max(1024);
    let headers_budget = caps.max_header_fields.saturating_mul(BUDGET_FACTOR).max(1024);
    let (mut parts, mut header_lines) = (1usize, 0usize);
    let mut neutralize = Vec::new();
    // In a possible header block (since the given offset), and what it said so far: the
    // media-type ranges of its Content-Type fields, and whether they name a message or a
    // digest and an encoding is declared.
    let mut block: Option<usize> = Some(0);
    let mut media: Vec<(usize, usize)> = Vec::new();
    // Inside a Content-Type field whose media type has not ended (no `;` yet).
    let mut in_media = false;
    let (mut has_message, mut has_digest, mut has_encoding) = (false, false, false);
    let mut start = 0usize;
    while start < raw.len() {
        let end = raw[start..].iter().position(|&b| b == b'\n').map_or(raw.len(), |i| start + i + 1);
        let line = &raw[start..end];
        let dashes = line.windows(2).filter(|w| w == b"--").count();
        let messages = count_ci(line, b"message");
        parts = parts.saturating_add(dashes).saturating_add(messages);
        let blank = line == b"\n" || line == b"\r\n";
        if block.is_some() {
            if blank {
                if has_digest || (has_message && has_encoding) {
                    neutralize.append(&mut media);
                }
                // A message part's headers are followed by the nested message's own.
                block = has_message.then_some(end);
                media.clear();
                in_media = false;
                (has_message, has_digest, has_encoding) = (false, false, false);
            } else {
                header_lines += 1;
                let folded = matches!(line.first(), Some(b' ' | b'\t'));
                let value_from = content_type_value(line);
                if value_from.is_some() || (folded && in_media) {
                    let from = value_from.unwrap_or(0);
                    let to = line[from..].iter().position(|&b| b == b';').map_or(line.len(), |i| from + i);
                    let kind = &line[from..to];
                    has_message |= count_ci(kind, b"message") > 0;
                    has_digest |= count_ci(kind, b"digest") > 0;
                    media.push((start + from, start + to));
                    in_media = to == line.len();
                } else if !folded {
                    in_media = false;
                }
                has_encoding |= count_ci(line, b"base64") > 0 || count_ci(line, b"quoted-printable") > 0;
            }
        }
        if dashes > 0 {
            // A boundary: what follows is a part's header block.
            if block.is_some() && (has_digest || (has_message && has_encoding)) {
                neutralize.append(&mut media);
            }
            block = Some(end);
            media.clear();
            in_media = false;
            (has_message, has_digest, has_encoding) = (false, false, false);
        }
        if parts > parts_budget || header_lines > headers_budget {
            return Scan { cut: Some(start), neutralize };
        }
        start = end;
    }
    if block.is_some() && (has_digest || (has_message && has_encoding)) {
        neutralize.append(&mut media);
    }
    Scan { cut: None, neutralize }
}

/// Where the value starts when `line` reads as a `Content-Type` field to mail-parser: its
/// name with whitespace removed and leading colons skipped is `content-type`.
fn content_type_value(line: &[u8]) -> Option<usize> {
    const NAME: &[u8] = b"content-type";
    let mut matched = 0;
    let mut leading = true;
    for (i, &b) in line.iter().enumerate() {
        if b.is_ascii_whitespace() {
            continue;
        }
        if leading && b == b':' {
            continue;
        }
        leading = false;
        if matched == NAME.len() {
            return (b == b':').then_some(i + 1);
        }
        if !b.eq_ignore_ascii_case(&NAME[matched]) {
            return None;
        }
        matched += 1;
        if i > 200 {
            return None;
        }
    }
    None
}

fn count_ci(hay: &[u8], needle: &[u8]) -> usize {
    if hay.len() < needle.len() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| w.eq_ignore_ascii_case(needle)).count()
}

/// A copy of `text` with every `message` and `digest` token of the given `Content-Type` media
/// types prefixed by `x-`, so mail-parser treats those parts as opaque attachments.
fn neutralized(text: &[u8], blocks: &[(usize, usize)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 16 * blocks.len());
    let mut at = 0;
    for &(from, to) in blocks {
        let (from, to) = (from.min(text.len()), to.min(text.len()));
        if from < at {
            continue;
        }
        out.extend_from_slice(&text[at..from]);
        let mut i = from;
        while i < to {
            let rest = &text[i..to];
            let hit = [b"message".as_slice(), b"digest".as_slice()]
                .into_iter()
                .find(|t| rest.len() >= t.len() && rest[..t.len()].eq_ignore_ascii_case(t));
            if let Some(t) = hit {
                out.extend_from_slice(b"x-");
                out.extend_from_slice(&rest[..t.len()]);
                i += t.len();
            } else {
                out.push(text[i]);
                i += 1;
            }
        }
        at = to;
    }
    out.extend_from_slice(&text[at.min(text.len())..]);
    out
}

/// The start of the first part past `max_parts` or deeper than `max_depth`, if any.
fn part_cut(m: &Message<'_>, caps: Caps) -> Option<usize> {
    let mut cut: Option<usize> = None;
    let mut keep = |offset: u32| {
        let o = offset as usize;
        cut = Some(cut.map_or(o, |c| c.min(o)));
    };
    if let Some(p) = m.parts.get(caps.max_parts) {
        keep(p.offset_header);
    }
    // Depth: walk the tree from the root part.
    let mut stack: Vec<(u32, usize)> = vec![(0, 0)];
    let mut seen = 0usize;
    while let Some((id, depth)) = stack.pop() {
        seen += 1;
        if seen > caps.max_parts.saturating_mul(BUDGET_FACTOR) {
            break;
        }
        let Some(part) = m.parts.get(id as usize) else { continue };
        if depth > caps.max_depth {
            keep(part.offset_header);
            continue;
        }
        match &part.body {
            PartType::Multipart(children) => stack.extend(children.iter().map(|c| (*c, depth + 1))),
            PartType::Message(nested) => {
                if let Some(p) = nested.parts.get(caps.max_parts) {
                    keep(p.offset_header);
                }
                if depth + 1 > caps.max_depth {
                    keep(part.offset_header);
                }
            }
            _ => {}
        }
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multipart(parts: usize) -> Vec<u8> {
        let mut m = b"From: a@example.org\r\nSubject: many\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        for i in 0..parts {
            m.extend_from_slice(format!("--b\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n").as_bytes());
        }
        m.extend_from_slice(b"--b--\r\n");
        m
    }

    #[test]
    fn ordinary_mail_is_parsed_whole() {
        let raw = multipart(20);
        let v = parse(&raw, Caps::default());
        assert!(!v.truncated);
        let m = v.parse().expect("parses");
        assert_eq!(m.parts.len(), 21);
        assert_eq!(m.subject(), Some("many"));
        // A text full of dashes and the word "message" is left whole.
        let mut text = b"From: a@example.org\r\nSubject: dashes\r\n\r\n".to_vec();
        for _ in 0..200 {
            text.extend_from_slice(b"-------- a message about messages --------\r\n\r\n");
        }
        let v = parse(&text, Caps::default());
        assert!(!v.truncated);
        assert!(v.parse().and_then(|m| m.body_text(0).map(|t| t.len())).unwrap_or(0) > 8000);
    }

    #[test]
    fn a_single_part_encoded_message_keeps_its_headers() {
        // Message-ID and a subject that says "message" or "digest", with a body in
        // quoted-printable: ordinary mail, parsed as it is (no token made opaque).
        let raw = b"From: a@example.org\r\nSubject: test message, weekly digest\r\nMessage-ID: <m2@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nhello=\r\n world\r\n";
        let v = parse(raw, Caps::default());
        assert!(matches!(v.text, Cow::Borrowed(_)), "nothing was rewritten");
        let m = v.parse().expect("parses");
        assert_eq!(m.subject(), Some("test message, weekly digest"));
        assert_eq!(m.message_id(), Some("m2@example.org"));
    }

    #[test]
    fn parts_past_the_cap_are_cut_at_a_part() {
        let raw = multipart(300);
        let caps = Caps { max_parts: 50, ..Caps::default() };
        let v = parse(&raw, caps);
        assert!(v.truncated);
        let m = v.parse().expect("parses");
        assert!(m.parts.len() <= 50, "{}", m.parts.len());
        assert_eq!(m.subject(), Some("many"), "the headers are kept");
    }

    #[test]
    fn hostile_structure_is_cut_before_parsing() {
        // 400,000 empty parts in 2 MB: the bound stops the parse long before.
        let mut raw = b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b"--b\r\n".as_slice(), 400_000).flatten());
        let v = parse(&raw, Caps::default());
        assert!(v.truncated);
        assert!(v.text.len() < 100_000, "{}", v.text.len());
        assert!(v.parse().is_some_and(|m| m.parts.len() <= 250));
        // Nested message parts without a single boundary.
        let mut nested = b"From: a@example.org\r\n".to_vec();
        nested.extend(
            std::iter::repeat_n(b"Content-Type: message/rfc822\r\n\r\n".as_slice(), 100_000).flatten(),
        );
        let v = parse(&nested, Caps::default());
        assert!(v.truncated);
        assert!(v.parse().is_some_and(|m| m.parts.len() <= 250));
        // A header block of a million fields.
        let mut headers = b"From: a@example.org\r\n".to_vec();
        headers.extend(std::iter::repeat_n(b"X-A: b\r\n".as_slice(), 100_000).flatten());
        headers.extend_from_slice(b"\r\nbody\r\n");
        let v = parse(&headers, Caps::default());
        assert!(v.truncated);
        assert_eq!(v.parse().map(|m| m.headers().len()), Some(1000));
        // Deep nesting.
        let mut deep = b"From: a@example.org\r\n".to_vec();
        for i in 0..40 {
            deep.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").as_bytes(),
            );
        }
        deep.extend_from_slice(b"Content-Type: text/plain\r\n\r\ndeep\r\n");
        let v = parse(&deep, Caps::default());
        assert!(v.truncated, "deeper than max_depth");
    }

    #[test]
    fn encoded_nested_messages_are_opaque() {
        use base64::Engine as _;
        let mut inner = b"From: b@example.org\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n".to_vec();
        inner.extend(std::iter::repeat_n(b"--i\r\n".as_slice(), 5_000).flatten());
        let encoded = base64::engine::general_purpose::STANDARD.encode(&inner);
        let raw = format!(
            "From: a@example.org\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--o\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--o--\r\n"
        );
        let v = parse(raw.as_bytes(), Caps::default());
        let m = v.parse().expect("parses");
        assert!(m.parts.len() < 10, "the nested message is not parsed: {}", m.parts.len());
        assert_eq!(m.attachments().count(), 1);
        assert_eq!(m.attachments().next().map(|a| a.contents().len()), Some(inner.len()));
        // Nothing else in that header block is touched.
        let headers = "From: a@example.org\r\nSubject: Your message digest\r\nMessage-ID: <m1@example.org>\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\nContent-Description: the forwarded message\r\n\r\nRnJvbTogYkBleGFtcGxlLm9yZw0KDQpoaQ0K\r\n--o--\r\n";
        let v = parse(headers.as_bytes(), Caps::default());
        let m = v.parse().expect("parses");
        assert_eq!((m.subject(), m.message_id()), (Some("Your message digest"), Some("m1@example.org")));
        assert_eq!(m.attachments().count(), 1);
        // The ways mail-parser reads a field name that RFC 5322 would not: a leading space,
        // a space before the colon, a space inside the name, leading colons. Each is still
        // made opaque.
        for field in [
            " Content-Type: message/rfc822",
            "Content-Type : message/rfc822",
            "Content- Type: message/rfc822",
            ":Content-Type: message/rfc822",
            "x\r\n Content-Type: message/rfc822",
            "Content-Type:\r\n message/rfc822",
        ] {
            let raw = format!(
                "From: a@example.org\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n{field}\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--o--\r\n"
            );
            let v = parse(raw.as_bytes(), Caps::default());
            let parts = v.parse().map_or(0, |m| m.parts.len());
            assert!(parts < 10, "{field:?}: the nested message is not parsed ({parts} parts)");
        }
        // A file name that says "message" is left as it is.
        let named = "From: a@example.org\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: audio/mpeg; name=\"voice-message.mp3\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--o--\r\n";
        let v = parse(named.as_bytes(), Caps::default());
        assert!(matches!(v.text, Cow::Borrowed(_)), "nothing was rewritten");
        // An unencoded nested message is still a nested message.
        let plain = "From: a@example.org\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@example.org\r\nSubject: inner\r\n\r\nhi\r\n--o--\r\n";
        let v = parse(plain.as_bytes(), Caps::default());
        let m = v.parse().expect("parses");
        assert!(matches!(m.attachments().next().map(|a| &a.body), Some(PartType::Message(_))));
    }
}
