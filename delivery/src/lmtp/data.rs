//! The DATA phase: undoing dot-stuffing, finding the end of the message, capping its size.
//!
//! The decoder is a push parser over the session's input buffer, so a message of any shape
//! (huge lines, a terminator split across reads) is handled with bounded memory and no
//! socket in the unit tests.

use bytes::{Buf, Bytes, BytesMut};

/// Bytes of the message kept after the size limit is exceeded: enough for the header block,
/// so the queue id of a refused message still reaches the log.
const KEEP_AFTER_OVERFLOW: usize = 32 * 1024;

/// Decodes the DATA stream of RFC 5321 §4.1.1.4 / §4.5.2.
///
/// Line boundaries are CRLF only: a `.` after a bare LF is content, not the terminator, and
/// is not unstuffed. Postfix always sends CRLF, and treating bare LF as a line end is what
/// makes SMTP smuggling (`\n.\n`) possible between parsers that disagree.
#[derive(Debug)]
pub(crate) struct DotDecoder {
    body: BytesMut,
    /// Octets of the unstuffed message, also counted past the limit.
    size: usize,
    limit: usize,
    at_line_start: bool,
    /// The last content octet was CR, so a following LF ends a line.
    after_cr: bool,
}

/// What [`DotDecoder::feed`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The terminating `.` line is not in the buffer yet; read more.
    NeedMore,
    /// The message ended; the buffer holds only what followed the terminator.
    Done,
}

/// A complete message as received.
#[derive(Debug)]
pub(crate) struct Message {
    /// The message (unstuffed, CRLF as received), or only its beginning when `too_big`.
    pub data: Bytes,
    /// Its full unstuffed size in octets.
    pub size: usize,
    pub too_big: bool,
}

impl DotDecoder {
    /// `limit` is the largest message accepted, in octets after unstuffing.
    pub fn new(limit: usize, size_hint: Option<u64>) -> Self {
        // Trust the SIZE hint only up to the limit, and never preallocate much.
        let capacity = size_hint.map_or(16 * 1024, |s| s.min(limit as u64) as usize).min(1 << 20);
        DotDecoder {
            body: BytesMut::with_capacity(capacity),
            size: 0,
            limit,
            at_line_start: true,
            after_cr: false,
        }
    }

    /// Consumes message octets from the front of `input`.
    pub fn feed(&mut self, input: &mut BytesMut) -> Progress {
        loop {
            if input.is_empty() {
                return Progress::NeedMore;
            }
            if self.at_line_start && input[0] == b'.' {
                // Two more octets decide between the terminator `.CRLF` and a stuffed dot.
                match input.get(1..3) {
                    Some(b"\r\n") => {
                        input.advance(3);
                        return Progress::Done;
                    }
                    None if input.get(1).is_none_or(|&b| b == b'\r') => return Progress::NeedMore,
                    // RFC 5321 §4.5.2: drop the first dot of a line that starts with one.
                    _ => {
                        input.advance(1);
                        self.after_cr = false;
                    }
                }
            }
            self.at_line_start = false;
            match input.iter().position(|&b| b == b'\n') {
                Some(lf) => {
                    let line = input.split_to(lf + 1);
                    self.at_line_start = if lf == 0 { self.after_cr } else { line[lf - 1] == b'\r' };
                    self.push(&line);
                    self.after_cr = false;
                }
                None => {
                    let chunk = input.split();
                    self.after_cr = chunk.last() == Some(&b'\r');
                    self.push(&chunk);
                }
            }
        }
    }

    fn push(&mut self, octets: &[u8]) {
        self.size = self.size.saturating_add(octets.len());
        if self.size <= self.limit {
            self.body.extend_from_slice(octets);
        } else if self.body.len() < KEEP_AFTER_OVERFLOW {
            let room = KEEP_AFTER_OVERFLOW - self.body.len();
            self.body.extend_from_slice(&octets[..room.min(octets.len())]);
        }
    }

    /// The octets counted so far exceed the limit.
    pub fn too_big(&self) -> bool {
        self.size > self.limit
    }

