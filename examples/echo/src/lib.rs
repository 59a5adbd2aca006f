//! Echoes the request back as JSON: method, path (after the CID), query, headers, body,
//! and the environment the deployment gave it (`--env`, `--env-file`). Handy to see
//! exactly what a function receives; it shows env values to every caller, so deploy it
//! with test secrets only. Build with
//! `cargo build --target wasm32-wasip2 --release`.

use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasi::io::streams::StreamError;

struct Echo;

impl wasi::exports::http::incoming_handler::Guest for Echo {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let json = describe(&request);
        let headers =
            Fields::from_list(&[("content-type".to_string(), b"application/json".to_vec())])
                .expect("static header is valid");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        {
            let out = body.write().expect("stream is taken once");
            // blocking_write_and_flush takes at most 4096 bytes per call.
            for chunk in json.as_bytes().chunks(4096) {
                out.blocking_write_and_flush(chunk)
                    .expect("write to the response body");
            }
        }
        OutgoingBody::finish(body, None).expect("finish the response body");
    }
}

fn describe(request: &IncomingRequest) -> String {
    let method = match request.method() {
        Method::Get => "GET".to_string(),
        Method::Head => "HEAD".to_string(),
        Method::Post => "POST".to_string(),
        Method::Put => "PUT".to_string(),
        Method::Delete => "DELETE".to_string(),
        Method::Connect => "CONNECT".to_string(),
        Method::Options => "OPTIONS".to_string(),
        Method::Trace => "TRACE".to_string(),
        Method::Patch => "PATCH".to_string(),
        Method::Other(m) => m,
    };
    let pq = request.path_with_query().unwrap_or_default();
    let (path, query) = match pq.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (pq.clone(), String::new()),
    };

    let mut headers: Vec<(String, String)> = Vec::new();
    for (name, value) in request.headers().entries() {
        let value = String::from_utf8_lossy(&value).into_owned();
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push_str(", ");
                v.push_str(&value);
            }
            None => headers.push((name, value)),
        }
    }
    let body = read_body(request);

    let mut out = String::with_capacity(256 + body.len());
    out.push_str("{\"method\":");
    push_str(&mut out, &method);
    out.push_str(",\"path\":");
    push_str(&mut out, &path);
    out.push_str(",\"query\":");
    push_str(&mut out, &query);
    out.push_str(",\"headers\":");
    push_object(&mut out, &headers);
    out.push_str(",\"body\":");
    push_str(&mut out, &String::from_utf8_lossy(&body));
    out.push_str(",\"env\":");
    push_object(&mut out, &wasi::cli::environment::get_environment());
    out.push_str("}\n");
    out
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut data = Vec::new();
    let Ok(body) = request.consume() else {
        return data;
    };
    {
        let Ok(stream) = body.stream() else {
            return data;
        };
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(_)) => break,
            }
        }
    }
    let _ = IncomingBody::finish(body);
    data
}

/// Appends `pairs` as a JSON object of strings.
fn push_object(out: &mut String, pairs: &[(String, String)]) {
    out.push('{');
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, name);
        out.push(':');
        push_str(out, value);
    }
    out.push('}');
}

/// Appends `s` as a JSON string literal.
fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

wasi::http::proxy::export!(Echo);
