//! A composite send (`a,b,c`) is one store transaction (issue 25): whatever the disk does to
//! its write — the fsync fails, the power goes with the write unsynced, half written or fully
//! written — after a restart either every destination of the list has the message or none has.
//! KahaDB on the journal's fault-injecting file system (`SimFs`), through broker-core.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use broker_core::{AckMode, Broker, CoreConfig, Destination, NoLock, OpenedStore, Outgoing};
use store_api::PersistenceAdapter;
use store_journal::fs::{Crash, SimFs};
use store_kahadb::{KahaDbConfig, KahaDbStore};

const QUEUES: [&str; 3] = ["a", "b", "c"];

async fn broker_on(fs: &SimFs) -> Broker {
    let mut c = KahaDbConfig::new("/composite");
    c.journal_max_file_length = 1024 * 1024;
    c.checkpoint_interval = Duration::ZERO;
    c.preallocate = false;
    let store: Arc<dyn PersistenceAdapter> =
        Arc::new(KahaDbStore::open_with_fs(c, Arc::new(fs.clone())).unwrap());
    let b = Broker::new(
        CoreConfig::default(),
        Arc::new(NoLock),
        Arc::new(OpenedStore(store)),
    );
    b.start().await.unwrap();
    b
}

/// How many copies of `text` each queue holds.
async fn copies(b: &Broker, text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for q in QUEUES {
        let n = b
            .browse(q, 100)
            .await
            .unwrap()
            .iter()
            .filter(|m| matches!(&m.body, store_api::Body::Text(t) if t == text))
            .count();
        out.push(n);
    }
    out
}

/// Sends `text` to `a,b,c` after the disk was told to fail; returns whether the send said Ok.
async fn composite_send(b: &Broker, text: &str) -> bool {
    let conn = b.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let p = s.producer(Destination::queue(QUEUES.join(","))).unwrap();
    let ok = p.send(Outgoing::text(text)).await.is_ok();
    conn.close().await;
    ok
}

async fn all_or_nothing(crash: Crash, fail_fsync: bool) {
    let fs = SimFs::new();
    let b = broker_on(&fs).await;
    // Something already durable in each queue, that must stay.
    assert!(composite_send(&b, "before").await);
    assert_eq!(copies(&b, "before").await, [1, 1, 1]);
    if fail_fsync {
        fs.control().fail_fsync_in(1);
    }
    let said_ok = composite_send(&b, "composite").await;
    b.stop().await;
    fs.power_loss(crash);
    let b = broker_on(&fs).await;
    let got = copies(&b, "composite").await;
    assert!(
        got == [0, 0, 0] || got == [1, 1, 1],
        "{crash:?}, fsync failed: {fail_fsync}: copies per queue {got:?}"
    );
    if said_ok {
        assert_eq!(got, [1, 1, 1], "{crash:?}: a send that said Ok is kept");
    }
    if fail_fsync {
        assert!(!said_ok, "a send whose fsync failed does not say Ok");
    }
    assert_eq!(copies(&b, "before").await, [1, 1, 1], "{crash:?}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_send_is_all_or_nothing_whatever_the_disk_does() {
    // A failed fsync, then the power goes: unsynced bytes lost, kept, or torn at every point
    // of the last write (a composite record is a few hundred bytes).
    let mut crashes = vec![Crash::LoseUnsynced, Crash::KeepUnsynced];
    crashes.extend((0..600).step_by(37).map(Crash::TearLastWrite));
    for crash in crashes {
        all_or_nothing(crash, true).await;
    }
    // The power goes right after a successful send: kept whatever the cache held.
    for crash in [Crash::LoseUnsynced, Crash::TearLastWrite(50)] {
        all_or_nothing(crash, false).await;
    }
}
