//! `db.data`: fixed 4 KiB pages holding B+tree nodes and the catalog, behind a bounded page
//! cache; made crash-safe by `db.redo`, a double-write buffer.
//!
//! Pages are only ever written to `db.data` by a checkpoint, and a checkpoint first writes every
//! page it will change (and the metadata page) to `db.redo` with a checksum and fsyncs it; only
//! then are the pages written in place and `db.data` fsynced. At open, a valid `db.redo` is
//! applied again (idempotent): a crash during the in-place writes is completed, and a crash
//! during the redo write leaves `db.data` at the previous checkpoint, which was complete
//! before the next checkpoint started. See FORMAT.md.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use store_journal::fs::{File, FileSystem};

use crate::error::{KahaError, Result};

pub const PAGE_SIZE: usize = 4096;
/// Page 0 is the metadata page.
pub type PageId = u64;
pub const META_PAGE: PageId = 0;

const PAGE_HEADER: usize = 16;
const KIND_LEAF: u8 = 1;
const KIND_BRANCH: u8 = 2;
const KIND_BLOB: u8 = 3;
const KIND_META: u8 = 4;
const REDO_MAGIC: &[u8; 8] = b"KDBREDO1";

/// B+tree keys are 16 bytes, compared as bytes.
pub type Key = [u8; 16];

/// A B+tree node as held in memory. Values in a leaf all have the tree's value size.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Leaf {
        value_size: usize,
        keys: Vec<Key>,
        values: Vec<u8>,
    },
    /// `keys[i]` is the smallest key under `children[i + 1]`.
    Branch {
        keys: Vec<Key>,
        children: Vec<PageId>,
    },
}

impl Node {
    pub fn empty_leaf(value_size: usize) -> Node {
        Node::Leaf {
            value_size,
            keys: Vec::new(),
            values: Vec::new(),
        }
    }

    pub fn leaf_capacity(value_size: usize) -> usize {
        (PAGE_SIZE - PAGE_HEADER) / (16 + value_size)
    }

    pub const BRANCH_CAPACITY: usize = (PAGE_SIZE - PAGE_HEADER - 8) / 24;
}

fn corrupt_page(path: &std::path::Path, id: PageId, why: &str) -> KahaError {
    KahaError::Corrupt {
        file: path.to_path_buf(),
        offset: id * PAGE_SIZE as u64,
        reason: format!("page {id}: {why}"),
    }
}

