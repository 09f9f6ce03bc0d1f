//! Process death for real: the test binary re-runs itself as a child that drives a workload
//! (synced adds, acks, local transactions, durable-subscription acks) and reports on stdout each
//! operation before it starts and after it returned Ok; the parent kills it with SIGKILL at a
//! seeded random moment, reopens the store and checks: every acknowledged add is there unless
//! its ack began; no acked message is back; no transaction is half applied; nothing was added
//! that was never sent; no duplicates. `CRASH_ROUNDS=200 cargo test -p store-kahadb --release
//! --test process_death` is the full run; the default is a short one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use store_api::{
    Body, Destination, Message, MessageId, PersistenceAdapter, SubscriptionInfo, SubscriptionKey,
    TransactionId, TxOp,
};
use store_kahadb::{IndexLayout, KahaDbConfig, KahaDbStore};

const CHILD_ENV: &str = "PROCESS_DEATH_CHILD";

fn config(dir: &Path, layout: IndexLayout) -> KahaDbConfig {
    let mut c = KahaDbConfig::new(dir);
    c.layout = layout;
    c.journal_max_file_length = 256 * 1024;
    c.checkpoint_interval = Duration::from_millis(50);
    c.cleanup_interval = Duration::from_millis(150);
    c
}

fn q() -> Destination {
    Destination::queue("work")
}

fn t() -> Destination {
    Destination::topic("feed")
}

fn sub() -> SubscriptionKey {
    SubscriptionKey::new("c", "s")
}

fn msg(d: &Destination, n: u64) -> Message {
    Message::new(
        MessageId::new("p", n),
        d.clone(),
        Body::Text(format!("{n}:{}", "x".repeat((n % 700) as usize))),
    )
}

fn id(n: u64) -> MessageId {
    MessageId::new("p", n)
}

/// A tiny deterministic generator (SplitMix64), so every round is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// One operation of the workload, as reported on the side channel.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    Add(u64),
    Ack(u64),
    /// A local transaction: add `adds`, ack `acks`.
    Tx(u64, Vec<u64>, Vec<u64>),
    TopicAdd(u64),
    TopicAck(u64),
}

impl Op {
    fn line(&self) -> String {
        let list = |v: &[u64]| {
            v.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Op::Add(n) => format!("add {n}"),
            Op::Ack(n) => format!("ack {n}"),
            Op::Tx(t, a, k) => format!("tx {t} {} {}", list(a), list(k)),
            Op::TopicAdd(n) => format!("tadd {n}"),
            Op::TopicAck(n) => format!("tack {n}"),
        }
    }

    fn parse(s: &str) -> Op {
        let parts: Vec<&str> = s.split(' ').collect();
        let list = |p: &str| -> Vec<u64> {
            p.split(',')
                .filter(|x| !x.is_empty())
                .map(|x| x.parse().unwrap())
                .collect()
        };
        match parts[0] {
            "add" => Op::Add(parts[1].parse().unwrap()),
            "ack" => Op::Ack(parts[1].parse().unwrap()),
            "tx" => Op::Tx(
                parts[1].parse().unwrap(),
                list(parts.get(2).unwrap_or(&"")),
                list(parts.get(3).unwrap_or(&"")),
            ),
            "tadd" => Op::TopicAdd(parts[1].parse().unwrap()),
            "tack" => Op::TopicAck(parts[1].parse().unwrap()),
            other => panic!("unknown op {other}"),
        }
    }
}

