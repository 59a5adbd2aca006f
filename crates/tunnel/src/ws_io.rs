//! A WebSocket seen as a byte stream, so HTTP/2 can run over it.
//!
//! Each write becomes one binary message (at most [`MAX_CHUNK`] bytes, well under the
//! peer's message limit); reads concatenate binary messages. A close frame, or the socket
//! closing, is end of stream; a text message after the handshake is a protocol error.
//! WebSocket pings are answered by tungstenite itself; the tunnel's own keepalive is
//! HTTP/2 PING, which travels as data here.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// Largest binary message one write produces: a few 64 KiB HTTP/2 frames per message,
/// well under the 1 MiB default message limit ([`crate::H2Config::max_ws_message`]).
pub(crate) const MAX_CHUNK: usize = 256 * 1024;

/// The adapter. `S` is the socket under the WebSocket (TCP, TLS, or hyper's upgrade).
pub(crate) struct WsIo<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
    eof: bool,
}

impl<S> WsIo<S> {
    pub(crate) fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            pending: Bytes::new(),
            eof: false,
        }
    }
}

fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) => self.pending = b,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text WebSocket message inside the tunnel's HTTP/2 stream",
                    )))
                }
                Some(Ok(Message::Close(_))) | None => self.eof = true,
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => self.eof = true,
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(to_io)?;
        let n = buf.len().min(MAX_CHUNK);
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(to_io)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}

/// Sends one handshake message as a text message.
pub(crate) async fn send_message<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    msg: &crate::handshake::Message,
) -> Result<(), crate::TunnelError> {
    use futures_util::SinkExt;
    ws.send(Message::text(crate::handshake::encode(msg)))
        .await?;
    Ok(())
}

/// Receives the next handshake message (text only; pings skipped). The caller bounds
/// the wait; the WebSocket's message limit bounds what is read before decoding refuses it.
pub(crate) async fn recv_message<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> Result<crate::handshake::Message, crate::TunnelError> {
    use futures_util::StreamExt;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return crate::handshake::decode(t.as_bytes()),
            Some(Ok(Message::Binary(_))) => {
                return Err(crate::TunnelError::Malformed(
                    "binary message during the handshake".into(),
                ))
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(_))) | None => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed during the handshake",
                )
                .into())
            }
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// Sends a refusal (when the error is one) and closes, within `bound`: the peer's
/// operator sees why, and a dead peer cannot hold us.
pub(crate) async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    err: &crate::TunnelError,
    bound: std::time::Duration,
) {
    use crate::error::RefusalCode;
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    let (code, message) = match err {
        crate::TunnelError::Refused { code, message } => (*code, message.clone()),
        crate::TunnelError::Malformed(m) => (RefusalCode::Protocol, m.clone()),
        crate::TunnelError::Timeout(what) => (RefusalCode::Protocol, format!("timed out: {what}")),
        _ => return,
    };
    let _ = tokio::time::timeout(bound, async {
        let _ = send_message(ws, &crate::handshake::Message::Refused { code, message }).await;
        let _ = ws
            .close(Some(CloseFrame {
                code: CloseCode::Policy,
                reason: code.to_string().into(),
            }))
            .await;
    })
    .await;
}

/// The WebSocket settings for the tunnel: message and frame limits from the config.
pub(crate) fn ws_config(
    h2: &crate::config::H2Config,
) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(h2.max_ws_message))
        .max_frame_size(Some(h2.max_ws_message))
}
