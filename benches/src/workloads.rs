//! The workloads, written once and run by both the criterion benches and the report: each
//! is a fixed number of operations on one engine, every operation timed on its own.

use std::time::{Duration, Instant};

use store_api::{Destination, MessageId, SubscriptionInfo, SubscriptionKey, TransactionId, TxOp};

use crate::{Engine, message};

/// One workload and its size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Workload {
    Add {
        writers: usize,
        size: usize,
        count: u64,
    },
    AddAck {
        count: u64,
    },
    Tx100 {
        txs: u64,
    },
    Fanout4 {
        count: u64,
    },
    Periodic {
        count: u64,
    },
}

/// The report's matrix, in its order.
pub const WORKLOADS: &[(&str, Workload)] = &[
    (
        "add 1 KiB, 1 writer",
        Workload::Add {
            writers: 1,
            size: 1024,
            count: 2000,
        },
    ),
    (
        "add 1 KiB, 16 writers",
        Workload::Add {
            writers: 16,
            size: 1024,
            count: 8000,
        },
    ),
    ("add then ack 1 KiB", Workload::AddAck { count: 1000 }),
    ("transactions of 100 adds", Workload::Tx100 { txs: 20 }),
    (
        "topic, 4 durable subs, acks",
        Workload::Fanout4 { count: 400 },
    ),
    (
        "add 10 KiB, 1 writer",
        Workload::Add {
            writers: 1,
            size: 10 * 1024,
            count: 1000,
        },
    ),
    (
        "add 100 KiB, 1 writer",
        Workload::Add {
            writers: 1,
            size: 100 * 1024,
            count: 200,
        },
    ),
    (
        "add 1 KiB, sync periodic",
        Workload::Periodic { count: 20000 },
    ),
];

/// One cell of the report.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub messages: u64,
    pub payload: u64,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    pub fsyncs: Option<u64>,
    pub disk: Option<u64>,
}

impl Workload {
    /// The same workload with `n` units (messages; transactions for `Tx100`) instead of its
    /// own count.
    pub fn with_count(self, n: u64) -> Workload {
        match self {
            Workload::Add { writers, size, .. } => Workload::Add {
                writers,
                size,
                count: n.max(writers as u64),
            },
            Workload::AddAck { .. } => Workload::AddAck { count: n },
            Workload::Tx100 { .. } => Workload::Tx100 { txs: n.max(1) },
            Workload::Fanout4 { .. } => Workload::Fanout4 { count: n },
            Workload::Periodic { .. } => Workload::Periodic { count: n },
        }
    }
}

impl Cell {
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn mbps(&self) -> f64 {
        self.payload as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }

    pub fn percentile(&mut self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i]
    }
}

async fn timed<F: std::future::Future<Output = store_api::Result<T>>, T>(
    lat: &mut Vec<Duration>,
    f: F,
) -> store_api::Result<T> {
    let t = Instant::now();
    let r = f.await?;
    lat.push(t.elapsed());
    Ok(r)
}

/// Runs `w` once on `engine`; `round` keeps message ids of repeated runs apart.
pub async fn run(engine: &Engine, w: Workload, round: u64) -> store_api::Result<Cell> {
    let store = engine.store.clone();
    let fsyncs = engine.fsyncs();
    let disk = engine.disk_bytes();
    let start = Instant::now();
    let mut cell = Cell::default();
    match w {
        Workload::Add {
            writers,
            size,
            count,
        } => {
            let q = store
                .queue_store(&Destination::queue(format!("add-{size}-{writers}")))
                .await?;
            let per = count / writers as u64;
            let mut tasks = Vec::new();
            for wr in 0..writers {
                let q = q.clone();
                tasks.push(tokio::spawn(async move {
                    let d = q.destination().clone();
                    let producer = format!("r{round}-w{wr}");
                    let mut lat = Vec::with_capacity(per as usize);
                    for n in 0..per {
                        timed(&mut lat, q.add(message(&d, &producer, n, size))).await?;
                    }
                    Ok::<_, store_api::StoreError>(lat)
                }));
            }
            for t in tasks {
                cell.latencies
                    .extend(t.await.map_err(|e| store_api::StoreError::Backend {
                        backend: "bench",
                        source: Box::new(e),
                    })??);
            }
            cell.messages = per * writers as u64;
            cell.payload = cell.messages * size as u64;
        }
        Workload::Periodic { count } => {
            let q = store.queue_store(&Destination::queue("periodic")).await?;
            let d = q.destination().clone();
            for n in 0..count {
                timed(
                    &mut cell.latencies,
                    q.add(message(&d, &format!("r{round}"), n, 1024)),
                )
                .await?;
            }
            cell.messages = count;
            cell.payload = count * 1024;
        }
        Workload::AddAck { count } => {
            let q = store.queue_store(&Destination::queue("add-ack")).await?;
            let d = q.destination().clone();
            for n in 0..count {
                let m = message(&d, &format!("r{round}"), n, 1024);
                let id = m.id.clone();
                let t = Instant::now();
                q.add(m).await?;
                q.remove(&id).await?;
                cell.latencies.push(t.elapsed());
            }
            cell.messages = count;
            cell.payload = count * 1024;
        }
        Workload::Tx100 { txs } => {
            let d = Destination::queue("tx100");
            store.queue_store(&d).await?;
            for t in 0..txs {
                let tx = TransactionId::Local(round * 1_000_000 + t);
                let s = Instant::now();
                store.begin(&tx).await?;
                for n in 0..100 {
                    let m = message(&d, &format!("r{round}-t{t}"), n, 1024);
                    store.enlist(&tx, TxOp::Add(m)).await?;
                }
                store.commit(&tx).await?;
                cell.latencies.push(s.elapsed());
            }
            cell.messages = txs * 100;
            cell.payload = cell.messages * 1024;
        }
        Workload::Fanout4 { count } => {
            let d = Destination::topic(format!("fanout-{round}"));
            let t = store.topic_store(&d).await?;
            let subs: Vec<SubscriptionKey> = (0..4)
                .map(|i| SubscriptionKey::new(format!("client-{i}"), "bench"))
                .collect();
            for s in &subs {
                t.add_subscription(SubscriptionInfo::new(s.clone(), None), false)
                    .await?;
            }
            for n in 0..count {
                let m = message(&d, "fanout", n, 1024);
                let id: MessageId = m.id.clone();
                let s = Instant::now();
                t.add(m).await?;
                for k in &subs {
                    t.acknowledge(k, &id).await?;
                }
                cell.latencies.push(s.elapsed());
            }
            cell.messages = count;
            cell.payload = count * 1024;
        }
    }
    cell.elapsed = start.elapsed();
    cell.fsyncs = match (fsyncs, engine.fsyncs()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    cell.disk = match (disk, engine.disk_bytes()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    Ok(cell)
}
