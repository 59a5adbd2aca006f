//! The `[payments]` section of the provider config and what it starts: the operator key,
//! the chain connection, the pricing (registry table first, else the config's), the ledger
//! at `data_dir/ledger.sqlite`, the [`Paid`] admission and the [`Settlement`] service.
//!
//! Prices are USDC decimal strings (what people read on a price list), with up to 12
//! decimals: one micro base unit is 1e-12 USDC, the precision the ledger charges in.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use khachapuri_chain::wallet::{open_keystore, parse_private_key};
use khachapuri_chain::{
    parse_usdc, Address, Chain, EscrowClient, PrivateKeySigner, RegistryClient,
};
use khachapuri_payments::{
    Ledger, Pricing, SettlePolicy, Settler, SignatureLimits, SponsorBudgets,
};
use serde::{Deserialize, Serialize};

use crate::paid::{Paid, PaidTerms};
use crate::settlement::Settlement;
use crate::{NodeConfig, ProviderError};

/// Confirmations used on a production chain when `event_confirmations` is unset: events are
/// read only once 12 blocks deep (about 24 s on Base, 2.4 min on Ethereum), deeper than the
/// reorgs those chains see in practice, yet far shorter than any sane unlock delay, so an
/// unlock request is still settled in time. A reorg deeper than this can make the node miss
/// an event; that costs a stale channel cache until its TTL, never a voucher.
pub const PROD_EVENT_CONFIRMATIONS: u64 = 12;

/// Chain ids of local dev chains (anvil/hardhat 31337, ganache 1337): they mine a block only
/// when a transaction arrives and never reorg, so confirmations there would leave the last
/// event (an unlock request) unread until some unrelated transaction is sent.
pub const DEV_CHAIN_IDS: [u64; 2] = [31337, 1337];

/// Most blocks `event_confirmations` may hold back: more delays unlock handling by hours
/// (and is most likely a typo).
pub const MAX_EVENT_CONFIRMATIONS: u64 = 1000;

/// Widest `event_max_range` accepted: above it even generous RPC providers refuse
/// `eth_getLogs`, and the node would retry the same query forever.
pub const MAX_EVENT_RANGE: u64 = 100_000;

/// A price list in USDC decimal strings, e.g. `per_request = "0.0001"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceList {
    /// Flat price of each call (USDC).
    pub per_request: String,
    /// Price of each millisecond of run time (USDC).
    pub per_ms: String,
    /// Price of each MB (1e6 bytes) of response body (USDC).
    pub per_mb_out: String,
}

impl Default for PriceList {
    /// The dev prices: 0.0001 USDC a call, 0.000001 USDC a millisecond, 0.001 USDC a MB.
    fn default() -> Self {
        Self {
            per_request: "0.0001".into(),
            per_ms: "0.000001".into(),
            per_mb_out: "0.001".into(),
        }
    }
}

impl PriceList {
    /// The list in micro base units.
    pub fn to_pricing(&self) -> Result<Pricing, ProviderError> {
        Ok(Pricing {
            per_request: parse_micro_usdc(&self.per_request)?,
            per_ms: parse_micro_usdc(&self.per_ms)?,
            per_mb_out: parse_micro_usdc(&self.per_mb_out)?,
        })
    }

    /// The list of `pricing`, as USDC strings.
    pub fn from_pricing(pricing: &Pricing) -> Self {
        Self {
            per_request: format_micro_usdc(pricing.per_request),
            per_ms: format_micro_usdc(pricing.per_ms),
            per_mb_out: format_micro_usdc(pricing.per_mb_out),
        }
    }
}

