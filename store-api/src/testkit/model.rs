//! The reference model: the contract written as plainly as possible (vectors and linear scans),
//! so that it is obviously right. Engines are checked against it; it is never fast.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Result, StoreError};
use crate::message::{Destination, Message, MessageId};
use crate::open_transactions::OpenTransactions;
use crate::order::{CursorPosition, DeliveryOrder, OrderKey};
use crate::transaction::{
    PreparedTransaction, SubscriptionInfo, SubscriptionKey, TransactionId, TxOp, Xid,
};
use crate::tx_check::check_enlisted;

/// The whole observable state of a store.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// The last sequence assigned.
    pub last_sequence: u64,
    next_generation: u64,
    destinations: BTreeMap<Destination, DestinationModel>,
    transactions: OpenTransactions,
}

#[derive(Debug, Clone)]
struct DestinationModel {
    generation: u64,
    /// Kept messages in sequence order.
    messages: Vec<Message>,
    cursor: CursorPosition,
    subscriptions: BTreeMap<SubscriptionKey, SubscriptionModel>,
}

#[derive(Debug, Clone)]
struct SubscriptionModel {
    info: SubscriptionInfo,
    pending: BTreeSet<u64>,
    cursor: CursorPosition,
}

fn not_found_message(d: &Destination, id: &MessageId) -> StoreError {
    StoreError::NotFound(format!("message {id} in {d}"))
}

fn not_found_subscription(d: &Destination, key: &SubscriptionKey) -> StoreError {
    StoreError::NotFound(format!("subscription {key} on {d}"))
}

fn in_order(messages: impl Iterator<Item = Message>) -> Vec<Message> {
    let mut v: Vec<Message> = messages.collect();
    v.sort_by_key(OrderKey::of);
    v
}

/// `messages` (in delivery order) as a batch cursor in `order` returns them.
fn reorder(mut v: Vec<Message>, order: DeliveryOrder) -> Vec<Message> {
    if order == DeliveryOrder::Arrival {
        v.sort_by_key(|m| m.sequence);
    }
    v
}

impl Model {
    pub fn new() -> Self {
        Model::default()
    }

    /// What a persistent engine's state is after close and reopen: open local and unprepared XA
    /// transactions are gone, every cursor is rewound.
    pub fn reopen(&mut self) {
        self.transactions.retain_prepared();
        for d in self.destinations.values_mut() {
            d.cursor.reset();
            for s in d.subscriptions.values_mut() {
                s.cursor.reset();
            }
        }
    }

    /// Opens (creating if needed) a destination and returns its generation: a handle remembers it
    /// and fails once the destination is removed, even if a new one of the same name appears.
    pub fn open_destination(&mut self, d: &Destination) -> u64 {
        if let Some(existing) = self.destinations.get(d) {
            return existing.generation;
        }
        self.next_generation += 1;
        let generation = self.next_generation;
        self.destinations.insert(
            d.clone(),
            DestinationModel {
                generation,
                messages: Vec::new(),
                cursor: CursorPosition::default(),
                subscriptions: BTreeMap::new(),
            },
        );
        generation
    }

    pub fn destinations(&self) -> Vec<Destination> {
        self.destinations.keys().cloned().collect()
    }

    pub fn remove_destination(&mut self, d: &Destination) -> Result<()> {
        self.destinations
            .remove(d)
            .map(|_| ())
            .ok_or_else(|| StoreError::NotFound(format!("destination {d}")))
    }

    pub fn delete_all(&mut self) {
        self.destinations.clear();
        self.transactions.clear();
    }

    fn dest(&self, d: &Destination, generation: u64) -> Result<&DestinationModel> {
        match self.destinations.get(d) {
            Some(m) if m.generation == generation => Ok(m),
            _ => Err(StoreError::NotFound(format!("destination {d} was removed"))),
        }
    }

    fn dest_mut(&mut self, d: &Destination, generation: u64) -> Result<&mut DestinationModel> {
        match self.destinations.get_mut(d) {
            Some(m) if m.generation == generation => Ok(m),
            _ => Err(StoreError::NotFound(format!("destination {d} was removed"))),
        }
    }

    // ---- queues and topics alike ----