fn seal(page: &mut [u8; PAGE_SIZE]) {
    let crc = crc32fast::hash(&page[4..]);
    page[0..4].copy_from_slice(&crc.to_le_bytes());
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Page layout: crc32 of bytes 4.. (u32) | kind u8 | value size u8 | count u16 | next u64 |
/// body. Leaf body: count × (key 16, value). Branch body: (count + 1) child ids u64, then
/// count keys. Blob body: up to PAGE_SIZE - 16 bytes of a chained byte string.
pub fn encode_node(node: &Node) -> [u8; PAGE_SIZE] {
    let mut p = [0u8; PAGE_SIZE];
    match node {
        Node::Leaf {
            value_size,
            keys,
            values,
        } => {
            p[4] = KIND_LEAF;
            p[5] = *value_size as u8;
            p[6..8].copy_from_slice(&(keys.len() as u16).to_le_bytes());
            let mut at = PAGE_HEADER;
            for (i, k) in keys.iter().enumerate() {
                p[at..at + 16].copy_from_slice(k);
                at += 16;
                p[at..at + value_size]
                    .copy_from_slice(&values[i * value_size..(i + 1) * value_size]);
                at += value_size;
            }
        }
        Node::Branch { keys, children } => {
            p[4] = KIND_BRANCH;
            p[6..8].copy_from_slice(&(keys.len() as u16).to_le_bytes());
            let mut at = PAGE_HEADER;
            for c in children {
                p[at..at + 8].copy_from_slice(&c.to_le_bytes());
                at += 8;
            }
            for k in keys {
                p[at..at + 16].copy_from_slice(k);
                at += 16;
            }
        }
    }
    seal(&mut p);
    p
}

pub fn decode_node(p: &[u8; PAGE_SIZE]) -> std::result::Result<Node, String> {
    if u32::from_le_bytes([p[0], p[1], p[2], p[3]]) != crc32fast::hash(&p[4..]) {
        return Err("checksum mismatch".into());
    }
    let count = usize::from(u16_at(p, 6));
    match p[4] {
        KIND_LEAF => {
            let value_size = usize::from(p[5]);
            if count > Node::leaf_capacity(value_size) {
                return Err(format!("leaf holds {count} entries, more than fit"));
            }
            let mut keys = Vec::with_capacity(count);
            let mut values = Vec::with_capacity(count * value_size);
            let mut at = PAGE_HEADER;
            for _ in 0..count {
                let mut k = [0u8; 16];
                k.copy_from_slice(&p[at..at + 16]);
                keys.push(k);
                values.extend_from_slice(&p[at + 16..at + 16 + value_size]);
                at += 16 + value_size;
            }
            Ok(Node::Leaf {
                value_size,
                keys,
                values,
            })
        }
        KIND_BRANCH => {
            if count == 0 || count > Node::BRANCH_CAPACITY {
                return Err(format!("branch with {count} keys"));
            }
            let mut at = PAGE_HEADER;
            let mut children = Vec::with_capacity(count + 1);
            for _ in 0..=count {
                children.push(u64_at(p, at));
                at += 8;
            }
            let mut keys = Vec::with_capacity(count);
            for _ in 0..count {
                let mut k = [0u8; 16];
                k.copy_from_slice(&p[at..at + 16]);
                keys.push(k);
                at += 16;
            }
            Ok(Node::Branch { keys, children })
        }
        other => Err(format!("not a tree node (kind {other})")),
    }
}

struct CacheEntry {
    node: Arc<Node>,
    dirty: bool,
    used: u64,
}

/// What a checkpoint writes: encoded pages, captured under the index lock.
pub struct FlushSet {
    pub pages: Vec<(PageId, Box<[u8; PAGE_SIZE]>)>,
    pub file_pages: u64,
}

/// Maps keyed by page id. Every add looks up and replaces a few cached pages, and SipHash of
/// the id was a visible share of the add path's CPU; page ids are ours, not a client's, so the
/// much cheaper foldhash is enough.
type PageMap<V> = HashMap<PageId, V, foldhash::fast::RandomState>;

/// The page file: cache, allocation and the crash-safe flush.
pub struct PageFile {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    redo_path: PathBuf,
    file: Arc<dyn File>,
    cache: PageMap<CacheEntry>,
    /// Pages handed to a checkpoint that is still writing them: served from here, not from
    /// `db.data`, until it finishes.
    flushing: PageMap<Arc<Node>>,
    free: BTreeSet<PageId>,
    /// Pages in the file (the next never-used page id).
    pub file_pages: u64,
    capacity: usize,
    clock: u64,
    pub reads: u64,
    /// How many cache entries are dirty, kept as they change: the checkpoint thread asks every
    /// tick, under the index lock, and counting a 10,000-page cache each time would be paid there.
    dirty: usize,
    /// Every page lives in memory (an index kept whole in memory and snapshotted): nothing is
    /// read from or written to `path`, nothing is evicted.
    memory_only: bool,
}

impl PageFile {
    /// Opens `db.data` (creating it if missing), first re-applying a valid `db.redo`. Returns
    /// the page file and whether it holds a checkpoint (false: new or empty).
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &std::path::Path,
        capacity: usize,
    ) -> Result<(PageFile, bool)> {
        let path = dir.join("db.data");
        let redo_path = dir.join("db.redo");
        let existed = fs.exists(&path);
        let file = fs
            .open(&path, true)
            .map_err(|e| KahaError::io(format!("opening {}", path.display()), e))?;
        if existed && fs.exists(&redo_path) {
            apply_redo(fs.as_ref(), &redo_path, file.as_ref(), &path)?;
        }
        let len = file
            .len()
            .map_err(|e| KahaError::io(format!("reading {}", path.display()), e))?;
        let pf = PageFile {
            fs,
            path,
            redo_path,
            file,
            cache: PageMap::default(),
            flushing: PageMap::default(),
            free: BTreeSet::new(),
            file_pages: len.div_ceil(PAGE_SIZE as u64).max(1),
            capacity: capacity.max(64),
            clock: 0,
            reads: 0,
            dirty: 0,
            memory_only: false,
        };
        Ok((pf, existed && len >= PAGE_SIZE as u64))
    }

    /// Pages held wholly in memory: never evicted or read back. `name` is for errors.
    pub fn in_memory(name: &std::path::Path) -> Result<PageFile> {
        let fs: Arc<dyn FileSystem> = Arc::new(store_journal::fs::SimFs::new());
        let (mut pf, _) = PageFile::open(fs, std::path::Path::new("/in-memory"), usize::MAX)?;
        pf.path = name.to_path_buf();
        pf.memory_only = true;
        Ok(pf)
    }

    /// Every page, for a snapshot; marks them clean.
    pub fn all_pages(&mut self) -> Vec<(PageId, Arc<Node>)> {
        let mut pages: Vec<(PageId, Arc<Node>)> = self
            .cache
            .iter_mut()
            .map(|(id, e)| {
                e.dirty = false;
                (*id, e.node.clone())
            })
            .collect();
        self.dirty = 0;
        pages.sort_unstable_by_key(|(id, _)| *id);
        pages
    }

    /// Loads a page as clean (from a snapshot).
    pub fn insert_clean(&mut self, id: PageId, node: Arc<Node>) {
        self.insert_entry(
            id,
            CacheEntry {
                node,
                dirty: false,
                used: 0,
            },
        );
    }

    /// Every insertion into the cache goes through here, to keep `dirty` exact.
    fn insert_entry(&mut self, id: PageId, entry: CacheEntry) {
        if entry.dirty {
            self.dirty += 1;
        }
        if let Some(old) = self.cache.insert(id, entry)
            && old.dirty
        {
            self.dirty -= 1;
        }
    }

    /// Every removal from the cache goes through here, to keep `dirty` exact.
    fn remove_entry(&mut self, id: PageId) -> Option<CacheEntry> {
        let e = self.cache.remove(&id)?;
        if e.dirty {
            self.dirty -= 1;
        }
        Some(e)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn read_raw(&self, id: PageId) -> Result<Box<[u8; PAGE_SIZE]>> {
        let mut buf = Box::new([0u8; PAGE_SIZE]);
        self.file
            .read_exact_at(&mut buf[..], id * PAGE_SIZE as u64)
            .map_err(|e| corrupt_page(&self.path, id, &format!("cannot be read: {e}")))?;
        Ok(buf)
    }

    pub fn get(&mut self, id: PageId) -> Result<Arc<Node>> {
        self.clock += 1;
        if let Some(e) = self.cache.get_mut(&id) {
            e.used = self.clock;
            return Ok(e.node.clone());
        }
        let node = match self.flushing.get(&id) {
            Some(n) => n.clone(),
            None if self.memory_only => {
                return Err(corrupt_page(&self.path, id, "not in the in-memory index"));
            }
            None => {
                let raw = self.read_raw(id)?;
                self.reads += 1;
                Arc::new(decode_node(&raw).map_err(|why| corrupt_page(&self.path, id, &why))?)
            }
        };
        self.insert_entry(
            id,
            CacheEntry {
                node: node.clone(),
                dirty: false,
                used: self.clock,
            },
        );
        self.evict();
        Ok(node)
    }

    /// The node of page `id`, to be changed where it lies in the cache, marked dirty: copied
    /// only while a checkpoint still holds it. Taking the node out of the map and putting a
    /// new `Arc` back cost two hash probes and an allocation on the one-leaf change most adds
    /// make.
    pub fn modify(&mut self, id: PageId) -> Result<&mut Node> {
        if !self.cache.contains_key(&id) {
            self.get(id)?;
        }
        self.clock += 1;
        let Some(e) = self.cache.get_mut(&id) else {
            return Err(corrupt_page(&self.path, id, "evicted while being changed"));
        };
        if !e.dirty {
            e.dirty = true;
            self.dirty += 1;
        }
        e.used = self.clock;
        Ok(Arc::make_mut(&mut e.node))
    }

    pub fn put(&mut self, id: PageId, node: Node) {
        self.clock += 1;
        self.insert_entry(
            id,
            CacheEntry {
                node: Arc::new(node),
                dirty: true,
                used: self.clock,
            },
        );
    }

    pub fn allocate(&mut self) -> PageId {
        match self.free.pop_first() {
            Some(id) => id,
            None => {
                let id = self.file_pages;
                self.file_pages += 1;
                id
            }
        }
    }

    pub fn release(&mut self, id: PageId) {
        self.remove_entry(id);
        self.free.insert(id);
    }

    pub fn free_pages(&self) -> &BTreeSet<PageId> {
        &self.free
    }

    pub fn set_free_pages(&mut self, free: BTreeSet<PageId>) {
        self.free = free;
    }

    pub fn dirty_pages(&self) -> usize {
        self.dirty
    }

    /// The dirty count by walking the cache, for tests of the kept count.
    #[cfg(test)]
    pub fn count_dirty(&self) -> usize {
        self.cache.values().filter(|e| e.dirty).count()
    }

    /// Drops the least recently used clean pages once the cache is over capacity. Dirty pages
    /// stay until a checkpoint writes them.
    fn evict(&mut self) {
        if self.memory_only || self.cache.len() <= self.capacity {
            return;
        }
        let mut clean: Vec<(u64, PageId)> = self
            .cache
            .iter()
            .filter(|(_, e)| !e.dirty)
            .map(|(id, e)| (e.used, *id))
            .collect();
        clean.sort_unstable();
        let target = self.capacity * 9 / 10;
        let excess = self.cache.len().saturating_sub(target);
        for (_, id) in clean.into_iter().take(excess) {
            self.cache.remove(&id);
        }
    }

    /// Captures every dirty page plus `extra` (metadata and catalog pages) for a checkpoint,
    /// marks them clean, and keeps them readable until [`PageFile::flush_done`].
    pub fn take_flush_set(&mut self, extra: Vec<(PageId, Box<[u8; PAGE_SIZE]>)>) -> FlushSet {
        let mut pages = extra;
        for (id, e) in self.cache.iter_mut().filter(|(_, e)| e.dirty) {
            e.dirty = false;
            pages.push((*id, Box::new(encode_node(&e.node))));
            self.flushing.insert(*id, e.node.clone());
        }
        self.dirty = 0;
        pages.sort_unstable_by_key(|(id, _)| *id);
        FlushSet {
            pages,
            file_pages: self.file_pages,
        }
    }

    /// The checkpoint wrote its pages: stop serving them from the flush set, and trim the
    /// cache, since the pages it wrote are clean (evictable) now.
    pub fn flush_done(&mut self) {
        self.flushing.clear();
        self.evict();
    }

    /// The I/O half of a checkpoint, run without the index lock: redo first, then in place.
    pub fn write_flush_set(
        fs: &dyn FileSystem,
        redo_path: &std::path::Path,
        data: &dyn File,
        data_path: &std::path::Path,
        set: &FlushSet,
    ) -> Result<()> {
        let mut body = Vec::with_capacity(set.pages.len() * (PAGE_SIZE + 8));
        for (id, page) in &set.pages {
            body.extend_from_slice(&id.to_le_bytes());
            body.extend_from_slice(&page[..]);
        }
        let mut redo = Vec::with_capacity(body.len() + 24);
        redo.extend_from_slice(REDO_MAGIC);
        redo.extend_from_slice(&(set.pages.len() as u64).to_le_bytes());
        redo.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        redo.extend_from_slice(&[0u8; 4]);
        redo.extend_from_slice(&body);
        let io = |what: &str, p: &std::path::Path| format!("{what} {}", p.display());
        let new_redo = !fs.exists(redo_path);
        let rf = fs
            .open(redo_path, true)
            .map_err(|e| KahaError::io(io("opening", redo_path), e))?;
        rf.write_all_at(&redo, 0)
            .map_err(|e| KahaError::io(io("writing", redo_path), e))?;
        rf.set_len(redo.len() as u64)
            .map_err(|e| KahaError::io(io("truncating", redo_path), e))?;
        rf.sync_data()
            .map_err(|e| KahaError::io(io("syncing", redo_path), e))?;
        if new_redo && let Some(dir) = redo_path.parent() {
            // The first checkpoint creates db.redo (and db.data is new too): make both names
            // durable, or a power loss could leave db.data without the redo that completes it.
            fs.sync_dir(dir)
                .map_err(|e| KahaError::io(io("syncing directory", dir), e))?;
        }
        for (id, page) in &set.pages {
            data.write_all_at(&page[..], id * PAGE_SIZE as u64)
                .map_err(|e| KahaError::io(io("writing", data_path), e))?;
        }
        let want = set.file_pages * PAGE_SIZE as u64;
        if data
            .len()
            .map_err(|e| KahaError::io(io("reading", data_path), e))?
            < want
        {
            data.set_len(want)
                .map_err(|e| KahaError::io(io("extending", data_path), e))?;
        }
        data.sync_data()
            .map_err(|e| KahaError::io(io("syncing", data_path), e))?;
        Ok(())
    }

    pub fn io_handles(&self) -> (Arc<dyn FileSystem>, PathBuf, Arc<dyn File>, PathBuf) {
        (
            self.fs.clone(),
            self.redo_path.clone(),
            self.file.clone(),
            self.path.clone(),
        )
    }

    /// Reads the metadata page's payload, if it is a valid metadata page.
    pub fn read_meta(&self) -> Result<Vec<u8>> {
        let raw = self.read_raw(META_PAGE)?;
        if u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) != crc32fast::hash(&raw[4..])
            || raw[4] != KIND_META
        {
            return Err(corrupt_page(
                &self.path,
                META_PAGE,
                "metadata page is invalid",
            ));
        }
        let len = usize::from(u16_at(&raw[..], 6));
        if len > PAGE_SIZE - PAGE_HEADER {
            return Err(corrupt_page(
                &self.path,
                META_PAGE,
                "metadata length is impossible",
            ));
        }
        Ok(raw[PAGE_HEADER..PAGE_HEADER + len].to_vec())
    }

    /// Reads a chained blob starting at `first`.
    pub fn read_blob(&self, first: PageId, len: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        let mut next = first;
        let mut seen = 0u64;
        while out.len() < len {
            if next == META_PAGE || seen > self.file_pages {
                return Err(corrupt_page(&self.path, next, "catalog chain is broken"));
            }
            let raw = self.read_raw(next)?;
            if u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) != crc32fast::hash(&raw[4..])
                || raw[4] != KIND_BLOB
            {
                return Err(corrupt_page(&self.path, next, "catalog page is invalid"));
            }
            let n = usize::from(u16_at(&raw[..], 6)).min(PAGE_SIZE - PAGE_HEADER);
            out.extend_from_slice(&raw[PAGE_HEADER..PAGE_HEADER + n]);
            next = u64_at(&raw[..], 8);
            seen += 1;
        }
        out.truncate(len);
        Ok(out)
    }
}

