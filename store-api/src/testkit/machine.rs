//! The model-based test: random operation sequences run against the engine and the reference
//! [`Model`] side by side; every result and the whole observable state must agree after each
//! step. proptest shrinks a failure to a minimal sequence.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use super::model::Model;
use super::{Failure, StoreFactory};
use crate::error::Result;
use crate::message::{Body, Destination, Message, MessageId};
use crate::order::DeliveryOrder;
use crate::store::PersistenceAdapter;
use crate::transaction::{SubscriptionInfo, SubscriptionKey, TransactionId, TxOp, Xid};

/// How many sequences to try and how long they may be.
#[derive(Debug, Clone, Copy)]
pub struct ModelTestConfig {
    pub cases: u32,
    pub max_ops: usize,
    /// Whether sequences prepare XA transactions. Off only for an engine mode documented to
    /// refuse XA prepare (the JDBC engine's openwire format).
    pub xa_prepare: bool,
    /// Whether sequences close and reopen the store. Off only for an engine mode whose
    /// documented reopen semantics are weaker than the model's (the JDBC engine's openwire
    /// format, whose out-of-order durable acks are held in memory); its scenarios' reopen
    /// variants say what does hold.
    pub reopen: bool,
}

impl Default for ModelTestConfig {
    fn default() -> Self {
        ModelTestConfig {
            cases: 48,
            max_ops: 60,
            xa_prepare: true,
            reopen: true,
        }
    }
}

impl ModelTestConfig {
    /// For an engine on a database server (MariaDB, PostgreSQL): a quarter of the cases. Each
    /// case there costs a schema and a round trip per step, so the default took five minutes
    /// of CI per engine, while the engine's logic, the same for every dialect, runs the full
    /// count on SQLite. `MODEL_CASES` raises it for a run by hand.
    pub fn database_server() -> Self {
        ModelTestConfig {
            cases: 12,
            ..ModelTestConfig::default()
        }
    }
}

const QUEUES: u8 = 2;
const SUBS: u8 = 3;
const TX_SLOTS: u8 = 2;

/// One step. Indexes (`q`, `s`, `x`) pick a queue, subscription or transaction slot; `pick`
/// chooses among the messages the model holds at that moment, so a shrunk sequence stays
/// meaningful. `Cursor` and `SubCursor` read in arrival order when `arrival`.
#[derive(Debug, Clone)]
enum Op {
    Add { q: u8, priority: u8, size: u16 },
    AddDuplicate { q: u8, pick: u16 },
    Ack { q: u8, pick: u16 },
    AckUnknown { q: u8 },
    Cursor { q: u8, max: u8, arrival: bool },
    ResetCursor { q: u8 },
    Purge { q: u8 },
    TopicAdd { priority: u8 },
    Subscribe { s: u8, retroactive: bool },
    Unsubscribe { s: u8 },
    TopicAck { s: u8, pick: u16 },
    SubCursor { s: u8, max: u8, arrival: bool },
    Begin { x: u8 },
    TxAdd { x: u8, q: u8, priority: u8 },
    TxAck { x: u8, q: u8, pick: u16 },
    TxTopicAdd { x: u8 },
    TxTopicAck { x: u8, s: u8, pick: u16 },
    Prepare { x: u8 },
    Commit { x: u8 },
    Rollback { x: u8 },
    Reopen,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let q = 0..QUEUES;
    let s = 0..SUBS;
    let x = 0..TX_SLOTS;
    let prio = 0u8..=9;
    prop_oneof![
        6 => (q.clone(), prio.clone(), 0u16..300).prop_map(|(q, priority, size)| Op::Add { q, priority, size }),
        1 => (q.clone(), any::<u16>()).prop_map(|(q, pick)| Op::AddDuplicate { q, pick }),
        4 => (q.clone(), any::<u16>()).prop_map(|(q, pick)| Op::Ack { q, pick }),
        1 => q.clone().prop_map(|q| Op::AckUnknown { q }),
        3 => (q.clone(), 0u8..5, any::<bool>())
            .prop_map(|(q, max, arrival)| Op::Cursor { q, max, arrival }),
        1 => q.clone().prop_map(|q| Op::ResetCursor { q }),
        1 => q.clone().prop_map(|q| Op::Purge { q }),
        4 => prio.clone().prop_map(|priority| Op::TopicAdd { priority }),
        2 => (s.clone(), any::<bool>()).prop_map(|(s, retroactive)| Op::Subscribe { s, retroactive }),
        1 => s.clone().prop_map(|s| Op::Unsubscribe { s }),
        4 => (s.clone(), any::<u16>()).prop_map(|(s, pick)| Op::TopicAck { s, pick }),
        2 => (s.clone(), 0u8..5, any::<bool>())
            .prop_map(|(s, max, arrival)| Op::SubCursor { s, max, arrival }),
        2 => x.clone().prop_map(|x| Op::Begin { x }),
        3 => (x.clone(), q.clone(), prio).prop_map(|(x, q, priority)| Op::TxAdd { x, q, priority }),
        2 => (x.clone(), q, any::<u16>()).prop_map(|(x, q, pick)| Op::TxAck { x, q, pick }),
        1 => x.clone().prop_map(|x| Op::TxTopicAdd { x }),
        1 => (x.clone(), s, any::<u16>()).prop_map(|(x, s, pick)| Op::TxTopicAck { x, s, pick }),
        1 => x.clone().prop_map(|x| Op::Prepare { x }),
        2 => x.clone().prop_map(|x| Op::Commit { x }),
        1 => x.prop_map(|x| Op::Rollback { x }),
        1 => Just(Op::Reopen),
    ]
}

