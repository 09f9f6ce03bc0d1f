//! Bad bytes in the journal: flip, zero or cut bytes at a random offset of a random journal
//! file of a store that crashed with changes not yet checkpointed (SQLite behind it). Opening
//! then either works — returning only messages that were written, byte for byte, and every
//! message the database already held before the damaged journal's changes — or fails with an
//! error naming the journal file; it never panics and never hangs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::Factory;
use proptest::prelude::*;
use store_api::testkit::damage::{Damage, damage};
use store_api::{Body, Destination, Message, MessageId, PersistenceAdapter};
use store_journal::fs::{FileSystem, SimFs};
use store_journaled_jdbc::{JournaledJdbcConfig, JournaledJdbcStore};

fn q() -> Destination {
    Destination::queue("q")
}

fn body(n: u64) -> Body {
    Body::Text(format!("{n}-{}", "z".repeat((n * 37 % 500) as usize)))
}

/// Checkpoints only when asked; small journal files so the history spans several.
fn config(f: &Factory) -> JournaledJdbcConfig {
    let mut c = f.config();
    c.checkpoint_interval = Duration::from_secs(3600);
    c.checkpoint_journal_bytes = u64::MAX;
    c.max_file_length = 8 * 1024;
    c
}

/// Adds 120 messages (acking every fourth), checkpointing after the 60th, then "crashes":
/// the store is dropped unclosed, so the journal holds everything after the checkpoint.
/// Returns every message written and those the checkpoint put in the database.
async fn build(f: &Factory, fs: &SimFs) -> (BTreeMap<u64, Body>, Vec<u64>) {
    let store = JournaledJdbcStore::open_with_fs(config(f), Arc::new(fs.clone()))
        .await
        .unwrap();
    let queue = store.queue_store(&q()).await.unwrap();
    let mut written = BTreeMap::new();
    let mut checkpointed = Vec::new();
    for n in 0..120u64 {
        queue
            .add(Message::new(MessageId::new("p", n), q(), body(n)))
            .await
            .unwrap();
        written.insert(n, body(n));
        if n % 4 == 0 {
            queue.remove(&MessageId::new("p", n)).await.unwrap();
        }
        if n == 60 {
            store.checkpoint(true).await.unwrap();
            checkpointed = (0..=60).filter(|n| n % 4 != 0).collect();
        }
    }
    drop(queue);
    drop(store);
    tokio::time::sleep(Duration::from_millis(20)).await;
    (written, checkpointed)
}

fn journal_files(fs: &SimFs, dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs
        .list(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|name| dir.join(name))
        .collect();
    out.sort();
    out
}

async fn attack(
    file: prop::sample::Index,
    at: prop::sample::Index,
    d: Damage,
) -> Result<(), TestCaseError> {
    let f = Factory::sqlite();
    let fs = SimFs::new();
    let (written, checkpointed) = build(&f, &fs).await;
    let dir = config(&f).journal_directory;
    let all = journal_files(&fs, &dir);
    prop_assert!(!all.is_empty(), "the crash left no journal");
    let path = &all[file.index(all.len())];
    let mut bytes = fs.contents(path).unwrap();
    if bytes.is_empty() {
        return Ok(());
    }
    d.apply(&mut bytes, at);
    fs.set_contents(path, bytes).unwrap();
    let opened = tokio::time::timeout(
        Duration::from_secs(60),
        JournaledJdbcStore::open_with_fs(config(&f), Arc::new(fs.clone())),
    )
    .await;
    let Ok(opened) = opened else {
        return Err(TestCaseError::fail("opening a damaged journal hung"));
    };
    let store = match opened {
        Ok(store) => store,
        Err(e) => {
            // A refusal is a correct outcome when it says where.
            let text = e.to_string();
            prop_assert!(
                text.contains("journal-") || text.contains("journal record at"),
                "the refusal does not name the journal file: {}",
                text
            );
            return Ok(());
        }
    };
    let queue = store.queue_store(&q()).await.unwrap();
    let messages = queue.browse(None, usize::MAX).await.unwrap();
    let present: Vec<u64> = messages.iter().map(|m| m.id.producer_seq).collect();
    for m in &messages {
        let n = m.id.producer_seq;
        prop_assert_eq!(m.id.producer.as_ref(), "p", "a message nobody wrote");
        prop_assert_eq!(
            Some(&m.body),
            written.get(&n),
            "message {} came back different",
            n
        );
    }
    // The journal's damage can only cost what it alone held.
    for n in &checkpointed {
        prop_assert!(
            present.contains(n),
            "checkpointed message {} was lost to journal damage",
            n
        );
    }
    store.close().await.unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn journal_damaged_anywhere(file in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), d in damage()) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(attack(file, at, d))?;
    }
}
