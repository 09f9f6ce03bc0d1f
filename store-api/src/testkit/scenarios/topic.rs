//! Durable-subscription scenarios: who sees what, exact acks, and release of space.

use crate::error::ErrorKind;
use crate::message::{Destination, MessageId};
use crate::testkit::{Ctx, Outcome, expect_err, id_seqs, message, seqs};
use crate::transaction::{SubscriptionInfo, SubscriptionKey};
use crate::{kit_check, kit_eq};

fn sub(client: &str, name: &str) -> SubscriptionInfo {
    SubscriptionInfo::new(SubscriptionKey::new(client, name), None)
}

fn id(n: u64) -> MessageId {
    MessageId::new("producer-1", n)
}

pub(crate) async fn topic_message_without_subscription_is_not_kept(ctx: &mut Ctx) -> Outcome {
    let d = Destination::topic("nosub");
    let t = ctx.topic("nosub").await?;
    t.add(message(&d, 1)).await?;
    ctx.reopen_point().await?;
    let t = ctx.topic("nosub").await?;
    kit_eq!(t.count().await?, 0, "messages kept with no subscription");
    kit_eq!(t.bytes().await?, 0, "bytes kept with no subscription");
    expect_err(
        t.get(&id(1)).await,
        ErrorKind::NotFound,
        "get of an unkept topic message",
    )?;
    t.add_subscription(sub("c", "retro"), true).await?;
    kit_eq!(
        t.pending_count(&SubscriptionKey::new("c", "retro")).await?,
        0,
        "a retroactive subscription cannot see it"
    );
    Ok(())
}

pub(crate) async fn non_retroactive_subscription_sees_only_later_messages(
    ctx: &mut Ctx,
) -> Outcome {
    let d = Destination::topic("later");
    let t = ctx.topic("later").await?;
    t.add_subscription(sub("c1", "early"), false).await?;
    t.add(message(&d, 1)).await?;
    t.add(message(&d, 2)).await?;
    t.add_subscription(sub("c2", "late"), false).await?;
    ctx.reopen_point().await?;
    let t = ctx.topic("later").await?;
    t.add(message(&d, 3)).await?;
    let late = SubscriptionKey::new("c2", "late");
    let early = SubscriptionKey::new("c1", "early");
    kit_eq!(
        seqs(&t.browse_subscription(&late, None, 10).await?),
        vec![3],
        "late subscription"
    );
    kit_eq!(
        seqs(&t.browse_subscription(&early, None, 10).await?),
        vec![1, 2, 3],
        "early subscription"
    );
    Ok(())
}

pub(crate) async fn retroactive_subscription_sees_all_kept_messages(ctx: &mut Ctx) -> Outcome {
    let d = Destination::topic("retro");
    let t = ctx.topic("retro").await?;
    t.add_subscription(sub("c1", "first"), false).await?;
    for n in 1..=4 {
        t.add(message(&d, n)).await?;
    }
    t.acknowledge(&SubscriptionKey::new("c1", "first"), &id(2))
        .await?;
    ctx.reopen_point().await?;
    let t = ctx.topic("retro").await?;
    t.add_subscription(sub("c2", "retro"), true).await?;
    ctx.reopen_point().await?;
    let t = ctx.topic("retro").await?;
    t.add(message(&d, 5)).await?;
    let retro = SubscriptionKey::new("c2", "retro");
    kit_eq!(
        seqs(&t.browse_subscription(&retro, None, 10).await?),
        vec![1, 3, 4, 5],
        "retroactive subscription sees every kept message"
    );
    Ok(())
}

