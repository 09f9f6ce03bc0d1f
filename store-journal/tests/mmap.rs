//! Reads of sealed data files through read-only maps (`map_replay`, `map_reads`), on real files:
//! they return the same bytes as `pread`; maps are taken only of sealed files; deleting files
//! while readers hold maps of them neither crashes (SIGBUS) nor returns wrong bytes, and drops
//! the journal's own maps so the space is freed; and, as the control that makes the last claim
//! testable, truncating a mapped file (which the journal never does) does kill the process with
//! SIGBUS, which the parent test sees.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use store_journal::fs::RealFs;
use store_journal::{Journal, JournalConfig, JournalError, Location, SyncPolicy};

fn config(dir: &Path, map: bool) -> JournalConfig {
    let mut c = JournalConfig::new(dir, "db-", ".log");
    c.max_file_length = 64 * 1024;
    c.max_write_batch_size = 16 * 1024;
    c.sync = SyncPolicy::Never;
    c.map_replay = map;
    c.map_reads = map;
    c
}

/// Record `i`'s bytes: its number, then filler that depends on it, so a record read from the
/// wrong place (or from reused space) cannot pass for the right one.
fn record(i: u64) -> Vec<u8> {
    let mut r = format!("record {i} ").into_bytes();
    let len = 60 + (i as usize * 53) % 1400;
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while r.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.push(x as u8);
    }
    r
}

fn append_range(j: &Journal, from: u64, to: u64) -> Vec<(Location, u64)> {
    (from..to)
        .map(|i| {
            let a = j.append(&[&record(i)], false).expect("append");
            a.completion.wait().expect("completion");
            (a.locations[0], i)
        })
        .collect()
}

/// The lines of /proc/self/maps that name a file in `dir`.
fn maps_of(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .filter(|l| l.contains(&dir))
        .map(str::to_owned)
        .collect()
}

fn data_file(dir: &Path, id: u32) -> std::path::PathBuf {
    dir.join(format!("db-{id}.log"))
}

#[test]
fn maps_return_the_same_records_as_reads_and_only_sealed_files_are_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let written = {
        let j = Journal::open(config(dir.path(), false), Arc::new(RealFs)).unwrap();
        let w = append_range(&j, 0, 400);
        j.close().unwrap();
        w
    };
    let replayed = |map: bool| -> Vec<(Location, Vec<u8>)> {
        let j = Journal::open(config(dir.path(), map), Arc::new(RealFs)).unwrap();
        let all = j
            .replay(Location::default())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        j.close().unwrap();
        all
    };
    let plain = replayed(false);
    let mapped = replayed(true);
    assert_eq!(plain.len(), 400);
    assert_eq!(
        plain, mapped,
        "replay through maps returns what reads return"
    );
    for ((loc, bytes), (wloc, i)) in mapped.iter().zip(&written) {
        assert_eq!((loc, bytes), (wloc, &record(*i)));
    }
    // A replay maps one file at a time and keeps none once done.
    assert!(maps_of(dir.path()).is_empty());

    let j = Journal::open(config(dir.path(), true), Arc::new(RealFs)).unwrap();
    let tail = j.tail_file();
    assert!(tail > 3, "the records span several files");
    for (loc, i) in &written {
        assert_eq!(j.read(*loc).unwrap(), record(*i), "read at {loc}");
    }
    let mapped_files: Vec<String> = maps_of(dir.path());
    for id in j.file_ids() {
        let name = data_file(dir.path(), id).to_string_lossy().into_owned();
        let is_mapped = mapped_files.iter().any(|l| l.ends_with(&name));
        assert_eq!(
            is_mapped,
            id < tail,
            "file {id} (tail {tail}): sealed files are mapped for reads, the tail is not"
        );
    }
    // Appending moves the tail on; the file it left becomes sealed and mappable, and what was
    // read from the tail before still reads the same.
    let more = append_range(&j, 400, 500);
    for (loc, i) in written.iter().chain(&more) {
        assert_eq!(j.read(*loc).unwrap(), record(*i), "read at {loc}");
    }
    j.close().unwrap();
    assert!(
        maps_of(dir.path()).is_empty(),
        "closing drops every map: {:?}",
        maps_of(dir.path())
    );
}

