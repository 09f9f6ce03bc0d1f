//! Durable subscriptions on wildcard topics (`orders.>`), across restarts and across topics
//! created later, with no change to the store contract.
//!
//! Such a subscription is an ordinary durable subscription (same client id and name) on every
//! topic the wildcard matches, each keeping its own messages in that topic's store; one
//! consumer reads them all through a [`QueueFanIn`] over their dispatchers. What is remembered
//! is the wildcard itself: the subscription is also recorded in the topic store named by the
//! wildcard (`orders.>`, a topic nothing can send to), so after a restart the broker knows it
//! and adds it to every matching topic created later, before that topic's first message is
//! stored, whether or not the subscriber is connected.
//!
//! ActiveMQ keeps the wildcard in the subscription info of each topic instead, and adds an
//! offline wildcard subscription to a new topic only once its subscriber reconnects.

use std::sync::Arc;

use parking_lot::Mutex;
use store_api::{Destination, StoreError, SubscriptionInfo, SubscriptionKey};
use tokio::sync::mpsc;
use tracing::info;

use super::{Core, QueueFanIn};
use crate::destination_filter::DestinationFilter;
use crate::dispatch::{Delivery, Flow};
use crate::error::{BrokerError, Result};
use crate::selector::Selector;

/// One durable subscription on a wildcard.
pub(crate) struct WildcardDurable {
    pub filter: DestinationFilter,
    /// The wildcard topic, whose store records the subscription.
    pub destination: Destination,
    pub key: SubscriptionKey,
    pub selector: Option<String>,
    /// The connected consumer, if any.
    active: Mutex<Option<Arc<QueueFanIn>>>,
}

impl WildcardDurable {
    /// The connected consumer's credit grew.
    pub(crate) fn wake(&self) {
        if let Some(fan_in) = self.active.lock().as_ref() {
            fan_in.wake();
        }
    }

    /// Ends the connected consumer: it leaves every topic's dispatcher.
    pub(crate) fn deactivate(&self) {
        if let Some(fan_in) = self.active.lock().take() {
            fan_in.detach_all();
        }
    }
}

impl Core {
    /// At recovery: the wildcard durable subscriptions recorded in `wildcard`'s store.
    pub(crate) async fn recover_wildcard_durables(&self, wildcard: &Destination) -> Result<usize> {
        let filter = DestinationFilter::parse(&wildcard.name)?;
        let store = self.store.topic_store(wildcard).await?;
        let subs = store.subscriptions().await?;
        let n = subs.len();
        let mut registry = self.wildcard_durables.lock();
        for info in subs {
            registry.push(Arc::new(WildcardDurable {
                filter: filter.clone(),
                destination: wildcard.clone(),
                key: info.key,
                selector: info.selector,
                active: Mutex::new(None),
            }));
        }
        Ok(n)
    }

    /// The wildcard durable subscriptions a topic named `name` must carry.
    pub(crate) fn wildcard_durables_of(&self, name: &str) -> Vec<Arc<WildcardDurable>> {
        self.wildcard_durables
            .lock()
            .iter()
            .filter(|w| w.filter.matches(name))
            .cloned()
            .collect()
    }

    /// Gives topic `t` (new in this run) every matching wildcard durable subscription it does
    /// not have yet (one registered while it was being created), in its store first, and
    /// attaches their connected consumers.
    pub(crate) async fn add_wildcard_durables(
        self: &Arc<Self>,
        t: &Arc<super::Topic>,
    ) -> Result<()> {
        for w in self.wildcard_durables_of(&t.destination.name) {
            let known = t.durable.lock().contains_key(&w.key);
            if !known {
                match t
                    .store
                    .add_subscription(
                        SubscriptionInfo::new(w.key.clone(), w.selector.clone()),
                        false,
                    )
                    .await
                {
                    Ok(()) | Err(StoreError::Duplicate(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let d = self.durable_dispatcher(t, &w.key);
            if let Some(fan_in) = w.active.lock().as_ref() {
                fan_in.attach(&d);
            }
        }
        Ok(())
    }

    /// Creates or reattaches durable subscription `key` on wildcard `topic` and connects a
    /// consumer to it. A changed wildcard or selector replaces the subscription, as in JMS.
    pub(crate) async fn wildcard_durable_subscriber(
        self: &Arc<Self>,
        topic: &Destination,
        filter: DestinationFilter,
        key: &SubscriptionKey,
        selector: Option<String>,
        parsed: Option<Arc<Selector>>,
        flow: Flow,
    ) -> Result<(Arc<WildcardDurable>, u64, mpsc::UnboundedReceiver<Delivery>)> {
        let existing = self
            .wildcard_durables
            .lock()
            .iter()
            .find(|w| w.key == *key)
            .cloned();
        let w = match existing {
            Some(w) if w.destination == *topic && w.selector == selector => w,
            Some(_) => {
                info!(topic = %topic, subscription = %key, "wildcard or selector changed: replacing the durable subscription");
                self.unsubscribe(key).await?;
                self.new_wildcard_durable(topic, filter, key, selector)
                    .await?
            }
            None => {
                self.new_wildcard_durable(topic, filter, key, selector)
                    .await?
            }
        };
        let id = self.next_id();
        let (fan_in, rx) = QueueFanIn::new(w.filter.clone(), id, parsed, flow);
        {
            let mut active = w.active.lock();
            if active.is_some() {
                return Err(BrokerError::Invalid(format!(
                    "durable subscription {key} is in use"
                )));
            }
            *active = Some(Arc::clone(&fan_in));
        }
        for t in self.topics() {
            if w.filter.matches(&t.destination.name) {
                let d = t.durable.lock().get(key).cloned();
                if let Some(d) = d {
                    fan_in.attach(&d);
                }
            }
        }
        Ok((w, id, rx))
    }

    async fn new_wildcard_durable(
        self: &Arc<Self>,
        topic: &Destination,
        filter: DestinationFilter,
        key: &SubscriptionKey,
        selector: Option<String>,
    ) -> Result<Arc<WildcardDurable>> {
        let record = self.store.topic_store(topic).await?;
        match record
            .add_subscription(SubscriptionInfo::new(key.clone(), selector.clone()), false)
            .await
        {
            Ok(()) | Err(StoreError::Duplicate(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let w = Arc::new(WildcardDurable {
            filter,
            destination: topic.clone(),
            key: key.clone(),
            selector: selector.clone(),
            active: Mutex::new(None),
        });
        // Registered before the existing topics are given it: a topic created meanwhile
        // finds it in the registry.
        self.wildcard_durables.lock().push(Arc::clone(&w));
        for t in self.topics() {
            if w.filter.matches(&t.destination.name) {
                self.durable_subscription(&t.destination, key, selector.clone())
                    .await?;
            }
        }
        Ok(w)
    }

    /// Forgets wildcard durable subscription `key` (its per-topic parts are deleted by the
    /// caller). True when there was one.
    pub(crate) async fn delete_wildcard_durable(&self, key: &SubscriptionKey) -> Result<bool> {
        let w = self
            .wildcard_durables
            .lock()
            .iter()
            .find(|w| w.key == *key)
            .cloned();
        let Some(w) = w else {
            return Ok(false);
        };
        if w.active.lock().is_some() {
            return Err(BrokerError::Invalid(format!(
                "durable subscription {key} is in use"
            )));
        }
        let record = self.store.topic_store(&w.destination).await?;
        match record.delete_subscription(key).await {
            Ok(()) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.wildcard_durables
            .lock()
            .retain(|x| !Arc::ptr_eq(x, &w));
        Ok(true)
    }
}
