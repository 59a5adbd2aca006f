//! The tunnel end to end on loopback: a real axum gateway, a real provider router behind
//! `TunnelClient`, and a raw WebSocket client for the attacks.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use khachapuri_tunnel::handshake::{self, Hello, Message, Nonce};
use khachapuri_tunnel::{RefusalCode, TunnelError, TunnelState};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn raw_connect(gw: &Gateway) -> Ws {
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let url = format!("ws://{}{}", gw.addr, khachapuri_tunnel::TUNNEL_PATH);
    tokio_tungstenite::client_async(url, tcp).await.unwrap().0
}

async fn raw_recv(ws: &mut Ws) -> Message {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(WsMessage::Text(t))) => return handshake::decode(t.as_bytes()).unwrap(),
            Some(Ok(WsMessage::Close(_))) | None => panic!("closed without a message"),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("ws error {e}"),
        }
    }
}

async fn raw_send(ws: &mut Ws, m: &Message) {
    ws.send(WsMessage::text(handshake::encode(m)))
        .await
        .unwrap();
}

fn sign(
    signer: &PrivateKeySigner,
    c: &handshake::Challenge,
    name: &str,
    claimed: alloy_primitives::Address,
) -> Hello {
    let text = handshake::signing_text(c, name, claimed);
    let sig = signer.sign_message_sync(text.as_bytes()).unwrap();
    Hello {
        name: name.into(),
        operator: claimed,
        nonce: c.nonce,
        signature: sig.as_bytes(),
    }
}

async fn challenge_of(ws: &mut Ws) -> handshake::Challenge {
    match raw_recv(ws).await {
        Message::Challenge(c) => c,
        other => panic!("expected challenge, got {other:?}"),
    }
}

