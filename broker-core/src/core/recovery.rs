//! Recovery at start (destinations, durable subscriptions and prepared XA transactions loaded
//! from the store) and the end of a prepared transaction, found then or prepared since.

use std::sync::Arc;

use store_api::{TransactionId, TxOp, Xid};
use tracing::info;

use super::{Core, PreparedOp};
use crate::destination_filter::is_wildcard;
use crate::error::{BrokerError, Result};

impl Core {
    /// Loads destinations, durable subscriptions and prepared transactions from the store.
    pub(crate) async fn recover(self: &Arc<Self>) -> Result<()> {
        let destinations = self.store.destinations().await?;
        let (mut queues, mut subs) = (0, 0);
        // Wildcard durable subscriptions first: topics created from here on carry them.
        for d in destinations
            .iter()
            .filter(|d| d.is_topic() && is_wildcard(&d.name))
        {
            subs += self.recover_wildcard_durables(d).await?;
        }
        let mut jobs = 0;
        for d in &destinations {
            if d.is_topic() && is_wildcard(&d.name) {
                continue;
            }
            if super::scheduler::is_jobs(d) {
                jobs = self.recover_jobs().await?;
                continue;
            }
            if d.is_queue() {
                self.queue(d).await?;
                queues += 1;
            } else {
                let t = self.topic(d).await?;
                for info in t.store.subscriptions().await? {
                    self.durable_dispatcher(&t, &info.key);
                    subs += 1;
                }
            }
        }
        let prepared = self.store.prepared_transactions().await?;
        let n_prepared = prepared.len();
        for p in prepared {
            let mut pending = Vec::new();
            for op in p.ops {
                match op {
                    TxOp::Add(m) => pending.push(PreparedOp::Add(Arc::new(m))),
                    TxOp::QueueAck { destination, id } => {
                        let d = self.queue(&destination).await?;
                        d.hold(id.clone());
                        pending.push(PreparedOp::Ack {
                            dispatcher: d,
                            id,
                            recovered: true,
                            back_to: None,
                        });
                    }
                    TxOp::TopicAck {
                        destination,
                        subscription,
                        id,
                    } => {
                        let t = self.topic(&destination).await?;
                        let d = self.durable_dispatcher(&t, &subscription);
                        d.hold(id.clone());
                        pending.push(PreparedOp::Ack {
                            dispatcher: d,
                            id,
                            recovered: true,
                            back_to: None,
                        });
                    }
                }
            }
            self.prepared.lock().insert(p.xid, pending);
        }
        info!(
            queues,
            topics = destinations.len() - queues,
            durable_subscriptions = subs,
            prepared_transactions = n_prepared,
            "recovered from the {} store",
            self.store.kind()
        );
        super::scheduler::log_recovered(jobs);
        Ok(())
    }

    /// Ends a prepared XA transaction.
    pub(crate) async fn finish_prepared(self: &Arc<Self>, xid: &Xid, commit: bool) -> Result<()> {
        let pending = self
            .prepared
            .lock()
            .remove(xid)
            .ok_or_else(|| BrokerError::Invalid("no such prepared transaction".into()))?;
        let tx = TransactionId::Xa(xid.clone());
        let result = if commit {
            self.store.commit(&tx).await
        } else {
            self.store.rollback(&tx).await
        };
        if let Err(e) = result {
            self.prepared.lock().insert(xid.clone(), pending);
            return Err(e.into());
        }
        for p in pending {
            match p {
                PreparedOp::Ack {
                    dispatcher,
                    id,
                    recovered: true,
                    ..
                } => dispatcher.unhold(&id, commit),
                PreparedOp::Ack {
                    dispatcher,
                    id,
                    recovered: false,
                    back_to,
                } => {
                    if commit {
                        dispatcher.settle(&id);
                    } else {
                        crate::session::return_or_redeliver(dispatcher, &id, back_to).await;
                    }
                }
                PreparedOp::Add(m) if commit => self.committed_add(&m).await?,
                PreparedOp::Add(_) => {}
            }
        }
        Ok(())
    }
}