pub(crate) async fn topic_message_kept_until_every_subscription_acks(ctx: &mut Ctx) -> Outcome {
    let d = Destination::topic("fanout");
    let t = ctx.topic("fanout").await?;
    let keys: Vec<SubscriptionKey> = (0..3)
        .map(|i| SubscriptionKey::new(format!("c{i}"), "s"))
        .collect();
    for k in &keys {
        t.add_subscription(SubscriptionInfo::new(k.clone(), None), false)
            .await?;
    }
    t.add(message(&d, 1)).await?;
    t.add(message(&d, 2)).await?;
    let size1 = t.get(&id(1)).await?.size();
    let size2 = t.get(&id(2)).await?.size();
    kit_eq!(
        (t.count().await?, t.bytes().await?),
        (2, size1 + size2),
        "kept before acks"
    );
    t.acknowledge(&keys[0], &id(1)).await?;
    t.acknowledge(&keys[1], &id(1)).await?;
    ctx.reopen_point().await?;
    let t = ctx.topic("fanout").await?;
    kit_eq!(
        (t.count().await?, t.bytes().await?),
        (2, size1 + size2),
        "kept while one subscription still needs it"
    );
    t.get(&id(1)).await?;
    t.acknowledge(&keys[2], &id(1)).await?;
    kit_eq!(
        (t.count().await?, t.bytes().await?),
        (1, size2),
        "released after the last ack"
    );
    expect_err(
        t.get(&id(1)).await,
        ErrorKind::NotFound,
        "get after every subscription acked",
    )?;
    ctx.reopen_point().await?;
    let t = ctx.topic("fanout").await?;
    kit_eq!(
        (t.count().await?, t.bytes().await?),
        (1, size2),
        "still released after reopen"
    );
    for k in &keys {
        kit_eq!(
            seqs(&t.browse_subscription(k, None, 10).await?),
            vec![2],
            "pending for {k}"
        );
    }
    Ok(())
}

pub(crate) async fn out_of_order_durable_acks_are_exact(ctx: &mut Ctx) -> Outcome {
    let d = Destination::topic("ooo");
    let t = ctx.topic("ooo").await?;
    let a = SubscriptionKey::new("c", "a");
    let b = SubscriptionKey::new("c", "b");
    t.add_subscription(SubscriptionInfo::new(a.clone(), None), false)
        .await?;
    t.add_subscription(SubscriptionInfo::new(b.clone(), None), false)
        .await?;
    for n in 1..=10 {
        t.add(message(&d, n).with_priority((n % 3) as u8)).await?;
    }
    for n in [7u64, 2, 9, 4] {
        t.acknowledge(&a, &id(n)).await?;
    }
    for n in [10u64, 1] {
        t.acknowledge(&b, &id(n)).await?;
    }
    ctx.reopen_point().await?;
    let t = ctx.topic("ooo").await?;
    let mut left_a = seqs(&t.browse_subscription(&a, None, 100).await?);
    left_a.sort_unstable();
    kit_eq!(
        left_a,
        vec![1, 3, 5, 6, 8, 10],
        "pending for a after acks 7, 2, 9, 4"
    );
    let mut left_b = seqs(&t.browse_subscription(&b, None, 100).await?);
    left_b.sort_unstable();
    kit_eq!(
        left_b,
        vec![2, 3, 4, 5, 6, 7, 8, 9],
        "pending for b after acks 10, 1"
    );
    kit_eq!(
        t.count().await?,
        10,
        "every message still needed by one subscription"
    );
    kit_eq!(t.pending_count(&a).await?, 6, "pending count of a");
    Ok(())
}

pub(crate) async fn durable_ack_errors(ctx: &mut Ctx) -> Outcome {
    let d = Destination::topic("ackerr");
    let t = ctx.topic("ackerr").await?;
    let a = SubscriptionKey::new("c", "a");
    let b = SubscriptionKey::new("c", "b");
    t.add_subscription(SubscriptionInfo::new(a.clone(), None), false)
        .await?;
    t.add(message(&d, 1)).await?;
    t.add_subscription(SubscriptionInfo::new(b.clone(), None), false)
        .await?;
    t.add(message(&d, 2)).await?;
    let ghost = SubscriptionKey::new("c", "ghost");
    expect_err(
        t.acknowledge(&ghost, &id(1)).await,
        ErrorKind::NotFound,
        "ack by an unknown subscription",
    )?;
    expect_err(
        t.acknowledge(&a, &id(99)).await,
        ErrorKind::NotFound,
        "ack of an unknown message",
    )?;
    expect_err(
        t.acknowledge(&b, &id(1)).await,
        ErrorKind::NotFound,
        "ack of a message never pending for it",
    )?;
    t.acknowledge(&a, &id(1)).await?;
    expect_err(
        t.acknowledge(&a, &id(1)).await,
        ErrorKind::NotFound,
        "second ack of the same message",
    )?;
    expect_err(
        t.pending_count(&ghost).await,
        ErrorKind::NotFound,
        "pending count of an unknown subscription",
    )?;
    expect_err(
        t.recover_next(&ghost, 1).await,
        ErrorKind::NotFound,
        "cursor of an unknown subscription",
    )?;
    expect_err(
        t.delete_subscription(&ghost).await,
        ErrorKind::NotFound,
        "delete of an unknown subscription",
    )?;
    expect_err(
        t.remove(&id(99)).await,
        ErrorKind::NotFound,
        "remove of an unknown topic message",
    )?;
    ctx.reopen_point().await?;
    let t = ctx.topic("ackerr").await?;
    kit_eq!(
        seqs(&t.browse_subscription(&a, None, 10).await?),
        vec![2],
        "a after failed acks"
    );
    kit_eq!(
        seqs(&t.browse_subscription(&b, None, 10).await?),
        vec![2],
        "b after failed acks"
    );
    Ok(())
}

