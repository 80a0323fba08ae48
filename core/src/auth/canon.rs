//! Canonical forms of a message's body and header fields for the signed set (version 2,
//! `docs/auth-headers.md`): what survives Postfix's trip from the milter to LMTP, and
//! nothing an attacker could use to change what a reader or a MIME parser sees.
//!
//! Both forms are DKIM's `relaxed` canonicalisations (RFC 6376 §3.4.2 and §3.4.4) after one
//! step that undoes what Postfix's SMTP and LMTP clients do to long lines: a line longer
//! than 998 octets is broken by inserting CRLF and one SP after every 998 octets
//! (`smtp_line_length_limit` / `lmtp_line_length_limit`, measured: the pieces are exactly 998
//! octets long, each continuation starting with the inserted SP). So wherever a line of
//! exactly [`POSTFIX_LINE_LIMIT`] octets is followed by a line that starts with SP, that line
//! break and that SP are removed. Nothing else is joined: unlike the retired whitespace-free
//! hash, a soft line break, a line split into a MIME boundary or a moved blank line changes
//! the hash.

use sha2::{Digest, Sha256};

/// The line length at which Postfix's clients break lines (their default, 998).
pub const POSTFIX_LINE_LIMIT: usize = 998;

/// The header fields whose values the signed set binds (lowercase). Together with the body
/// they are what a reader, a threading rule or a MIME parser acts on; a change to any of them
/// after signing voids the set.
pub const BOUND_HEADERS: [&str; 14] = [
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "x-e2a-conversation-id",
];

/// The bound fields a submission token covers: the ones Postfix never adds on its way to the
/// milter (it may add a missing Date, Message-ID or `To: undisclosed-recipients:;`).
pub const TOKEN_HEADERS: [&str; 6] =
    ["from", "subject", "in-reply-to", "references", "content-type", "x-e2a-conversation-id"];

/// Hex digits of each header hash in `X-E2A-Auth-Header-Hash` (128 bits of SHA-256).
const HEADER_HASH_HEX: usize = 32;

/// The streaming relaxed body canonicaliser, hashing as it goes, so the milter never keeps a
/// body to hash it and a line of any length costs nothing.
#[derive(Clone, Default)]
pub struct BodyHasher {
    hash: Sha256,
    /// Raw octets of the current physical line so far (its terminator not counted).
    line_len: usize,
    /// A CR was the last octet: a line end if LF follows, else content.
    cr: bool,
    /// A run of SP/HTAB not yet written (dropped at a line's end, one SP before content).
    wsp: bool,
    /// Line ends not yet written (trailing empty lines are dropped).
    crlfs: usize,
    /// The last line ended at exactly the Postfix limit: if this line starts with SP, the
    /// break was Postfix's and is undone.
    maybe_join: bool,
    /// At the first octet of a physical line (where `maybe_join` is decided).
    line_start: bool,
    any_content: bool,
}

impl BodyHasher {
    pub fn new() -> Self {
        Self { line_start: true, ..Self::default() }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        for &b in chunk {
            self.octet(b);
        }
    }

    fn octet(&mut self, b: u8) {
        if self.cr {
            self.cr = false;
            if b == b'\n' {
                self.line_end();
                return;
            }
            self.content(b'\r');
        }
        match b {
            b'\r' => self.cr = true,
            b'\n' => self.line_end(),
            b' ' | b'\t' => {
                if self.line_start && self.maybe_join && b == b' ' {
                    // Postfix's inserted SP: the previous line continues.
                    self.line_start = false;
                    self.maybe_join = false;
                    self.line_len = 1;
                    return;
                }
                self.begin_line();
                self.line_len += 1;
                self.wsp = true;
            }
            _ => self.content(b),
        }
    }

    /// The first octet of a line that is not Postfix's continuation: the previous line's end
    /// (held back in case it was a break) is a real one.
    fn begin_line(&mut self) {
        if self.line_start {
            self.line_start = false;
            if self.maybe_join {
                self.maybe_join = false;
                self.close_line();
            }
        }
    }

