//! With a certificate the gateway speaks TLS, HTTP/2 to clients that offer it (ALPN) and
//! HTTP/1.1 to those that do not, routing `{name}.localhost` by the TLS Host/authority.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

fn openssl(args: &[&str], dir: &std::path::Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl) makes the test certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA (`ca.pem`) and a certificate it signed for `localhost` and `*.localhost`
/// (`cert.pem`, `key.pem`), all in `dir`.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=khachapuri test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(&ca, dir);
    let mut csr = vec![
        "req",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ];
    csr.extend(ec);
    openssl(&csr, dir);
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,DNS:*.localhost,DNS:dev.localhost\n",
    )
    .unwrap();
    openssl(
        &[
            "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        ]
        .into_iter()
        .chain([
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "cert.pem",
        ])
        .collect::<Vec<_>>(),
        dir,
    );
    (dir.join("cert.pem"), dir.join("key.pem"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_http2_and_http1_by_alpn() {
    let t = common::start(1, true).await;
    let hello = t.deploy(&khachapuri_testkit::hello());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let (url, _launched, _stop) = t
        .launch_gateway(|c| {
            c.tls_cert = Some(cert.clone());
            c.tls_key = Some(key.clone());
        })
        .await;
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let root =
        reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("ca.pem")).unwrap()).unwrap();
    for (http1_only, version) in [
        (false, reqwest::Version::HTTP_2),
        (true, reqwest::Version::HTTP_11),
    ] {
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([root.clone()])
            .resolve("dev.localhost", addr);
        if http1_only {
            builder = builder.http1_only();
        }
        let client = builder.build().unwrap();
        let r = client
            .get(format!("https://dev.localhost:{}/{hello}/", addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), version);
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "Hello from Khachapuri!\n");
    }
    // Plain HTTP to the TLS port gets no answer.
    assert!(common::client()
        .get(format!("{url}/healthz"))
        .send()
        .await
        .is_err());
}