#[test]
fn deleting_files_while_readers_hold_maps_returns_no_wrong_bytes_and_frees_them() {
    let dir = tempfile::tempdir().unwrap();
    let j = Arc::new(Journal::open(config(dir.path(), true), Arc::new(RealFs)).unwrap());
    let first = append_range(&j, 0, 600);
    let by_file: BTreeMap<u32, Vec<(Location, u64)>> =
        first.iter().fold(BTreeMap::new(), |mut m, (loc, i)| {
            m.entry(loc.file).or_default().push((*loc, *i));
            m
        });
    assert!(by_file.len() > 5, "several sealed files to delete");

    // A replay in the middle of file 1 holds its map; deleting the file under it changes
    // nothing it reads.
    let mut replay = j.replay(Location::default());
    let (loc, bytes) = replay.next().unwrap().unwrap();
    assert_eq!((loc, bytes), (first[0].0, record(0)));
    j.delete_files(&[first[0].0.file]).unwrap();
    assert!(!data_file(dir.path(), first[0].0.file).exists());
    for (loc, i) in &by_file[&first[0].0.file][1..] {
        let (got_loc, got) = replay.next().unwrap().unwrap();
        assert_eq!(
            (got_loc, got),
            (*loc, record(*i)),
            "replay of the deleted file"
        );
    }
    drop(replay);

    // Readers read records of sealed files at random while a writer appends (sealing more
    // files) and the main thread deletes the oldest files one by one.
    let stop = Arc::new(AtomicBool::new(false));
    let reads_ok = Arc::new(AtomicU64::new(0));
    let reads_gone = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let (j, stop, ok, gone) = (
                j.clone(),
                stop.clone(),
                reads_ok.clone(),
                reads_gone.clone(),
            );
            let records = first.clone();
            std::thread::spawn(move || {
                let mut x = 0x1234_5678u64 + r;
                for _ in 0..2_000_000u64 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let (loc, i) = records[(x % records.len() as u64) as usize];
                    match j.read(loc) {
                        Ok(bytes) => {
                            assert_eq!(bytes, record(i), "read at {loc}");
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        // The file was deleted before this read opened it.
                        Err(JournalError::Io { source, .. })
                            if source.kind() == std::io::ErrorKind::NotFound =>
                        {
                            gone.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("read at {loc}: {e}"),
                    }
                }
            })
        })
        .collect();
    let writer = {
        let (j, stop) = (j.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 1_000_000u64;
            let mut written = Vec::new();
            while !stop.load(Ordering::Relaxed) && i < 1_003_000 && Instant::now() < deadline {
                let a = j.append(&[&record(i)], false).unwrap();
                a.completion.wait().unwrap();
                written.push((a.locations[0], i));
                i += 1;
            }
            written
        })
    };
    for id in by_file.keys().copied().skip(1).take(by_file.len() - 2) {
        // Let the readers map the file before it goes.
        let seen = reads_ok.load(Ordering::Relaxed);
        for _ in 0..1000 {
            if reads_ok.load(Ordering::Relaxed) > seen + 50 || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        j.delete_files(&[id]).unwrap();
    }
    // Reads after the deletions, then stop.
    let seen = reads_ok.load(Ordering::Relaxed) + reads_gone.load(Ordering::Relaxed);
    for _ in 0..1000 {
        let now = reads_ok.load(Ordering::Relaxed) + reads_gone.load(Ordering::Relaxed);
        if now > seen + 1000 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("a reader failed");
    }
    let appended = writer.join().expect("the writer failed");
    assert!(reads_ok.load(Ordering::Relaxed) > 0);
    assert!(
        reads_gone.load(Ordering::Relaxed) > 0,
        "some reads came after their file was deleted"
    );

    // What is left reads back whole, through maps where sealed.
    let last = *by_file.keys().next_back().unwrap();
    for (loc, i) in by_file[&last].iter().chain(&appended) {
        assert_eq!(j.read(*loc).unwrap(), record(*i), "read at {loc}");
    }
    // No map of a deleted file is left: its blocks are free.
    let deleted: Vec<String> = maps_of(dir.path())
        .into_iter()
        .filter(|l| l.ends_with("(deleted)"))
        .collect();
    assert!(
        deleted.is_empty(),
        "maps of deleted files remain: {deleted:?}"
    );
    j.close().unwrap();
}

const CHILD: &str = "STORE_JOURNAL_MMAP_TRUNCATE_CHILD";
/// SIGBUS on Linux (x86-64 and arm64).
const SIGBUS: i32 = 7;

