//! Deferred appends (`Journal::append_deferred`, the acks no client waits for): under sync
//! `always` one does not start a group commit of its own but waits, up to the defer delay, for an
//! append that does and shares its fsync; it is durable when it completes, whichever way it
//! was written. A delay of an hour pins "waits for company" without any race: nothing but an
//! urgent append, a sync or closing the journal can complete it within a test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use store_journal::fs::{Crash, SimFs};
use store_journal::{Completion, Journal, JournalConfig, Location, SyncPolicy};

fn config(defer_delay: Duration) -> JournalConfig {
    let mut c = JournalConfig::new("/j", "db-", ".log");
    c.max_file_length = 64 * 1024;
    c.sync = SyncPolicy::Always;
    c.preallocate = false;
    c.defer_delay = defer_delay;
    c
}

const HOUR: Duration = Duration::from_secs(3600);

/// Opens the journal with a first record written, so that creating the file is not counted.
fn open(fs: &SimFs, c: &JournalConfig) -> Journal {
    let j = Journal::open(c.clone(), Arc::new(fs.clone())).expect("open");
    j.append(&[b"first"], false)
        .unwrap()
        .completion
        .wait()
        .unwrap();
    j
}

/// Waits for `completion` on a thread of its own; the receiver gets its result.
fn watch(completion: Completion) -> mpsc::Receiver<store_journal::Result<()>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(completion.wait());
    });
    rx
}

fn replayed(j: &Journal) -> Vec<Vec<u8>> {
    j.replay(Location::default())
        .map(|r| r.expect("replay").1)
        .collect()
}

#[test]
fn a_deferred_append_waits_for_an_urgent_one_and_shares_its_fsync() {
    let fs = SimFs::new();
    let c = config(HOUR);
    let j = open(&fs, &c);
    let before = j.stats().fsyncs;
    let acks: Vec<_> = (0..3)
        .map(|i| {
            watch(
                j.append_deferred(&[format!("ack {i}").as_bytes()])
                    .unwrap()
                    .completion,
            )
        })
        .collect();
    for a in &acks {
        assert!(
            a.recv_timeout(Duration::from_millis(50)).is_err(),
            "a deferred append completed with nothing to carry it"
        );
    }
    assert_eq!(
        j.stats().fsyncs,
        before,
        "a deferred append was fsynced alone"
    );
    j.append(&[b"message"], false)
        .unwrap()
        .completion
        .wait()
        .unwrap();
    for a in acks {
        a.recv_timeout(Duration::from_secs(10))
            .expect("the urgent append's group did not answer the deferred ones")
            .unwrap();
    }
    assert_eq!(j.stats().fsyncs, before + 1, "one fsync for all four");
    // Durable, as every completed append.
    fs.power_loss(Crash::LoseUnsynced);
    drop(j);
    let j = open(&fs, &c);
    let got = replayed(&j);
    for want in ["ack 0", "ack 1", "ack 2", "message"] {
        assert!(got.iter().any(|r| r == want.as_bytes()), "{want} lost");
    }
}

#[test]
fn a_deferred_append_alone_is_written_after_the_delay() {
    let fs = SimFs::new();
    let c = config(Duration::from_millis(20));
    let j = open(&fs, &c);
    let before = j.stats().fsyncs;
    let ack = j.append_deferred(&[b"ack"]).unwrap();
    watch(ack.completion)
        .recv_timeout(Duration::from_secs(10))
        .expect("a deferred append was never written")
        .unwrap();
    assert_eq!(j.stats().fsyncs, before + 1);
    fs.power_loss(Crash::LoseUnsynced);
    drop(j);
    let j = open(&fs, &c);
    assert!(replayed(&j).iter().any(|r| r == b"ack"));
}

#[test]
fn a_sync_or_closing_the_journal_writes_deferred_appends_at_once() {
    let fs = SimFs::new();
    let c = config(HOUR);
    let j = open(&fs, &c);
    let ack = watch(j.append_deferred(&[b"ack 1"]).unwrap().completion);
    j.sync().wait().unwrap();
    ack.recv_timeout(Duration::from_secs(10))
        .expect("a sync left a deferred append waiting")
        .unwrap();
    let ack = watch(j.append_deferred(&[b"ack 2"]).unwrap().completion);
    j.close().unwrap();
    ack.recv_timeout(Duration::from_secs(10))
        .expect("closing the journal left a deferred append waiting")
        .unwrap();
    fs.power_loss(Crash::LoseUnsynced);
    let j = open(&fs, &c);
    let got = replayed(&j);
    assert!(got.iter().any(|r| r == b"ack 1") && got.iter().any(|r| r == b"ack 2"));
}

#[test]
fn without_a_delay_a_deferred_append_is_written_at_once() {
    let fs = SimFs::new();
    let c = config(Duration::ZERO);
    let j = open(&fs, &c);
    let ack = j.append_deferred(&[b"ack"]).unwrap();
    watch(ack.completion)
        .recv_timeout(Duration::from_secs(10))
        .expect("a deferred append with no delay was not written")
        .unwrap();
}
