//! Leader writes: under sync `always`, the append that completes the group the writer thread is
//! waiting for writes and fsyncs that group on its own thread when its completion is awaited.
//! These tests pin where that may happen (a plain thread, a multi-threaded runtime's worker;
//! never a single-threaded runtime, never while the disk is slow), and that a group taken that
//! way is written whatever its appender does: drops the completion, reads the record first, or
//! closes the journal. A file system wrapper records the name of the thread of every fsync.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use store_journal::fs::{Crash, File, FileSystem, SimFs};
use store_journal::{Journal, JournalConfig, Location, SyncPolicy};

/// [`SimFs`], recording which thread ran each fsync of a data file, optionally slowed down.
#[derive(Clone)]
struct Recording {
    inner: SimFs,
    syncs: Arc<Mutex<Vec<String>>>,
    sync_delay: Arc<Mutex<Duration>>,
}

struct RecordingFile {
    inner: Arc<dyn File>,
    syncs: Arc<Mutex<Vec<String>>>,
    sync_delay: Arc<Mutex<Duration>>,
}

impl File for RecordingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        let delay = *self.sync_delay.lock();
        std::thread::sleep(delay);
        self.syncs.lock().push(this_thread());
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.inner.allocate(len)
    }
}

impl FileSystem for Recording {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn File>> {
        Ok(Arc::new(RecordingFile {
            inner: self.inner.open(path, create)?,
            syncs: self.syncs.clone(),
            sync_delay: self.sync_delay.clone(),
        }))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.inner.is_dir(path)
    }
}

impl Recording {
    fn new() -> Recording {
        Recording {
            inner: SimFs::new(),
            syncs: Arc::default(),
            sync_delay: Arc::default(),
        }
    }

    /// Forgets the fsyncs so far (opening and recovery do some).
    fn reset(&self) {
        self.syncs.lock().clear();
    }

    /// How many fsyncs ran on a thread named `name`, and how many in all.
    fn syncs_on(&self, name: &str) -> (usize, usize) {
        let s = self.syncs.lock();
        (s.iter().filter(|n| *n == name).count(), s.len())
    }
}

fn config(leader_writes: bool) -> JournalConfig {
    let mut c = JournalConfig::new("/j", "db-", ".log");
    c.max_file_length = 64 * 1024;
    c.sync = SyncPolicy::Always;
    c.preallocate = false;
    c.leader_writes = leader_writes;
    // No stalls but the ones a test makes: a machine busy with other work could otherwise
    // stretch an in-memory fsync past 20 ms and turn leader writes off for the rest of a test.
    c.lead_stall = Duration::from_secs(3600);
    c
}

/// Leader writes, with a write+fsync over 20 ms a stall (the default), and appenders kept off
/// the disk for `cool_down` after one.
fn config_stalling(cool_down: Duration) -> JournalConfig {
    let mut c = config(true);
    c.lead_stall = Duration::from_millis(20);
    c.lead_cool_down = cool_down;
    c
}

/// Opens the journal and writes a first record, so that the data file exists (creating it
/// fsyncs it too) before the fsyncs a test counts.
fn open(fs: &Recording, c: &JournalConfig) -> Journal {
    let j = Journal::open(c.clone(), Arc::new(fs.clone())).expect("open");
    j.append(&[FIRST], false)
        .unwrap()
        .completion
        .wait()
        .unwrap();
    fs.reset();
    j
}

const FIRST: &[u8] = b"first";

fn replayed(j: &Journal) -> Vec<Vec<u8>> {
    j.replay(Location::default())
        .map(|r| r.expect("replay").1)
        .collect()
}

fn this_thread() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_string()
}

/// Waits for the writer thread, which has just answered a group, to go back to sleep: only an
/// append the sleeping writer thread waits for is one that leads. A condition, not a pause, so
/// a machine busy with other work changes how long it takes, not what the test sees.
fn settle(j: &Journal) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !j.writers_idle() {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer thread never went idle"
        );
        std::thread::yield_now();
    }
}