pub(crate) async fn deleting_subscription_releases_its_messages(ctx: &mut Ctx) -> Outcome {
    let d = Destination::topic("unsub");
    let t = ctx.topic("unsub").await?;
    let a = SubscriptionKey::new("c", "a");
    let b = SubscriptionKey::new("c", "b");
    t.add_subscription(SubscriptionInfo::new(a.clone(), None), false)
        .await?;
    t.add(message(&d, 1)).await?;
    t.add_subscription(SubscriptionInfo::new(b.clone(), None), false)
        .await?;
    t.add(message(&d, 2)).await?;
    t.acknowledge(&b, &id(2)).await?;
    t.delete_subscription(&a).await?;
    ctx.reopen_point().await?;
    let t = ctx.topic("unsub").await?;
    kit_eq!(
        t.count().await?,
        0,
        "messages kept after the only holder unsubscribed"
    );
    kit_eq!(t.bytes().await?, 0, "bytes kept");
    kit_eq!(
        t.lookup_subscription(&a).await?,
        None,
        "deleted subscription looked up"
    );
    kit_eq!(t.subscriptions().await?.len(), 1, "subscriptions left");
    // Re-creating the same key starts afresh.
    t.add_subscription(SubscriptionInfo::new(a.clone(), None), false)
        .await?;
    kit_eq!(
        t.pending_count(&a).await?,
        0,
        "pending of a re-created subscription"
    );
    Ok(())
}

pub(crate) async fn duplicate_subscription_is_rejected(ctx: &mut Ctx) -> Outcome {
    let d = Destination::topic("dupsub");
    let t = ctx.topic("dupsub").await?;
    t.add_subscription(sub("c", "s"), false).await?;
    t.add(message(&d, 1)).await?;
    ctx.reopen_point().await?;
    let t = ctx.topic("dupsub").await?;
    expect_err(
        t.add_subscription(sub("c", "s"), true).await,
        ErrorKind::Duplicate,
        "second add of a subscription",
    )?;
    kit_eq!(
        t.pending_count(&SubscriptionKey::new("c", "s")).await?,
        1,
        "pending kept"
    );
    // Same name under another client id is another subscription.
    t.add_subscription(sub("other", "s"), false).await?;
    Ok(())
}

pub(crate) async fn subscriptions_listed_and_looked_up(ctx: &mut Ctx) -> Outcome {
    let t = ctx.topic("subs").await?;
    let odd = SubscriptionInfo::new(
        SubscriptionKey::new("client-ü 'x'; --", "naмe:with:colons"),
        Some("color = 'red' AND price > 10".into()),
    );
    t.add_subscription(sub("b", "2"), false).await?;
    t.add_subscription(odd.clone(), false).await?;
    t.add_subscription(sub("a", "1"), true).await?;
    ctx.reopen_point().await?;
    let t = ctx.topic("subs").await?;
    let listed = t.subscriptions().await?;
    let keys: Vec<String> = listed.iter().map(|s| s.key.to_string()).collect();
    kit_eq!(
        keys,
        vec!["a:1".to_string(), "b:2".into(), odd.key.to_string()],
        "subscriptions sorted by key"
    );
    kit_eq!(
        t.lookup_subscription(&odd.key).await?,
        Some(odd.clone()),
        "lookup keeps the selector and odd names"
    );
    kit_eq!(
        t.lookup_subscription(&SubscriptionKey::new("x", "y"))
            .await?,
        None,
        "lookup of an unknown key"
    );
    // Subscriptions are per topic.
    let other = ctx.topic("subs-other").await?;
    kit_check!(
        other.subscriptions().await?.is_empty(),
        "another topic has subscriptions"
    );
    Ok(())
}