pub fn meta_page(payload: &[u8]) -> Box<[u8; PAGE_SIZE]> {
    let mut p = Box::new([0u8; PAGE_SIZE]);
    p[4] = KIND_META;
    let n = payload.len().min(PAGE_SIZE - PAGE_HEADER);
    p[6..8].copy_from_slice(&(n as u16).to_le_bytes());
    p[PAGE_HEADER..PAGE_HEADER + n].copy_from_slice(&payload[..n]);
    seal(&mut p);
    p
}

/// Splits `blob` over the given pages (chained in order).
pub fn blob_pages(blob: &[u8], ids: &[PageId]) -> Vec<(PageId, Box<[u8; PAGE_SIZE]>)> {
    let chunk = PAGE_SIZE - PAGE_HEADER;
    let mut out = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let part = &blob[(i * chunk).min(blob.len())..((i + 1) * chunk).min(blob.len())];
        let mut p = Box::new([0u8; PAGE_SIZE]);
        p[4] = KIND_BLOB;
        p[6..8].copy_from_slice(&(part.len() as u16).to_le_bytes());
        let next = ids.get(i + 1).copied().unwrap_or(META_PAGE);
        p[8..16].copy_from_slice(&next.to_le_bytes());
        p[PAGE_HEADER..PAGE_HEADER + part.len()].copy_from_slice(part);
        seal(&mut p);
        out.push((*id, p));
    }
    out
}

