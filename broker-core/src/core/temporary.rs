//! Temporary queues and topics (JMS `createTemporaryQueue` / `createTemporaryTopic`), the
//! reply destinations of request/reply.
//!
//! The rules: a temporary destination belongs to the connection that created it; any
//! connection may send to it, only the owner may consume from it ("Cannot subscribe to remote
//! temporary destination"); it is gone, with its messages, when the owner deletes it or
//! closes. Its messages never touch the store, even when sent persistent: ActiveMQ creates a
//! temporary queue without a message store (`DestinationFactoryImpl` and `TempQueueRegion`
//! pass a `null` store, and `TempQueue` pages through a `VMPendingMessageCursor`, memory
//! only), and so does this registry, so a temporary destination leaves nothing behind after a
//! restart. They are held in memory like non-persistent messages, and counted the same way
//! against `limits.memory_bytes` (a send waits for room, or fails per the policy).
//!
//! Where this differs from ActiveMQ 5.17: its broker no longer refuses a consumer from another
//! connection (`TempQueue.addSubscription` hands the destination over to that connection,
//! leaving the check to the client, which refuses "a Temporary destination from another
//! Connection" itself); this one refuses it, as ActiveMQ's older brokers did, since a client
//! that skips the check (STOMP's `/remote-temp-queue/`) would otherwise take over another
//! connection's replies.
//!
//! A temporary destination is known by its kind and name only (the store's `Destination` has
//! no room for a flag): a send to a name registered here goes to the temporary destination
//! whatever the protocol called it, so a reply-to that lost its "temporary" mark on the way
//! (a message stored with it and read back) still reaches the requester while it exists.
//!
//! Every creation and deletion is announced on a broadcast channel, from which the OpenWire
//! door feeds ActiveMQ's `ActiveMQ.Advisory.TempQueue` / `TempTopic` advisories: the Java
//! client refuses to send to a temporary destination it was not told about.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;
use store_api::{Destination, Message, Pending as StorePending};
use tokio::sync::broadcast;

use super::{Core, Placed, Then};
use crate::dispatch::{Dispatcher, Source};
use crate::error::{BrokerError, Result};

/// Events a broadcast receiver may fall behind by before it loses some (it is then told, and
/// can take a fresh [`Temporaries::list`]).
const EVENT_CAPACITY: usize = 1024;

/// A temporary destination created or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporaryEvent {
    pub destination: Destination,
    /// The id of the connection that owns it.
    pub owner: String,
    /// True for a creation, false for a deletion.
    pub created: bool,
}

/// One live temporary destination.
struct Temporary {
    owner: String,
    /// A temporary queue's dispatcher (memory only); `None` for a topic.
    queue: Option<Arc<Dispatcher>>,
    /// A temporary topic's subscribers, each a memory-only dispatcher like a non-durable
    /// subscriber of an ordinary topic.
    subscribers: Vec<Arc<Dispatcher>>,
    /// Messages dropped for its slow subscribers.
    dropped: Arc<AtomicU64>,
}

/// The registry of live temporary destinations, one per serving broker.
pub(crate) struct Temporaries {
    live: Mutex<HashMap<Destination, Temporary>>,
    events: broadcast::Sender<TemporaryEvent>,
}

impl Default for Temporaries {
    fn default() -> Self {
        Temporaries {
            live: Mutex::new(HashMap::new()),
            events: broadcast::channel(EVENT_CAPACITY).0,
        }
    }
}

/// The error for a temporary destination that is not (or no longer) there.
pub(crate) fn gone(destination: &Destination) -> BrokerError {
    BrokerError::InvalidDestination(format!(
        "Cannot publish to a deleted Destination: {}",
        temporary_url(destination)
    ))
}

/// A temporary destination as ActiveMQ prints one: `temp-queue://ID:...`.
pub fn temporary_url(destination: &Destination) -> String {
    if destination.is_queue() {
        format!("temp-queue://{}", destination.name)
    } else {
        format!("temp-topic://{}", destination.name)
    }
}

