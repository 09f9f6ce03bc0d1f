//! The bookkeeping of transactions begun and not yet ended, written once for every engine and
//! the reference model: which ids are open, the operations enlisted in each (in order), and
//! whether an XA transaction is prepared.
//!
//! The contract's rules on transaction ids live here, with the exact errors every engine
//! returns: `begin` of an id in use is `Duplicate`; any call naming an id not open is
//! `NotFound`; a prepared transaction takes no more operations and cannot be prepared again
//! (`InvalidArgument`). What an engine records about a prepared transaction is its own (the
//! JDBC store's row holding it, nothing for the others): the table is generic over it.
//!
//! The table checks ids only. Whether an operation applies to the stored state is
//! [`crate::tx_check`]'s question; making a prepare durable is the engine's.

use std::collections::BTreeMap;

use crate::error::{Result, StoreError};
use crate::transaction::{PreparedTransaction, TransactionId, TxOp, Xid};

/// One open transaction: its operations in the order they were enlisted and, once prepared,
/// what the engine recorded for the prepare.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTransaction<P = ()> {
    pub ops: Vec<TxOp>,
    pub prepared: Option<P>,
}

impl<P> Default for OpenTransaction<P> {
    fn default() -> Self {
        OpenTransaction {
            ops: Vec::new(),
            prepared: None,
        }
    }
}

impl<P> OpenTransaction<P> {
    pub fn is_prepared(&self) -> bool {
        self.prepared.is_some()
    }
}

/// Every open transaction of a store, by id (iterated in id order).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTransactions<P = ()> {
    open: BTreeMap<TransactionId, OpenTransaction<P>>,
}

impl<P> Default for OpenTransactions<P> {
    fn default() -> Self {
        OpenTransactions {
            open: BTreeMap::new(),
        }
    }
}

/// The error for an id that names no open transaction.
pub fn not_found(tx: &TransactionId) -> StoreError {
    StoreError::NotFound(format!("transaction {tx}"))
}

impl<P> OpenTransactions<P> {
    pub fn new() -> Self {
        OpenTransactions::default()
    }

    /// Opens a transaction; `Duplicate` if the id is open already.
    pub fn begin(&mut self, tx: &TransactionId) -> Result<()> {
        if self.open.contains_key(tx) {
            return Err(StoreError::Duplicate(format!("transaction {tx}")));
        }
        self.open.insert(tx.clone(), OpenTransaction::default());
        Ok(())
    }

    /// The open transaction, if there is one.
    pub fn find(&self, tx: &TransactionId) -> Option<&OpenTransaction<P>> {
        self.open.get(tx)
    }

    /// The open transaction, or `NotFound`.
    pub fn get(&self, tx: &TransactionId) -> Result<&OpenTransaction<P>> {
        self.open.get(tx).ok_or_else(|| not_found(tx))
    }

    pub fn contains(&self, tx: &TransactionId) -> bool {
        self.open.contains_key(tx)
    }

    /// Checks that the transaction can take an operation: `NotFound` if it is not open,
    /// `InvalidArgument` once it is prepared. Engines call it before checking the operation
    /// against their state, and [`OpenTransactions::enlist`] checks again when it records it.
    pub fn check_enlist(&self, tx: &TransactionId) -> Result<()> {
        if self.get(tx)?.is_prepared() {
            return Err(StoreError::InvalidArgument(format!(
                "transaction {tx} is prepared and takes no more operations"
            )));
        }
        Ok(())
    }

    /// Records an operation at the end of the transaction, after the checks of
    /// [`OpenTransactions::check_enlist`].
    pub fn enlist(&mut self, tx: &TransactionId, op: TxOp) -> Result<()> {
        self.check_enlist(tx)?;
        if let Some(t) = self.open.get_mut(tx) {
            t.ops.push(op);
        }
        Ok(())
    }

    /// The operations of an XA transaction about to be prepared: `NotFound` if it is not open,
    /// `InvalidArgument` if it is prepared already.
    pub fn to_prepare(&self, xid: &Xid) -> Result<&[TxOp]> {
        let id = TransactionId::Xa(xid.clone());
        let t = self.get(&id)?;
        if t.is_prepared() {
            return Err(StoreError::InvalidArgument(format!(
                "transaction {id} is already prepared"
            )));
        }
        Ok(&t.ops)
    }

    /// Marks a transaction prepared, with what the engine recorded for it. No-op if it is no
    /// longer open (a concurrent rollback won).
    pub fn mark_prepared(&mut self, tx: &TransactionId, prepared: P) {
        if let Some(t) = self.open.get_mut(tx) {
            t.prepared = Some(prepared);
        }
    }

    /// Records a transaction found prepared at open (recovered from disk or database).
    pub fn restore_prepared(&mut self, tx: TransactionId, ops: Vec<TxOp>, prepared: P) {
        self.open.insert(
            tx,
            OpenTransaction {
                ops,
                prepared: Some(prepared),
            },
        );
    }

    /// Ends a transaction (committed or rolled back) and returns it; `NotFound` if not open.
    pub fn end(&mut self, tx: &TransactionId) -> Result<OpenTransaction<P>> {
        self.open.remove(tx).ok_or_else(|| not_found(tx))
    }

    /// Forgets every transaction (the store was emptied).
    pub fn clear(&mut self) {
        self.open.clear();
    }

    /// What survives a close and reopen: the prepared transactions only.
    pub fn retain_prepared(&mut self) {
        self.open.retain(|_, t| t.is_prepared());
    }

    /// The prepared XA transactions, sorted by xid.
    pub fn prepared(&self) -> Vec<PreparedTransaction> {
        PreparedTransaction::collect(
            self.open
                .iter()
                .map(|(id, t)| (id, t.ops.as_slice(), t.is_prepared())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Destination, MessageId};

    fn xid(n: u8) -> Xid {
        Xid {
            format_id: 1,
            global_id: vec![n],
            branch_qualifier: vec![],
        }
    }

    fn ack() -> TxOp {
        TxOp::QueueAck {
            destination: Destination::queue("q"),
            id: MessageId::new("p", 1),
        }
    }

    #[test]
    fn ids_follow_the_contract() {
        let mut t: OpenTransactions<i64> = OpenTransactions::new();
        let local = TransactionId::Local(1);
        let xa = TransactionId::Xa(xid(1));
        t.begin(&local).unwrap();
        assert!(matches!(t.begin(&local), Err(StoreError::Duplicate(_))));
        t.begin(&xa).unwrap();
        t.enlist(&xa, ack()).unwrap();
        assert_eq!(t.to_prepare(&xid(1)).unwrap().len(), 1);
        t.mark_prepared(&xa, 7);
        assert!(matches!(
            t.enlist(&xa, ack()),
            Err(StoreError::InvalidArgument(_))
        ));
        assert!(matches!(
            t.to_prepare(&xid(1)),
            Err(StoreError::InvalidArgument(_))
        ));
        assert!(matches!(
            t.to_prepare(&xid(2)),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(t.prepared().len(), 1);
        t.retain_prepared();
        assert!(!t.contains(&local));
        assert_eq!(t.end(&xa).unwrap().prepared, Some(7));
        assert!(matches!(t.end(&xa), Err(StoreError::NotFound(_))));
    }
}