    /// Adds a message (queue or topic) and returns its sequence.
    pub fn add(&mut self, d: &Destination, generation: u64, mut message: Message) -> Result<u64> {
        message.validate_for(d)?;
        let dest = self.dest(d, generation)?;
        if dest.messages.iter().any(|m| m.id == message.id) {
            return Err(StoreError::Duplicate(format!(
                "message {} in {d}",
                message.id
            )));
        }
        self.last_sequence += 1;
        let seq = self.last_sequence;
        message.sequence = seq;
        let dest = self.dest_mut(d, generation)?;
        if d.is_queue() {
            dest.messages.push(message);
        } else if !dest.subscriptions.is_empty() {
            for s in dest.subscriptions.values_mut() {
                s.pending.insert(seq);
            }
            dest.messages.push(message);
        }
        Ok(seq)
    }

    pub fn get(&self, d: &Destination, generation: u64, id: &MessageId) -> Result<Message> {
        self.dest(d, generation)?
            .messages
            .iter()
            .find(|m| &m.id == id)
            .cloned()
            .ok_or_else(|| not_found_message(d, id))
    }

    /// Queue ack, or topic remove-for-everyone.
    pub fn remove(&mut self, d: &Destination, generation: u64, id: &MessageId) -> Result<()> {
        let dest = self.dest_mut(d, generation)?;
        let pos = dest
            .messages
            .iter()
            .position(|m| &m.id == id)
            .ok_or_else(|| not_found_message(d, id))?;
        let m = dest.messages.remove(pos);
        for s in dest.subscriptions.values_mut() {
            s.pending.remove(&m.sequence);
        }
        Ok(())
    }

    pub fn purge(&mut self, d: &Destination, generation: u64) -> Result<u64> {
        let dest = self.dest_mut(d, generation)?;
        let n = dest.messages.len() as u64;
        dest.messages.clear();
        for s in dest.subscriptions.values_mut() {
            s.pending.clear();
        }
        Ok(n)
    }

    pub fn browse(
        &self,
        d: &Destination,
        generation: u64,
        after: Option<OrderKey>,
        max: usize,
    ) -> Result<Vec<Message>> {
        let dest = self.dest(d, generation)?;
        Ok(in_order(dest.messages.iter().cloned())
            .into_iter()
            .filter(|m| after.is_none_or(|a| OrderKey::of(m) > a))
            .take(max)
            .collect())
    }

