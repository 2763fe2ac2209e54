//! Checks on the request before the body is read as a declaration, and the strict parse of
//! the body itself. [`parse_declaration`] is public so that the fuzz target (`fuzz/`) runs the
//! very path `handle` runs.

use axum::http::{header, HeaderMap};
use ehac_domain::{DeclarationForm, FieldError};

/// JSON nested deeper than this is refused before parsing. A declaration is 3 levels deep;
/// serde_json's own limit (128) would stop a deeper document too, but without naming where.
pub const MAX_DEPTH: usize = 32;

/// Whether the request says its body is JSON (`application/json`, any parameters, any case).
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Whether a batch request says its body is newline-delimited JSON (`application/x-ndjson`):
/// one declaration per line.
pub fn is_ndjson(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/x-ndjson")
}

/// Why a body is not a declaration: the gateway answers 400 `malformed_json` with
/// [`ParseError::field_error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nested deeper than [`MAX_DEPTH`] at `path`.
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep { path: String },
    /// Not JSON, bad UTF-8, a wrong type, an unknown field or a duplicate key, at `path`
    /// (empty for the document itself).
    #[error("the body is not a valid declaration: {message}")]
    Malformed { path: String, message: String },
}

impl ParseError {
    /// The one entry of the answer's `errors` list.
    pub fn field_error(&self) -> FieldError {
        match self {
            ParseError::TooDeep { path } => FieldError { code: "too_deep".into(), field: path.clone(), message: self.to_string() },
            ParseError::Malformed { path, message } => {
                FieldError { code: "malformed_json".into(), field: path.clone(), message: message.clone() }
            }
        }
    }
}

/// Reads a request body as a declaration form, strictly: the depth check first (so a deep
/// document is refused with its path and before serde recurses), then serde_json with the
/// JSON path of the first error. The form's own rules are `ehac_domain::validate`'s.
pub fn parse_declaration(body: &[u8]) -> Result<DeclarationForm, ParseError> {
    if let Some(path) = too_deep(body, MAX_DEPTH) {
        return Err(ParseError::TooDeep { path });
    }
    parse_located(body)
}

/// serde_json, and only when it fails a second parse with serde_path_to_error for the JSON
/// path of the error: tracking the path on every key and value was a large part of the parse's
/// cost, paid by every valid body for the rare invalid one. Both parses
/// read the same bytes with the same rules, so they fail at the same place; like the tracked
/// parse alone, neither looks past the end of the value.
///
/// A body that is valid UTF-8 as a whole (every one a client should send) is read as a `str`:
/// serde_json then checks no string's UTF-8 again, which cost far more than one check of the
/// whole body. Anything else takes the
/// byte path, whose error says where the bad bytes are.
fn parse_located<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ParseError> {
    let parsed = match std::str::from_utf8(body) {
        Ok(text) => serde::Deserialize::deserialize(&mut serde_json::Deserializer::from_str(text)),
        Err(_) => serde::Deserialize::deserialize(&mut serde_json::Deserializer::from_slice(body)),
    };
    if let Ok(value) = parsed {
        return Ok(value);
    }
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body)).map_err(|e| {
        let path = e.path().to_string();
        ParseError::Malformed { path: if path == "." { String::new() } else { path }, message: e.inner().to_string() }
    })
}

/// Reads a batch body: a JSON array of declaration forms, or with `ndjson` one form per line
/// (blank lines are skipped). As strict as [`parse_declaration`], and a form that does not
/// parse makes the whole body malformed: the error's path starts with the item's index
/// (`[3].trip.seat`). Forms that parse but break a rule are the batch's per-item rejections.
pub fn parse_batch(body: &[u8], ndjson: bool) -> Result<Vec<DeclarationForm>, ParseError> {
    if ndjson {
        let lines = body.split(|&b| b == b'\n').filter(|line| !line.iter().all(u8::is_ascii_whitespace));
        return lines
            .enumerate()
            .map(|(i, line)| {
                parse_declaration(line).map_err(|e| match e {
                    ParseError::TooDeep { path } => ParseError::TooDeep { path: item_path(i, &path) },
                    ParseError::Malformed { path, message } => ParseError::Malformed { path: item_path(i, &path), message },
                })
            })
            .collect();
    }
    // The array is one level more than a declaration.
    if let Some(path) = too_deep(body, MAX_DEPTH + 1) {
        return Err(ParseError::TooDeep { path });
    }
    parse_located(body)
}

