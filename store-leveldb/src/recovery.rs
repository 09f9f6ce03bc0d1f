//! Open: RocksDB replays its write-ahead log (every synced batch comes back whole, or open
//! fails naming the damaged file), then the index is rebuilt from the small records — message
//! entries, subscriptions, pending keys, prepared transactions — without reading any body, and
//! the journal files holding bodies are counted from the entries.

use std::collections::HashMap;
use std::sync::Arc;

use rocksdb::{DB, ReadOptions};
use store_api::{Destination, MessageId, OrderKey, SubscriptionInfo, TransactionId};

use crate::error::{LevelDbError, Result};
use crate::index::{DestIndex, Index, Kept, SubIndex};
use crate::keys::{self, Cf, Entry};

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
    // The raw iterator lends each key and value; the plain one copies both into new boxes.
    let mut it = db.raw_iterator_cf_opt(h, opts);
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        each(k, v)?;
        it.next();
    }
    it.status()
        .map_err(|e| LevelDbError::rocks("scanning at open", e))?;
    Ok(())
}

/// Rebuilds the index from the database. Messages whose bodies lie at or past `written` in the
/// journal are left out, and their records listed in `Index::unwritten`: RocksDB may hold
/// batches whose journal records a crash or a failed write took (never acknowledged).
pub(crate) fn load(db: &DB, verify: bool, written: store_journal::Location) -> Result<Index> {
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
    let mut body_files = crate::bodies::BodyFiles::default();
    let mut legacy_bodies = false;
    let mut unwritten: Vec<(Cf, Vec<u8>)> = Vec::new();
    let mut unwritten_messages: std::collections::HashSet<(Destination, OrderKey)> =
        std::collections::HashSet::new();
    let mut producers: HashMap<String, Arc<str>> = HashMap::new();
    // Consecutive messages mostly come from the same producer: compare with the last one
    // before hashing.
    let mut last_producer: Option<Arc<str>> = None;
    let mut intern = |p: &str| {
        if let Some(a) = &last_producer
            && **a == *p
        {
            return a.clone();
        }
        let a = match producers.get(p) {
            Some(a) => a.clone(),
            None => {
                let a: Arc<str> = Arc::from(p);
                producers.insert(p.to_owned(), a.clone());
                a
            }
        };
        last_producer = Some(a.clone());
        a
    };
    // Keys of one destination are contiguous and in delivery order: decode its name once,
    // gather its entries, and build its maps in bulk when the next destination starts. The id
    // maps (a hash insert per message, a third of the time) are built on a second thread
    // while this one scans.
    std::thread::scope(|scope| -> Result<()> {
        let (parts, received) = std::sync::mpsc::sync_channel::<IdPart>(8);
        let builder = scope.spawn(move || build_id_maps(&received));
        let mut current: Option<(Vec<u8>, Destination)> = None;
        let mut entries: Vec<(OrderKey, Entry)> = Vec::new();
        let mut ids: Vec<(MessageId, OrderKey)> = Vec::with_capacity(ID_CHUNK);
        let mut done: Vec<(Destination, Vec<(OrderKey, Entry)>)> = Vec::new();
        // A send fails only if the builder is gone (it panicked): its join reports that.
        let scanned = scan(db, Cf::Messages, verify, |k, v| {
            let order = match &current {
                Some((prefix, _))
                    if k.len() == prefix.len() + keys::ORDER_LEN && k.starts_with(prefix) =>
                {
                    keys::read_order_suffix(k)?
                }
                _ => {
                    let (d, order) = keys::read_message_key(k)?;
                    if let Some((_, finished)) = current.take() {
                        let _ = parts.send(IdPart::Ids(std::mem::take(&mut ids)));
                        let _ = parts.send(IdPart::End);
                        done.push((finished, std::mem::take(&mut entries)));
                    }
                    current = Some((k[..k.len() - keys::ORDER_LEN].to_vec(), d));
                    order
                }
            };
            let (entry, body) = keys::read_entry(v, &mut intern)?;
            match body {
                keys::BodyAt::Journal(r) if r.at >= written => {
                    unwritten.push((Cf::Messages, k.to_vec()));
                    if let Some((_, d)) = &current {
                        unwritten_messages.insert((d.clone(), order));
                    }
                    return Ok(());
                }
                keys::BodyAt::Journal(r) => body_files.added(order.sequence, r.at.file),
                keys::BodyAt::Inline(_) => body_files.added_inline(order.sequence),
                keys::BodyAt::BodiesCf => legacy_bodies = true,
            }
            max_seq = max_seq.max(order.sequence);
            ids.push((entry.id.clone(), order));
            if ids.len() == ID_CHUNK {
                let _ = parts.send(IdPart::Ids(std::mem::replace(
                    &mut ids,
                    Vec::with_capacity(ID_CHUNK),
                )));
            }
            entries.push((order, entry));
            Ok(())
        });
        if let Some((_, finished)) = current.take() {
            let _ = parts.send(IdPart::Ids(ids));
            let _ = parts.send(IdPart::End);
            done.push((finished, entries));
        }
        drop(parts);
        let maps = builder.join().map_err(|_| {
            bad(
                "message entry",
                Cf::Messages,
                "the id map builder panicked".into(),
            )
        })?;
        scanned?;
        for ((d, entries), ids) in done.into_iter().zip(maps) {
            add_messages(&mut index, &d, entries, ids)?;
        }
        Ok(())
    })?;
    index.last_sequence = index.last_sequence.max(max_seq);
    index.body_files = body_files;
    index.legacy_bodies = legacy_bodies;
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
        // Almost always empty: no clone of the destination per pending key at open.
        if !unwritten_messages.is_empty() && unwritten_messages.contains(&(d.clone(), order)) {
            unwritten.push((Cf::Pending, k.to_vec()));
            return Ok(());
        }
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
    index.unwritten = unwritten;
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

/// How many ids the scan hands the id map builder at a time.
const ID_CHUNK: usize = 8192;

/// What the scan sends the id map builder: ids of the current destination, or its end.
enum IdPart {
    Ids(Vec<(MessageId, OrderKey)>),
    End,
}

/// One id map per destination, in the order the scan met them.
fn build_id_maps(parts: &std::sync::mpsc::Receiver<IdPart>) -> Vec<HashMap<MessageId, OrderKey>> {
    let mut maps = Vec::new();
    let mut map = HashMap::new();
    while let Ok(part) = parts.recv() {
        match part {
            IdPart::Ids(ids) => {
                map.reserve(ids.len());
                map.extend(ids);
            }
            IdPart::End => maps.push(std::mem::take(&mut map)),
        }
    }
    maps
}

/// Adds one destination's message entries, in key order, and their id map to its index.
fn add_messages(
    index: &mut Index,
    d: &Destination,
    entries: Vec<(OrderKey, Entry)>,
    ids: HashMap<MessageId, OrderKey>,
) -> Result<()> {
    match index.destinations.get_mut(d).map(|x| &mut x.index) {
        Some(DestIndex::Queue(q)) => q.messages.extend_sorted(entries, |e| e, ids),
        Some(DestIndex::Topic(t)) => t.messages.extend_sorted(
            entries
                .into_iter()
                .map(|(o, entry)| (o, Kept { entry, refs: 0 }))
                .collect(),
            |k| &k.entry,
            ids,
        ),
        None => {
            return Err(bad(
                "message entry",
                Cf::Messages,
                format!(
                    "{} message(s) of unknown destination {d}, the first {}",
                    entries.len(),
                    entries
                        .first()
                        .map_or_else(String::new, |(_, e)| e.id.to_string())
                ),
            ));
        }
    }
    Ok(())
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
