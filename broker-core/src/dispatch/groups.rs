//! Message group ownership for one queue: which consumer owns each `JMSXGroupID`.
//!
//! A group is assigned to a consumer on its first message and stays with it until that
//! consumer goes, or a message with `JMSXGroupSeq` -1 closes the group. The map is bounded as
//! ActiveMQ 5.17's default `CachedMessageGroupMapFactory` is (an LRU cache of 1024 groups):
//! past the limit the least recently used group is forgotten, and its next message assigns it
//! afresh, possibly to another consumer. So a queue with endless distinct group ids never grows
//! this map without bound.

use std::collections::HashMap;

/// ActiveMQ's `CachedMessageGroupMapFactory` default cache size.
pub(crate) const DEFAULT_CAPACITY: usize = 1024;

pub(crate) struct GroupMap {
    /// Group id → (owning consumer, last use).
    owners: HashMap<String, (u64, u64)>,
    tick: u64,
    capacity: usize,
}

impl Default for GroupMap {
    fn default() -> Self {
        GroupMap::with_capacity(DEFAULT_CAPACITY)
    }
}

impl GroupMap {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        GroupMap {
            owners: HashMap::new(),
            tick: 0,
            capacity: capacity.max(1),
        }
    }

    /// The consumer owning `group`, marking the group as just used.
    pub(crate) fn owner(&mut self, group: &str) -> Option<u64> {
        self.tick += 1;
        let tick = self.tick;
        self.owners.get_mut(group).map(|(owner, used)| {
            *used = tick;
            *owner
        })
    }

    /// Gives `group` to `consumer`; past the capacity the least recently used group is
    /// forgotten (a linear scan: the map is small and this runs only on a new group).
    pub(crate) fn assign(&mut self, group: &str, consumer: u64) {
        self.tick += 1;
        if !self.owners.contains_key(group) && self.owners.len() >= self.capacity {
            let oldest = self
                .owners
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(g, _)| g.clone());
            if let Some(g) = oldest {
                self.owners.remove(&g);
            }
        }
        self.owners.insert(group.to_owned(), (consumer, self.tick));
    }

    /// Closes a group (`JMSXGroupSeq` -1): its next message assigns it afresh.
    pub(crate) fn close(&mut self, group: &str) {
        self.owners.remove(group);
    }

    /// Frees every group `consumer` owned (it closed).
    pub(crate) fn remove_consumer(&mut self, consumer: u64) {
        self.owners.retain(|_, (owner, _)| *owner != consumer);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.owners.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_stays_with_its_owner_until_closed_or_the_owner_goes() {
        let mut m = GroupMap::default();
        assert_eq!(m.owner("A"), None);
        m.assign("A", 1);
        m.assign("B", 2);
        assert_eq!(m.owner("A"), Some(1));
        m.close("A");
        assert_eq!(m.owner("A"), None);
        m.remove_consumer(2);
        assert_eq!(m.owner("B"), None);
    }

    #[test]
    fn past_the_capacity_the_least_recently_used_group_is_forgotten() {
        let mut m = GroupMap::with_capacity(2);
        m.assign("A", 1);
        m.assign("B", 1);
        assert_eq!(m.owner("A"), Some(1));
        m.assign("C", 2);
        assert_eq!(m.len(), 2);
        assert_eq!(m.owner("B"), None);
        assert_eq!(m.owner("A"), Some(1));
        assert_eq!(m.owner("C"), Some(2));
    }
}
