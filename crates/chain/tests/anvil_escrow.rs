//! End to end on a real anvil: deploy, fund a channel, sign a voucher with `cast wallet
//! sign --data` (a signer this project did not write), redeem it through the Rust client,
//! and check that vouchers for another chain, escrow, epoch or provider revert.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use alloy::providers::Provider;
use khachapuri_chain::{
    consent_domain, deploy_all, node_of, parse_usdc, Address, Chain, ChainError, Claim,
    DeployOptions, EscrowClient, EscrowEvent, EventPoller, OperatorConsent, Registration,
    RegistryClient, SignedVoucher, Token, Voucher, U256,
};
use khachapuri_devnet::{dev_signer, find_tool, Anvil, DEV_KEYS};

/// Signs EIP-712 typed data with cast and returns the 65-byte signature.
fn cast_sign(typed_data: &serde_json::Value, key: &str) -> Vec<u8> {
    let cast = find_tool("cast").expect("cast (tools/node_modules/.bin) must be installed");
    let out = Command::new(cast)
        .args([
            "wallet",
            "sign",
            "--data",
            &typed_data.to_string(),
            "--private-key",
            key,
        ])
        .output()
        .expect("run cast");
    assert!(
        out.status.success(),
        "cast failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf8");
    alloy::primitives::hex::decode(text.trim()).expect("hex signature")
}

fn cast_voucher(v: Voucher, chain_id: u64, escrow: Address, key: &str) -> SignedVoucher {
    SignedVoucher {
        voucher: v,
        signature: cast_sign(&v.typed_data_json(chain_id, escrow), key),
    }
}

fn reverted_with(err: ChainError, what: &str) {
    match err {
        ChainError::Reverted { reason } => {
            assert!(reason.contains(what), "expected {what}, got {reason}")
        }
        other => panic!("expected a revert ({what}), got {other:?}"),
    }
}

struct Net {
    anvil: Anvil,
    deployer: Chain,
    escrow: Address,
    registry: Address,
    token: Address,
    block: u64,
}

async fn setup() -> Net {
    let anvil = Anvil::spawn().expect("spawn anvil");
    let deployer = Chain::connect(&anvil.endpoint(), Some(dev_signer(0)))
        .await
        .expect("connect");
    assert_eq!(deployer.chain_id(), 31337);
    let d = deploy_all(&deployer, DeployOptions::dev())
        .await
        .expect("deploy");
    assert!(deployer.has_code(d.escrow).await.expect("code"));
    Net {
        deployer,
        escrow: d.escrow,
        registry: d.registry,
        token: d.token,
        block: d.block,
        anvil,
    }
}

