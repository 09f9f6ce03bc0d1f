//! Process death for real, the same for every durable engine: the test binary re-runs itself as
//! a child that drives a workload (synced adds, acks, local transactions, durable-subscription
//! acks) and reports on stdout each operation before it starts and after it returned Ok; the
//! parent kills it with SIGKILL at a seeded random moment, reopens the store and checks: every
//! acknowledged add is there unless its ack began; no acked message is back; no transaction is
//! half applied; nothing was added that was never sent; no duplicates; the counts agree with
//! what browsing finds. `CRASH_ROUNDS=200 cargo test -p crash-tests --release --test
//! process_death -- --nocapture` is the full run; the default is a short one (4 rounds).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Engine, Place};
use store_api::{
    Body, Destination, Message, MessageId, PersistenceAdapter, SubscriptionInfo, SubscriptionKey,
    TransactionId, TxOp,
};

const CHILD_ENV: &str = "PROCESS_DEATH_CHILD";

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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Op {
    Add(u64),
    Ack(u64),
    /// A local transaction: add `adds` to the queue, ack `acks` from it, ack `tacks` for the
    /// durable subscription; committed when the flag is set, rolled back otherwise.
    Tx(bool, u64, Vec<u64>, Vec<u64>, Vec<u64>),
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
            Op::Tx(commit, t, a, k, tk) => format!(
                "{} {t} {} {} {}",
                if *commit { "tx" } else { "rb" },
                list(a),
                list(k),
                list(tk)
            ),
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
            "tx" | "rb" => Op::Tx(
                parts[0] == "tx",
                parts[1].parse().unwrap(),
                list(parts.get(2).unwrap_or(&"")),
                list(parts.get(3).unwrap_or(&"")),
                list(parts.get(4).unwrap_or(&"")),
            ),
            "tadd" => Op::TopicAdd(parts[1].parse().unwrap()),
            "tack" => Op::TopicAck(parts[1].parse().unwrap()),
            other => panic!("unknown op {other}"),
        }
    }
}

/// One transaction in three is rolled back.
fn op_is_commit(txn: u64) -> bool {
    !txn.is_multiple_of(3)
}

