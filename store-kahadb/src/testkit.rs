//! Power loss through the file-system seam, for the engines over the shared journal: a scripted
//! workload is cut at every fsync in turn (the fsync fails, then the power goes: unsynced bytes
//! lost, torn, or kept), and after reopen the store must equal the reference model with or
//! without the one operation in flight — never anything else: every add, ack and commit that
//! returned Ok is there, nothing uncommitted or rolled back is visible, nothing acked comes back.
//! Each engine's `tests/crash.rs` runs it with its config; behind the `testkit` feature.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use store_api::testkit::model::Model;
use store_api::{
    Body, Destination, Message, MessageId, PersistenceAdapter, SubscriptionInfo, SubscriptionKey,
    TransactionId, TxOp, Xid,
};
use store_journal::fs::{Crash, SimFs};

use crate::index_storage::{EngineConfig, JournaledStore};

fn q() -> Destination {
    Destination::queue("orders")
}

fn t() -> Destination {
    Destination::topic("prices")
}

fn msg(d: &Destination, n: u64) -> Message {
    Message::new(
        MessageId::new("p", n),
        d.clone(),
        Body::Text(format!("{n}:{}", "x".repeat(200))),
    )
}

fn key(s: &str) -> SubscriptionKey {
    SubscriptionKey::new("client", s)
}

fn xid(n: u8) -> Xid {
    Xid {
        format_id: 1,
        global_id: vec![n],
        branch_qualifier: vec![],
    }
}

