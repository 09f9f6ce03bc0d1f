//! Scheduled and delayed delivery through the broker (issue 25): `AMQ_SCHEDULED_DELAY`,
//! `AMQ_SCHEDULED_PERIOD` and `AMQ_SCHEDULED_REPEAT` on the memory and KahaDB engines, listing
//! and cancelling jobs, refused schedules, transactions, and a scheduled message surviving a
//! restart and arriving exactly once on every durable engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use broker_core::{
    AMQ_SCHEDULED_CRON, AMQ_SCHEDULED_DELAY, AMQ_SCHEDULED_ID, AMQ_SCHEDULED_PERIOD,
    AMQ_SCHEDULED_REPEAT, AMQ_SCHEDULER_ACTION, AMQ_SCHEDULER_ACTION_END_TIME,
    AMQ_SCHEDULER_ACTION_START_TIME, AMQ_SCHEDULER_MANAGEMENT_DESTINATION, AckMode, BrokerError,
    Destination, DestinationKind, Outgoing, Value,
};
use common::{Engine, Env, assert_none, recv, texts};

fn q(name: &str) -> Destination {
    Destination::queue(name)
}

fn delayed(text: &str, ms: i64) -> Outgoing {
    Outgoing::text(text).property(AMQ_SCHEDULED_DELAY, Value::I64(ms))
}

on_engines!(
    [memory => Memory, kahadb => KahaDb]
    (
        a_delayed_message_never_arrives_before_its_delay,
        a_repeating_job_delivers_each_time_as_a_message_of_its_own,
        jobs_are_listed_and_a_cancelled_job_never_arrives,
        bad_schedules_are_refused_and_store_nothing,
        a_scheduled_send_in_a_transaction_is_scheduled_only_at_commit,
        a_scheduled_topic_message_reaches_durable_and_live_subscribers,
        the_jobs_store_is_not_a_queue_clients_can_use,
        a_cron_job_fires_at_each_match_until_cancelled,
        the_management_destination_browses_and_removes_jobs,
    )
);

on_durable_engines!(a_scheduled_message_survives_a_restart_and_arrives_once);

