//! The contract's adapter over the JDBC tables: destinations, handles, transactions (checked
//! here, applied by the writer in one database transaction), and the store's life cycle.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use store_api::{
    Destination, PersistenceAdapter, PreparedTransaction, QueueStore, Result, StoreError,
    TopicStore, TransactionId, TxOp, Xid,
};

use super::handle::Handle;
use super::{DestState, JdbcStore};
use crate::columns::{check_destination, check_key, check_message, parse_container};
use crate::writer::{Done, Work};

impl JdbcStore {
    /// A handle on the destination, created if new.
    async fn handle(&self, destination: &Destination) -> Result<Arc<Handle>> {
        let state = self.shared.open_destination(destination).await?;
        Ok(Arc::new(Handle {
            shared: self.shared.clone(),
            state,
        }))
    }
}

#[async_trait]
impl PersistenceAdapter for JdbcStore {
    fn metrics(&self) -> Vec<(&'static str, u64)> {
        let (commits, changes) = self.commit_stats();
        vec![("database_commits", commits), ("database_changes", changes)]
    }

    fn kind(&self) -> &'static str {
        "jdbc"
    }

    async fn destinations(&self) -> Result<Vec<Destination>> {
        let s = &self.shared;
        s.check_open()?;
        let list = if s.common.openwire() {
            &s.common.st.ow_destinations
        } else {
            &s.common.st.destinations
        };
        let rows = s
            .pool
            .fetch(list, &[])
            .await
            .map_err(|e| s.db("listing destinations", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let c = r.string(0).map_err(|e| s.db("reading CONTAINER", e))?;
            if let Some(d) = parse_container(&c) {
                out.push(d);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn queue_store(&self, destination: &Destination) -> Result<Arc<dyn QueueStore>> {
        self.shared.check_open()?;
        destination.expect_queue()?;
        Ok(self.handle(destination).await?)
    }

    async fn topic_store(&self, destination: &Destination) -> Result<Arc<dyn TopicStore>> {
        self.shared.check_open()?;
        destination.expect_topic()?;
        Ok(self.handle(destination).await?)
    }

    async fn remove_destination(&self, destination: &Destination) -> Result<()> {
        let s = &self.shared;
        s.check_open()?;
        check_destination(destination)?;
        let r = s.submit(Work::RemoveDestination(destination.clone())).await;
        if r.is_ok()
            && let Some(state) = s.registry.lock().remove(destination)
        {
            state.removed.store(true, Ordering::Release);
        }
        r.map(|_| ())
    }

    async fn begin(&self, tx: &TransactionId) -> Result<()> {
        self.shared.check_open()?;
        self.shared.transactions.lock().begin(tx)
    }

    async fn enlist(&self, tx: &TransactionId, op: TxOp) -> Result<()> {
        let s = &self.shared;
        s.check_open()?;
        s.transactions.lock().check_enlist(tx)?;
        if store_api::tx_check::check_enlisted(&op)? {
            match &op {
                TxOp::QueueAck { destination, id } => {
                    if s.message_key(&destination.to_string(), id).await?.is_none() {
                        return Err(StoreError::NotFound(format!(
                            "message {id} in {destination}"
                        )));
                    }
                }
                TxOp::TopicAck {
                    destination,
                    subscription,
                    id,
                } => {
                    if s.sub_id(destination, subscription).await?.is_none() {
                        return Err(StoreError::NotFound(format!(
                            "subscription {subscription} on {destination}"
                        )));
                    }
                    if !s.pending_for(destination, subscription, id).await? {
                        return Err(StoreError::NotFound(format!(
                            "message {id} is not pending for subscription {subscription} on {destination}"
                        )));
                    }
                }
                TxOp::Add(_) => {}
            }
        }
        match &op {
            TxOp::Add(m) => check_message(m, s.common.max_packet)?,
            TxOp::QueueAck { destination, .. } => check_destination(destination)?,
            TxOp::TopicAck {
                destination,
                subscription,
                ..
            } => {
                check_destination(destination)?;
                check_key(subscription)?;
            }
        }
        s.transactions.lock().enlist(tx, op)
    }

    async fn prepare(&self, xid: &Xid) -> Result<()> {
        let s = &self.shared;
        s.check_open()?;
        let id = TransactionId::Xa(xid.clone());
        let ops = s.transactions.lock().to_prepare(xid)?.to_vec();
        let row = match s.submit(Work::Prepare(xid.clone(), ops)).await? {
            Done::Id(row) => row,
            other => {
                return Err(StoreError::InvalidArgument(format!(
                    "prepare answered {other:?}"
                )));
            }
        };
        s.transactions.lock().mark_prepared(&id, row);
        Ok(())
    }

    async fn commit(&self, tx: &TransactionId) -> Result<()> {
        let s = &self.shared;
        s.check_open()?;
        let (ops, row) = {
            let txs = s.transactions.lock();
            let t = txs.get(tx)?;
            (t.ops.clone(), t.prepared)
        };
        s.submit(Work::Commit(ops, row)).await?;
        // A concurrent rollback may have ended it meanwhile: nothing is left to forget then.
        let _ = s.transactions.lock().end(tx);
        Ok(())
    }

    async fn rollback(&self, tx: &TransactionId) -> Result<()> {
        let s = &self.shared;
        s.check_open()?;
        let row = s.transactions.lock().get(tx)?.prepared;
        if let Some(row) = row {
            s.submit(Work::RollbackPrepared(row)).await?;
        }
        let _ = s.transactions.lock().end(tx);
        Ok(())
    }

    async fn prepared_transactions(&self) -> Result<Vec<PreparedTransaction>> {
        self.shared.check_open()?;
        Ok(self.shared.transactions.lock().prepared())
    }

    async fn checkpoint(&self, _cleanup: bool) -> Result<()> {
        // Every commit is already durable in the database, and space is reclaimed as acks
        // arrive; there is nothing to do but check that the database answers.
        let s = &self.shared;
        s.check_open()?;
        s.pool
            .fetch(&s.common.st.sql("SELECT 1"), &[])
            .await
            .map_err(|e| s.db("checking the connection", e))?;
        Ok(())
    }

    async fn size_on_disk(&self) -> Result<u64> {
        self.shared.check_open()?;
        Ok(0)
    }

    async fn delete_all(&self) -> Result<()> {
        let s = &self.shared;
        s.check_open()?;
        s.submit(Work::DeleteAll).await?;
        let removed: Vec<Arc<DestState>> = s.registry.lock().drain().map(|(_, v)| v).collect();
        for d in removed {
            d.removed.store(true, Ordering::Release);
        }
        s.transactions.lock().clear();
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        let s = &self.shared;
        if s.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let _ = s.submit(Work::Close).await;
        s.pool.close().await;
        Ok(())
    }
}
