//! The index: per destination, B+trees from delivery order to journal location and from message
//! id to order, per durable subscription a B+tree of pending messages, and a catalog (names,
//! roots, exact counts and bytes, per-journal-file live counters, the ack rule map, prepared
//! transactions, the free-page list) written at each checkpoint.
//!
//! [`Index::apply`] is the one place the index changes: the live write path calls it right after
//! enqueuing a record, and recovery calls it for every record replayed, so the two cannot drift.
//! It tolerates records that no longer apply (an ack of a message whose add was in a journal file
//! since deleted), which a full rebuild meets.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use store_api::codec::{self, Reader, Writer};
use store_api::{
    CursorPosition, DecodeError, DeliveryOrder, Destination, MAX_PRIORITY, Message, MessageId,
    OrderKey, SubscriptionInfo, SubscriptionKey, TransactionId, Xid,
};
use store_journal::Location;

use crate::btree;
use crate::error::{KahaError, Result};
use crate::index_storage::Checkpointed;
use crate::page_file::{self, Key, Node, PageFile, PageId};
use crate::records::Command;

const ORDER_V: usize = 40;
const ID_V: usize = 17;
const PENDING_V: usize = 0;

/// What the order tree holds for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub loc: Location,
    pub size: u32,
    /// Topics: how many subscriptions still have it pending.
    pub refs: u32,
    pub expiration: i64,
    id_key: Key,
}

impl Entry {
    fn encode(&self) -> [u8; ORDER_V] {
        let mut v = [0u8; ORDER_V];
        v[0..4].copy_from_slice(&self.loc.file.to_le_bytes());
        v[4..8].copy_from_slice(&self.loc.offset.to_le_bytes());
        v[8..12].copy_from_slice(&self.size.to_le_bytes());
        v[12..16].copy_from_slice(&self.refs.to_le_bytes());
        v[16..24].copy_from_slice(&self.expiration.to_le_bytes());
        v[24..40].copy_from_slice(&self.id_key);
        v
    }

    fn decode(v: &[u8]) -> Entry {
        let u32_at = |i: usize| u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&v[16..24]);
        let mut id_key = [0u8; 16];
        id_key.copy_from_slice(&v[24..40]);
        Entry {
            loc: Location {
                file: u32_at(0),
                offset: u32_at(4),
            },
            size: u32_at(8),
            refs: u32_at(12),
            expiration: i64::from_le_bytes(exp),
            id_key,
        }
    }
}

/// Order key bytes: `9 - priority`, then the sequence big-endian, so byte order is delivery order.
pub fn order_key(k: OrderKey) -> Key {
    let mut key = [0u8; 16];
    key[0] = MAX_PRIORITY - k.priority.min(MAX_PRIORITY);
    key[1..9].copy_from_slice(&k.sequence.to_be_bytes());
    key
}

pub fn order_of(key: &Key) -> OrderKey {
    let mut s = [0u8; 8];
    s.copy_from_slice(&key[1..9]);
    OrderKey {
        priority: MAX_PRIORITY.saturating_sub(key[0]),
        sequence: u64::from_be_bytes(s),
    }
}

