//! Work that runs alone, never inside a batch: purges, subscription and destination removal,
//! deleting everything, and finishing deletions a crash interrupted, each in transactions of
//! at most [`BULK_ROWS`] rows selected by key range, never one statement over a whole table.

use store_api::{Destination, StoreError, SubscriptionKey};

use super::{BULK_ROWS, Done, Work, WriterTask};
use crate::sql::Arg;

impl WriterTask {
    /// Work that runs alone, in its own bounded transactions.
    pub(super) async fn bulk(&mut self, work: &Work) -> Result<Done, StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        match work {
            Work::Close => Ok(Done::Unit),
            // The openwire format deletes a subscription in one transaction, so there is nothing
            // to finish; what it does at open is drop the topic messages no subscription needs
            // (ActiveMQ leaves those for a periodic clean-up).
            Work::Recover if common.openwire() => {
                self.ow_recover().await?;
                Ok(Done::Unit)
            }
            Work::Recover => {
                // Finish subscription deletions a crash interrupted.
                let mut conn = self.begin_tx().await?;
                let r = async {
                    let rows = conn.fetch(&st.deleting_subscriptions, &[]).await?;
                    rows.iter()
                        .map(|r| Ok((r.string(0)?, r.i64(1)?)))
                        .collect::<Result<Vec<_>, sqlx::Error>>()
                }
                .await;
                for (c, sub) in self.end_tx(conn, r).await? {
                    self.drain_subscription(&c, sub).await?;
                }
                Ok(Done::Unit)
            }
            Work::Purge(d) => self.purge(d).await.map(Done::Count),
            Work::Measure(c) => {
                self.ow_measure(c).await?;
                Ok(Done::Unit)
            }
            Work::Checkpoint(batch) => self.checkpoint(batch).await.map(Done::Count),
            Work::DeleteSubscription(d, key) if common.openwire() => {
                self.ow_delete_subscription(d, key).await?;
                Ok(Done::Unit)
            }
            Work::DeleteSubscription(d, key) => {
                self.delete_subscription(d, key).await?;
                Ok(Done::Unit)
            }
            Work::RemoveDestination(d) => {
                let c = d.to_string();
                let mut conn = self.begin_tx().await?;
                let r = conn
                    .scalar(
                        &st.marker_exists,
                        &[Arg::Str(&c), Arg::Str(&c), Arg::Str(&c)],
                    )
                    .await;
                if self.end_tx(conn, r).await?.unwrap_or(0) == 0 {
                    return Err(StoreError::NotFound(format!("destination {d}")));
                }
                self.remove_destination(d).await?;
                Ok(Done::Unit)
            }
            Work::DeleteAll => {
                let mut conn = self.begin_tx().await?;
                let list = if common.openwire() {
                    &st.ow_destinations
                } else {
                    &st.destinations
                };
                let r = async {
                    let rows = conn.fetch(list, &[]).await?;
                    rows.iter()
                        .map(|r| r.string(0))
                        .collect::<Result<Vec<_>, _>>()
                }
                .await;
                for c in self.end_tx(conn, r).await? {
                    if let Some(d) = crate::columns::parse_container(&c) {
                        self.remove_destination(&d).await?;
                    }
                }
                // Prepared transactions: a handful of rows.
                loop {
                    let mut conn = self.begin_tx().await?;
                    let r = async {
                        let rows = conn
                            .fetch(&st.prepared_rows, &[Arg::I64(0), Arg::I64(BULK_ROWS)])
                            .await?;
                        for r in &rows {
                            conn.execute(&st.delete_message_by_id, &[Arg::I64(r.i64(0)?)])
                                .await?;
                        }
                        Ok(rows.len())
                    }
                    .await;
                    if self.end_tx(conn, r).await? == 0 {
                        break;
                    }
                }
                common.sub_ids.lock().clear();
                common.ow.subs.lock().clear();
                Ok(Done::Unit)
            }
            _ => Err(StoreError::InvalidArgument("not bulk work".into())),
        }
    }

    /// Deletes a destination's messages in bounded transactions; returns how many.
    pub(super) async fn purge(&mut self, d: &Destination) -> Result<u64, StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        let c = d.to_string();
        let mut total = 0;
        loop {
            let mut conn = self.begin_tx().await?;
            let r = async {
                let ids = conn
                    .fetch(&st.first_ids, &[Arg::Str(&c), Arg::I64(BULK_ROWS)])
                    .await?;
                let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
                    return Ok(0);
                };
                let (lo, hi) = (first.i64(0)?, last.i64(0)?);
                if d.is_topic() && !common.openwire() {
                    conn.execute(
                        &st.delete_pending_of_topic_range,
                        &[Arg::I64(lo), Arg::I64(hi), Arg::Str(&c)],
                    )
                    .await?;
                }
                conn.execute(
                    &st.delete_id_range,
                    &[Arg::Str(&c), Arg::I64(lo), Arg::I64(hi)],
                )
                .await
            }
            .await;
            let n = self.end_tx(conn, r).await?;
            if n == 0 {
                common.ow.message_gone(&c, None);
                return Ok(total);
            }
            total += n;
        }
    }

    /// Hides the subscription at once (one transaction), then drains it.
    pub(super) async fn delete_subscription(
        &mut self,
        d: &Destination,
        key: &SubscriptionKey,
    ) -> Result<(), StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        let c = d.to_string();
        common.sub_ids.lock().remove(&(d.clone(), key.clone()));
        let mut conn = self.begin_tx().await?;
        let r = async {
            let row = conn
                .fetch_one(
                    &st.lookup_subscription,
                    &[Arg::Str(&c), Arg::Str(&key.client_id), Arg::Str(&key.name)],
                )
                .await?;
            let Some(row) = row else { return Ok(None) };
            let sub = row.i64(0)?;
            conn.execute(
                &st.mark_subscription_deleting,
                &[Arg::Str(&c), Arg::Str(&key.client_id), Arg::Str(&key.name)],
            )
            .await?;
            Ok(Some(sub))
        }
        .await;
        match self.end_tx(conn, r).await? {
            Some(sub) => self.drain_subscription(&c, sub).await,
            None => Err(StoreError::NotFound(format!("subscription {key} on {d}"))),
        }
    }

    /// Removes a subscription marked as being deleted: its pending rows and the messages only
    /// it kept, in bounded transactions, then its row.
    pub(super) async fn drain_subscription(
        &mut self,
        container: &str,
        sub: i64,
    ) -> Result<(), StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        loop {
            let mut conn = self.begin_tx().await?;
            let r = async {
                let rows = conn
                    .fetch(&st.sub_first_pending, &[Arg::I64(sub), Arg::I64(BULK_ROWS)])
                    .await?;
                if rows.is_empty() {
                    conn.execute(&st.delete_subscription_row, &[Arg::I64(sub)])
                        .await?;
                    return Ok(true);
                }
                let mut ranges: Vec<(i64, i64, i64)> = Vec::new();
                let (mut lo, mut hi) = (i64::MAX, i64::MIN);
                for r in &rows {
                    let (p, m) = (r.i64(0)?, r.i64(1)?);
                    lo = lo.min(m);
                    hi = hi.max(m);
                    match ranges.last_mut() {
                        Some((rp, _, rhi)) if *rp == p => *rhi = m,
                        _ => ranges.push((p, m, m)),
                    }
                }
                for (p, a, b) in ranges {
                    conn.execute(
                        &st.delete_pending_range,
                        &[Arg::I64(sub), Arg::I64(p), Arg::I64(a), Arg::I64(b)],
                    )
                    .await?;
                }
                conn.execute(
                    &st.delete_unreferenced_range,
                    &[Arg::Str(container), Arg::I64(lo), Arg::I64(hi)],
                )
                .await?;
                Ok(false)
            }
            .await;
            if self.end_tx(conn, r).await? {
                return Ok(());
            }
        }
    }

    pub(super) async fn remove_destination(&mut self, d: &Destination) -> Result<(), StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        self.purge(d).await?;
        let c = d.to_string();
        // In the openwire format a subscription is only its rows, which go with the markers.
        if d.is_topic() && !common.openwire() {
            let mut conn = self.begin_tx().await?;
            let r = async {
                let rows = conn.fetch(&st.subscriptions, &[Arg::Str(&c)]).await?;
                rows.iter()
                    .map(|r| Ok(SubscriptionKey::new(r.string(0)?, r.string(1)?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()
            }
            .await;
            for key in self.end_tx(conn, r).await? {
                match self.delete_subscription(d, &key).await {
                    Ok(()) | Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let mut conn = self.begin_tx().await?;
        let r = conn.execute(&st.delete_markers, &[Arg::Str(&c)]).await;
        self.end_tx(conn, r).await?;
        common.sub_ids.lock().retain(|(dest, _), _| dest != d);
        common.ow.forget_container(&c);
        Ok(())
    }
}