/// One step of the workload, applied to the store and to the model alike.
#[derive(Debug, Clone)]
enum Step {
    Add(Destination, u64),
    Ack(u64),
    Subscribe(&'static str, bool),
    Unsubscribe(&'static str),
    TopicAck(&'static str, u64),
    LocalTx(u64, Vec<TxOp>),
    Prepare(u8, Vec<TxOp>),
    CommitXa(u8),
    Checkpoint(bool),
}

fn workload() -> Vec<Step> {
    use Step::*;
    let mut w = vec![];
    for n in 1..=6 {
        w.push(Add(q(), n));
    }
    w.push(Ack(2));
    w.push(Checkpoint(false));
    w.push(Subscribe("a", false));
    for n in 10..=13 {
        w.push(Add(t(), n));
    }
    w.push(TopicAck("a", 10));
    w.push(Subscribe("b", true));
    w.push(LocalTx(
        1,
        vec![
            TxOp::Add(msg(&q(), 20)),
            TxOp::QueueAck {
                destination: q(),
                id: MessageId::new("p", 1),
            },
            TxOp::TopicAck {
                destination: t(),
                subscription: key("b"),
                id: MessageId::new("p", 11),
            },
        ],
    ));
    w.push(Prepare(
        1,
        vec![
            TxOp::Add(msg(&q(), 30)),
            TxOp::QueueAck {
                destination: q(),
                id: MessageId::new("p", 3),
            },
        ],
    ));
    w.push(Checkpoint(true));
    for n in 40..=50 {
        w.push(Add(q(), n));
    }
    for n in [4, 5, 41, 43] {
        w.push(Ack(n));
    }
    w.push(CommitXa(1));
    w.push(TopicAck("b", 12));
    w.push(Unsubscribe("a"));
    w.push(Checkpoint(true));
    for n in 60..=64 {
        w.push(Add(q(), n));
    }
    w.push(Checkpoint(true));
    w
}

fn generation(model: &mut Model, d: &Destination) -> u64 {
    model.open_destination(d)
}

fn apply_model(model: &mut Model, step: &Step) {
    match step {
        Step::Add(d, n) => {
            let g = generation(model, d);
            let _ = model.add(d, g, msg(d, *n));
        }
        Step::Ack(n) => {
            let g = generation(model, &q());
            let _ = model.remove(&q(), g, &MessageId::new("p", *n));
        }
        Step::Subscribe(s, retro) => {
            let g = generation(model, &t());
            let _ = model.add_subscription(&t(), g, SubscriptionInfo::new(key(s), None), *retro);
        }
        Step::Unsubscribe(s) => {
            let g = generation(model, &t());
            let _ = model.delete_subscription(&t(), g, &key(s));
        }
        Step::TopicAck(s, n) => {
            let g = generation(model, &t());
            let _ = model.acknowledge(&t(), g, &key(s), &MessageId::new("p", *n));
        }
        Step::LocalTx(id, ops) => {
            let tx = TransactionId::Local(*id);
            let _ = model.begin(&tx);
            for op in ops {
                let _ = model.enlist(&tx, op.clone());
            }
            let _ = model.commit(&tx);
        }
        Step::Prepare(x, ops) => {
            let tx = TransactionId::Xa(xid(*x));
            let _ = model.begin(&tx);
            for op in ops {
                let _ = model.enlist(&tx, op.clone());
            }
            let _ = model.prepare(&xid(*x));
        }
        Step::CommitXa(x) => {
            let _ = model.commit(&TransactionId::Xa(xid(*x)));
        }
        Step::Checkpoint(_) => {}
    }
}

async fn run_step(store: &dyn PersistenceAdapter, step: &Step) -> store_api::Result<()> {
    match step {
        Step::Add(d, n) => {
            if d.is_queue() {
                store
                    .queue_store(d)
                    .await?
                    .add(msg(d, *n))
                    .await
                    .map(|_| ())
            } else {
                store
                    .topic_store(d)
                    .await?
                    .add(msg(d, *n))
                    .await
                    .map(|_| ())
            }
        }
        Step::Ack(n) => {
            store
                .queue_store(&q())
                .await?
                .remove(&MessageId::new("p", *n))
                .await
        }
        Step::Subscribe(s, retro) => {
            store
                .topic_store(&t())
                .await?
                .add_subscription(SubscriptionInfo::new(key(s), None), *retro)
                .await
        }
        Step::Unsubscribe(s) => {
            store
                .topic_store(&t())
                .await?
                .delete_subscription(&key(s))
                .await
        }
        Step::TopicAck(s, n) => {
            store
                .topic_store(&t())
                .await?
                .acknowledge(&key(s), &MessageId::new("p", *n))
                .await
        }
        Step::LocalTx(id, ops) => {
            let tx = TransactionId::Local(*id);
            store.begin(&tx).await?;
            for op in ops {
                store.enlist(&tx, op.clone()).await?;
            }
            store.commit(&tx).await
        }
        Step::Prepare(x, ops) => {
            let tx = TransactionId::Xa(xid(*x));
            store.begin(&tx).await?;
            for op in ops {
                store.enlist(&tx, op.clone()).await?;
            }
            store.prepare(&xid(*x)).await
        }
        Step::CommitXa(x) => store.commit(&TransactionId::Xa(xid(*x))).await,
        Step::Checkpoint(cleanup) => store.checkpoint(*cleanup).await,
    }
}

/// What can be observed: queue contents in order, each subscription's pending ids, prepared
/// transactions.
#[derive(PartialEq)]
struct Observed {
    queue: Vec<Message>,
    subs: Vec<(SubscriptionKey, Vec<u64>)>,
    topic_count: u64,
    prepared: Vec<Xid>,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u64> = self.queue.iter().map(|m| m.id.producer_seq).collect();
        write!(
            f,
            "queue {ids:?} subs {:?} topic count {} prepared {:?}",
            self.subs, self.topic_count, self.prepared
        )
    }
}

fn unsequenced(mut m: Message) -> Message {
    m.sequence = 0;
    m
}

async fn observe(store: &dyn PersistenceAdapter) -> Observed {
    let queue = store
        .queue_store(&q())
        .await
        .unwrap()
        .browse(None, usize::MAX)
        .await
        .unwrap();
    let topic = store.topic_store(&t()).await.unwrap();
    let mut subs = vec![];
    for s in topic.subscriptions().await.unwrap() {
        let pending = topic
            .browse_subscription(&s.key, None, usize::MAX)
            .await
            .unwrap();
        subs.push((s.key, pending.iter().map(|m| m.id.producer_seq).collect()));
    }
    let q_store = store.queue_store(&q()).await.unwrap();
    assert_eq!(
        q_store.count().await.unwrap(),
        queue.len() as u64,
        "count agrees with contents"
    );
    assert_eq!(
        q_store.bytes().await.unwrap(),
        queue.iter().map(Message::size).sum::<u64>(),
        "bytes agree with contents"
    );
    Observed {
        queue: queue.into_iter().map(unsequenced).collect(),
        subs,
        topic_count: topic.count().await.unwrap(),
        prepared: store
            .prepared_transactions()
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.xid)
            .collect(),
    }
}

fn observe_model(model: &mut Model) -> Observed {
    let gq = generation(model, &q());
    let gt = generation(model, &t());
    let queue = model
        .browse(&q(), gq, None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(unsequenced)
        .collect();
    let subs = model
        .subscriptions(&t(), gt)
        .unwrap()
        .into_iter()
        .map(|s| {
            let ids = model
                .browse_subscription(&t(), gt, &s.key, None, usize::MAX)
                .unwrap();
            (s.key, ids.iter().map(|m| m.id.producer_seq).collect())
        })
        .collect();
    Observed {
        queue,
        subs,
        topic_count: model.count(&t(), gt).unwrap(),
        prepared: model
            .prepared_transactions()
            .into_iter()
            .map(|p| p.xid)
            .collect(),
    }
}

/// Runs the workload with the `k`th fsync failing, then a power loss of kind `crash`; returns
/// whether the fault was reached.
pub fn crash_at<C: EngineConfig + Clone>(config: &C, k: u64, crash: Crash) -> bool {
    let open = |fs: &SimFs| JournaledStore::open_with_fs(config.clone(), Arc::new(fs.clone()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let fs = SimFs::new();
        let store = open(&fs).unwrap();
        let engine = store.kind();
        fs.control().fail_fsync_in(k);
        let mut model = Model::new();
        let mut in_flight = None;
        for step in workload() {
            let r = run_step(&store, &step).await;
            match r {
                Ok(()) => apply_model(&mut model, &step),
                Err(e) => {
                    assert!(
                        fs.control().fsyncs() >= k - 1,
                        "step {step:?} failed before the injected fault: {e}"
                    );
                    in_flight = Some(step);
                    break;
                }
            }
        }
        let reached = in_flight.is_some();
        fs.power_loss(crash);
        fs.control().clear_faults();
        drop(store);
        let store = open(&fs).unwrap_or_else(|e| panic!("{engine}: reopen after crash at fsync {k} ({crash:?}) failed: {e}"));
        let got = observe(&store).await;
        model.reopen();
        let without = observe_model(&mut model);
        let with = in_flight.as_ref().map(|step| {
            let mut m = model.clone();
            apply_model(&mut m, step);
            m.reopen();
            observe_model(&mut m)
        });
        assert!(
            got == without || with.as_ref() == Some(&got),
            "{engine}: crash at fsync {k} ({crash:?}) during {in_flight:?}:\n got      {got:?}\n expected {without:?}\n or       {with:?}"
        );
        // The reopened store keeps working and survives a clean reopen too.
        store.queue_store(&q()).await.unwrap().add(msg(&q(), 999)).await.unwrap();
        store.close().await.unwrap();
        let store = open(&fs).unwrap();
        assert!(store.queue_store(&q()).await.unwrap().get(&MessageId::new("p", 999)).await.is_ok());
        reached
    })
}

/// Runs [`crash_at`] for every fsync the workload makes; returns how many it made.
pub fn every_fsync<C: EngineConfig + Clone>(config: &C, crash: Crash) -> u64 {
    let mut k = 1;
    while crash_at(config, k, crash) {
        k += 1;
    }
    k
}
