//! The conformance kit: every guarantee of the crate docs as a named scenario, a model-based
//! random test against the reference [`model::Model`], and the machinery to run both against an
//! engine.
//!
//! An engine's tests provide a [`StoreFactory`] (a fresh place for each scenario, that can be
//! opened, closed and opened again) and expand [`conformance_tests!`](crate::conformance_tests),
//! which makes one `#[test]` per scenario and mode:
//!
//! ```ignore
//! store_api::conformance_tests!(MyFactory::new(), durable = true);
//! ```
//!
//! `plain::<scenario>` runs the scenario on one open store. `reopen::<scenario>` runs it again
//! closing and reopening the store at each of the scenario's reopen points; for an engine that
//! is not durable those tests are generated as ignored, so the skip shows in the test output.

pub mod damage;
mod machine;
pub mod model;
pub mod model_store;
mod scenarios;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{ErrorKind, Result, StoreError};
use crate::message::{Body, Destination, Message, MessageId, Value};
use crate::store::{PersistenceAdapter, QueueStore, TopicStore};

pub use machine::{ModelTestConfig, model_test, try_model_test};

/// Whether the tests run under CI (`CI=true`, as `.ci/run` and most CI services set it).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The one way a test says it cannot run here for want of something the machine lacks (a
/// database URL, a browser, a client library, root): locally it prints `SKIPPED: <why>` and the
/// caller returns; under CI it fails the test instead, so a missing database or browser shows
/// red rather than hiding behind a pass. A test that does not apply to an engine by design (the
/// reopen variant of a non-durable store) is not a skip and does not come here.
pub fn skip(why: impl fmt::Display) {
    if under_ci() {
        panic!("this test would be skipped, which CI does not allow: {why}");
    }
    eprintln!("SKIPPED: {why}");
}
pub use model_store::{ModelFactory, ModelStore};

/// Opens the store under test at one place, as often as asked. The first open starts empty;
/// each later open (after the kit closed the previous one) must see what was stored before
/// when the engine is durable.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    async fn open(&self) -> Result<Arc<dyn PersistenceAdapter>>;

    /// Whether contents survive close and open. Reopen variants run only for durable engines.
    fn durable(&self) -> bool;

    /// Why the engine cannot be tested here (say, the database URL it needs is not set). The
    /// kit then goes through [`skip`]: `SKIPPED: <reason>` locally, a failure under CI.
    fn skip_reason(&self) -> Option<String> {
        None
    }
}

/// Whether a scenario reopens the store at its reopen points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Reopen,
}

/// Why a scenario failed.
#[derive(Debug)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure(format!("unexpected store error: {e}"))
    }
}

/// The outcome of a scenario.
pub type Outcome = std::result::Result<(), Failure>;

/// Fails the scenario unless the condition holds.
#[macro_export]
macro_rules! kit_check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::testkit::Failure(format!($($fmt)+)));
        }
    };
}

/// Fails the scenario unless the two values are equal.
#[macro_export]
macro_rules! kit_eq {
    ($left:expr, $right:expr, $($fmt:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err($crate::testkit::Failure(format!(
                "{}: got {:?}, expected {:?}",
                format!($($fmt)+),
                l,
                r
            )));
        }
    }};
}

/// Checks that a store call failed with the given [`ErrorKind`].
pub fn expect_err<T: fmt::Debug>(r: Result<T>, kind: ErrorKind, what: &str) -> Outcome {
    match r {
        Err(e) if e.kind() == kind => Ok(()),
        Err(e) => Err(Failure(format!(
            "{what}: expected a {kind:?} error, got: {e}"
        ))),
        Ok(v) => Err(Failure(format!(
            "{what}: expected a {kind:?} error, got Ok({v:?})"
        ))),
    }
}

/// The state one scenario runs in: the factory, the open store and the mode.
pub struct Ctx {
    factory: Box<dyn StoreFactory>,
    store: Arc<dyn PersistenceAdapter>,
    mode: Mode,
    reopens: usize,
}

impl Ctx {
    pub async fn new(factory: Box<dyn StoreFactory>, mode: Mode) -> Result<Ctx> {
        let store = factory.open().await?;
        Ok(Ctx {
            factory,
            store,
            mode,
            reopens: 0,
        })
    }

