//! Forwarding one request to a provider: header hygiene (hop-by-hop and
//! `Connection`-named headers stripped before our own edits, `X-Forwarded-For` and
//! `Forwarded` appended), the request sent to a checked address only, bodies streamed both
//! ways with idle timeouts, a deadline on the response head. Payment headers
//! (`X-Payment`, `khachapuri-receipt`, …) pass untouched: the gateway is not a party to
//! the payment, and a voucher is signed for the provider, not for us.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::body::{proxied, BoxError, ProxyBody};
use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::resolve::Upstream;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1, plus the legacy
/// ones proxies still meet).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers and every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Whether the client declared it accepts trailers (`TE: trailers`): the provider's
/// receipt of a streamed answer travels in them, so the gateway asks for them upstream
/// exactly when the client asked it.
fn wants_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
}

/// Appends this hop to `X-Forwarded-For` and `Forwarded`. Earlier entries are kept as the
/// client sent them but are claims, not facts: a provider behind this gateway trusts only
/// the last entry, the one the gateway wrote.
pub fn append_forwarded(headers: &mut HeaderMap, peer: IpAddr, proto: &str, host: Option<&str>) {
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {peer}"),
        _ => peer.to_string(),
    };
    let node = match peer {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let mut hop = format!("for={node};proto={proto}");
    if let Some(host) = host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"')) {
        hop.push_str(&format!(";host=\"{host}\""));
    }
    let forwarded = match headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {hop}"),
        _ => hop,
    };
    for (name, value) in [
        (HeaderName::from_static("x-forwarded-for"), xff),
        (header::FORWARDED, forwarded),
    ] {
        headers.remove(&name);
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
}

/// What the proxy knows about the incoming request besides the request itself.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The client's address (the TCP peer).
    pub peer: SocketAddr,
    /// `http` or `https`: how the client reached the gateway.
    pub proto: &'static str,
    /// The Host the client asked for.
    pub host: Option<String>,
}

/// The HTTP client to providers, with its timeouts.
#[derive(Clone)]
pub struct Proxy {
    client: Client<HttpConnector, ProxyBody>,
    response_timeout: Duration,
    idle_timeout: Duration,
}

impl Proxy {
    /// A client with `config`'s timeouts and pool size.
    pub fn new(config: &GatewayConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .build(connector);
        Self {
            client,
            response_timeout: Duration::from_millis(config.response_timeout_ms),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
        }
    }

    /// How long a body may stay silent.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Prepares `req` for `upstream`: `path_and_query` is what the provider sees
    /// (`/{cid}/...`); headers cleaned and this hop appended.
    pub fn prepare<B>(
        &self,
        req: Request<B>,
        path_and_query: &str,
        upstream: &Upstream,
        incoming: &Incoming,
    ) -> Result<Request<ProxyBody>, GatewayError>
    where
        B: http_body::Body<Data = bytes::Bytes> + Unpin + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = req.into_parts();
        let trailers = wants_trailers(&parts.headers);
        strip_hop_by_hop(&mut parts.headers);
        if trailers {
            parts
                .headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        append_forwarded(
            &mut parts.headers,
            incoming.peer.ip(),
            incoming.proto,
            incoming.host.as_deref(),
        );
        let bad = |e: &dyn std::fmt::Display| GatewayError::BadRoute(format!("bad path: {e}"));
        match upstream {
            Upstream::Direct {
                scheme,
                host,
                port,
                prefix,
                addrs,
            } => {
                if scheme != "http" {
                    return Err(GatewayError::BadEndpoint {
                        name: host.clone(),
                        url: format!("{scheme}://{host}"),
                        reason: "https upstreams are not supported yet".into(),
                    });
                }
                // Dial the checked address itself: the URI names the IP, the Host header
                // the name, so no second DNS answer can change where this goes.
                let addr = addrs.first().ok_or_else(|| GatewayError::Unreachable {
                    name: host.clone(),
                    reason: "no address".into(),
                })?;
                parts.uri = Uri::try_from(format!("http://{addr}{prefix}{path_and_query}"))
                    .map_err(|e| bad(&e))?;
                let authority = if *port == 80 {
                    host.clone()
                } else {
                    format!("{host}:{port}")
                };
                let value = HeaderValue::from_str(&authority).map_err(|e| bad(&e))?;
                parts.headers.insert(header::HOST, value);
            }
            Upstream::Tunnel => {
                parts.uri = Uri::try_from(path_and_query).map_err(|e| bad(&e))?;
            }
        }
        parts.version = http::Version::HTTP_11;
        Ok(Request::from_parts(parts, proxied(body, self.idle_timeout)))
    }

    /// Sends a prepared request over TCP; `name` is for error messages.
    pub async fn send(
        &self,
        name: &str,
        req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, GatewayError> {
        let sent = tokio::time::timeout(self.response_timeout, self.client.request(req)).await;
        let response = match sent {
            Err(_) => return Err(GatewayError::UpstreamTimeout(name.to_string())),
            Ok(Err(e)) if e.is_connect() => {
                return Err(GatewayError::Unreachable {
                    name: name.to_string(),
                    reason: source_chain(&e),
                })
            }
            Ok(Err(e)) => {
                return Err(GatewayError::Upstream {
                    name: name.to_string(),
                    reason: source_chain(&e),
                })
            }
            Ok(Ok(response)) => response,
        };
        Ok(self.clean_response(response))
    }

    /// Strips hop-by-hop headers off a provider's answer and streams its body.
    pub fn clean_response<B>(&self, response: Response<B>) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Unpin + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Response::from_parts(parts, proxied(body, self.idle_timeout))
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go_payment_headers_stay() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("hop"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("x-payment", HeaderValue::from_static("voucher"));
        h.insert("khachapuri-receipt", HeaderValue::from_static("r"));
        h.insert(
            header::TRAILER,
            HeaderValue::from_static("khachapuri-receipt"),
        );
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["khachapuri-receipt", "trailer", "x-payment"]);
    }

    #[test]
    fn forwarded_headers_are_appended() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        append_forwarded(
            &mut h,
            "5.6.7.8".parse().expect("ip"),
            "http",
            Some("dev.example"),
        );
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 5.6.7.8");
        assert_eq!(
            h[header::FORWARDED],
            "for=5.6.7.8;proto=http;host=\"dev.example\""
        );
        append_forwarded(&mut h, "::1".parse().expect("ip"), "https", None);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 5.6.7.8, ::1");
        assert_eq!(
            h[header::FORWARDED],
            "for=5.6.7.8;proto=http;host=\"dev.example\", for=\"[::1]\";proto=https"
        );
    }
}