pub(crate) async fn subscription_cursor_batches_and_resumes(ctx: &mut Ctx) -> Outcome {
    let d = Destination::topic("subcursor");
    let t = ctx.topic("subcursor").await?;
    let a = SubscriptionKey::new("c", "a");
    let b = SubscriptionKey::new("c", "b");
    t.add_subscription(SubscriptionInfo::new(a.clone(), None), false)
        .await?;
    t.add_subscription(SubscriptionInfo::new(b.clone(), None), false)
        .await?;
    for n in 1..=6 {
        t.add(message(&d, n)).await?;
    }
    ctx.reopen_point().await?;
    let t = ctx.topic("subcursor").await?;
    kit_eq!(
        seqs(&t.recover_next(&a, 4).await?),
        vec![1, 2, 3, 4],
        "a first batch"
    );
    kit_eq!(
        seqs(&t.recover_next(&b, 2).await?),
        vec![1, 2],
        "b has its own cursor"
    );
    t.acknowledge(&a, &id(5)).await?;
    t.add(message(&d, 7).with_priority(9)).await?;
    kit_eq!(
        seqs(&t.recover_next(&a, 10).await?),
        vec![7, 6],
        "a resumes: new high priority first, acked skipped"
    );
    kit_check!(t.recover_next(&a, 10).await?.is_empty(), "a exhausted");
    t.reset_cursor(&a).await?;
    kit_eq!(
        seqs(&t.recover_next(&a, 3).await?),
        vec![7, 1, 2],
        "a after reset"
    );
    t.set_cursor_after(&b, &id(4)).await?;
    kit_eq!(
        seqs(&t.recover_next(&b, 10).await?),
        vec![5, 6],
        "b after set_cursor_after(4)"
    );
    expect_err(
        t.set_cursor_after(&a, &id(5)).await,
        ErrorKind::NotFound,
        "set_cursor_after a message not pending for a",
    )?;
    Ok(())
}

pub(crate) async fn subscription_pending_count_and_bytes_exact(ctx: &mut Ctx) -> Outcome {
    let d = Destination::topic("substats");
    let t = ctx.topic("substats").await?;
    let a = SubscriptionKey::new("c", "a");
    let b = SubscriptionKey::new("c", "b");
    t.add_subscription(SubscriptionInfo::new(a.clone(), None), false)
        .await?;
    let mut sizes = Vec::new();
    for n in 1..=5 {
        let mut m = message(&d, n);
        m.body = crate::message::Body::Text("x".repeat((n * 100) as usize));
        t.add(m).await?;
        sizes.push(t.get(&id(n)).await?.size());
    }
    t.add_subscription(SubscriptionInfo::new(b.clone(), None), true)
        .await?;
    t.acknowledge(&a, &id(2)).await?;
    t.acknowledge(&b, &id(4)).await?;
    t.acknowledge(&b, &id(5)).await?;
    ctx.reopen_point().await?;
    let t = ctx.topic("substats").await?;
    kit_eq!(t.pending_count(&a).await?, 4, "pending count of a");
    kit_eq!(
        t.pending_bytes(&a).await?,
        sizes[0] + sizes[2] + sizes[3] + sizes[4],
        "pending bytes of a"
    );
    kit_eq!(t.pending_count(&b).await?, 3, "pending count of b");
    kit_eq!(
        t.pending_bytes(&b).await?,
        sizes[0] + sizes[1] + sizes[2],
        "pending bytes of b"
    );
    kit_eq!(t.count().await?, 5, "topic count (each message once)");
    kit_eq!(
        t.bytes().await?,
        sizes.iter().sum::<u64>(),
        "topic bytes (each message once)"
    );
    Ok(())
}

pub(crate) async fn topic_remove_drops_for_every_subscription(ctx: &mut Ctx) -> Outcome {
    let d = Destination::topic("tremove");
    let t = ctx.topic("tremove").await?;
    let a = SubscriptionKey::new("c", "a");
    let b = SubscriptionKey::new("c", "b");
    t.add_subscription(SubscriptionInfo::new(a.clone(), None), false)
        .await?;
    t.add_subscription(SubscriptionInfo::new(b.clone(), None), false)
        .await?;
    for n in 1..=3 {
        t.add(message(&d, n)).await?;
    }
    t.acknowledge(&a, &id(2)).await?;
    t.remove(&id(2)).await?;
    t.remove(&id(3)).await?;
    ctx.reopen_point().await?;
    let t = ctx.topic("tremove").await?;
    kit_eq!(
        seqs(&t.browse_subscription(&a, None, 10).await?),
        vec![1],
        "a"
    );
    kit_eq!(
        seqs(&t.browse_subscription(&b, None, 10).await?),
        vec![1],
        "b"
    );
    kit_eq!(t.count().await?, 1, "kept");
    Ok(())
}