/// The child: runs the workload until killed, printing `@B op` before and `@K op` after each
/// operation that returned Ok.
async fn child(place: &Place, seed: u64) {
    let store = place.open().await.unwrap();
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
    let mut txn = seed * 1_000_000;
    let take = |rng: &mut Rng, from: &mut Vec<u64>| -> Vec<u64> {
        if from.is_empty() {
            vec![]
        } else {
            vec![from.remove((rng.next() as usize) % from.len())]
        }
    };
    loop {
        let op = match rng.next() % 12 {
            0..=3 => {
                next += 1;
                Op::Add(next)
            }
            4..=5 if !live.is_empty() => Op::Ack(live.remove((rng.next() as usize) % live.len())),
            6 | 10 => {
                txn += 1;
                let adds = vec![next + 1, next + 2];
                next += 2;
                let acks = take(&mut rng, &mut live);
                let tacks = take(&mut rng, &mut topic_live);
                Op::Tx(op_is_commit(txn), txn, adds, acks, tacks)
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
            Op::Tx(commit, n, adds, acks, tacks) => {
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
                for k in tacks {
                    store
                        .enlist(
                            &tx,
                            TxOp::TopicAck {
                                destination: t(),
                                subscription: sub(),
                                id: id(*k),
                            },
                        )
                        .await
                        .unwrap();
                }
                if *commit {
                    store.commit(&tx).await.unwrap();
                    live.extend(adds);
                } else {
                    store.rollback(&tx).await.unwrap();
                    // Rolled back: what it would have acked is still there.
                    live.extend(acks);
                    topic_live.extend(tacks);
                }
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
    let (seed, place) = spec.split_once('|').unwrap();
    let seed: u64 = seed.parse().unwrap();
    let place = Place::decode(place);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(child(&place, seed));
}

#[derive(Default)]
struct Log {
    began: Vec<Op>,
    done: Vec<Op>,
}

/// Runs one round: child with `seed` killed `delay` after its `ops`th reported operation;
/// returns the log.
fn round(place: &Place, seed: u64, ops: usize, delay: Duration) -> Log {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, format!("{seed}|{}", place.encode()))
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
                // A little later, so the kill lands anywhere in the next operations.
                std::thread::sleep(delay);
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
            Op::Tx(_, _, a, k, tk) => a.contains(&n) || k.contains(&n) || tk.contains(&n),
        })
        .map(|op| (op.line(), done.contains(op)))
        .collect()
}

struct Verdict {
    checked: usize,
}

/// Checks the reopened store against everything the rounds so far reported.
async fn check(store: &dyn PersistenceAdapter, began: &[Op], done: &[Op]) -> Verdict {
    let done_set: HashSet<&Op> = done.iter().collect();
    let is_done = |op: &Op| done_set.contains(op);
    // Every id ever sent, and its fate.
    let mut queue_expect: BTreeMap<u64, Option<bool>> = BTreeMap::new(); // Some(true) must be present, Some(false) absent, None either
    let mut topic_expect: BTreeMap<u64, Option<bool>> = BTreeMap::new();
    // Committed transactions cut in flight: all of each or none of it.
    let mut tx_groups: Vec<(&[u64], &[u64], &[u64])> = Vec::new();
    for op in began {
        let ok = is_done(op);
        match op {
            Op::Add(n) => {
                queue_expect.insert(*n, if ok { Some(true) } else { None });
            }
            Op::Ack(n) => {
                queue_expect.insert(*n, if ok { Some(false) } else { None });
            }
            Op::Tx(true, _, adds, acks, tacks) => {
                for a in adds {
                    queue_expect.insert(*a, if ok { Some(true) } else { None });
                }
                for k in acks {
                    queue_expect.insert(*k, if ok { Some(false) } else { None });
                }
                for k in tacks {
                    topic_expect.insert(*k, if ok { Some(false) } else { None });
                }
                if !ok {
                    tx_groups.push((adds, acks, tacks));
                }
            }
            // Rolled back (or cut before it could be): its adds never happened and its acks
            // change nothing.
            Op::Tx(false, _, adds, _, _) => {
                for a in adds {
                    queue_expect.insert(*a, Some(false));
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
    let browsed = queue.browse(None, usize::MAX).await.unwrap();
    for m in &browsed {
        assert_eq!(
            m.body,
            msg(&q(), m.id.producer_seq).body,
            "message {} came back with another body",
            m.id
        );
    }
    let present: Vec<u64> = browsed.iter().map(|m| m.id.producer_seq).collect();
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
    let topic = store.topic_store(&t()).await.unwrap();
    let pending: Vec<u64> = topic
        .browse_subscription(&sub(), None, usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id.producer_seq)
        .collect();
    assert_eq!(
        topic.pending_count(&sub()).await.unwrap(),
        pending.len() as u64,
        "pending count"
    );
    let pending: BTreeSet<u64> = pending.into_iter().collect();
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
    for (adds, acks, tacks) in &tx_groups {
        let applied = adds.iter().filter(|a| present_set.contains(a)).count();
        assert!(
            applied == 0 || applied == adds.len(),
            "half a transaction: adds {adds:?}"
        );
        // What it acked was live before it; so it is gone exactly when the adds arrived.
        for k in *acks {
            assert_eq!(
                present_set.contains(k),
                applied == 0,
                "transaction adds {adds:?} applied: {}, but its ack of {k} did not follow",
                applied > 0
            );
        }
        for k in *tacks {
            assert_eq!(
                pending.contains(k),
                applied == 0,
                "transaction adds {adds:?} applied: {}, but its topic ack of {k} did not follow",
                applied > 0
            );
        }
    }
    Verdict {
        checked: queue_expect.len() + topic_expect.len(),
    }
}

fn run(engine: Engine) {
    let rounds: u64 = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(4);
    let dir = tempfile::tempdir().unwrap();
    let place = match Place::new(engine, dir.path()) {
        Ok(p) => p,
        Err(why) => {
            test_support::skip(format!("{}: {why}", engine.name()));
            return;
        }
    };
    let mut rng = Rng(0xC0FFEE);
    let (mut began, mut done) = (Vec::new(), Vec::new());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut checked = 0;
    let mut in_flight = 0;
    for r in 1..=rounds {
        let ops = 20 + (rng.next() % 400) as usize;
        let delay = Duration::from_micros(rng.next() % 3_000);
        let log = round(&place, r, ops, delay);
        assert!(
            log.done.len() >= ops,
            "{}: round {r}: the child stopped after {} operations (it must run until killed)",
            engine.name(),
            log.done.len()
        );
        in_flight += log.began.len() - log.done.len();
        began.extend(log.began);
        done.extend(log.done);
        let store = rt.block_on(place.open()).unwrap();
        checked = rt.block_on(check(store.as_ref(), &began, &done)).checked;
        rt.block_on(store.close()).unwrap();
    }
    rt.block_on(place.drop_tables());
    eprintln!(
        "{}: {rounds} rounds killed with SIGKILL ({in_flight} operations cut in flight), {} operations reported done, {checked} message fates checked, 0 lost",
        engine.name(),
        done.len()
    );
}

#[test]
fn leveldb_survives_kill_9() {
    run(Engine::Leveldb);
}

#[test]
fn kahadb_survives_kill_9() {
    run(Engine::Kahadb);
}

#[test]
fn amq_survives_kill_9() {
    run(Engine::Amq);
}

#[test]
fn jdbc_sqlite_survives_kill_9() {
    run(Engine::JdbcSqlite);
}

#[test]
fn jdbc_mariadb_survives_kill_9() {
    run(Engine::JdbcMysql);
}

#[test]
fn jdbc_postgres_survives_kill_9() {
    run(Engine::JdbcPostgres);
}

#[test]
fn journaled_jdbc_sqlite_survives_kill_9() {
    run(Engine::JournaledSqlite);
}

#[test]
fn journaled_jdbc_mariadb_survives_kill_9() {
    run(Engine::JournaledMysql);
}

#[test]
fn journaled_jdbc_postgres_survives_kill_9() {
    run(Engine::JournaledPostgres);
}