async fn as_account(net: &Net, index: usize) -> Chain {
    Chain::connect(&net.anvil.endpoint(), Some(dev_signer(index)))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cast_signed_voucher_redeems_and_foreign_vouchers_revert() {
    let net = setup().await;
    let payer_chain = as_account(&net, 1).await;
    let provider_chain = as_account(&net, 2).await;
    let payer = dev_signer(1).address();
    let provider = dev_signer(2).address();
    let token = Token::new(&net.deployer, net.token);
    token
        .mint(payer, parse_usdc("100").unwrap())
        .await
        .expect("mint");

    let payer_escrow = EscrowClient::new(&payer_chain, net.escrow);
    payer_escrow
        .deposit(parse_usdc("10").unwrap())
        .await
        .expect("deposit");
    payer_escrow
        .fund(provider, parse_usdc("5").unwrap())
        .await
        .expect("fund");
    assert_eq!(
        payer_escrow.balance_of(payer).await.unwrap(),
        parse_usdc("5").unwrap()
    );
    let ch = payer_escrow.channel(payer, provider).await.unwrap();
    assert_eq!(ch.funds, parse_usdc("5").unwrap());
    assert_eq!((ch.redeemed, ch.epoch, ch.unlock_at), (U256::ZERO, 0, 0));

    // cast signs; our hashing agrees with the contract and our signature with cast's.
    let v = Voucher {
        payer,
        provider,
        epoch: 0,
        amount: parse_usdc("1.25").unwrap(),
    };
    let signed = cast_voucher(v, 31337, net.escrow, DEV_KEYS[1]);
    signed
        .verify(31337, net.escrow)
        .expect("cast signature verifies");
    assert_eq!(
        payer_escrow.voucher_digest(&v).await.unwrap(),
        v.signing_hash(31337, net.escrow)
    );
    let ours = v.sign(&dev_signer(1), 31337, net.escrow).unwrap();
    assert_eq!(
        ours.signature, signed.signature,
        "RFC 6979: same key, same signature"
    );

    let provider_escrow = EscrowClient::new(&provider_chain, net.escrow);
    // Exact billing: the voucher allows 1.25, the calls cost 1.0; the provider gets 1.0,
    // credited to its escrow balance (no token moves at redeem).
    let exact = Claim::new(signed.clone(), parse_usdc("1").unwrap());
    provider_escrow.redeem(&exact).await.expect("redeem");
    assert_eq!(
        provider_escrow.balance_of(provider).await.unwrap(),
        parse_usdc("1").unwrap()
    );
    assert_eq!(token.balance_of(provider).await.unwrap(), U256::ZERO);
    let ch = provider_escrow.channel(payer, provider).await.unwrap();
    assert_eq!(ch.redeemed, parse_usdc("1").unwrap());
    assert!(exact.payable(&ch).is_zero(), "the claim is settled");
    // A claim above the voucher is capped by it.
    let too_much = Claim::new(signed.clone(), parse_usdc("9").unwrap());
    assert_eq!(too_much.amount, parse_usdc("1.25").unwrap());
    assert_eq!(too_much.payable(&ch), parse_usdc("0.25").unwrap());
    provider_escrow
        .redeem(&too_much)
        .await
        .expect("redeem rest");
    assert_eq!(
        provider_escrow.balance_of(provider).await.unwrap(),
        parse_usdc("1.25").unwrap()
    );
    let ch = provider_escrow.channel(payer, provider).await.unwrap();
    assert_eq!(ch.redeemed, parse_usdc("1.25").unwrap());
    assert_eq!(ch.remaining(), parse_usdc("3.75").unwrap());
    // Replaying pays nothing and does not fail.
    provider_escrow
        .redeem(&Claim::full(signed.clone()))
        .await
        .expect("replay");
    assert_eq!(
        provider_escrow.balance_of(provider).await.unwrap(),
        parse_usdc("1.25").unwrap()
    );

    let bigger = Voucher {
        amount: parse_usdc("2").unwrap(),
        ..v
    };
    // Another chain id.
    let foreign_chain = cast_voucher(bigger, 1, net.escrow, DEV_KEYS[1]);
    reverted_with(
        provider_escrow
            .redeem(&Claim::full(foreign_chain.clone()))
            .await
            .unwrap_err(),
        "BadSignature",
    );
    // Another escrow.
    let foreign_escrow = cast_voucher(bigger, 31337, Address::repeat_byte(0x42), DEV_KEYS[1]);
    reverted_with(
        provider_escrow
            .redeem(&Claim::full(foreign_escrow.clone()))
            .await
            .unwrap_err(),
        "BadSignature",
    );
    // Another epoch.
    let foreign_epoch = cast_voucher(
        Voucher { epoch: 1, ..bigger },
        31337,
        net.escrow,
        DEV_KEYS[1],
    );
    reverted_with(
        provider_escrow
            .redeem(&Claim::full(foreign_epoch.clone()))
            .await
            .unwrap_err(),
        "WrongEpoch",
    );
    // Another provider: made out to account 3, presented by account 2.
    let third = dev_signer(3).address();
    let foreign_provider = cast_voucher(
        Voucher {
            provider: third,
            ..bigger
        },
        31337,
        net.escrow,
        DEV_KEYS[1],
    );
    reverted_with(
        provider_escrow
            .redeem(&Claim::full(foreign_provider.clone()))
            .await
            .unwrap_err(),
        "NotProvider",
    );
    // ...and with the provider field rewritten, the signature no longer matches.
    let mut swapped = foreign_provider.clone();
    swapped.voucher.provider = provider;
    reverted_with(
        provider_escrow
            .redeem(&Claim::full(swapped.clone()))
            .await
            .unwrap_err(),
        "BadSignature",
    );
    // Signed by someone other than the payer.
    let forged = cast_voucher(bigger, 31337, net.escrow, DEV_KEYS[3]);
    reverted_with(
        provider_escrow
            .redeem(&Claim::full(forged.clone()))
            .await
            .unwrap_err(),
        "BadSignature",
    );
    // None of that moved money.
    assert_eq!(
        provider_escrow.balance_of(provider).await.unwrap(),
        parse_usdc("1.25").unwrap()
    );

    // A batch: the valid bigger voucher goes through with an eth_call preview first.
    let good = cast_voucher(bigger, 31337, net.escrow, DEV_KEYS[1]);
    assert_eq!(
        provider_escrow
            .simulate_redeem_batch(&[Claim::full(good.clone())])
            .await
            .unwrap(),
        parse_usdc("0.75").unwrap()
    );
    reverted_with(
        provider_escrow
            .simulate_redeem_batch(&[
                Claim::full(good.clone()),
                Claim::full(foreign_epoch.clone()),
            ])
            .await
            .unwrap_err(),
        "WrongEpoch",
    );
    provider_escrow
        .redeem_batch(&[Claim::full(good.clone())])
        .await
        .expect("batch");
    assert_eq!(
        provider_escrow.balance_of(provider).await.unwrap(),
        parse_usdc("2").unwrap()
    );
    // The provider takes its earnings out with the ordinary withdraw.
    provider_escrow
        .withdraw(parse_usdc("2").unwrap())
        .await
        .expect("provider withdraw");
    assert_eq!(
        token.balance_of(provider).await.unwrap(),
        parse_usdc("2").unwrap()
    );

    // Unlock, wait out the delay, reclaim: the epoch moves on and old vouchers die.
    payer_escrow.request_unlock(provider).await.expect("unlock");
    reverted_with(
        payer_escrow.reclaim(provider).await.unwrap_err(),
        "UnlockPending",
    );
    let delay = payer_escrow.unlock_delay().await.unwrap();
    let p = net.deployer.provider();
    let _: serde_json::Value = p
        .raw_request("evm_increaseTime".into(), (delay,))
        .await
        .unwrap();
    let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await.unwrap();
    payer_escrow.reclaim(provider).await.expect("reclaim");
    let ch = payer_escrow.channel(payer, provider).await.unwrap();
    assert_eq!((ch.funds, ch.epoch), (U256::ZERO, 1));
    assert_eq!(
        payer_escrow.balance_of(payer).await.unwrap(),
        parse_usdc("8").unwrap()
    );
    payer_escrow
        .fund(provider, parse_usdc("1").unwrap())
        .await
        .unwrap();
    reverted_with(
        provider_escrow
            .redeem(&Claim::full(good.clone()))
            .await
            .unwrap_err(),
        "WrongEpoch",
    );
    payer_escrow
        .withdraw(parse_usdc("7").unwrap())
        .await
        .expect("withdraw");
    assert_eq!(
        token.balance_of(payer).await.unwrap(),
        parse_usdc("97").unwrap()
    );

    // Every state change left an event, in order.
    let mut poller = EventPoller::<EscrowEvent>::new(&net.deployer, net.escrow, net.block);
    let events: Vec<EscrowEvent> = poller
        .poll()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            EscrowEvent::Deposited(_) => "Deposited",
            EscrowEvent::Withdrawn(_) => "Withdrawn",
            EscrowEvent::Funded(_) => "Funded",
            EscrowEvent::UnlockRequested(_) => "UnlockRequested",
            EscrowEvent::UnlockCancelled(_) => "UnlockCancelled",
            EscrowEvent::Reclaimed(_) => "Reclaimed",
            EscrowEvent::Redeemed(_) => "Redeemed",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Deposited",
            "Funded",
            "Redeemed",
            "Redeemed",
            "Redeemed",
            "Withdrawn",
            "UnlockRequested",
            "Reclaimed",
            "Funded",
            "Withdrawn"
        ]
    );
    assert!(poller.poll().await.unwrap().is_empty(), "nothing new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_records_tables_and_ens_readers() {
    let net = setup().await;
    let owner = as_account(&net, 4).await;
    let reg = RegistryClient::new(&owner, net.registry);
    let operator = dev_signer(5).address();
    let registration = Registration {
        name: "dev".into(),
        operator,
        url: "http://127.0.0.1:7070".into(),
        pubkey: [7u8; 32],
        regions: vec!["local".into(), "eu-west".into()],
        contact: "dev@localhost".into(),
    };
    // Account 4 may not name account 5 as its operator without 5's consent...
    reverted_with(
        reg.register(&registration).await.unwrap_err(),
        "OperatorConsentRequired",
    );
    // ...which 5 signs (our EIP-712 hashing agrees with the contract's)...
    let deadline = u64::MAX / 2;
    let consent = reg
        .sign_consent(
            &dev_signer(5),
            "dev",
            dev_signer(4).address(),
            [7u8; 32],
            deadline,
        )
        .await
        .expect("sign consent");
    let local = OperatorConsent {
        node: node_of("dev"),
        owner: dev_signer(4).address(),
        operator,
        pubkey: [7u8; 32].into(),
        nonce: U256::ZERO,
        deadline: U256::from(deadline),
    };
    use alloy::sol_types::SolStruct;
    assert_eq!(
        reg.consent_digest(
            "dev",
            dev_signer(4).address(),
            operator,
            [7u8; 32],
            U256::from(deadline)
        )
        .await
        .unwrap(),
        local.eip712_signing_hash(&consent_domain(31337, net.registry))
    );
    let node = reg
        .register_with_consent(&registration, &consent)
        .await
        .expect("register with consent");
    assert_eq!(node, node_of("dev"));
    assert_eq!(reg.consent_nonce(operator).await.unwrap(), U256::from(1));
    reverted_with(
        reg.register_with_consent(&registration, &consent)
            .await
            .unwrap_err(),
        "NameTaken",
    );

    let reader = RegistryClient::new(&net.deployer, net.registry);
    assert_eq!(
        reader.text("dev", "url").await.unwrap(),
        "http://127.0.0.1:7070"
    );
    assert_eq!(reader.addr("dev").await.unwrap(), operator);
    assert_eq!(
        reader.text("dev", "pubkey").await.unwrap(),
        format!("0x{}", "07".repeat(32))
    );
    let rec = reader.resolve("dev").await.unwrap().expect("record");
    assert_eq!(rec.regions, ["local", "eu-west"]);
    assert_eq!(rec.owner, dev_signer(4).address());
    assert!(reader.resolve("nobody").await.unwrap().is_none());
    assert_eq!(reader.list().await.unwrap().len(), 1);

    // cast reads the ENS-style text record too.
    let cast = find_tool("cast").expect("cast");
    let out = Command::new(cast)
        .args([
            "call",
            &net.registry.to_string(),
            "text(bytes32,string)(string)",
            &node.to_string(),
            "url",
            "--rpc-url",
            &net.anvil.endpoint(),
        ])
        .output()
        .expect("cast call");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "\"http://127.0.0.1:7070\""
    );

    // Update keeps ownership and changes the endpoint.
    let updated = Registration {
        url: "http://127.0.0.1:9090".into(),
        ..registration.clone()
    };
    reg.register_or_update(&updated).await.expect("update");
    assert_eq!(
        reader.text("dev", "url").await.unwrap(),
        "http://127.0.0.1:9090"
    );

    // Pricing tables: create, subscribe, leave → deleted.
    let id = reg
        .create_table(U256::from(1000), U256::from(2), U256::from(30))
        .await
        .expect("table");
    reg.subscribe("dev", id).await.expect("subscribe");
    let tables = reader.tables().await.unwrap();
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].per_request, U256::from(1000));
    assert_eq!(tables[0].subscribers, U256::from(1));
    assert_eq!(
        reader.resolve("dev").await.unwrap().unwrap().pricing_table,
        id
    );
    reg.unsubscribe("dev").await.expect("unsubscribe");
    assert!(reader.tables().await.unwrap().is_empty());
    assert!(reader.table(id).await.unwrap().is_none());

    // Only the owner may touch the record.
    let stranger = RegistryClient::new(&as_account(&net, 6).await, net.registry);
    reverted_with(stranger.update(&updated).await.unwrap_err(), "NotOwner");
    reg.drop_name("dev").await.expect("drop");
    assert!(reader.resolve("dev").await.unwrap().is_none());
    // The used consent cannot be replayed to claim the name again.
    reverted_with(
        reg.register_with_consent(&registration, &consent)
            .await
            .unwrap_err(),
        "BadConsent",
    );
    // The operator registering for itself needs no signature.
    let op_reg = RegistryClient::new(&as_account(&net, 5).await, net.registry);
    op_reg
        .register(&registration)
        .await
        .expect("operator registers");
    let rec = reader.resolve("dev").await.unwrap().expect("record");
    assert_eq!((rec.owner, rec.operator), (operator, operator));
    assert_eq!((rec.payers, rec.value_redeemed), (U256::ZERO, U256::ZERO));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_network_mints_every_dev_account() {
    let anvil = Anvil::spawn().expect("spawn");
    let (deployer, d) = khachapuri_devnet::dev_network(&anvil, parse_usdc("1000").unwrap())
        .await
        .expect("dev network");
    assert_eq!(deployer.address(), Some(dev_signer(0).address()));
    let token = Token::new(&deployer, d.token);
    for i in 0..DEV_KEYS.len() {
        assert_eq!(
            token.balance_of(dev_signer(i).address()).await.unwrap(),
            parse_usdc("1000").unwrap()
        );
    }
    assert_eq!(token.decimals().await.unwrap(), 6);
    let escrow = EscrowClient::new(&deployer, d.escrow);
    assert_eq!(escrow.unlock_delay().await.unwrap(), 60);
    assert_eq!(escrow.token().await.unwrap().address(), d.token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_is_killed_on_drop() {
    let anvil = Anvil::spawn().expect("spawn");
    let url = anvil.endpoint();
    Chain::connect(&url, None).await.expect("up");
    drop(anvil);
    let err = Chain::connect_with_timeout(&url, None, Duration::from_secs(2)).await;
    assert!(err.is_err(), "anvil still answers after drop");
}