    pub fn recover_next(
        &mut self,
        d: &Destination,
        generation: u64,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<Message>> {
        let dest = self.dest_mut(d, generation)?;
        let cursor = &mut dest.cursor;
        let batch: Vec<Message> = reorder(in_order(dest.messages.iter().cloned()), order)
            .into_iter()
            .filter(|m| cursor.is_pending(OrderKey::of(m)))
            .take(max)
            .collect();
        for m in &batch {
            cursor.advance(OrderKey::of(m));
        }
        Ok(batch)
    }

    pub fn reset_cursor(&mut self, d: &Destination, generation: u64) -> Result<()> {
        self.dest_mut(d, generation)?.cursor.reset();
        Ok(())
    }

    pub fn set_cursor_after(
        &mut self,
        d: &Destination,
        generation: u64,
        id: &MessageId,
    ) -> Result<()> {
        let last = self.last_sequence;
        let dest = self.dest_mut(d, generation)?;
        let key = dest
            .messages
            .iter()
            .find(|m| &m.id == id)
            .map(OrderKey::of)
            .ok_or_else(|| not_found_message(d, id))?;
        dest.cursor.set_after(key, last);
        Ok(())
    }

    pub fn count(&self, d: &Destination, generation: u64) -> Result<u64> {
        Ok(self.dest(d, generation)?.messages.len() as u64)
    }

    pub fn bytes(&self, d: &Destination, generation: u64) -> Result<u64> {
        Ok(self
            .dest(d, generation)?
            .messages
            .iter()
            .map(Message::size)
            .sum())
    }

    pub fn expired(
        &self,
        d: &Destination,
        generation: u64,
        now_ms: i64,
        max: usize,
    ) -> Result<Vec<MessageId>> {
        let dest = self.dest(d, generation)?;
        Ok(in_order(
            dest.messages
                .iter()
                .filter(|m| m.is_expired(now_ms))
                .cloned(),
        )
        .into_iter()
        .take(max)
        .map(|m| m.id)
        .collect())
    }

    // ---- durable subscriptions ----

    /// Drops topic messages no subscription holds any more.
    fn release_unreferenced(dest: &mut DestinationModel) {
        let subs = &dest.subscriptions;
        dest.messages
            .retain(|m| subs.values().any(|s| s.pending.contains(&m.sequence)));
    }

    pub fn add_subscription(
        &mut self,
        d: &Destination,
        generation: u64,
        info: SubscriptionInfo,
        retroactive: bool,
    ) -> Result<()> {
        let dest = self.dest_mut(d, generation)?;
        if dest.subscriptions.contains_key(&info.key) {
            return Err(StoreError::Duplicate(format!(
                "subscription {} on {d}",
                info.key
            )));
        }
        let pending = if retroactive {
            dest.messages.iter().map(|m| m.sequence).collect()
        } else {
            BTreeSet::new()
        };
        dest.subscriptions.insert(
            info.key.clone(),
            SubscriptionModel {
                info,
                pending,
                cursor: CursorPosition::default(),
            },
        );
        Ok(())
    }

    pub fn delete_subscription(
        &mut self,
        d: &Destination,
        generation: u64,
        key: &SubscriptionKey,
    ) -> Result<()> {
        let dest = self.dest_mut(d, generation)?;
        dest.subscriptions
            .remove(key)
            .ok_or_else(|| not_found_subscription(d, key))?;
        Self::release_unreferenced(dest);
        Ok(())
    }

    pub fn subscriptions(&self, d: &Destination, generation: u64) -> Result<Vec<SubscriptionInfo>> {
        Ok(self
            .dest(d, generation)?
            .subscriptions
            .values()
            .map(|s| s.info.clone())
            .collect())
    }

    pub fn lookup_subscription(
        &self,
        d: &Destination,
        generation: u64,
        key: &SubscriptionKey,
    ) -> Result<Option<SubscriptionInfo>> {
        Ok(self
            .dest(d, generation)?
            .subscriptions
            .get(key)
            .map(|s| s.info.clone()))
    }

    fn pending_messages(dest: &DestinationModel, sub: &SubscriptionModel) -> Vec<Message> {
        in_order(
            dest.messages
                .iter()
                .filter(|m| sub.pending.contains(&m.sequence))
                .cloned(),
        )
    }

    pub fn acknowledge(
        &mut self,
        d: &Destination,
        generation: u64,
        key: &SubscriptionKey,
        id: &MessageId,
    ) -> Result<()> {
        let dest = self.dest_mut(d, generation)?;
        let seq = dest
            .messages
            .iter()
            .find(|m| &m.id == id)
            .map(|m| m.sequence);
        let sub = dest
            .subscriptions
            .get_mut(key)
            .ok_or_else(|| not_found_subscription(d, key))?;
        match seq {
            Some(seq) if sub.pending.remove(&seq) => {
                Self::release_unreferenced(dest);
                Ok(())
            }
            _ => Err(StoreError::NotFound(format!(
                "message {id} is not pending for subscription {key} on {d}"
            ))),
        }
    }

    fn sub(
        &self,
        d: &Destination,
        generation: u64,
        key: &SubscriptionKey,
    ) -> Result<(&DestinationModel, &SubscriptionModel)> {
        let dest = self.dest(d, generation)?;
        let sub = dest
            .subscriptions
            .get(key)
            .ok_or_else(|| not_found_subscription(d, key))?;
        Ok((dest, sub))
    }

    pub fn browse_subscription(
        &self,
        d: &Destination,
        generation: u64,
        key: &SubscriptionKey,
        after: Option<OrderKey>,
        max: usize,
    ) -> Result<Vec<Message>> {
        let (dest, sub) = self.sub(d, generation, key)?;
        Ok(Self::pending_messages(dest, sub)
            .into_iter()
            .filter(|m| after.is_none_or(|a| OrderKey::of(m) > a))
            .take(max)
            .collect())
    }

    pub fn recover_next_subscription(
        &mut self,
        d: &Destination,
        generation: u64,
        key: &SubscriptionKey,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<Message>> {
        let (dest, sub) = self.sub(d, generation, key)?;
        let batch: Vec<Message> = reorder(Self::pending_messages(dest, sub), order)
            .into_iter()
            .filter(|m| sub.cursor.is_pending(OrderKey::of(m)))
            .take(max)
            .collect();
        let dest = self.dest_mut(d, generation)?;
        if let Some(sub) = dest.subscriptions.get_mut(key) {
            for m in &batch {
                sub.cursor.advance(OrderKey::of(m));
            }
        }
        Ok(batch)
    }

    pub fn reset_subscription_cursor(
        &mut self,
        d: &Destination,
        generation: u64,
        key: &SubscriptionKey,
    ) -> Result<()> {
        let dest = self.dest_mut(d, generation)?;
        dest.subscriptions
            .get_mut(key)
            .ok_or_else(|| not_found_subscription(d, key))?
            .cursor
            .reset();
        Ok(())
    }

    pub fn set_subscription_cursor_after(
        &mut self,
        d: &Destination,
        generation: u64,
        key: &SubscriptionKey,
        id: &MessageId,
    ) -> Result<()> {
        let last = self.last_sequence;
        let (dest, sub) = self.sub(d, generation, key)?;
        let order = Self::pending_messages(dest, sub)
            .iter()
            .find(|m| &m.id == id)
            .map(OrderKey::of)
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "message {id} is not pending for subscription {key} on {d}"
                ))
            })?;
        let dest = self.dest_mut(d, generation)?;
        if let Some(sub) = dest.subscriptions.get_mut(key) {
            sub.cursor.set_after(order, last);
        }
        Ok(())
    }

    pub fn pending_count(
        &self,
        d: &Destination,
        generation: u64,
        key: &SubscriptionKey,
    ) -> Result<u64> {
        let (dest, sub) = self.sub(d, generation, key)?;
        Ok(Self::pending_messages(dest, sub).len() as u64)
    }

    pub fn pending_bytes(
        &self,
        d: &Destination,
        generation: u64,
        key: &SubscriptionKey,
    ) -> Result<u64> {
        let (dest, sub) = self.sub(d, generation, key)?;
        Ok(Self::pending_messages(dest, sub)
            .iter()
            .map(Message::size)
            .sum())
    }

    // ---- transactions ----

    pub fn begin(&mut self, tx: &TransactionId) -> Result<()> {
        self.transactions.begin(tx)
    }

    /// Checks an operation must pass when enlisted: the contract's argument checks (the same
    /// for every engine), then, for an ack, that its message is there now.
    fn check_op(&self, op: &TxOp) -> Result<()> {
        check_enlisted(op)?;
        match op {
            TxOp::Add(_) => Ok(()),
            TxOp::QueueAck { destination, id } => {
                let dest = self
                    .destinations
                    .get(destination)
                    .ok_or_else(|| not_found_message(destination, id))?;
                if dest.messages.iter().any(|m| &m.id == id) {
                    Ok(())
                } else {
                    Err(not_found_message(destination, id))
                }
            }
            TxOp::TopicAck {
                destination,
                subscription,
                id,
            } => {
                let dest = self
                    .destinations
                    .get(destination)
                    .ok_or_else(|| not_found_subscription(destination, subscription))?;
                let sub = dest
                    .subscriptions
                    .get(subscription)
                    .ok_or_else(|| not_found_subscription(destination, subscription))?;
                let pending = dest
                    .messages
                    .iter()
                    .any(|m| &m.id == id && sub.pending.contains(&m.sequence));
                if pending {
                    Ok(())
                } else {
                    Err(StoreError::NotFound(format!(
                        "message {id} is not pending for subscription {subscription} on {destination}"
                    )))
                }
            }
        }
    }

    pub fn enlist(&mut self, tx: &TransactionId, op: TxOp) -> Result<()> {
        self.transactions.check_enlist(tx)?;
        self.check_op(&op)?;
        self.transactions.enlist(tx, op)
    }

    /// Applies `ops` to a copy of the state; the copy if every op succeeds.
    fn applied(&self, ops: &[TxOp]) -> Result<Model> {
        let mut next = self.clone();
        for op in ops {
            match op {
                TxOp::Add(m) => {
                    let g = next.open_destination(&m.destination);
                    next.add(&m.destination, g, m.clone())?;
                }
                TxOp::QueueAck { destination, id } => {
                    next.check_op(op)?;
                    let g = next.open_destination(destination);
                    next.remove(destination, g, id)?;
                }
                TxOp::TopicAck {
                    destination,
                    subscription,
                    id,
                } => {
                    next.check_op(op)?;
                    let g = next.open_destination(destination);
                    next.acknowledge(destination, g, subscription, id)?;
                }
            }
        }
        Ok(next)
    }

    pub fn prepare(&mut self, xid: &Xid) -> Result<()> {
        self.applied(self.transactions.to_prepare(xid)?)?;
        self.transactions
            .mark_prepared(&TransactionId::Xa(xid.clone()), ());
        Ok(())
    }

    pub fn commit(&mut self, tx: &TransactionId) -> Result<()> {
        let mut next = self.applied(&self.transactions.get(tx)?.ops)?;
        next.transactions.end(tx)?;
        *self = next;
        Ok(())
    }

    pub fn rollback(&mut self, tx: &TransactionId) -> Result<()> {
        self.transactions.end(tx).map(|_| ())
    }

    /// Prepared XA transactions, sorted by xid.
    pub fn prepared_transactions(&self) -> Vec<PreparedTransaction> {
        self.transactions.prepared()
    }
}