    pub fn store(&self) -> &Arc<dyn PersistenceAdapter> {
        &self.store
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// True when state that only lives in memory (open transactions, cursors) was lost at a
    /// reopen point.
    pub fn reopened(&self) -> bool {
        self.reopens > 0
    }

    /// A reopen point: in [`Mode::Reopen`] the store is closed and opened again; handles taken
    /// before are then closed and must be taken again.
    pub async fn reopen_point(&mut self) -> Result<()> {
        if self.mode == Mode::Reopen {
            self.store.close().await?;
            self.store = self.factory.open().await?;
            self.reopens += 1;
        }
        Ok(())
    }

    /// Closes and reopens whatever the mode.
    pub async fn reopen_now(&mut self) -> Result<()> {
        self.store.close().await?;
        self.store = self.factory.open().await?;
        self.reopens += 1;
        Ok(())
    }

    pub fn durable(&self) -> bool {
        self.factory.durable()
    }

    pub async fn queue(&self, name: &str) -> Result<Arc<dyn QueueStore>> {
        self.store.queue_store(&Destination::queue(name)).await
    }

    pub async fn topic(&self, name: &str) -> Result<Arc<dyn TopicStore>> {
        self.store.topic_store(&Destination::topic(name)).await
    }

    /// Checks that every destination's counts and bytes agree with what it returns.
    pub async fn check_consistency(&self) -> Outcome {
        for d in self.store.destinations().await? {
            if d.is_queue() {
                let q = self.store.queue_store(&d).await?;
                let all = q.browse(None, usize::MAX).await?;
                kit_eq!(q.count().await?, all.len() as u64, "count of {d}");
                kit_eq!(
                    q.bytes().await?,
                    all.iter().map(Message::size).sum::<u64>(),
                    "bytes of {d}"
                );
            } else {
                let t = self.store.topic_store(&d).await?;
                let mut kept = std::collections::BTreeMap::new();
                for s in t.subscriptions().await? {
                    let pending = t.browse_subscription(&s.key, None, usize::MAX).await?;
                    kit_eq!(
                        t.pending_count(&s.key).await?,
                        pending.len() as u64,
                        "pending count of {} on {d}",
                        s.key
                    );
                    kit_eq!(
                        t.pending_bytes(&s.key).await?,
                        pending.iter().map(Message::size).sum::<u64>(),
                        "pending bytes of {} on {d}",
                        s.key
                    );
                    for m in pending {
                        kept.insert(m.sequence, m.size());
                    }
                }
                kit_eq!(
                    t.count().await?,
                    kept.len() as u64,
                    "count of {d} (messages pending for some subscription)"
                );
                kit_eq!(t.bytes().await?, kept.values().sum::<u64>(), "bytes of {d}");
            }
        }
        Ok(())
    }
}

/// A message from producer `producer-1` with sequence `n` and a small text body.
pub fn message(destination: &Destination, n: u64) -> Message {
    Message::new(
        MessageId::new("producer-1", n),
        destination.clone(),
        Body::Text(format!("message {n}")),
    )
}

/// A message with every header set and a property of every type.
pub fn full_message(destination: &Destination, n: u64) -> Message {
    let mut m = message(destination, n);
    m.priority = 7;
    m.timestamp = 1_700_000_000_123;
    m.expiration = 1_900_000_000_456;
    m.persistent = true;
    m.redelivery_count = 3;
    m.correlation_id = Some("corr-ü-1".into());
    m.reply_to = Some(Destination::topic("replies"));
    m.message_type = Some("Order".into());
    m.group_id = Some("group-A".into());
    m.group_seq = 42;
    for (k, v) in [
        ("bool", Value::Bool(true)),
        ("i8", Value::I8(-8)),
        ("i16", Value::I16(-1600)),
        ("i32", Value::I32(-320_000)),
        ("i64", Value::I64(i64::MIN)),
        ("f32", Value::F32(1.5)),
        ("f64", Value::F64(-2.25e300)),
        ("string", Value::String("wert €".into())),
        ("bytes", Value::Bytes(Bytes::from_static(&[0, 1, 2, 255]))),
    ] {
        m.properties.insert(k.into(), v);
    }
    m
}

/// The producer sequences of messages, for compact comparisons.
pub fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.id.producer_seq).collect()
}