    pub fn finish(self) -> Message {
        let too_big = self.too_big();
        Message { data: self.body.freeze(), size: self.size, too_big }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `parts` one by one (as separate reads would deliver them).
    fn decode(limit: usize, parts: &[&[u8]]) -> (Progress, Message, Vec<u8>) {
        let mut d = DotDecoder::new(limit, None);
        let mut input = BytesMut::new();
        let mut progress = Progress::NeedMore;
        for part in parts {
            input.extend_from_slice(part);
            progress = d.feed(&mut input);
            if progress == Progress::Done {
                break;
            }
        }
        (progress, d.finish(), input.to_vec())
    }

    #[test]
    fn unstuffs_and_stops_at_the_lone_dot() {
        let (p, m, rest) = decode(1000, &[b"Subject: x\r\n\r\n..leading\r\n", b"mid\r\n.\r\nQUIT\r\n"]);
        assert_eq!(p, Progress::Done);
        assert_eq!(&m.data[..], b"Subject: x\r\n\r\n.leading\r\nmid\r\n");
        assert_eq!(rest, b"QUIT\r\n");
    }

    #[test]
    fn escaped_lone_dot_is_content() {
        let (p, m, rest) = decode(1000, &[b"a\r\n..\r\nb\r\n.\r\nNOOP\r\n"]);
        assert_eq!(p, Progress::Done);
        assert_eq!(&m.data[..], b"a\r\n.\r\nb\r\n");
        assert_eq!(m.size, 9);
        assert_eq!(rest, b"NOOP\r\n");
    }

    #[test]
    fn terminator_split_across_reads() {
        for split in 0..=8 {
            let all: &[u8] = b"x\r\n..y\r\n.\r\n";
            let (a, b) = all.split_at(split.min(all.len()));
            let (p, m, rest) = decode(1000, &[a, b]);
            assert_eq!(p, Progress::Done, "split at {split}");
            assert_eq!(&m.data[..], b"x\r\n.y\r\n", "split at {split}");
            assert!(rest.is_empty());
        }
        // CR and LF of a line ending in different reads.
        let (p, m, _) = decode(1000, &[b"x\r", b"\n.", b"\r", b"\n"]);
        assert_eq!(p, Progress::Done);
        assert_eq!(&m.data[..], b"x\r\n");
    }

    #[test]
    fn empty_message_and_bare_lf() {
        let (p, m, _) = decode(1000, &[b".\r\n"]);
        assert_eq!((p, m.size), (Progress::Done, 0));
        // `\n.\n` and `\n.\r\n` after a bare LF are content (no smuggling); only CRLF.CRLF ends.
        let (p, m, _) = decode(1000, &[b"a\n.\nb\n.\r\nc\r\n.\r\n"]);
        assert_eq!(p, Progress::Done);
        assert_eq!(&m.data[..], b"a\n.\nb\n.\r\nc\r\n");
        let (p, _, _) = decode(1000, &[b"a\r\n.\n"]);
        assert_eq!(p, Progress::NeedMore);
    }

    #[test]
    fn long_lines_without_lf_are_streamed() {
        let long = vec![b'x'; 100_000];
        let (p, m, _) = decode(1_000_000, &[b".", &long, &long, b"\r\n.\r\n"]);
        assert_eq!(p, Progress::Done);
        assert_eq!(m.size, 200_002);
    }

    #[test]
    fn over_the_limit_counts_on_and_keeps_the_head() {
        let line = [b'y'; 98].iter().chain(b"\r\n").copied().collect::<Vec<u8>>();
        let mut input = Vec::new();
        for _ in 0..1000 {
            input.extend_from_slice(&line);
        }
        input.extend_from_slice(b".\r\n");
        let (p, m, _) = decode(50_000, &[&input]);
        assert_eq!(p, Progress::Done);
        assert!(m.too_big);
        assert_eq!(m.size, 100_000);
        assert_eq!(m.data.len(), KEEP_AFTER_OVERFLOW.max(50_000));
        let (_, m, _) = decode(100_000, &[&input]);
        assert!(!m.too_big);
    }
}