fn item_path(index: usize, path: &str) -> String {
    if path.is_empty() {
        format!("[{index}]")
    } else {
        format!("[{index}].{path}")
    }
}

/// The path (`a.b[2]`) at which `body` first nests deeper than `max`, if it does. Only
/// brackets outside strings count; the rest of the syntax is left to the parser.
pub fn too_deep(body: &[u8], max: usize) -> Option<String> {
    // Nesting never goes deeper than the brackets the body opens, in strings or not: finding
    // them with memchr, at most `max + 1`, clears a declaration, which opens about ten, without
    // the byte-by-byte walk below, a noticeable part of a request's cost.
    // `?`: no bracket past the `max`th, so no nesting deeper than `max`.
    memchr::memchr2_iter(b'{', b'[', body).nth(max)?;
    // A batch opens hundreds: a bare depth count first, the walk only for the path.
    if !deeper_than(body, max) {
        return None;
    }
    walk_to_too_deep(body, max)
}

/// [`too_deep`] the slow way: every string, key and index tracked, for the path.
fn walk_to_too_deep(body: &[u8], max: usize) -> Option<String> {
    // A key is kept as where it is in `body` and only copied out for the path of a refusal:
    // a String per key was a noticeable part of a request's cost.
    enum Frame {
        Object { key: Option<std::ops::Range<usize>>, expecting_key: bool },
        Array { index: usize },
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < body.len() && body[i] != b'"' {
                    i += if body[i] == b'\\' { 2 } else { 1 };
                }
                if let Some(Frame::Object { key, expecting_key: expecting @ true }) = stack.last_mut() {
                    *key = Some(start..i.min(body.len()));
                    *expecting = false;
                }
            }
            open @ (b'{' | b'[') => {
                if stack.len() == max {
                    return Some(path(body, &stack));
                }
                stack.push(if open == b'{' { Frame::Object { key: None, expecting_key: true } } else { Frame::Array { index: 0 } });
            }
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { expecting_key, .. }) => *expecting_key = true,
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    return None;

    fn path(body: &[u8], stack: &[Frame]) -> String {
        let mut out = String::new();
        for frame in stack {
            match frame {
                Frame::Object { key: Some(key), .. } => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(&String::from_utf8_lossy(&body[key.clone()]));
                }
                Frame::Object { key: None, .. } => {}
                Frame::Array { index } => out.push_str(&format!("[{index}]")),
            }
        }
        out
    }
}