fn order_of(arrival: bool) -> DeliveryOrder {
    if arrival {
        DeliveryOrder::Arrival
    } else {
        DeliveryOrder::Priority
    }
}

fn queue(q: u8) -> Destination {
    Destination::queue(format!("model.q{q}"))
}

fn topic() -> Destination {
    Destination::topic("model.t")
}

fn sub_key(s: u8) -> SubscriptionKey {
    SubscriptionKey::new("model-client", format!("sub{s}"))
}

fn xid(x: u8) -> Xid {
    Xid {
        format_id: 7,
        global_id: vec![x],
        branch_qualifier: vec![1],
    }
}

fn tx_id(x: u8) -> TransactionId {
    if x < TX_SLOTS / 2 {
        TransactionId::Local(u64::from(x))
    } else {
        TransactionId::Xa(xid(x))
    }
}

/// A message stripped of its store-assigned sequence: engines may number differently from the
/// model, only the order must agree.
fn unsequenced(mut m: Message) -> Message {
    m.sequence = 0;
    m
}

fn ids(ms: &[Message]) -> Vec<MessageId> {
    ms.iter().map(|m| m.id.clone()).collect()
}

/// Compares the engine's and the model's result of one step.
fn agree<T: PartialEq + std::fmt::Debug>(
    step: usize,
    op: &Op,
    engine: Result<T>,
    model: Result<T>,
) -> std::result::Result<(), Failure> {
    match (&engine, &model) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (Err(a), Err(b)) if a.kind() == b.kind() => Ok(()),
        _ => Err(Failure(format!(
            "step {step} {op:?}: the engine returned {engine:?}, the model {model:?}"
        ))),
    }
}

struct Runner {
    factory: Box<dyn StoreFactory>,
    store: Arc<dyn PersistenceAdapter>,
    model: Model,
    next_id: u64,
}

impl Runner {
    fn message(&mut self, d: &Destination, priority: u8, size: u16) -> Message {
        self.next_id += 1;
        let mut m = Message::new(
            MessageId::new("model-producer", self.next_id),
            d.clone(),
            Body::Text("x".repeat(usize::from(size))),
        );
        m.priority = priority;
        m
    }

    fn model_queue(&mut self, d: &Destination) -> Vec<Message> {
        let g = self.model.open_destination(d);
        self.model
            .browse(d, g, None, usize::MAX)
            .unwrap_or_default()
    }

