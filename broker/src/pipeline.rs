//! A connection's writes in flight (STOMP SENDs and ACKs without a receipt, OpenWire
//! asynchronous sends), handed to the broker in order and awaited later, so that everything one client has in flight shares the
//! journal's fsyncs instead of paying one each.
//!
//! The window is bounded in entries and in message bytes: a producer faster than the disk
//! finds it full, the connection stops reading, and TCP slows the producer down. Anything that
//! must observe earlier writes (a receipt, COMMIT, DISCONNECT, SUBSCRIBE, ...) drains it first,
//! and the first write that fails ends the connection before any later one is acknowledged.
//!
//! The message bytes in a window count against the broker's memory (`[limits] memory_bytes`)
//! until they are durable; while memory is full a connection keeps at most one write in
//! flight, so producers faster than the disk cannot together hold more than the limit plus one
//! message each. Waiting for a write never needs memory, so this cannot deadlock.
//!
//! STOMP and OpenWire connections both pipeline through it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use broker_core::BrokerError;
use broker_core::memory::MemoryUsage;

/// One write in flight: a `Submitted` send or ack, its value dropped.
pub(crate) type Write = Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send + Sync>>;

struct InFlight {
    /// How the client would recognise it in an ERROR: `SEND #12 to /queue/orders`.
    what: String,
    bytes: usize,
    write: Write,
}

/// A write of the window that failed.
#[derive(Debug)]
pub(crate) struct WriteFailed {
    pub what: String,
    pub error: BrokerError,
}

/// The message bytes in every connection's window together: now, and the most there ever
/// were. `/metrics` shows both; they are what a producer faster than the disk can make the
/// broker hold.
#[derive(Debug, Default)]
pub struct PipelineGauge {
    now: AtomicUsize,
    high_water: AtomicUsize,
}

impl PipelineGauge {
    /// Message bytes in windows now.
    pub fn bytes(&self) -> usize {
        self.now.load(Ordering::Relaxed)
    }

    /// The most message bytes there were in windows at once since the broker started.
    pub fn high_water(&self) -> usize {
        self.high_water.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        let now = self.now.fetch_add(n, Ordering::Relaxed) + n;
        self.high_water.fetch_max(now, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.now.fetch_sub(n, Ordering::Relaxed);
    }
}

pub(crate) struct Window {
    items: VecDeque<InFlight>,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
    gauge: Arc<PipelineGauge>,
    memory: Option<Arc<MemoryUsage>>,
}

impl Window {
    pub(crate) fn new(
        max_items: usize,
        max_bytes: usize,
        gauge: Arc<PipelineGauge>,
        memory: Option<Arc<MemoryUsage>>,
    ) -> Window {
        Window {
            items: VecDeque::new(),
            bytes: 0,
            max_items: max_items.max(1),
            max_bytes,
            gauge,
            memory,
        }
    }

    /// Whether a write of `bytes` more would overflow the window, or the broker's memory. One
    /// write always fits into an empty window, however large.
    fn full_for(&self, bytes: usize) -> bool {
        let memory_full = self.memory.as_ref().is_some_and(|m| !m.has_room());
        !self.items.is_empty()
            && (memory_full
                || self.items.len() >= self.max_items
                || self.bytes + bytes > self.max_bytes)
    }

    fn charge(&self, bytes: usize) {
        self.gauge.add(bytes);
        if let Some(m) = &self.memory {
            m.add(bytes as u64);
        }
    }

    fn refund(&self, bytes: usize) {
        self.gauge.sub(bytes);
        if let Some(m) = &self.memory {
            m.release(bytes as u64);
        }
    }

    /// Waits until a write of `bytes` fits: the oldest writes complete first.
    pub(crate) async fn make_room(&mut self, bytes: usize) -> Result<(), WriteFailed> {
        while self.full_for(bytes) {
            self.complete_oldest().await?;
        }
        Ok(())
    }

    /// Adds a write already submitted; call [`Window::make_room`] before submitting it.
    pub(crate) fn push(&mut self, what: String, bytes: usize, write: Write) {
        self.bytes += bytes;
        self.charge(bytes);
        self.items.push_back(InFlight { what, bytes, write });
    }

    /// Waits for the oldest write. Pending forever on an empty window, so that it can sit in a
    /// `select!` beside the socket read.
    pub(crate) async fn complete_oldest(&mut self) -> Result<(), WriteFailed> {
        let Some(front) = self.items.front_mut() else {
            return std::future::pending().await;
        };
        let result = front.write.as_mut().await;
        let done = self.items.pop_front();
        let (what, bytes) = done.map(|d| (d.what, d.bytes)).unwrap_or_default();
        self.bytes -= bytes;
        self.refund(bytes);
        result.map_err(|error| WriteFailed { what, error })
    }

