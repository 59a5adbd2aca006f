//! `khachapuri call` paying a paid node: the real binary against an HTTP server in the test
//! process that wraps the provider's real payment `Gate` (until the paid provider node
//! lands), on a real anvil. The first call answers a 402 with one signature; the next calls
//! are prepaid by the stored voucher; `--max-price` refuses a dear call unpaid; a channel
//! too small for a call ends with the `escrow fund` hint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use khachapuri_chain::{
    dev_channel, dev_network, dev_signer, parse_usdc, Anvil, Chain, EscrowClient, DEV_KEYS, U256,
};
use khachapuri_payments::{
    base_to_micro, Gate, Ledger, Pricing, Usage, PAYMENT_HEADER, RECEIPT_HEADER,
};

async fn serve(
    State(gate): State<Arc<Gate>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    // A "dear" function may cost up to 1 USDC; the others up to 0.0002 USDC.
    let max = if path.contains("dear") {
        base_to_micro(parse_usdc("1").unwrap())
    } else {
        gate.pricing().max_cost(100, 0)
    };
    let header = headers.get(PAYMENT_HEADER).and_then(|v| v.to_str().ok());
    match gate.admit(header, max).await {
        Ok(res) => {
            let receipt = gate
                .charge(
                    res,
                    Usage {
                        millis: 3,
                        bytes_out: 6,
                    },
                )
                .await
                .unwrap();
            (
                StatusCode::OK,
                [(RECEIPT_HEADER, receipt.encode())],
                "hello\n",
            )
                .into_response()
        }
        Err(e) if e.status_code() == 402 => {
            let body = gate
                .payment_required_body(Gate::payer_of(header), max)
                .await;
            (StatusCode::PAYMENT_REQUIRED, axum::Json(body)).into_response()
        }
        Err(e) => (
            StatusCode::from_u16(e.status_code()).unwrap(),
            e.to_string(),
        )
            .into_response(),
    }
}

fn call(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_khachapuri"))
        .arg("--home")
        .arg(home)
        .arg("call")
        .args(args)
        .output()
        .expect("run khachapuri call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_pays_with_prepaid_vouchers() {
    let anvil = Anvil::spawn().expect("anvil (run scripts/setup and . scripts/env.sh)");
    let (_deployer, d) = dev_network(&anvil, parse_usdc("1000").unwrap())
        .await
        .expect("dev network");
    let payer_key = dev_signer(1);
    let provider = dev_signer(2).address();
    let (deposit, fund) = (parse_usdc("0.2").unwrap(), parse_usdc("0.05").unwrap());
    dev_channel(&anvil, &d, 1, provider, deposit, fund)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(dir.path().join("ledger.db")).unwrap());
    let reader = Chain::connect(&anvil.endpoint(), None).await.unwrap();
    // 0.0001 USDC per call + 0.000001 per ms + 1 USDC per MB.
    let pricing = Pricing {
        per_request: 100 * 1_000_000,
        per_ms: 1_000_000,
        per_mb_out: 1_000_000 * 1_000_000,
    };
    let gate = Arc::new(Gate::new(
        ledger.clone(),
        EscrowClient::new(&reader, d.escrow),
        provider,
        pricing,
        Duration::from_secs(5),
    ));
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::any(serve))
        .with_state(gate);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("config.toml"), "active_profile = \"t\"\n").unwrap();
    std::fs::create_dir_all(home.path().join("profiles")).unwrap();
    let profile = format!(
        r#"rpc_url = "{rpc}"
chain_id = {chain}
escrow = "{escrow}"
registry = "{registry}"
token = "{token}"
dev_key = "{key}"
prepay = "0.01"

[[providers]]
name = "paid"
url = "{url}"
address = "{provider}"
"#,
        rpc = anvil.endpoint(),
        chain = d.chain_id,
        escrow = d.escrow,
        registry = d.registry,
        token = d.token,
        key = DEV_KEYS[1],
    );
    std::fs::write(home.path().join("profiles").join("t.toml"), profile).unwrap();
    let h = home.path().to_path_buf();

    // Five calls: the first signs once after a 402, the rest are prepaid.
    let mut signed = 0;
    for i in 0..5 {
        let h = h.clone();
        let args: Vec<String> = if i == 0 {
            vec!["bafyfn".into(), "-i".into()]
        } else {
            vec!["bafyfn".into()]
        };
        let out = tokio::task::spawn_blocking(move || {
            call(&h, &args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "call {i}: {stderr}");
        assert!(stdout.ends_with("hello\n"), "body untouched: {stdout:?}");
        if i == 0 {
            assert!(stdout.contains("khachapuri-receipt: cost="), "{stdout}");
            assert!(stderr.contains("cost 0.000109 USDC"), "{stderr}");
        } else {
            assert_eq!(stdout, "hello\n");
        }
        signed += stderr.matches("signed a voucher").count();
    }
    assert_eq!(signed, 1, "one signature prepaid five calls");
    let row = ledger.channel(payer_key.address(), 0).unwrap().unwrap();
    assert_eq!(row.consumed, U256::from(5 * 109_000_000u64));
    assert_eq!(row.best.voucher.amount, parse_usdc("0.01").unwrap());
    assert!(row.consumed <= row.authorized_micro());
    assert!(h.join("payments").join("vouchers.json").exists());

    // --max-price below the quote: refused before paying, with a hint.
    let hh = h.clone();
    let out = tokio::task::spawn_blocking(move || call(&hh, &["bafydear", "--max-price", "0.5"]))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("above --max-price"), "{stderr}");
    assert!(stderr.contains("hint: raise --max-price"), "{stderr}");

    // A call the channel cannot cover: the hint says how much to fund (and deposit).
    let hh = h.clone();
    let out = tokio::task::spawn_blocking(move || call(&hh, &["bafydear"]))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not enough to pay this call"), "{stderr}");
    assert!(stderr.contains("khachapuri escrow fund paid "), "{stderr}");
    assert!(stderr.contains("khachapuri escrow deposit "), "{stderr}");
    let after = ledger.channel(payer_key.address(), 0).unwrap().unwrap();
    assert_eq!(after.consumed, row.consumed, "refused calls cost nothing");
    assert_eq!(after.best, row.best, "nothing more was signed");
}
