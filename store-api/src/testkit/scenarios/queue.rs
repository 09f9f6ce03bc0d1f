//! Queue scenarios: what a message reads back as, order, acks, counts, browsing and the cursor.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::error::ErrorKind;
use crate::message::{Body, Destination, Message, MessageId, Value};
use crate::order::{DeliveryOrder, OrderKey};
use crate::testkit::{Ctx, Failure, Outcome, expect_err, full_message, id_seqs, message, seqs};
use crate::transaction::{SubscriptionInfo, SubscriptionKey};
use crate::{kit_check, kit_eq};

fn with_body(d: &Destination, n: u64, body: Body) -> Message {
    let mut m = message(d, n);
    m.body = body;
    m
}

/// Adds `m`, reopens, and checks `get` returns it unchanged but for the assigned sequence.
async fn round_trip(ctx: &mut Ctx, queue: &str, m: Message) -> Outcome {
    let q = ctx.queue(queue).await?;
    let seq = q.add(m.clone()).await?;
    kit_check!(seq > 0, "sequence assigned to {} is 0", m.id);
    ctx.reopen_point().await?;
    let q = ctx.queue(queue).await?;
    let got = q.get(&m.id).await?;
    let mut expected = m;
    expected.sequence = seq;
    kit_eq!(got, expected, "message read back");
    let browsed = q.browse(None, 10).await?;
    kit_check!(
        browsed.contains(&expected),
        "browse does not return the message as added"
    );
    Ok(())
}

pub(crate) async fn add_then_get_returns_identical_message(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("q");
    round_trip(ctx, "q", full_message(&d, 1)).await
}

pub(crate) async fn every_body_kind_round_trips(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("bodies");
    let mut map = BTreeMap::new();
    map.insert("a".to_string(), Value::I32(1));
    map.insert("b".to_string(), Value::String("zwei".into()));
    map.insert(
        "c".to_string(),
        Value::Bytes(Bytes::from_static(b"\x00\x01")),
    );
    let bodies = [
        Body::Empty,
        Body::Text("text".into()),
        Body::Bytes(Bytes::from_static(&[0, 1, 2, 3, 254, 255])),
        Body::Map(map),
        Body::Stream(vec![
            Value::Bool(false),
            Value::F64(0.5),
            Value::String("s".into()),
        ]),
        Body::Object(Bytes::from_static(b"\xac\xed\x00\x05serialized")),
    ];
    for (n, body) in bodies.into_iter().enumerate() {
        round_trip(ctx, "bodies", with_body(&d, n as u64 + 1, body)).await?;
    }
    Ok(())
}

pub(crate) async fn empty_and_unicode_bodies_and_names(ctx: &mut Ctx) -> Outcome {
    let name = "ünïcødé/队列 'q'; DROP TABLE x; --";
    let d = Destination::queue(name);
    round_trip(ctx, name, with_body(&d, 1, Body::Text(String::new()))).await?;
    round_trip(ctx, name, with_body(&d, 2, Body::Bytes(Bytes::new()))).await?;
    let mut m = with_body(&d, 3, Body::Text("😀 Grüße, 你好, \0 nul inside".into()));
    m.id = MessageId::new("prodücer-'\"; --", 3);
    m.properties
        .insert("clé ünicode".into(), Value::String("välue".into()));
    round_trip(ctx, name, m).await
}

pub(crate) async fn one_mebibyte_body(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("big");
    let body: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    round_trip(ctx, "big", with_body(&d, 1, Body::Bytes(Bytes::from(body)))).await
}