/// How a node takes payments; absent means the node cannot charge (it serves free).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentsConfig {
    /// JSON-RPC endpoint of the chain.
    pub rpc_url: String,
    /// Chain id the escrow lives on (checked against the RPC at startup).
    pub chain_id: u64,
    /// Escrow contract.
    pub escrow: Address,
    /// Registry contract; when set and the node's `name` has a pricing table there, that
    /// table's prices win over `pricing`.
    pub registry: Option<Address>,
    /// Prices used when the registry has no table for this provider.
    pub pricing: PriceList,
    /// Settle as soon as this much (USDC) is unredeemed.
    pub settle_threshold: String,
    /// Settle whatever is pending at least this often (seconds).
    pub settle_interval_secs: u64,
    /// How often the threshold is checked (seconds).
    pub settle_check_secs: u64,
    /// How long channel state read from the chain is trusted (seconds); events refresh it.
    pub channel_cache_ttl_secs: u64,
    /// Payers whose channel state (and sponsors whose latest epoch) is kept in memory,
    /// least recently used out first: every fresh key a stranger signs with is a new
    /// payer, so the cache must not grow with them. A forgotten payer is read again.
    pub max_cached_channels: usize,
    /// How often escrow events are polled (milliseconds).
    pub event_poll_ms: u64,
    /// Most blocks one `eth_getLogs` asks for: a node back from downtime catches up in
    /// ranges of this size (its cursor saved after each) instead of one query the RPC
    /// provider refuses. Lower it to your provider's limit (many allow 2000, some 500).
    pub event_max_range: u64,
    /// Blocks an event must be deep before the node reads it (reorg safety). Unset: 0 on a
    /// dev chain ([`DEV_CHAIN_IDS`]), else [`PROD_EVENT_CONFIRMATIONS`].
    pub event_confirmations: Option<u64>,
    /// Operator keystore; its password is handed to [`connect_payments`] by the program
    /// (the CLI reads `KHACHAPURI_PASSWORD` or asks), never read by this library.
    pub operator_keystore: Option<PathBuf>,
    /// Or a file holding the operator's raw 0x-hex private key (mode 0600).
    pub operator_key_file: Option<PathBuf>,
    /// Requests per second one client (IPv4 address or IPv6 /64) may make that cost a
    /// signature check: calls with a voucher the node does not know yet, and top-ups.
    /// Prepaid calls re-sending a known voucher are not counted. `0` turns the limit off
    /// (behind a reverse proxy every client shares the proxy's address).
    pub signature_checks_per_client_per_sec: u32,
    /// How many such requests a client may make at once (the bucket size).
    pub signature_check_burst: u32,
    /// Clients whose buckets are remembered (least recently seen forgotten first).
    pub max_tracked_clients: usize,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            rpc_url: "http://127.0.0.1:8545".into(),
            chain_id: 31337,
            escrow: Address::ZERO,
            registry: None,
            pricing: PriceList::default(),
            settle_threshold: "10".into(),
            settle_interval_secs: 3600,
            settle_check_secs: 10,
            channel_cache_ttl_secs: 30,
            max_cached_channels: khachapuri_payments::DEFAULT_MAX_CACHED_CHANNELS,
            event_poll_ms: 2000,
            event_max_range: khachapuri_chain::DEFAULT_MAX_RANGE,
            event_confirmations: None,
            operator_keystore: None,
            operator_key_file: None,
            signature_checks_per_client_per_sec: 20,
            signature_check_burst: 40,
            max_tracked_clients: 65_536,
        }
    }
}

impl PaymentsConfig {
    /// Rejects a section that could only fail later.
    pub fn validate(&self) -> Result<(), ProviderError> {
        let bad = |m: String| Err(ProviderError::Config(format!("[payments] {m}")));
        if self.escrow == Address::ZERO {
            return bad("escrow must be the escrow contract's address".into());
        }
        if !(self.rpc_url.starts_with("http://") || self.rpc_url.starts_with("https://")) {
            return bad(format!("rpc_url {:?} must be an http(s) URL", self.rpc_url));
        }
        if self.operator_keystore.is_some() == self.operator_key_file.is_some() {
            return bad("set exactly one of operator_keystore and operator_key_file".into());
        }
        if self.max_cached_channels == 0 {
            return bad("max_cached_channels must be at least 1".into());
        }
        if self.settle_interval_secs == 0 || self.settle_check_secs == 0 {
            return bad("settle_interval_secs and settle_check_secs must be at least 1".into());
        }
        if self.event_max_range == 0 || self.event_max_range > MAX_EVENT_RANGE {
            return bad(format!(
                "event_max_range {} must be 1 to {MAX_EVENT_RANGE} blocks",
                self.event_max_range
            ));
        }
        if self.confirmations() > MAX_EVENT_CONFIRMATIONS {
            return bad(format!(
                "event_confirmations {} is over {MAX_EVENT_CONFIRMATIONS} blocks",
                self.confirmations()
            ));
        }
        if self.signature_checks_per_client_per_sec > 0
            && (self.signature_check_burst == 0 || self.max_tracked_clients == 0)
        {
            return bad(
                "signature_check_burst and max_tracked_clients must be at least 1 (or set signature_checks_per_client_per_sec = 0 for no limit)".into(),
            );
        }
        self.pricing.to_pricing()?;
        self.policy()?;
        Ok(())
    }

