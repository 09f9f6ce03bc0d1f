//! The `openwire` message format's own state and rules: messages as ActiveMQ marshals them,
//! and durable subscriptions as ActiveMQ keeps them, one high-water mark (`LAST_ACKED_ID`)
//! per subscription, or per subscription and priority.
//!
//! A subscription's message is pending while its `ID` is above the mark of its priority and
//! this process has not seen it acknowledged. An ack of the oldest pending message moves the
//! mark (in the database, in the ack's transaction) over it and over every later message
//! already acknowledged; an ack of any other message is held in memory ([`SubState::acked`])
//! until the mark reaches it. So acks in delivery order, which is what ActiveMQ's cursors and
//! this broker's dispatch produce, are durable at once; an ack out of order is durable only
//! once the acks before it arrive, and a broker that stops before then delivers that message
//! again after the restart or on the slave (at least once, never lost). A message is deleted
//! when every subscription has acknowledged it either way.

use std::collections::{BTreeMap, HashMap};

use openwire::store::{StoredDecoder, encode_stored, to_store};
use parking_lot::Mutex;
use store_api::{Destination, MAX_PRIORITY, Message, StoreError, SubscriptionKey};

/// Priorities a subscription can have a mark for.
const PRIORITIES: usize = MAX_PRIORITY as usize + 1;

/// One durable subscription's acknowledgement state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubState {
    /// One `ACTIVEMQ_ACKS` row per priority (ActiveMQ's `prioritizedMessages`), or one row
    /// whose mark covers every priority (ActiveMQ's default).
    pub per_priority: bool,
    /// The `LAST_ACKED_ID` of each priority; all equal for a single-row subscription.
    pub marks: [i64; PRIORITIES],
    /// Messages above their mark that this process saw acknowledged: id to priority.
    pub acked: BTreeMap<i64, u8>,
}

impl SubState {
    /// From the subscription's `(PRIORITY, LAST_ACKED_ID)` rows; `None` when it has none.
    pub fn from_rows(rows: &[(i64, i64)]) -> Option<SubState> {
        let base = rows.iter().find(|(p, _)| *p == 0).or(rows.first())?.1;
        let mut marks = [base; PRIORITIES];
        for (p, mark) in rows {
            if let Some(m) = usize::try_from(*p).ok().and_then(|p| marks.get_mut(p)) {
                *m = *mark;
            }
        }
        Some(SubState {
            per_priority: rows.len() > 1,
            marks,
            acked: BTreeMap::new(),
        })
    }

    /// A new single-row subscription whose mark is `mark`.
    pub fn new(mark: i64) -> SubState {
        SubState {
            per_priority: false,
            marks: [mark; PRIORITIES],
            acked: BTreeMap::new(),
        }
    }

    pub fn mark(&self, priority: u8) -> i64 {
        self.marks[usize::from(priority.min(MAX_PRIORITY))]
    }

    pub fn is_pending(&self, id: i64, priority: u8) -> bool {
        id > self.mark(priority) && !self.acked.contains_key(&id)
    }

    /// Moves the mark of `priority` (every mark, for a single-row subscription) to `id`.
    pub fn set_mark(&mut self, priority: u8, id: i64) {
        if self.per_priority {
            self.marks[usize::from(priority.min(MAX_PRIORITY))] = id;
        } else {
            self.marks = [id; PRIORITIES];
        }
    }

    /// Forgets held acks the marks have passed.
    pub fn prune(&mut self) {
        let marks = self.marks;
        self.acked
            .retain(|id, p| *id > marks[usize::from((*p).min(MAX_PRIORITY))]);
    }
}

/// A container's messages as the writer measured them once and keeps up to date since:
/// id to priority and size (in the store's unit, the `store-api` encoding's length, which
/// `MSG` is not, so each row was decoded once).
#[derive(Debug, Default)]
pub(crate) struct Measured {
    pub rows: HashMap<i64, (u8, u64)>,
    pub bytes: u64,
}

/// What the store keeps in memory for the openwire format.
#[derive(Debug, Default)]
pub(crate) struct OwState {
    /// Subscriptions by `(CONTAINER, key)`, loaded on first use. The writer is the only one
    /// that changes an entry; readers load missing ones from committed rows.
    pub subs: Mutex<HashMap<(String, SubscriptionKey), SubState>>,
    /// Containers the writer measured, kept up to date by its every add and delete.
    pub measured: Mutex<HashMap<String, Measured>>,
}

impl OwState {
    /// After a rolled-back transaction the in-memory changes it made are not known to be
    /// undone: the states are dropped and reloaded from the committed marks (held acks are
    /// lost, so those messages are delivered again: at least once), and measurements are
    /// taken again when next asked for.
    pub fn rolled_back(&self) {
        self.subs.lock().clear();
        self.measured.lock().clear();
    }

