//! `/{cid}` of a public deployment at the gateway: spread over the providers by power of
//! two choices, and still answering every call while one of three providers goes away
//! (calls that met the dead one are retried elsewhere: they never reached a function).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use khachapuri_gateway::PROVIDER_HEADER;

async fn call(url: &str) -> (u16, String) {
    let r = common::client().get(url).send().await.unwrap();
    let by = r
        .headers()
        .get(PROVIDER_HEADER)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let status = r.status().as_u16();
    let _ = r.bytes().await;
    (status, by)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_deployment_keeps_answering_while_a_provider_dies() {
    let mut t = common::start(3, true).await;
    let hello = t.deploy(&khachapuri_testkit::hello());
    let url = format!("{}/{hello}/", t.gateway);

    let mut seen = BTreeMap::new();
    for _ in 0..60 {
        let (status, by) = call(&url).await;
        assert_eq!(status, 200);
        *seen.entry(by).or_insert(0) += 1;
    }
    assert!(
        seen.len() >= 2,
        "power of two choices spreads calls: {seen:?}"
    );

    let log = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_secs(4);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (url, log) = (url.clone(), log.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let answer = call(&url).await;
                    log.lock().unwrap().push((Instant::now(), answer));
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    t.net.stop_provider("dev2").await.unwrap();
    let stopped = Instant::now();
    for w in workers {
        w.await.unwrap();
    }
    let log = log.lock().unwrap();
    let failed: Vec<_> = log.iter().filter(|(_, (s, _))| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed: {failed:?}",
        failed.len(),
        log.len()
    );
    let after: Vec<_> = log.iter().filter(|(at, _)| *at > stopped).collect();
    assert!(
        after.len() > 20,
        "calls went on after the stop: {}",
        after.len()
    );
    assert!(
        after.iter().all(|(_, (_, by))| by != "dev2"),
        "nothing is answered by the stopped provider"
    );
}