    /// The per-client limit on requests that cost a signature check.
    pub fn signature_limits(&self) -> SignatureLimits {
        SignatureLimits {
            per_client_per_sec: f64::from(self.signature_checks_per_client_per_sec),
            burst: self.signature_check_burst,
            max_tracked_clients: self.max_tracked_clients,
        }
    }

    /// The confirmations escrow events wait for: the configured value, else by chain (see
    /// [`PaymentsConfig::event_confirmations`]).
    pub fn confirmations(&self) -> u64 {
        self.event_confirmations.unwrap_or_else(|| {
            if DEV_CHAIN_IDS.contains(&self.chain_id) {
                0
            } else {
                PROD_EVENT_CONFIRMATIONS
            }
        })
    }

    /// The settlement policy.
    pub fn policy(&self) -> Result<SettlePolicy, ProviderError> {
        let threshold = parse_usdc(&self.settle_threshold)
            .map_err(|e| ProviderError::Config(format!("[payments] settle_threshold: {e}")))?;
        Ok(SettlePolicy {
            interval: Duration::from_secs(self.settle_interval_secs),
            threshold,
            check_every: Duration::from_secs(self.settle_check_secs),
        })
    }

    /// Whether the operator key needs a password (a keystore), so a program asks for one
    /// only then.
    pub fn needs_password(&self) -> bool {
        self.operator_key_file.is_none() && self.operator_keystore.is_some()
    }

    /// Loads the operator key (blocking: a keystore costs a scrypt run). `password` opens a
    /// keystore; the caller gets it (environment, terminal) so this library never reads
    /// secrets from the process environment behind the program's back.
    pub fn load_operator(&self, password: Option<&str>) -> Result<PrivateKeySigner, ProviderError> {
        let cfg = |m: String| ProviderError::Config(m);
        if let Some(path) = &self.operator_key_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| cfg(format!("cannot read {}: {e}", path.display())))?;
            return parse_private_key(text.trim())
                .map_err(|e| cfg(format!("{} holds no private key: {e}", path.display())));
        }
        if let Some(path) = &self.operator_keystore {
            let password = password.ok_or_else(|| {
                cfg(format!(
                    "{} is a keystore: its password is needed",
                    path.display()
                ))
            })?;
            return open_keystore(path, password)
                .map_err(|e| cfg(format!("cannot open {}: {e}", path.display())));
        }
        Err(cfg("[payments] names no operator key".into()))
    }
}

/// A paid node's parts, ready to start.
#[derive(Debug)]
pub struct PaidSetup {
    /// The admission to give [`crate::Node::new`].
    pub admission: Paid,
    /// The settlement service to spawn next to the server.
    pub settlement: Settlement,
    /// The ledger (shared by both).
    pub ledger: Arc<Ledger>,
    /// The escrow client with the operator's signer.
    pub escrow: EscrowClient,
    /// Where the prices came from (`registry table N` or `config`).
    pub pricing_source: String,
}

/// Connects a node configured with `[payments]`: loads the key (`password` opens an
/// `operator_keystore`; `None` for a key file), checks the chain, picks the pricing, opens
/// the ledger. Fills `config.address` with the operator's address.
pub async fn connect_payments(
    config: &mut NodeConfig,
    password: Option<String>,
) -> Result<PaidSetup, ProviderError> {
    let p = config
        .payments
        .clone()
        .ok_or_else(|| ProviderError::Config("the config has no [payments] section".into()))?;
    p.validate()?;
    let loader = p.clone();
    let signer = tokio::task::spawn_blocking(move || loader.load_operator(password.as_deref()))
        .await
        .map_err(|e| ProviderError::Internal(e.to_string()))??;
    let me = signer.address();
    match &config.address {
        Some(a) if a.parse::<Address>().ok() != Some(me) => {
            return Err(ProviderError::Config(format!(
                "address {a} is not the operator key's address {me}"
            )))
        }
        _ => config.address = Some(me.to_string()),
    }
    let chain = Chain::connect(&p.rpc_url, Some(signer))
        .await
        .map_err(|e| ProviderError::Config(format!("cannot reach {}: {e}", p.rpc_url)))?;
    if chain.chain_id() != p.chain_id {
        return Err(ProviderError::Config(format!(
            "{} is chain {}, the config says {}",
            p.rpc_url,
            chain.chain_id(),
            p.chain_id
        )));
    }
    let (pricing, pricing_source) = pricing_for(&chain, &p, &config.name, me).await?;
    let path = config.data_dir.join("ledger.sqlite");
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| ProviderError::Config(format!("cannot create the data dir: {e}")))?;
    let budgets_path = path.clone();
    let ledger = tokio::task::spawn_blocking(move || Ledger::open(path))
        .await
        .map_err(|e| ProviderError::Internal(e.to_string()))??;
    let ledger = Arc::new(ledger);
    // Same file as the ledger, own table (and connection).
    let budgets = tokio::task::spawn_blocking(move || SponsorBudgets::open(budgets_path))
        .await
        .map_err(|e| ProviderError::Internal(e.to_string()))??;
    let escrow = EscrowClient::new(&chain, p.escrow);
    let terms = PaidTerms {
        chain_id: p.chain_id,
        escrow: p.escrow,
        registry: p.registry,
        provider: me,
    };
    let admission = Paid::new(
        ledger.clone(),
        Arc::new(budgets),
        escrow.clone(),
        terms,
        pricing,
        Duration::from_secs(p.channel_cache_ttl_secs),
        p.signature_limits(),
    )
    .with_max_cached_channels(p.max_cached_channels);
    let settler = Settler::new(ledger.clone(), escrow.clone());
    let settlement = Settlement::new(
        settler,
        admission.gate().clone(),
        &escrow,
        p.policy()?,
        Duration::from_millis(p.event_poll_ms),
    )?
    .with_event_window(p.event_max_range, p.confirmations())
    .with_cursor_file(config.data_dir.join("escrow-events.block"));
    Ok(PaidSetup {
        admission,
        settlement,
        ledger,
        escrow,
        pricing_source,
    })
}