/// The control for the test above: a mapped file that shrinks does kill the process with
/// SIGBUS (the journal never shrinks a sealed file; here the test does it behind its back),
/// and the parent sees it. So a SIGBUS in the tests above would not go unnoticed.
#[test]
fn truncating_a_mapped_file_behind_the_journal_kills_the_process_with_sigbus() {
    if let Some(dir) = std::env::var_os(CHILD) {
        let dir = Path::new(&dir);
        let j = Journal::open(config(dir, true), Arc::new(RealFs)).unwrap();
        let written = append_range(&j, 0, 300);
        let (loc, i) = written[written.len() / 4];
        assert!(loc.file < j.tail_file());
        assert_eq!(j.read(loc).unwrap(), record(i));
        std::fs::OpenOptions::new()
            .write(true)
            .open(data_file(dir, loc.file))
            .unwrap()
            .set_len(0)
            .unwrap();
        println!("truncated");
        // The journal's cached map now points past the end of the file.
        let _ = j.read(loc);
        println!("survived");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "truncating_a_mapped_file_behind_the_journal_kills_the_process_with_sigbus",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    use std::os::unix::process::ExitStatusExt;
    assert!(
        stdout.contains("truncated"),
        "the child got as far as truncating: {stdout}"
    );
    assert!(
        !stdout.contains("survived"),
        "the child read past the end: {stdout}"
    );
    assert_eq!(
        out.status.signal(),
        Some(SIGBUS),
        "the child died of SIGBUS: {:?}",
        out.status
    );
}

/// Writes a journal whose data file 1 holds a valid header and then `data`, and whose data file
/// 2 holds one valid batch, so that file 1 is sealed (what replay and reads map).
fn sealed_file_with(dir: &Path, data: &[u8]) {
    use store_journal::format;
    let layout = format::Layout::CURRENT;
    let start = layout.data_start() as usize;
    let mut sealed = format::file_header(1, layout).to_vec();
    sealed.resize(start, 0);
    sealed.extend_from_slice(data);
    let mut tail = format::file_header(2, layout).to_vec();
    tail.resize(start, 0);
    let mut batch = vec![0u8; format::BATCH_HEADER_LEN];
    format::push_record(&mut batch, b"the tail");
    format::seal_batch(&mut batch, start as u32);
    tail.extend_from_slice(&batch);
    std::fs::write(data_file(dir, 1), &sealed).unwrap();
    std::fs::write(data_file(dir, 2), &tail).unwrap();
}

/// Valid batches of records, some of them then damaged: what a sealed file may hold.
fn batches(records: &[Vec<u8>], damage: &[(usize, u8)]) -> Vec<u8> {
    use store_journal::format;
    let start = format::Layout::CURRENT.data_start();
    let mut out = Vec::new();
    for chunk in records.chunks(3) {
        let mut batch = vec![0u8; format::BATCH_HEADER_LEN];
        for r in chunk {
            format::push_record(&mut batch, r);
        }
        format::seal_batch(&mut batch, start as u32 + out.len() as u32);
        out.extend_from_slice(&batch);
        out.resize(
            format::Layout::CURRENT.next_batch(start + out.len() as u64) as usize - start as usize,
            0,
        );
    }
    for (at, x) in damage {
        if !out.is_empty() {
            let i = at % out.len();
            out[i] ^= x;
        }
    }
    out
}

/// Replay and reads by location of everything replay returns, as comparable text.
fn outcome(dir: &Path, map: bool) -> Vec<String> {
    let mut c = config(dir, map);
    c.recovery = store_journal::RecoveryMode::Strict;
    let j = match Journal::open(c, Arc::new(RealFs)) {
        Ok(j) => j,
        Err(e) => return vec![format!("open: {e}")],
    };
    let mut out = Vec::new();
    for r in j.replay(Location::default()).take(10_000) {
        match r {
            Ok((loc, bytes)) => {
                let again = j.read(loc).map_err(|e| e.to_string());
                out.push(format!("{loc} {bytes:?} read {again:?}"));
            }
            Err(e) => {
                out.push(format!("replay: {e}"));
                break;
            }
        }
    }
    j.close().unwrap();
    out
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Whatever a sealed file holds — valid batches, damaged ones, garbage — reading it through
    /// a map returns exactly what reading it with `pread` does: the same records, the same
    /// errors at the same offsets.
    #[test]
    fn a_sealed_file_reads_the_same_through_a_map_whatever_it_holds(
        records in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..12),
        damage in proptest::collection::vec((proptest::prelude::any::<usize>(), 1..=255u8), 0..3),
        garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut data = batches(&records, &damage);
        data.extend_from_slice(&garbage);
        sealed_file_with(dir.path(), &data);
        let plain = outcome(dir.path(), false);
        let mapped = outcome(dir.path(), true);
        proptest::prop_assert_eq!(plain, mapped);
    }
}