pub fn blob_page_count(len: usize) -> usize {
    len.div_ceil(PAGE_SIZE - PAGE_HEADER).max(1)
}

/// Re-applies a complete `db.redo` to `db.data`. A redo whose checksum fails is from a
/// checkpoint that never reached its in-place writes and is ignored.
fn apply_redo(
    fs: &dyn FileSystem,
    redo_path: &std::path::Path,
    data: &dyn File,
    data_path: &std::path::Path,
) -> Result<()> {
    let rf = fs
        .open(redo_path, false)
        .map_err(|e| KahaError::io(format!("opening {}", redo_path.display()), e))?;
    let len = rf
        .len()
        .map_err(|e| KahaError::io(format!("reading {}", redo_path.display()), e))?
        as usize;
    if len < 24 {
        return Ok(());
    }
    let mut buf = vec![0u8; len];
    rf.read_exact_at(&mut buf, 0)
        .map_err(|e| KahaError::io(format!("reading {}", redo_path.display()), e))?;
    let count = u64_at(&buf, 8) as usize;
    let crc = u32::from_le_bytes([buf[16], buf[17], buf[18], buf[19]]);
    let body = &buf[24..];
    if &buf[..8] != REDO_MAGIC
        || body.len() != count.saturating_mul(PAGE_SIZE + 8)
        || crc32fast::hash(body) != crc
    {
        tracing::warn!(file = %redo_path.display(), "ignoring an incomplete db.redo from an interrupted checkpoint");
        return Ok(());
    }
    for entry in body.chunks_exact(PAGE_SIZE + 8) {
        let id = u64_at(entry, 0);
        data.write_all_at(&entry[8..], id * PAGE_SIZE as u64)
            .map_err(|e| KahaError::io(format!("writing {}", data_path.display()), e))?;
    }
    data.sync_data()
        .map_err(|e| KahaError::io(format!("syncing {}", data_path.display()), e))?;
    Ok(())
}
