//! Transaction scenarios: invisibility before commit, all-or-nothing commit, rollback, XA.

use crate::error::ErrorKind;
use crate::message::{Destination, MessageId};
use crate::testkit::{Ctx, Outcome, expect_err, message, seqs};
use crate::transaction::{SubscriptionInfo, SubscriptionKey, TransactionId, TxOp, Xid};
use crate::{kit_check, kit_eq};

fn id(n: u64) -> MessageId {
    MessageId::new("producer-1", n)
}

fn xid(n: u8) -> Xid {
    Xid {
        format_id: 0x4a4d53,
        global_id: vec![b'g', n, 0xff],
        branch_qualifier: vec![b'b', n],
    }
}

pub(crate) async fn commit_applies_adds_and_acks_together(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("txq");
    let q = ctx.queue("txq").await?;
    q.add(message(&d, 1)).await?;
    q.add(message(&d, 2)).await?;
    let tx = TransactionId::Local(1);
    let s = ctx.store();
    s.begin(&tx).await?;
    s.enlist(&tx, TxOp::Add(message(&d, 3))).await?;
    s.enlist(
        &tx,
        TxOp::QueueAck {
            destination: d.clone(),
            id: id(1),
        },
    )
    .await?;
    s.enlist(&tx, TxOp::Add(message(&d, 4).with_priority(9)))
        .await?;
    s.commit(&tx).await?;
    ctx.reopen_point().await?;
    let q = ctx.queue("txq").await?;
    kit_eq!(
        seqs(&q.browse(None, 10).await?),
        vec![4, 2, 3],
        "after commit"
    );
    let m3 = q.get(&id(3)).await?;
    let m2 = q.get(&id(2)).await?;
    kit_check!(
        m3.sequence > m2.sequence,
        "a committed add got sequence {} not above earlier {}",
        m3.sequence,
        m2.sequence
    );
    expect_err(
        ctx.store().commit(&tx).await,
        ErrorKind::NotFound,
        "second commit",
    )?;
    Ok(())
}

pub(crate) async fn uncommitted_operations_are_invisible(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("invisible");
    let t = Destination::topic("invisible-topic");
    let q = ctx.queue("invisible").await?;
    let topic = ctx.topic("invisible-topic").await?;
    let key = SubscriptionKey::new("c", "s");
    topic
        .add_subscription(SubscriptionInfo::new(key.clone(), None), false)
        .await?;
    topic.add(message(&t, 10)).await?;
    q.add(message(&d, 1)).await?;
    let tx = TransactionId::Local(7);
    let s = ctx.store();
    s.begin(&tx).await?;
    s.enlist(&tx, TxOp::Add(message(&d, 2))).await?;
    s.enlist(
        &tx,
        TxOp::QueueAck {
            destination: d.clone(),
            id: id(1),
        },
    )
    .await?;
    s.enlist(&tx, TxOp::Add(message(&t, 11))).await?;
    s.enlist(
        &tx,
        TxOp::TopicAck {
            destination: t.clone(),
            subscription: key.clone(),
            id: id(10),
        },
    )
    .await?;
    kit_eq!(
        seqs(&q.browse(None, 10).await?),
        vec![1],
        "queue before commit"
    );
    kit_eq!(
        seqs(&q.recover_next(10).await?),
        vec![1],
        "cursor before commit"
    );
    kit_eq!(q.count().await?, 1, "count before commit");
    expect_err(
        q.get(&id(2)).await,
        ErrorKind::NotFound,
        "get of an uncommitted add",
    )?;
    kit_eq!(
        seqs(&topic.browse_subscription(&key, None, 10).await?),
        vec![10],
        "subscription before commit"
    );
    s.commit(&tx).await?;
    kit_eq!(
        seqs(&q.recover_next(10).await?),
        vec![2],
        "cursor returns the committed add"
    );
    kit_eq!(
        seqs(&topic.browse_subscription(&key, None, 10).await?),
        vec![11],
        "subscription after commit"
    );
    Ok(())
}

