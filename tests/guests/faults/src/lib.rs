//! A misbehaving `wasi:http/proxy` component for runtime and provider tests. The path
//! picks the behaviour:
//! `/trap` panics, `/loop` spins forever, `/memory` allocates until it dies, `/flood`
//! streams an endless response body, `/env` lists its environment, `/outgoing` tries
//! an outgoing HTTP request, `/fs` tries to read the host filesystem, `/sse` streams
//! three server-sent events 1 s apart (`?ms=N` sets the gap); anything else answers
//! `ok`.

use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};

struct Faults;

impl wasi::exports::http::incoming_handler::Guest for Faults {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let pq = request.path_with_query().unwrap_or_default();
        let path = pq.split('?').next().unwrap_or("/");
        let text = match path {
            "/trap" => panic!("fault guest: deliberate trap"),
            "/loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "/flood" => flood(response_out),
            "/sse" => return sse(response_out, gap_ms(&pq)),
            "/env" => {
                let mut s = String::new();
                for (k, v) in std::env::vars() {
                    s.push_str(&format!("{k}={v}\n"));
                }
                s
            }
            "/outgoing" => format!("outgoing: {}\n", outgoing()),
            "/fs" => match std::fs::read_dir("/") {
                Ok(_) => "fs: allowed\n".to_string(),
                Err(_) => "fs: denied\n".to_string(),
            },
            _ => "ok\n".to_string(),
        };
        respond(response_out, text.as_bytes());
    }
}

fn respond(response_out: ResponseOutparam, text: &[u8]) {
    let response = OutgoingResponse::new(Fields::new());
    let body = response.body().expect("body is taken once");
    ResponseOutparam::set(response_out, Ok(response));
    {
        let out = body.write().expect("stream is taken once");
        for chunk in text.chunks(4096) {
            out.blocking_write_and_flush(chunk).expect("write body");
        }
    }
    OutgoingBody::finish(body, None).expect("finish body");
}

fn gap_ms(pq: &str) -> u64 {
    pq.split_once("ms=")
        .and_then(|(_, v)| v.split('&').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn sse(response_out: ResponseOutparam, gap_ms: u64) {
    let headers = Fields::from_list(&[(
        "content-type".to_string(),
        b"text/event-stream".to_vec(),
    )])
    .expect("static header is valid");
    let response = OutgoingResponse::new(headers);
    let body = response.body().expect("body is taken once");
    ResponseOutparam::set(response_out, Ok(response));
    {
        let out = body.write().expect("stream is taken once");
        for i in 1..=3 {
            if i > 1 {
                wasi::clocks::monotonic_clock::subscribe_duration(gap_ms * 1_000_000).block();
            }
            out.blocking_write_and_flush(format!("data: event {i}\n\n").as_bytes())
                .expect("write event");
        }
    }
    OutgoingBody::finish(body, None).expect("finish body");
}

fn flood(response_out: ResponseOutparam) -> ! {
    let response = OutgoingResponse::new(Fields::new());
    let body = response.body().expect("body is taken once");
    ResponseOutparam::set(response_out, Ok(response));
    let out = body.write().expect("stream is taken once");
    let chunk = [b'x'; 4096];
    loop {
        out.blocking_write_and_flush(&chunk).expect("write body");
    }
}

fn outgoing() -> &'static str {
    let req = OutgoingRequest::new(Fields::new());
    let _ = req.set_scheme(Some(&Scheme::Http));
    let _ = req.set_authority(Some("127.0.0.1:9"));
    let _ = req.set_path_with_query(Some("/"));
    match outgoing_handler::handle(req, None) {
        Err(_) => "denied",
        Ok(fut) => {
            fut.subscribe().block();
            match fut.get() {
                Some(Ok(Ok(_))) => "allowed",
                _ => "denied",
            }
        }
    }
}

wasi::http::proxy::export!(Faults);
