//! Printing for people and for scripts. People get aligned tables with a bold header and
//! colour, only when stdout is a terminal (and `NO_COLOR` is unset); a pipe gets the same
//! rows tab-separated, without header or colour, like `gh`. `--json` prints the API's own
//! objects, one per line. Text that came from mail (a subject, a sender) never reaches a
//! terminal with its control characters: a hostile sender cannot move the cursor or retitle
//! the window of the person reading.

use serde_json::Value;
use std::io::{IsTerminal, Write};

pub struct Out {
    pub json: bool,
    tty: bool,
    color: bool,
    progress: bool,
}

/// A table column: its header and how a row shows in it.
pub struct Col {
    pub head: &'static str,
    pub get: fn(&Value) -> String,
}

/// Widest a column gets on a terminal before it is cut with `…`.
const MAX_CELL: usize = 60;

impl Out {
    pub fn new(json: bool) -> Out {
        let tty = std::io::stdout().is_terminal();
        let color = tty
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::env::var("TERM").map_or(true, |t| t != "dumb");
        Out { json, tty, color, progress: std::io::stderr().is_terminal() }
    }

    /// One JSON value on one line.
    pub fn json_line(&self, v: &Value) {
        line(&v.to_string());
    }

    /// Rows: a table for people, NDJSON for `--json`.
    pub fn table(&self, rows: &[Value], cols: &[Col]) {
        if self.json {
            rows.iter().for_each(|r| self.json_line(r));
            return;
        }
        let cells: Vec<Vec<String>> =
            rows.iter().map(|r| cols.iter().map(|c| clean((c.get)(r), true)).collect()).collect();
        if !self.tty {
            cells.iter().for_each(|r| line(&r.join("\t")));
            return;
        }
        if rows.is_empty() {
            eprintln!("(none)");
            return;
        }
        let cells: Vec<Vec<String>> =
            cells.into_iter().map(|r| r.into_iter().map(|c| cut(&c, MAX_CELL)).collect()).collect();
        let widths: Vec<usize> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| cells.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(c.head.len()))
            .collect();
        let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
        let head: Vec<String> = cols.iter().zip(&widths).map(|(c, w)| pad(c.head, *w)).collect();
        line(&self.bold(head.join("  ").trim_end()));
        for r in &cells {
            let row: Vec<String> = r.iter().zip(&widths).map(|(c, w)| pad(c, *w)).collect();
            line(row.join("  ").trim_end());
        }
    }

    /// One object: `--json` prints it, people get `label  value` lines.
    pub fn fields(&self, v: &Value, pairs: &[(&str, String)]) {
        if self.json {
            return self.json_line(v);
        }
        let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, value) in pairs {
            let k = format!("{k:<width$}");
            // One line per field: a subject decoding to a newline cannot add a fake line.
            line(&format!("{}  {}", self.bold(&k), clean(value.clone(), true)));
        }
    }

    /// Free text from a message (a body) for people: control characters other than line
    /// ends and tabs are shown as `?` on a terminal; a pipe gets the text as it is.
    pub fn text(&self, s: &str) {
        if self.tty {
            line(&clean(s.to_owned(), false));
        } else {
            line(s);
        }
    }

    pub fn bold(&self, s: &str) -> String {
        self.paint(s, "1")
    }

    pub fn green(&self, s: &str) -> String {
        self.paint(s, "32")
    }

    pub fn yellow(&self, s: &str) -> String {
        self.paint(s, "33")
    }

    pub fn red(&self, s: &str) -> String {
        self.paint(s, "31")
    }

    fn paint(&self, s: &str, code: &str) -> String {
        if self.color { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_owned() }
    }

    /// A progress line on stderr while waiting, overwritten in place; only on a terminal.
    pub fn progress(&self, msg: &str) {
        if self.progress && !self.json {
            eprint!("\r\x1b[2K{msg}");
            let _ = std::io::stderr().flush();
        }
    }

    /// Clears the progress line.
    pub fn progress_done(&self) {
        if self.progress && !self.json {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}

/// Writes one line on stdout (flushed, for streams). A closed pipe (`| head`) ends the
/// output, not the program with a panic as `println!` would.
pub fn line(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

/// Writes bytes on stdout as they are (a raw message, an attachment).
pub fn bytes(b: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(b);
    let _ = out.flush();
}

/// Whether stdout is a terminal.
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// `s` with control characters replaced: in a cell (`one_line`) every one becomes a space;
/// in text, line ends and tabs stay and the others (ESC included) become `?`.
pub fn clean(s: String, one_line: bool) -> String {
    if !s.chars().any(|c| c.is_control() || is_bidi(c)) {
        return s;
    }
    s.chars()
        .map(|c| match c {
            '\n' | '\t' if !one_line => c,
            c if one_line && c.is_control() => ' ',
            c if c.is_control() || is_bidi(c) => '?',
            c => c,
        })
        .collect()
}

/// Unicode bidirectional overrides, which make a terminal show text in another order.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

/// A string field, or `-`.
pub fn s(v: &Value) -> String {
    match v {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Null | Value::String(_) => "-".into(),
        other => other.to_string(),
    }
}

/// An array of strings joined with `, `, or `-`.
pub fn list(v: &Value) -> String {
    let items: Vec<&str> =
        v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if items.is_empty() { "-".into() } else { items.join(", ") }
}

/// A timestamp shortened to the second: `2026-12-07 11:40:24`.
pub fn when(v: &Value) -> String {
    match v.as_str().and_then(|t| Some((t.get(..10)?, t.get(11..19)?))) {
        Some((day, time)) => format!("{day} {time}"),
        None => s(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_cannot_drive_the_terminal() {
        let subject = "Invoice\x1b]0;pwned\x07\r\n\tnow\u{202E}txt.exe".to_owned();
        assert_eq!(clean(subject.clone(), true), "Invoice ]0;pwned    now?txt.exe");
        assert_eq!(clean(subject, false), "Invoice?]0;pwned??\n\tnow?txt.exe");
        assert_eq!(clean("plain".into(), true), "plain");
    }

    #[test]
    fn cells() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(s(&Value::Null), "-");
        assert_eq!(s(&serde_json::json!(3)), "3");
        assert_eq!(list(&serde_json::json!(["a@x", "b@x"])), "a@x, b@x");
        assert_eq!(when(&serde_json::json!("2026-12-07T11:40:24.123Z")), "2026-12-07 11:40:24");
        assert_eq!(
            when(&serde_json::json!("2026-12-0ééé:40:24.123Z")),
            "2026-12-0ééé:40:24.123Z",
            "never a panic"
        );
    }
}
