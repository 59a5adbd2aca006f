//! The payment slot of the request pipeline.
//!
//! Every call passes [`Admission::admit`] before the guest runs and [`Admission::charge`]
//! (or [`Admission::release`] when it did not run) after it. The trait is async and
//! dyn-compatible so the paid layer ([`crate::Paid`]: vouchers, the durable ledger, chain
//! reads) plugs in behind a `Box<dyn Admission>` without touching the HTTP code; [`Free`]
//! is the other implementation.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use axum::http::HeaderMap;
use khachapuri_payments::{BudgetHold, Reservation};
use khachapuri_types::Spec;

use crate::ProviderError;

/// A boxed, sendable future: what the dyn-compatible async methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a call used, for pricing after execution.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Wall-clock milliseconds the guest ran.
    pub millis: u64,
    /// Response body bytes.
    pub bytes_out: u64,
}

/// The limits that bound a call's cost: admission prices the worst case before running.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallLimits {
    /// Longest the guest may run (ms), after the provider's caps.
    pub timeout_ms: u64,
    /// Largest response body (bytes), after the provider's caps.
    pub max_response_bytes: u64,
}

/// Everything admission may look at, borrowed from the request pipeline.
#[derive(Debug, Clone, Copy)]
pub struct CallInfo<'a> {
    /// The deployment's spec (payer policy, sponsor voucher, owner).
    pub spec: &'a Spec,
    /// Request headers (`Khachapuri-Payment`).
    pub headers: &'a HeaderMap,
    /// The call's limits, so its maximum cost can be priced.
    pub limits: CallLimits,
    /// The peer address of the connection (`None` for in-process callers): the
    /// per-client limit on signature checks is keyed by it.
    pub client: Option<IpAddr>,
}

/// Counters of the per-client signature-check limit, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignatureLimitStats {
    /// Requests refused with 429 so far.
    pub refused: u64,
    /// Clients whose buckets are remembered now.
    pub tracked_clients: u64,
}

/// Permission to run one call, handed back at charge (or release) time.
#[derive(Debug, Default)]
pub struct Ticket {
    /// Who pays (0x-hex address) when the call is paid.
    pub payer: Option<String>,
    /// The credit held for the call's maximum cost, when the call is paid.
    pub reservation: Option<Reservation>,
    /// For a sponsored call: the same maximum cost held against the deployment's budget.
    pub budget: Option<BudgetHold>,
    /// The caller's `Khachapuri-Sign-Receipt` request id: sign this call's receipt.
    pub receipt_id: Option<String>,
}

/// Decides whether a call may run and what it costs.
pub trait Admission: Send + Sync + 'static {
    /// Checks payment before the guest runs; errors become the answer.
    fn admit<'a>(&'a self, call: CallInfo<'a>) -> BoxFuture<'a, Result<Ticket, ProviderError>>;

    /// Records the cost after the guest answered; returns the receipt header value, if any.
    fn charge(
        &self,
        ticket: Ticket,
        usage: Usage,
    ) -> BoxFuture<'_, Result<Option<String>, ProviderError>>;

    /// Gives back a ticket whose call did not run (busy node) or was abandoned (the client
    /// went away mid-call): nothing is charged. Called from `Drop`, so it must not block or
    /// await; implementations hand the work to a background task.
    fn release(&self, ticket: Ticket);

    /// Whether calls cost anything (shown at `/.well-known/khachapuri`).
    fn is_free(&self) -> bool;

    /// Counts one request that costs a signature check (a top-up, before its deployment
    /// is even looked up) against `client`'s limit; refuses past it. Free nodes check no
    /// signatures.
    fn count_signature_check(&self, _client: Option<IpAddr>) -> Result<(), ProviderError> {
        Ok(())
    }

    /// The signature-check limit's counters, when there is a limit.
    fn signature_limit_stats(&self) -> Option<SignatureLimitStats> {
        None
    }

    /// Payment terms for `/.well-known/khachapuri` (chain, escrow, pricing), if any.
    fn describe(&self) -> Option<serde_json::Value> {
        None
    }

    /// `POST /.well-known/khachapuri/voucher[?deployment=CID]`: verifies and records a
    /// top-up voucher (crediting the named sponsored deployment's budget) and answers where
    /// the channel stands. Free nodes have nothing to top up.
    fn top_up<'a>(
        &'a self,
        _body: &'a [u8],
        _deployment: Option<&'a Spec>,
    ) -> BoxFuture<'a, Result<serde_json::Value, ProviderError>> {
        Box::pin(async {
            Err(ProviderError::NotPaid(
                "this provider is free: there is nothing to top up".into(),
            ))
        })
    }
}

/// Every call is free: `khachapuri dev --free` and free public providers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Free;

impl Admission for Free {
    fn admit<'a>(&'a self, _call: CallInfo<'a>) -> BoxFuture<'a, Result<Ticket, ProviderError>> {
        Box::pin(async { Ok(Ticket::default()) })
    }

    fn charge(
        &self,
        _ticket: Ticket,
        _usage: Usage,
    ) -> BoxFuture<'_, Result<Option<String>, ProviderError>> {
        Box::pin(async { Ok(None) })
    }

    fn release(&self, _ticket: Ticket) {}

    fn is_free(&self) -> bool {
        true
    }
}
