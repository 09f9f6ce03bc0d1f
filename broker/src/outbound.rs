//! A connection's outgoing queue: the encoded frames waiting for its writer task, bounded in
//! frames (`[transports] max_pending_frames`) and in bytes (`max_pending_bytes`), and counted
//! against the broker's memory (`[limits] memory_bytes`) until they are written.
//!
//! STOMP and OpenWire connections both use it. A client that stops reading fills its queue;
//! then whatever feeds it (the pumps of its subscriptions, its receipts) waits, the broker
//! stops dispatching to it, and it holds at most the cap. The bytes are given back when a
//! frame is written or when the queue is dropped with the connection, since each queued frame
//! carries its own charge.
//!
//! [`write_loop`] is the writer task of both protocols. A client that stops reading altogether
//! is cut off after `[transports] write_timeout_ms` without progress (ActiveMQ's
//! `soWriteTimeout`, which is off by default there): otherwise it would hold its queue, its
//! prefetched messages and its subscriptions for as long as it keeps the socket open.

use std::sync::Arc;
use std::time::Duration;

use broker_core::memory::MemoryUsage;
use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tracing::warn;

/// One encoded frame and what it costs until it is written or dropped.
pub(crate) struct Queued {
    pub(crate) bytes: Bytes,
    _room: OwnedSemaphorePermit,
    charge: Option<(Arc<MemoryUsage>, u64)>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some((memory, n)) = self.charge.take() {
            memory.release(n);
        }
    }
}

/// The feeding end; cheap to clone (one per subscription pump).
#[derive(Clone)]
pub(crate) struct OutSender {
    tx: mpsc::Sender<Queued>,
    room: Arc<Semaphore>,
    max_bytes: u32,
    memory: Option<Arc<MemoryUsage>>,
}

/// The writer's end.
pub(crate) type OutReceiver = mpsc::Receiver<Queued>;

/// A queue of `max_frames` frames and `max_bytes` bytes, charged to `memory` when given.
pub(crate) fn channel(
    max_frames: usize,
    max_bytes: usize,
    memory: Option<Arc<MemoryUsage>>,
) -> (OutSender, OutReceiver) {
    let max_bytes = u32::try_from(max_bytes).unwrap_or(u32::MAX).max(1);
    let (tx, rx) = mpsc::channel(max_frames.max(1));
    (
        OutSender {
            tx,
            room: Arc::new(Semaphore::new(max_bytes as usize)),
            max_bytes,
            memory,
        },
        rx,
    )
}

impl OutSender {
    /// Queues `bytes`, waiting while the queue is full; false once the writer is gone. A frame
    /// larger than the byte cap takes the whole cap: it waits for an empty queue, and passes.
    pub(crate) async fn send(&self, bytes: Bytes) -> bool {
        let cost = u32::try_from(bytes.len())
            .unwrap_or(u32::MAX)
            .min(self.max_bytes);
        let Ok(room) = Arc::clone(&self.room).acquire_many_owned(cost).await else {
            return false;
        };
        let charge = self.memory.as_ref().map(|m| {
            let n = bytes.len() as u64;
            m.add(n);
            (Arc::clone(m), n)
        });
        self.tx
            .send(Queued {
                bytes,
                _room: room,
                charge,
            })
            .await
            .is_ok()
    }

    /// Resolves once the writer is gone: the client hung up, or stopped reading for longer
    /// than the write timeout. The connection's reader then ends too.
    pub(crate) async fn closed(&self) {
        self.tx.closed().await;
    }
}

/// How a connection's writer behaves beyond writing what is queued.
pub(crate) struct WriterOptions {
    /// Written when nothing else was for the idle interval: a STOMP heart-beat or an OpenWire
    /// `KeepAliveInfo`.
    pub(crate) ping: Bytes,
    /// The idle interval; `None` while the client wants no heart-beats. STOMP learns it from
    /// CONNECT, so it can change.
    pub(crate) idle: watch::Receiver<Option<Duration>>,
    /// A write (of a burst, flushed) that makes no progress for this long ends the connection;
    /// `None` waits forever.
    pub(crate) write_timeout: Option<Duration>,
    /// For the log line.
    pub(crate) peer: String,
}

/// Why a write failed: the socket said so, or the client did not read for too long.
enum Stuck {
    Io,
    Timeout(Duration),
}

