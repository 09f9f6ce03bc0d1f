//! Open: RocksDB replays its write-ahead log (every synced batch comes back whole, or open
//! fails naming the damaged file), then the index is rebuilt from the small records — message
//! entries, subscriptions, pending keys, prepared transactions — without reading any body.

use std::collections::HashMap;
use std::sync::Arc;

use rocksdb::{DB, IteratorMode, ReadOptions};
use store_api::{Destination, OrderKey, SubscriptionInfo, TransactionId};

use crate::error::{LevelDbError, Result};
use crate::index::{DestIndex, Index, Kept, SubIndex};
use crate::keys::{self, Cf};

fn bad(what: &'static str, cf: Cf, reason: String) -> LevelDbError {
    LevelDbError::BadRecord {
        what,
        cf: cf.name(),
        reason,
    }
}

/// Every `(key, value)` of a column family, in key order.
fn scan(
    db: &DB,
    cf: Cf,
    verify: bool,
    mut each: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<()> {
    let h = db
        .cf_handle(cf.name())
        .ok_or(LevelDbError::MissingColumnFamily(cf.name()))?;
    let mut opts = ReadOptions::default();
    opts.set_verify_checksums(verify);
    // A full scan at open would evict what the cache holds for nothing.
    opts.fill_cache(false);
    opts.set_readahead_size(2 * 1024 * 1024);
    for item in db.iterator_cf_opt(h, opts, IteratorMode::Start) {
        let (k, v) = item.map_err(|e| LevelDbError::rocks("scanning at open", e))?;
        each(&k, &v)?;
    }
    Ok(())
}

/// Rebuilds the index from the database.
pub(crate) fn load(db: &DB, verify: bool) -> Result<Index> {
    let mut index = Index::default();
    let meta = db
        .cf_handle(Cf::Meta.name())
        .ok_or(LevelDbError::MissingColumnFamily(Cf::Meta.name()))?;
    if let Some(v) = db
        .get_pinned_cf(meta, keys::LAST_SEQUENCE)
        .map_err(|e| LevelDbError::rocks("reading the last sequence", e))?
    {
        index.last_sequence = keys::read_u64(&v, "last sequence")?;
    }
    scan(db, Cf::Destinations, verify, |k, _| {
        index.insert_destination(keys::read_destination(k)?);
        Ok(())
    })?;
    let mut max_seq = 0;
    let mut producers: HashMap<String, Arc<str>> = HashMap::new();
    let mut intern = |p: &str| match producers.get(p) {
        Some(a) => a.clone(),
        None => {
            let a: Arc<str> = Arc::from(p);
            producers.insert(p.to_owned(), a.clone());
            a
        }
    };
    // Keys of one destination are contiguous: decode its name once, not once per message.
    let mut last: Option<(Vec<u8>, Destination)> = None;
    scan(db, Cf::Messages, verify, |k, v| {
        let (d, order) = match &last {
            Some((prefix, d))
                if k.len() == prefix.len() + keys::ORDER_LEN && k.starts_with(prefix) =>
            {
                (d.clone(), keys::read_order_suffix(k)?)
            }
            _ => {
                let (d, order) = keys::read_message_key(k)?;
                last = Some((k[..k.len() - keys::ORDER_LEN].to_vec(), d.clone()));
                (d, order)
            }
        };
        let entry = keys::read_entry(v, &mut intern)?;
        max_seq = max_seq.max(order.sequence);
        match index.destinations.get_mut(&d).map(|x| &mut x.index) {
            Some(DestIndex::Queue(q)) => q.messages.insert(order, &entry, entry.clone()),
            Some(DestIndex::Topic(t)) => t.messages.insert(
                order,
                &entry,
                Kept {
                    entry: entry.clone(),
                    refs: 0,
                },
            ),
            None => {
                return Err(bad(
                    "message entry",
                    Cf::Messages,
                    format!("message {} of unknown destination {d}", entry.id),
                ));
            }
        }
        Ok(())
    })?;
    index.last_sequence = index.last_sequence.max(max_seq);
    scan(db, Cf::Subscriptions, verify, |k, v| {
        let (d, key) = keys::read_subscription_key(k)?;
        let selector = keys::read_selector(v)?;
        match index.destinations.get_mut(&d).map(|x| &mut x.index) {
            Some(DestIndex::Topic(t)) => {
                t.subscriptions.insert(
                    key.clone(),
                    SubIndex::new(SubscriptionInfo::new(key, selector)),
                );
                Ok(())
            }
            _ => Err(bad(
                "subscription",
                Cf::Subscriptions,
                format!("subscription {key} of unknown topic {d}"),
            )),
        }
    })?;
    scan(db, Cf::Pending, verify, |k, _| {
        let (d, key, order) = keys::read_pending_key(k)?;
        let missing = |what: &str| {
            bad(
                "pending key",
                Cf::Pending,
                format!("{what} for {key} on {d} at sequence {}", order.sequence),
            )
        };
        let Some(DestIndex::Topic(t)) = index.destinations.get_mut(&d).map(|x| &mut x.index) else {
            return Err(missing("unknown topic"));
        };
        let kept = t
            .messages
            .by_order
            .get_mut(&order)
            .ok_or_else(|| missing("no message"))?;
        let s = t
            .subscriptions
            .get_mut(&key)
            .ok_or_else(|| missing("no subscription"))?;
        kept.refs += 1;
        s.bytes += kept.entry.size;
        s.pending.insert(order);
        Ok(())
    })?;
    unreferenced(&index)?;
    scan(db, Cf::Transactions, verify, |k, v| {
        let (id, ops) = keys::read_transaction(k, v)?;
        if !matches!(id, TransactionId::Xa(_)) {
            return Err(bad(
                "prepared transaction",
                Cf::Transactions,
                format!("{id} is not an XA transaction"),
            ));
        }
        index.transactions.restore_prepared(id, ops, ());
        Ok(())
    })?;
    Ok(index)
}

/// A topic message no subscription has pending is never left behind by a batch (the last ack
/// deletes it in the same batch), so finding one means records were lost.
fn unreferenced(index: &Index) -> Result<()> {
    let mut orphans: HashMap<&Destination, Vec<OrderKey>> = HashMap::new();
    for (d, dest) in &index.destinations {
        if let DestIndex::Topic(t) = &dest.index {
            for (order, kept) in &t.messages.by_order {
                if kept.refs == 0 {
                    orphans.entry(d).or_default().push(*order);
                }
            }
        }
    }
    match orphans.into_iter().next() {
        None => Ok(()),
        Some((d, orders)) => Err(bad(
            "message entry",
            Cf::Messages,
            format!(
                "{} message(s) of topic {d} pending for no subscription (first sequence {})",
                orders.len(),
                orders.first().map_or(0, |o| o.sequence)
            ),
        )),
    }
}
