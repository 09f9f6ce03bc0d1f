//! Master/slave fail-over with real `broker` processes, a real database and real kills.
//!
//! Two processes run the same config (one STOMP port: only the master listens). A producer
//! sends persistent messages with receipts through a `failover:` URL while a consumer acks them;
//! the master is killed with SIGKILL; the slave takes over; the clients reconnect and carry on.
//! Every message that got a receipt must be consumed (again only flagged as redelivered, or
//! as a resend of a message whose receipt the kill swallowed); none may be lost. The old master,
//! started again, comes back as a slave. Each scenario prints a `FAILOVER` line with the
//! take-over time and the counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use broker::client::{ConnectOptions, StompClient, connect_any};
use broker::url::{Endpoint, parse};
use common::process::{BIN, BrokerProcess};
use parking_lot::Mutex;
use test_support::{free_port, proxy};

/// Every broker here logs its locker at debug.
const LOG: &str = "info,sqlx=warn,locker=debug";

fn spawn(config: &Path) -> BrokerProcess {
    BrokerProcess::start(config, LOG)
}

fn opts() -> ConnectOptions {
    ConnectOptions {
        login: "admin".into(),
        passcode: "admin".into(),
        ..ConnectOptions::default()
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    receipted: Mutex<Vec<String>>,
    /// Bodies sent again after a fail-over because their receipt never came.
    resent: Mutex<Vec<String>>,
    /// Instant (since the test's start) of each receipt, in ms.
    receipt_times: Mutex<Vec<u64>>,
    consumed: Mutex<Vec<(String, bool)>>,
    attempts: AtomicU64,
    reconnects: AtomicU64,
}

async fn producer(endpoints: Vec<Endpoint>, shared: Arc<Shared>, t0: Instant) {
    let mut client = connect_any(&endpoints, &opts(), Duration::from_secs(120))
        .await
        .unwrap();
    let mut i = 0u64;
    while !shared.stop.load(Ordering::Acquire) {
        let body = format!("m{i}");
        shared.attempts.fetch_add(1, Ordering::Relaxed);
        match client
            .send("/queue/failover", body.clone(), &[("persistent", "true")])
            .await
        {
            Ok(()) => {
                shared.receipted.lock().push(body);
                shared
                    .receipt_times
                    .lock()
                    .push(t0.elapsed().as_millis() as u64);
                i += 1;
            }
            Err(_) => {
                // No receipt: reconnect (to whichever broker serves) and send it again.
                shared.resent.lock().push(body);
                client = connect_any(&endpoints, &opts(), Duration::from_secs(120))
                    .await
                    .unwrap();
            }
        }
    }
    let _ = client.disconnect().await;
}

async fn consumer(endpoints: Vec<Endpoint>, shared: Arc<Shared>) {
    let subscribe = |c: StompClient| async move {
        let mut c = c;
        c.subscribe(
            "c",
            "/queue/failover",
            "client-individual",
            &[("activemq.prefetchSize", "50")],
        )
        .await
        .map(|()| c)
    };
    let mut client = subscribe(
        connect_any(&endpoints, &opts(), Duration::from_secs(120))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    loop {
        match client.recv_timeout(Duration::from_millis(500)).await {
            Ok(Some(m)) if m.command == "MESSAGE" => {
                let body = String::from_utf8_lossy(&m.body).into_owned();
                shared
                    .consumed
                    .lock()
                    .push((body, m.get("redelivered") == Some("true")));
                let id = m.get("ack").unwrap_or_default().to_owned();
                let _ = client
                    .send_frame(broker::stomp::frame::Frame::new("ACK").header("id", id))
                    .await;
            }
            Ok(_) => {
                if shared.stop.load(Ordering::Acquire) {
                    let receipted = shared.receipted.lock().len();
                    let got: std::collections::HashSet<String> = shared
                        .consumed
                        .lock()
                        .iter()
                        .map(|(b, _)| b.clone())
                        .collect();
                    if shared.receipted.lock().iter().all(|b| got.contains(b)) || receipted == 0 {
                        break;
                    }
                }
            }
            Err(e) => loop {
                eprintln!("consumer: {e}; reconnecting");
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
                if let Ok(c) = connect_any(&endpoints, &opts(), Duration::from_secs(120)).await
                    && let Ok(c) = subscribe(c).await
                {
                    client = c;
                    break;
                }
            },
        }
    }
    let _ = client.disconnect().await;
}

struct Scenario {
    name: &'static str,
    persistence: String,
    locker: String,
    /// The database whose tables to drop afterwards: (url, prefix).
    database: Option<(String, String)>,
}

fn database(var: &str, name: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            test_support::skip(format!("{name}: {var} is not set"));
            None
        }
    }
}

