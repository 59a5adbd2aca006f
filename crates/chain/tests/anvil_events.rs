//! The event poller after downtime, on a real anvil: events spread over more blocks than one
//! range are read range by range (each `eth_getLogs` bounded), every one exactly once and in
//! order, the cursor ends just past the head, and confirmations hold back the newest blocks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use khachapuri_chain::{parse_usdc, Chain, EscrowClient};
use khachapuri_chain::{EscrowEvent, EventPoller, U256};
use khachapuri_devnet::{dev_network, dev_signer, Anvil};

/// The deposited amounts of `events` (every one must be a `Deposited`).
fn deposits(events: &[(u64, EscrowEvent)]) -> Vec<(u64, U256)> {
    events
        .iter()
        .map(|(block, e)| match e {
            EscrowEvent::Deposited(d) => (*block, d.amount),
            other => panic!("expected only deposits, got {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poller_catches_up_range_by_range_and_waits_for_confirmations() {
    let anvil = Anvil::spawn().expect("anvil (run scripts/setup and . scripts/env.sh)");
    let (_deployer, d) = dev_network(&anvil, parse_usdc("100").unwrap())
        .await
        .expect("dev network");
    let payer = Chain::connect(&anvil.endpoint(), Some(dev_signer(1)))
        .await
        .unwrap();
    let escrow = EscrowClient::new(&payer, d.escrow);

    // The node is "down" while six deposits land, seven empty blocks apart.
    let mut expected = Vec::new();
    for i in 1..=6u64 {
        escrow.deposit(U256::from(i)).await.expect("deposit");
        expected.push((payer.block_number().await.unwrap(), U256::from(i)));
        khachapuri_devnet::mine(&payer, 7)
            .await
            .expect("anvil_mine");
    }
    let head = payer.block_number().await.unwrap();
    let span = head + 1 - d.block;
    const RANGE: u64 = 5;
    assert!(
        span > 6 * RANGE,
        "the events span many ranges ({span} blocks)"
    );

    // Back up: catch up from the deployment block, five blocks a poll.
    let mut poller =
        EventPoller::<EscrowEvent>::new(&payer, d.escrow, d.block).with_max_range(RANGE);
    let mut seen = Vec::new();
    let mut polls = 0u64;
    loop {
        let from = poller.next_block();
        let events = poller.poll().await.expect("poll");
        polls += 1;
        let to = poller.next_block();
        assert!(to > from, "each poll behind the head moves the cursor");
        assert!(
            to - from <= RANGE,
            "poll {polls} read {from}..{to}: over the range cap"
        );
        for e in events {
            assert!(
                (from..to).contains(&e.block),
                "event at {} outside {from}..{to}",
                e.block
            );
            seen.push((e.block, e.event));
        }
        if !poller.is_behind() {
            break;
        }
        assert!(polls <= span, "the poller never catches up");
    }
    assert_eq!(
        polls,
        span.div_ceil(RANGE),
        "one poll per range, no more, no fewer"
    );
    assert_eq!(
        poller.next_block(),
        head + 1,
        "the cursor ends just past the head"
    );
    assert_eq!(
        deposits(&seen),
        expected,
        "every deposit, exactly once, in order"
    );
    assert!(poller.poll().await.unwrap().is_empty(), "nothing new");
    assert_eq!(poller.next_block(), head + 1);

    // Confirmations: a deposit stays unread until it is three blocks deep.
    let mut confirmed = EventPoller::<EscrowEvent>::new(&payer, d.escrow, head + 1)
        .with_max_range(RANGE)
        .with_confirmations(3);
    escrow.deposit(U256::from(7)).await.expect("deposit");
    let block = payer.block_number().await.unwrap();
    assert!(
        confirmed.poll().await.unwrap().is_empty(),
        "0 deep: held back"
    );
    khachapuri_devnet::mine(&payer, 2).await.unwrap();
    assert!(
        confirmed.poll().await.unwrap().is_empty(),
        "2 deep: held back"
    );
    assert!(
        confirmed.next_block() <= block,
        "the cursor has not passed the unconfirmed block"
    );
    khachapuri_devnet::mine(&payer, 1).await.unwrap();
    let events = confirmed.poll().await.unwrap();
    let got: Vec<_> = events.into_iter().map(|e| (e.block, e.event)).collect();
    assert_eq!(
        deposits(&got),
        [(block, U256::from(7))],
        "3 deep: read once"
    );
    assert_eq!(
        confirmed.next_block(),
        block + 1,
        "the cursor stops at the confirmed head"
    );
    assert!(!confirmed.is_behind());
    assert!(confirmed.poll().await.unwrap().is_empty(), "not read twice");
}