    fn model_pending(&mut self, s: u8) -> Vec<Message> {
        let d = topic();
        let g = self.model.open_destination(&d);
        self.model
            .browse_subscription(&d, g, &sub_key(s), None, usize::MAX)
            .unwrap_or_default()
    }

    fn pick(ms: &[Message], pick: u16) -> MessageId {
        if ms.is_empty() {
            MessageId::new("nobody", u64::from(pick))
        } else {
            ms[usize::from(pick) % ms.len()].id.clone()
        }
    }

    async fn step(&mut self, step: usize, op: &Op) -> std::result::Result<(), Failure> {
        let store = self.store.clone();
        let t = topic();
        match *op {
            Op::Add { q, priority, size } => {
                let d = queue(q);
                let m = self.message(&d, priority, size);
                let g = self.model.open_destination(&d);
                let e = store
                    .queue_store(&d)
                    .await?
                    .add(m.clone())
                    .await
                    .map(|_| ());
                agree(step, op, e, self.model.add(&d, g, m).map(|_| ()))
            }
            Op::AddDuplicate { q, pick } => {
                let d = queue(q);
                let existing = self.model_queue(&d);
                if existing.is_empty() {
                    return Ok(());
                }
                let mut m = self.message(&d, 4, 1);
                m.id = Self::pick(&existing, pick);
                let g = self.model.open_destination(&d);
                let e = store
                    .queue_store(&d)
                    .await?
                    .add(m.clone())
                    .await
                    .map(|_| ());
                agree(step, op, e, self.model.add(&d, g, m).map(|_| ()))
            }
            Op::Ack { q, pick } => {
                let d = queue(q);
                let id = Self::pick(&self.model_queue(&d), pick);
                let g = self.model.open_destination(&d);
                let e = store.queue_store(&d).await?.remove(&id).await;
                agree(step, op, e, self.model.remove(&d, g, &id))
            }
            Op::AckUnknown { q } => {
                let d = queue(q);
                let id = MessageId::new("nobody", 0);
                let g = self.model.open_destination(&d);
                let e = store.queue_store(&d).await?.remove(&id).await;
                agree(step, op, e, self.model.remove(&d, g, &id))
            }
            Op::Cursor { q, max, arrival } => {
                let d = queue(q);
                let g = self.model.open_destination(&d);
                let order = order_of(arrival);
                let e = store
                    .queue_store(&d)
                    .await?
                    .recover_next_ordered(order, usize::from(max))
                    .await;
                let m = self.model.recover_next(&d, g, order, usize::from(max));
                agree(step, op, e.map(|v| ids(&v)), m.map(|v| ids(&v)))
            }
            Op::ResetCursor { q } => {
                let d = queue(q);
                let g = self.model.open_destination(&d);
                let e = store.queue_store(&d).await?.reset_cursor().await;
                agree(step, op, e, self.model.reset_cursor(&d, g))
            }
            Op::Purge { q } => {
                let d = queue(q);
                let g = self.model.open_destination(&d);
                let e = store.queue_store(&d).await?.purge().await;
                agree(step, op, e, self.model.purge(&d, g))
            }
            Op::TopicAdd { priority } => {
                let m = self.message(&t, priority, 10);
                let g = self.model.open_destination(&t);
                let e = store
                    .topic_store(&t)
                    .await?
                    .add(m.clone())
                    .await
                    .map(|_| ());
                agree(step, op, e, self.model.add(&t, g, m).map(|_| ()))
            }
            Op::Subscribe { s, retroactive } => {
                let info = SubscriptionInfo::new(sub_key(s), Some(format!("n > {s}")));
                let g = self.model.open_destination(&t);
                let e = store
                    .topic_store(&t)
                    .await?
                    .add_subscription(info.clone(), retroactive)
                    .await;
                agree(
                    step,
                    op,
                    e,
                    self.model.add_subscription(&t, g, info, retroactive),
                )
            }
            Op::Unsubscribe { s } => {
                let g = self.model.open_destination(&t);
                let e = store
                    .topic_store(&t)
                    .await?
                    .delete_subscription(&sub_key(s))
                    .await;
                agree(
                    step,
                    op,
                    e,
                    self.model.delete_subscription(&t, g, &sub_key(s)),
                )
            }
            Op::TopicAck { s, pick } => {
                let id = Self::pick(&self.model_pending(s), pick);
                let g = self.model.open_destination(&t);
                let e = store
                    .topic_store(&t)
                    .await?
                    .acknowledge(&sub_key(s), &id)
                    .await;
                agree(step, op, e, self.model.acknowledge(&t, g, &sub_key(s), &id))
            }
            Op::SubCursor { s, max, arrival } => {
                let g = self.model.open_destination(&t);
                let order = order_of(arrival);
                let e = store
                    .topic_store(&t)
                    .await?
                    .recover_next_ordered(&sub_key(s), order, usize::from(max))
                    .await;
                let m = self.model.recover_next_subscription(
                    &t,
                    g,
                    &sub_key(s),
                    order,
                    usize::from(max),
                );
                agree(step, op, e.map(|v| ids(&v)), m.map(|v| ids(&v)))
            }
            Op::Begin { x } => {
                let e = store.begin(&tx_id(x)).await;
                agree(step, op, e, self.model.begin(&tx_id(x)))
            }
            Op::TxAdd { x, q, priority } => {
                let m = self.message(&queue(q), priority, 5);
                let e = store.enlist(&tx_id(x), TxOp::Add(m.clone())).await;
                agree(step, op, e, self.model.enlist(&tx_id(x), TxOp::Add(m)))
            }
            Op::TxAck { x, q, pick } => {
                let d = queue(q);
                let id = Self::pick(&self.model_queue(&d), pick);
                let o = TxOp::QueueAck { destination: d, id };
                let e = store.enlist(&tx_id(x), o.clone()).await;
                agree(step, op, e, self.model.enlist(&tx_id(x), o))
            }
            Op::TxTopicAdd { x } => {
                let m = self.message(&t, 4, 5);
                let e = store.enlist(&tx_id(x), TxOp::Add(m.clone())).await;
                agree(step, op, e, self.model.enlist(&tx_id(x), TxOp::Add(m)))
            }
            Op::TxTopicAck { x, s, pick } => {
                let id = Self::pick(&self.model_pending(s), pick);
                let o = TxOp::TopicAck {
                    destination: t,
                    subscription: sub_key(s),
                    id,
                };
                let e = store.enlist(&tx_id(x), o.clone()).await;
                agree(step, op, e, self.model.enlist(&tx_id(x), o))
            }
            Op::Prepare { x } => {
                let e = store.prepare(&xid(x)).await;
                agree(step, op, e, self.model.prepare(&xid(x)))
            }
            Op::Commit { x } => {
                let e = store.commit(&tx_id(x)).await;
                agree(step, op, e, self.model.commit(&tx_id(x)))
            }
            Op::Rollback { x } => {
                let e = store.rollback(&tx_id(x)).await;
                agree(step, op, e, self.model.rollback(&tx_id(x)))
            }
            Op::Reopen => {
                if self.factory.durable() {
                    self.store.close().await?;
                    self.store = self.factory.open().await?;
                    self.model.reopen();
                }
                Ok(())
            }
        }
    }