    fn content(&mut self, b: u8) {
        self.begin_line();
        self.line_len += 1;
        if self.crlfs > 0 {
            for _ in 0..self.crlfs {
                self.hash.update(b"\r\n");
            }
            self.crlfs = 0;
        }
        if self.wsp {
            self.hash.update(b" ");
            self.wsp = false;
        }
        self.hash.update([b]);
        self.any_content = true;
    }

    fn line_end(&mut self) {
        self.begin_line();
        if self.line_len == POSTFIX_LINE_LIMIT {
            // Perhaps Postfix's break: decided by the next line's first octet.
            self.maybe_join = true;
        } else {
            self.close_line();
        }
        self.line_len = 0;
        self.line_start = true;
    }

    fn close_line(&mut self) {
        self.wsp = false;
        self.crlfs += 1;
    }

    pub fn finish(mut self) -> String {
        if self.cr {
            self.cr = false;
            self.content(b'\r');
        }
        if !self.line_start || self.maybe_join {
            // The last line had no terminator, or ended at the limit with nothing after it.
            self.maybe_join = false;
            self.line_start = false;
            self.close_line();
        }
        if self.any_content {
            self.hash.update(b"\r\n");
        }
        hex::encode(self.hash.finalize())
    }
}

/// The relaxed body hash of a whole body.
pub fn body_hash(body: &[u8]) -> String {
    let mut h = BodyHasher::new();
    h.update(body);
    h.finish()
}

/// Removes Postfix's long-line breaks from a run of lines: each CRLF (or LF) SP that follows
/// a line of exactly [`POSTFIX_LINE_LIMIT`] octets (the continuation's own length counts its
/// SP, as Postfix's does).
pub fn undo_postfix_breaks(text: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if text.len() <= POSTFIX_LINE_LIMIT {
        return std::borrow::Cow::Borrowed(text);
    }
    // Physical lines as (start, end of content, end with terminator).
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, &b) in text.iter().enumerate() {
        if b == b'\n' {
            let end = if i > start && text[i - 1] == b'\r' { i - 1 } else { i };
            lines.push((start, end, i + 1));
            start = i + 1;
        }
    }
    if start < text.len() {
        lines.push((start, text.len(), text.len()));
    }
    let joins = |k: usize| -> bool {
        let (s, e, _) = lines[k];
        e - s == POSTFIX_LINE_LIMIT && lines.get(k + 1).is_some_and(|&(n, _, _)| text.get(n) == Some(&b' '))
    };
    let mut out = Vec::with_capacity(text.len());
    let mut continued = false;
    for (k, &(s, e, t)) in lines.iter().enumerate() {
        out.extend_from_slice(&text[if continued { s + 1 } else { s }..e]);
        continued = joins(k);
        if !continued {
            out.extend_from_slice(&text[e..t]);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The relaxed canonical form of one header field (`name:value` without a line end) from its
/// raw text (`Name: value` with any folding, as it stands in the message).
pub fn relaxed_header(raw_field: &[u8]) -> Vec<u8> {
    let field = undo_postfix_breaks(raw_field);
    let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    let name = field[..colon].trim_ascii().to_ascii_lowercase();
    let mut out = name;
    out.push(b':');
    let value = field.get(colon + 1..).unwrap_or(&[]);
    let mut wsp = false;
    let mut started = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => wsp = true,
            _ => {
                if wsp && started {
                    out.push(b' ');
                }
                wsp = false;
                started = true;
                out.push(b);
            }
        }
    }
    out
}

/// Hashes of the bound header fields, one per name that occurs, each over every occurrence
/// in order (`name:value\r\n` each, relaxed). Fed field by field, so a hostile message with
/// a million `To:` lines costs one running hash.
#[derive(Clone)]
pub struct HeaderHasher {
    hashes: [Option<Sha256>; BOUND_HEADERS.len()],
}

