//! The file-system seam. Every byte the journal (and the engines built on it) reads or writes
//! goes through [`FileSystem`], so tests can swap the real one for [`SimFs`], which fails the
//! Nth write or fsync, counts fsyncs, and simulates power loss by keeping what was written apart
//! from what was made durable.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::mmap::{SealedMap, SealedProof};

/// An open file: positioned reads and writes, and `fdatasync`.
pub trait File: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every write so far durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Reserves blocks for the first `len` bytes, reading as zeros and already written, so later
    /// writes there do not allocate (and `fdatasync` after them has no allocation or extent
    /// metadata to write).
    fn allocate(&self, len: u64) -> io::Result<()> {
        let from = self.len()?;
        write_zeros(self, from, len)
    }

    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Maps the whole file read-only, where the file system can: the real one can; [`SimFs`]
    /// cannot, so tests on it read through [`File::read_at`]. Only for sealed data files, which
    /// the proof says this is (see [`crate::mmap`]).
    fn map_sealed(&self, _sealed: SealedProof) -> io::Result<Option<SealedMap>> {
        Ok(None)
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the end of the file",
                ));
            }
            done += n;
        }
        Ok(())
    }
}

/// Directory operations and opening files.
pub trait FileSystem: Send + Sync + 'static {
    /// Opens a file for reading and writing, creating it when `create` is true.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn File>>;
    /// Opens an existing file for writes that bypass the page cache (`O_DIRECT`), if the file
    /// system takes them with offsets, lengths and memory aligned to [`DIRECT_IO_ALIGN`];
    /// `None` where it does not (the caller then writes through [`FileSystem::open`]'s handle).
    fn open_direct(&self, _path: &Path) -> io::Result<Option<Arc<dyn File>>> {
        Ok(None)
    }
    fn remove(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Names of the files directly in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes creations, removals and renames in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    fn is_dir(&self, path: &Path) -> bool;

    /// Creates `dir` and every missing parent, and makes each entry durable by syncing the
    /// directory that holds it: a directory is a name in its parent, which a power loss takes
    /// with it unless the parent was synced — and with the directory everything in it, synced
    /// or not. The parent of `dir` is synced even when `dir` exists, since an earlier run may
    /// have created it and lost the power before syncing.
    fn create_dir_durable(&self, dir: &Path) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !self.is_dir(d)) {
            missing.push(d.to_path_buf());
            at = d.parent();
        }
        self.create_dir_all(dir)?;
        if missing.is_empty() {
            missing.push(dir.to_path_buf());
        }
        for d in missing.iter().rev() {
            if let Some(parent) = d.parent() {
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                self.sync_dir(parent)?;
            }
        }
        Ok(())
    }
}

/// The alignment of offsets and lengths that [`FileSystem::open_direct`]'s handles need (a disk
/// sector); buffers must be page-aligned.
pub const DIRECT_IO_ALIGN: u64 = 512;

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealFile(std::fs::File);

impl File for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(&self.0, buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(&self.0, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn map_sealed(&self, sealed: SealedProof) -> io::Result<Option<SealedMap>> {
        SealedMap::new(&self.0, sealed)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        // Reserve the blocks in one call (contiguous, and a full disk fails here rather than in
        // the middle of a batch), then write zeros over them: fallocate leaves its extents
        // "unwritten", and every fdatasync after the first write into one must also convert it
        // (a cost measured in the README's Benchmarks section). This is ActiveMQ's
        // `preallocationStrategy=zeros`. The zeros are written by the journal's helper thread,
        // ahead of need.
        rustix::fs::fallocate(&self.0, rustix::fs::FallocateFlags::empty(), 0, len)
            .map_err(io::Error::from)?;
        write_zeros(self, 0, len)
    }
}

/// Writes zeros over `[from, to)` in 1 MiB pieces.
fn write_zeros<F: File + ?Sized>(f: &F, from: u64, to: u64) -> io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0u8; CHUNK.min(to.saturating_sub(from)) as usize];
    let mut at = from;
    while at < to {
        let n = CHUNK.min(to - at) as usize;
        f.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

impl FileSystem for RealFs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn File>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(RealFile(f)))
    }
    fn open_direct(&self, path: &Path) -> io::Result<Option<Arc<dyn File>>> {
        use rustix::fs::{AtFlags, CWD, OFlags, StatxFlags, statx};
        use std::os::unix::fs::OpenOptionsExt;
        // Only where the kernel says which alignment direct I/O needs (Linux 6.1+) and it is
        // at most a sector and a page: tmpfs, 4Kn disks and older kernels write buffered.
        let Ok(st) = statx(CWD, path, AtFlags::empty(), StatxFlags::DIOALIGN) else {
            return Ok(None);
        };
        let known = st.stx_mask & StatxFlags::DIOALIGN.bits() != 0;
        let offset_align = u64::from(st.stx_dio_offset_align);
        let mem_align = u64::from(st.stx_dio_mem_align);
        if !known || offset_align == 0 || offset_align > DIRECT_IO_ALIGN || mem_align > 4096 {
            return Ok(None);
        }
        match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(OFlags::DIRECT.bits() as i32)
            .open(path)
        {
            Ok(f) => Ok(Some(Arc::new(RealFile(f)))),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(names)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
}

/// What survives a simulated power loss of [`SimFs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// Only what was fsynced (and directory entries whose directory was fsynced).
    LoseUnsynced,
    /// Durable bytes plus the first `n` bytes of the most recent unsynced write: a torn write.
    TearLastWrite(usize),
    /// Everything written survives (the OS flushed its cache just before the power went).
    KeepUnsynced,
}