/// Whether `body` nests deeper than `max` outside strings: [`too_deep`]'s walk without its
/// keys and indexes, skipping each string to its closing quote with memchr. The full walk was a
/// large part of a batch's cost per declaration.
fn deeper_than(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &body[i.min(body.len())..]) {
                        // Unterminated: nothing after it is outside a string.
                        None => return false,
                        Some(at) if body[i + at] == b'\\' => i += at + 2,
                        Some(at) => {
                            i += at;
                            break;
                        }
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for (value, json) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/json-patch+json", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(is_json(&headers), json, "{value}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn a_batch_is_an_array_or_lines_and_a_bad_item_is_located() {
        let form = serde_json::to_string(&ehac_domain::sample::SampleGenerator::new(1).declaration(
            chrono::Utc::now(),
            "c",
            ehac_domain::sample::Flaw::None,
        ))
        .unwrap();
        let array = format!("[{form},{form}]");
        assert_eq!(parse_batch(array.as_bytes(), false).unwrap().len(), 2);
        let lines = format!("{form}\n\n{form}\r\n{form}\n");
        assert_eq!(parse_batch(lines.as_bytes(), true).unwrap().len(), 3);
        let bad = form.replacen("\"seat\"", "\"sear\"", 1);
        assert_ne!(bad, form);
        let Err(ParseError::Malformed { path, .. }) = parse_batch(format!("[{form},{bad}]").as_bytes(), false) else { panic!() };
        assert_eq!(path, "[1].trip.sear");
        let Err(ParseError::Malformed { path, .. }) = parse_batch(format!("{form}\n{bad}").as_bytes(), true) else { panic!() };
        assert_eq!(path, "[1].trip.sear");
        assert!(parse_batch(form.as_bytes(), false).is_err(), "a single object is not a batch");
        assert_eq!(parse_batch(b"[]", false).unwrap().len(), 0);
    }

    #[test]
    fn a_valid_body_parses_once_and_an_invalid_one_is_located() {
        let form = ehac_domain::sample::SampleGenerator::new(2).declaration(chrono::Utc::now(), "c", ehac_domain::sample::Flaw::None);
        let json = serde_json::to_string(&form).unwrap();
        assert_eq!(parse_declaration(json.as_bytes()).unwrap(), form);
        let unknown_field = json.replacen("\"seat\"", "\"sear\"", 1);
        assert_ne!(unknown_field, json);
        let Err(ParseError::Malformed { path, .. }) = parse_declaration(unknown_field.as_bytes()) else { panic!() };
        assert_eq!(path, "trip.sear");
        let wrong_type = json.replacen("\"traveller\":{", "\"traveller\":{\"full_name\":7,", 1);
        assert_ne!(wrong_type, json);
        let Err(ParseError::Malformed { path, .. }) = parse_declaration(wrong_type.as_bytes()) else { panic!() };
        assert_eq!(path, "traveller.full_name");
        let Err(ParseError::Malformed { path, .. }) = parse_declaration(b"7") else { panic!() };
        assert_eq!(path, "", "the document itself");
    }

    #[test]
    fn a_body_is_read_the_same_as_text_or_as_bytes_and_bad_utf8_in_a_string_is_located() {
        let mut form = ehac_domain::sample::SampleGenerator::new(3).declaration(chrono::Utc::now(), "c", ehac_domain::sample::Flaw::None);
        form.traveller.full_name = "Siti Nurhaliza \u{e9}\u{65e5}\u{1f600} \"q\" \\ \t".into();
        let json = serde_json::to_vec(&form).unwrap();
        assert_eq!(parse_declaration(&json).unwrap(), form, "the str path");
        let by_bytes: DeclarationForm = serde::Deserialize::deserialize(&mut serde_json::Deserializer::from_slice(&json)).unwrap();
        assert_eq!(by_bytes, form, "the byte path reads the same");

        // Bytes that are not UTF-8 inside a string: refused, with the field's path.
        let marker = b"Siti";
        let at = json.windows(marker.len()).position(|w| w == marker).unwrap();
        let mut bad = json.clone();
        bad[at] = 0xff;
        let Err(ParseError::Malformed { path, message }) = parse_declaration(&bad) else { panic!("invalid UTF-8 was accepted") };
        assert_eq!(path, "traveller.full_name");
        assert!(message.contains("unicode"), "{message}");
    }

    #[test]
    fn depth_is_counted_outside_strings_and_located() {
        assert_eq!(too_deep(br#"{"a": {"b": [1, {"c": 2}]}}"#, 4), None);
        assert_eq!(too_deep(br#"{"a": {"b": [1, {"c": 2}]}}"#, 3), Some("a.b[1]".into()));
        assert_eq!(too_deep(br#"{"a": {"b": [1, {"c": 2}]}}"#, 2), Some("a.b".into()));
        assert_eq!(too_deep(br#"{"a": "{{{[[[", "b\"{": 1}"#, 1), None, "brackets in strings do not count");
        assert_eq!(too_deep(br#"{"x": 1, "trip": [[], [0, [[]]]]}"#, 3), Some("trip[1][1]".into()));
        for body in [
            &br#"{"a": {"b": [1, {"c": 2}]}}"#[..],
            br#"{"a": "{{{[[[", "b\"{": 1}"#,
            br#"{"x": 1, "trip": [[], [0, [[]]]]}"#,
            br#"{"a": "\\", "b": [[["\\\"[[["]]]}"#,
            br#"]]]}}[[{"#,
            br#"[[["unterminated [[[["#,
            br#"[[["ends in an escape \"#,
        ] {
            for max in 0..8 {
                assert_eq!(deeper_than(body, max), walk_to_too_deep(body, max).is_some(), "{} at {max}", String::from_utf8_lossy(body));
            }
        }
        let deep = format!("{{\"traveller\": {}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(too_deep(deep.as_bytes(), MAX_DEPTH), Some(format!("traveller{}", "[0]".repeat(MAX_DEPTH - 1))));
    }
}
