//! The Khachapuri provider node: serves `ANY /{cid}/...` by running the deployment's
//! function in the runtime, plus health, metrics, discovery and a trustless gateway.

mod admission;
mod config;
mod error;
mod http;
mod metrics;
mod node;

pub use admission::{Admission, Free, Ticket, Usage};
pub use config::NodeConfig;
pub use error::ProviderError;
pub use http::{router, serve};
pub use metrics::Metrics;
pub use node::{Deployment, Node, RECEIPT_HEADER};