#[derive(Debug, Default, Clone)]
struct SimFile {
    written: Vec<u8>,
    durable: Vec<u8>,
    /// The most recent write not yet made durable: (offset, bytes).
    last_unsynced: Option<(u64, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct SimState {
    /// The namespace as the running program sees it.
    files: BTreeMap<PathBuf, Arc<Mutex<SimFile>>>,
    /// The namespace as it would be after a power loss: entries made durable by `sync_dir`.
    durable_names: BTreeMap<PathBuf, Arc<Mutex<SimFile>>>,
    /// Directories the program created (by `create_dir_all`). Any other directory a path
    /// names is taken to have been there all along, and to survive every power loss.
    dirs: std::collections::BTreeSet<PathBuf>,
    /// The created directories whose entry in their parent was made durable by `sync_dir`.
    durable_dirs: std::collections::BTreeSet<PathBuf>,
}

impl SimState {
    /// Whether `dir`'s entry, and every created directory above it, survives a power loss.
    fn dir_survives(&self, dir: &Path) -> bool {
        dir.ancestors()
            .all(|d| !self.dirs.contains(d) || self.durable_dirs.contains(d))
    }
}

/// Fault-injection plan and counters shared by a [`SimFs`] and its files.
#[derive(Debug, Default)]
pub struct SimControl {
    writes: AtomicU64,
    fsyncs: AtomicU64,
    /// Fail the write whose 1-based number is this (0 = never).
    fail_write_at: AtomicU64,
    /// Fail the fsync (file or directory) whose 1-based number is this (0 = never).
    fail_fsync_at: AtomicU64,
    /// Fail every write once this many bytes have been written in total (0 = never): a full disk.
    disk_full_after: AtomicU64,
    bytes_written: AtomicU64,
    /// Every fsync takes at least this long (microseconds): a slow disk.
    fsync_delay_micros: AtomicU64,
}

impl SimControl {
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::SeqCst)
    }
    /// Makes the `n`th write from now fail (1 = the next one).
    pub fn fail_write_in(&self, n: u64) {
        self.fail_write_at
            .store(self.writes() + n, Ordering::SeqCst);
    }
    /// Makes the `n`th fsync from now fail (1 = the next one).
    pub fn fail_fsync_in(&self, n: u64) {
        self.fail_fsync_at
            .store(self.fsyncs() + n, Ordering::SeqCst);
    }
    /// Fails writes with ENOSPC once `bytes` more have been written; 0 lifts the limit.
    pub fn set_disk_full_after(&self, bytes: u64) {
        let limit = if bytes == 0 {
            0
        } else {
            self.bytes_written.load(Ordering::SeqCst) + bytes
        };
        self.disk_full_after.store(limit, Ordering::SeqCst);
    }
    /// Makes every fsync from now take at least `delay` (a slow disk); zero for none.
    pub fn set_fsync_delay(&self, delay: std::time::Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.fsync_delay_micros.store(micros, Ordering::SeqCst);
    }
    pub fn clear_faults(&self) {
        self.fail_write_at.store(0, Ordering::SeqCst);
        self.fail_fsync_at.store(0, Ordering::SeqCst);
        self.disk_full_after.store(0, Ordering::SeqCst);
    }

    fn on_write(&self, len: usize) -> io::Result<()> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_write_at.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected write failure"));
        }
        let limit = self.disk_full_after.load(Ordering::SeqCst);
        let total = self.bytes_written.fetch_add(len as u64, Ordering::SeqCst) + len as u64;
        if limit != 0 && total > limit {
            self.bytes_written.fetch_sub(len as u64, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }

    fn on_fsync(&self) -> io::Result<()> {
        let delay = self.fsync_delay_micros.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_micros(delay));
        }
        let n = self.fsyncs.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_fsync_at.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(())
    }
}

/// An in-memory file system for crash and fault tests. Cloning shares the same files.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<SimState>>,
    control: Arc<SimControl>,
}

struct SimHandle {
    file: Arc<Mutex<SimFile>>,
    control: Arc<SimControl>,
}