    /// The whole observable state must agree: every queue's contents in order with exact counts
    /// and bytes, every subscription's pending messages, the topic's stats, prepared transactions.
    async fn compare_state(&mut self, step: usize, op: &Op) -> std::result::Result<(), Failure> {
        let fail = |what: &str, e: String, m: String| {
            Failure(format!(
                "after step {step} {op:?}: {what} differs: engine {e}, model {m}"
            ))
        };
        for q in 0..QUEUES {
            let d = queue(q);
            let g = self.model.open_destination(&d);
            let qs = self.store.queue_store(&d).await?;
            let engine: Vec<Message> = qs
                .browse(None, usize::MAX)
                .await?
                .into_iter()
                .map(unsequenced)
                .collect();
            let model: Vec<Message> = self
                .model
                .browse(&d, g, None, usize::MAX)?
                .into_iter()
                .map(unsequenced)
                .collect();
            if engine != model {
                return Err(fail(
                    &format!("{d} contents"),
                    format!("{:?}", ids(&engine)),
                    format!("{:?}", ids(&model)),
                ));
            }
            // Counted against the model's messages, not the engine's own browse. The encoded
            // size includes the sequence, which each engine assigns in its own way, so each
            // model message is measured with the sequence the engine gave that id.
            let (count, bytes) = (qs.count().await?, qs.bytes().await?);
            let engine_sequence: std::collections::HashMap<MessageId, u64> = qs
                .browse(None, usize::MAX)
                .await?
                .into_iter()
                .map(|m| (m.id, m.sequence))
                .collect();
            let model_bytes: u64 = model
                .iter()
                .map(|m| {
                    let mut m = m.clone();
                    m.sequence = engine_sequence.get(&m.id).copied().unwrap_or(0);
                    m.size()
                })
                .sum();
            if count != model.len() as u64 || bytes != model_bytes {
                return Err(fail(
                    &format!("{d} count/bytes"),
                    format!("{count}/{bytes}"),
                    format!("{}/{model_bytes}", model.len()),
                ));
            }
        }
        let t = topic();
        let g = self.model.open_destination(&t);
        let ts = self.store.topic_store(&t).await?;
        let engine_subs = ts.subscriptions().await?;
        let model_subs = self.model.subscriptions(&t, g)?;
        if engine_subs != model_subs {
            return Err(fail(
                "subscriptions",
                format!("{engine_subs:?}"),
                format!("{model_subs:?}"),
            ));
        }
        for s in &model_subs {
            let engine = ids(&ts.browse_subscription(&s.key, None, usize::MAX).await?);
            let model = ids(&self
                .model
                .browse_subscription(&t, g, &s.key, None, usize::MAX)?);
            if engine != model {
                return Err(fail(
                    &format!("pending of {}", s.key),
                    format!("{engine:?}"),
                    format!("{model:?}"),
                ));
            }
            let count = ts.pending_count(&s.key).await?;
            if count != model.len() as u64 {
                return Err(fail(
                    &format!("pending count of {}", s.key),
                    count.to_string(),
                    model.len().to_string(),
                ));
            }
        }
        let (engine_count, model_count) = (ts.count().await?, self.model.count(&t, g)?);
        if engine_count != model_count {
            return Err(fail(
                "topic count",
                engine_count.to_string(),
                model_count.to_string(),
            ));
        }
        let engine_prepared = self.store.prepared_transactions().await?;
        let model_prepared = self.model.prepared_transactions();
        if engine_prepared != model_prepared {
            return Err(fail(
                "prepared transactions",
                format!("{engine_prepared:?}"),
                format!("{model_prepared:?}"),
            ));
        }
        Ok(())
    }
}

