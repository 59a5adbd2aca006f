//! The provider dials an `https://` gateway: TLS (ALPN http/1.1) under the WebSocket.
//! The certificate in `fixtures/` is a self-signed one for `localhost` and 127.0.0.1,
//! valid for 100 years, made with `openssl req -x509` for this test only.
#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use alloy_signer_local::PrivateKeySigner;
use common::*;
use khachapuri_tunnel::{ServerConfig, TunnelServer, TunnelState};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const CERT: &[u8] = include_bytes!("fixtures/localhost.cert.pem");
const KEY: &[u8] = include_bytes!("fixtures/localhost.key.pem");

async fn tls_gateway(server: TunnelServer) -> std::net::SocketAddr {
    let cert = CertificateDer::from_pem_slice(CERT).unwrap();
    let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let (acceptor, server) = (acceptor.clone(), server.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.upgrade(req, Some(peer))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_provider_tunnels_to_an_https_gateway() {
    let key = PrivateKeySigner::random();
    let server = TunnelServer::new(
        ServerConfig::new("localhost", CHAIN),
        operators(&[("dev", key.address())]),
    )
    .unwrap();
    let addr = tls_gateway(server.clone()).await;
    let url = format!("https://localhost:{}", addr.port());

    // Trusting the test certificate: connected, and calls work.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(CERT).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut cfg = test_client_config(&url, "dev");
    cfg.tls = Some(Arc::new(tls));
    let p = start_provider(cfg, key.clone(), provider_router("tls", Arc::default()));
    let h = wait_tunnel(&server, "dev", Duration::from_secs(10)).await;
    assert_eq!(
        text(h.send_request(get_req("/hello")).await.unwrap()).await,
        "tls via localhost"
    );
    p.stop().await;

    // With the platform's roots, the self-signed gateway is not trusted: no tunnel.
    let mut untrusting = start_provider(
        test_client_config(&url, "dev"),
        key,
        provider_router("x", Arc::default()),
    );
    let s = untrusting
        .wait_state("retrying", |s| matches!(s, TunnelState::Retrying { .. }))
        .await;
    let TunnelState::Retrying { error, .. } = s else {
        unreachable!()
    };
    assert!(
        error.to_lowercase().contains("certificate") || error.contains("TLS"),
        "{error}"
    );
    untrusting.stop().await;
    server.shutdown().await;
}