async fn timed<F: std::future::Future<Output = std::io::Result<()>>>(
    limit: Option<Duration>,
    write: F,
) -> Result<(), Stuck> {
    match limit {
        None => write.await.map_err(|_| Stuck::Io),
        Some(d) => match tokio::time::timeout(d, write).await {
            Ok(r) => r.map_err(|_| Stuck::Io),
            Err(_) => Err(Stuck::Timeout(d)),
        },
    }
}

/// Writes what is queued until the queue's senders are all gone or the socket fails, flushing
/// once per burst, and pings when idle. Dropping the queue at the end is what tells the
/// connection's reader ([`OutSender::closed`]) to stop.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: OutReceiver,
    mut options: WriterOptions,
) {
    let limit = options.write_timeout;
    // A writer whose idle interval can no longer change stops watching it (a closed watch
    // would wake the loop at once, forever).
    let mut watching = true;
    let result = loop {
        let interval = *options.idle.borrow();
        let next = async {
            match interval {
                Some(d) => tokio::time::timeout(d, rx.recv()).await.ok(),
                None => Some(rx.recv().await),
            }
        };
        let step = tokio::select! {
            r = next => match r {
                Some(Some(queued)) => {
                    let burst = async {
                        wr.write_all(&queued.bytes).await?;
                        // Whatever else is queued goes in the same flush.
                        while let Ok(more) = rx.try_recv() {
                            wr.write_all(&more.bytes).await?;
                        }
                        wr.flush().await
                    };
                    timed(limit, burst).await
                }
                Some(None) => break Ok(()),
                None => {
                    let ping = async {
                        wr.write_all(&options.ping).await?;
                        wr.flush().await
                    };
                    timed(limit, ping).await
                }
            },
            changed = options.idle.changed(), if watching => {
                watching = changed.is_ok();
                Ok(())
            }
        };
        if let Err(stuck) = step {
            break Err(stuck);
        }
    };
    // Gone before the shutdown below, which can block on a socket nobody reads either.
    drop(rx);
    if let Err(Stuck::Timeout(d)) = result {
        warn!(peer = %options.peer, "the client has read nothing for {d:?} with frames waiting for it; closing the connection (transports.write_timeout_ms)");
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
}

/// Waits for the client's room for at least one message and takes all it has now: one grant
/// to broker-core per batch, not per message. `None` once the subscription is closed.
pub(crate) async fn take_credits(credits: &Semaphore) -> Option<u32> {
    credits.acquire().await.ok()?.forget();
    let more = u32::try_from(credits.available_permits()).unwrap_or(u32::MAX);
    match credits.try_acquire_many(more) {
        Ok(p) if more > 0 => {
            p.forget();
            Some(more.saturating_add(1))
        }
        _ => Some(1),
    }
}

/// How many messages a subscription's pump may take next: with credits (prefetch given as
/// the client's room), what [`take_credits`] takes, granted to the broker-core consumer in one
/// go; without, one at a time. `None` once the subscription is closed.
pub(crate) async fn next_batch(
    consumer: &broker_core::Consumer,
    credits: Option<&Semaphore>,
) -> Option<u32> {
    let Some(credits) = credits else {
        return Some(1);
    };
    let n = take_credits(credits).await?;
    consumer.grant(n);
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_are_capped_and_given_back_when_written_or_dropped() {
        let memory = Arc::new(MemoryUsage::new(1 << 20));
        let (tx, mut rx) = channel(100, 10, Some(Arc::clone(&memory)));
        assert!(tx.send(Bytes::from_static(b"123456")).await);
        assert_eq!(memory.used(), 6);
        // 6 + 6 > 10: the second frame waits for the first to be written.
        let second = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(Bytes::from_static(b"abcdef")).await }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        assert_eq!(memory.used(), 6);
        let first = rx.recv().await.expect("first");
        drop(first);
        assert!(second.await.expect("join"));
        assert_eq!(memory.used(), 6);
        // A frame above the cap passes alone.
        drop(rx.recv().await.expect("second"));
        assert!(tx.send(Bytes::from(vec![0u8; 100])).await);
        assert_eq!(memory.used(), 100);
        // Dropped with the queue: given back all the same.
        drop(rx);
        assert_eq!(memory.used(), 0);
    }
}
