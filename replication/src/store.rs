//! The master's store: the local engine, with every write appended to the replicated log and
//! answered once a quorum has it. Reads go to the local engine alone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use store_api::{
    DeliveryOrder, Destination, DestinationStore, Message, MessageId, OrderKey, Pending,
    PersistenceAdapter, PreparedTransaction, QueueStore, Result, SubscriptionInfo, SubscriptionKey,
    TopicStore, TransactionId, TxOp, WriteRefusal, Xid,
};

use crate::log::SharedLog;
use crate::op::Op;

/// The replicated store a master serves.
pub struct ReplicatedStore {
    local: Arc<dyn PersistenceAdapter>,
    log: SharedLog,
    /// Destinations the slaves know of: a new one is replicated before its first write.
    known: Mutex<HashSet<Destination>>,
    /// Each open transaction's operations, shipped whole at commit or prepare.
    txs: Mutex<HashMap<TransactionId, Vec<TxOp>>>,
    prepared: Mutex<HashSet<Xid>>,
}

impl ReplicatedStore {
    /// The master's store over `local`, appending to `log`.
    pub async fn new(
        local: Arc<dyn PersistenceAdapter>,
        log: SharedLog,
    ) -> Result<ReplicatedStore> {
        let known = local.destinations().await?.into_iter().collect();
        let prepared = local
            .prepared_transactions()
            .await?
            .into_iter()
            .map(|p| p.xid)
            .collect();
        Ok(ReplicatedStore {
            local,
            log,
            known: Mutex::new(known),
            txs: Mutex::new(HashMap::new()),
            prepared: Mutex::new(prepared),
        })
    }

    /// The log this store appends to (for status: epoch, positions, slaves).
    pub fn log(&self) -> &SharedLog {
        &self.log
    }

    async fn replicate(&self, op: Op) -> Result<()> {
        let position = self.log.append(&op)?;
        self.log.wait_quorum(position).await
    }