/// The child: runs the workload until killed, printing `@B op` before and `@K op` after each
/// operation that returned Ok.
async fn child(dir: &Path, layout: IndexLayout, seed: u64) {
    let store = KahaDbStore::open(config(dir, layout)).unwrap();
    let queue = store.queue_store(&q()).await.unwrap();
    let topic = store.topic_store(&t()).await.unwrap();
    if topic.lookup_subscription(&sub()).await.unwrap().is_none() {
        topic
            .add_subscription(SubscriptionInfo::new(sub(), None), false)
            .await
            .unwrap();
    }
    let mut rng = Rng(seed);
    let mut out = std::io::stdout();
    let mut live: Vec<u64> = Vec::new();
    let mut topic_live: Vec<u64> = Vec::new();
    // Ids are unique across rounds: each round starts from its own range.
    let mut next = seed * 1_000_000;
    let mut txn = 0;
    loop {
        let op = match rng.next() % 10 {
            0..=3 => {
                next += 1;
                Op::Add(next)
            }
            4..=5 if !live.is_empty() => Op::Ack(live.remove((rng.next() as usize) % live.len())),
            6 => {
                txn += 1;
                let adds = vec![next + 1, next + 2];
                next += 2;
                let acks = if live.is_empty() {
                    vec![]
                } else {
                    vec![live.remove((rng.next() as usize) % live.len())]
                };
                Op::Tx(txn, adds, acks)
            }
            7..=8 => {
                next += 1;
                Op::TopicAdd(next)
            }
            _ if !topic_live.is_empty() => {
                Op::TopicAck(topic_live.remove((rng.next() as usize) % topic_live.len()))
            }
            _ => {
                next += 1;
                Op::Add(next)
            }
        };
        writeln!(out, "@B {}", op.line()).unwrap();
        out.flush().unwrap();
        match &op {
            Op::Add(n) => {
                queue.add(msg(&q(), *n)).await.unwrap();
                live.push(*n);
            }
            Op::Ack(n) => queue.remove(&id(*n)).await.unwrap(),
            Op::Tx(n, adds, acks) => {
                let tx = TransactionId::Local(*n);
                store.begin(&tx).await.unwrap();
                for a in adds {
                    store.enlist(&tx, TxOp::Add(msg(&q(), *a))).await.unwrap();
                }
                for k in acks {
                    store
                        .enlist(
                            &tx,
                            TxOp::QueueAck {
                                destination: q(),
                                id: id(*k),
                            },
                        )
                        .await
                        .unwrap();
                }
                store.commit(&tx).await.unwrap();
                live.extend(adds);
            }
            Op::TopicAdd(n) => {
                topic.add(msg(&t(), *n)).await.unwrap();
                topic_live.push(*n);
            }
            Op::TopicAck(n) => topic.acknowledge(&sub(), &id(*n)).await.unwrap(),
        }
        writeln!(out, "@K {}", op.line()).unwrap();
        out.flush().unwrap();
    }
}

/// The child entry point: does nothing unless the parent started this binary as a child.
#[test]
fn child_process_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(3, '|');
    let layout = match parts.next() {
        Some("amq") => IndexLayout::Snapshot,
        _ => IndexLayout::PageFile,
    };
    let seed: u64 = parts.next().unwrap().parse().unwrap();
    let dir = parts.next().unwrap().to_string();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(child(Path::new(&dir), layout, seed));
}

#[derive(Default)]
struct Log {
    began: Vec<Op>,
    done: Vec<Op>,
}