pub(crate) async fn sixteen_mebibyte_body(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("huge");
    let body: Vec<u8> = (0..16 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    round_trip(
        ctx,
        "huge",
        with_body(&d, 1, Body::Bytes(Bytes::from(body))),
    )
    .await
}

pub(crate) async fn priority_order_then_fifo(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("prio");
    let q = ctx.queue("prio").await?;
    let priorities = [4u8, 9, 0, 4, 9, 5, 0, 4, 7, 1];
    for (n, p) in priorities.iter().enumerate() {
        q.add(message(&d, n as u64 + 1).with_priority(*p)).await?;
    }
    ctx.reopen_point().await?;
    let q = ctx.queue("prio").await?;
    let all = q.browse(None, 100).await?;
    kit_eq!(
        seqs(&all),
        vec![2, 5, 9, 6, 1, 4, 8, 10, 3, 7],
        "delivery order (priority, then FIFO)"
    );
    let batch = q.recover_next(100).await?;
    kit_eq!(seqs(&batch), seqs(&all), "cursor order equals browse order");
    Ok(())
}

pub(crate) async fn sequences_strictly_increase(ctx: &mut Ctx) -> Outcome {
    let a = ctx.queue("seq-a").await?;
    let b = ctx.queue("seq-b").await?;
    let (da, db) = (Destination::queue("seq-a"), Destination::queue("seq-b"));
    let mut last = 0;
    for n in 1..=5 {
        let s = a.add(message(&da, n)).await?;
        kit_check!(s > last, "sequence {s} after {last} is not increasing");
        last = s;
        let s = b.add(message(&db, n)).await?;
        kit_check!(s > last, "sequence {s} after {last} is not increasing");
        last = s;
    }
    ctx.reopen_point().await?;
    let a = ctx.queue("seq-a").await?;
    let s = a.add(message(&da, 6)).await?;
    kit_check!(s > last, "sequence {s} after reopen is not above {last}");
    let got = a.get(&MessageId::new("producer-1", 6)).await?;
    kit_eq!(got.sequence, s, "sequence of the stored message");
    Ok(())
}

pub(crate) async fn ack_removes_exactly_that_message(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("ack");
    let q = ctx.queue("ack").await?;
    for n in 1..=5 {
        q.add(message(&d, n)).await?;
    }
    q.remove(&MessageId::new("producer-1", 3)).await?;
    ctx.reopen_point().await?;
    let q = ctx.queue("ack").await?;
    kit_eq!(
        seqs(&q.browse(None, 10).await?),
        vec![1, 2, 4, 5],
        "messages left after acking 3"
    );
    expect_err(
        q.get(&MessageId::new("producer-1", 3)).await,
        ErrorKind::NotFound,
        "get of an acked message",
    )?;
    q.remove(&MessageId::new("producer-1", 1)).await?;
    q.remove(&MessageId::new("producer-1", 5)).await?;
    ctx.reopen_point().await?;
    let q = ctx.queue("ack").await?;
    kit_eq!(
        seqs(&q.browse(None, 10).await?),
        vec![2, 4],
        "messages left after acking 1 and 5"
    );
    kit_eq!(q.count().await?, 2, "count");
    Ok(())
}

pub(crate) async fn unknown_ids_are_not_found(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("unknown");
    let q = ctx.queue("unknown").await?;
    let missing = MessageId::new("nobody", 1);
    expect_err(
        q.get(&missing).await,
        ErrorKind::NotFound,
        "get on an empty queue",
    )?;
    expect_err(
        q.remove(&missing).await,
        ErrorKind::NotFound,
        "ack on an empty queue",
    )?;
    q.add(message(&d, 1)).await?;
    expect_err(
        q.get(&missing).await,
        ErrorKind::NotFound,
        "get of an unknown id",
    )?;
    expect_err(
        q.remove(&missing).await,
        ErrorKind::NotFound,
        "ack of an unknown id",
    )?;
    expect_err(
        q.set_cursor_after(&missing).await,
        ErrorKind::NotFound,
        "set_cursor_after an unknown id",
    )?;
    q.remove(&MessageId::new("producer-1", 1)).await?;
    expect_err(
        q.remove(&MessageId::new("producer-1", 1)).await,
        ErrorKind::NotFound,
        "second ack",
    )?;
    kit_eq!(q.count().await?, 0, "count after the failed calls");
    Ok(())
}

pub(crate) async fn duplicate_add_is_rejected(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("dup");
    let q = ctx.queue("dup").await?;
    q.add(message(&d, 1)).await?;
    ctx.reopen_point().await?;
    let q = ctx.queue("dup").await?;
    let mut again = message(&d, 1);
    again.body = Body::Text("different body, same id".into());
    expect_err(
        q.add(again).await,
        ErrorKind::Duplicate,
        "second add of the same id",
    )?;
    kit_eq!(q.count().await?, 1, "count after a rejected duplicate");
    kit_eq!(
        q.get(&MessageId::new("producer-1", 1)).await?.body,
        Body::Text("message 1".into()),
        "first body kept"
    );
    // The same id in another queue is a different message.
    let other = Destination::queue("dup-other");
    let o = ctx.queue("dup-other").await?;
    o.add(message(&other, 1)).await?;
    // Once acked, the id may be used again.
    q.remove(&MessageId::new("producer-1", 1)).await?;
    q.add(message(&d, 1)).await?;
    kit_eq!(q.count().await?, 1, "count after re-adding an acked id");
    Ok(())
}

pub(crate) async fn invalid_messages_are_rejected(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("invalid");
    let q = ctx.queue("invalid").await?;
    expect_err(
        q.add(message(&d, 1).with_priority(10)).await,
        ErrorKind::InvalidArgument,
        "priority 10",
    )?;
    let elsewhere = message(&Destination::queue("elsewhere"), 2);
    expect_err(
        q.add(elsewhere).await,
        ErrorKind::InvalidArgument,
        "message for another queue",
    )?;
    let topic = message(&Destination::topic("invalid"), 3);
    expect_err(
        q.add(topic).await,
        ErrorKind::InvalidArgument,
        "topic message on a queue",
    )?;
    expect_err(
        ctx.store()
            .queue_store(&Destination::topic("t"))
            .await
            .map(|_| ()),
        ErrorKind::InvalidArgument,
        "queue_store of a topic",
    )?;
    expect_err(
        ctx.store()
            .topic_store(&Destination::queue("q"))
            .await
            .map(|_| ()),
        ErrorKind::InvalidArgument,
        "topic_store of a queue",
    )?;
    kit_eq!(q.count().await?, 0, "nothing stored by rejected adds");
    Ok(())
}

pub(crate) async fn purge_empties_queue(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("purge");
    let q = ctx.queue("purge").await?;
    for n in 1..=20 {
        q.add(message(&d, n).with_priority((n % 10) as u8)).await?;
    }
    kit_eq!(q.purge().await?, 20, "purged count");
    ctx.reopen_point().await?;
    let q = ctx.queue("purge").await?;
    kit_eq!(q.count().await?, 0, "count after purge");
    kit_eq!(q.bytes().await?, 0, "bytes after purge");
    kit_check!(
        q.browse(None, 10).await?.is_empty(),
        "messages left after purge"
    );
    q.add(message(&d, 21)).await?;
    kit_eq!(
        seqs(&q.recover_next(10).await?),
        vec![21],
        "a message added after purge"
    );
    Ok(())
}

pub(crate) async fn count_and_bytes_are_exact(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("stats");
    let q = ctx.queue("stats").await?;
    kit_eq!((q.count().await?, q.bytes().await?), (0, 0), "empty queue");
    let mut expected = BTreeMap::new();
    for n in 1..=30u64 {
        let mut m = message(&d, n);
        m.body = Body::Bytes(Bytes::from(vec![7u8; (n * 37) as usize]));
        q.add(m).await?;
        let stored = q.get(&MessageId::new("producer-1", n)).await?;
        expected.insert(n, stored.size());
    }
    for n in [3u64, 10, 11, 29] {
        q.remove(&MessageId::new("producer-1", n)).await?;
        expected.remove(&n);
    }
    ctx.reopen_point().await?;
    let q = ctx.queue("stats").await?;
    kit_eq!(q.count().await?, expected.len() as u64, "count");
    kit_eq!(
        q.bytes().await?,
        expected.values().sum::<u64>(),
        "bytes (sum of Message::size)"
    );
    Ok(())
}

pub(crate) async fn browse_pages_by_order_key(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("browse");
    let q = ctx.queue("browse").await?;
    for n in 1..=25u64 {
        q.add(message(&d, n).with_priority((n % 3) as u8 * 4))
            .await?;
    }
    ctx.reopen_point().await?;
    let q = ctx.queue("browse").await?;
    let all = q.browse(None, usize::MAX).await?;
    kit_eq!(all.len(), 25, "browse of everything");
    let mut paged = Vec::new();
    let mut after: Option<OrderKey> = None;
    loop {
        let page = q.browse(after, 4).await?;
        kit_check!(
            page.len() <= 4,
            "browse returned {} messages for max 4",
            page.len()
        );
        match page.last() {
            Some(last) => after = Some(OrderKey::of(last)),
            None => break,
        }
        paged.extend(page);
    }
    kit_eq!(seqs(&paged), seqs(&all), "paged browse equals one browse");
    kit_eq!(q.count().await?, 25, "browsing does not consume");
    kit_check!(
        q.browse(None, 0).await?.is_empty(),
        "browse with max 0 returned messages"
    );
    Ok(())
}

pub(crate) async fn cursor_batches_honour_max_and_order(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("cursor");
    let q = ctx.queue("cursor").await?;
    for n in 1..=10u64 {
        q.add(message(&d, n).with_priority(if n % 2 == 0 { 6 } else { 3 }))
            .await?;
    }
    ctx.reopen_point().await?;
    let q = ctx.queue("cursor").await?;
    let mut got = Vec::new();
    loop {
        let batch = q.recover_next(3).await?;
        kit_check!(batch.len() <= 3, "batch of {} for max 3", batch.len());
        if batch.is_empty() {
            break;
        }
        got.extend(batch);
    }
    kit_eq!(
        seqs(&got),
        vec![2, 4, 6, 8, 10, 1, 3, 5, 7, 9],
        "cursor order"
    );
    kit_check!(
        q.recover_next(3).await?.is_empty(),
        "exhausted cursor returned more"
    );
    kit_check!(
        q.recover_next(0).await?.is_empty(),
        "max 0 returned messages"
    );
    kit_eq!(q.count().await?, 10, "the cursor does not consume");
    Ok(())
}

pub(crate) async fn cursor_resumes_while_adds_interleave(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("interleave");
    let q = ctx.queue("interleave").await?;
    for n in 1..=4u64 {
        q.add(message(&d, n)).await?;
    }
    kit_eq!(seqs(&q.recover_next(2).await?), vec![1, 2], "first batch");
    q.add(message(&d, 5).with_priority(9)).await?;
    q.add(message(&d, 6)).await?;
    q.add(message(&d, 7).with_priority(0)).await?;
    kit_eq!(
        seqs(&q.recover_next(2).await?),
        vec![5, 3],
        "a later high-priority add comes next"
    );
    q.add(message(&d, 8).with_priority(9)).await?;
    kit_eq!(
        seqs(&q.recover_next(10).await?),
        vec![8, 4, 6, 7],
        "the rest, none skipped"
    );
    kit_check!(
        q.recover_next(10).await?.is_empty(),
        "nothing returned twice"
    );
    ctx.reopen_point().await?;
    let q = ctx.queue("interleave").await?;
    if ctx.reopened() {
        kit_eq!(
            seqs(&q.recover_next(3).await?),
            vec![5, 8, 1],
            "a reopened store's cursor starts over"
        );
    }
    Ok(())
}

/// The cursor read in arrival order (a destination whose policy turns prioritized messages
/// off): sequences only, whatever the priorities, across batches, adds, a switch of order and
/// a reopen; the same for a subscription's cursor.
pub(crate) async fn arrival_order_cursor_ignores_priority(ctx: &mut Ctx) -> Outcome {
    const ARRIVAL: DeliveryOrder = DeliveryOrder::Arrival;
    let d = Destination::queue("arrival");
    let q = ctx.queue("arrival").await?;
    for (n, p) in [(1u64, 4u8), (2, 9), (3, 0), (4, 9), (5, 4)] {
        q.add(message(&d, n).with_priority(p)).await?;
    }
    kit_eq!(
        seqs(&q.recover_next_ordered(ARRIVAL, 2).await?),
        vec![1, 2],
        "first batch in arrival order"
    );
    q.add(message(&d, 6).with_priority(9)).await?;
    kit_eq!(
        seqs(&q.recover_next_ordered(ARRIVAL, 3).await?),
        vec![3, 4, 5],
        "an earlier low priority before a later high one"
    );
    kit_eq!(
        seqs(&q.recover_next(10).await?),
        vec![6],
        "the same cursor read by priority: nothing twice, nothing skipped"
    );
    kit_check!(
        q.recover_next_ordered(ARRIVAL, 0).await?.is_empty(),
        "max 0 returned messages"
    );
    ctx.reopen_point().await?;
    let q = ctx.queue("arrival").await?;
    if ctx.reopened() {
        kit_eq!(
            seqs(&q.recover_next_ordered(ARRIVAL, 10).await?),
            vec![1, 2, 3, 4, 5, 6],
            "a reopened store's cursor starts over, in arrival order"
        );
    }
    let td = Destination::topic("arrival");
    let t = ctx.topic("arrival").await?;
    let key = SubscriptionKey::new("c", "arrival");
    t.add_subscription(SubscriptionInfo::new(key.clone(), None), false)
        .await?;
    for (n, p) in [(1u64, 0u8), (2, 9), (3, 4)] {
        t.add(message(&td, n).with_priority(p)).await?;
    }
    kit_eq!(
        seqs(&t.recover_next_ordered(&key, ARRIVAL, 2).await?),
        vec![1, 2],
        "a subscription's cursor in arrival order"
    );
    t.add(message(&td, 4).with_priority(9)).await?;
    kit_eq!(
        seqs(&t.recover_next_ordered(&key, ARRIVAL, 10).await?),
        vec![3, 4],
        "and the rest"
    );
    Ok(())
}

pub(crate) async fn cursor_resumes_while_acks_interleave(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("acks-interleave");
    let q = ctx.queue("acks-interleave").await?;
    for n in 1..=8u64 {
        q.add(message(&d, n)).await?;
    }
    let first = q.recover_next(3).await?;
    kit_eq!(seqs(&first), vec![1, 2, 3], "first batch");
    for m in &first {
        q.remove(&m.id).await?;
    }
    // Ack messages the cursor has not reached yet: they must not be returned.
    q.remove(&MessageId::new("producer-1", 5)).await?;
    q.remove(&MessageId::new("producer-1", 6)).await?;
    kit_eq!(
        seqs(&q.recover_next(10).await?),
        vec![4, 7, 8],
        "second batch skips only acked messages"
    );
    ctx.reopen_point().await?;
    let q = ctx.queue("acks-interleave").await?;
    kit_eq!(
        seqs(&q.browse(None, 10).await?),
        vec![4, 7, 8],
        "stored after the acks"
    );
    Ok(())
}

pub(crate) async fn cursor_reset_rewinds(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("reset");
    let q = ctx.queue("reset").await?;
    for n in 1..=5u64 {
        q.add(message(&d, n)).await?;
    }
    kit_eq!(q.recover_next(10).await?.len(), 5, "first pass");
    q.remove(&MessageId::new("producer-1", 2)).await?;
    q.reset_cursor().await?;
    kit_eq!(
        seqs(&q.recover_next(10).await?),
        vec![1, 3, 4, 5],
        "after reset, every stored message again"
    );
    ctx.reopen_point().await?;
    let q = ctx.queue("reset").await?;
    q.reset_cursor().await?;
    kit_eq!(
        seqs(&q.recover_next(2).await?),
        vec![1, 3],
        "after reopen and reset"
    );
    Ok(())
}

pub(crate) async fn set_cursor_after_skips_earlier_messages(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("setbatch");
    let q = ctx.queue("setbatch").await?;
    for n in 1..=6u64 {
        q.add(message(&d, n).with_priority(if n <= 2 { 8 } else { 4 }))
            .await?;
    }
    ctx.reopen_point().await?;
    let q = ctx.queue("setbatch").await?;
    q.set_cursor_after(&MessageId::new("producer-1", 4)).await?;
    kit_eq!(
        seqs(&q.recover_next(10).await?),
        vec![5, 6],
        "after message 4"
    );
    q.add(message(&d, 7).with_priority(9)).await?;
    q.add(message(&d, 8).with_priority(1)).await?;
    kit_eq!(
        seqs(&q.recover_next(10).await?),
        vec![7, 8],
        "later adds still come"
    );
    q.set_cursor_after(&MessageId::new("producer-1", 1)).await?;
    kit_eq!(
        seqs(&q.recover_next(10).await?),
        vec![2, 3, 4, 5, 6, 8],
        "after message 1"
    );
    Ok(())
}

pub(crate) async fn expired_messages_found_by_scan(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("expiry");
    let q = ctx.queue("expiry").await?;
    q.add(message(&d, 1).with_expiration(1_000)).await?;
    q.add(message(&d, 2)).await?;
    q.add(message(&d, 3).with_expiration(5_000)).await?;
    q.add(message(&d, 4).with_expiration(2_000).with_priority(9))
        .await?;
    q.add(message(&d, 5).with_expiration(9_000)).await?;
    ctx.reopen_point().await?;
    let q = ctx.queue("expiry").await?;
    kit_eq!(
        id_seqs(&q.expired(999, 10).await?),
        Vec::<u64>::new(),
        "nothing expired at 999"
    );
    kit_eq!(
        id_seqs(&q.expired(1_000, 10).await?),
        vec![1],
        "expired at 1000 (inclusive)"
    );
    kit_eq!(
        id_seqs(&q.expired(5_000, 10).await?),
        vec![4, 1, 3],
        "expired at 5000, in delivery order"
    );
    kit_eq!(
        id_seqs(&q.expired(5_000, 2).await?),
        vec![4, 1],
        "max honoured"
    );
    kit_eq!(
        id_seqs(&q.expired(i64::MAX, 10).await?),
        vec![4, 1, 3, 5],
        "0 never expires"
    );
    kit_eq!(q.count().await?, 5, "the scan removes nothing");
    Ok(())
}

pub(crate) async fn concurrent_adds_never_skipped_by_cursor(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("concurrent");
    let q = ctx.queue("concurrent").await?;
    let producers = 8u64;
    let per_producer = 40u64;
    let mut tasks = Vec::new();
    for p in 0..producers {
        let q = q.clone();
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..per_producer {
                let mut m = message(&d, n);
                m.id = MessageId::new(format!("producer-{p}"), n);
                m.priority = ((p + n) % 10) as u8;
                q.add(m).await?;
            }
            Ok::<_, crate::StoreError>(())
        }));
    }
    let mut seen = BTreeSet::new();
    let drain =
        |batch: Vec<Message>, seen: &mut BTreeSet<MessageId>| -> Result<Vec<MessageId>, Failure> {
            let mut ids = Vec::new();
            for m in batch {
                kit_check!(seen.insert(m.id.clone()), "cursor returned {} twice", m.id);
                ids.push(m.id);
            }
            Ok(ids)
        };
    while !tasks.iter().all(|t| t.is_finished()) {
        for id in drain(q.recover_next(7).await?, &mut seen)? {
            q.remove(&id).await?;
        }
        tokio::task::yield_now().await;
    }
    for t in tasks {
        t.await
            .map_err(|e| Failure(format!("producer task failed: {e}")))??;
    }
    ctx.reopen_point().await?;
    let q = ctx.queue("concurrent").await?;
    loop {
        let batch = q.recover_next(7).await?;
        if batch.is_empty() {
            break;
        }
        for id in drain(batch, &mut seen)? {
            q.remove(&id).await?;
        }
    }
    kit_eq!(
        seen.len() as u64,
        producers * per_producer,
        "messages the cursor returned"
    );
    kit_eq!(q.count().await?, 0, "queue drained");
    Ok(())
}