/// The registry's pricing table of provider `name` when it has one, else the config's.
async fn pricing_for(
    chain: &Chain,
    p: &PaymentsConfig,
    name: &str,
    me: Address,
) -> Result<(Pricing, String), ProviderError> {
    let own = || Ok((p.pricing.to_pricing()?, "config".to_string()));
    let Some(registry) = p.registry else {
        return own();
    };
    let reg = RegistryClient::new(chain, registry);
    let record = reg
        .resolve(name)
        .await
        .map_err(|e| ProviderError::Config(format!("cannot read the registry: {e}")))?;
    let Some(record) = record else {
        tracing::warn!(%name, "not registered; using the config's prices");
        return own();
    };
    if record.operator != me {
        // Someone else's name: its prices are not ours to charge.
        tracing::warn!(%name, operator = %record.operator, %me, "the registry names another operator for this name; using the config's prices");
        return own();
    }
    if record.pricing_table.is_zero() {
        return own();
    }
    let id = record.pricing_table;
    let table = reg
        .table(id)
        .await
        .map_err(|e| ProviderError::Config(format!("cannot read pricing table {id}: {e}")))?;
    let Some(t) = table else {
        return own();
    };
    let micro = |v: khachapuri_chain::U256, what: &str| {
        u64::try_from(v).map_err(|_| {
            ProviderError::Config(format!("pricing table {id}: {what} {v} is too large"))
        })
    };
    let pricing = Pricing {
        per_request: micro(t.per_request, "per_request")?,
        per_ms: micro(t.per_ms, "per_ms")?,
        per_mb_out: micro(t.per_mb, "per_mb")?,
    };
    Ok((pricing, format!("registry table {id}")))
}

/// A USDC price (up to 12 decimals) in micro base units, as the pricing's `u64`.
pub fn parse_micro_usdc(s: &str) -> Result<u64, ProviderError> {
    let micro = khachapuri_chain::parse_micro_usdc(s)
        .map_err(|e| ProviderError::Config(format!("price: {e}")))?;
    u64::try_from(micro).map_err(|_| ProviderError::Config(format!("price {s:?}: too large")))
}