pub(crate) async fn rollback_leaves_no_trace(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("rollback");
    let t = Destination::topic("rollback-topic");
    let q = ctx.queue("rollback").await?;
    let topic = ctx.topic("rollback-topic").await?;
    let key = SubscriptionKey::new("c", "s");
    topic
        .add_subscription(SubscriptionInfo::new(key.clone(), None), false)
        .await?;
    topic.add(message(&t, 5)).await?;
    q.add(message(&d, 1)).await?;
    let (count, bytes) = (q.count().await?, q.bytes().await?);
    for (n, tx) in [TransactionId::Local(9), TransactionId::Xa(xid(9))]
        .into_iter()
        .enumerate()
    {
        let s = ctx.store();
        s.begin(&tx).await?;
        s.enlist(&tx, TxOp::Add(message(&d, 100 + n as u64)))
            .await?;
        s.enlist(
            &tx,
            TxOp::QueueAck {
                destination: d.clone(),
                id: id(1),
            },
        )
        .await?;
        s.enlist(&tx, TxOp::Add(message(&t, 200 + n as u64)))
            .await?;
        s.enlist(
            &tx,
            TxOp::TopicAck {
                destination: t.clone(),
                subscription: key.clone(),
                id: id(5),
            },
        )
        .await?;
        if let TransactionId::Xa(x) = &tx {
            s.prepare(x).await?;
        }
        s.rollback(&tx).await?;
        expect_err(
            s.rollback(&tx).await,
            ErrorKind::NotFound,
            "second rollback",
        )?;
    }
    ctx.reopen_point().await?;
    let q = ctx.queue("rollback").await?;
    let topic = ctx.topic("rollback-topic").await?;
    kit_eq!(
        seqs(&q.browse(None, 10).await?),
        vec![1],
        "queue after rollbacks"
    );
    kit_eq!(
        (q.count().await?, q.bytes().await?),
        (count, bytes),
        "queue stats after rollbacks"
    );
    kit_eq!(
        seqs(&topic.browse_subscription(&key, None, 10).await?),
        vec![5],
        "subscription after rollbacks"
    );
    kit_check!(
        ctx.store().prepared_transactions().await?.is_empty(),
        "a rolled-back transaction is still prepared"
    );
    // The rolled-back ids were never stored, so they can be added now.
    q.add(message(&d, 100)).await?;
    Ok(())
}

pub(crate) async fn failed_commit_changes_nothing(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("atomic");
    let q = ctx.queue("atomic").await?;
    q.add(message(&d, 1)).await?;
    q.add(message(&d, 2)).await?;
    let tx = TransactionId::Local(3);
    let s = ctx.store().clone();
    s.begin(&tx).await?;
    s.enlist(&tx, TxOp::Add(message(&d, 3))).await?;
    s.enlist(
        &tx,
        TxOp::QueueAck {
            destination: d.clone(),
            id: id(1),
        },
    )
    .await?;
    s.enlist(
        &tx,
        TxOp::QueueAck {
            destination: d.clone(),
            id: id(2),
        },
    )
    .await?;
    // Message 2 goes away outside the transaction: its ack can no longer be applied.
    q.remove(&id(2)).await?;
    expect_err(
        s.commit(&tx).await,
        ErrorKind::NotFound,
        "commit acking a message that is gone",
    )?;
    kit_eq!(
        seqs(&q.browse(None, 10).await?),
        vec![1],
        "nothing of the failed commit applied"
    );
    s.rollback(&tx).await?;
    // A transaction adding an id that is already stored fails whole as well.
    let tx2 = TransactionId::Local(4);
    s.begin(&tx2).await?;
    s.enlist(&tx2, TxOp::Add(message(&d, 5))).await?;
    s.enlist(&tx2, TxOp::Add(message(&d, 1))).await?;
    expect_err(
        s.commit(&tx2).await,
        ErrorKind::Duplicate,
        "commit adding a stored id",
    )?;
    ctx.reopen_point().await?;
    let q = ctx.queue("atomic").await?;
    kit_eq!(
        seqs(&q.browse(None, 10).await?),
        vec![1],
        "after the failed commits"
    );
    Ok(())
}

pub(crate) async fn local_transaction_does_not_survive_reopen(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("inflight");
    let tx = TransactionId::Local(11);
    let xa = TransactionId::Xa(xid(11));
    ctx.queue("inflight").await?;
    let s = ctx.store();
    s.begin(&tx).await?;
    s.enlist(&tx, TxOp::Add(message(&d, 1))).await?;
    s.begin(&xa).await?;
    s.enlist(&xa, TxOp::Add(message(&d, 2))).await?;
    ctx.reopen_point().await?;
    let s = ctx.store().clone();
    if ctx.reopened() {
        expect_err(
            s.commit(&tx).await,
            ErrorKind::NotFound,
            "commit of a local transaction after reopen",
        )?;
        expect_err(
            s.commit(&xa).await,
            ErrorKind::NotFound,
            "commit of an unprepared XA transaction after reopen",
        )?;
        kit_check!(
            s.prepared_transactions().await?.is_empty(),
            "unprepared transactions reported as prepared"
        );
        kit_eq!(
            ctx.queue("inflight").await?.count().await?,
            0,
            "nothing of the lost transactions stored"
        );
    } else {
        s.commit(&tx).await?;
        s.commit(&xa).await?;
        kit_eq!(
            seqs(&ctx.queue("inflight").await?.browse(None, 10).await?),
            vec![1, 2],
            "both committed"
        );
    }
    Ok(())
}