async fn run_ops(factory: Box<dyn StoreFactory>, ops: &[Op]) -> std::result::Result<(), Failure> {
    let store = factory.open().await?;
    let mut runner = Runner {
        factory,
        store,
        model: Model::new(),
        next_id: 0,
    };
    let mut result = Ok(());
    for (i, op) in ops.iter().enumerate() {
        result = runner.step(i, op).await;
        if result.is_ok() {
            result = runner.compare_state(i, op).await;
        }
        if result.is_err() {
            break;
        }
    }
    let closed = runner.store.close().await.map_err(Failure::from);
    result.and(closed)
}

/// Runs the model-based test from one seed and returns the minimal failing sequence, if any. The
/// same seed runs the same sequences, so a failure found once can be replayed.
pub fn try_model_test<M, F>(
    make_factory: M,
    config: ModelTestConfig,
    seed: u64,
) -> std::result::Result<(), String>
where
    M: Fn() -> F,
    F: StoreFactory + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    let proptest_config = Config {
        cases: config.cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        proptest_config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed)),
    );
    let (xa_prepare, reopen) = (config.xa_prepare, config.reopen);
    let ops = op_strategy().prop_filter("outside the engine's profile", move |op| match op {
        Op::Prepare { .. } => xa_prepare,
        Op::Reopen => reopen,
        _ => true,
    });
    let strategy = proptest::collection::vec(ops, 1..config.max_ops.max(2));
    runner
        .run(&strategy, |ops| {
            rt.block_on(run_ops(Box::new(make_factory()), &ops))
                .map_err(|f| TestCaseError::fail(f.0))
        })
        .map_err(|e| e.to_string())
}