/// Formats a `u64` micro-unit price as USDC (see [`khachapuri_chain::format_micro_usdc`]).
pub fn format_micro_usdc(micro: u64) -> String {
    khachapuri_chain::format_micro_usdc(khachapuri_chain::U256::from(micro))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usdc_prices_round_trip_in_micro_units() {
        assert_eq!(parse_micro_usdc("0.0001").ok(), Some(100_000_000));
        assert_eq!(parse_micro_usdc("0.000001").ok(), Some(1_000_000));
        assert_eq!(parse_micro_usdc("0.000000000001").ok(), Some(1));
        assert_eq!(parse_micro_usdc("1").ok(), Some(1_000_000_000_000));
        assert_eq!(parse_micro_usdc("0").ok(), Some(0));
        for bad in ["", "-1", "1e3", "0.0000000000001", "1.2.3", "99999999"] {
            assert!(parse_micro_usdc(bad).is_err(), "{bad:?} must be refused");
        }
        for m in [0, 1, 100_000_000, 1_000_000_000_000, 1_234_567_890_123] {
            assert_eq!(parse_micro_usdc(&format_micro_usdc(m)).ok(), Some(m));
        }
        assert_eq!(format_micro_usdc(100_000_000), "0.0001");
        let dev = PriceList::default().to_pricing().ok();
        assert_eq!(
            dev,
            Some(Pricing {
                per_request: 100_000_000,
                per_ms: 1_000_000,
                per_mb_out: 1_000_000_000
            })
        );
    }

    #[test]
    fn signature_limit_keys_default_and_validate() {
        let c = PaymentsConfig {
            escrow: Address::repeat_byte(1),
            operator_key_file: Some("/tmp/key".into()),
            ..PaymentsConfig::default()
        };
        c.validate().expect("defaults are valid");
        let l = c.signature_limits();
        assert_eq!((l.per_client_per_sec, l.burst), (20.0, 40));
        assert_eq!(l.max_tracked_clients, 65_536);
        let t: PaymentsConfig = toml::from_str(
            "signature_checks_per_client_per_sec = 5\nsignature_check_burst = 7\nmax_tracked_clients = 9",
        )
        .expect("parses");
        assert_eq!(t.signature_limits().burst, 7);
        let no_burst = PaymentsConfig {
            signature_check_burst: 0,
            ..c.clone()
        };
        assert!(no_burst.validate().is_err());
        let off = PaymentsConfig {
            signature_checks_per_client_per_sec: 0,
            signature_check_burst: 0,
            ..c
        };
        off.validate().expect("0 turns the limit off");
    }

    #[test]
    fn section_parses_and_validates() {
        let text = r#"
            rpc_url = "http://127.0.0.1:8545"
            chain_id = 31337
            escrow = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
            operator_key_file = "/tmp/key"
            settle_threshold = "5"
            [pricing]
            per_request = "0.001"
            per_ms = "0"
            per_mb_out = "0.01"
        "#;
        let c: PaymentsConfig = toml::from_str(text).expect("parses");
        c.validate().expect("valid");
        assert_eq!(c.pricing.to_pricing().ok().map(|p| p.per_ms), Some(0));
        let both = PaymentsConfig {
            operator_keystore: Some("/tmp/ks".into()),
            ..c.clone()
        };
        assert!(both.validate().is_err());
        let no_escrow = PaymentsConfig {
            escrow: Address::ZERO,
            ..c
        };
        assert!(no_escrow.validate().is_err());
    }

    #[test]
    fn keystore_password_comes_from_the_caller_not_the_environment() {
        let c = PaymentsConfig {
            operator_keystore: Some("/nonexistent/keystore.json".into()),
            ..PaymentsConfig::default()
        };
        assert!(c.needs_password());
        match c.load_operator(None) {
            Err(e) => assert!(e.to_string().contains("password is needed"), "{e}"),
            Ok(_) => panic!("a keystore opened without a password"),
        }
        let file = PaymentsConfig {
            operator_key_file: Some("/nonexistent/key".into()),
            ..PaymentsConfig::default()
        };
        assert!(!file.needs_password());
    }

    #[test]
    fn event_window_defaults_by_chain_and_is_bounded() {
        let text = r#"
            escrow = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
            operator_key_file = "/tmp/key"
        "#;
        let dev: PaymentsConfig = toml::from_str(text).expect("parses");
        dev.validate().expect("valid");
        assert_eq!(dev.event_max_range, 2000);
        assert_eq!(
            dev.confirmations(),
            0,
            "anvil mines on demand: no confirmations"
        );
        let base = PaymentsConfig {
            chain_id: 8453,
            ..dev.clone()
        };
        assert_eq!(base.confirmations(), PROD_EVENT_CONFIRMATIONS);
        let set: PaymentsConfig = toml::from_str(&format!(
            "{text}\nchain_id = 8453\nevent_confirmations = 0\nevent_max_range = 500"
        ))
        .expect("parses");
        set.validate().expect("valid");
        assert_eq!((set.confirmations(), set.event_max_range), (0, 500));
        for bad in [
            PaymentsConfig {
                event_max_range: 0,
                ..dev.clone()
            },
            PaymentsConfig {
                event_max_range: MAX_EVENT_RANGE + 1,
                ..dev.clone()
            },
            PaymentsConfig {
                event_confirmations: Some(MAX_EVENT_CONFIRMATIONS + 1),
                ..dev.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?} must be refused");
        }
    }
}
