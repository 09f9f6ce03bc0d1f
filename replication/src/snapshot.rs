//! A full copy: the master's local store read through the contract and turned into the ops
//! that rebuild it on an empty store, handed out in pieces through a bounded channel, so memory stays bounded by a few queue
//! pages (and a topic's pending messages, which are gathered once to learn which subscription
//! still has which).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use store_api::{DestinationKind, Message, MessageId, OrderKey, PersistenceAdapter};

use crate::op::Op;

const PAGE: usize = 256;

/// Calls `emit` with the ops that rebuild `store`'s content, in an order that applies on an
/// empty store: each destination, then its messages (queues in delivery order; topics with
/// their subscriptions first, then each kept message, then the acks of the subscriptions that
/// no longer have it pending), then the prepared XA transactions.
pub async fn dump(
    store: &Arc<dyn PersistenceAdapter>,
    out: &tokio::sync::mpsc::Sender<Vec<Op>>,
) -> crate::error::Result<()> {
    // The receiver gone means the connection ended: stop reading the store.
    let emit = async |ops: Vec<Op>| {
        out.send(ops).await.map_err(|_| {
            crate::error::ReplicationError::Protocol("the full copy's receiver is gone".into())
        })
    };
    for d in store.destinations().await? {
        emit(vec![Op::CreateDestination(d.clone())]).await?;
        match d.kind {
            DestinationKind::Queue => {
                let q = store.queue_store(&d).await?;
                let mut after = None;
                loop {
                    let page = q.browse(after, PAGE).await?;
                    let Some(last) = page.last() else { break };
                    after = Some(OrderKey::of(last));
                    emit(page.into_iter().map(Op::Add).collect()).await?;
                }
            }
            DestinationKind::Topic => {
                let t = store.topic_store(&d).await?;
                let subs = t.subscriptions().await?;
                let mut kept: BTreeMap<u64, Message> = BTreeMap::new();
                let mut pending: Vec<HashSet<MessageId>> = Vec::new();
                for s in &subs {
                    let mut ids = HashSet::new();
                    let mut after = None;
                    loop {
                        let page = t.browse_subscription(&s.key, after, PAGE).await?;
                        let Some(last) = page.last() else { break };
                        after = Some(OrderKey::of(last));
                        for m in page {
                            ids.insert(m.id.clone());
                            kept.entry(m.sequence).or_insert(m);
                        }
                    }
                    pending.push(ids);
                }
                emit(
                    subs.iter()
                        .map(|s| Op::AddSubscription {
                            destination: d.clone(),
                            info: s.clone(),
                            retroactive: false,
                        })
                        .collect(),
                )
                .await?;
                let ids: Vec<MessageId> = kept.values().map(|m| m.id.clone()).collect();
                let mut batch = Vec::new();
                for m in kept.into_values() {
                    batch.push(Op::Add(m));
                    if batch.len() >= PAGE {
                        emit(std::mem::take(&mut batch)).await?;
                    }
                }
                for (s, has) in subs.iter().zip(&pending) {
                    for id in ids.iter().filter(|id| !has.contains(*id)) {
                        batch.push(Op::Acknowledge {
                            destination: d.clone(),
                            key: s.key.clone(),
                            id: id.clone(),
                        });
                        if batch.len() >= PAGE {
                            emit(std::mem::take(&mut batch)).await?;
                        }
                    }
                }
                if !batch.is_empty() {
                    emit(batch).await?;
                }
            }
        }
    }
    let prepared = store.prepared_transactions().await?;
    if !prepared.is_empty() {
        emit(
            prepared
                .into_iter()
                .map(|p| Op::Prepare {
                    xid: p.xid,
                    ops: p.ops,
                })
                .collect(),
        )
        .await?;
    }
    Ok(())
}
