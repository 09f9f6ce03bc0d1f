//! Producers: a send that waits for its message to be stored, and a send that only waits for
//! the message's place, for a connection that pipelines.
//!
//! Pipelined sends keep their order twice over: the store fixes each message's place when it
//! is submitted (so the queue pages them in order), and the deliveries that follow the writes
//! (a topic's fan-out to its subscribers) are chained so that each waits for the one before it
//! from the same producer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use store_api::{Destination, MAX_PRIORITY, MessageId, StoreError};
use tokio::sync::oneshot;
use tracing::debug;

use super::{Outgoing, Session, Submitted};
use crate::core::advisory::Advisory;
use crate::core::now_ms;
use crate::error::{BrokerError, Result};

/// Sends to one destination.
pub struct Producer {
    session: Session,
    id: Arc<str>,
    seq: AtomicU64,
    destination: Destination,
    /// Fires when the delivery of the previous submitted send is done: the next one's waits
    /// for it, so subscribers see one producer's messages in the order sent.
    previous: Mutex<Option<oneshot::Receiver<()>>>,
    /// Sends to a temporary destination, which must still exist at each send.
    temporary: bool,
    /// Its place under `limits.max_producers_per_connection`, unless a
    /// [`DeclaredProducer`] holds it.
    _slot: Option<super::usage::Slot>,
    /// Counted in `producerCount` and advised, start and stop; not when a
    /// [`DeclaredProducer`] stands for it.
    announced: bool,
}

/// A producer a protocol declares before it sends (OpenWire's `ProducerInfo`): it holds a
/// place under `limits.max_producers_per_connection`, counts in `producerCount` and is advised
/// from now until dropped, while the sends themselves go through
/// [`Session::undeclared_producer`]s of whichever session (transaction) they belong to, so that
/// one JMS producer is one producer whatever sessions its sends use.
pub struct DeclaredProducer {
    session: Session,
    id: Arc<str>,
    destination: Option<Destination>,
    _slot: super::usage::Slot,
}

impl DeclaredProducer {
    pub(crate) fn new(
        session: Session,
        id: Arc<str>,
        destination: Option<Destination>,
        slot: super::usage::Slot,
    ) -> DeclaredProducer {
        if let Some(d) = &destination {
            advise(&session, d, &id, true);
        }
        DeclaredProducer {
            session,
            id,
            destination,
            _slot: slot,
        }
    }
}

impl Drop for DeclaredProducer {
    fn drop(&mut self) {
        if let Some(d) = &self.destination {
            advise(&self.session, d, &self.id, false);
        }
    }
}

/// Counts a producer of `destination` in or out and advises it.
fn advise(session: &Session, destination: &Destination, id: &str, started: bool) {
    let core = &session.inner.core;
    let count = if started {
        core.producer_counts.add(destination)
    } else {
        core.producer_counts.remove(destination)
    };
    core.advise(Advisory::Producer {
        destination,
        producer_id: id,
        connection_id: &session.inner.connection_id,
        started,
        count,
    });
}

impl Producer {
    pub(crate) fn new(
        session: Session,
        id: Arc<str>,
        destination: Destination,
        temporary: bool,
        slot: Option<super::usage::Slot>,
    ) -> Producer {
        let announced = slot.is_some();
        if announced {
            advise(&session, &destination, &id, true);
        }
        Producer {
            session,
            id,
            seq: AtomicU64::new(0),
            destination,
            previous: Mutex::new(None),
            temporary,
            _slot: slot,
            announced,
        }
    }

    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    /// Sends a message; a persistent one is in the store (per the sync policy) when this
    /// returns, or at commit in a transacted session. Returns the id given to it.
    pub async fn send(&self, out: Outgoing) -> Result<MessageId> {
        self.submit(out).await?.await
    }

    /// Sends a message without waiting for it to be stored: when this returns, the message
    /// has its place behind everything this producer sent before, and a `Duplicate` or an
    /// invalid message has been refused. The [`Submitted`] resolves when it is stored per the
    /// sync policy and handed to its consumers, exactly when [`Producer::send`] would have
    /// returned. The rest happens in a task of its own: dropping the `Submitted` neither
    /// cancels nor loses the send.
    ///
    /// This is how a connection pipelines: its sends in flight share the journal's fsyncs.
    pub async fn submit(&self, mut out: Outgoing) -> Result<Submitted<MessageId>> {
        if out.priority > MAX_PRIORITY {
            return Err(BrokerError::Invalid(format!(
                "priority {} is above {MAX_PRIORITY}",
                out.priority
            )));
        }
        if self.temporary && !self.session.is_temporary(&self.destination) {
            return Err(crate::core::temporary::gone(&self.destination));
        }
        let given = out.id.is_some();
        let id = match out.id.take() {
            Some(id) => id,
            None => MessageId::new(
                Arc::clone(&self.id),
                self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            ),
        };
        // Outside a transaction: a transacted send is stored at commit, under its own rules.
        let audited = given && self.session.mode() != crate::AckMode::Transacted;
        if audited && self.session.core().producer_audit.seen(&id) {
            log_resent(&id);
            return Ok(Submitted::done(id));
        }
        let message = out.into_message(id.clone(), self.destination.clone(), now_ms());
        let placed = match self.session.place(message).await {
            Ok(Some(placed)) => placed,
            // Enlisted in the session's transaction: nothing more until commit.
            Ok(None) => return Ok(Submitted::done(id)),
            Err(BrokerError::Store(StoreError::Duplicate(_))) if given => {
                log_resent(&id);
                return Ok(Submitted::done(id));
            }
            Err(e) => return Err(e),
        };
        let (done, next) = oneshot::channel();
        let previous = self.previous.lock().replace(next);
        let core = Arc::clone(self.session.core());
        let task = tokio::spawn(async move {
            let written = placed.written.await;
            if let Some(p) = previous {
                // An Err only means the previous send failed; its delivery is over either way.
                let _ = p.await;
            }
            let result = match written {
                Ok(_) => {
                    if audited {
                        core.producer_audit.record(&id);
                    }
                    core.delivered(placed.then);
                    Ok(id)
                }
                Err(StoreError::Duplicate(_)) if given => {
                    log_resent(&id);
                    Ok(id)
                }
                Err(e) => Err(BrokerError::from(e)),
            };
            let _ = done.send(());
            result
        });
        Ok(Submitted::running(task))
    }
}

/// A resend of a message the store already has (the same client-given id) is answered as
/// sent: the first send's write stands.
fn log_resent(id: &MessageId) {
    debug!(message = %id, "a resend of a message already stored: answered as sent");
}

impl Drop for Producer {
    fn drop(&mut self) {
        if self.announced {
            advise(&self.session, &self.destination, &self.id, false);
        }
    }
}