/// FNV-1a, 64-bit, with a chosen offset basis; stable on disk by construction.
fn fnv(bytes: &[u8], basis: u64) -> u64 {
    let mut h = basis;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The id tree key (`fnv(producer)` and the producer sequence, big-endian) and a second,
/// independent hash of the producer kept in the value to detect collisions.
fn id_key(id: &MessageId) -> (Key, u64) {
    let mut key = [0u8; 16];
    key[0..8].copy_from_slice(&fnv(id.producer.as_bytes(), 0xcbf2_9ce4_8422_2325).to_be_bytes());
    key[8..16].copy_from_slice(&id.producer_seq.to_be_bytes());
    (key, fnv(id.producer.as_bytes(), 0x6c62_272e_07bb_0142))
}

#[derive(Debug, Clone)]
pub struct SubMeta {
    pub info: SubscriptionInfo,
    pub anchor: Location,
    pub root: PageId,
    pub count: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct DestMeta {
    pub anchor: Location,
    pub order_root: PageId,
    pub id_root: PageId,
    pub count: u64,
    pub bytes: u64,
    pub subs: BTreeMap<SubscriptionKey, SubMeta>,
}

/// The part of the index that is not B+trees, written whole at each checkpoint.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub last_sequence: u64,
    pub destinations: BTreeMap<Destination, DestMeta>,
    /// Per journal file: records in it the index still needs (messages, destination and
    /// subscription anchors, prepared transactions).
    pub file_refs: BTreeMap<u32, u64>,
    /// `outlives[f]`: journal files that file `f` must outlive, because replaying them without
    /// `f` would rebuild something else. Two cases: the ack rule (a file of records that
    /// removed messages or subscriptions recorded in older files must stay while those files
    /// do, or a rebuild would bring them back), and its mirror (a file holding a subscription's
    /// creation must stay while files of topic messages naming that subscription do, or a
    /// rebuild would drop those messages).
    pub outlives: BTreeMap<u32, BTreeSet<u32>>,
    pub prepared: BTreeMap<Xid, Location>,
}

pub(crate) fn write_loc(w: &mut Writer, l: Location) {
    w.u32(l.file);
    w.u32(l.offset);
}

pub(crate) fn read_loc(r: &mut Reader<'_>) -> std::result::Result<Location, DecodeError> {
    Ok(Location {
        file: r.u32()?,
        offset: r.u32()?,
    })
}

impl Catalog {
    pub(crate) fn encode(&self, free: &BTreeSet<PageId>) -> Vec<u8> {
        let mut w = Writer::new();
        w.varint(self.last_sequence);
        w.varint(self.destinations.len() as u64);
        for (d, m) in &self.destinations {
            codec::write_destination(&mut w, d);
            write_loc(&mut w, m.anchor);
            w.varint(m.order_root);
            w.varint(m.id_root);
            w.varint(m.count);
            w.varint(m.bytes);
            w.varint(m.subs.len() as u64);
            for s in m.subs.values() {
                codec::write_subscription_key(&mut w, &s.info.key);
                match &s.info.selector {
                    Some(sel) => {
                        w.u8(1);
                        w.str(sel);
                    }
                    None => w.u8(0),
                }
                write_loc(&mut w, s.anchor);
                w.varint(s.root);
                w.varint(s.count);
                w.varint(s.bytes);
            }
        }
        w.varint(self.file_refs.len() as u64);
        for (f, n) in &self.file_refs {
            w.u32(*f);
            w.varint(*n);
        }
        w.varint(self.outlives.len() as u64);
        for (f, set) in &self.outlives {
            w.u32(*f);
            w.varint(set.len() as u64);
            for g in set {
                w.u32(*g);
            }
        }
        w.varint(self.prepared.len() as u64);
        for (x, l) in &self.prepared {
            codec::write_transaction_id(&mut w, &TransactionId::Xa(x.clone()));
            write_loc(&mut w, *l);
        }
        w.varint(free.len() as u64);
        for p in free {
            w.varint(*p);
        }
        w.into_inner()
    }

    pub(crate) fn decode(
        bytes: &[u8],
    ) -> std::result::Result<(Catalog, BTreeSet<PageId>), DecodeError> {
        let mut r = Reader::new(bytes);
        let mut cat = Catalog {
            last_sequence: r.varint()?,
            ..Catalog::default()
        };
        for _ in 0..r.length()? {
            let d = codec::read_destination(&mut r)?;
            let anchor = read_loc(&mut r)?;
            let order_root = r.varint()?;
            let id_root = r.varint()?;
            let count = r.varint()?;
            let bytes = r.varint()?;
            let mut subs = BTreeMap::new();
            for _ in 0..r.length()? {
                let key = codec::read_subscription_key(&mut r)?;
                let selector = match r.u8()? {
                    0 => None,
                    _ => Some(r.str("selector")?.to_owned()),
                };
                let anchor = read_loc(&mut r)?;
                let root = r.varint()?;
                let count = r.varint()?;
                let bytes = r.varint()?;
                subs.insert(
                    key.clone(),
                    SubMeta {
                        info: SubscriptionInfo { key, selector },
                        anchor,
                        root,
                        count,
                        bytes,
                    },
                );
            }
            cat.destinations.insert(
                d,
                DestMeta {
                    anchor,
                    order_root,
                    id_root,
                    count,
                    bytes,
                    subs,
                },
            );
        }
        for _ in 0..r.length()? {
            let f = r.u32()?;
            cat.file_refs.insert(f, r.varint()?);
        }
        for _ in 0..r.length()? {
            let f = r.u32()?;
            let mut set = BTreeSet::new();
            for _ in 0..r.length()? {
                set.insert(r.u32()?);
            }
            cat.outlives.insert(f, set);
        }
        for _ in 0..r.length()? {
            let x = match codec::read_transaction_id(&mut r)? {
                TransactionId::Xa(x) => x,
                TransactionId::Local(_) => {
                    return Err(DecodeError::Invalid("local transaction in catalog".into()));
                }
            };
            cat.prepared.insert(x, read_loc(&mut r)?);
        }
        let mut free = BTreeSet::new();
        for _ in 0..r.length()? {
            free.insert(r.varint()?);
        }
        r.finish()?;
        Ok((cat, free))
    }
}

/// A whole index as its catalog and every page: what an engine that holds its index in memory
/// writes at a checkpoint. Pages are shared with the live index and immutable, so encoding them
/// happens without the index lock.
pub struct IndexImage {
    /// The catalog, encoded (with the free-page list); see FORMAT.md.
    pub catalog: Vec<u8>,
    /// Every page, by id, ascending.
    pub pages: Vec<(u64, Page)>,
    /// Pages ever allocated (the next never-used page id).
    pub pages_in_use: u64,
}

/// One B+tree page of an [`IndexImage`], encoded as in `db.data` (FORMAT.md).
pub struct Page(Arc<Node>);

impl Page {
    /// Bytes of an encoded page.
    pub const SIZE: usize = page_file::PAGE_SIZE;

    pub fn encode(&self) -> [u8; page_file::PAGE_SIZE] {
        page_file::encode_node(&self.0)
    }

    /// A page as [`Page::encode`] wrote it; the error says why it is not one.
    pub fn decode(raw: &[u8; page_file::PAGE_SIZE]) -> std::result::Result<Page, String> {
        page_file::decode_node(raw).map(|node| Page(Arc::new(node)))
    }
}

/// The index of one store, over its pages: the logic both engines share. An engine keeps it
/// where its [`IndexStorage`](crate::index_storage::IndexStorage) says.
pub struct Index {
    pub(crate) pf: PageFile,
    pub(crate) cat: Catalog,
    /// Pages holding the catalog as of the last page-file checkpoint (freed by the next).
    pub(crate) catalog_pages: Vec<PageId>,
    pub(crate) cursors: HashMap<Destination, CursorPosition>,
    pub(crate) sub_cursors: HashMap<(Destination, SubscriptionKey), CursorPosition>,
    /// Sequences of adds enqueued but not yet durable, per destination: hidden from readers,
    /// and a batch cursor stops before the lowest (the ordering watermark).
    pub(crate) pending: HashMap<Destination, BTreeSet<u64>>,
    pub(crate) generations: HashMap<Destination, u64>,
    next_generation: u64,
    pub(crate) txs: store_api::OpenTransactions,
    /// Records replay could not apply (expected only in a rebuild after journal GC).
    pub(crate) skipped: u64,
    /// Records replayed at open.
    pub(crate) replayed: u64,
}

impl Index {
    /// A new, empty index over `pf`.
    pub(crate) fn empty(pf: PageFile) -> Index {
        Index {
            pf,
            cat: Catalog::default(),
            catalog_pages: Vec::new(),
            cursors: HashMap::new(),
            sub_cursors: HashMap::new(),
            pending: HashMap::new(),
            generations: HashMap::new(),
            next_generation: 0,
            txs: store_api::OpenTransactions::new(),
            skipped: 0,
            replayed: 0,
        }
    }

    /// What GC needs of a checkpoint that reflects the journal up to `at`, captured under the
    /// same lock as the checkpoint itself.
    pub fn checkpointed(&self, at: Location) -> Checkpointed {
        Checkpointed {
            at,
            file_refs: self.cat.file_refs.clone(),
            outlives: self.cat.outlives.clone(),
        }
    }

    /// A new, empty index held wholly in memory; `name` is for errors.
    pub fn in_memory(name: &std::path::Path) -> Result<Index> {
        Ok(Index::empty(PageFile::in_memory(name)?))
    }

    /// The whole index, for an engine that holds it in memory to write; marks every page clean.
    pub fn image(&mut self) -> IndexImage {
        IndexImage {
            catalog: self.cat.encode(self.pf.free_pages()),
            pages: self
                .pf
                .all_pages()
                .into_iter()
                .map(|(id, node)| (id, Page(node)))
                .collect(),
            pages_in_use: self.pf.file_pages,
        }
    }

    /// An index held in memory again from an [`IndexImage`]; `name` is for errors.
    pub fn from_image(image: IndexImage, name: &std::path::Path) -> Result<Index> {
        let (cat, free) = Catalog::decode(&image.catalog).map_err(|e| KahaError::Corrupt {
            file: name.to_path_buf(),
            offset: 0,
            reason: format!("catalog: {e}"),
        })?;
        let mut pf = PageFile::in_memory(name)?;
        for (id, Page(node)) in image.pages {
            pf.insert_clean(id, node);
        }
        pf.file_pages = image.pages_in_use;
        pf.set_free_pages(free);
        let mut index = Index::empty(pf);
        index.cat = cat;
        Ok(index)
    }

    /// Takes over what the handles of a running store rely on from `old`, the index this one
    /// replaces when the store reopens itself in place: the batch cursors and destination
    /// generations. Open local transactions are not taken over (their commit is `NotFound`);
    /// prepared ones this index has from the files.
    pub(crate) fn keep_handles_of(&mut self, old: &mut Index) {
        self.cursors = std::mem::take(&mut old.cursors);
        self.sub_cursors = std::mem::take(&mut old.sub_cursors);
        self.generations = std::mem::take(&mut old.generations);
        self.next_generation = old.next_generation;
    }

    pub(crate) fn generation(&mut self, d: &Destination) -> u64 {
        if let Some(g) = self.generations.get(d) {
            return *g;
        }
        self.next_generation += 1;
        self.generations.insert(d.clone(), self.next_generation);
        self.next_generation
    }

    fn forget_generation(&mut self, d: &Destination) {
        self.generations.remove(d);
        self.cursors.remove(d);
        self.sub_cursors.retain(|(dd, _), _| dd != d);
    }

    fn add_ref(&mut self, file: u32) {
        *self.cat.file_refs.entry(file).or_default() += 1;
    }

    fn drop_ref(&mut self, file: u32) {
        if let Some(n) = self.cat.file_refs.get_mut(&file) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.cat.file_refs.remove(&file);
            }
        }
    }

    /// The record at `killer` removed something recorded in `victim_file`.
    fn note_kill(&mut self, killer: Location, victim_file: u32) {
        self.must_outlive(killer.file, victim_file);
    }

    fn must_outlive(&mut self, file: u32, other: u32) {
        if file != other {
            self.cat.outlives.entry(file).or_default().insert(other);
        }
    }

    // ---- lookups ----

    pub(crate) fn lookup(
        &mut self,
        d: &Destination,
        id: &MessageId,
    ) -> Result<Option<(OrderKey, Entry)>> {
        let Some(meta) = self.cat.destinations.get(d) else {
            return Ok(None);
        };
        let (order_root, id_root) = (meta.order_root, meta.id_root);
        let (key, h2) = id_key(id);
        let Some(v) = btree::get(&mut self.pf, id_root, &key)? else {
            return Ok(None);
        };
        let mut h = [0u8; 8];
        h.copy_from_slice(&v[0..8]);
        if u64::from_le_bytes(h) != h2 {
            return Ok(None);
        }
        let mut s = [0u8; 8];
        s.copy_from_slice(&v[9..17]);
        let ok = OrderKey {
            priority: v[8],
            sequence: u64::from_le_bytes(s),
        };
        Ok(btree::get(&mut self.pf, order_root, &order_key(ok))?.map(|e| (ok, Entry::decode(&e))))
    }

    /// Whether `id` is pending for the subscription (and the subscription exists).
    pub(crate) fn is_pending_for(
        &mut self,
        d: &Destination,
        key: &SubscriptionKey,
        id: &MessageId,
    ) -> Result<bool> {
        let Some(root) = self
            .cat
            .destinations
            .get(d)
            .and_then(|m| m.subs.get(key))
            .map(|s| s.root)
        else {
            return Ok(false);
        };
        match self.lookup(d, id)? {
            Some((ok, _)) => Ok(btree::get(&mut self.pf, root, &order_key(ok))?.is_some()),
            None => Ok(false),
        }
    }

    /// Messages of a destination (or pending for one subscription of it) in delivery order,
    /// from `from`, at most `max`, skipping hidden sequences and stopping at `until`.
    pub(crate) fn entries(
        &mut self,
        d: &Destination,
        sub: Option<&SubscriptionKey>,
        from: Bound<OrderKey>,
        until: Option<OrderKey>,
        max: usize,
    ) -> Result<Vec<(OrderKey, Entry)>> {
        let Some(meta) = self.cat.destinations.get(d) else {
            return Ok(Vec::new());
        };
        let order_root = meta.order_root;
        let root = match sub {
            Some(k) => match meta.subs.get(k) {
                Some(s) => s.root,
                None => return Ok(Vec::new()),
            },
            None => order_root,
        };
        // Borrowed beside `self.pf` (disjoint fields): this ran for every cursor batch of every
        // consumer, and cloning the set of sequences being written was a tenth of the broker's
        // CPU with a topic's durable subscribers under a stream of pipelined sends.
        let hidden = self.pending.get(d);
        let mut keys = Vec::new();
        let lower = match from {
            Bound::Included(k) => Bound::Included(order_key(k)),
            Bound::Excluded(k) => Bound::Excluded(order_key(k)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let upper = until.map_or(Bound::Unbounded, |u| Bound::Included(order_key(u)));
        let mut collect = |k: &Key, v: &[u8]| {
            let ok = order_of(k);
            if !hidden.is_some_and(|h| h.contains(&ok.sequence)) {
                keys.push((
                    ok,
                    if sub.is_none() {
                        Some(Entry::decode(v))
                    } else {
                        None
                    },
                ));
            }
            keys.len() < max
        };
        if max > 0 {
            btree::scan(&mut self.pf, root, lower, upper, &mut collect)?;
        }
        let mut out = Vec::with_capacity(keys.len());
        for (ok, e) in keys {
            let e = match e {
                Some(e) => e,
                None => match btree::get(&mut self.pf, order_root, &order_key(ok))? {
                    Some(v) => Entry::decode(&v),
                    None => continue,
                },
            };
            out.push((ok, e));
        }
        Ok(out)
    }

    /// The next batch for a cursor: per priority, high to low, what lies after the cursor's
    /// position, never past the lowest sequence still being written.
    pub(crate) fn cursor_batch(
        &mut self,
        d: &Destination,
        sub: Option<&SubscriptionKey>,
        cursor: &CursorPosition,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<(OrderKey, Entry)>> {
        let watermark = self
            .pending
            .get(d)
            .and_then(|p| p.first().copied())
            .unwrap_or(u64::MAX);
        let mut batch = Vec::new();
        for (from, end) in cursor.pending_ranges() {
            let Some(limit) = order.range_limit(batch.len(), max) else {
                break;
            };
            if from.sequence >= watermark {
                continue;
            }
            let until = OrderKey {
                sequence: watermark - 1,
                ..end
            };
            batch.extend(self.entries(d, sub, Bound::Included(from), Some(until), limit)?);
        }
        order.finish(&mut batch, |(k, _)| *k, max);
        Ok(batch)
    }

    // ---- changes ----

    /// Applies one journaled command at its location.
    pub(crate) fn apply(&mut self, cmd: &Command, loc: Location) -> Result<()> {
        match cmd {
            Command::Add {
                message,
                pending_for,
            } => self.add(message, loc, pending_for),
            Command::QueueAck { dest, id } => {
                if !self.queue_ack(dest, id, loc)? {
                    self.skipped += 1;
                }
                Ok(())
            }
            Command::TopicAck { dest, key, id } => {
                if !self.topic_ack(dest, key, id, loc)? {
                    self.skipped += 1;
                }
                Ok(())
            }
            Command::Subscribe {
                dest,
                info,
                retroactive,
            } => self.subscribe(dest, info, retroactive, loc),
            Command::Unsubscribe { dest, key } => self.unsubscribe(dest, key, loc),
            Command::TopicRemove { dest, id } => self.topic_remove(dest, id, loc).map(|_| ()),
            Command::Purge { dest } => self.purge(dest, loc).map(|_| ()),
            Command::EnsureDestination { dest } => {
                self.ensure_destination(dest, loc, true);
                Ok(())
            }
            Command::RemoveDestination {
                dest,
                last_sequence,
            } => {
                self.cat.last_sequence = self.cat.last_sequence.max(*last_sequence);
                self.remove_destination(dest, loc)
            }
            Command::DeleteAll { last_sequence } => {
                self.cat.last_sequence = self.cat.last_sequence.max(*last_sequence);
                let all: Vec<Destination> = self.cat.destinations.keys().cloned().collect();
                for d in all {
                    self.remove_destination(&d, loc)?;
                }
                for (_, pl) in std::mem::take(&mut self.cat.prepared) {
                    self.drop_ref(pl.file);
                    self.note_kill(loc, pl.file);
                }
                self.txs.clear();
                Ok(())
            }
            Command::Prepare { xid, ops } => {
                if let Some(old) = self.cat.prepared.insert(xid.clone(), loc) {
                    self.drop_ref(old.file);
                }
                self.add_ref(loc.file);
                self.txs
                    .restore_prepared(TransactionId::Xa(xid.clone()), ops.clone(), ());
                Ok(())
            }
            Command::XaEnd { xid, .. } => {
                if let Some(pl) = self.cat.prepared.remove(xid) {
                    self.drop_ref(pl.file);
                    self.note_kill(loc, pl.file);
                }
                let _ = self.txs.end(&TransactionId::Xa(xid.clone()));
                Ok(())
            }
            Command::Relocate {
                message,
                pending_for,
            } => self.relocate(message, pending_for, loc),
            Command::EnsureSubscription { dest, info } => {
                self.ensure_destination(dest, loc, false);
                let existing = self
                    .cat
                    .destinations
                    .get_mut(dest)
                    .and_then(|m| m.subs.get_mut(&info.key))
                    .map(|s| std::mem::replace(&mut s.anchor, loc));
                match existing {
                    Some(old) => {
                        self.drop_ref(old.file);
                        self.add_ref(loc.file);
                        Ok(())
                    }
                    None => self.subscribe(dest, info, &[], loc),
                }
            }
        }
    }

    /// Creates a destination if missing. With `anchor`, `loc` becomes the record that keeps it
    /// across a rebuild (moving the anchor if it existed).
    fn ensure_destination(&mut self, d: &Destination, loc: Location, anchor: bool) {
        if let Some(m) = self.cat.destinations.get_mut(d) {
            if anchor {
                let old = std::mem::replace(&mut m.anchor, loc);
                self.drop_ref(old.file);
                self.add_ref(loc.file);
            }
            return;
        }
        let order_root = btree::create(&mut self.pf, ORDER_V);
        let id_root = btree::create(&mut self.pf, ID_V);
        self.cat.destinations.insert(
            d.clone(),
            DestMeta {
                anchor: loc,
                order_root,
                id_root,
                count: 0,
                bytes: 0,
                subs: BTreeMap::new(),
            },
        );
        self.add_ref(loc.file);
    }

    /// Adds a message. `only_for` limits a topic message to those subscriptions (relocation).
    /// Adds a message; a topic message is pending for those of `pending_for` that exist.
    fn add(&mut self, m: &Message, loc: Location, pending_for: &[SubscriptionKey]) -> Result<()> {
        self.cat.last_sequence = self.cat.last_sequence.max(m.sequence);
        let d = &m.destination;
        self.ensure_destination(d, loc, false);
        let Some(meta) = self.cat.destinations.get_mut(d) else {
            return Ok(());
        };
        let subs: Vec<SubscriptionKey> = if d.is_topic() {
            pending_for
                .iter()
                .filter(|k| meta.subs.contains_key(*k))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        if d.is_topic() && subs.is_empty() {
            return Ok(());
        }
        let ok = OrderKey::of(m);
        let okey = order_key(ok);
        let size = m.size() as u32;
        let (ik, h2) = id_key(&m.id);
        let entry = Entry {
            loc,
            size,
            refs: subs.len() as u32,
            expiration: m.expiration,
            id_key: ik,
        };
        let mut idv = [0u8; ID_V];
        idv[0..8].copy_from_slice(&h2.to_le_bytes());
        idv[8] = ok.priority;
        idv[9..17].copy_from_slice(&ok.sequence.to_le_bytes());
        // The id entry goes in first and doubles as the duplicate check (one descent of the id
        // tree, not a lookup and then an insert): a key already there is put back as it was.
        if let Some(existing) = btree::insert(&mut self.pf, &mut meta.id_root, ik, &idv)? {
            btree::insert(&mut self.pf, &mut meta.id_root, ik, &existing)?;
            if existing[0..8] == idv[0..8] {
                // This id is indexed already: a replayed add, or one id twice in a transaction.
                self.skipped += 1;
                return Ok(());
            }
            // Same 64-bit producer hash and sequence, different producer: refuse.
            return Err(KahaError::IdCollision(m.id.to_string()));
        }
        btree::insert(&mut self.pf, &mut meta.order_root, okey, &entry.encode())?;
        meta.count += 1;
        meta.bytes += u64::from(size);
        let mut anchors = Vec::with_capacity(subs.len());
        for k in &subs {
            if let Some(s) = meta.subs.get_mut(k) {
                btree::insert(&mut self.pf, &mut s.root, okey, &[])?;
                s.count += 1;
                s.bytes += u64::from(size);
                anchors.push(s.anchor.file);
            }
        }
        for anchor in anchors {
            self.must_outlive(anchor, loc.file);
        }
        self.add_ref(loc.file);
        Ok(())
    }

    /// Removes a message's entries and its reference on its journal file.
    fn release(&mut self, d: &Destination, ok: OrderKey, e: Entry, killer: Location) -> Result<()> {
        if let Some(meta) = self.cat.destinations.get_mut(d) {
            btree::remove(&mut self.pf, &mut meta.order_root, &order_key(ok), ORDER_V)?;
            btree::remove(&mut self.pf, &mut meta.id_root, &e.id_key, ID_V)?;
            meta.count = meta.count.saturating_sub(1);
            meta.bytes = meta.bytes.saturating_sub(u64::from(e.size));
        }
        self.drop_ref(e.loc.file);
        self.note_kill(killer, e.loc.file);
        Ok(())
    }

    fn queue_ack(&mut self, d: &Destination, id: &MessageId, loc: Location) -> Result<bool> {
        match self.lookup(d, id)? {
            Some((ok, e)) => {
                self.release(d, ok, e, loc)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Drops one subscription's hold on a message; releases it when none is left.
    fn unref(&mut self, d: &Destination, ok: OrderKey, killer: Location) -> Result<()> {
        let Some(meta) = self.cat.destinations.get_mut(d) else {
            return Ok(());
        };
        let okey = order_key(ok);
        let Some(v) = btree::get(&mut self.pf, meta.order_root, &okey)? else {
            return Ok(());
        };
        let mut e = Entry::decode(&v);
        e.refs = e.refs.saturating_sub(1);
        if e.refs == 0 {
            self.release(d, ok, e, killer)
        } else {
            btree::insert(&mut self.pf, &mut meta.order_root, okey, &e.encode())?;
            self.note_kill(killer, e.loc.file);
            Ok(())
        }
    }

    fn topic_ack(
        &mut self,
        d: &Destination,
        key: &SubscriptionKey,
        id: &MessageId,
        loc: Location,
    ) -> Result<bool> {
        let Some((ok, e)) = self.lookup(d, id)? else {
            return Ok(false);
        };
        let Some(s) = self
            .cat
            .destinations
            .get_mut(d)
            .and_then(|m| m.subs.get_mut(key))
        else {
            return Ok(false);
        };
        if btree::remove(&mut self.pf, &mut s.root, &order_key(ok), PENDING_V)?.is_none() {
            return Ok(false);
        }
        s.count = s.count.saturating_sub(1);
        s.bytes = s.bytes.saturating_sub(u64::from(e.size));
        self.unref(d, ok, loc)?;
        Ok(true)
    }

    fn topic_remove(&mut self, d: &Destination, id: &MessageId, loc: Location) -> Result<bool> {
        let Some((ok, e)) = self.lookup(d, id)? else {
            return Ok(false);
        };
        if let Some(meta) = self.cat.destinations.get_mut(d) {
            for s in meta.subs.values_mut() {
                if btree::remove(&mut self.pf, &mut s.root, &order_key(ok), PENDING_V)?.is_some() {
                    s.count = s.count.saturating_sub(1);
                    s.bytes = s.bytes.saturating_sub(u64::from(e.size));
                }
            }
        }
        self.release(d, ok, e, loc)?;
        Ok(true)
    }

    fn subscribe(
        &mut self,
        d: &Destination,
        info: &SubscriptionInfo,
        retroactive: &[OrderKey],
        loc: Location,
    ) -> Result<()> {
        self.ensure_destination(d, loc, false);
        if self
            .cat
            .destinations
            .get(d)
            .is_some_and(|m| m.subs.contains_key(&info.key))
        {
            self.skipped += 1;
            return Ok(());
        }
        let mut root = btree::create(&mut self.pf, PENDING_V);
        let (mut count, mut bytes) = (0, 0);
        for ok in retroactive {
            let key = order_key(*ok);
            let Some(meta) = self.cat.destinations.get_mut(d) else {
                break;
            };
            let Some(v) = btree::get(&mut self.pf, meta.order_root, &key)? else {
                // Acked by everyone since, and gone: nothing to hold.
                continue;
            };
            let mut e = Entry::decode(&v);
            e.refs += 1;
            btree::insert(&mut self.pf, &mut meta.order_root, key, &e.encode())?;
            btree::insert(&mut self.pf, &mut root, key, &[])?;
            count += 1;
            bytes += u64::from(e.size);
        }
        if let Some(meta) = self.cat.destinations.get_mut(d) {
            meta.subs.insert(
                info.key.clone(),
                SubMeta {
                    info: info.clone(),
                    anchor: loc,
                    root,
                    count,
                    bytes,
                },
            );
        }
        self.add_ref(loc.file);
        Ok(())
    }

    fn unsubscribe(&mut self, d: &Destination, key: &SubscriptionKey, loc: Location) -> Result<()> {
        let Some(sub) = self
            .cat
            .destinations
            .get_mut(d)
            .and_then(|m| m.subs.remove(key))
        else {
            self.skipped += 1;
            return Ok(());
        };
        let mut pending = Vec::new();
        btree::scan(
            &mut self.pf,
            sub.root,
            Bound::Unbounded,
            Bound::Unbounded,
            &mut |k, _| {
                pending.push(order_of(k));
                true
            },
        )?;
        for ok in pending {
            self.unref(d, ok, loc)?;
        }
        btree::destroy(&mut self.pf, sub.root)?;
        self.drop_ref(sub.anchor.file);
        self.note_kill(loc, sub.anchor.file);
        self.sub_cursors.remove(&(d.clone(), key.clone()));
        Ok(())
    }

    /// Drops every message of a destination (subscriptions stay); returns how many.
    fn purge(&mut self, d: &Destination, loc: Location) -> Result<u64> {
        let Some(meta) = self.cat.destinations.get(d) else {
            return Ok(0);
        };
        let (order_root, id_root) = (meta.order_root, meta.id_root);
        let mut files = Vec::new();
        btree::scan(
            &mut self.pf,
            order_root,
            Bound::Unbounded,
            Bound::Unbounded,
            &mut |_, v| {
                files.push(Entry::decode(v).loc.file);
                true
            },
        )?;
        btree::destroy(&mut self.pf, order_root)?;
        btree::destroy(&mut self.pf, id_root)?;
        let new_order = btree::create(&mut self.pf, ORDER_V);
        let new_id = btree::create(&mut self.pf, ID_V);
        let mut sub_roots = Vec::new();
        if let Some(meta) = self.cat.destinations.get_mut(d) {
            meta.order_root = new_order;
            meta.id_root = new_id;
            meta.count = 0;
            meta.bytes = 0;
            for s in meta.subs.values_mut() {
                sub_roots.push(s.root);
                s.count = 0;
                s.bytes = 0;
            }
        }
        for (i, old) in sub_roots.into_iter().enumerate() {
            btree::destroy(&mut self.pf, old)?;
            let new = btree::create(&mut self.pf, PENDING_V);
            if let Some(s) = self
                .cat
                .destinations
                .get_mut(d)
                .and_then(|m| m.subs.values_mut().nth(i))
            {
                s.root = new;
            }
        }
        let n = files.len() as u64;
        for f in files {
            self.drop_ref(f);
            self.note_kill(loc, f);
        }
        Ok(n)
    }

    fn remove_destination(&mut self, d: &Destination, loc: Location) -> Result<()> {
        if !self.cat.destinations.contains_key(d) {
            self.skipped += 1;
            return Ok(());
        }
        self.purge(d, loc)?;
        if let Some(meta) = self.cat.destinations.remove(d) {
            for s in meta.subs.values() {
                btree::destroy(&mut self.pf, s.root)?;
                self.drop_ref(s.anchor.file);
                self.note_kill(loc, s.anchor.file);
            }
            btree::destroy(&mut self.pf, meta.order_root)?;
            btree::destroy(&mut self.pf, meta.id_root)?;
            self.drop_ref(meta.anchor.file);
            self.note_kill(loc, meta.anchor.file);
        }
        self.forget_generation(d);
        self.pending.remove(d);
        Ok(())
    }

    fn relocate(
        &mut self,
        m: &Message,
        pending_for: &[SubscriptionKey],
        loc: Location,
    ) -> Result<()> {
        match self.lookup(&m.destination, &m.id)? {
            Some((ok, e)) => self.move_entry(&m.destination, ok, e, loc),
            None => self.add(m, loc, pending_for),
        }
    }

    /// Undoes a relocation whose journal write failed: if the entry still points at the copy
    /// (`from`), it points at the original (`to`) again.
    pub(crate) fn undo_relocate(
        &mut self,
        d: &Destination,
        id: &MessageId,
        from: Location,
        to: Location,
    ) -> Result<()> {
        match self.lookup(d, id)? {
            Some((ok, e)) if e.loc == from => self.move_entry(d, ok, e, to),
            _ => Ok(()),
        }
    }

    /// Points a message's entry at another record of it, moving its file reference along.
    fn move_entry(
        &mut self,
        d: &Destination,
        ok: OrderKey,
        mut e: Entry,
        to: Location,
    ) -> Result<()> {
        let from = e.loc.file;
        e.loc = to;
        if let Some(meta) = self.cat.destinations.get_mut(d) {
            btree::insert(
                &mut self.pf,
                &mut meta.order_root,
                order_key(ok),
                &e.encode(),
            )?;
        }
        self.drop_ref(from);
        self.add_ref(to.file);
        Ok(())
    }

    /// Undoes an add whose journal write failed, so it never becomes visible.
    pub(crate) fn undo_add(&mut self, m: &Message, loc: Location) -> Result<()> {
        if let Some((ok, e)) = self.lookup(&m.destination, &m.id)?
            && e.loc == loc
        {
            let subs: Vec<SubscriptionKey> = self
                .cat
                .destinations
                .get(&m.destination)
                .map(|meta| meta.subs.keys().cloned().collect())
                .unwrap_or_default();
            for k in subs {
                if let Some(s) = self
                    .cat
                    .destinations
                    .get_mut(&m.destination)
                    .and_then(|meta| meta.subs.get_mut(&k))
                    && btree::remove(&mut self.pf, &mut s.root, &order_key(ok), PENDING_V)?
                        .is_some()
                {
                    s.count = s.count.saturating_sub(1);
                    s.bytes = s.bytes.saturating_sub(u64::from(e.size));
                }
            }
            self.release(&m.destination, ok, e, loc)?;
        }
        Ok(())
    }

    /// The subscriptions of a destination: what a topic add written now is pending for.
    pub(crate) fn subscription_keys(&self, d: &Destination) -> Vec<SubscriptionKey> {
        self.cat
            .destinations
            .get(d)
            .map(|m| m.subs.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The durable messages of a destination: what a retroactive subscription written now
    /// starts with.
    pub(crate) fn kept_order_keys(&mut self, d: &Destination) -> Result<Vec<OrderKey>> {
        Ok(self
            .entries(d, None, Bound::Unbounded, None, usize::MAX)?
            .into_iter()
            .map(|(ok, _)| ok)
            .collect())
    }

    /// Subscriptions a topic message is pending for (relocation records them).
    pub(crate) fn pending_for(
        &mut self,
        d: &Destination,
        ok: OrderKey,
    ) -> Result<Vec<SubscriptionKey>> {
        let subs: Vec<(SubscriptionKey, PageId)> = self
            .cat
            .destinations
            .get(d)
            .map(|m| m.subs.iter().map(|(k, s)| (k.clone(), s.root)).collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for (k, root) in subs {
            if btree::get(&mut self.pf, root, &order_key(ok))?.is_some() {
                out.push(k);
            }
        }
        Ok(out)
    }

    /// Every message whose record is in journal file `file`, for compaction.
    pub(crate) fn messages_in_file(
        &mut self,
        file: u32,
    ) -> Result<Vec<(Destination, OrderKey, Entry)>> {
        let roots: Vec<(Destination, PageId)> = self
            .cat
            .destinations
            .iter()
            .map(|(d, m)| (d.clone(), m.order_root))
            .collect();
        let mut out = Vec::new();
        for (d, root) in roots {
            btree::scan(
                &mut self.pf,
                root,
                Bound::Unbounded,
                Bound::Unbounded,
                &mut |k, v| {
                    let e = Entry::decode(v);
                    if e.loc.file == file {
                        out.push((d.clone(), order_of(k), e));
                    }
                    true
                },
            )?;
        }
        Ok(out)
    }
}
