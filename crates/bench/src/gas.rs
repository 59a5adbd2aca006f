//! Settlement gas on a real anvil: N paid calls settled one transaction per call (the seeds'
//! model: the provider calls `consume` on the escrow for every request; here the same
//! on-chain work is one `redeem` per call) against one voucher per payer redeemed in a
//! single `redeemBatch`. Billing is exact in both: each payer signs one prepaid voucher
//! (twice what the calls cost) and the provider claims what the calls cost.

use anyhow::Context;
use clap::Args;
use khachapuri_chain::{parse_usdc, Chain, Claim, EscrowClient, Voucher, U256};
use khachapuri_devnet::{dev_network, dev_signer, Anvil, AnvilOptions};
use serde_json::json;

/// Arguments of `gas`.
#[derive(Debug, Args)]
pub struct GasArgs {
    /// Paid calls to settle.
    #[arg(long, default_value_t = 1000)]
    calls: u64,
    /// Distinct payers the calls come from in the batched case (each signs one voucher).
    #[arg(long, default_value_t = 7)]
    payers: usize,
    /// Price of one call in token base units (100 = 0.0001 USDC).
    #[arg(long, default_value_t = 100)]
    price: u64,
}

/// Runs both strategies on one chain and reports gas totals and their ratio.
pub async fn run(args: GasArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        args.calls > 0 && (1..=7).contains(&args.payers),
        "need calls >= 1 and 1..=7 payers (dev accounts 0-7 pay, 8 and 9 provide)"
    );
    let anvil = Anvil::spawn_with(AnvilOptions {
        port: 0,
        ..AnvilOptions::default()
    })
    .context("cannot start anvil (run scripts/setup and . scripts/env.sh)")?;
    let (_deployer, d) = dev_network(&anvil, parse_usdc("1000")?)
        .await
        .context("deploying the contracts")?;
    let url = anvil.endpoint();
    // Account 9 serves the per-call case, account 8 the batched one, so neither channel
    // has been touched by the other strategy; payers are accounts 0..payers, and
    // account `payers` signs the single-voucher case.
    let per_call_provider = dev_signer(9);
    let batch_provider = dev_signer(8);
    let per_call_chain = Chain::connect(&url, Some(per_call_provider.clone())).await?;
    let batch_chain = Chain::connect(&url, Some(batch_provider.clone())).await?;
    let fund = parse_usdc("100")?;
    for i in 0..args.payers {
        let payer = Chain::connect(&url, Some(dev_signer(i))).await?;
        let escrow = EscrowClient::new(&payer, d.escrow);
        escrow.deposit(fund * U256::from(2)).await?;
        escrow.fund(per_call_provider.address(), fund).await?;
        escrow.fund(batch_provider.address(), fund).await?;
    }
    let price = U256::from(args.price);

    // One transaction per call: call k of the payer claims k calls on its prepaid voucher.
    let per_call = EscrowClient::new(&per_call_chain, d.escrow);
    let mut per_call_gas = 0u64;
    let mut first_tx_gas = 0u64;
    let payer = dev_signer(0);
    let prepaid = Voucher {
        payer: payer.address(),
        provider: per_call_provider.address(),
        epoch: 0,
        amount: price * U256::from(2 * args.calls),
    }
    .sign(&payer, d.chain_id, d.escrow)?;
    for k in 1..=args.calls {
        let claim = Claim::new(prepaid.clone(), price * U256::from(k));
        let tx = per_call.redeem(&claim).await?;
        let gas = per_call_chain.gas_used(tx).await?;
        if k == 1 {
            first_tx_gas = gas;
        }
        per_call_gas += gas;
    }

    // Batched: the calls spread over `payers` payers, one cumulative voucher each, one tx.
    let per_payer = args.calls.div_ceil(args.payers as u64);
    let claims = (0..args.payers)
        .map(|i| {
            let payer = dev_signer(i);
            let v = Voucher {
                payer: payer.address(),
                provider: batch_provider.address(),
                epoch: 0,
                amount: price * U256::from(2 * per_payer),
            }
            .sign(&payer, d.chain_id, d.escrow)?;
            Ok(Claim::new(v, price * U256::from(per_payer)))
        })
        .collect::<Result<Vec<_>, khachapuri_chain::ChainError>>()?;
    let batch = EscrowClient::new(&batch_chain, d.escrow);
    let tx = batch.redeem_batch(&claims).await?;
    let batch_gas = batch_chain.gas_used(tx).await?;
    // One payer, one voucher for all the calls: the best case of prepaid vouchers.
    let single = {
        let payer = dev_signer(args.payers);
        let chain = Chain::connect(&url, Some(payer.clone())).await?;
        let escrow = EscrowClient::new(&chain, d.escrow);
        escrow.deposit(fund).await?;
        escrow.fund(batch_provider.address(), fund).await?;
        let v = Voucher {
            payer: payer.address(),
            provider: batch_provider.address(),
            epoch: 0,
            amount: price * U256::from(2 * args.calls),
        }
        .sign(&payer, d.chain_id, d.escrow)?;
        let tx = batch
            .redeem_batch(&[Claim::new(v, price * U256::from(args.calls))])
            .await?;
        batch_chain.gas_used(tx).await?
    };
    // Sanity: each strategy credited exactly what the calls cost (not the prepaid vouchers)
    // to its provider's escrow balance.
    let paid_per_call = per_call.balance_of(per_call_provider.address()).await?;
    let expected = price * U256::from(args.calls);
    anyhow::ensure!(
        paid_per_call == expected,
        "per-call strategy paid {paid_per_call}, expected {expected}"
    );
    let paid_batched = batch.balance_of(batch_provider.address()).await?;
    let expected_batched = price * U256::from(per_payer * args.payers as u64 + args.calls);
    anyhow::ensure!(
        paid_batched == expected_batched,
        "batched strategies paid {paid_batched}, expected {expected_batched}"
    );
    Ok(json!({
        "calls": args.calls,
        "per_call_txs": args.calls,
        "per_call_gas_total": per_call_gas,
        "per_call_first_tx_gas": first_tx_gas,
        "batched_payers": args.payers,
        "batched_gas_total": batch_gas,
        "single_voucher_gas_total": single,
        "ratio_batched_vs_per_call": per_call_gas as f64 / batch_gas as f64,
        "ratio_single_vs_per_call": per_call_gas as f64 / single as f64,
    }))
}
