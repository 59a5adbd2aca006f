//! The gateway's request handling: which provider a request is for (Host
//! `{name}.{domain}`, path `/{name}/{cid}/…`, or `/{cid}/…` of a public deployment), and
//! the answer, streamed from the provider or a JSON error with a hint.

use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use khachapuri_types::Cid;

use crate::body::{full, BoxError, ProxyBody};
use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::proxy::{Incoming, Proxy};
use crate::public::Public;
use crate::resolve::{valid_name, BoxFuture, Resolver, Upstream};

/// Where the tunnels of providers behind NAT end: the gateway asks it to carry a request
/// to a named provider. A trait so the proxy does not depend on how tunnels are built.
pub trait Tunnels: Send + Sync + 'static {
    /// Sends `req` over `name`'s tunnel; `None` when that provider is not connected.
    fn send(
        &self,
        name: &str,
        req: Request<ProxyBody>,
    ) -> BoxFuture<'static, Option<Result<Response<ProxyBody>, GatewayError>>>;
}

/// Which provider a request goes to, and the path it sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A named provider; `path` starts with `/` (normally `/{cid}/…`).
    Named {
        /// The registry name.
        name: String,
        /// Path and query the provider sees.
        path: String,
    },
    /// A public deployment, routed among the providers that serve public specs.
    Public {
        /// The deployment's CID.
        cid: Cid,
        /// Path and query the provider sees (`/{cid}/…`).
        path: String,
    },
    /// The gateway's own health check.
    Health,
}

/// Finds the route of a request from its Host and path. `domain` is lowercase.
pub fn route(
    host: Option<&str>,
    path_and_query: &str,
    domain: &str,
) -> Result<Route, GatewayError> {
    if let Some(host) = host {
        let host = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        let host = host.to_ascii_lowercase();
        if let Some(label) = host.strip_suffix(domain).and_then(|h| h.strip_suffix('.')) {
            if !valid_name(label) {
                return Err(GatewayError::UnknownName(label.to_string()));
            }
            let path = if path_and_query.starts_with('/') {
                path_and_query.to_string()
            } else {
                format!("/{path_and_query}")
            };
            return Ok(Route::Named {
                name: label.to_string(),
                path,
            });
        }
    }
    let rest = path_and_query.strip_prefix('/').unwrap_or(path_and_query);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let first = &rest[..end];
    if first == "healthz" {
        return Ok(Route::Health);
    }
    if let Ok(cid) = first.parse::<Cid>() {
        return Ok(Route::Public {
            cid,
            path: format!("/{rest}"),
        });
    }
    if valid_name(first) {
        let tail = &rest[end..];
        let path = if tail.is_empty() || tail.starts_with('?') {
            format!("/{tail}")
        } else {
            tail.to_string()
        };
        return Ok(Route::Named {
            name: first.to_string(),
            path,
        });
    }
    Err(GatewayError::BadRoute(format!(
        "no provider or CID in {path_and_query:?}"
    )))
}

/// The gateway: resolution, routing and the proxy, shared by every connection.
pub struct Gateway {
    config: GatewayConfig,
    resolver: Arc<Resolver>,
    proxy: Proxy,
    tunnels: Option<Arc<dyn Tunnels>>,
    public: Public,
}

impl Gateway {
    /// A gateway over `resolver`; `tunnels` carries requests to providers behind NAT.
    pub fn new(
        config: GatewayConfig,
        resolver: Arc<Resolver>,
        tunnels: Option<Arc<dyn Tunnels>>,
    ) -> Self {
        let proxy = Proxy::new(&config);
        let public = Public::new(&config, resolver.clone());
        Self {
            config,
            resolver,
            proxy,
            tunnels,
            public,
        }
    }

    /// The settings it runs with.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The name resolver (tests inspect its cache).
    pub fn resolver(&self) -> &Arc<Resolver> {
        &self.resolver
    }

    /// Public routing (the registry watcher refreshes it).
    pub fn public(&self) -> &Public {
        &self.public
    }

