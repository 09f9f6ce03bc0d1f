//! Adapter-level scenarios: destinations, removal, delete-all, many destinations, close.

use crate::error::ErrorKind;
use crate::message::{Destination, MessageId};
use crate::testkit::{Ctx, Outcome, expect_err, message, seqs};
use crate::transaction::{SubscriptionInfo, SubscriptionKey, TransactionId, TxOp, Xid};
use crate::{kit_check, kit_eq};

pub(crate) async fn destinations_listed_and_removed(ctx: &mut Ctx) -> Outcome {
    let q = Destination::queue("orders");
    let t = Destination::topic("orders");
    let empty = Destination::queue("empty");
    ctx.queue("orders").await?.add(message(&q, 1)).await?;
    let topic = ctx.topic("orders").await?;
    topic
        .add_subscription(
            SubscriptionInfo::new(SubscriptionKey::new("c", "s"), None),
            false,
        )
        .await?;
    topic.add(message(&t, 1)).await?;
    ctx.queue("empty").await?;
    ctx.reopen_point().await?;
    let mut expected = vec![empty.clone(), q.clone(), t.clone()];
    expected.sort();
    kit_eq!(
        ctx.store().destinations().await?,
        expected,
        "destinations (a queue and a topic may share a name)"
    );
    ctx.store().remove_destination(&q).await?;
    expect_err(
        ctx.store().remove_destination(&q).await,
        ErrorKind::NotFound,
        "second remove of a destination",
    )?;
    ctx.reopen_point().await?;
    let mut expected = vec![empty, t.clone()];
    expected.sort();
    kit_eq!(
        ctx.store().destinations().await?,
        expected,
        "after removing the queue"
    );
    let topic = ctx.topic("orders").await?;
    kit_eq!(
        topic.count().await?,
        1,
        "the topic of the same name is untouched"
    );
    // A removed destination comes back empty when used again.
    let again = ctx.queue("orders").await?;
    kit_eq!(again.count().await?, 0, "a re-created queue is empty");
    again.add(message(&q, 1)).await?;
    Ok(())
}

pub(crate) async fn removed_destination_handles_fail(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("doomed");
    let q = ctx.queue("doomed").await?;
    q.add(message(&d, 1)).await?;
    ctx.store().remove_destination(&d).await?;
    expect_err(
        q.count().await,
        ErrorKind::NotFound,
        "count through a handle to a removed queue",
    )?;
    expect_err(
        q.add(message(&d, 2)).await,
        ErrorKind::NotFound,
        "add through a handle to a removed queue",
    )?;
    let fresh = ctx.queue("doomed").await?;
    expect_err(
        fresh.get(&MessageId::new("producer-1", 1)).await,
        ErrorKind::NotFound,
        "old message in a re-created queue",
    )?;
    expect_err(
        q.count().await,
        ErrorKind::NotFound,
        "an old handle does not reach the re-created queue",
    )?;
    Ok(())
}

pub(crate) async fn delete_all_empties_store(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("all-q");
    let t = Destination::topic("all-t");
    let q = ctx.queue("all-q").await?;
    q.add(message(&d, 1)).await?;
    let topic = ctx.topic("all-t").await?;
    topic
        .add_subscription(
            SubscriptionInfo::new(SubscriptionKey::new("c", "s"), None),
            false,
        )
        .await?;
    topic.add(message(&t, 1)).await?;
    let x = Xid {
        format_id: 1,
        global_id: vec![1],
        branch_qualifier: vec![2],
    };
    let tx = TransactionId::Xa(x.clone());
    ctx.store().begin(&tx).await?;
    ctx.store().enlist(&tx, TxOp::Add(message(&d, 2))).await?;
    ctx.store().prepare(&x).await?;
    let before = q.get(&MessageId::new("producer-1", 1)).await?.sequence;
    ctx.store().delete_all().await?;
    ctx.reopen_point().await?;
    kit_check!(
        ctx.store().destinations().await?.is_empty(),
        "destinations after delete_all"
    );
    kit_check!(
        ctx.store().prepared_transactions().await?.is_empty(),
        "prepared transactions after delete_all"
    );
    let q = ctx.queue("all-q").await?;
    kit_eq!(q.count().await?, 0, "a queue after delete_all");
    let seq = q.add(message(&d, 1)).await?;
    kit_check!(
        seq > before,
        "sequence {seq} after delete_all is not above {before}"
    );
    Ok(())
}

pub(crate) async fn thousand_destinations(ctx: &mut Ctx) -> Outcome {
    for i in 0..1000u64 {
        let name = format!("many.{i:04}");
        let d = Destination::queue(name.as_str());
        let q = ctx.store().queue_store(&d).await?;
        q.add(message(&d, i)).await?;
    }
    ctx.reopen_point().await?;
    let all = ctx.store().destinations().await?;
    kit_eq!(all.len(), 1000, "destinations");
    for i in (0..1000u64).step_by(97) {
        let q = ctx.queue(&format!("many.{i:04}")).await?;
        kit_eq!(
            seqs(&q.browse(None, 10).await?),
            vec![i],
            "contents of many.{i:04}"
        );
    }
    Ok(())
}

pub(crate) async fn closed_store_refuses_calls(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("closing");
    let q = ctx.queue("closing").await?;
    let t = ctx.topic("closing-topic").await?;
    q.add(message(&d, 1)).await?;
    let store = ctx.store().clone();
    store.close().await?;
    expect_err(
        q.add(message(&d, 2)).await,
        ErrorKind::Closed,
        "add after close",
    )?;
    expect_err(q.count().await, ErrorKind::Closed, "count after close")?;
    expect_err(
        t.subscriptions().await,
        ErrorKind::Closed,
        "topic call after close",
    )?;
    expect_err(
        store.destinations().await,
        ErrorKind::Closed,
        "adapter call after close",
    )?;
    expect_err(
        store.begin(&TransactionId::Local(1)).await,
        ErrorKind::Closed,
        "begin after close",
    )?;
    ctx.reopen_now().await?;
    if ctx.durable() {
        kit_eq!(
            ctx.queue("closing").await?.count().await?,
            1,
            "a durable store keeps its messages across close"
        );
    }
    Ok(())
}

pub(crate) async fn checkpoint_keeps_contents(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("checkpoint");
    let q = ctx.queue("checkpoint").await?;
    for n in 1..=50 {
        q.add(message(&d, n)).await?;
    }
    for n in 1..=25 {
        q.remove(&MessageId::new("producer-1", n)).await?;
    }
    ctx.store().checkpoint(false).await?;
    ctx.store().checkpoint(true).await?;
    let size = ctx.store().size_on_disk().await?;
    ctx.reopen_point().await?;
    let q = ctx.queue("checkpoint").await?;
    kit_eq!(
        seqs(&q.browse(None, 100).await?),
        (26..=50).collect::<Vec<u64>>(),
        "after checkpoints"
    );
    kit_check!(size < 1 << 40, "size on disk {size} is not plausible");
    Ok(())
}