impl Temporaries {
    /// Registers `destination` as a temporary destination of connection `owner`. Adding one
    /// the owner already has is a no-op (a client that retries); a name another connection
    /// owns, or an ordinary destination's, is refused.
    pub(crate) fn add(
        &self,
        core: &Arc<Core>,
        destination: &Destination,
        owner: &str,
    ) -> Result<()> {
        if destination.name.is_empty() {
            return Err(BrokerError::InvalidDestination(
                "a temporary destination needs a name".into(),
            ));
        }
        if core.has_destination(destination) {
            return Err(BrokerError::InvalidDestination(format!(
                "{destination} exists and is not temporary"
            )));
        }
        let mut live = self.live.lock();
        if let Some(t) = live.get(destination) {
            return if t.owner == owner {
                Ok(())
            } else {
                Err(BrokerError::InvalidDestination(format!(
                    "{} belongs to another connection",
                    temporary_url(destination)
                )))
            };
        }
        let queue = destination
            .is_queue()
            .then(|| Dispatcher::start(core, destination.clone(), Source::Temporary));
        live.insert(
            destination.clone(),
            Temporary {
                owner: owner.to_owned(),
                queue,
                subscribers: Vec::new(),
                dropped: Arc::new(AtomicU64::new(0)),
            },
        );
        drop(live);
        // No receiver is not an error: nobody watches the advisories.
        let _ = self.events.send(TemporaryEvent {
            destination: destination.clone(),
            owner: owner.to_owned(),
            created: true,
        });
        Ok(())
    }

    /// Deletes a temporary destination of `owner` with its messages. Refused while it has
    /// consumers, as ActiveMQ refuses ("Destination still has an active subscription").
    pub(crate) fn delete(&self, destination: &Destination, owner: &str) -> Result<()> {
        let mut live = self.live.lock();
        let Some(t) = live.get(destination) else {
            return Err(gone(destination));
        };
        if t.owner != owner {
            return Err(BrokerError::InvalidDestination(format!(
                "{} belongs to another connection",
                temporary_url(destination)
            )));
        }
        let consumers = t.queue.as_ref().map_or(0, |q| q.consumer_count())
            + t.subscribers
                .iter()
                .map(|d| d.consumer_count())
                .sum::<usize>();
        if consumers > 0 {
            return Err(BrokerError::Invalid(format!(
                "Destination still has an active subscription: {}",
                temporary_url(destination)
            )));
        }
        let t = live.remove(destination);
        drop(live);
        if let Some(t) = t {
            self.discard(destination, t);
        }
        Ok(())
    }

    /// Deletes every temporary destination `owner` has (its connection closed), consumers or
    /// not: those can only be the owner's own, which are closing with it.
    pub(crate) fn delete_all_of(&self, owner: &str) {
        let gone: Vec<(Destination, Temporary)> = {
            let mut live = self.live.lock();
            let names: Vec<Destination> = live
                .iter()
                .filter(|(_, t)| t.owner == owner)
                .map(|(d, _)| d.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|d| live.remove(&d).map(|t| (d, t)))
                .collect()
        };
        for (d, t) in gone {
            self.discard(&d, t);
        }
    }

    /// Frees a removed destination's messages and says so.
    fn discard(&self, destination: &Destination, t: Temporary) {
        if let Some(q) = &t.queue {
            q.close();
        }
        for d in &t.subscribers {
            d.close();
        }
        let _ = self.events.send(TemporaryEvent {
            destination: destination.clone(),
            owner: t.owner,
            created: false,
        });
    }

    /// Whether `destination` is a live temporary destination.
    pub(crate) fn contains(&self, destination: &Destination) -> bool {
        self.live.lock().contains_key(destination)
    }

    /// Every live temporary destination with its owner, sorted.
    pub(crate) fn list(&self) -> Vec<(Destination, String)> {
        let mut all: Vec<_> = self
            .live
            .lock()
            .iter()
            .map(|(d, t)| (d.clone(), t.owner.clone()))
            .collect();
        all.sort();
        all
    }

