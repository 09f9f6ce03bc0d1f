//! When a send goes to the temp store (`limits.temp_bytes`, ActiveMQ's `tempUsage`) instead of
//! waiting for memory: a message held in memory only (non-persistent on a queue; on a topic,
//! the copies for non-durable subscribers, and for durable subscriptions a non-persistent one)
//! that finds the broker's memory full is written once to the temp store
//! and listed by each dispatcher that is to deliver it (see `dispatch::spool`). Its producer
//! goes on at once unless the temp store itself is full: then it waits for room up to
//! `send_timeout_ms`, or fails at once under `send_fail_if_no_space`, the error naming
//! `limits.temp_bytes`.
//!
//! A queue's own `memory_limit_bytes` does not spool: it holds back that queue's producers as
//! before (ActiveMQ's per-destination producer flow control), except while the queue already
//! has messages spooled, when order comes first.
//!
//! The copies of a composite or virtual-topic send are spooled each as a send to its
//! destination would be. Not spooled (they wait for memory as before): the messages of
//! temporary queues and topics, which ActiveMQ keeps in memory too.

use std::sync::Arc;

use store_api::Message;

use super::{Core, Then, Topic};
use crate::config::CoreConfig;
use crate::dispatch::{Dispatcher, SpoolTicket};
use crate::error::{BrokerError, Result};
use crate::temp_store::{DIRECTORY, SpooledRecord, TempStore};

/// The temp store under the data directory, emptied; `None` when `limits.temp_bytes` is 0.
pub(crate) async fn open(config: &CoreConfig) -> Result<Option<Arc<TempStore>>> {
    let limit = config.limits.temp_bytes;
    if limit == 0 {
        return Ok(None);
    }
    let dir = config.broker.data_directory.join(DIRECTORY);
    let store = tokio::task::spawn_blocking(move || TempStore::open(&dir, limit))
        .await
        .map_err(|e| BrokerError::Internal(format!("opening the temp store: {e}")))??;
    Ok(Some(store))
}

/// The dispatchers of topic `t` that would hold `message` in memory: its non-durable
/// subscribers, and its durable subscriptions with a consumer when it is non-persistent (a
/// persistent one they page from the store).
fn in_memory_receivers(t: &Topic, message: &Message) -> Vec<Arc<Dispatcher>> {
    let mut receivers: Vec<Arc<Dispatcher>> = t.subscribers.lock().clone();
    if !message.persistent {
        receivers.extend(
            t.durable
                .lock()
                .values()
                .filter(|d| d.consumer_count() > 0)
                .cloned(),
        );
    }
    receivers
}

/// A message written to the temp store, on its way to the dispatchers that list it.
pub(crate) struct Spool {
    record: Arc<SpooledRecord>,
    /// Keep each dispatcher's later sends behind this one until it is listed.
    _tickets: Vec<SpoolTicket>,
}

impl Core {
    /// Spools a non-persistent message for queue `q` when memory is full (or `q` has spooled
    /// messages its order must keep); `None` when it is to be held in memory as before.
    pub(crate) async fn spool_for_queue(
        &self,
        q: &Arc<Dispatcher>,
        message: &Message,
    ) -> Result<Option<Spool>> {
        self.spool_for(std::slice::from_ref(q), message).await
    }

    /// The same for a topic's message: for its non-durable subscribers, and for its durable
    /// subscriptions with a consumer when it is non-persistent (a persistent one they page
    /// from the store).
    pub(crate) async fn spool_for_topic(
        &self,
        t: &Topic,
        message: &Message,
    ) -> Result<Option<Spool>> {
        self.spool_for(&in_memory_receivers(t, message), message)
            .await
    }

    async fn spool_for(
        &self,
        receivers: &[Arc<Dispatcher>],
        message: &Message,
    ) -> Result<Option<Spool>> {
        let Some(temp) = &self.temp else {
            return Ok(None);
        };
        if receivers.is_empty() {
            return Ok(None);
        }
        // The broker's memory only: a queue's own `memory_limit_bytes` holds back its
        // producers (ActiveMQ's per-destination flow control), it does not spool.
        if self.memory.has_room() && !receivers.iter().any(|d| d.is_spooling()) {
            return Ok(None);
        }
        // Taken before waiting: a later send to these dispatchers queues behind this one.
        let tickets = receivers.iter().map(|d| d.spool_ticket()).collect();
        self.wait_for_room(temp.usage(), || {
            BrokerError::ResourceLimit(format!(
                "memory is full and so is the temp store ({} of limits.temp_bytes {} bytes used by spooled non-persistent messages)",
                temp.usage().used(),
                temp.usage().limit()
            ))
        })
        .await?;
        let record = temp.append(message).await?;
        Ok(Some(Spool {
            record,
            _tickets: tickets,
        }))
    }

    /// The copies of a composite or virtual-topic send (`Then::Many` of `Push` and `FanOut`)
    /// that go to the temp store, each as [`Core::place`] would send it; with whether any copy
    /// is still to be held in memory (the caller then waits for room).
    pub(crate) async fn spool_copies(&self, then: Then) -> Result<(Then, bool)> {
        let Then::Many(thens) = then else {
            return Ok((then, true));
        };
        let mut out = Vec::with_capacity(thens.len());
        let mut in_memory = false;
        for then in thens {
            out.push(match then {
                Then::Push(q, message) => match self.spool_for_queue(&q, &message).await? {
                    Some(spool) => Then::Spooled(q, spool),
                    None => {
                        in_memory = true;
                        Then::Push(q, message)
                    }
                },
                Then::FanOut(t, message) => match self.spool_for_topic(&t, &message).await? {
                    Some(spool) => Then::FanOutSpooled(t, message, spool),
                    None => {
                        in_memory |= !in_memory_receivers(&t, &message).is_empty();
                        Then::FanOut(t, message)
                    }
                },
                other => other,
            });
        }
        Ok((Then::Many(out), in_memory))
    }

    /// Lists a spooled message with queue `q`.
    pub(crate) fn deliver_spooled(&self, q: &Dispatcher, spool: Spool) {
        q.push_spooled(spool.record);
    }

    /// As [`Core::fan_out`], for a topic message written to the temp store: every dispatcher
    /// that would have been given it in memory lists the record instead.
    pub(crate) fn fan_out_spooled(&self, topic: &Topic, message: &Message, spool: Spool) {
        topic
            .enqueued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for d in topic.durable.lock().values() {
            if message.persistent {
                d.counters
                    .enqueued
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                d.stored();
            } else {
                d.push_spooled(Arc::clone(&spool.record));
            }
        }
        let subscribers = topic.subscribers.lock().clone();
        for d in subscribers {
            d.push_spooled(Arc::clone(&spool.record));
        }
    }
}