async fn refusal_of(ws: &mut Ws) -> (RefusalCode, String) {
    match raw_recv(ws).await {
        Message::Refused { code, message } => (code, message),
        other => panic!("expected refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn request_and_response_round_trip() {
    let key = PrivateKeySigner::random();
    let gw = start_gateway(loopback(), |_| {}, operators(&[("dev", key.address())])).await;
    let mut p = start_provider(
        test_client_config(&gw.url(), "dev"),
        key.clone(),
        provider_router("p1", Arc::default()),
    );
    p.wait_state("connected", |s| matches!(s, TunnelState::Connected { .. }))
        .await;
    let h = wait_tunnel(&gw.server, "dev", Duration::from_secs(5)).await;
    assert_eq!(h.operator(), key.address());
    assert_eq!(h.peer().map(|p| p.ip()), Some(gw.addr.ip()));
    let resp = h.send_request(get_req("/hello")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        text(resp).await,
        "p1 via 127.0.0.1",
        "the provider must see ViaTunnel"
    );
    let body = http_body_util::Full::new(Bytes::from(vec![7u8; 100_000]));
    let req = http::Request::post("/count").body(body).unwrap();
    assert_eq!(text(h.send_request(req).await.unwrap()).await, "100000");
    assert_eq!(h.in_flight(), 0);
    p.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn wrong_key_is_refused_and_backs_off_long() {
    let registered = PrivateKeySigner::random();
    let impostor = PrivateKeySigner::random();
    let gw = start_gateway(
        loopback(),
        |_| {},
        operators(&[("dev", registered.address())]),
    )
    .await;
    let mut p = start_provider(
        test_client_config(&gw.url(), "dev"),
        impostor.clone(),
        provider_router("x", Arc::default()),
    );
    let s = p
        .wait_state("refused", |s| matches!(s, TunnelState::Refused { .. }))
        .await;
    let TunnelState::Refused {
        code,
        message,
        retry_in,
    } = s
    else {
        unreachable!()
    };
    assert_eq!(code, RefusalCode::WrongOperator);
    assert!(
        message.contains(&impostor.address().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "registry says operator of dev is {}",
            registered.address()
        )),
        "{message}"
    );
    assert_eq!(
        retry_in,
        Duration::from_secs(60),
        "a permanent refusal must use refused_backoff"
    );
    assert!(gw.server.sender("dev").is_none());
    p.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn unregistered_name_is_refused() {
    let key = PrivateKeySigner::random();
    let gw = start_gateway(loopback(), |_| {}, operators(&[("dev", key.address())])).await;
    let mut p = start_provider(
        test_client_config(&gw.url(), "ghost"),
        key,
        provider_router("x", Arc::default()),
    );
    let s = p
        .wait_state("refused", |s| matches!(s, TunnelState::Refused { .. }))
        .await;
    assert!(
        matches!(&s, TunnelState::Refused { code: RefusalCode::UnregisteredName, message, .. } if message == "name ghost is not registered"),
        "{s:?}"
    );
    assert!(gw.server.names().is_empty());
    p.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_replayed_answer_is_refused() {
    let key = PrivateKeySigner::random();
    let gw = start_gateway(loopback(), |_| {}, operators(&[("dev", key.address())])).await;
    // First connection: a valid answer, accepted.
    let mut ws1 = raw_connect(&gw).await;
    let c1 = challenge_of(&mut ws1).await;
    let hello = sign(&key, &c1, "dev", key.address());
    raw_send(&mut ws1, &Message::Hello(hello.clone())).await;
    assert_eq!(raw_recv(&mut ws1).await, Message::Accepted);
    // Second connection: the captured answer replayed.
    let mut ws2 = raw_connect(&gw).await;
    let c2 = challenge_of(&mut ws2).await;
    assert_ne!(c1.nonce, c2.nonce);
    raw_send(&mut ws2, &Message::Hello(hello.clone())).await;
    let (code, message) = refusal_of(&mut ws2).await;
    assert_eq!(code, RefusalCode::Nonce, "{message}");
    assert!(message.contains("nonce replayed or expired"), "{message}");
    // The nonce of the first connection was spent, even though its signature is valid.
    let mut ws3 = raw_connect(&gw).await;
    let c3 = challenge_of(&mut ws3).await;
    let replay = Hello {
        nonce: c1.nonce,
        ..sign(
            &key,
            &handshake::Challenge {
                nonce: c1.nonce,
                ..c3
            },
            "dev",
            key.address(),
        )
    };
    raw_send(&mut ws3, &Message::Hello(replay)).await;
    assert_eq!(refusal_of(&mut ws3).await.0, RefusalCode::Nonce);
    gw.stop().await;
}

#[tokio::test]
async fn forged_and_unissued_answers_are_refused() {
    let key = PrivateKeySigner::random();
    let other = PrivateKeySigner::random();
    let gw = start_gateway(loopback(), |_| {}, operators(&[("dev", key.address())])).await;
    // Claims the registered operator, signed by another key.
    let mut ws = raw_connect(&gw).await;
    let c = challenge_of(&mut ws).await;
    raw_send(
        &mut ws,
        &Message::Hello(sign(&other, &c, "dev", key.address())),
    )
    .await;
    let (code, message) = refusal_of(&mut ws).await;
    assert_eq!(code, RefusalCode::BadSignature, "{message}");
    // A nonce the gateway never issued, correctly signed.
    let mut ws = raw_connect(&gw).await;
    let c = challenge_of(&mut ws).await;
    let fake = handshake::Challenge {
        nonce: Nonce([9; 32]),
        ..c
    };
    raw_send(
        &mut ws,
        &Message::Hello(sign(&key, &fake, "dev", key.address())),
    )
    .await;
    assert_eq!(refusal_of(&mut ws).await.0, RefusalCode::Nonce);
    // Garbage instead of a hello.
    let mut ws = raw_connect(&gw).await;
    let _ = challenge_of(&mut ws).await;
    ws.send(WsMessage::text("{\"type\":\"hello\"}"))
        .await
        .unwrap();
    assert_eq!(refusal_of(&mut ws).await.0, RefusalCode::Protocol);
    gw.stop().await;
}

#[tokio::test]
async fn a_silent_peer_times_out_and_frees_its_nonce() {
    let key = PrivateKeySigner::random();
    let gw = start_gateway(
        loopback(),
        |c| {
            c.handshake_timeout = Duration::from_millis(300);
            c.max_outstanding_nonces = 1;
        },
        operators(&[("dev", key.address())]),
    )
    .await;
    let mut ws1 = raw_connect(&gw).await;
    let _ = challenge_of(&mut ws1).await;
    // While the only nonce is outstanding, a second handshake is refused as busy.
    let mut ws2 = raw_connect(&gw).await;
    assert_eq!(refusal_of(&mut ws2).await.0, RefusalCode::Busy);
    // The silent one is cut off at the handshake timeout, which frees the nonce.
    let (code, message) = refusal_of(&mut ws1).await;
    assert_eq!(code, RefusalCode::Protocol, "{message}");
    let mut ws3 = raw_connect(&gw).await;
    let c3 = challenge_of(&mut ws3).await;
    raw_send(
        &mut ws3,
        &Message::Hello(sign(&key, &c3, "dev", key.address())),
    )
    .await;
    assert_eq!(raw_recv(&mut ws3).await, Message::Accepted);
    gw.stop().await;
}

#[tokio::test]
async fn gateway_restart_then_calls_work_again_within_seconds() {
    let key = PrivateKeySigner::random();
    let ops = operators(&[("dev", key.address())]);
    let gw = start_gateway(loopback(), |_| {}, ops.clone()).await;
    let addr = gw.addr;
    let mut p = start_provider(
        test_client_config(&gw.url(), "dev"),
        key,
        provider_router("p", Arc::default()),
    );
    let h = wait_tunnel(&gw.server, "dev", Duration::from_secs(5)).await;
    assert_eq!(
        text(h.send_request(get_req("/hello")).await.unwrap()).await,
        "p via 127.0.0.1"
    );
    gw.stop().await;
    let stopped = Instant::now();
    p.wait_state("retrying", |s| {
        matches!(
            s,
            TunnelState::Retrying { .. } | TunnelState::Connecting { .. }
        )
    })
    .await;
    assert!(matches!(
        h.send_request(get_req("/hello")).await,
        Err(TunnelError::Draining)
    ));
    let gw = start_gateway(addr, |_| {}, ops).await;
    let started = Instant::now();
    let h = wait_tunnel(&gw.server, "dev", Duration::from_secs(5)).await;
    assert_eq!(
        text(h.send_request(get_req("/hello")).await.unwrap()).await,
        "p via 127.0.0.1"
    );
    eprintln!(
        "gateway restart: serving again {:?} after the new gateway listened ({:?} after the old one stopped)",
        started.elapsed(),
        stopped.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    p.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn sse_arrives_before_the_provider_finishes() {
    let key = PrivateKeySigner::random();
    let gw = start_gateway(loopback(), |_| {}, operators(&[("dev", key.address())])).await;
    let gate = Arc::new(Notify::new());
    let p = start_provider(
        test_client_config(&gw.url(), "dev"),
        key,
        provider_router("p", gate.clone()),
    );
    let h = wait_tunnel(&gw.server, "dev", Duration::from_secs(5)).await;
    let resp = h.send_request(get_req("/sse")).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    // The provider holds the second event until the first has arrived here: a tunnel
    // that buffered the response would never deliver the first.
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first event not buffered");
    assert_eq!(
        first.unwrap().unwrap().into_data().unwrap(),
        "data: one\n\n"
    );
    gate.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "data: two\n\n");
    p.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn provider_shutdown_drains_in_flight_requests() {
    let key = PrivateKeySigner::random();
    let gw = start_gateway(loopback(), |_| {}, operators(&[("dev", key.address())])).await;
    let gate = Arc::new(Notify::new());
    let mut p = start_provider(
        test_client_config(&gw.url(), "dev"),
        key,
        provider_router("p", gate.clone()),
    );
    let h = wait_tunnel(&gw.server, "dev", Duration::from_secs(5)).await;
    let slow = tokio::spawn({
        let h = h.clone();
        async move { text(h.send_request(get_req("/slow")).await.unwrap()).await }
    });
    wait_in_flight(&h).await;
    p.begin_stop();
    // GOAWAY reaches the gateway: new requests are not accepted by the provider...
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = h.send_request(get_req("/hello")).await;
    assert!(
        refused.is_err(),
        "a draining provider accepted a new stream"
    );
    // ...while the one in flight finishes.
    gate.notify_one();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), slow)
            .await
            .unwrap()
            .unwrap(),
        "slow done"
    );
    p.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn gateway_shutdown_waits_for_in_flight_requests() {
    let key = PrivateKeySigner::random();
    let gw = start_gateway(loopback(), |_| {}, operators(&[("dev", key.address())])).await;
    let gate = Arc::new(Notify::new());
    let p = start_provider(
        test_client_config(&gw.url(), "dev"),
        key,
        provider_router("p", gate.clone()),
    );
    let h = wait_tunnel(&gw.server, "dev", Duration::from_secs(5)).await;
    let slow = tokio::spawn({
        let h = h.clone();
        async move { text(h.send_request(get_req("/slow")).await.unwrap()).await }
    });
    wait_in_flight(&h).await;
    let server = gw.server.clone();
    let shutdown = tokio::spawn(async move { server.shutdown().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown must wait for the request in flight"
    );
    assert!(matches!(
        h.send_request(get_req("/hello")).await,
        Err(TunnelError::Draining)
    ));
    assert!(gw.server.sender("dev").is_none());
    gate.notify_one();
    assert_eq!(slow.await.unwrap(), "slow done");
    tokio::time::timeout(Duration::from_secs(3), shutdown)
        .await
        .expect("shutdown ends once idle")
        .unwrap();
    p.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_reconnecting_name_replaces_its_old_tunnel() {
    let key = PrivateKeySigner::random();
    let gw = start_gateway(loopback(), |_| {}, operators(&[("dev", key.address())])).await;
    let p1 = start_provider(
        test_client_config(&gw.url(), "dev"),
        key.clone(),
        provider_router("old", Arc::default()),
    );
    let h1 = wait_tunnel(&gw.server, "dev", Duration::from_secs(5)).await;
    assert_eq!(
        text(h1.send_request(get_req("/hello")).await.unwrap()).await,
        "old via 127.0.0.1"
    );
    let p2 = start_provider(
        test_client_config(&gw.url(), "dev"),
        key,
        provider_router("new", Arc::default()),
    );
    let start = Instant::now();
    loop {
        let h = wait_tunnel(&gw.server, "dev", Duration::from_secs(5)).await;
        if text(h.send_request(get_req("/hello")).await.unwrap()).await == "new via 127.0.0.1" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the newer tunnel never took over"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(
        h1.send_request(get_req("/hello")).await,
        Err(TunnelError::Draining)
    ));
    assert_eq!(gw.server.names(), vec!["dev".to_owned()]);
    p2.stop().await;
    // The old provider's tunnel was closed; it keeps reconnecting until stopped.
    p1.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn the_gateway_bounds_streams_per_tunnel() {
    let key = PrivateKeySigner::random();
    let gw = start_gateway(
        loopback(),
        |c| c.max_streams_per_tunnel = 1,
        operators(&[("dev", key.address())]),
    )
    .await;
    let gate = Arc::new(Notify::new());
    let p = start_provider(
        test_client_config(&gw.url(), "dev"),
        key,
        provider_router("p", gate.clone()),
    );
    let h = wait_tunnel(&gw.server, "dev", Duration::from_secs(5)).await;
    let slow = tokio::spawn({
        let h = h.clone();
        async move { text(h.send_request(get_req("/slow")).await.unwrap()).await }
    });
    wait_in_flight(&h).await;
    assert!(matches!(
        h.send_request(get_req("/hello")).await,
        Err(TunnelError::Overloaded)
    ));
    gate.notify_one();
    assert_eq!(slow.await.unwrap(), "slow done");
    assert_eq!(
        text(h.send_request(get_req("/hello")).await.unwrap()).await,
        "p via 127.0.0.1"
    );
    p.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_challenge_for_another_gateway_or_chain_is_not_signed() {
    let key = PrivateKeySigner::random();
    // The gateway claims a host other than the one the provider dials.
    let gw = start_gateway(
        loopback(),
        |c| c.host = "evil.example".into(),
        operators(&[("dev", key.address())]),
    )
    .await;
    let mut p = start_provider(
        test_client_config(&gw.url(), "dev"),
        key.clone(),
        provider_router("p", Arc::default()),
    );
    let s = p
        .wait_state("refused", |s| matches!(s, TunnelState::Refused { .. }))
        .await;
    assert!(
        matches!(
            s,
            TunnelState::Refused {
                code: RefusalCode::WrongGateway,
                ..
            }
        ),
        "{s:?}"
    );
    p.stop().await;
    gw.stop().await;
    let gw = start_gateway(
        loopback(),
        |c| c.chain_id = 1,
        operators(&[("dev", key.address())]),
    )
    .await;
    let mut p = start_provider(
        test_client_config(&gw.url(), "dev"),
        key,
        provider_router("p", Arc::default()),
    );
    let s = p
        .wait_state("refused", |s| matches!(s, TunnelState::Refused { .. }))
        .await;
    assert!(
        matches!(&s, TunnelState::Refused { code: RefusalCode::WrongGateway, message, .. } if message.contains("chain 1")),
        "{s:?}"
    );
    p.stop().await;
    gw.stop().await;
}