/// Appends `n` records one at a time from a thread named `name`, waiting for each.
fn append_from_thread(j: &Arc<Journal>, name: &str, n: u32) {
    let j = j.clone();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            for i in 0..n {
                settle(&j);
                let a = j.append(&[format!("r{i}").as_bytes()], false).unwrap();
                a.completion.wait().unwrap();
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn a_lone_appender_on_a_plain_thread_writes_its_own_groups() {
    let fs = Recording::new();
    let j = Arc::new(open(&fs, &config(true)));
    append_from_thread(&j, "appender", 10);
    let (mine, all) = fs.syncs_on("appender");
    assert_eq!(all, 10, "one fsync per append");
    assert!(mine > 0, "no group was written by its appender");
    // And nothing is lost that way.
    fs.inner.power_loss(Crash::LoseUnsynced);
    drop(j);
    let j = open(&fs, &config(true));
    assert_eq!(replayed(&j).len(), 1 + 10 + 1);
}

#[test]
fn without_leader_writes_only_the_writer_thread_fsyncs() {
    let fs = Recording::new();
    let j = Arc::new(open(&fs, &config(false)));
    append_from_thread(&j, "appender", 10);
    assert_eq!(fs.syncs_on("journal-writer"), (10, 10));
}

#[test]
fn a_slow_disk_keeps_the_io_on_the_writer_thread() {
    let fs = Recording::new();
    // Longer than a stall (20 ms): after the first slow group, appenders stop leading.
    *fs.sync_delay.lock() = Duration::from_millis(25);
    let j = Arc::new(open(&fs, &config_stalling(Duration::from_secs(1))));
    append_from_thread(&j, "appender", 8);
    let (mine, all) = fs.syncs_on("appender");
    assert_eq!(all, 8);
    assert!(
        mine <= 1,
        "{mine} groups written by the appender on a slow disk"
    );
}

#[test]
fn one_slow_fsync_keeps_the_io_on_the_writer_thread_for_a_while() {
    let fs = Recording::new();
    // A cool-down no run outlasts, however slowly the machine runs the eight appends.
    let j = Arc::new(open(&fs, &config_stalling(Duration::from_secs(3600))));
    *fs.sync_delay.lock() = Duration::from_millis(25);
    append_from_thread(&j, "slow", 1);
    // The disk is fast again, but for the cool-down after a stall the appenders leave it alone.
    *fs.sync_delay.lock() = Duration::ZERO;
    append_from_thread(&j, "appender", 8);
    assert_eq!(fs.syncs_on("appender"), (0, 9));
}

#[test]
fn a_group_is_written_even_if_its_appender_drops_the_completion() {
    let fs = Recording::new();
    let j = open(&fs, &config(true));
    settle(&j);
    let a = j.append(&[b"dropped"], false).unwrap();
    drop(a);
    // Nothing waits on it, yet a sync (which covers everything appended before it) returns.
    j.sync().wait().unwrap();
    fs.inner.power_loss(Crash::LoseUnsynced);
    drop(j);
    let j = open(&fs, &config(true));
    assert_eq!(replayed(&j)[..2], [FIRST.to_vec(), b"dropped".to_vec()]);
}

#[test]
fn reading_a_record_whose_group_nobody_started_writes_it() {
    let fs = Recording::new();
    let j = open(&fs, &config(true));
    settle(&j);
    let a = j.append(&[b"read me"], false).unwrap();
    // The completion is held, not awaited: the read must not wait for it, and writes it.
    assert_eq!(j.read(a.locations[0]).unwrap(), b"read me".to_vec());
    assert_eq!(fs.syncs_on(this_thread().as_str()), (1, 1));
    a.completion.wait().unwrap();
}

#[test]
fn closing_writes_a_group_nobody_started() {
    let fs = Recording::new();
    let j = open(&fs, &config(true));
    settle(&j);
    let a = j.append(&[b"before close"], false).unwrap();
    j.close().unwrap();
    assert_eq!(
        fs.syncs_on(this_thread().as_str()).0,
        1,
        "close wrote the group"
    );
    a.completion.wait().unwrap();
    fs.inner.power_loss(Crash::LoseUnsynced);
    drop(j);
    let j = open(&fs, &config(true));
    assert_eq!(
        replayed(&j)[..2],
        [FIRST.to_vec(), b"before close".to_vec()]
    );
}

async fn append_awaiting(j: &Journal, n: u32) {
    for i in 0..n {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !j.writers_idle() {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer thread never went idle"
            );
            tokio::task::yield_now().await;
        }
        let a = j.append(&[format!("r{i}").as_bytes()], false).unwrap();
        a.completion.await.unwrap();
    }
}

#[test]
fn a_single_threaded_runtime_never_blocks_on_the_disk() {
    let fs = Recording::new();
    let j = open(&fs, &config(true));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(append_awaiting(&j, 10));
    assert_eq!(fs.syncs_on("journal-writer"), (10, 10));
}

#[test]
fn a_multi_threaded_runtime_worker_writes_the_groups_it_completes() {
    let fs = Recording::new();
    let j = Arc::new(open(&fs, &config(true)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rt-worker")
        .enable_time()
        .build()
        .unwrap();
    let jj = j.clone();
    rt.block_on(async move { tokio::spawn(async move { append_awaiting(&jj, 10).await }).await })
        .unwrap();
    let (mine, all) = fs.syncs_on("rt-worker");
    assert_eq!(all, 10);
    assert!(mine > 0, "no group was written by a runtime worker");
}
