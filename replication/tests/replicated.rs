//! The replicated store without ZooKeeper: a master (its log, store and listener) and slaves
//! following it in-process over loopback TCP, on memory engines. The conformance kit runs
//! against the master's store with a slave in the quorum, and the slaves' stores must end equal
//! to the master's after a workload, after catching up from the backlog and after a full copy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use async_trait::async_trait;
use replication::apply::Applier;
use replication::follower::{FollowerState, follow};
use replication::log::Log;
use replication::op::Op;
use replication::position::PositionFile;
use replication::{ReplicatedStore, SyncMode};
use store_api::testkit::StoreFactory;
use store_api::{
    Destination, Message, MessageId, PersistenceAdapter, SubscriptionInfo, SubscriptionKey,
    TransactionId, TxOp,
};
use store_memory::MemoryStore;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A master of epoch 1 on a memory store, serving slaves on an ephemeral port.
struct Master {
    store: Arc<ReplicatedStore>,
    local: Arc<dyn PersistenceAdapter>,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

async fn master(quorum: usize, backlog: usize) -> Master {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn PersistenceAdapter> = Arc::new(MemoryStore::new());
    let log = Arc::new(
        Log::new(
            1,
            SyncMode::QuorumDisk,
            quorum,
            Duration::from_secs(10),
            backlog,
            PositionFile::open(dir.path()).unwrap(),
        )
        .unwrap(),
    );
    let store = Arc::new(
        ReplicatedStore::new(Arc::clone(&local), Arc::clone(&log))
            .await
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(replication::server::serve(
        listener,
        log,
        Arc::clone(&local),
    ));
    Master {
        store,
        local,
        addr,
        _dir: dir,
    }
}

/// A slave following `addr`; stop it with the returned sender.
struct Slave {
    local: Arc<dyn PersistenceAdapter>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<FollowerState>,
    _dir: tempfile::TempDir,
}

fn slave(addr: std::net::SocketAddr, name: &str) -> Slave {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn PersistenceAdapter> = Arc::new(MemoryStore::new());
    let mut state = FollowerState {
        node: name.into(),
        applier: Applier::new(Arc::clone(&local)),
        position_file: PositionFile::open(dir.path()).unwrap(),
        applied: Arc::new(AtomicU64::new(0)),
    };
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        // Reconnect while the master lets this slave go (a full copy is asked for again).
        for _ in 0..50 {
            if *rx.borrow() {
                break;
            }
            if follow(&mut state, addr, 1, rx.clone()).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        state
    });
    Slave {
        local,
        stop,
        task,
        _dir: dir,
    }
}

/// A store's content as ops, with store-assigned sequences zeroed (each store assigns its own).
async fn content(store: &Arc<dyn PersistenceAdapter>) -> Vec<Op> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let s = Arc::clone(store);
    let reader = tokio::spawn(async move { replication::snapshot::dump(&s, &tx).await });
    let mut out = Vec::new();
    while let Some(ops) = rx.recv().await {
        out.extend(ops.into_iter().map(|op| match op {
            Op::Add(mut m) => {
                m.sequence = 0;
                Op::Add(m)
            }
            other => other,
        }));
    }
    reader.await.unwrap().unwrap();
    out
}