fn prefix() -> String {
    format!("fo{}_{}_", std::process::id() % 100_000, free_port())
}

fn write_config(dir: &Path, port: u16, s: &Scenario) -> std::path::PathBuf {
    let path = dir.join("broker.toml");
    std::fs::write(
        &path,
        format!(
            "[broker]\nname = \"fo\"\ndata_directory = \"{}\"\n{}\n{}\n[transports]\nstomp = \"127.0.0.1:{port}\"\nopenwire = \"\"\nwebsocket = \"\"\nweb = \"\"\n",
            dir.join("data").display(),
            s.persistence,
            s.locker
        ),
    )
    .unwrap();
    path
}

async fn drop_tables(db: &Option<(String, String)>) {
    if let Some((url, prefix)) = db {
        let mut c = store_jdbc::JdbcConfig::new(url.clone());
        c.table_prefix = prefix.clone();
        store_jdbc::JdbcStore::drop_tables(&c).await.unwrap();
    }
}

/// Kill the master under load; the slave takes over; nothing receipted is lost; the old master
/// comes back as a slave.
async fn kill_the_master(s: Scenario) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &s);
    let a = spawn(&config);
    a.wait_for("listening for STOMP", Duration::from_secs(60))
        .await;
    let b = spawn(&config);
    b.wait_for("waiting for the lock (slave)", Duration::from_secs(60))
        .await;
    // Not a pause but three failed attempts at the lock: the slave is seen still trying.
    b.wait_for("lock attempt 3 found it held", Duration::from_secs(60))
        .await;
    assert!(!b.has("listening for STOMP"), "the slave does not serve");

    let url = format!("failover:(tcp://127.0.0.1:{port},tcp://127.0.0.1:{port})");
    let endpoints = parse(&url).unwrap();
    let shared = Arc::new(Shared::default());
    let t0 = Instant::now();
    let p = tokio::spawn(producer(endpoints.clone(), Arc::clone(&shared), t0));
    let c = tokio::spawn(consumer(endpoints.clone(), Arc::clone(&shared)));
    while shared.receipted.lock().len() < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = shared.receipted.lock().len();
    a.kill9();
    let killed_at = t0.elapsed().as_millis() as u64;
    b.wait_for("listening for STOMP", Duration::from_secs(90))
        .await;
    let until = Instant::now() + Duration::from_secs(90);
    while shared.receipted.lock().len() < before + 200 {
        assert!(
            Instant::now() < until,
            "the producer did not carry on after the take-over"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    finish(s.name, &shared, p, c, &[killed_at], &b).await;

    // The old master, started again, is a slave now.
    let again = spawn(&config);
    again
        .wait_for("waiting for the lock (slave)", Duration::from_secs(60))
        .await;
    again
        .wait_for("lock attempt 3 found it held", Duration::from_secs(60))
        .await;
    assert!(
        !again.has("listening for STOMP"),
        "{}: the restarted master must wait",
        s.name
    );
    drop(again);
    drop(b);
    drop_tables(&s.database).await;
}

/// Stops the clients and checks the run: every receipted message consumed, every second copy
/// explained (flagged redelivered, or resent after a lost receipt); prints the take-over time
/// after each kill (kill to the first receipt after it) and the counts.
async fn finish(
    name: &str,
    shared: &Arc<Shared>,
    p: tokio::task::JoinHandle<()>,
    c: tokio::task::JoinHandle<()>,
    kills: &[u64],
    master: &BrokerProcess,
) {
    shared.stop.store(true, Ordering::Release);
    p.await.unwrap();
    if tokio::time::timeout(Duration::from_secs(60), c)
        .await
        .is_err()
    {
        let got: std::collections::HashSet<String> = shared
            .consumed
            .lock()
            .iter()
            .map(|(b, _)| b.clone())
            .collect();
        let missing: Vec<String> = shared
            .receipted
            .lock()
            .iter()
            .filter(|b| !got.contains(*b))
            .cloned()
            .collect();
        let consumed = shared.consumed.lock();
        panic!(
            "{}: the consumer did not get {} receipted message(s) within 60 s: {missing:?} (consumed {}, last {:?}, reconnects {})\nthe new master's log:\n{}",
            name,
            missing.len(),
            consumed.len(),
            consumed.iter().rev().take(5).collect::<Vec<_>>(),
            shared.reconnects.load(Ordering::Relaxed),
            master.log()
        );
    }

    let times = shared.receipt_times.lock().clone();
    let takeovers: Vec<u64> = kills
        .iter()
        .map(|&k| times.iter().find(|&&t| t > k).map(|t| t - k).unwrap())
        .collect();
    let takeover_ms = format!("{takeovers:?}");
    let receipted = shared.receipted.lock().clone();
    let resent: std::collections::HashSet<String> = shared.resent.lock().iter().cloned().collect();
    let consumed = shared.consumed.lock().clone();
    let mut counts: HashMap<&str, (u32, u32)> = HashMap::new();
    for (body, redelivered) in &consumed {
        let e = counts.entry(body.as_str()).or_default();
        e.0 += 1;
        e.1 += u32::from(*redelivered);
    }
    let lost: Vec<&String> = receipted
        .iter()
        .filter(|b| !counts.contains_key(b.as_str()))
        .collect();
    // A second copy must be explained: flagged redelivered, or a resend after a lost receipt.
    let unexplained: Vec<(&&str, &(u32, u32))> = counts
        .iter()
        .filter(|(b, (n, r))| *n > 1 && *r == 0 && !resent.contains(**b))
        .collect();
    let redelivered = consumed.iter().filter(|(_, r)| *r).count();
    let duplicates: u32 = counts.values().map(|(n, _)| n.saturating_sub(1)).sum();
    println!(
        "FAILOVER {}: take-over {takeover_ms} ms (kill to first receipt from the new master); sent {} (attempts), receipted {}, resent {}, consumed {}, redelivered {}, duplicates {}, lost {}",
        name,
        shared.attempts.load(Ordering::Relaxed),
        receipted.len(),
        resent.len(),
        consumed.len(),
        redelivered,
        duplicates,
        lost.len()
    );
    assert!(lost.is_empty(), "{}: lost {lost:?}", name);
    assert!(
        unexplained.is_empty(),
        "{}: duplicates neither redelivered nor resent: {unexplained:?}",
        name
    );
}

fn jdbc(url: &str, prefix: &str) -> String {
    format!(
        "[persistence]\nkind = \"jdbc\"\n[persistence.jdbc]\nurl = \"{url}\"\ntable_prefix = \"{prefix}\"\n"
    )
}

const FAST_LEASE: &str =
    "[locker]\nkind = \"lease\"\nlease_ms = 3000\nkeep_alive_ms = 500\nacquire_retry_ms = 200\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_database_locker() {
    let Some(url) = database("MYSQL_URL", "mariadb database locker") else {
        return;
    };
    let prefix = prefix();
    kill_the_master(Scenario {
        name: "jdbc-mariadb/database",
        persistence: jdbc(&url, &prefix),
        locker: "[locker]\nkind = \"database\"\nacquire_retry_ms = 200\n".into(),
        database: Some((url, prefix)),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_lease_locker() {
    let Some(url) = database("MYSQL_URL", "mariadb lease locker") else {
        return;
    };
    let prefix = prefix();
    kill_the_master(Scenario {
        name: "jdbc-mariadb/lease",
        persistence: jdbc(&url, &prefix),
        locker: FAST_LEASE.into(),
        database: Some((url, prefix)),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lease_locker() {
    let Some(url) = database("POSTGRES_URL", "postgres lease locker") else {
        return;
    };
    let prefix = prefix();
    kill_the_master(Scenario {
        name: "jdbc-postgres/lease",
        persistence: jdbc(&url, &prefix),
        locker: FAST_LEASE.into(),
        database: Some((url, prefix)),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kahadb_shared_file_locker() {
    kill_the_master(Scenario {
        name: "kahadb/shared-file",
        persistence:
            "[persistence]\nkind = \"kahadb\"\n[persistence.kahadb]\npreallocate = false\n".into(),
        locker: "[locker]\nkind = \"shared-file\"\nacquire_retry_ms = 200\n".into(),
        database: None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amq_shared_file_locker() {
    kill_the_master(Scenario {
        name: "amq/shared-file",
        persistence: "[persistence]\nkind = \"amq\"\n[persistence.amq]\npreallocate = false\n"
            .into(),
        locker: "[locker]\nkind = \"shared-file\"\nacquire_retry_ms = 200\n".into(),
        database: None,
    })
    .await;
}

/// Waits (bounded) until every thread of `pid` is stopped (state `T` in /proc).
async fn wait_stopped(pid: rustix::process::Pid) {
    let tasks = format!("/proc/{}/task", pid.as_raw_nonzero());
    let stopped = || -> bool {
        let Ok(entries) = std::fs::read_dir(&tasks) else {
            return false;
        };
        entries.flatten().all(|t| {
            std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                // `pid (comm) S ...`: the state follows the last parenthesis.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .is_some_and(|state| state == "T" || state == "t")
            })
        })
    };
    let until = Instant::now() + Duration::from_secs(10);
    while !stopped() {
        assert!(
            Instant::now() < until,
            "the process did not stop within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The lease master is cut off from the database (a proxy the test controls sits between it
/// and MariaDB): it stops serving before its lease can expire, and only then does the slave
/// take over. Then a master frozen with SIGSTOP past its lease is resumed after the slave took
/// over: the fencing epoch refuses its writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_lease_master_cut_off_or_frozen_never_writes_beside_the_new_master() {
    let Some(url) = database("MYSQL_URL", "mariadb lease fencing") else {
        return;
    };
    let prefix = prefix();
    let proxy = proxy::Proxy::start(proxy::host_port(&url)).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let lease = "[locker]\nkind = \"lease\"\nlease_ms = 3000\nkeep_alive_ms = 500\nacquire_retry_ms = 200\n";
    let through_proxy = Scenario {
        name: "jdbc-mariadb/lease via proxy",
        persistence: jdbc(&proxy.url_through(&url), &prefix),
        locker: lease.into(),
        database: None,
    };
    let direct = Scenario {
        name: "jdbc-mariadb/lease",
        persistence: jdbc(&url, &prefix),
        locker: lease.into(),
        database: Some((url.clone(), prefix.clone())),
    };
    let a_dir = dir.path().join("a");
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let a = spawn(&write_config(&a_dir, port, &through_proxy));
    a.wait_for("listening for STOMP", Duration::from_secs(60))
        .await;
    let b = spawn(&write_config(&b_dir, port, &direct));
    b.wait_for("waiting for the lock (slave)", Duration::from_secs(60))
        .await;

    let endpoint = parse(&format!("tcp://127.0.0.1:{port}")).unwrap().remove(0);
    let mut client = StompClient::connect(&endpoint, &opts()).await.unwrap();
    client
        .send("/queue/fence", "before the cut", &[("persistent", "true")])
        .await
        .unwrap();

    proxy.cut();
    // A stops on its own (exit code 3: lock lost) before B can take the lease.
    let until = Instant::now() + Duration::from_secs(30);
    let a_status = loop {
        if let Some(st) = a.exited() {
            break st;
        }
        assert!(Instant::now() < until, "the cut-off master did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(a_status.code(), Some(3), "{}", a.log());
    assert!(
        !b.has("listening for STOMP"),
        "the slave took over only after the old master stopped"
    );
    b.wait_for("listening for STOMP", Duration::from_secs(30))
        .await;
    let mut client = StompClient::connect(&endpoint, &opts()).await.unwrap();
    client
        .send(
            "/queue/fence",
            "after the take-over",
            &[("persistent", "true")],
        )
        .await
        .unwrap();
    client.disconnect().await.unwrap();

    // Round two: B frozen past its lease; A (restarted, direct now) takes over; B resumes.
    proxy.restore();
    let a = spawn(&write_config(&a_dir, port, &direct));
    a.wait_for("waiting for the lock (slave)", Duration::from_secs(60))
        .await;
    let mut frozen_client = StompClient::connect(&endpoint, &opts()).await.unwrap();
    rustix::process::kill_process(b.pid(), rustix::process::Signal::STOP).unwrap();
    // kill() returns before every thread has stopped: on a busy machine B could still take
    // the SEND below, legitimately, as the master it still is, and acknowledge it.
    wait_stopped(b.pid()).await;
    // While B is frozen, a SEND waits in its socket.
    frozen_client
        .send_frame(
            broker::stomp::frame::Frame::new("SEND")
                .header("destination", "/queue/fence")
                .header("persistent", "true")
                .header("receipt", "frozen")
                .with_body("written by a deposed master"),
        )
        .await
        .unwrap();
    a.wait_for("this broker is the master", Duration::from_secs(30))
        .await;
    rustix::process::kill_process(b.pid(), rustix::process::Signal::CONT).unwrap();
    // B wakes up deposed: the send gets no receipt (an ERROR, or the connection closes).
    let reply = frozen_client.recv_timeout(Duration::from_secs(15)).await;
    assert!(
        !matches!(&reply, Ok(Some(f)) if f.command == "RECEIPT"),
        "a deposed master acknowledged a write: {reply:?}"
    );
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(st) = b.exited() {
                return st;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the deposed master stops");
    assert_eq!(status.code(), Some(3));
    a.wait_for("listening for STOMP", Duration::from_secs(30))
        .await;
    let mut c = StompClient::connect(&endpoint, &opts()).await.unwrap();
    c.subscribe("s", "/queue/fence", "auto", &[]).await.unwrap();
    let mut bodies = Vec::new();
    while let Some(m) = c.recv_timeout(Duration::from_secs(2)).await.unwrap() {
        bodies.push(String::from_utf8_lossy(&m.body).into_owned());
    }
    assert_eq!(
        bodies,
        ["before the cut", "after the take-over"],
        "nothing from the deposed master"
    );
    println!(
        "FAILOVER fencing: cut-off master exited (code 3) before the slave served; frozen master's write refused"
    );
    drop(a);
    b.kill9();
    drop_tables(&direct.database).await;
}

/// A group of three brokers replicating KahaDB, elected through a real ZooKeeper (session
/// timeout 1 s): under a steady load of receipted sends and a consumer acking as it goes,
/// whoever is master is killed with SIGKILL three times; each time a slave takes over, and
/// the old master, started again, comes back as a slave and catches up (a full copy: it may
/// hold writes no slave has). Nothing receipted is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_kahadb_three_brokers_elected_through_zookeeper() {
    let Some(zk) = test_support::zookeeper::ZooKeeper::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let stomp: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let configs: Vec<std::path::PathBuf> = (0..3)
        .map(|i| {
            let dir = root.path().join(format!("b{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("broker.toml");
            std::fs::write(
                &path,
                format!(
                    "[broker]\nname = \"b{i}\"\ndata_directory = \"{}\"\n\
                     [persistence]\nkind = \"replicated\"\n\
                     [persistence.replicated]\nlocal = \"kahadb\"\nreplicas = 3\nbind = \"tcp://127.0.0.1:{}\"\n\
                     zk_address = \"{}\"\nzk_path = \"/test/replicated\"\nsync = \"quorum_disk\"\nzk_session_timeout_ms = 1000\n\
                     [persistence.kahadb]\njournal_max_file_length = 1048576\npreallocate = false\n\
                     [transports]\nstomp = \"127.0.0.1:{}\"\nopenwire = \"\"\nwebsocket = \"\"\nmqtt = \"\"\nweb = \"\"\n",
                    dir.join("data").display(),
                    free_port(),
                    zk.address(),
                    stomp[i]
                ),
            )
            .unwrap();
            path
        })
        .collect();
    let mut procs: Vec<BrokerProcess> = configs.iter().map(|c| spawn(c)).collect();
    let master = wait_for_master(&procs, None).await;
    for (i, p) in procs.iter().enumerate().filter(|(i, _)| *i != master) {
        p.wait_for("replication: following the master", Duration::from_secs(60))
            .await;
        assert!(!p.has("listening for STOMP"), "slave b{i} does not serve");
    }

    let url = format!(
        "failover:({})",
        stomp
            .iter()
            .map(|p| format!("tcp://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let endpoints = parse(&url).unwrap();
    let shared = Arc::new(Shared::default());
    let t0 = Instant::now();
    let p = tokio::spawn(producer(endpoints.clone(), Arc::clone(&shared), t0));
    let c = tokio::spawn(consumer(endpoints.clone(), Arc::clone(&shared)));
    let mut kills = Vec::new();
    let mut master = master;
    for round in 0..3 {
        let before = shared.receipted.lock().len();
        let until = Instant::now() + Duration::from_secs(90);
        while shared.receipted.lock().len() < before + 300 {
            assert!(
                Instant::now() < until,
                "round {round}: the producer did not carry on; the master's log:\n{}",
                procs[master].log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        procs[master].kill9();
        kills.push(t0.elapsed().as_millis() as u64);
        let old = master;
        master = wait_for_master(&procs, Some(old)).await;
        // The old master comes back as a slave of the new one, with a full copy.
        procs[old] = spawn(&configs[old]);
        procs[old]
            .wait_for("replication: full copy done", Duration::from_secs(90))
            .await;
        assert!(!procs[old].has("listening for STOMP"));
    }
    let before = shared.receipted.lock().len();
    while shared.receipted.lock().len() < before + 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    finish(
        "replicated-kahadb/zookeeper",
        &shared,
        p,
        c,
        &kills,
        &procs[master],
    )
    .await;
    drop(procs);
    drop(zk);
}

/// The index of the process that serves (its STOMP listener is up), other than `not`.
async fn wait_for_master(procs: &[BrokerProcess], not: Option<usize>) -> usize {
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(i) = (0..procs.len())
            .filter(|i| Some(*i) != not)
            .find(|&i| procs[i].has("listening for STOMP"))
        {
            return i;
        }
        assert!(
            Instant::now() < until,
            "no broker became master within 90 s; logs:\n{}",
            procs
                .iter()
                .map(|p| p.log())
                .collect::<Vec<_>>()
                .join("\n-----\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One broker of a replicated group for the tests below: its config, STOMP port and the
/// proxies it reaches ZooKeeper through and slaves reach its replication listener through.
struct Member {
    config: std::path::PathBuf,
    stomp: u16,
    web: u16,
    zk: Vec<test_support::Proxy>,
    replication: test_support::Proxy,
}

/// Three brokers replicating KahaDB over `zk_servers`, each behind proxies of its own.
async fn group(root: &Path, zk_servers: &[String], zk_path: &str, session_ms: u64) -> Vec<Member> {
    let mut members = Vec::new();
    for i in 0..3 {
        let dir = root.join(format!("b{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut zk = Vec::new();
        for s in zk_servers {
            zk.push(test_support::Proxy::start(s.clone()).await);
        }
        let zk_address = zk
            .iter()
            .map(|p| test_support::host_port(&p.url_through("tcp://x:1")))
            .collect::<Vec<_>>()
            .join(",");
        let bind = free_port();
        let replication = test_support::Proxy::start(format!("127.0.0.1:{bind}")).await;
        let advertised = test_support::host_port(&replication.url_through("tcp://x:1"));
        let stomp = free_port();
        let web = free_port();
        let config = dir.join("broker.toml");
        std::fs::write(
            &config,
            format!(
                "[broker]\nname = \"b{i}\"\ndata_directory = \"{}\"\n\
                 [persistence]\nkind = \"replicated\"\n\
                 [persistence.replicated]\nlocal = \"kahadb\"\nreplicas = 3\nbind = \"tcp://127.0.0.1:{bind}\"\nhostname = \"{advertised}\"\n\
                 zk_address = \"{zk_address}\"\nzk_path = \"{zk_path}\"\nsync = \"quorum_disk\"\nzk_session_timeout_ms = {session_ms}\n\
                 [persistence.kahadb]\njournal_max_file_length = 1048576\npreallocate = false\n\
                 [transports]\nstomp = \"127.0.0.1:{stomp}\"\nopenwire = \"\"\nwebsocket = \"\"\nmqtt = \"\"\nweb = \"127.0.0.1:{web}\"\n",
                dir.join("data").display(),
            ),
        )
        .unwrap();
        members.push(Member {
            config,
            stomp,
            web,
            zk,
            replication,
        });
    }
    members
}

/// The `broker_destination_pending` of queue `name` in the `/metrics` of the broker whose
/// console is on `port` (HTTP Basic as admin).
async fn pending(port: u16, name: &str) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The console starts beside the STOMP listener: give it a moment.
    let until = Instant::now() + Duration::from_secs(30);
    let mut s = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => break s,
            Err(e) => assert!(Instant::now() < until, "the console on {port}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // admin:admin
    s.write_all(
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWRtaW46YWRtaW4=\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body.lines()
        .find(|l| l.starts_with("broker_destination_pending{") && l.contains(&format!("{name}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no pending count for {name} in:\n{body}"))
}

fn endpoint(port: u16) -> Vec<Endpoint> {
    parse(&format!("tcp://127.0.0.1:{port}")).unwrap()
}

/// Every body on `queue` of the broker at `port`, acked as read, until 2 s pass without one.
async fn drain(port: u16, queue: &str) -> Vec<String> {
    let mut c = connect_any(&endpoint(port), &opts(), Duration::from_secs(30))
        .await
        .unwrap();
    c.subscribe("d", queue, "auto", &[("activemq.prefetchSize", "500")])
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Ok(Some(m)) = c.recv_timeout(Duration::from_secs(2)).await {
        if m.command == "MESSAGE" {
            got.push(String::from_utf8_lossy(&m.body).into_owned());
        }
    }
    let _ = c.disconnect().await;
    got
}

/// A master cut from ZooKeeper (a three-server ensemble) and from its slaves by proxies the
/// test controls stops serving before the new master serves, and nothing it was sent after the
/// cut survives: the sends after the cut get no receipt, and the new master (and the old one,
/// back as a slave with a full copy) have none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_cut_from_zookeeper_and_its_slaves_stops_before_the_next_one_serves() {
    let Some(zk) = test_support::zookeeper::ZooKeeper::ensemble() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let members = group(root.path(), &zk.servers(), "/test/partition", 1000).await;
    let mut procs: Vec<BrokerProcess> = members.iter().map(|m| spawn(&m.config)).collect();
    let old = wait_for_master(&procs, None).await;
    for (i, p) in procs.iter().enumerate().filter(|(i, _)| *i != old) {
        p.wait_for("replication: following the master", Duration::from_secs(60))
            .await;
        assert!(!p.has("listening for STOMP"), "slave b{i} does not serve");
    }
    let mut client = connect_any(
        &endpoint(members[old].stomp),
        &opts(),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let mut before = Vec::new();
    for n in 0..100 {
        let body = format!("before-{n}");
        client
            .send("/queue/partition", body.clone(), &[("persistent", "true")])
            .await
            .unwrap();
        before.push(body);
    }

    for p in &members[old].zk {
        p.cut();
    }
    members[old].replication.cut();
    let cut = Instant::now();
    // Sends after the cut: the old master cannot reach a quorum, so none is receipted.
    let sender = tokio::spawn(async move {
        let mut receipted = Vec::new();
        for n in 0..1000 {
            let body = format!("after-{n}");
            match tokio::time::timeout(
                Duration::from_secs(5),
                client.send("/queue/partition", body.clone(), &[("persistent", "true")]),
            )
            .await
            {
                Ok(Ok(())) => receipted.push(body),
                _ => break,
            }
        }
        receipted
    });
    let (mut old_stopped, mut new_serving) = (None, None);
    let mut new = None;
    while old_stopped.is_none() || new_serving.is_none() {
        assert!(
            cut.elapsed() < Duration::from_secs(60),
            "after 60 s: old master stopped {old_stopped:?}, new master {new_serving:?}; logs:\n{}",
            procs
                .iter()
                .map(|p| p.log())
                .collect::<Vec<_>>()
                .join("\n-----\n")
        );
        if old_stopped.is_none() && procs[old].exited().is_some() {
            old_stopped = Some(cut.elapsed());
        }
        if new_serving.is_none()
            && let Some(i) = (0..3)
                .filter(|i| *i != old)
                .find(|&i| procs[i].has("listening for STOMP"))
        {
            new_serving = Some(cut.elapsed());
            new = Some(i);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (old_stopped, new_serving, new) =
        (old_stopped.unwrap(), new_serving.unwrap(), new.unwrap());
    println!(
        "PARTITION: the cut master stopped {} ms after the cut, the new master served after {} ms",
        old_stopped.as_millis(),
        new_serving.as_millis()
    );
    assert!(
        procs[old].has("lost the master lock"),
        "the old master says why it stopped:\n{}",
        procs[old].log()
    );
    assert!(
        old_stopped < new_serving,
        "the cut master stopped at {old_stopped:?}, after the new one served at {new_serving:?}"
    );
    let receipted_after = sender.await.unwrap();
    assert!(
        receipted_after.is_empty(),
        "receipted after the cut: {receipted_after:?}"
    );

    // The old master comes back as a slave, the network healed: a full copy of the new
    // master's store.
    for p in &members[old].zk {
        p.restore();
    }
    members[old].replication.restore();
    procs[old] = spawn(&members[old].config);
    procs[old]
        .wait_for("replication: full copy done", Duration::from_secs(60))
        .await;
    let got = drain(members[new].stomp, "/queue/partition").await;
    let after: Vec<&String> = got.iter().filter(|b| b.starts_with("after-")).collect();
    assert!(after.is_empty(), "sent after the cut and kept: {after:?}");
    for b in &before {
        assert!(
            got.contains(b),
            "{b} was receipted before the cut and is gone"
        );
    }
    drop(procs);
    drop(zk);
}

/// A slave killed and started again 100,000 messages behind catches up while the load goes
/// on; once it reports caught up, the other slave is killed and receipted sends go on: the
/// restarted slave is in the quorum, with everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_restarted_100000_messages_behind_catches_up_under_load() {
    let Some(zk) = test_support::zookeeper::ZooKeeper::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    // No take-over is timed here: a longer session keeps a busy machine from expiring one.
    let members = group(root.path(), &zk.servers(), "/test/catch-up", 4000).await;
    let mut procs: Vec<BrokerProcess> = members.iter().map(|m| spawn(&m.config)).collect();
    let master = wait_for_master(&procs, None).await;
    let slaves: Vec<usize> = (0..3).filter(|i| *i != master).collect();
    for &i in &slaves {
        procs[i]
            .wait_for("replication: following the master", Duration::from_secs(60))
            .await;
    }
    let (behind, other) = (slaves[0], slaves[1]);
    procs[behind].kill9();

    // 100,000 small messages, pipelined (each producer's last send receipted).
    let t0 = Instant::now();
    let out = Command::new(BIN)
        .args(["producer", "--url"])
        .arg(format!("tcp://127.0.0.1:{}", members[master].stomp))
        .args([
            "--destination",
            "/queue/backlog",
            "--count",
            "100000",
            "--producers",
            "4",
            "--size",
            "100",
            "--receipts",
            "last",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\nthe master's log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        procs[master].log()
    );

    println!("CATCH-UP: 100000 sent in {} ms", t0.elapsed().as_millis());

    // The load goes on while the slave catches up.
    let endpoints = endpoint(members[master].stomp);
    let shared = Arc::new(Shared::default());
    let p = tokio::spawn(producer(endpoints.clone(), Arc::clone(&shared), t0));
    let c = tokio::spawn(consumer(endpoints.clone(), Arc::clone(&shared)));
    let seen = procs[master].line_count();
    procs[behind] = spawn(&members[behind].config);
    let caught_up = format!("replication: slave b{behind} caught up");
    let until = Instant::now() + Duration::from_secs(120);
    let line = loop {
        if let Some(l) = procs[master].find_after(seen, &caught_up) {
            break l;
        }
        assert!(
            Instant::now() < until,
            "b{behind} did not catch up in 120 s; the master's log:\n{}",
            procs[master].log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("CATCH-UP: {line}");

    // Without the other slave, only the restarted one can complete the quorum.
    procs[other].kill9();
    let n = shared.receipted.lock().len();
    let until = Instant::now() + Duration::from_secs(60);
    while shared.receipted.lock().len() < n + 200 {
        assert!(
            Instant::now() < until,
            "no receipts with the restarted slave as the only one; the master's log:\n{}",
            procs[master].log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    finish("replicated/catch-up", &shared, p, c, &[], &procs[master]).await;

    // The restarted slave has everything: with the master gone and the other slave back
    // (behind it), it is the newest and is elected, and holds the 100,000.
    procs[master].kill9();
    procs[other] = spawn(&members[other].config);
    let elected = wait_for_master(&procs, Some(master)).await;
    assert_eq!(elected, behind, "the newest broker is elected");
    assert_eq!(pending(members[behind].web, "backlog").await, 100_000);
    drop(procs);
    drop(zk);
}
