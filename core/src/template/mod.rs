//! Stored mail templates (contract beta): e2a's flat Mustache subset and its starter catalog.
//!
//! The language is `{{name}}` and `{{{name}}}`, with dot paths into nested data
//! (`{{user.name}}`). Nothing else: sections, partials, comments and delimiter changes are
//! parse errors, so a template can never loop or recurse. Subject and text are never escaped;
//! in the HTML part `{{x}}` is HTML-escaped and `{{{x}}}` is inserted raw. A missing value, an
//! object, an array or null renders as nothing. Every input is capped: the source
//! ([`MAX_SOURCE`]), the data's nesting ([`MAX_DEPTH`]) and each rendered part
//! ([`MAX_RENDERED`]).

pub mod starters;

use serde_json::{Map, Value};

/// A template part's source, in bytes.
pub const MAX_SOURCE: usize = 256 * 1024;
/// Objects and arrays in `template_data`, nested.
pub const MAX_DEPTH: usize = 8;
/// One rendered part, in bytes.
pub const MAX_RENDERED: usize = 2 * 1024 * 1024;
/// A variable's name, in bytes.
pub const MAX_NAME: usize = 256;
/// Dot-separated segments of a variable's path (data deeper than [`MAX_DEPTH`] is refused, so
/// a longer path could never resolve).
pub const MAX_SEGMENTS: usize = 16;
/// Distinct variables of one part.
pub const MAX_VARIABLES: usize = 1000;

/// Which part a source is: it decides the escaping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Subject,
    Text,
    Html,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Subject => "subject",
            Part::Text => "text",
            Part::Html => "html",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Literal(&'a str),
    Var { path: &'a str, raw: bool },
}

/// A parsed source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template<'a> {
    pieces: Vec<Piece<'a>>,
    /// Each variable once, in first-appearance order.
    variables: Vec<&'a str>,
}

fn at(offset: usize, msg: impl std::fmt::Display) -> String {
    format!("template parse error at byte {offset}: {msg}")
}

fn identifier(tag: &str) -> bool {
    let mut chars = tag.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Parses `src`; the error names the byte offset of the offending tag, as e2a's does.
pub fn parse(src: &str) -> Result<Template<'_>, String> {
    if src.len() > MAX_SOURCE {
        return Err(format!("template too large: {} bytes (max {MAX_SOURCE})", src.len()));
    }
    let mut pieces = Vec::new();
    let mut variables = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut rest = 0;
    while let Some(found) = src[rest..].find("{{") {
        let open = rest + found;
        if open > rest {
            pieces.push(Piece::Literal(&src[rest..open]));
        }
        let raw = src[open + 2..].starts_with('{');
        let (body_at, close) = if raw { (open + 3, "}}}") } else { (open + 2, "}}") };
        let Some(len) = src[body_at..].find(close) else {
            return Err(at(open, format!("unclosed {:?} tag", if raw { "{{{" } else { "{{" })));
        };
        let tag = src[body_at..body_at + len].trim();
        if tag.is_empty() {
            return Err(at(open, "empty tag"));
        }
        if let Some(sigil) = tag.chars().next().filter(|c| "#/^>!".contains(*c)) {
            return Err(at(
                open,
                format!("reserved syntax \"{{{{{sigil}…}}}}\": sections/partials/comments are not supported"),
            ));
        }
        if tag.len() > MAX_NAME || tag.split('.').count() > MAX_SEGMENTS {
            return Err(at(
                open,
                format!("variable name too long (at most {MAX_NAME} bytes, {MAX_SEGMENTS} segments)"),
            ));
        }
        if !identifier(tag) {
            return Err(at(open, format!("invalid identifier {tag:?}: expected [a-zA-Z_][a-zA-Z0-9_.]*")));
        }
        if seen.insert(tag) {
            if variables.len() == MAX_VARIABLES {
                return Err(at(open, format!("more than {MAX_VARIABLES} distinct variables")));
            }
            variables.push(tag);
        }
        pieces.push(Piece::Var { path: tag, raw });
        rest = body_at + len + close.len();
    }
    if rest < src.len() {
        pieces.push(Piece::Literal(&src[rest..]));
    }
    Ok(Template { pieces, variables })
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Checks `data` once before rendering with it.
pub fn check_data(data: &Value) -> Result<(), String> {
    if depth(data) > MAX_DEPTH {
        return Err(format!("template_data nests deeper than {MAX_DEPTH} levels"));
    }
    Ok(())
}

fn lookup<'v>(data: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(data, |v, key| v.as_object()?.get(key))
}

/// `&`, `<`, `>`, `"` and `'`, as e2a (Go's `html.EscapeString`) escapes them.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

impl Template<'_> {
    /// Renders with `data` (already [`check_data`]ed).
    pub fn render(&self, data: &Value, part: Part) -> Result<String, String> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Var { path, raw } => {
                    let text = match lookup(data, path) {
                        Some(Value::String(s)) => s.clone(),
                        // serde_json keeps a number's text (arbitrary_precision is not needed:
                        // integers and decimals print as they were written for common values).
                        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                        _ => String::new(),
                    };
                    if part == Part::Html && !raw {
                        escape_into(&mut out, &text);
                    } else {
                        out.push_str(&text);
                    }
                }
            }
            if out.len() > MAX_RENDERED {
                return Err(format!("rendered output exceeds {MAX_RENDERED} bytes"));
            }
        }
        Ok(out)
    }

    /// The variables it names, first appearance first, each once.
    pub fn variables(&self) -> &[&str] {
        &self.variables
    }
}

