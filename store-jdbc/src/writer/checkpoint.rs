//! The journaled JDBC engine's checkpoint: a batch of adds and acks moved from its journal into
//! the tables in one transaction, idempotently (see [`crate::journaled`]).

use std::sync::atomic::Ordering;

use store_api::{Destination, Message, MessageId, StoreError, SubscriptionKey};

use super::WriterTask;
use super::rows::{ensure_destination, queue_remove, sub_id};
use crate::sql::Arg;

/// What the journaled JDBC engine moves into the database at a checkpoint, applied in one
/// transaction and idempotently: an add already present and an ack of a row already gone are
/// both fine, so a replayed journal can be applied again.
#[derive(Debug, Default)]
pub struct CheckpointBatch {
    /// Messages with the sequence they were given; for a topic message, the subscriptions it
    /// is still pending for.
    pub adds: Vec<(Message, Vec<SubscriptionKey>)>,
    pub queue_acks: Vec<(Destination, MessageId)>,
    pub topic_acks: Vec<(Destination, SubscriptionKey, MessageId)>,
    /// The journal position the database reflects once this commits.
    pub mark: i64,
    /// Sequences below this were handed out by the journaled engine: the database's own
    /// (subscription ids, XA commits) continue above.
    pub next_sequence: i64,
}

impl WriterTask {
    /// Applies a journaled JDBC checkpoint in one transaction; returns the statements on
    /// message rows it ran.
    pub(super) async fn checkpoint(&mut self, b: &CheckpointBatch) -> Result<u64, StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        let mut conn = self.begin_tx().await?;
        let mut max_seq = 0i64;
        let r = async {
            let mut stmts = 0u64;
            let mut ensured: Vec<&Destination> = Vec::new();
            // Acks first: an id acked and added again within the cycle is a new message.
            for (d, id) in &b.queue_acks {
                queue_remove(&mut conn, &common, d, id).await?.ok();
                stmts += 1;
            }
            for (d, key, id) in &b.topic_acks {
                // One already applied (a replay) is NotFound here, which is fine.
                self.topic_ack(&mut conn, d, key, id).await?.ok();
                stmts += 3;
            }
            for (m, _) in &b.adds {
                let d = &m.destination;
                if !ensured.contains(&d) {
                    ensure_destination(&mut conn, st, d).await?;
                    ensured.push(d);
                }
                max_seq = max_seq.max(m.sequence as i64);
            }
            // Multi-row inserts; if any row was already there (a replay), undo and fall back
            // to one row at a time, which skips exactly those.
            let mut done = b.adds.is_empty();
            if !done {
                conn.raw("SAVEPOINT cp").await?;
                let msgs: Vec<&Message> = b.adds.iter().map(|(m, _)| m).collect();
                let (n, s1) = self.insert_rows(&mut conn, &msgs).await?;
                if n == msgs.len() as u64 {
                    let mut rows = Vec::new();
                    for (m, subs) in &b.adds {
                        for key in subs {
                            if let Some(sub) =
                                sub_id(&mut conn, &common, &m.destination, key).await?
                            {
                                rows.push((sub, i64::from(m.priority), m.sequence as i64));
                            }
                        }
                    }
                    let s2 = self.insert_pendings(&mut conn, &rows).await?;
                    stmts += s1 + s2;
                    conn.raw("RELEASE SAVEPOINT cp").await?;
                    done = true;
                } else {
                    conn.raw("ROLLBACK TO SAVEPOINT cp").await?;
                    conn.raw("RELEASE SAVEPOINT cp").await?;
                }
            }
            for (m, subs) in b.adds.iter().filter(|_| !done) {
                let (n, _) = self.insert_rows(&mut conn, &[m]).await?;
                stmts += 1;
                if n == 0 || !m.destination.is_topic() {
                    continue; // already there: a replay
                }
                let mut rows = Vec::new();
                for key in subs {
                    if let Some(sub) = sub_id(&mut conn, &common, &m.destination, key).await? {
                        rows.push((sub, i64::from(m.priority), m.sequence as i64));
                    }
                }
                stmts += self.insert_pendings(&mut conn, &rows).await?;
            }
            conn.execute(&st.ensure_mark_row, &[]).await?;
            conn.execute(&st.set_mark, &[Arg::I64(b.mark)]).await?;
            self.next_id = self.next_id.max(max_seq + 1).max(b.next_sequence);
            self.reserve(&mut conn).await?;
            Ok(stmts)
        }
        .await;
        let stmts = self.end_tx(conn, r).await?;
        common
            .message_statements
            .fetch_add(stmts, Ordering::Relaxed);
        self.common
            .last_sequence
            .fetch_max((self.next_id - 1).max(0) as u64, Ordering::AcqRel);
        Ok(stmts)
    }
}