impl File for SimHandle {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let f = self.file.lock();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(f.written.len());
        let n = buf.len().min(f.written.len() - start);
        buf[..n].copy_from_slice(&f.written[start..start + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.control.on_write(buf.len())?;
        let mut f = self.file.lock();
        let start = usize::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
        let end = start + buf.len();
        if f.written.len() < end {
            f.written.resize(end, 0);
        }
        f.written[start..end].copy_from_slice(buf);
        f.last_unsynced = Some((offset, buf.to_vec()));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.control.on_fsync()?;
        let mut f = self.file.lock();
        f.durable = f.written.clone();
        f.last_unsynced = None;
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.lock().written.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("length too large"))?;
        self.file.lock().written.resize(len, 0);
        Ok(())
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist", path.display()),
    )
}

impl SimFs {
    pub fn new() -> Self {
        SimFs::default()
    }

    /// The fault plan and counters.
    pub fn control(&self) -> &Arc<SimControl> {
        &self.control
    }

    /// Simulates a power loss: afterwards the file system holds only what survives `crash`:
    /// a file whose name was made durable, in a directory whose own entry was (and so on up),
    /// with the bytes `crash` says.
    /// Handles opened before keep pointing at the old contents; reopen everything.
    pub fn power_loss(&self, crash: Crash) {
        let mut st = self.state.lock();
        let surviving: std::collections::BTreeSet<PathBuf> = st
            .dirs
            .iter()
            .filter(|d| st.dir_survives(d))
            .cloned()
            .collect();
        let mut files = BTreeMap::new();
        for (path, file) in &st.durable_names {
            if !path.parent().is_none_or(|d| st.dir_survives(d)) {
                continue;
            }
            let old = file.lock();
            let mut contents = match crash {
                Crash::KeepUnsynced => old.written.clone(),
                _ => old.durable.clone(),
            };
            if let (Crash::TearLastWrite(n), Some((offset, bytes))) = (crash, &old.last_unsynced) {
                let start = *offset as usize;
                let kept = &bytes[..n.min(bytes.len())];
                if contents.len() < start + kept.len() {
                    contents.resize(start + kept.len(), 0);
                }
                contents[start..start + kept.len()].copy_from_slice(kept);
            }
            let survivor = SimFile {
                written: contents.clone(),
                durable: contents,
                last_unsynced: None,
            };
            files.insert(path.clone(), Arc::new(Mutex::new(survivor)));
        }
        st.durable_names = files.clone();
        st.files = files;
        st.dirs = surviving.clone();
        st.durable_dirs = surviving;
    }

    /// Whether `path` is a directory: one the program created, the root, or one some file or
    /// created directory lies in (a directory that was there all along).
    fn is_dir_in(&self, st: &SimState, path: &Path) -> bool {
        path.parent().is_none()
            || st.dirs.contains(path)
            || st.dirs.iter().any(|d| d.starts_with(path) && d != path)
            || st.files.keys().any(|f| f.starts_with(path) && f != path)
    }

    /// The current bytes of a file, for tests that corrupt files on purpose.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.state
            .lock()
            .files
            .get(path)
            .map(|f| f.lock().written.clone())
    }

    /// Replaces a file's bytes (written and durable) in place.
    pub fn set_contents(&self, path: &Path, bytes: Vec<u8>) -> io::Result<()> {
        let st = self.state.lock();
        let f = st.files.get(path).ok_or_else(|| not_found(path))?;
        let mut f = f.lock();
        f.written = bytes.clone();
        f.durable = bytes;
        Ok(())
    }
}

impl FileSystem for SimFs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn File>> {
        let mut st = self.state.lock();
        let file = match st.files.get(path) {
            Some(f) => f.clone(),
            None if create => {
                let f = Arc::new(Mutex::new(SimFile::default()));
                st.files.insert(path.to_path_buf(), f.clone());
                f
            }
            None => return Err(not_found(path)),
        };
        Ok(Arc::new(SimHandle {
            file,
            control: self.control.clone(),
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.state
            .lock()
            .files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        let f = st.files.remove(from).ok_or_else(|| not_found(from))?;
        st.files.insert(to.to_path_buf(), f);
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        Ok(self
            .state
            .lock()
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        // Top down, so that a directory created here is not taken for one that was there.
        let ancestors: Vec<&Path> = dir.ancestors().collect();
        for d in ancestors.into_iter().rev() {
            if d.parent().is_none() || d.as_os_str().is_empty() {
                // The root (or the current directory) was there before.
                continue;
            }
            if !self.is_dir_in(&st, d) {
                st.dirs.insert(d.to_path_buf());
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.control.on_fsync()?;
        let mut st = self.state.lock();
        let st = &mut *st;
        st.durable_names.retain(|p, _| p.parent() != Some(dir));
        for (p, f) in &st.files {
            if p.parent() == Some(dir) {
                st.durable_names.insert(p.clone(), f.clone());
            }
        }
        for d in &st.dirs {
            if d.parent() == Some(dir) {
                st.durable_dirs.insert(d.clone());
            }
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.state.lock();
        st.files.contains_key(path) || st.dirs.contains(path)
    }

    fn is_dir(&self, path: &Path) -> bool {
        let st = self.state.lock();
        self.is_dir_in(&st, path)
    }
}