    /// Answers one request; never fails: errors become JSON answers with a hint.
    pub async fn handle<B>(&self, req: Request<B>, incoming: Incoming) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Unpin + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        match self.try_handle(req, incoming).await {
            Ok(response) => response,
            Err(e) => error_response(&e),
        }
    }

    async fn try_handle<B>(
        &self,
        req: Request<B>,
        incoming: Incoming,
    ) -> Result<Response<ProxyBody>, GatewayError>
    where
        B: http_body::Body<Data = bytes::Bytes> + Unpin + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        match route(incoming.host.as_deref(), &path, &self.config.domain)? {
            Route::Health => Ok(Response::new(full("ok\n"))),
            Route::Named { name, path } => self.forward(&name, req, &path, &incoming).await,
            Route::Public { cid, path } => {
                self.public
                    .forward(cid, req, &path, &incoming, |name, req| {
                        self.forward_prepared(name, req)
                    })
                    .await
            }
        }
    }

    /// Forwards `req` to the provider `name`.
    pub async fn forward<B>(
        &self,
        name: &str,
        req: Request<B>,
        path: &str,
        incoming: &Incoming,
    ) -> Result<Response<ProxyBody>, GatewayError>
    where
        B: http_body::Body<Data = bytes::Bytes> + Unpin + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let resolved = self.resolver.resolve(name).await?;
        let req = self
            .proxy
            .prepare(req, path, &resolved.upstream, incoming)?;
        self.send(name, &resolved.upstream, req).await
    }

    /// Forwards an already prepared request to `name` (public routing prepares once per
    /// attempt).
    pub async fn forward_prepared(
        &self,
        name: String,
        req: crate::public::Attempt,
    ) -> Result<Response<ProxyBody>, GatewayError> {
        let resolved = self.resolver.resolve(&name).await?;
        let req = self
            .proxy
            .prepare(req.request, &req.path, &resolved.upstream, &req.incoming)?;
        self.send(&name, &resolved.upstream, req).await
    }

    async fn send(
        &self,
        name: &str,
        upstream: &Upstream,
        req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, GatewayError> {
        match upstream {
            Upstream::Direct { .. } => self.proxy.send(name, req).await,
            Upstream::Tunnel => {
                let Some(tunnels) = &self.tunnels else {
                    return Err(GatewayError::TunnelDown(name.to_string()));
                };
                match tunnels.send(name, req).await {
                    None => Err(GatewayError::TunnelDown(name.to_string())),
                    Some(result) => result.map(|r| self.proxy.clean_response(r)),
                }
            }
        }
    }
}

/// The JSON answer for an error: `{"error": …, "hint": …}` with its status.
pub fn error_response(e: &GatewayError) -> Response<ProxyBody> {
    let body = serde_json::json!({"error": e.to_string(), "hint": e.hint()});
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = e.status();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = e.retry_after() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if e.status() == StatusCode::SERVICE_UNAVAILABLE {
        tracing::debug!(error = %e, "gateway busy");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";

    #[test]
    fn routes_by_host_then_path() {
        let named = |name: &str, path: &str| Route::Named {
            name: name.into(),
            path: path.into(),
        };
        let d = "khachapuri.xyz";
        assert_eq!(
            route(Some("dev.khachapuri.xyz"), &format!("/{CID}/a?x=1"), d).expect("r"),
            named("dev", &format!("/{CID}/a?x=1"))
        );
        assert_eq!(
            route(Some("DEV.khachapuri.xyz:8443"), "/x", d).expect("r"),
            named("dev", "/x")
        );
        assert_eq!(
            route(Some("gw.example"), &format!("/dev2/{CID}/p?q"), d).expect("r"),
            named("dev2", &format!("/{CID}/p?q"))
        );
        assert_eq!(route(None, "/dev2?q", d).expect("r"), named("dev2", "/?q"));
        assert!(matches!(
            route(Some("khachapuri.xyz"), &format!("/{CID}/x"), d).expect("r"),
            Route::Public { .. }
        ));
        assert_eq!(route(None, "/healthz", d).expect("r"), Route::Health);
        assert!(matches!(
            route(Some("a.b.khachapuri.xyz"), "/", d),
            Err(GatewayError::UnknownName(_))
        ));
        assert!(matches!(
            route(None, "/Not_A_Name/x", d),
            Err(GatewayError::BadRoute(_))
        ));
    }
}
