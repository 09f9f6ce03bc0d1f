//! The hot paths of wildcards and the scheduler (issue 25), on broker-core over the memory
//! store, so that the figures are the broker's own work and not a disk's:
//!
//! - `wildcard/match_new_topic_against_1000_filters`: a topic appearing for the first time is
//!   matched against every wildcard subscription (1,000) to know who gets its messages;
//! - `wildcard/match_new_filter_against_10000_topics`: a new wildcard subscription is matched
//!   against every existing topic (10,000);
//! - `wildcard/publish_10000_topics_1000_wildcard_subscribers`: one message to each of 10,000
//!   topics `market.<region>.<symbol>` with 1,000 wildcard subscribers (`market.<r>.*` and
//!   `market.*.<s>`, 10 per topic): the time until all 100,000 deliveries have arrived;
//! - `scheduler/100000_due_in_the_same_second`: 100,000 scheduled messages all due at the same
//!   instant: the time from that instant until the last has reached its consumer.
//!
//!     cargo bench -p broker-core --bench destinations

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use broker_core::destination_filter::DestinationFilter;
use broker_core::{AckMode, Broker, CoreConfig, Destination, NoLock, OpenedStore, Outgoing, Value};
use criterion::{Criterion, criterion_group, criterion_main};
use store_api::PersistenceAdapter;
use store_memory::MemoryStore;

const REGIONS: usize = 100;
const SYMBOLS: usize = 100;
const SUBSCRIBERS: usize = 1000;

fn topic_names() -> Vec<String> {
    (0..REGIONS)
        .flat_map(|r| (0..SYMBOLS).map(move |s| format!("market.{r}.{s}")))
        .collect()
}

/// Subscriber `i`'s wildcard: by region for the first half, by symbol for the second.
fn wildcard(i: usize) -> String {
    if i < SUBSCRIBERS / 2 {
        format!("market.{}.*", i % REGIONS)
    } else {
        format!("market.*.{}", i % SYMBOLS)
    }
}

fn matching(c: &mut Criterion) {
    let filters: Vec<DestinationFilter> = (0..SUBSCRIBERS)
        .map(|i| DestinationFilter::parse(&wildcard(i)).expect("a wildcard"))
        .collect();
    let topics = topic_names();
    let mut g = c.benchmark_group("wildcard");
    g.bench_function("match_new_topic_against_1000_filters", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % topics.len();
            filters.iter().filter(|f| f.matches(&topics[i])).count()
        });
    });
    let filter = DestinationFilter::parse("market.*.42").expect("a wildcard");
    g.bench_function("match_new_filter_against_10000_topics", |b| {
        b.iter(|| topics.iter().filter(|t| filter.matches(t)).count());
    });
    g.finish();
}

async fn broker(config: CoreConfig) -> Broker {
    let store: Arc<dyn PersistenceAdapter> = Arc::new(MemoryStore::new());
    let b = Broker::new(config, Arc::new(NoLock), Arc::new(OpenedStore(store)));
    b.start().await.expect("the broker starts");
    b
}

fn publish(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    // One connection holds all 1,000 subscribers and 10,000 producers here.
    let mut config = CoreConfig::default();
    config.limits.max_consumers_per_connection = 2 * SUBSCRIBERS;
    config.limits.max_producers_per_connection = 2 * REGIONS * SYMBOLS;
    config.limits.max_destinations_created_per_second = u32::MAX;
    let b = rt.block_on(broker(config));
    let conn = rt.block_on(b.connect(None)).expect("a connection");
    let received = Arc::new(AtomicUsize::new(0));
    // The subscribers drain as fast as they can, each in its own task.
    let mut drains = Vec::new();
    for i in 0..SUBSCRIBERS {
        let s = conn.session(AckMode::Auto).expect("a session");
        let consumer = rt
            .block_on(s.consumer(Destination::topic(wildcard(i)), None))
            .expect("a wildcard subscriber");
        let received = Arc::clone(&received);
        drains.push(rt.spawn(async move {
            while let Ok(Some(_)) = consumer.receive().await {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let session = conn.session(AckMode::Auto).expect("a session");
    let producers: Vec<_> = topic_names()
        .into_iter()
        .map(|t| session.producer(Destination::topic(t)).expect("a producer"))
        .collect();
    let per_round = REGIONS * SYMBOLS * 10;
    let mut g = c.benchmark_group("wildcard");
    g.sample_size(10);
    g.bench_function("publish_10000_topics_1000_wildcard_subscribers", |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let before = received.load(Ordering::Relaxed);
                    for p in &producers {
                        let mut m = Outgoing::text("tick");
                        m.persistent = false;
                        p.send(m).await.expect("a send");
                    }
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while received.load(Ordering::Relaxed) < before + per_round {
                        assert!(Instant::now() < deadline, "deliveries stalled");
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                start.elapsed()
            })
        });
    });
    g.finish();
    rt.block_on(conn.close());
    for d in drains {
        d.abort();
    }
    rt.block_on(b.stop());
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn scheduler(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut g = c.benchmark_group("scheduler");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(60));
    g.bench_function("100000_due_in_the_same_second", |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += due_together().await;
                }
                total
            })
        });
    });
    g.finish();
}

/// Messages due together: 100,000 in a timed run (`cargo bench`), 1,000 when `cargo test`
/// runs the benchmark once as a check (criterion's test mode, a debug build, in which 100,000
/// sends take longer than the time ahead).
fn scheduled() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        100_000
    } else {
        1_000
    }
}

/// Schedules [`scheduled`] messages all due at one instant (each with the delay that brings it
/// there) and returns the time from that instant until a consumer has them all.
async fn due_together() -> Duration {
    let b = broker(CoreConfig::default()).await;
    let conn = b.connect(None).await.expect("a connection");
    let s = conn.session(AckMode::Auto).expect("a session");
    let q = Destination::queue("due");
    let consumer = s.consumer(q.clone(), None).await.expect("a consumer");
    let p = s.producer(q).expect("a producer");
    // Far enough ahead for every send to be in before it (checked below).
    let due_at = now_ms() + 8_000;
    let scheduled = scheduled();
    for i in 0..scheduled {
        let m = Outgoing::text(format!("job {i}"))
            .property("AMQ_SCHEDULED_DELAY", Value::I64(due_at - now_ms()));
        p.send(m).await.expect("a scheduled send");
    }
    let wait = u64::try_from(due_at - now_ms())
        .ok()
        .filter(|w| *w > 0)
        .expect("the sends took longer than the time ahead; raise it");
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let due = Instant::now();
    for _ in 0..scheduled {
        consumer
            .receive_timeout(Duration::from_secs(120))
            .await
            .expect("a receive")
            .expect("every scheduled message arrives");
    }
    let took = due.elapsed();
    conn.close().await;
    b.stop().await;
    took
}

criterion_group!(benches, matching, publish, scheduler);
criterion_main!(benches);
