//! The gateway's end of provider tunnels ([`khachapuri_tunnel::TunnelServer`]): the
//! registry is the operator lookup (a tunnel for `name` is admitted only for the key the
//! registry names as its operator), the upgrade is answered at
//! `/.well-known/khachapuri/tunnel`, and requests for a tunneled name are sent over it.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use http_body_util::BodyExt as _;
use khachapuri_tunnel::{LookupFuture, OperatorLookup, TunnelError, TunnelServer, TUNNEL_PATH};

use crate::body::ProxyBody;
use crate::error::GatewayError;
use crate::gateway::Tunnels;
use crate::resolve::{BoxFuture, Registry};
use crate::server::Hook;

/// The registry as the tunnel's operator lookup.
pub struct RegistryOperators(pub Arc<dyn Registry>);

impl OperatorLookup for RegistryOperators {
    fn operator<'a>(&'a self, name: &'a str) -> LookupFuture<'a> {
        Box::pin(async move {
            match self.0.resolve(name).await {
                Ok(record) => Ok(record.map(|r| r.operator)),
                Err(e) => Err(Box::new(e) as khachapuri_tunnel::BoxError),
            }
        })
    }
}

/// Tunnels as the proxy sees them.
pub struct TunnelSet(pub TunnelServer);

impl Tunnels for TunnelSet {
    fn send(
        &self,
        name: &str,
        req: Request<ProxyBody>,
    ) -> BoxFuture<'static, Option<Result<Response<ProxyBody>, GatewayError>>> {
        let handle = self.0.sender(name);
        let name = name.to_string();
        Box::pin(async move {
            let handle = handle?;
            Some(match handle.send_request(req).await {
                Ok(response) => Ok(response.map(|b| b.into_inner().map_err(Into::into).boxed())),
                // Nothing was sent: the provider never saw it (retryable elsewhere).
                Err(TunnelError::Draining) => Err(GatewayError::TunnelDown(name)),
                Err(TunnelError::Overloaded) => Err(GatewayError::Busy(
                    "too many requests in flight on this tunnel",
                )),
                Err(e) => Err(GatewayError::Upstream {
                    name,
                    reason: format!("tunnel: {e}"),
                }),
            })
        })
    }
}

/// A server hook answering the tunnel upgrade; every other request goes on to routing.
pub fn tunnel_hook(server: TunnelServer) -> Hook {
    Arc::new(
        move |req: Request<hyper::body::Incoming>, peer: SocketAddr| {
            if req.uri().path() != TUNNEL_PATH {
                return Err(Box::new(req));
            }
            let response = server.upgrade(req, Some(peer));
            let answer: BoxFuture<'static, Response<ProxyBody>> =
                Box::pin(
                    async move { response.map(|b| b.map_err(|never| match never {}).boxed()) },
                );
            Ok(answer)
        },
    )
}
