//! Bad bytes in the journal: flip, zero or cut bytes at a random offset of a random journal
//! file of a store that crashed with changes not yet checkpointed (SQLite behind it). Opening
//! then either works — returning only messages that were written, byte for byte, and every
//! message the database already held before the damaged journal's changes — or fails with an
//! error naming the journal file; it never panics and never hangs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use store_api::testkit::damage::{Damage, damage};
use store_api::{Body, Message, MessageId, PersistenceAdapter};
use store_journal::fs::SimFs;
use store_journaled_jdbc::{JournaledJdbcConfig, JournaledJdbcStore};
use test_support::JournaledFactory;
use test_support::corruption::{body, check_written, damage_one, files_in, queue as q};

/// Checkpoints only when asked; small journal files so the history spans several.
fn config(f: &JournaledFactory) -> JournaledJdbcConfig {
    let mut c = f.config();
    c.checkpoint_interval = Duration::from_secs(3600);
    c.checkpoint_journal_bytes = u64::MAX;
    c.max_file_length = 8 * 1024;
    c
}

/// Adds 120 messages (acking every fourth), checkpointing after the 60th, then "crashes":
/// the store is dropped unclosed, so the journal holds everything after the checkpoint.
/// Returns every message written and those the checkpoint put in the database.
async fn build(f: &JournaledFactory, fs: &SimFs) -> (BTreeMap<u64, Body>, Vec<u64>) {
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

async fn attack(
    file: prop::sample::Index,
    at: prop::sample::Index,
    d: Damage,
) -> Result<(), TestCaseError> {
    let f = JournaledFactory::sqlite();
    let fs = SimFs::new();
    let (written, checkpointed) = build(&f, &fs).await;
    let dir = config(&f).journal_directory;
    let all = files_in(&fs, &[&dir]);
    prop_assert!(!all.is_empty(), "the crash left no journal");
    if !damage_one(&fs, &all, file, at, &d) {
        return Ok(());
    }
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
    check_written(&messages, &written)?;
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
