//! The CGI convention (RFC 3875) both CGI runtimes share: `wagi` (a WASI preview1 module)
//! and `process` (a native program under bubblewrap) get the same meta-variables and
//! their stdout is parsed by the same code, so a function behaves the same on either.

use bytes::{Bytes, BytesMut};

use crate::RuntimeError;

/// Room for CGI headers on top of the response body limit.
pub(crate) const HEADER_ALLOWANCE: usize = 64 << 10;

/// The CGI/1.1 meta-variables for this request (RFC 3875), plus `HTTP_*` headers.
pub(crate) fn cgi_env(
    parts: &http::request::Parts,
    path: &str,
    body_len: usize,
) -> Vec<(String, String)> {
    let mut env = Vec::with_capacity(10 + parts.headers.len());
    let path = if path.is_empty() { "/" } else { path };
    env.push(("GATEWAY_INTERFACE".into(), "CGI/1.1".into()));
    env.push(("SERVER_PROTOCOL".into(), "HTTP/1.1".into()));
    env.push(("SERVER_SOFTWARE".into(), "khachapuri".into()));
    env.push(("REQUEST_METHOD".into(), parts.method.as_str().into()));
    env.push(("SCRIPT_NAME".into(), String::new()));
    env.push(("PATH_INFO".into(), path.into()));
    env.push((
        "QUERY_STRING".into(),
        parts.uri.query().unwrap_or("").into(),
    ));
    env.push(("CONTENT_LENGTH".into(), body_len.to_string()));
    if let Some(ct) = parts.headers.get(http::header::CONTENT_TYPE) {
        env.push((
            "CONTENT_TYPE".into(),
            String::from_utf8_lossy(ct.as_bytes()).into(),
        ));
    }
    for name in parts.headers.keys() {
        if name == http::header::CONTENT_TYPE || name == http::header::CONTENT_LENGTH {
            continue;
        }
        let value = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .collect::<Vec<_>>()
            .join(", ");
        let var = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        env.push((var, value));
    }
    env
}

/// Splits CGI output into headers and body. `Status:` sets the code, `Location:` alone
/// means 302; output without a header block is a broken function (502).
pub(crate) fn parse_cgi(
    mut output: BytesMut,
    max_body: usize,
) -> Result<http::Response<Bytes>, RuntimeError> {
    let bad = |why: &str| RuntimeError::BadResponse(format!("invalid CGI response: {why}"));
    let (head_len, sep_len) = find_header_end(&output)
        .ok_or_else(|| bad("no header block (headers, then a blank line) before the body"))?;
    let head = output.split_to(head_len);
    // What is left is the blank line, then the body.
    let body = output.split_off(sep_len - head_len).freeze();
    if body.len() > max_body {
        return Err(RuntimeError::ResponseTooLarge { limit: max_body });
    }
    let head = std::str::from_utf8(&head).map_err(|_| bad("headers are not UTF-8"))?;
    let mut builder = http::Response::builder();
    let mut status = None;
    let mut location = false;
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(&format!("header line without a colon: {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| http::StatusCode::from_u16(c).ok())
                .ok_or_else(|| bad(&format!("bad Status header {value:?}")))?;
            status = Some(code);
            continue;
        }
        if name.eq_ignore_ascii_case("location") {
            location = true;
        }
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| bad(&format!("bad header name {name:?}")))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| bad(&format!("bad value for header {name}")))?;
        builder = builder.header(name, value);
    }
    let status = status.unwrap_or(if location {
        http::StatusCode::FOUND
    } else {
        http::StatusCode::OK
    });
    builder
        .status(status)
        .body(body)
        .map_err(|e| bad(&e.to_string()))
}

/// Finds the blank line ending the header block: `(header bytes, header + separator bytes)`.
/// The header block must start with a `Name:` line.
fn find_header_end(out: &[u8]) -> Option<(usize, usize)> {
    // A body that starts right away (no header-looking first line) is not CGI.
    let first_line_end = out.iter().position(|&b| b == b'\n')?;
    if !out[..first_line_end].contains(&b':') {
        return None;
    }
    let mut i = 0;
    while let Some(nl) = out[i..].iter().position(|&b| b == b'\n') {
        let at = i + nl;
        let rest = &out[at + 1..];
        if rest.starts_with(b"\n") {
            return Some((at + 1, at + 2));
        }
        if rest.starts_with(b"\r\n") {
            return Some((at + 1, at + 3));
        }
        i = at + 1;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<http::Response<Bytes>, RuntimeError> {
        parse_cgi(BytesMut::from(s), 1 << 20)
    }

    #[test]
    fn parses_headers_status_and_body() {
        let r = parse("Content-Type: text/plain\r\nStatus: 404 Not Found\r\n\r\nnope\n")
            .expect("valid CGI");
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(r.body().as_ref(), b"nope\n");
    }

    #[test]
    fn defaults_to_200_and_302_for_location() {
        assert_eq!(parse("X-A: 1\n\nhi").expect("valid").status(), 200);
        let r = parse("Location: /elsewhere\n\n").expect("valid");
        assert_eq!(r.status(), 302);
        assert_eq!(r.body().len(), 0);
    }

    #[test]
    fn rejects_output_without_headers() {
        assert_eq!(
            parse("hello world\n")
                .map(|_| ())
                .unwrap_err()
                .http_status(),
            502
        );
        assert_eq!(
            parse("Content-Type: text/plain\nno blank line")
                .map(|_| ())
                .unwrap_err()
                .http_status(),
            502
        );
        assert_eq!(parse("").map(|_| ()).unwrap_err().http_status(), 502);
    }

    #[test]
    fn body_over_limit_is_response_too_large() {
        let e = parse_cgi(BytesMut::from("A: b\n\n0123456789"), 5)
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(e, RuntimeError::ResponseTooLarge { limit: 5 }));
    }
}