/// Where seeds that once failed are kept, relative to the package the test runs in (cargo runs
/// tests there). Each is replayed before the run's new seed, like proptest's regression files;
/// commit the file so everyone replays them.
const SEEDS_FILE: &str = "model-seeds.txt";

/// Runs the model-based test and panics with the minimal failing sequence. It replays the seeds
/// in [`SEEDS_FILE`], then draws a new one (or takes `MODEL_SEED`), printed so a failure can be
/// rerun; a failing new seed is appended to the file. Under `CI=true` it tries twice the cases,
/// each up to half again as long; `MODEL_CASES=n` sets the number of cases.
pub fn model_test<M, F>(make_factory: M, config: ModelTestConfig)
where
    M: Fn() -> F,
    F: StoreFactory + 'static,
{
    if let Some(reason) = make_factory().skip_reason() {
        super::skip(format!("model-based test: {reason}"));
        return;
    }
    let config = if super::under_ci() {
        ModelTestConfig {
            cases: config.cases * 2,
            max_ops: config.max_ops * 3 / 2,
            ..config
        }
    } else {
        config
    };
    let config = match std::env::var("MODEL_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
    {
        Some(cases) => ModelTestConfig { cases, ..config },
        None => config,
    };
    let kept = std::fs::read_to_string(SEEDS_FILE).unwrap_or_default();
    for seed in kept.lines().filter_map(parse_seed) {
        if let Err(e) = try_model_test(&make_factory, config, seed) {
            panic!("model-based test failed again on kept seed {seed:#018x} ({SEEDS_FILE}): {e}");
        }
    }
    let seed = match std::env::var("MODEL_SEED")
        .ok()
        .as_deref()
        .and_then(parse_seed)
    {
        Some(seed) => seed,
        None => fresh_seed(),
    };
    eprintln!(
        "model-based test: seed {seed:#018x} ({} cases of up to {} steps; rerun with MODEL_SEED={seed:#018x})",
        config.cases, config.max_ops
    );
    if let Err(e) = try_model_test(&make_factory, config, seed) {
        let line = format!("{seed:#018x}\n");
        let kept_now = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(SEEDS_FILE)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
        let kept_note = match kept_now {
            Ok(()) => format!("kept in {SEEDS_FILE}"),
            Err(err) => format!("could not be kept in {SEEDS_FILE}: {err}"),
        };
        panic!("model-based test failed with seed {seed:#018x} ({kept_note}): {e}");
    }
}

/// A seed as written in the seeds file or `MODEL_SEED`: hexadecimal with `0x`, or decimal;
/// anything after `#` is a comment.
fn parse_seed(text: &str) -> Option<u64> {
    let text = text.split('#').next()?.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None if !text.is_empty() => text.parse().ok(),
        None => None,
    }
}

/// A seed no earlier run is likely to have drawn: the standard library's per-process random
/// hash keys mixed with the clock, so no random-number crate is needed for one number.
fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(now);
    h.finish()
}

/// The 32 bytes ChaCha wants, spread from one `u64` by SplitMix64 so nearby seeds differ fully.
fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut state = seed;
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_read_as_written_and_comments_ignored() {
        assert_eq!(parse_seed("0x00000000000000ff"), Some(255));
        assert_eq!(parse_seed("42 # found on kahadb"), Some(42));
        assert_eq!(parse_seed("# only a comment"), None);
        assert_eq!(parse_seed("0xnot-hex"), None);
        assert_ne!(seed_bytes(1), seed_bytes(2));
    }
}
