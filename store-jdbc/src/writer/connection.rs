//! The writer's connection and the transactions it runs on it: the lock checks every write
//! transaction makes (the fence, the lease epoch), reconnecting after the server dropped the
//! connection, and the sequence reservation a transaction keeps only if it commits.

use store_api::StoreError;
use tracing::{info, warn};

use super::{RESERVE, WriterTask, db};
use crate::error::JdbcError;
use crate::sql::{Arg, Conn};

impl WriterTask {
    pub(super) fn check_lock_held(&self) -> Result<(), StoreError> {
        match &self.common.fence {
            Some(f) if !f.is_held() => Err(JdbcError::LockLost(
                "this broker no longer holds the master lock; writes are refused".into(),
            )
            .into()),
            _ => Ok(()),
        }
    }

    /// Inside the transaction: the lock row still carries this broker's epoch. The row is read
    /// with a share lock, so a rival's take-over (an update of the row) waits for this
    /// transaction, and a transaction that starts after it sees the new epoch and fails.
    pub(super) async fn check_epoch(&self, conn: &mut Conn) -> Result<(), StoreError> {
        let Some(fence) = &self.common.fence else {
            return Ok(());
        };
        let Some(held) = fence.epoch() else {
            return Ok(());
        };
        let st = &self.common.st;
        let found = conn
            .scalar(&st.lock_epoch_check, &[])
            .await
            .map_err(|e| db(st, "checking the fencing epoch", e))?;
        if found != Some(held) {
            fence.revoke();
            return Err(JdbcError::Fenced { held, found }.into());
        }
        Ok(())
    }

    /// The writer's connection, opened again if the last one was dropped. Before its first
    /// transaction it gets the fence's idle-transaction limit, so that a master frozen inside a
    /// transaction (which share-locks the lock row) cannot hold off the slave past its lease.
    pub(super) async fn connection(&mut self) -> Result<Conn, StoreError> {
        let st = &self.common.st;
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => {
                self.conn_limited = false;
                self.options
                    .connect()
                    .await
                    .map_err(|e| db(st, "reconnecting the writer", e))?
            }
        };
        if !self.conn_limited {
            if let Some(limit) = self
                .common
                .fence
                .as_ref()
                .and_then(|f| f.idle_transaction_limit())
            {
                let applied = conn
                    .limit_idle_transactions(limit)
                    .await
                    .map_err(|e| db(st, "limiting idle transactions", e))?;
                if !applied {
                    warn!(
                        target: "store",
                        "this {} server cannot end idle transactions: a master frozen inside one holds off the slave until the server drops its connection",
                        st.dialect.name()
                    );
                }
            }
            self.conn_limited = true;
        }
        Ok(conn)
    }

    /// A connection with a transaction begun on it. A kept connection that the server closed
    /// while it sat idle (its idle timeout — eight hours by default on MySQL and MariaDB — a
    /// restart, a DBA's `KILL`, a network blip) fails at `BEGIN`, before anything of the batch
    /// was sent; it is replaced once, so that the first write after such a gap does not fail
    /// while the database is answering.
    pub(super) async fn begin(&mut self) -> Result<Conn, StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        let kept = self.conn.is_some();
        let mut conn = self.connection().await?;
        match conn.raw(st.begin).await {
            Ok(()) => return Ok(conn),
            Err(e) if !kept || matches!(e, sqlx::Error::Database(_)) => {
                return Err(db(st, "beginning a transaction", e));
            }
            Err(e) => info!(
                target: "store",
                "the writer's {} connection was closed while idle ({e}); reconnecting",
                st.dialect.name()
            ),
        }
        drop(conn);
        let mut conn = self.connection().await?;
        conn.raw(st.begin)
            .await
            .map_err(|e| db(st, "beginning a transaction", e))?;
        Ok(conn)
    }

    /// The next sequence, reserving a range in the sequence row (inside the open transaction)
    /// when the reserved one runs out.
    pub(super) async fn reserve(&mut self, conn: &mut Conn) -> Result<i64, sqlx::Error> {
        let id = self.next_id;
        // ActiveMQ's schema has no row to reserve in: like ActiveMQ, the openwire format
        // continues from the highest ID and LAST_ACKED_ID found at open.
        if self.common.openwire() {
            return Ok(id);
        }
        if id >= self.reserved_in_tx.unwrap_or(self.reserved) {
            let upto = id + RESERVE;
            conn.execute(&self.common.st.reserve_sequences, &[Arg::I64(upto)])
                .await?;
            self.reserved_in_tx = Some(upto);
        }
        Ok(id)
    }

    pub(super) async fn take_id(&mut self, conn: &mut Conn) -> Result<i64, sqlx::Error> {
        let id = self.reserve(conn).await?;
        self.next_id += 1;
        Ok(id)
    }

    /// After a commit: the transaction's reservation holds. After a rollback it does not.
    pub(super) fn settle(&mut self, committed: bool) {
        if let Some(r) = self.reserved_in_tx.take()
            && committed
        {
            self.reserved = r;
        }
    }
    /// Starts a transaction of its own (with the lock checks) for bulk work.
    pub(super) async fn begin_tx(&mut self) -> Result<Conn, StoreError> {
        self.check_lock_held()?;
        let mut conn = self.begin().await?;
        match self.check_epoch(&mut conn).await {
            Ok(()) => Ok(conn),
            Err(e) => {
                if conn.raw("ROLLBACK").await.is_ok() {
                    self.conn = Some(conn);
                }
                Err(e)
            }
        }
    }

    /// Commits the transaction [`WriterTask::begin_tx`] started when `r` is Ok, rolls it back
    /// otherwise, and keeps the connection if it still works.
    pub(super) async fn end_tx<T>(
        &mut self,
        mut conn: Conn,
        r: Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        let r = match r {
            Ok(v) => conn
                .raw("COMMIT")
                .await
                .map(|()| v)
                .map_err(|e| db(st, "committing", e)),
            Err(e) => Err(db(st, "writing", e)),
        };
        self.settle(r.is_ok());
        match r {
            Ok(v) => {
                self.conn = Some(conn);
                Ok(v)
            }
            Err(e) => {
                common.ow.rolled_back();
                if conn.raw("ROLLBACK").await.is_ok() {
                    self.conn = Some(conn);
                }
                Err(e)
            }
        }
    }
}