async fn a_delayed_message_never_arrives_before_its_delay(engine: Engine) {
    let Some(env) = Env::new(engine, "") else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let c = s.consumer(q("later"), None).await.unwrap();
    let p = s.producer(q("later")).unwrap();
    let sent = Instant::now();
    // As a STOMP header would carry it: a string.
    p.send(
        Outgoing::text("delayed")
            .persistent(true)
            .property(AMQ_SCHEDULED_DELAY, Value::String("400".into())),
    )
    .await
    .unwrap();
    p.send(Outgoing::text("now")).await.unwrap();
    assert_eq!(texts(&[recv(&c).await]), ["now"]);
    let m = recv(&c).await;
    assert!(
        sent.elapsed() >= Duration::from_millis(400),
        "delivered {:?} after a 400 ms delay",
        sent.elapsed()
    );
    assert_eq!(texts(std::slice::from_ref(&m)), ["delayed"]);
    assert!(m.message().persistent);
    assert_eq!(
        m.message().properties.get(AMQ_SCHEDULED_ID),
        Some(&Value::String(m.message().id.to_string())),
        "a one-off job keeps the message's id and names it as the job"
    );
    assert!(broker.scheduled_jobs().await.unwrap().is_empty());
    assert_none(&c).await;
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn a_repeating_job_delivers_each_time_as_a_message_of_its_own(engine: Engine) {
    let Some(env) = Env::new(engine, "") else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let c = s.consumer(q("tick"), None).await.unwrap();
    let id = s
        .producer(q("tick"))
        .unwrap()
        .send(
            Outgoing::text("tick")
                .property(AMQ_SCHEDULED_PERIOD, Value::I64(100))
                .property(AMQ_SCHEDULED_REPEAT, Value::I32(2)),
        )
        .await
        .unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let m = recv(&c).await;
        assert_eq!(texts(std::slice::from_ref(&m)), ["tick"]);
        assert_eq!(
            m.message().properties.get(AMQ_SCHEDULED_ID),
            Some(&Value::String(id.to_string()))
        );
        ids.insert(m.message().id.to_string());
    }
    assert_eq!(ids.len(), 3, "each delivery has its own id: {ids:?}");
    // Repeat 2 is three deliveries, then the job is done.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_none(&c).await;
    assert!(broker.scheduled_jobs().await.unwrap().is_empty());
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn jobs_are_listed_and_a_cancelled_job_never_arrives(engine: Engine) {
    let Some(env) = Env::new(engine, "") else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let p = s.producer(q("jobs.listed")).unwrap();
    let keep = p.send(delayed("kept", 600_000)).await.unwrap();
    let drop = p.send(delayed("cancelled", 500)).await.unwrap();
    let jobs = broker.scheduled_jobs().await.unwrap();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    // Soonest first.
    assert_eq!(jobs[0].id, drop.to_string());
    assert_eq!(jobs[1].id, keep.to_string());
    assert_eq!(jobs[0].destination, q("jobs.listed"));
    assert!(broker.cancel_scheduled(&jobs[0].id).await.unwrap());
    assert!(!broker.cancel_scheduled(&jobs[0].id).await.unwrap());
    assert!(matches!(
        broker.cancel_scheduled("not a job").await,
        Err(BrokerError::Invalid(_))
    ));
    let c = s.consumer(q("jobs.listed"), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_none(&c).await;
    let left = broker.scheduled_jobs().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, keep.to_string());
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn bad_schedules_are_refused_and_store_nothing(engine: Engine) {
    let Some(env) = Env::new(engine, "") else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let p = s.producer(q("bad.schedule")).unwrap();
    for (out, names) in [
        (delayed("negative", -5), AMQ_SCHEDULED_DELAY),
        (
            Outgoing::text("word").property(AMQ_SCHEDULED_DELAY, Value::String("soon".into())),
            AMQ_SCHEDULED_DELAY,
        ),
        (
            Outgoing::text("no period").property(AMQ_SCHEDULED_REPEAT, Value::I64(3)),
            AMQ_SCHEDULED_REPEAT,
        ),
    ] {
        match p.send(out).await {
            Err(BrokerError::Invalid(m)) => assert!(m.contains(names), "{m}"),
            other => panic!("accepted: {other:?}"),
        }
    }
    // A schedule to a wildcard is refused as a send to it is.
    let wild = s.producer(q("bad.>")).unwrap();
    assert!(wild.send(delayed("wild", 100)).await.is_err());
    assert!(broker.scheduled_jobs().await.unwrap().is_empty());
    // The connection serves on.
    let c = s.consumer(q("bad.schedule"), None).await.unwrap();
    p.send(Outgoing::text("fine")).await.unwrap();
    assert_eq!(texts(&[recv(&c).await]), ["fine"]);
    assert_none(&c).await;
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn a_scheduled_send_in_a_transaction_is_scheduled_only_at_commit(engine: Engine) {
    let Some(env) = Env::new(engine, "") else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let tx = conn.session(AckMode::Transacted).unwrap();
    let p = tx.producer(q("tx.later")).unwrap();
    p.send(delayed("rolled back", 100).persistent(true))
        .await
        .unwrap();
    assert!(broker.scheduled_jobs().await.unwrap().is_empty());
    tx.rollback().await.unwrap();
    p.send(delayed("committed", 100).persistent(true))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let c = s.consumer(q("tx.later"), None).await.unwrap();
    assert_eq!(texts(&[recv(&c).await]), ["committed"]);
    assert_none(&c).await;
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn a_scheduled_topic_message_reaches_durable_and_live_subscribers(engine: Engine) {
    let Some(env) = Env::new(engine, "") else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(Some("sched-client")).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let topic = Destination::topic("news.later");
    let durable = s
        .durable_subscriber(topic.clone(), "sub", None)
        .await
        .unwrap();
    let live = s.consumer(topic.clone(), None).await.unwrap();
    s.producer(topic)
        .unwrap()
        .send(delayed("extra", 200).persistent(true))
        .await
        .unwrap();
    assert_eq!(texts(&[recv(&durable).await]), ["extra"]);
    assert_eq!(texts(&[recv(&live).await]), ["extra"]);
    assert_none(&durable).await;
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn the_jobs_store_is_not_a_queue_clients_can_use(engine: Engine) {
    let Some(env) = Env::new(engine, "") else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    s.producer(q("hidden"))
        .unwrap()
        .send(delayed("job", 600_000))
        .await
        .unwrap();
    let jobs = q(broker_core::SCHEDULER_JOBS_QUEUE);
    assert!(s.consumer(jobs.clone(), None).await.is_err());
    assert!(
        s.producer(jobs)
            .unwrap()
            .send(Outgoing::text("forged"))
            .await
            .is_err()
    );
    // A wildcard over every queue does not reach it either.
    let all = s.consumer(q(">"), None).await.unwrap();
    assert_none(&all).await;
    assert_eq!(broker.scheduled_jobs().await.unwrap().len(), 1);
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn a_scheduled_message_survives_a_restart_and_arrives_once(engine: Engine) {
    let Some(env) = Env::new(engine, "") else {
        return;
    };
    let id = {
        let broker = env.start().await;
        let conn = broker.connect(None).await.unwrap();
        let s = conn.session(AckMode::Auto).unwrap();
        let p = s.producer(q("restart.later")).unwrap();
        let id = p
            .send(delayed("survivor", 700).persistent(true))
            .await
            .unwrap();
        // A repeating one, too: its remaining repeats survive as well.
        p.send(
            Outgoing::text("repeat")
                .persistent(true)
                .property(AMQ_SCHEDULED_DELAY, Value::I64(700))
                .property(AMQ_SCHEDULED_PERIOD, Value::I64(100))
                .property(AMQ_SCHEDULED_REPEAT, Value::I64(1)),
        )
        .await
        .unwrap();
        assert_eq!(broker.scheduled_jobs().await.unwrap().len(), 2);
        conn.close().await;
        broker.stop().await;
        id
    };
    let broker = env.start().await;
    assert_eq!(broker.scheduled_jobs().await.unwrap().len(), 2);
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let c = s.consumer(q("restart.later"), None).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = recv(&c).await;
        if texts(std::slice::from_ref(&m)) == ["survivor"] {
            assert_eq!(m.message().id, id);
        }
        got.extend(texts(&[m]));
    }
    got.sort();
    assert_eq!(got, ["repeat", "repeat", "survivor"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_none(&c).await;
    assert!(broker.scheduled_jobs().await.unwrap().is_empty());
    conn.close().await;
    broker.stop().await;
    // And after another restart nothing comes again.
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let c = s.consumer(q("restart.later"), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_none(&c).await;
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn a_cron_job_fires_at_each_match_until_cancelled(engine: Engine) {
    let Some(env) = Env::new(engine, "") else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let p = s.producer(q("cron")).unwrap();
    for bad in ["61 * * * *", "every minute", "* * *"] {
        match p
            .send(Outgoing::text("bad").property(AMQ_SCHEDULED_CRON, Value::String(bad.into())))
            .await
        {
            Err(BrokerError::Invalid(m)) => assert!(m.contains(AMQ_SCHEDULED_CRON), "{m}"),
            other => panic!("{bad:?} accepted: {other:?}"),
        }
    }
    let c = s.consumer(q("cron"), None).await.unwrap();
    // Every second (six fields: seconds first).
    p.send(
        Outgoing::text("tick").property(AMQ_SCHEDULED_CRON, Value::String("* * * * * *".into())),
    )
    .await
    .unwrap();
    let first = recv(&c).await;
    let second = recv(&c).await;
    assert_ne!(first.message().id, second.message().id);
    assert!(
        second.message().timestamp >= first.message().timestamp + 500,
        "two firings of a once-a-second pattern {} ms apart",
        second.message().timestamp - first.message().timestamp
    );
    let jobs = broker.scheduled_jobs().await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].cron.as_deref(), Some("* * * * * *"));
    assert_eq!(jobs[0].repeats_left, -1);
    assert!(broker.cancel_scheduled(&jobs[0].id).await.unwrap());
    // A firing may have been on its way as it was cancelled; after that, none.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while c
        .receive_timeout(Duration::from_millis(100))
        .await
        .unwrap()
        .is_some()
    {}
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_none(&c).await;
    assert!(broker.scheduled_jobs().await.unwrap().is_empty());
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

/// ActiveMQ's `ActiveMQ.Scheduler.Management` (issue 25): BROWSE sends a copy of each job to the
/// reply-to with its `scheduledJobId` (within a time range when given), REMOVE cancels one by
/// id, REMOVEALL cancels all; an unknown action is refused.
async fn the_management_destination_browses_and_removes_jobs(engine: Engine) {
    let Some(env) = Env::new(engine, "") else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let p = s.producer(q("managed")).unwrap();
    for (text, minutes) in [("first", 10), ("second", 20), ("third", 30)] {
        p.send(delayed(text, minutes * 60_000)).await.unwrap();
    }
    let replies = conn.create_temporary(DestinationKind::Queue).unwrap();
    let c = s.consumer(replies.clone(), None).await.unwrap();
    let manage = s
        .producer(Destination::topic(AMQ_SCHEDULER_MANAGEMENT_DESTINATION))
        .unwrap();
    let order = |action: &str| {
        let mut m = Outgoing::text("").property(AMQ_SCHEDULER_ACTION, Value::String(action.into()));
        m.reply_to = Some(replies.clone());
        m
    };
    let browse = async |o: Outgoing, n: usize| {
        manage.send(o).await.unwrap();
        let got = common::recv_n(&c, n).await;
        assert_none(&c).await;
        got.iter()
            .map(|r| {
                let m = r.message();
                let id = match m.properties.get(AMQ_SCHEDULED_ID) {
                    Some(Value::String(id)) => id.clone(),
                    other => panic!("no job id: {other:?}"),
                };
                (r.text().unwrap().to_owned(), id)
            })
            .collect::<Vec<_>>()
    };
    let all = browse(order("BROWSE"), 3).await;
    assert_eq!(
        all.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["first", "second", "third"]
    );
    // Only what is due within the range (the second, 20 minutes from now).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ranged = order("BROWSE")
        .property(
            AMQ_SCHEDULER_ACTION_START_TIME,
            Value::I64(now + 15 * 60_000),
        )
        .property(
            AMQ_SCHEDULER_ACTION_END_TIME,
            Value::String((now + 25 * 60_000).to_string()),
        );
    assert_eq!(browse(ranged, 1).await[0].0, "second");
    // REMOVE by the id BROWSE gave.
    let remove = order("REMOVE").property(AMQ_SCHEDULED_ID, Value::String(all[1].1.clone()));
    manage.send(remove).await.unwrap();
    let left = broker.scheduled_jobs().await.unwrap();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|j| j.id != all[1].1));
    // An unknown action is refused, and changes nothing.
    assert!(matches!(
        manage.send(order("PURGE")).await,
        Err(BrokerError::Invalid(_))
    ));
    manage.send(order("REMOVEALL")).await.unwrap();
    assert!(broker.scheduled_jobs().await.unwrap().is_empty());
    browse(order("BROWSE"), 0).await;
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}
