//! Connection limits, so that slow or idle clients cannot hold every socket:
//! caps on open connections, in all and per client address, and an idle
//! timeout on the socket.
//!
//! The caps are checked when a TCP connection is accepted, before any TLS
//! work: over either cap the socket is closed at once and
//! `crosswalk_connections_refused_total{reason}` counts it (`total` or
//! `per_client`). A connection holds its slot until it closes, whatever it
//! does meanwhile, so every timeout below also frees slots:
//! - the TLS handshake (`server.tls_handshake_timeout_secs`), in `run`;
//! - HTTP/1 request headers (`server.header_read_timeout_secs`, hyper's own
//!   timer): a slowloris client trickling a header is dropped;
//! - silence (`server.idle_timeout_secs`, [`IdleTimeout`]): a connection on
//!   which nothing is read or written for that long is closed, keep-alive or
//!   not; an HTTP/2 peer that answers the gateway's pings is not silent, and
//!   one that does not is dropped by hyper's keep-alive timeout.
//!
//! The per-client cap keys on the peer's IP address: clients behind one NAT
//! or proxy share it, which is why its default (256) is generous.

use std::collections::HashMap;
use std::future::Future as _;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::http::metrics::Metrics;

/// Why a connection was not admitted: the metric's `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Total,
    PerClient,
}

impl Refused {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::PerClient => "per_client",
        }
    }
}

/// Counts open connections against the caps.
pub(crate) struct ConnectionGate {
    max_total: usize,
    max_per_client: usize,
    /// Open connections in all, and per client address (entries at zero are
    /// removed, so the map holds only clients with a connection open). A std
    /// Mutex: held for a few instructions, never across an await.
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    metrics: Arc<Metrics>,
}

/// A connection's slot; dropping it (when the connection's task ends) frees it.
pub(crate) struct Admitted {
    gate: Arc<ConnectionGate>,
    client: IpAddr,
}

impl ConnectionGate {
    pub(crate) fn new(max_total: usize, max_per_client: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_client,
            open: Mutex::new((0, HashMap::new())),
            metrics,
        })
    }

    /// A slot for a connection from `client`, or why there is none (counted).
    pub(crate) fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Admitted, Refused> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let (total, per_client) = &mut *open;
        let refused = if *total >= self.max_total {
            Some(Refused::Total)
        } else if per_client.get(&client).copied().unwrap_or(0) >= self.max_per_client {
            Some(Refused::PerClient)
        } else {
            None
        };
        if let Some(refused) = refused {
            drop(open);
            self.metrics.observe_connection_refused(refused.reason());
            return Err(refused);
        }
        *total += 1;
        *per_client.entry(client).or_insert(0) += 1;
        let now_open = *total;
        drop(open);
        self.metrics.set_connections_open(now_open);
        Ok(Admitted {
            gate: Arc::clone(self),
            client,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .gate
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (total, per_client) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(count) = per_client.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_client.remove(&self.client);
            }
        }
        let now_open = *total;
        drop(open);
        self.gate.metrics.set_connections_open(now_open);
    }
}

/// A socket that fails its reads once nothing has been read or written on it
/// for `idle`, which makes hyper (and the TLS layer) close the connection.
///
/// The deadline moves on every byte read or written. It is checked when the
/// reader is polled and finds nothing to read, and the timer wakes the task
/// when it passes, so a silent connection is closed on time even though no
/// byte will ever arrive.
pub(crate) struct IdleTimeout<T> {
    inner: T,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<T> IdleTimeout<T> {
    pub(crate) fn new(inner: T, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn touch(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection idle for server.idle_timeout_secs",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = written
            && n > 0
        {
            self.touch();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use super::{ConnectionGate, Refused};
    use crate::http::metrics::Metrics;

    #[test]
    fn the_caps_count_open_connections_and_free_them_on_drop() {
        let gate = ConnectionGate::new(3, 2, Arc::new(Metrics::default()));
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let first = gate.admit(a).expect("first");
        let _second = gate.admit(a).expect("second");
        assert_eq!(gate.admit(a).err(), Some(Refused::PerClient));
        let _third = gate.admit(b).expect("another client");
        assert_eq!(gate.admit(b).err(), Some(Refused::Total));
        drop(first);
        assert!(gate.admit(a).is_ok(), "a closed connection frees its slot");
    }
}