/// Runs one round: child with `seed` killed after `ops` reported operations; returns the log.
fn round(dir: &Path, engine: &str, seed: u64, ops: usize) -> Log {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, format!("{engine}|{seed}|{}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reader = BufReader::new(child.stdout.take().unwrap());
    let mut log = Log::default();
    let mut killed = false;
    for line in reader.lines() {
        // After the kill, go on reading: what the child printed before it died is still in the
        // pipe, and an operation it began must count as begun.
        let Ok(line) = line else { break };
        // The test harness may print its own text on the same line before ours.
        let ours = |tag: &str| line.find(tag).map(|i| line[i + tag.len()..].to_string());
        if let Some(op) = ours("@B ") {
            log.began.push(Op::parse(&op));
        } else if let Some(op) = ours("@K ") {
            let op = op.as_str();
            log.done.push(Op::parse(op));
            if !killed && log.done.len() >= ops {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
    }
    if !killed {
        child.kill().unwrap();
    }
    child.wait().unwrap();
    log
}

/// The operations that mention message `n`, and whether each was reported done.
fn history(began: &[Op], done: &[Op], n: u64) -> Vec<(String, bool)> {
    began
        .iter()
        .filter(|op| match op {
            Op::Add(m) | Op::Ack(m) | Op::TopicAdd(m) | Op::TopicAck(m) => *m == n,
            Op::Tx(_, a, k) => a.contains(&n) || k.contains(&n),
        })
        .map(|op| (op.line(), done.contains(op)))
        .collect()
}

struct Verdict {
    checked: usize,
}

/// Checks the reopened store against everything the rounds so far reported.
async fn check(store: &KahaDbStore, began: &[Op], done: &[Op]) -> Verdict {
    let done_set: Vec<&Op> = done.iter().collect();
    let is_done = |op: &Op| done_set.contains(&op);
    // Every id ever sent, and its fate.
    let mut queue_expect: BTreeMap<u64, Option<bool>> = BTreeMap::new(); // Some(true) must be present, Some(false) absent, None either
    let mut topic_expect: BTreeMap<u64, Option<bool>> = BTreeMap::new();
    let mut tx_groups: Vec<(Vec<u64>, Vec<u64>)> = Vec::new();
    for op in began {
        let ok = is_done(op);
        match op {
            Op::Add(n) => {
                queue_expect.insert(*n, if ok { Some(true) } else { None });
            }
            Op::Ack(n) => {
                queue_expect.insert(*n, if ok { Some(false) } else { None });
            }
            Op::Tx(_, adds, acks) => {
                for a in adds {
                    queue_expect.insert(*a, if ok { Some(true) } else { None });
                }
                for k in acks {
                    queue_expect.insert(*k, if ok { Some(false) } else { None });
                }
                if !ok {
                    tx_groups.push((adds.clone(), acks.clone()));
                }
            }
            Op::TopicAdd(n) => {
                topic_expect.insert(*n, if ok { Some(true) } else { None });
            }
            Op::TopicAck(n) => {
                topic_expect.insert(*n, if ok { Some(false) } else { None });
            }
        }
    }
    let queue = store.queue_store(&q()).await.unwrap();
    let present: Vec<u64> = queue
        .browse(None, usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id.producer_seq)
        .collect();
    let present_set: BTreeSet<u64> = present.iter().copied().collect();
    assert_eq!(present.len(), present_set.len(), "duplicates in the queue");
    assert_eq!(queue.count().await.unwrap(), present.len() as u64, "count");
    for n in &present_set {
        assert!(
            queue_expect.contains_key(n),
            "message {n} is present but was never sent"
        );
    }
    for (n, expect) in &queue_expect {
        match expect {
            Some(true) => assert!(
                present_set.contains(n),
                "acknowledged add {n} is lost; its history: {:?}",
                history(began, done, *n)
            ),
            Some(false) => assert!(
                !present_set.contains(n),
                "acked message {n} came back; its history: {:?}",
                history(began, done, *n)
            ),
            None => {}
        }
    }
    // A transaction in flight: all of it or none of it.
    for (adds, acks) in &tx_groups {
        let applied_adds = adds.iter().filter(|a| present_set.contains(a)).count();
        assert!(
            applied_adds == 0 || applied_adds == adds.len(),
            "half a transaction: adds {adds:?}"
        );
        if applied_adds == adds.len() {
            for k in acks {
                assert!(
                    !present_set.contains(k),
                    "transaction applied but its ack of {k} did not"
                );
            }
        }
    }
    let topic = store.topic_store(&t()).await.unwrap();
    let pending: BTreeSet<u64> = topic
        .browse_subscription(&sub(), None, usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id.producer_seq)
        .collect();
    for n in &pending {
        assert!(
            topic_expect.contains_key(n),
            "topic message {n} was never sent"
        );
    }
    for (n, expect) in &topic_expect {
        match expect {
            Some(true) => assert!(pending.contains(n), "acknowledged topic add {n} is lost"),
            Some(false) => assert!(!pending.contains(n), "acked topic message {n} came back"),
            None => {}
        }
    }
    Verdict {
        checked: queue_expect.len() + topic_expect.len(),
    }
}

fn run(engine: &str, layout: IndexLayout) {
    let rounds: u64 = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(4);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0xC0FFEE);
    let (mut began, mut done) = (Vec::new(), Vec::new());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut checked = 0;
    for r in 1..=rounds {
        let ops = 20 + (rng.next() % 400) as usize;
        let log = round(dir.path(), engine, r, ops);
        if std::env::var("PD_DEBUG").is_ok() {
            eprintln!(
                "round {r}: ops {ops} began {} done {} first {:?}",
                log.began.len(),
                log.done.len(),
                log.began.first()
            );
        }
        began.extend(log.began);
        done.extend(log.done);
        let store = KahaDbStore::open(config(dir.path(), layout)).unwrap();
        checked = rt.block_on(check(&store, &began, &done)).checked;
        rt.block_on(store.close()).unwrap();
    }
    eprintln!(
        "{engine}: {rounds} rounds killed with SIGKILL, {} operations reported done, {checked} message fates checked, 0 lost",
        done.len()
    );
}

#[test]
fn kahadb_survives_kill_9() {
    run("kahadb", IndexLayout::PageFile);
}

#[test]
fn amq_survives_kill_9() {
    run("amq", IndexLayout::Snapshot);
}