/// A placeholder for every variable: `{{user.name}}` becomes `{"user": {"name":
/// "user.name_value"}}`; the first path to claim a name wins.
pub fn suggested_data<'a>(variables: impl IntoIterator<Item = &'a str>) -> Map<String, Value> {
    let mut root = Map::new();
    for path in variables {
        let keys: Vec<&str> = path.split('.').collect();
        let Some((last, parents)) = keys.split_last() else { continue };
        // Walk (or make) the parents; a scalar already in the way means an earlier path won.
        let mut node = Some(&mut root);
        for key in parents {
            node = node.and_then(|n| {
                match n.entry((*key).to_owned()).or_insert_with(|| Value::Object(Map::new())) {
                    Value::Object(next) => Some(next),
                    _ => None,
                }
            });
        }
        if let Some(n) = node {
            n.entry((*last).to_owned()).or_insert_with(|| Value::String(format!("{path}_value")));
        }
    }
    root
}

/// A part that failed: which one and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartError {
    pub part: Part,
    pub message: String,
}

/// Subject, text and (optional) HTML rendered with one set of data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// Renders a stored template's three parts: the first failure stops it.
pub fn render_all(
    subject: &str,
    text: &str,
    html: Option<&str>,
    data: &Value,
) -> Result<Rendered, PartError> {
    let fail = |part: Part| move |message: String| PartError { part, message };
    check_data(data).map_err(fail(Part::Subject))?;
    let one = |src: &str, part: Part| parse(src).and_then(|t| t.render(data, part)).map_err(fail(part));
    Ok(Rendered {
        subject: one(subject, Part::Subject)?,
        text: one(text, Part::Text)?,
        html: html.filter(|h| !h.is_empty()).map(|h| one(h, Part::Html)).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, data: Value, part: Part) -> String {
        parse(src).expect("parses").render(&data, part).expect("renders")
    }

    #[test]
    fn renders_paths_and_escapes_only_html_double_braces() {
        let data =
            json!({"name": "A&B", "plan": {"tier": "pro"}, "markup": "<i>hi</i>", "n": 1.5, "ok": true});
        assert_eq!(render("Hi {{name}}, {{ plan.tier }}", data.clone(), Part::Text), "Hi A&B, pro");
        assert_eq!(
            render("<p>Hi {{name}}: {{{markup}}}</p>", data.clone(), Part::Html),
            "<p>Hi A&amp;B: <i>hi</i></p>"
        );
        assert_eq!(render("{{markup}}", data.clone(), Part::Subject), "<i>hi</i>");
        assert_eq!(
            render("{{n}} {{ok}} [{{missing}}] [{{plan}}] [{{name.x}}]", data, Part::Text),
            "1.5 true [] [] []"
        );
        assert_eq!(render(r#"{{q}}"#, json!({"q": "<'\">"}), Part::Html), "&lt;&#39;&#34;&gt;");
    }

    #[test]
    fn literal_braces_pass_through() {
        let v = json!({"x": "v"});
        assert_eq!(render("a { b } c }} d }}} e", v.clone(), Part::Text), "a { b } c }} d }}} e");
        assert_eq!(render("{{x}}}", v.clone(), Part::Text), "v}");
        assert_eq!(render("{{{x}}}}", v.clone(), Part::Text), "v}");
        assert_eq!(render("}{{x}}", v, Part::Text), "}v");
    }

    #[test]
    fn everything_but_variables_is_a_parse_error_naming_the_byte() {
        for (src, want) in [
            ("Hi {{name", "at byte 3: unclosed \"{{\" tag"),
            ("{{{name}}", "at byte 0: unclosed \"{{{\" tag"),
            ("x {{ }}", "at byte 2: empty tag"),
            ("{{#each}}", "reserved syntax"),
            ("{{ >partial }}", "reserved syntax"),
            ("{{!comment}}", "reserved syntax"),
            ("{{a b}}", "invalid identifier"),
            ("{{1x}}", "invalid identifier"),
            ("{{&x}}", "invalid identifier"),
        ] {
            let err = parse(src).expect_err(src);
            assert!(err.contains(want), "{src}: {err}");
        }
        let huge = "x".repeat(MAX_SOURCE + 1);
        assert!(parse(&huge).expect_err("too large").starts_with("template too large"));
        // A path deep enough to blow a stack, and more names than any template needs.
        let deep = format!("{{{{{}}}}}", vec!["a"; 100_000].join("."));
        assert!(parse(&deep).expect_err("deep").contains("too long"));
        let many: String = (0..=MAX_VARIABLES).map(|i| format!("{{{{v{i}}}}}")).collect();
        assert!(parse(&many).expect_err("many").contains("distinct variables"));
        let repeated = "{{v}}".repeat(50_000);
        assert_eq!(parse(&repeated).expect("one variable, many uses").variables(), ["v"]);
    }

    #[test]
    fn hostile_data_and_output_are_capped() {
        let mut deep = json!("x");
        for _ in 0..=MAX_DEPTH {
            deep = json!({ "a": deep });
        }
        assert!(check_data(&deep).is_err());
        // 256 KiB of tags each expanding to 64 KiB: refused at the output cap, not after.
        let src = "{{big}}".repeat(MAX_SOURCE / 8);
        let data = json!({"big": "y".repeat(64 * 1024)});
        let err = parse(&src).expect("parses").render(&data, Part::Text).expect_err("capped");
        assert!(err.contains("exceeds"), "{err}");
    }

    #[test]
    fn suggests_nested_data_in_first_appearance_order() {
        let t = parse("{{user.name}} {{a}} {{user.name}} {{{a}}} {{a.b}}").expect("parses");
        assert_eq!(t.variables(), ["user.name", "a", "a.b"]);
        let s = Value::Object(suggested_data(t.variables().iter().copied()));
        assert_eq!(s, json!({"user": {"name": "user.name_value"}, "a": "a_value"}));
    }
}
