//! A connection's writes in flight: persistent SENDs and ACKs without a receipt, handed to the
//! broker in order and awaited later, so that everything one client has in flight shares the
//! journal's fsyncs instead of paying one each.
//!
//! The window is bounded in entries and in message bytes: a producer faster than the disk
//! finds it full, the connection stops reading, and TCP slows the producer down. Anything that
//! must observe earlier writes (a receipt, COMMIT, DISCONNECT, SUBSCRIBE, ...) drains it first,
//! and the first write that fails ends the connection before any later one is acknowledged.

use std::collections::VecDeque;

use broker_core::{BrokerError, MessageId, Submitted};

/// One write in flight.
pub(super) enum Write {
    Send(Submitted<MessageId>),
    Ack(Submitted<()>),
}

struct InFlight {
    /// How the client would recognise it in an ERROR: `SEND #12 to /queue/orders`.
    what: String,
    bytes: usize,
    write: Write,
}

/// A write of the window that failed.
#[derive(Debug)]
pub(super) struct WriteFailed {
    pub what: String,
    pub error: BrokerError,
}

pub(super) struct Window {
    items: VecDeque<InFlight>,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
}

impl Window {
    pub(super) fn new(max_items: usize, max_bytes: usize) -> Window {
        Window {
            items: VecDeque::new(),
            bytes: 0,
            max_items: max_items.max(1),
            max_bytes,
        }
    }

    /// Whether a write of `bytes` more would overflow the window. One write always fits into
    /// an empty window, however large.
    fn full_for(&self, bytes: usize) -> bool {
        !self.items.is_empty()
            && (self.items.len() >= self.max_items || self.bytes + bytes > self.max_bytes)
    }

    /// Waits until a write of `bytes` fits: the oldest writes complete first.
    pub(super) async fn make_room(&mut self, bytes: usize) -> Result<(), WriteFailed> {
        while self.full_for(bytes) {
            self.complete_oldest().await?;
        }
        Ok(())
    }

    /// Adds a write already submitted; call [`Window::make_room`] before submitting it.
    pub(super) fn push(&mut self, what: String, bytes: usize, write: Write) {
        self.bytes += bytes;
        self.items.push_back(InFlight { what, bytes, write });
    }

    /// Waits for the oldest write. Pending forever on an empty window, so that it can sit in a
    /// `select!` beside the socket read.
    pub(super) async fn complete_oldest(&mut self) -> Result<(), WriteFailed> {
        let Some(front) = self.items.front_mut() else {
            return std::future::pending().await;
        };
        let result = match &mut front.write {
            Write::Send(s) => s.await.map(drop),
            Write::Ack(s) => s.await,
        };
        let done = self.items.pop_front();
        let (what, bytes) = done.map(|d| (d.what, d.bytes)).unwrap_or_default();
        self.bytes -= bytes;
        result.map_err(|error| WriteFailed { what, error })
    }

    /// Waits for every write in flight: what a receipt, a COMMIT or a DISCONNECT needs.
    pub(super) async fn drain(&mut self) -> Result<(), WriteFailed> {
        while !self.items.is_empty() {
            self.complete_oldest().await?;
        }
        Ok(())
    }
}
