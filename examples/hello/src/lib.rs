//! The smallest Khachapuri function: a `wasi:http/proxy` component answering a greeting.
//! Build: `cargo build --target wasm32-wasip2 --release`; also runs under
//! `wasmtime serve -S cli=y target/wasm32-wasip2/release/hello.wasm`.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("static header is valid");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        {
            let out = body.write().expect("stream is taken once");
            out.blocking_write_and_flush(b"Hello from Khachapuri!\n")
                .expect("write to the response body");
        }
        OutgoingBody::finish(body, None).expect("finish the response body");
    }
}

wasi::http::proxy::export!(Hello);