    /// Waits for every write in flight: what a receipt, a COMMIT or a DISCONNECT needs.
    pub(crate) async fn drain(&mut self) -> Result<(), WriteFailed> {
        while !self.items.is_empty() {
            self.complete_oldest().await?;
        }
        Ok(())
    }
}

impl Drop for Window {
    /// A connection that ends with writes in flight stops waiting for them (the store still
    /// completes them); their bytes leave the gauge and the memory count with it.
    fn drop(&mut self) {
        self.refund(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::sync::oneshot;

    use super::*;

    /// A write that completes when the returned sender fires (or fails when it is dropped).
    fn pending_write() -> (oneshot::Sender<()>, Write) {
        let (tx, rx) = oneshot::channel::<()>();
        let w: Write = Box::pin(async move {
            rx.await
                .map_err(|_| BrokerError::Invalid("the disk said no".into()))
        });
        (tx, w)
    }

    /// Whether `make_room` completes without anything else happening first.
    async fn room_now(w: &mut Window, bytes: usize) -> bool {
        tokio::select! {
            biased;
            r = w.make_room(bytes) => { r.unwrap(); true }
            () = tokio::task::yield_now() => false,
        }
    }

    #[tokio::test]
    async fn a_full_window_waits_for_its_oldest_write() {
        let mut w = Window::new(3, 1_000_000, Arc::default(), None);
        let mut senders = Vec::new();
        for n in 0..3 {
            assert!(room_now(&mut w, 10).await, "write {n} fits");
            let (tx, write) = pending_write();
            w.push(format!("SEND #{n}"), 10, write);
            senders.push(tx);
        }
        assert!(!room_now(&mut w, 10).await, "a fourth write waits");
        // The newest completing does not make room: the window frees in order.
        senders.pop().unwrap().send(()).unwrap();
        assert!(!room_now(&mut w, 10).await, "still waits for the oldest");
        senders.remove(0).send(()).unwrap();
        assert!(room_now(&mut w, 10).await, "room once the oldest is done");
    }

    #[tokio::test]
    async fn bytes_bound_the_window_but_one_big_write_always_fits() {
        let mut w = Window::new(100, 1_000, Arc::default(), None);
        assert!(
            room_now(&mut w, 5_000).await,
            "an empty window takes anything"
        );
        let (big, write) = pending_write();
        w.push("SEND #1".into(), 5_000, write);
        assert!(!room_now(&mut w, 1).await, "over the byte limit");
        big.send(()).unwrap();
        assert!(room_now(&mut w, 600).await);
        let (_a, write) = pending_write();
        w.push("SEND #2".into(), 600, write);
        assert!(!room_now(&mut w, 600).await, "600 + 600 > 1000");
        assert!(room_now(&mut w, 400).await, "600 + 400 fits");
    }

    #[tokio::test]
    async fn a_failed_write_is_named_and_stops_the_drain() {
        let mut w = Window::new(10, 1_000, Arc::default(), None);
        let (ok, first) = pending_write();
        w.push("SEND #1 to /queue/a".into(), 1, first);
        let (failing, second) = pending_write();
        w.push("SEND #2 to /queue/a".into(), 1, second);
        let (_third_tx, third) = pending_write();
        w.push("SEND #3 to /queue/a".into(), 1, third);
        ok.send(()).unwrap();
        drop(failing);
        let failed = w.drain().await.unwrap_err();
        assert_eq!(failed.what, "SEND #2 to /queue/a");
        assert!(failed.error.to_string().contains("the disk said no"));
    }

    #[tokio::test]
    async fn the_gauge_counts_every_window_and_forgets_a_dropped_one() {
        let gauge = Arc::new(PipelineGauge::default());
        let mut a = Window::new(10, 1_000, Arc::clone(&gauge), None);
        let mut b = Window::new(10, 1_000, Arc::clone(&gauge), None);
        let (done, write) = pending_write();
        a.push("SEND #1".into(), 300, write);
        let (_kept, write) = pending_write();
        b.push("SEND #1".into(), 500, write);
        assert_eq!((gauge.bytes(), gauge.high_water()), (800, 800));
        done.send(()).unwrap();
        a.complete_oldest().await.unwrap();
        assert_eq!((gauge.bytes(), gauge.high_water()), (500, 800));
        drop(b);
        assert_eq!((gauge.bytes(), gauge.high_water()), (0, 800));
    }

    #[tokio::test]
    async fn window_bytes_count_against_memory_and_a_full_memory_keeps_one_write() {
        let memory = Arc::new(MemoryUsage::new(1_000));
        let mut w = Window::new(100, 1_000_000, Arc::default(), Some(Arc::clone(&memory)));
        let (first, write) = pending_write();
        w.push("SEND #1".into(), 600, write);
        assert_eq!(memory.used(), 600);
        assert!(room_now(&mut w, 300).await, "600 + 300 is under the limit");
        let (second, write) = pending_write();
        w.push("SEND #2".into(), 300, write);
        memory.add(200); // somebody else's
        assert!(!room_now(&mut w, 10).await, "memory is full: wait");
        first.send(()).unwrap();
        assert!(room_now(&mut w, 10).await, "the oldest done: room again");
        assert_eq!(memory.used(), 500, "the first write given back");
        let (_kept, write) = pending_write();
        w.push("SEND #3".into(), 5_000, write);
        assert!(!memory.has_room());
        second.send(()).unwrap();
        assert!(
            !room_now(&mut w, 10).await,
            "memory still full: one write in flight at most"
        );
        drop(w);
        assert_eq!(memory.used(), 200, "a dropped window gives its bytes back");
    }
}
