//! A connection's outgoing queue: the encoded frames waiting for its writer task, bounded in
//! frames (`[transports] max_pending_frames`) and in bytes (`max_pending_bytes`), and counted
//! against the broker's memory (`[limits] memory_bytes`) until they are written.
//!
//! STOMP and OpenWire connections both use it. A client that stops reading fills its queue;
//! then whatever feeds it (the pumps of its subscriptions, its receipts) waits, the broker
//! stops dispatching to it, and it holds at most the cap. The bytes are given back when a
//! frame is written or when the queue is dropped with the connection, since each queued frame
//! carries its own charge.

use std::sync::Arc;

use broker_core::memory::MemoryUsage;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

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