pub(crate) async fn topic_purge(ctx: &mut Ctx) -> Outcome {
    let d = Destination::topic("tpurge");
    let t = ctx.topic("tpurge").await?;
    let a = SubscriptionKey::new("c", "a");
    t.add_subscription(SubscriptionInfo::new(a.clone(), None), false)
        .await?;
    for n in 1..=4 {
        t.add(message(&d, n)).await?;
    }
    kit_eq!(t.purge().await?, 4, "purged");
    ctx.reopen_point().await?;
    let t = ctx.topic("tpurge").await?;
    kit_eq!(
        (t.count().await?, t.pending_count(&a).await?),
        (0, 0),
        "after purge"
    );
    kit_eq!(
        t.subscriptions().await?.len(),
        1,
        "purge keeps subscriptions"
    );
    t.add(message(&d, 5)).await?;
    kit_eq!(
        seqs(&t.recover_next(&a, 10).await?),
        vec![5],
        "a new message after purge"
    );
    Ok(())
}

pub(crate) async fn topic_expired_scan(ctx: &mut Ctx) -> Outcome {
    let d = Destination::topic("texpiry");
    let t = ctx.topic("texpiry").await?;
    t.add_subscription(sub("c", "a"), false).await?;
    t.add(message(&d, 1).with_expiration(100)).await?;
    t.add(message(&d, 2)).await?;
    t.add(message(&d, 3).with_expiration(50)).await?;
    ctx.reopen_point().await?;
    let t = ctx.topic("texpiry").await?;
    kit_eq!(
        id_seqs(&t.expired(100, 10).await?),
        vec![1, 3],
        "expired at 100"
    );
    for i in t.expired(100, 10).await? {
        t.remove(&i).await?;
    }
    kit_eq!(
        seqs(
            &t.browse_subscription(&SubscriptionKey::new("c", "a"), None, 10)
                .await?
        ),
        vec![2],
        "after removing expired"
    );
    Ok(())
}

/// The acks no client waits for (`remove_unwaited`, `acknowledge_unwaited`) are the same acks:
/// exact, refused the same way, durable once they return (an engine may only make them wait
/// to share an fsync), whether alone or beside a write someone waits for.
pub(crate) async fn unwaited_acks_are_exact_and_durable(ctx: &mut Ctx) -> Outcome {
    let qd = Destination::queue("unwaited.q");
    let q = ctx.queue("unwaited.q").await?;
    for n in 1..=4 {
        q.add(message(&qd, n)).await?;
    }
    // One alone, then one beside an add that is waited for.
    q.remove_unwaited(&id(2)).await?;
    let four = id(4);
    let (acked, added) = tokio::join!(q.remove_unwaited(&four), q.add(message(&qd, 5)));
    acked?;
    added?;
    expect_err(
        q.remove_unwaited(&id(2)).await,
        ErrorKind::NotFound,
        "an unwaited ack of a message acked already",
    )?;
    let td = Destination::topic("unwaited.t");
    let t = ctx.topic("unwaited.t").await?;
    let (a, b) = (
        SubscriptionKey::new("c", "a"),
        SubscriptionKey::new("c", "b"),
    );
    t.add_subscription(sub("c", "a"), false).await?;
    t.add_subscription(sub("c", "b"), false).await?;
    for n in 1..=3 {
        t.add(message(&td, n)).await?;
    }
    t.acknowledge_unwaited(&a, &id(1)).await?;
    // In order for each subscription: an engine that keeps one mark per subscription (the
    // JDBC engine on ActiveMQ's schema) holds an out-of-order ack only until a reopen.
    let one = id(1);
    let (acked, added) = tokio::join!(t.acknowledge_unwaited(&b, &one), t.add(message(&td, 4)));
    acked?;
    added?;
    expect_err(
        t.acknowledge_unwaited(&SubscriptionKey::new("c", "ghost"), &id(1))
            .await,
        ErrorKind::NotFound,
        "an unwaited ack by an unknown subscription",
    )?;
    ctx.reopen_point().await?;
    let q = ctx.queue("unwaited.q").await?;
    kit_eq!(
        seqs(&q.browse(None, 10).await?),
        vec![1, 3, 5],
        "queue after unwaited acks of 2 and 4"
    );
    let t = ctx.topic("unwaited.t").await?;
    kit_eq!(
        seqs(&t.browse_subscription(&a, None, 10).await?),
        vec![2, 3, 4],
        "subscription a after an unwaited ack of 1"
    );
    kit_eq!(
        seqs(&t.browse_subscription(&b, None, 10).await?),
        vec![2, 3, 4],
        "subscription b after an unwaited ack of 1"
    );
    Ok(())
}