/// The ids' producer sequences.
pub fn id_seqs(ids: &[MessageId]) -> Vec<u64> {
    ids.iter().map(|m| m.producer_seq).collect()
}

pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => panic!("cannot start a tokio runtime for the conformance kit: {e}"),
    }
}

/// Runs one scenario by name in a fresh store from `factory`, then checks consistency and closes
/// the store. Returns the failure, if any.
pub async fn run_scenario_async(name: &str, mode: Mode, factory: Box<dyn StoreFactory>) -> Outcome {
    let mut ctx = Ctx::new(factory, mode).await?;
    scenarios::run(name, &mut ctx).await?;
    ctx.check_consistency().await?;
    ctx.store.close().await?;
    Ok(())
}

/// The entry point the generated tests call: runs the scenario and panics with the failure.
pub fn run_scenario<F, M>(name: &str, mode: Mode, make_factory: M)
where
    F: StoreFactory + 'static,
    M: FnOnce() -> F,
{
    let factory = make_factory();
    if let Some(reason) = factory.skip_reason() {
        skip(format!("{name} ({mode:?}): {reason}"));
        return;
    }
    if mode == Mode::Reopen && !factory.durable() {
        // Not a skip: reopening a store that keeps nothing has nothing to check.
        eprintln!("not applicable: reopen variant of {name}: the store is not durable");
        return;
    }
    if let Err(f) = block_on(run_scenario_async(name, mode, Box::new(factory))) {
        panic!("conformance scenario `{name}` ({mode:?}) failed: {f}");
    }
}

/// Every scenario's name, in the order they are listed.
pub fn scenario_names() -> &'static [&'static str] {
    scenarios::NAMES
}

/// Runs every scenario in `mode` and returns the names of those that failed, with why.
pub fn run_all<M, F>(mode: Mode, make_factory: M) -> Vec<(&'static str, Failure)>
where
    F: StoreFactory + 'static,
    M: Fn() -> F,
{
    let mut failed = Vec::new();
    block_on(async {
        for name in scenario_names() {
            if let Err(f) = run_scenario_async(name, mode, Box::new(make_factory())).await {
                failed.push((*name, f));
            }
        }
    });
    failed
}

/// Generates the whole conformance suite for an engine: `conformance::plain::<scenario>` and
/// `conformance::reopen::<scenario>` tests, plus `conformance::model_based`.
///
/// `$factory` is an expression evaluated afresh for every test, giving a [`StoreFactory`] over a
/// new, empty place. With `durable = false` the reopen tests are generated as ignored. An
/// optional `model = <ModelTestConfig>` sets the model-based test's size (the default:
/// [`ModelTestConfig::default`]; engines on a database server take
/// [`ModelTestConfig::database_server`]).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr, durable = true) => {
        $crate::conformance_tests!($factory, durable = true, model = $crate::testkit::ModelTestConfig::default());
    };
    ($factory:expr, durable = false) => {
        $crate::conformance_tests!($factory, durable = false, model = $crate::testkit::ModelTestConfig::default());
    };
    ($factory:expr, durable = true, model = $model:expr) => {
        $crate::__for_each_scenario!(__conformance_module { $factory, [allow(unused)], $model });
    };
    ($factory:expr, durable = false, model = $model:expr) => {
        $crate::__for_each_scenario!(__conformance_module {
            $factory,
            [ignore = "the store is not durable: reopen variants do not apply"],
            $model
        });
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_module {
    ($factory:expr, $reopen_attr:tt, $model:expr; $($name:ident),* $(,)?) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;

            mod plain {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[test]
                    fn $name() {
                        $crate::testkit::run_scenario(stringify!($name), $crate::testkit::Mode::Plain, || $factory);
                    }
                )*
            }

            mod reopen {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[test]
                    #$reopen_attr
                    fn $name() {
                        $crate::testkit::run_scenario(stringify!($name), $crate::testkit::Mode::Reopen, || $factory);
                    }
                )*
            }

            #[test]
            fn model_based() {
                $crate::testkit::model_test(|| $factory, $model);
            }
        }
    };
}
