//! Bad bytes on disk: flip, zero or cut bytes at random offsets of every file a store writes
//! (journal, index page file, redo, AMQ snapshot and control file). Opening then either works
//! — returning only messages that were written, byte for byte — or fails with an error; it
//! never panics and never hangs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use store_amq::{AmqConfig, AmqStore};
use store_api::testkit::damage::{Damage, damage};
use store_api::{
    Body, Destination, Message, MessageId, PersistenceAdapter, SubscriptionInfo, SubscriptionKey,
};
use store_journal::fs::SimFs;
use store_kahadb::{KahaDbConfig, KahaDbStore};
use test_support::corruption::{body, check_written, damage_one, files_in, queue as q};

/// Which engine's files: KahaDB's page file, or AMQ's snapshots (`store-amq`).
#[derive(Debug, Clone, Copy)]
enum IndexLayout {
    PageFile,
    Snapshot,
}

fn open(
    layout: IndexLayout,
    fs: &SimFs,
) -> Result<Arc<dyn PersistenceAdapter>, store_kahadb::KahaError> {
    let fs = Arc::new(fs.clone());
    Ok(match layout {
        IndexLayout::PageFile => {
            let mut c = KahaDbConfig::new("/store");
            c.journal_max_file_length = 16 * 1024;
            c.checkpoint_interval = Duration::ZERO;
            c.preallocate = false;
            Arc::new(KahaDbStore::open_with_fs(c, fs)?)
        }
        IndexLayout::Snapshot => {
            let mut c = AmqConfig::new("/store");
            c.max_file_length = 16 * 1024;
            c.checkpoint_interval = Duration::ZERO;
            c.preallocate = false;
            Arc::new(AmqStore::open_with_fs(c, fs)?)
        }
    })
}

/// A store with some history (adds, acks, a durable subscription, checkpoints), closed; returns
/// the file system and every message that was ever written.
fn build(layout: IndexLayout) -> (SimFs, BTreeMap<u64, Body>) {
    let fs = SimFs::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut written = BTreeMap::new();
    rt.block_on(async {
        let store = open(layout, &fs).unwrap();
        let queue = store.queue_store(&q()).await.unwrap();
        let topic = store.topic_store(&Destination::topic("t")).await.unwrap();
        topic
            .add_subscription(
                SubscriptionInfo::new(SubscriptionKey::new("c", "s"), None),
                false,
            )
            .await
            .unwrap();
        for n in 0..120u64 {
            queue
                .add(Message::new(MessageId::new("p", n), q(), body(n)))
                .await
                .unwrap();
            topic
                .add(Message::new(
                    MessageId::new("p", n),
                    Destination::topic("t"),
                    body(n),
                ))
                .await
                .unwrap();
            written.insert(n, body(n));
            if n % 4 == 0 {
                queue.remove(&MessageId::new("p", n)).await.unwrap();
            }
            if n == 60 {
                store.checkpoint(true).await.unwrap();
            }
        }
        store.close().await.unwrap();
    });
    (fs, written)
}

fn files(fs: &SimFs) -> Vec<std::path::PathBuf> {
    let dirs = ["/store", "/store/journal", "/store/kr-store"].map(Path::new);
    files_in(fs, &dirs)
}

fn attack(
    layout: IndexLayout,
    file: prop::sample::Index,
    at: prop::sample::Index,
    d: Damage,
) -> Result<(), TestCaseError> {
    let (fs, written) = build(layout);
    if !damage_one(&fs, &files(&fs), file, at, &d) {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let opened = open(layout, &fs);
    let Ok(store) = opened else {
        // A clear refusal is a correct outcome; the error names what is wrong.
        let e = opened.err().unwrap();
        prop_assert!(!e.to_string().is_empty());
        return Ok(());
    };
    rt.block_on(async {
        if let Ok(queue) = store.queue_store(&q()).await
            && let Ok(messages) = queue.browse(None, usize::MAX).await
        {
            check_written(&messages, &written)?;
        }
        let _ = store.close().await;
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn kahadb_files_damaged_anywhere(file in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), d in damage()) {
        attack(IndexLayout::PageFile, file, at, d)?;
    }

    #[test]
    fn amq_files_damaged_anywhere(file in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), d in damage()) {
        attack(IndexLayout::Snapshot, file, at, d)?;
    }
}