    /// The subscription states of `containers`, to put back with [`OwState::restore`] when a
    /// savepoint rolls back what changed them.
    pub fn snapshot(&self, containers: &[String]) -> Vec<((String, SubscriptionKey), SubState)> {
        self.subs
            .lock()
            .iter()
            .filter(|((c, _), _)| containers.contains(c))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Puts back the subscription states of `containers` as [`OwState::snapshot`] took them;
    /// their measurements are dropped, to be taken again from the rows.
    pub fn restore(
        &self,
        containers: &[String],
        snapshot: Vec<((String, SubscriptionKey), SubState)>,
    ) {
        {
            let mut subs = self.subs.lock();
            subs.retain(|(c, _), _| !containers.contains(c));
            subs.extend(snapshot);
        }
        let mut measured = self.measured.lock();
        for c in containers {
            measured.remove(c);
        }
    }

    pub fn row_added(&self, container: &str, id: i64, priority: u8, size: u64) {
        if let Some(m) = self.measured.lock().get_mut(container)
            && m.rows.insert(id, (priority, size)).is_none()
        {
            m.bytes += size;
        }
    }

    pub fn set_measured(&self, container: &str, measured: Measured) {
        self.measured.lock().insert(container.to_owned(), measured);
    }

    pub fn is_measured(&self, container: &str) -> bool {
        self.measured.lock().contains_key(container)
    }

    /// Count and bytes of a measured container, or of what is pending in it for `sub`.
    pub fn totals(&self, container: &str, sub: Option<&SubState>) -> Option<(u64, u64)> {
        let measured = self.measured.lock();
        let m = measured.get(container)?;
        Some(match sub {
            None => (m.rows.len() as u64, m.bytes),
            Some(s) => m
                .rows
                .iter()
                .filter(|(id, (p, _))| s.is_pending(**id, *p))
                .fold((0, 0), |(n, b), (_, (_, size))| (n + 1, b + size)),
        })
    }

    pub fn sub(&self, container: &str, key: &SubscriptionKey) -> Option<SubState> {
        self.subs
            .lock()
            .get(&(container.to_owned(), key.clone()))
            .cloned()
    }

    /// Caches a state loaded from committed rows, unless the writer put one there meanwhile.
    pub fn loaded(&self, container: &str, key: &SubscriptionKey, state: SubState) -> SubState {
        self.subs
            .lock()
            .entry((container.to_owned(), key.clone()))
            .or_insert(state)
            .clone()
    }

    pub fn store(&self, container: &str, key: &SubscriptionKey, state: SubState) {
        self.subs
            .lock()
            .insert((container.to_owned(), key.clone()), state);
    }

    pub fn forget(&self, container: &str, key: &SubscriptionKey) {
        self.subs
            .lock()
            .remove(&(container.to_owned(), key.clone()));
    }

    /// A container's message is gone (`None`: all of them): forgets held acks of it and
    /// takes it off the measurement.
    pub fn message_gone(&self, container: &str, id: Option<i64>) {
        {
            let mut measured = self.measured.lock();
            match id {
                Some(id) => {
                    if let Some(m) = measured.get_mut(container)
                        && let Some((_, size)) = m.rows.remove(&id)
                    {
                        m.bytes -= size;
                    }
                }
                None => {
                    measured.remove(container);
                }
            }
        }
        for ((c, _), s) in self.subs.lock().iter_mut() {
            if c == container {
                match id {
                    Some(id) => {
                        s.acked.remove(&id);
                    }
                    None => s.acked.clear(),
                }
            }
        }
    }

    pub fn forget_container(&self, container: &str) {
        self.subs.lock().retain(|(c, _), _| c != container);
        self.measured.lock().remove(container);
    }
}

/// `MSG` for a message: ActiveMQ's marshalling of it.
pub(crate) fn encode(m: &Message) -> Result<Vec<u8>, StoreError> {
    encode_stored(m).map_err(|e| {
        StoreError::InvalidArgument(format!(
            "message {} cannot be written as OpenWire: {e}",
            m.id
        ))
    })
}

/// A message from `MSG`, in the destination its `CONTAINER` names.
pub(crate) fn decode(bytes: &[u8], destination: Destination) -> Result<Message, String> {
    let o = StoredDecoder::default()
        .decode(bytes)
        .map_err(|e| format!("MSG is not an OpenWire message: {e}"))?;
    to_store(&o, destination)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_row_mark_covers_every_priority() {
        let mut s = SubState::from_rows(&[(0, 5)]).unwrap();
        assert!(!s.per_priority);
        assert!(!s.is_pending(5, 9));
        assert!(s.is_pending(6, 0));
        s.acked.insert(8, 4);
        assert!(!s.is_pending(8, 4));
        s.set_mark(4, 7);
        s.prune();
        assert_eq!(s.mark(0), 7);
        assert!(s.acked.contains_key(&8));
        s.set_mark(0, 8);
        s.prune();
        assert!(s.acked.is_empty());
    }

    #[test]
    fn priority_rows_have_a_mark_each() {
        let rows: Vec<(i64, i64)> = (0..10).map(|p| (p, p * 10)).collect();
        let mut s = SubState::from_rows(&rows).unwrap();
        assert!(s.per_priority);
        assert!(!s.is_pending(90, 9));
        assert!(s.is_pending(11, 1));
        s.set_mark(1, 20);
        assert_eq!(s.mark(1), 20);
        assert_eq!(s.mark(2), 20);
        assert_eq!(s.mark(3), 30);
        assert_eq!(s.mark(0), 0);
        assert_eq!(SubState::from_rows(&[]), None);
    }
}