    async fn ensure_known(&self, d: &Destination) -> Result<()> {
        let new = self.known.lock().insert(d.clone());
        if new {
            self.replicate(Op::CreateDestination(d.clone())).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl PersistenceAdapter for ReplicatedStore {
    fn kind(&self) -> &'static str {
        "replicated"
    }

    async fn destinations(&self) -> Result<Vec<Destination>> {
        self.local.destinations().await
    }

    async fn queue_store(&self, destination: &Destination) -> Result<Arc<dyn QueueStore>> {
        let inner = self.local.queue_store(destination).await?;
        self.ensure_known(destination).await?;
        Ok(Arc::new(Queue {
            inner,
            log: Arc::clone(&self.log),
        }))
    }

    async fn topic_store(&self, destination: &Destination) -> Result<Arc<dyn TopicStore>> {
        let inner = self.local.topic_store(destination).await?;
        self.ensure_known(destination).await?;
        Ok(Arc::new(Topic {
            inner,
            log: Arc::clone(&self.log),
        }))
    }

    async fn remove_destination(&self, destination: &Destination) -> Result<()> {
        self.local.remove_destination(destination).await?;
        self.known.lock().remove(destination);
        self.replicate(Op::RemoveDestination(destination.clone()))
            .await
    }

    async fn begin(&self, tx: &TransactionId) -> Result<()> {
        self.local.begin(tx).await?;
        self.txs.lock().insert(tx.clone(), Vec::new());
        Ok(())
    }

    async fn enlist(&self, tx: &TransactionId, op: TxOp) -> Result<()> {
        if let TxOp::Add(m) = &op {
            self.ensure_known(&m.destination).await?;
        }
        self.local.enlist(tx, op.clone()).await?;
        if let Some(ops) = self.txs.lock().get_mut(tx) {
            ops.push(op);
        }
        Ok(())
    }

    async fn prepare(&self, xid: &Xid) -> Result<()> {
        self.local.prepare(xid).await?;
        let tx = TransactionId::Xa(xid.clone());
        let ops = self.txs.lock().remove(&tx).unwrap_or_default();
        self.prepared.lock().insert(xid.clone());
        self.replicate(Op::Prepare {
            xid: xid.clone(),
            ops,
        })
        .await
    }

    async fn commit(&self, tx: &TransactionId) -> Result<()> {
        self.local.commit(tx).await?;
        let op = match tx {
            TransactionId::Xa(xid) if self.prepared.lock().remove(xid) => {
                Op::CommitPrepared(xid.clone())
            }
            _ => Op::Commit(self.txs.lock().remove(tx).unwrap_or_default()),
        };
        self.replicate(op).await
    }

    async fn rollback(&self, tx: &TransactionId) -> Result<()> {
        self.local.rollback(tx).await?;
        self.txs.lock().remove(tx);
        match tx {
            TransactionId::Xa(xid) if self.prepared.lock().remove(xid) => {
                self.replicate(Op::RollbackPrepared(xid.clone())).await
            }
            _ => Ok(()),
        }
    }

    async fn prepared_transactions(&self) -> Result<Vec<PreparedTransaction>> {
        self.local.prepared_transactions().await
    }

    async fn checkpoint(&self, cleanup: bool) -> Result<()> {
        self.local.checkpoint(cleanup).await
    }

    async fn size_on_disk(&self) -> Result<u64> {
        self.local.size_on_disk().await
    }

    fn metrics(&self) -> Vec<(&'static str, u64)> {
        let mut m = self.local.metrics();
        let (head, _) = self.log.head();
        let slaves = self.log.slaves();
        m.push(("replication_epoch", self.log.epoch));
        m.push(("replication_position", head));
        m.push(("replication_quorum_position", self.log.quorum_position()));
        m.push(("replication_slaves", slaves.len() as u64));
        m.push((
            "replication_max_slave_lag",
            slaves
                .iter()
                .map(|s| head.saturating_sub(s.acked))
                .max()
                .unwrap_or(0),
        ));
        m
    }

    fn write_refusal(&self) -> Option<WriteRefusal> {
        self.local.write_refusal()
    }

    async fn resume_writes(&self) -> Result<bool> {
        self.local.resume_writes().await
    }

    async fn delete_all(&self) -> Result<()> {
        self.local.delete_all().await?;
        self.known.lock().clear();
        self.replicate(Op::DeleteAll).await
    }

    async fn close(&self) -> Result<()> {
        self.local.close().await
    }
}

/// A queue of the master's store.
struct Queue {
    inner: Arc<dyn QueueStore>,
    log: SharedLog,
}

/// A topic of the master's store.
struct Topic {
    inner: Arc<dyn TopicStore>,
    log: SharedLog,
}

async fn replicate(log: &SharedLog, op: Op) -> Result<()> {
    let position = log.append(&op)?;
    log.wait_quorum(position).await
}

/// An ack (a queue remove or a topic acknowledgement), shipped at once and applied locally
/// meanwhile, so that the master's fsync and the slaves' overlap instead of adding up. A remove
/// the local engine refuses (`NotFound`: acked already) is refused on the slaves the same way,
/// and they take it as done; one that fails for I/O poisons the master, which then stops
/// serving, and the message counts as acknowledged, which the consumer did.
async fn overlapped(
    log: &SharedLog,
    op: Op,
    local: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    let unapplied = log.append_unapplied(&op)?;
    let position = unapplied.position();
    let local = async move {
        let done = local.await;
        drop(unapplied);
        done
    };
    let (local, quorum) = tokio::join!(local, log.wait_quorum(position));
    local?;
    quorum
}

/// The record of a remove (a queue ack, or a topic message dropped for every subscription).
fn remove_op(inner: &dyn DestinationStore, id: &MessageId) -> Op {
    Op::Remove {
        destination: inner.destination().clone(),
        id: id.clone(),
    }
}

/// The record of a subscription's ack.
fn ack_op(inner: &dyn TopicStore, key: &SubscriptionKey, id: &MessageId) -> Op {
    Op::Acknowledge {
        destination: inner.destination().clone(),
        key: key.clone(),
        id: id.clone(),
    }
}

/// The pipelined add: the record is shipped as soon as the local engine fixed the message's
/// place, so the slaves' fsyncs overlap the master's; the write completes when both the
/// local fsync and the quorum are done.
async fn submit_add(
    inner: &dyn DestinationStore,
    log: &SharedLog,
    message: Message,
) -> Result<Pending<u64>> {
    let op = Op::Add(message.clone());
    let local = inner.submit_add(message).await?;
    let unapplied = log.append_unapplied(&op)?;
    let log = Arc::clone(log);
    Ok(Pending::new(async move {
        let sequence = local.await;
        let position = unapplied.position();
        drop(unapplied);
        let sequence = sequence?;
        log.wait_quorum(position).await?;
        Ok(sequence)
    }))
}

macro_rules! destination_store {
    ($t:ty) => {
        #[async_trait]
        impl DestinationStore for $t {
            fn destination(&self) -> &Destination {
                self.inner.destination()
            }

            async fn add(&self, message: Message) -> Result<u64> {
                submit_add(self.inner.as_ref(), &self.log, message)
                    .await?
                    .await
            }

            async fn submit_add(&self, message: Message) -> Result<Pending<u64>> {
                submit_add(self.inner.as_ref(), &self.log, message).await
            }

            async fn get(&self, id: &MessageId) -> Result<Message> {
                self.inner.get(id).await
            }

            async fn remove(&self, id: &MessageId) -> Result<()> {
                let op = remove_op(self.inner.as_ref(), id);
                overlapped(&self.log, op, self.inner.remove(id)).await
            }

            async fn remove_unwaited(&self, id: &MessageId) -> Result<()> {
                let op = remove_op(self.inner.as_ref(), id);
                overlapped(&self.log, op, self.inner.remove_unwaited(id)).await
            }

            async fn purge(&self) -> Result<u64> {
                let n = self.inner.purge().await?;
                replicate(&self.log, Op::Purge(self.inner.destination().clone())).await?;
                Ok(n)
            }

            async fn count(&self) -> Result<u64> {
                self.inner.count().await
            }

            async fn bytes(&self) -> Result<u64> {
                self.inner.bytes().await
            }

            async fn expired(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>> {
                self.inner.expired(now_ms, max).await
            }
        }
    };
}

destination_store!(Queue);
destination_store!(Topic);

#[async_trait]
impl QueueStore for Queue {
    async fn browse(&self, after: Option<OrderKey>, max: usize) -> Result<Vec<Message>> {
        self.inner.browse(after, max).await
    }

    async fn recover_next_ordered(&self, order: DeliveryOrder, max: usize) -> Result<Vec<Message>> {
        self.inner.recover_next_ordered(order, max).await
    }

    async fn reset_cursor(&self) -> Result<()> {
        self.inner.reset_cursor().await
    }

    async fn set_cursor_after(&self, id: &MessageId) -> Result<()> {
        self.inner.set_cursor_after(id).await
    }
}

#[async_trait]
impl TopicStore for Topic {
    async fn add_subscription(&self, info: SubscriptionInfo, retroactive: bool) -> Result<()> {
        self.inner
            .add_subscription(info.clone(), retroactive)
            .await?;
        replicate(
            &self.log,
            Op::AddSubscription {
                destination: self.inner.destination().clone(),
                info,
                retroactive,
            },
        )
        .await
    }

    async fn delete_subscription(&self, key: &SubscriptionKey) -> Result<()> {
        self.inner.delete_subscription(key).await?;
        replicate(
            &self.log,
            Op::DeleteSubscription {
                destination: self.inner.destination().clone(),
                key: key.clone(),
            },
        )
        .await
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionInfo>> {
        self.inner.subscriptions().await
    }

    async fn lookup_subscription(&self, key: &SubscriptionKey) -> Result<Option<SubscriptionInfo>> {
        self.inner.lookup_subscription(key).await
    }

    async fn acknowledge(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        let op = ack_op(self.inner.as_ref(), key, id);
        overlapped(&self.log, op, self.inner.acknowledge(key, id)).await
    }

    async fn acknowledge_unwaited(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        let op = ack_op(self.inner.as_ref(), key, id);
        overlapped(&self.log, op, self.inner.acknowledge_unwaited(key, id)).await
    }

    async fn browse_subscription(
        &self,
        key: &SubscriptionKey,
        after: Option<OrderKey>,
        max: usize,
    ) -> Result<Vec<Message>> {
        self.inner.browse_subscription(key, after, max).await
    }

    async fn recover_next_ordered(
        &self,
        key: &SubscriptionKey,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<Message>> {
        self.inner.recover_next_ordered(key, order, max).await
    }

    async fn reset_cursor(&self, key: &SubscriptionKey) -> Result<()> {
        self.inner.reset_cursor(key).await
    }

    async fn set_cursor_after(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.inner.set_cursor_after(key, id).await
    }

    async fn pending_count(&self, key: &SubscriptionKey) -> Result<u64> {
        self.inner.pending_count(key).await
    }

    async fn pending_bytes(&self, key: &SubscriptionKey) -> Result<u64> {
        self.inner.pending_bytes(key).await
    }
}
