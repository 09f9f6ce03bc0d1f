//! A real full disk: each engine's local files (journal, index, SQLite database) on a small
//! tmpfs the test mounts, with a ballast file beside them. Adds go on until the file system is
//! full; then the error must say so, everything stored must still be readable, and once the
//! ballast is deleted, writing resumes — at once where the engine can, after a reopen where it
//! cannot (the file engines: after a failed write they are poisoned, see `store-journal`) —
//! with nothing stored lost. Mounting needs root (CI runs as root); elsewhere the tests say
//! they skipped. Journaled JDBC on a database server is not here: its journal keeps only what
//! the last checkpoint has not moved to the server, so it does not fill a local disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Engine, Place};
use store_api::{Body, Destination, Message, MessageId};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Result<Tmpfs, String> {
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = parent.path().join("fs");
        std::fs::create_dir(&path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(&path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mounting a tmpfs failed (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path,
            _parent: parent,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds a file open (a background thread of a leaked store):
            // detach it now, the kernel frees it when the last file closes.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

fn q() -> Destination {
    Destination::queue("full")
}

fn msg(n: u64) -> Message {
    Message::new(
        MessageId::new("p", n),
        q(),
        Body::Bytes(vec![(n % 251) as u8; 4096].into()),
    )
}

fn fills_up(engine: Engine) {
    let fs = match Tmpfs::mount(8 * 1024 * 1024) {
        Ok(fs) => fs,
        Err(why) => {
            test_support::skip(format!("{} on a full disk: {why}", engine.name()));
            return;
        }
    };
    let place = match Place::new(engine, &fs.path) {
        Ok(p) => p,
        Err(why) => {
            test_support::skip(format!("{} on a full disk: {why}", engine.name()));
            return;
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run(engine, &place, &fs.path));
    rt.block_on(place.drop_tables());
}

async fn run(engine: Engine, place: &Place, root: &Path) {
    let name = engine.name();
    let ballast = root.join("ballast");
    std::fs::write(&ballast, vec![1u8; 2 * 1024 * 1024]).unwrap();
    let store = place.open().await.unwrap();
    let queue = store.queue_store(&q()).await.unwrap();

    // Fill it. The tmpfs holds 8 MiB; 4,000 adds of 4 KiB would need twice that.
    let mut stored = Vec::new();
    let mut failure = None;
    for n in 0..4_000u64 {
        match queue.add(msg(n)).await {
            Ok(_) => stored.push(n),
            Err(e) => {
                failure = Some((n, e));
                break;
            }
        }
    }
    let (failed, err) = failure.unwrap_or_else(|| panic!("{name}: 16 MiB fit on an 8 MiB disk"));
    let text = err.to_string();
    assert!(
        text.contains("No space left on device")
            || text.contains("os error 28")
            || text.contains("disk is full"),
        "{name}: the error must name the cause: {text}"
    );
    eprintln!("{name}: full after {} adds of 4 KiB: {text}", stored.len());

    // Reads go on, and see exactly what was stored (the failed add may or may not be there:
    // like a crash, a failed call leaves its own fate open).
    let ids: Vec<u64> = queue
        .browse(None, usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id.producer_seq)
        .collect();
    let expected_either = [stored.clone(), [stored.clone(), vec![failed]].concat()];
    assert!(
        expected_either.contains(&ids),
        "{name}: browsing a full store found {} messages, {} were stored",
        ids.len(),
        stored.len()
    );
    let first = queue.get(&MessageId::new("p", 0)).await.unwrap();
    assert_eq!(first.body, msg(0).body, "{name}");
    let consumed = queue.recover_next(100).await.unwrap();
    assert_eq!(consumed.len(), 100.min(stored.len()), "{name}: cursor");

    // Space comes back.
    std::fs::remove_file(&ballast).unwrap();
    let resumed = queue.add(msg(10_000)).await.is_ok();
    if resumed {
        stored.push(10_000);
    }
    eprintln!(
        "{name}: with space back, writing {}",
        if resumed {
            "resumed at once"
        } else {
            "needs a reopen"
        }
    );
    drop(queue);
    let _ = store.close().await;
    drop(store);

    let store = place.open().await.unwrap();
    let queue = store.queue_store(&q()).await.unwrap();
    let after: Vec<Message> = queue.browse(None, usize::MAX).await.unwrap();
    let after_ids: Vec<u64> = after.iter().map(|m| m.id.producer_seq).collect();
    let lost: Vec<&u64> = stored.iter().filter(|n| !after_ids.contains(n)).collect();
    assert!(
        lost.is_empty(),
        "{name}: lost after the disk was full: {lost:?}"
    );
    for m in &after {
        assert!(
            stored.contains(&m.id.producer_seq) || m.id.producer_seq == failed,
            "{name}: {} was never stored",
            m.id
        );
        assert_eq!(
            m.body,
            msg(m.id.producer_seq).body,
            "{name}: body of {}",
            m.id
        );
    }
    // Writing works, and so does consuming everything.
    queue.add(msg(20_000)).await.unwrap();
    for m in queue.browse(None, usize::MAX).await.unwrap() {
        queue.remove(&m.id).await.unwrap();
    }
    assert_eq!(queue.count().await.unwrap(), 0, "{name}");
    store.close().await.unwrap();
}

#[test]
fn leveldb_on_a_full_disk() {
    fills_up(Engine::Leveldb);
}

#[test]
fn kahadb_on_a_full_disk() {
    fills_up(Engine::Kahadb);
}

#[test]
fn amq_on_a_full_disk() {
    fills_up(Engine::Amq);
}

#[test]
fn jdbc_sqlite_on_a_full_disk() {
    fills_up(Engine::JdbcSqlite);
}

#[test]
fn journaled_jdbc_sqlite_on_a_full_disk() {
    fills_up(Engine::JournaledSqlite);
}