impl Default for HeaderHasher {
    fn default() -> Self {
        Self { hashes: std::array::from_fn(|_| None) }
    }
}

impl HeaderHasher {
    /// The index of a bound name, case-insensitively.
    pub fn bound_index(name: &str) -> Option<usize> {
        let name = name.trim();
        BOUND_HEADERS.iter().position(|b| b.eq_ignore_ascii_case(name))
    }

    /// Adds one field (raw text `Name: value`, folding included), when its name is bound.
    pub fn add(&mut self, name: &str, raw_field: &[u8]) {
        if let Some(i) = Self::bound_index(name) {
            let h = self.hashes[i].get_or_insert_with(Sha256::new);
            h.update(relaxed_header(raw_field));
            h.update(b"\r\n");
        }
    }

    /// Forgets every occurrence of one bound name (a header the milter deletes).
    pub fn forget(&mut self, name: &str) {
        if let Some(i) = Self::bound_index(name) {
            self.hashes[i] = None;
        }
    }

    /// `from=<hex> to=<hex> …` in [`BOUND_HEADERS`] order, present names only.
    pub fn finish(self) -> String {
        self.finish_only(&BOUND_HEADERS)
    }

    /// [`Self::finish`] restricted to `names` (e.g. [`TOKEN_HEADERS`]).
    pub fn finish_only(self, names: &[&str]) -> String {
        self.hashes
            .into_iter()
            .zip(BOUND_HEADERS)
            .filter(|(_, name)| names.contains(name))
            .filter_map(|(h, name)| {
                h.map(|h| format!("{name}={}", &hex::encode(h.finalize())[..HEADER_HASH_HEX]))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The names whose hashes differ between two `Header-Hash` values (for the verifier's
/// report): a name in one and not the other counts as changed.
pub fn changed_headers(signed: &str, actual: &str) -> Vec<String> {
    let parse = |s: &str| -> Vec<(String, String)> {
        s.split_whitespace()
            .filter_map(|kv| {
                kv.split_once('=').map(|(k, v)| (k.to_ascii_lowercase(), v.to_ascii_lowercase()))
            })
            .collect()
    };
    let (a, b) = (parse(signed), parse(actual));
    BOUND_HEADERS
        .iter()
        .filter(|name| {
            let x = a.iter().find(|(k, _)| k == *name).map(|(_, v)| v);
            let y = b.iter().find(|(k, _)| k == *name).map(|(_, v)| v);
            x != y
        })
        .map(|n| (*n).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6376 §3.4.6's example body, relaxed: " C \r\nD E\r\n".
    #[test]
    fn rfc6376_example() {
        let body = b" C \r\nD \t E\r\n\r\n\r\n";
        assert_eq!(body_hash(body), hex::encode(Sha256::digest(b" C\r\nD E\r\n")));
        assert_eq!(
            relaxed_header(b"A: X"),
            b"a:X".to_vec(),
            "header: lowercase name, no space around the colon"
        );
        assert_eq!(relaxed_header(b"B : Y\t\r\n\tZ  "), b"b:Y Z".to_vec());
    }

    #[test]
    fn empty_and_unterminated_bodies() {
        assert_eq!(body_hash(b""), hex::encode(Sha256::digest(b"")));
        assert_eq!(body_hash(b"\r\n\r\n"), hex::encode(Sha256::digest(b"")));
        assert_eq!(body_hash(b"x"), body_hash(b"x\r\n"));
        assert_eq!(body_hash(b"x\n"), body_hash(b"x\r\n"), "LF and CRLF are the same line end");
        assert_ne!(body_hash(b"x\ry\r\n"), body_hash(b"xy\r\n"), "a bare CR is content");
    }

    #[test]
    fn line_structure_counts() {
        let base = body_hash(b"Hello=\r\nworld\r\n");
        assert_ne!(body_hash(b"Hello=world\r\n"), base, "a removed soft break changes the hash");
        assert_ne!(body_hash(b"a b\r\n"), body_hash(b"ab\r\n"), "whitespace between words counts");
        assert_ne!(body_hash(b"--b\r\nx\r\n"), body_hash(b"--bx\r\n"));
        assert_eq!(body_hash(b"a  b \r\n"), body_hash(b"a b\r\n"), "runs and trailing WSP do not");
    }

    #[test]
    fn postfix_line_breaks_are_undone() {
        let long: Vec<u8> = (0..2500).map(|i| b'a' + (i % 26) as u8).collect();
        let mut original = b"short\r\n".to_vec();
        original.extend_from_slice(&long);
        original.extend_from_slice(b"\r\nend\r\n");
        // What Postfix's LMTP client sent: 998 octets, then CRLF SP + 997, and so on.
        let mut broken = b"short\r\n".to_vec();
        broken.extend_from_slice(&long[..998]);
        broken.extend_from_slice(b"\r\n ");
        broken.extend_from_slice(&long[998..1995]);
        broken.extend_from_slice(b"\r\n ");
        broken.extend_from_slice(&long[1995..]);
        broken.extend_from_slice(b"\r\nend\r\n");
        assert_eq!(body_hash(&broken), body_hash(&original));
        assert_eq!(undo_postfix_breaks(&broken).as_ref(), original.as_slice());
        // One octet short of the limit is a real line end followed by an indented line.
        let mut near = long[..997].to_vec();
        near.extend_from_slice(b"\r\n x\r\n");
        let mut joined = long[..997].to_vec();
        joined.extend_from_slice(b"x\r\n");
        assert_ne!(body_hash(&near), body_hash(&joined));
        assert_eq!(undo_postfix_breaks(&near).as_ref(), near.as_slice());
        // Chunking never changes the result.
        let mut h = BodyHasher::new();
        for c in broken.chunks(7) {
            h.update(c);
        }
        assert_eq!(h.finish(), body_hash(&original));
    }

    #[test]
    fn long_header_fields_survive() {
        let mut field = b"Subject: ".to_vec();
        field.extend(std::iter::repeat_n(b'S', 1500));
        let mut broken = field[..998].to_vec();
        broken.extend_from_slice(b"\r\n ");
        broken.extend_from_slice(&field[998..]);
        assert_eq!(relaxed_header(&broken), relaxed_header(&field));
        let mut h1 = HeaderHasher::default();
        h1.add("Subject", &field);
        let mut h2 = HeaderHasher::default();
        h2.add("SUBJECT", &broken);
        assert_eq!(h1.finish(), h2.finish());
    }

    #[test]
    fn header_hashes_name_what_changed() {
        let mut a = HeaderHasher::default();
        a.add("From", b"From: a@x.test");
        a.add("Subject", b"Subject: hi");
        a.add("X-Other", b"X-Other: ignored");
        let signed = a.finish();
        assert!(signed.starts_with("from=") && signed.contains(" subject="), "{signed}");
        assert_eq!(signed.split(' ').count(), 2);
        let mut b = HeaderHasher::default();
        b.add("From", b"From:   a@x.test  ");
        b.add("Subject", b"Subject: hi!");
        b.add("Reply-To", b"Reply-To: evil@x.test");
        assert_eq!(changed_headers(&signed, &b.finish()), vec!["reply-to".to_owned(), "subject".to_owned()]);
        let mut c = HeaderHasher::default();
        c.add("Subject", b"Subject: one");
        c.add("Subject", b"Subject: two");
        let mut d = HeaderHasher::default();
        d.add("Subject", b"Subject: one");
        assert_ne!(c.clone().finish(), d.finish(), "a second occurrence changes the hash");
        c.forget("subject");
        assert_eq!(c.finish(), "");
    }
}