pub(crate) async fn prepared_transaction_survives_reopen_and_commits(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("xa-commit");
    let t = Destination::topic("xa-commit-topic");
    let q = ctx.queue("xa-commit").await?;
    let topic = ctx.topic("xa-commit-topic").await?;
    let key = SubscriptionKey::new("c", "s");
    topic
        .add_subscription(SubscriptionInfo::new(key.clone(), None), false)
        .await?;
    topic.add(message(&t, 50)).await?;
    q.add(message(&d, 1)).await?;
    let x = xid(1);
    let tx = TransactionId::Xa(x.clone());
    let s = ctx.store();
    s.begin(&tx).await?;
    let ops = vec![
        TxOp::Add(message(&d, 2)),
        TxOp::QueueAck {
            destination: d.clone(),
            id: id(1),
        },
        TxOp::Add(message(&t, 51)),
        TxOp::TopicAck {
            destination: t.clone(),
            subscription: key.clone(),
            id: id(50),
        },
    ];
    for op in &ops {
        s.enlist(&tx, op.clone()).await?;
    }
    s.prepare(&x).await?;
    expect_err(
        s.enlist(&tx, TxOp::Add(message(&d, 3))).await,
        ErrorKind::InvalidArgument,
        "enlist after prepare",
    )?;
    expect_err(
        s.prepare(&x).await,
        ErrorKind::InvalidArgument,
        "second prepare",
    )?;
    ctx.reopen_point().await?;
    let s = ctx.store().clone();
    let prepared = s.prepared_transactions().await?;
    kit_eq!(prepared.len(), 1, "prepared transactions");
    kit_eq!(prepared[0].xid, x, "prepared xid");
    kit_eq!(prepared[0].ops, ops, "prepared operations");
    let q = ctx.queue("xa-commit").await?;
    kit_eq!(
        seqs(&q.browse(None, 10).await?),
        vec![1],
        "prepared but not committed"
    );
    s.commit(&tx).await?;
    ctx.reopen_point().await?;
    let q = ctx.queue("xa-commit").await?;
    let topic = ctx.topic("xa-commit-topic").await?;
    kit_eq!(seqs(&q.browse(None, 10).await?), vec![2], "after commit");
    kit_eq!(
        seqs(&topic.browse_subscription(&key, None, 10).await?),
        vec![51],
        "subscription after commit"
    );
    kit_check!(
        ctx.store().prepared_transactions().await?.is_empty(),
        "committed transaction still prepared"
    );
    Ok(())
}

pub(crate) async fn prepared_transaction_survives_reopen_and_rolls_back(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("xa-rollback");
    let q = ctx.queue("xa-rollback").await?;
    q.add(message(&d, 1)).await?;
    let (a, b) = (xid(2), xid(3));
    let s = ctx.store();
    for (x, n) in [(&a, 2u64), (&b, 3)] {
        let tx = TransactionId::Xa(x.clone());
        s.begin(&tx).await?;
        s.enlist(&tx, TxOp::Add(message(&d, n))).await?;
        s.prepare(x).await?;
    }
    ctx.reopen_point().await?;
    let s = ctx.store().clone();
    let xids: Vec<Xid> = s
        .prepared_transactions()
        .await?
        .into_iter()
        .map(|p| p.xid)
        .collect();
    kit_eq!(
        xids,
        vec![a.clone(), b.clone()],
        "both prepared, sorted by xid"
    );
    s.rollback(&TransactionId::Xa(a.clone())).await?;
    ctx.reopen_point().await?;
    let s = ctx.store().clone();
    let xids: Vec<Xid> = s
        .prepared_transactions()
        .await?
        .into_iter()
        .map(|p| p.xid)
        .collect();
    kit_eq!(xids, vec![b.clone()], "after rolling back one");
    s.commit(&TransactionId::Xa(b)).await?;
    let q = ctx.queue("xa-rollback").await?;
    kit_eq!(
        seqs(&q.browse(None, 10).await?),
        vec![1, 3],
        "rolled back one, committed the other"
    );
    Ok(())
}