/// `submit_add` as a pipelining producer uses it: submit many, await later. Each message's
/// place is fixed at submit, so they read back in submit order (across priorities as ever);
/// a duplicate of a message still in flight is refused at submit.
pub(crate) async fn submitted_adds_keep_their_order(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("pipelined");
    let q = ctx.queue("pipelined").await?;
    let mut pending = Vec::new();
    for n in 0..60 {
        pending.push(q.submit_add(message(&d, n)).await?);
        if n == 0 {
            // Refused at submit, or by its Pending: either way never stored twice.
            let again = match q.submit_add(message(&d, 0)).await {
                Ok(p) => p.await.map(|_| ()),
                Err(e) => Err(e),
            };
            expect_err(
                again,
                ErrorKind::Duplicate,
                "a second submit of an id still in flight",
            )?;
        }
    }
    // Awaited last to first: the order was fixed at submit, not at await.
    let mut sequences = Vec::new();
    for p in pending.into_iter().rev() {
        sequences.push(p.await?);
    }
    sequences.reverse();
    kit_check!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "sequences of submitted adds are not increasing in submit order: {sequences:?}"
    );
    // A plain add after them sorts after them.
    let last = q.add(message(&d, 60)).await?;
    kit_check!(
        sequences.last().is_some_and(|s| *s < last),
        "a later add sorts before submitted ones"
    );
    ctx.reopen_point().await?;
    let q = ctx.queue("pipelined").await?;
    let browsed = q.browse(None, 100).await?;
    let ids: Vec<u64> = browsed.iter().map(|m| m.id.producer_seq).collect();
    kit_eq!(
        ids,
        (0..61).collect::<Vec<u64>>(),
        "messages in submit order"
    );
    kit_eq!(q.count().await?, 61, "count after submitted adds");

    // A topic: submitted adds are pending for the subscription, in order.
    let t = ctx.topic("pipelined-topic").await?;
    let td = Destination::topic("pipelined-topic");
    let key = crate::transaction::SubscriptionKey::new("client", "sub");
    t.add_subscription(
        crate::transaction::SubscriptionInfo::new(key.clone(), None),
        false,
    )
    .await?;
    let mut pending = Vec::new();
    for n in 0..20 {
        pending.push(t.submit_add(message(&td, n)).await?);
    }
    for p in pending.into_iter().rev() {
        p.await?;
    }
    ctx.reopen_point().await?;
    let t = ctx.topic("pipelined-topic").await?;
    let got = t.recover_next(&key, 100).await?;
    let ids: Vec<u64> = got.iter().map(|m| m.id.producer_seq).collect();
    kit_eq!(
        ids,
        (0..20).collect::<Vec<u64>>(),
        "topic messages pending in submit order"
    );
    Ok(())
}
