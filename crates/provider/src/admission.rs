//! The payment slot of the request pipeline.
//!
//! Every call passes [`Admission::admit`] before the guest runs and [`Admission::charge`]
//! after it answers. Today the node ships [`Free`]; the paid-calls layer (vouchers, the
//! durable ledger) plugs in here without touching the HTTP code.

use axum::http::HeaderMap;
use khachapuri_types::Spec;

use crate::ProviderError;

/// What a call used, for pricing after execution.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Wall-clock milliseconds the guest ran.
    pub millis: u64,
    /// Response body bytes.
    pub bytes_out: u64,
}

/// Permission to run one call, handed back at charge time.
#[derive(Debug, Default)]
pub struct Ticket {
    /// Who pays (0x-hex address) when the call is paid.
    pub payer: Option<String>,
}

/// Decides whether a call may run and what it costs.
pub trait Admission: Send + Sync + 'static {
    /// Checks payment before the guest runs; errors become the answer.
    fn admit(&self, spec: &Spec, headers: &HeaderMap) -> Result<Ticket, ProviderError>;

    /// Records the cost after the guest answered; returns a receipt header value, if any.
    fn charge(&self, ticket: Ticket, usage: Usage) -> Option<String>;

    /// Whether calls cost anything (shown at `/.well-known/khachapuri`).
    fn is_free(&self) -> bool;
}

/// Every call is free: `khachapuri dev --free` and free public providers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Free;

impl Admission for Free {
    fn admit(&self, _spec: &Spec, _headers: &HeaderMap) -> Result<Ticket, ProviderError> {
        Ok(Ticket::default())
    }

    fn charge(&self, _ticket: Ticket, _usage: Usage) -> Option<String> {
        None
    }

    fn is_free(&self) -> bool {
        true
    }
}
