//! Connection limits on the listener, before any byte is parsed: a cap on connections per
//! source address and in total (kept below the process's file-descriptor limit, so a flood
//! of idle sockets cannot stop the API and agent hellos), and deadlines on every connection —
//! the first request's headers must start within `header_read_timeout_secs`, and a
//! connection with no traffic either way for longer than the request timeout is closed.
//! Agent sessions are never idle that long: the server pings them every heartbeat.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

use crate::ServerConfig;

/// File descriptors kept free for the store, the data dir and outgoing requests.
const FD_RESERVE: u64 = 512;

/// Counts of open connections, by source and in total.
#[derive(Default)]
struct Counts {
    by_source: HashMap<IpAddr, usize>,
    total: usize,
}

/// The limits and the live counts.
pub struct Limits {
    per_source: usize,
    total: usize,
    first_byte: Duration,
    idle: Duration,
    counts: Mutex<Counts>,
}

impl Limits {
    pub fn new(config: &ServerConfig) -> Arc<Limits> {
        let fd_cap = fd_limit().map(|n| n.saturating_sub(FD_RESERVE).max(64) as usize);
        let total = match (config.max_connections, fd_cap) {
            (0, Some(cap)) => cap,
            (0, None) => usize::MAX,
            (n, Some(cap)) => n.min(cap),
            (n, None) => n,
        };
        Arc::new(Limits {
            per_source: if config.max_connections_per_source == 0 { usize::MAX } else { config.max_connections_per_source },
            total,
            first_byte: Duration::from_secs(config.header_read_timeout_secs),
            idle: Duration::from_secs(config.request_timeout_secs + config.header_read_timeout_secs),
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Admit a connection from `peer`, or `None` when a cap is reached.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let mut c = self.counts.lock().expect("connection counts");
        let mine = c.by_source.get(&peer).copied().unwrap_or(0);
        if mine >= self.per_source || c.total >= self.total {
            return None;
        }
        c.by_source.insert(peer, mine + 1);
        c.total += 1;
        Some(Slot { limits: self.clone(), peer })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.lock().expect("connection counts").total
    }
}

/// The soft limit on open files, raised to the hard limit first.
fn fd_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

/// One admitted connection; its counts go back when it is dropped.
struct Slot {
    limits: Arc<Limits>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.limits.counts.lock().expect("connection counts");
        c.total -= 1;
        if let Some(n) = c.by_source.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                c.by_source.remove(&self.peer);
            }
        }
    }
}

/// A TCP listener that drops connections over the caps at once.
pub struct LimitedListener {
    inner: TcpListener,
    limits: Arc<Limits>,
}

impl LimitedListener {
    pub fn new(inner: TcpListener, limits: Arc<Limits>) -> LimitedListener {
        LimitedListener { inner, limits }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The next admitted connection.
    pub async fn accept(&mut self) -> (Limited<TcpStream>, SocketAddr) {
        loop {
            let (tcp, peer) = match self.inner.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors or a transient error: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(slot) = self.limits.admit(peer.ip()) else {
                tracing::debug!(%peer, "connection limit reached; connection dropped");
                continue;
            };
            // Small frames must not wait for the peer's delayed ACK (~40 ms).
            let _ = tcp.set_nodelay(true);
            return (Limited::new(tcp, slot, self.limits.first_byte, self.limits.idle), peer);
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Limited<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        LimitedListener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection with its slot and its deadlines: the first byte must come within
/// `first_byte`, then any traffic either way within `idle` of the last.
pub struct Limited<T> {
    inner: T,
    _slot: Slot,
    started: bool,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<T> Limited<T> {
    fn new(inner: T, slot: Slot, first_byte: Duration, idle: Duration) -> Limited<T> {
        Limited { inner, _slot: slot, started: false, idle, deadline: Box::pin(tokio::time::sleep(first_byte)) }
    }

    fn progressed(&mut self) {
        self.started = true;
        let next = Instant::now() + self.idle;
        // Resetting a timer costs a little: only when it moved by a second or more.
        if next.saturating_duration_since(self.deadline.deadline()) >= Duration::from_secs(1) {
            self.deadline.as_mut().reset(next);
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }

    fn timed_out(&self) -> io::Error {
        let what = if self.started { "connection idle too long" } else { "no request within the header read timeout" };
        io::Error::new(io::ErrorKind::TimedOut, what)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Limited<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.expired(cx) {
                    Poll::Ready(Err(self.timed_out()))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Limited<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 && self.started {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if self.expired(cx) {
                    Poll::Ready(Err(self.timed_out()))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 && self.started {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if self.expired(cx) {
                    Poll::Ready(Err(self.timed_out()))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