    /// A receiver of every creation and deletion from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<TemporaryEvent> {
        self.events.subscribe()
    }

    /// The dispatcher a consumer of connection `connection` attaches to: the queue's own, or
    /// a new subscriber of the topic. Only the owner may consume.
    pub(crate) fn consumer_dispatcher(
        &self,
        core: &Arc<Core>,
        destination: &Destination,
        connection: &str,
    ) -> Result<Arc<Dispatcher>> {
        let mut live = self.live.lock();
        let Some(t) = live.get_mut(destination) else {
            return Err(BrokerError::InvalidDestination(format!(
                "Cannot use a Temporary destination that has been deleted: {}",
                temporary_url(destination)
            )));
        };
        if t.owner != connection {
            return Err(BrokerError::InvalidDestination(format!(
                "Cannot subscribe to remote temporary destination: {}",
                temporary_url(destination)
            )));
        }
        if let Some(q) = &t.queue {
            return Ok(Arc::clone(q));
        }
        let d = Dispatcher::start(
            core,
            destination.clone(),
            Source::Memory {
                max_pending: core.config.limits.max_pending_non_durable,
                dropped: Arc::clone(&t.dropped),
            },
        );
        t.subscribers.push(Arc::clone(&d));
        Ok(d)
    }

    /// The messages a temporary queue holds, for a browser of connection `connection` (only
    /// the owner may browse, as only it may consume).
    pub(crate) fn browse(
        &self,
        destination: &Destination,
        connection: &str,
    ) -> Result<Vec<Arc<Message>>> {
        let live = self.live.lock();
        let Some(t) = live.get(destination) else {
            return Err(gone(destination));
        };
        if t.owner != connection {
            return Err(BrokerError::InvalidDestination(format!(
                "Cannot subscribe to remote temporary destination: {}",
                temporary_url(destination)
            )));
        }
        Ok(t.queue
            .as_ref()
            .map(|q| q.memory_messages())
            .unwrap_or_default())
    }

    /// A temporary topic's subscriber went away.
    pub(crate) fn remove_subscriber(&self, d: &Arc<Dispatcher>) {
        if let Some(t) = self.live.lock().get_mut(&d.destination) {
            t.subscribers.retain(|x| !Arc::ptr_eq(x, d));
        }
    }

    /// Where a message to a live temporary destination goes, after waiting for memory as a
    /// non-persistent send does; `None` when `message` is not for one.
    pub(crate) async fn place(
        &self,
        core: &Core,
        message: &Arc<Message>,
    ) -> Result<Option<Placed>> {
        if !self.contains(&message.destination) {
            return Ok(None);
        }
        core.wait_for_memory().await?;
        let live = self.live.lock();
        // Deleted while waiting: the send fails rather than create an ordinary destination.
        let t = live
            .get(&message.destination)
            .ok_or_else(|| gone(&message.destination))?;
        let then = match &t.queue {
            Some(q) => Then::Push(Arc::clone(q), Arc::clone(message)),
            None => Then::PushAll(t.subscribers.clone(), Arc::clone(message)),
        };
        Ok(Some(Placed {
            written: StorePending::ready(Ok(0)),
            then,
        }))
    }

    /// Messages waiting or in flight per live temporary destination, with consumers, for the
    /// console.
    pub(crate) fn stats(&self) -> Vec<(Destination, u64, u64)> {
        let live = self.live.lock();
        let mut out: Vec<_> = live
            .iter()
            .map(|(d, t)| {
                let dispatchers = t.queue.iter().chain(&t.subscribers);
                let (pending, consumers) = dispatchers.fold((0, 0), |(p, c), x| {
                    (p + x.non_persistent(), c + x.consumer_count() as u64)
                });
                (d.clone(), pending, consumers)
            })
            .collect();
        out.sort();
        out
    }
}