async fn converge(master: &Arc<dyn PersistenceAdapter>, slave: &Arc<dyn PersistenceAdapter>) {
    let want = content(master).await;
    for _ in 0..200 {
        if content(slave).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(content(slave).await, want, "the slave did not converge");
}

fn msg(d: &Destination, n: u64) -> Message {
    store_api::testkit::message(d, n)
}

/// Every kind of write: queue adds and acks, a topic with two durable subscriptions acked
/// apart, a purge, a local transaction, a prepared and a committed XA transaction, a removed
/// destination.
async fn workload(store: &Arc<dyn PersistenceAdapter>, round: u64) {
    let q = Destination::queue(format!("orders.{round}"));
    let t = Destination::topic(format!("prices.{round}"));
    let qs = store.queue_store(&q).await.unwrap();
    for n in 0..50 {
        let p = qs.submit_add(msg(&q, round * 1000 + n)).await.unwrap();
        p.await.unwrap();
    }
    for n in (0..50).step_by(3) {
        qs.remove(&MessageId::new(
            msg(&q, round * 1000 + n).id.producer,
            round * 1000 + n,
        ))
        .await
        .unwrap();
    }
    let ts = store.topic_store(&t).await.unwrap();
    let a = SubscriptionKey::new("c1", "a");
    let b = SubscriptionKey::new("c2", "b");
    ts.add_subscription(SubscriptionInfo::new(a.clone(), None), false)
        .await
        .unwrap();
    ts.add_subscription(
        SubscriptionInfo::new(b.clone(), Some("x > 1".into())),
        false,
    )
    .await
    .unwrap();
    for n in 0..20 {
        ts.add(msg(&t, round * 1000 + n)).await.unwrap();
    }
    for n in 0..10 {
        ts.acknowledge(&a, &msg(&t, round * 1000 + n).id)
            .await
            .unwrap();
    }
    let tx = TransactionId::Local(round);
    store.begin(&tx).await.unwrap();
    store
        .enlist(&tx, TxOp::Add(msg(&q, round * 1000 + 500)))
        .await
        .unwrap();
    store
        .enlist(
            &tx,
            TxOp::QueueAck {
                destination: q.clone(),
                id: msg(&q, round * 1000 + 1).id,
            },
        )
        .await
        .unwrap();
    store.commit(&tx).await.unwrap();
    let xid = store_api::Xid {
        format_id: 1,
        global_id: vec![round as u8],
        branch_qualifier: vec![1],
    };
    let xa = TransactionId::Xa(xid.clone());
    store.begin(&xa).await.unwrap();
    store
        .enlist(&xa, TxOp::Add(msg(&q, round * 1000 + 600)))
        .await
        .unwrap();
    store.prepare(&xid).await.unwrap();
    let gone = Destination::queue(format!("scratch.{round}"));
    let g = store.queue_store(&gone).await.unwrap();
    g.add(msg(&gone, 1)).await.unwrap();
    g.purge().await.unwrap();
    store.remove_destination(&gone).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slaves_end_equal_to_the_master_and_a_late_one_catches_up() {
    let m = master(2, 64 << 20).await;
    let s1 = slave(m.addr, "s1");
    let store: Arc<dyn PersistenceAdapter> = m.store.clone();
    workload(&store, 1).await;
    // A slave that joins late gets the backlog (this master kept it all).
    let s2 = slave(m.addr, "s2");
    workload(&store, 2).await;
    converge(&m.local, &s1.local).await;
    converge(&m.local, &s2.local).await;
    assert!(!content(&m.local).await.is_empty());
    for s in [s1, s2] {
        s.stop.send(true).unwrap();
        s.task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_behind_the_backlog_takes_a_full_copy_and_follows_on() {
    // A backlog of 1 KiB: a slave that comes later cannot continue from it.
    let m = master(1, 1024).await;
    let store: Arc<dyn PersistenceAdapter> = m.store.clone();
    workload(&store, 1).await;
    let s = slave(m.addr, "late");
    workload(&store, 2).await;
    converge(&m.local, &s.local).await;
    s.stop.send(true).unwrap();
    let state = s.task.await.unwrap();
    assert!(state.position_file.get().position > 0);
    assert!(!state.position_file.get().needs_full_copy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_a_write_fails_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn PersistenceAdapter> = Arc::new(MemoryStore::new());
    let log = Arc::new(
        Log::new(
            1,
            SyncMode::QuorumDisk,
            2,
            Duration::from_millis(200),
            1 << 20,
            PositionFile::open(dir.path()).unwrap(),
        )
        .unwrap(),
    );
    let store = ReplicatedStore::new(Arc::clone(&local), log).await.unwrap();
    let q = Destination::queue("q");
    let e = match store.queue_store(&q).await {
        Err(e) => e,
        Ok(_) => panic!("a write without a quorum succeeded"),
    };
    assert!(e.to_string().contains("no quorum: 1 of the 2"), "{e}");
}

/// The conformance kit against the master's store, each write waiting for a slave's ack.
struct ReplicatedFactory;

#[async_trait]
impl StoreFactory for ReplicatedFactory {
    async fn open(&self) -> store_api::Result<Arc<dyn PersistenceAdapter>> {
        let m = master(2, 64 << 20).await;
        let s = slave(m.addr, "kit");
        // The slave, its directory and the master's directory live as long as the test.
        std::mem::forget(s);
        let store: Arc<dyn PersistenceAdapter> = m.store.clone();
        std::mem::forget(m);
        Ok(store)
    }

    fn durable(&self) -> bool {
        false
    }
}

store_api::conformance_tests!(ReplicatedFactory, durable = false);
