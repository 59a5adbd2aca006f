//! IPFS-compatible content for Khachapuri: a UnixFS importer/exporter that yields exactly
//! Kubo's `unixfs-v1-2025` CIDs, an on-disk blockstore, a trustless gateway server (with
//! the Kubo RPC subset publishing needs) and clients for gateways and Kubo.
//!
//! The provider node uses [`Store`]: local first, then gateways, then Kubo, every block
//! verified against its CID and cached.

mod blockstore;
pub mod car;
mod client;
pub mod dagpb;
mod error;
mod exporter;
mod gc;
mod importer;
mod kubo;
mod rpc;
mod server;
mod store;

pub use blockstore::{Blockstore, MAX_BLOCK_SIZE};
pub use client::{verify_car_into, GatewayClient, Limits};
pub use error::{Result, StoreError};
pub use exporter::{export, export_with, links_of, BlockSource, DagWalker};
pub use gc::BlockCacheUsage;
pub use importer::{
    import_async, import_bytes, import_reader, Block, FileBuilder, Imported, CHUNK_SIZE, MAX_LINKS,
};
pub use khachapuri_types::Cid;
pub use kubo::{Added, KuboClient, ADD_PROFILE_FLAGS};
pub use rpc::{PublishConfig, DEFAULT_MAX_UPLOAD_BYTES, TOKEN_ENV};
pub use server::{gateway_router, router, serve, serve_with};
pub use store::{Store, StoreConfig};