pub(crate) async fn transaction_misuse_is_an_error(ctx: &mut Ctx) -> Outcome {
    let d = Destination::queue("misuse");
    ctx.queue("misuse").await?;
    let s = ctx.store();
    let tx = TransactionId::Local(21);
    let unknown = TransactionId::Local(22);
    s.begin(&tx).await?;
    expect_err(s.begin(&tx).await, ErrorKind::Duplicate, "begin twice")?;
    expect_err(
        s.enlist(&unknown, TxOp::Add(message(&d, 1))).await,
        ErrorKind::NotFound,
        "enlist in an unknown transaction",
    )?;
    expect_err(
        s.commit(&unknown).await,
        ErrorKind::NotFound,
        "commit of an unknown transaction",
    )?;
    expect_err(
        s.rollback(&unknown).await,
        ErrorKind::NotFound,
        "rollback of an unknown transaction",
    )?;
    expect_err(
        s.prepare(&xid(99)).await,
        ErrorKind::NotFound,
        "prepare of an unknown transaction",
    )?;
    expect_err(
        s.enlist(
            &tx,
            TxOp::QueueAck {
                destination: d.clone(),
                id: id(404),
            },
        )
        .await,
        ErrorKind::NotFound,
        "enlisting an ack of a message that is not stored",
    )?;
    expect_err(
        s.enlist(&tx, TxOp::Add(message(&d, 1).with_priority(12)))
            .await,
        ErrorKind::InvalidArgument,
        "enlisting an add with priority 12",
    )?;
    expect_err(
        s.enlist(
            &tx,
            TxOp::TopicAck {
                destination: Destination::topic("none"),
                subscription: SubscriptionKey::new("c", "s"),
                id: id(1),
            },
        )
        .await,
        ErrorKind::NotFound,
        "enlisting an ack for an unknown subscription",
    )?;
    // The failed enlists left the transaction usable and empty.
    s.commit(&tx).await?;
    kit_eq!(
        ctx.queue("misuse").await?.count().await?,
        0,
        "nothing stored"
    );
    Ok(())
}

pub(crate) async fn durable_ack_in_transaction(ctx: &mut Ctx) -> Outcome {
    let t = Destination::topic("txsub");
    let topic = ctx.topic("txsub").await?;
    let a = SubscriptionKey::new("c", "a");
    let b = SubscriptionKey::new("c", "b");
    topic
        .add_subscription(SubscriptionInfo::new(a.clone(), None), false)
        .await?;
    topic
        .add_subscription(SubscriptionInfo::new(b.clone(), None), false)
        .await?;
    for n in 1..=3 {
        topic.add(message(&t, n)).await?;
    }
    let tx = TransactionId::Local(31);
    let s = ctx.store();
    s.begin(&tx).await?;
    s.enlist(
        &tx,
        TxOp::TopicAck {
            destination: t.clone(),
            subscription: a.clone(),
            id: id(3),
        },
    )
    .await?;
    s.enlist(
        &tx,
        TxOp::TopicAck {
            destination: t.clone(),
            subscription: a.clone(),
            id: id(1),
        },
    )
    .await?;
    s.enlist(
        &tx,
        TxOp::TopicAck {
            destination: t.clone(),
            subscription: b.clone(),
            id: id(1),
        },
    )
    .await?;
    kit_eq!(topic.count().await?, 3, "kept before commit");
    s.commit(&tx).await?;
    ctx.reopen_point().await?;
    let topic = ctx.topic("txsub").await?;
    kit_eq!(
        seqs(&topic.browse_subscription(&a, None, 10).await?),
        vec![2],
        "a after commit"
    );
    kit_eq!(
        seqs(&topic.browse_subscription(&b, None, 10).await?),
        vec![2, 3],
        "b after commit"
    );
    kit_eq!(topic.count().await?, 2, "message 1 released by the commit");
    Ok(())
}

pub(crate) async fn transactional_topic_add_fans_out_at_commit(ctx: &mut Ctx) -> Outcome {
    let t = Destination::topic("txfan");
    let topic = ctx.topic("txfan").await?;
    let a = SubscriptionKey::new("c", "a");
    let b = SubscriptionKey::new("c", "b");
    topic
        .add_subscription(SubscriptionInfo::new(a.clone(), None), false)
        .await?;
    let tx = TransactionId::Local(41);
    let s = ctx.store();
    s.begin(&tx).await?;
    s.enlist(&tx, TxOp::Add(message(&t, 1))).await?;
    // A subscription created before the commit sees the message: it is added at commit.
    topic
        .add_subscription(SubscriptionInfo::new(b.clone(), None), false)
        .await?;
    s.commit(&tx).await?;
    ctx.reopen_point().await?;
    let topic = ctx.topic("txfan").await?;
    kit_eq!(
        seqs(&topic.browse_subscription(&a, None, 10).await?),
        vec![1],
        "a"
    );
    kit_eq!(
        seqs(&topic.browse_subscription(&b, None, 10).await?),
        vec![1],
        "b"
    );
    Ok(())
}
