//! The master's replication listener: each slave connection is greeted, brought up to date
//! (the records after its position from the backlog, or a full copy followed by the records
//! written meanwhile), then fed every new record; its acks move the quorum.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use store_api::PersistenceAdapter;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use crate::error::{ReplicationError, Result};
use crate::frame::{Frame, read_frame, write_frame};
use crate::log::{CopyPin, SharedLog};
use crate::snapshot;

/// Records per frame, and about how many bytes.
const BATCH_RECORDS: usize = 4096;
const BATCH_BYTES: usize = 4 << 20;
/// A frame to an idle slave at least this often, so that it can tell a dead master.
pub const HEARTBEAT: Duration = Duration::from_millis(200);

/// Serves slaves on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, log: SharedLog, local: Arc<dyn PersistenceAdapter>) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                let _ = socket.set_nodelay(true);
                let log = Arc::clone(&log);
                let local = Arc::clone(&local);
                tokio::spawn(async move {
                    if let Err(e) = serve_slave(socket, &log, local).await {
                        tracing::warn!("replication: slave connection from {peer} ended: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("replication: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_slave(
    socket: TcpStream,
    log: &SharedLog,
    local: Arc<dyn PersistenceAdapter>,
) -> Result<()> {
    let (mut rd, wr) = socket.into_split();
    let mut wr = BufWriter::new(wr);
    let Some(Frame::Hello {
        node,
        epoch_seen,
        last_epoch,
        position,
        full_copy,
    }) = read_frame(&mut rd).await?
    else {
        return Err(ReplicationError::Protocol("expected a hello".into()));
    };
    if epoch_seen > log.epoch {
        let why = format!(
            "slave {node} has seen epoch {epoch_seen}, this master has {}",
            log.epoch
        );
        write_frame(&mut wr, &Frame::Refuse(why.clone())).await?;
        let _ = wr.flush().await;
        log.depose(&why);
        return Err(ReplicationError::Fenced(why));
    }
    let incremental = !full_copy && log.can_continue(position, last_epoch);
    tracing::info!(
        "replication: slave {node} connected at position {position} (epoch {last_epoch}): {}",
        if incremental {
            "sending the records after it"
        } else {
            "sending a full copy"
        }
    );
    write_frame(
        &mut wr,
        &Frame::Welcome {
            epoch: log.epoch,
            sync: log.sync,
            full_copy: !incremental,
        },
    )
    .await?;
    let id = log.add_slave(&node, position);
    let result = async {
        // After a full copy, its pin keeps the records after it until the feed has read them.
        let (mut sent, pin) = if incremental {
            (position, None)
        } else {
            let pin = full_copy_to(&mut wr, log, &local).await?;
            (pin.position, Some(pin))
        };
        wr.flush()
            .await
            .map_err(|e| ReplicationError::io("sending to a slave", e))?;
        let acks = tokio::spawn(read_acks(rd, Arc::clone(log), id));
        let fed = feed(&mut wr, log, &mut sent, pin).await;
        acks.abort();
        fed
    }
    .await;
    log.remove_slave(id);
    tracing::info!("replication: slave {node} disconnected");
    result
}

/// Sends a full copy; returns the pin on the position it stands for (the records after it
/// follow).
async fn full_copy_to(
    wr: &mut BufWriter<OwnedWriteHalf>,
    log: &SharedLog,
    local: &Arc<dyn PersistenceAdapter>,
) -> Result<CopyPin> {
    // Pin first, then read: the copy is "fuzzy" (it may already hold some records after the
    // pin's position), and the slave applies those records again, idempotently. The position is
    // before any record whose local write may not show yet, else the copy would miss it and the
    // slave never get it.
    let pin = log.pin_for_copy();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let local = Arc::clone(local);
    let reader = tokio::spawn(async move { snapshot::dump(&local, &tx).await });
    let mut sent = Ok(());
    while let Some(ops) = rx.recv().await {
        let frame = Frame::Snapshot(ops.iter().map(|o| Bytes::from(o.encode())).collect());
        sent = write_frame(wr, &frame).await;
        if sent.is_err() {
            break;
        }
    }
    drop(rx);
    let copied = match reader.await {
        Ok(r) => sent.and(r),
        Err(e) => Err(ReplicationError::Protocol(format!(
            "the full copy's reader failed: {e}"
        ))),
    };
    copied?;
    if log.unsubscribed_after(pin.position) {
        return Err(ReplicationError::Protocol(
            "a durable subscription was deleted during the full copy; the slave copies again"
                .into(),
        ));
    }
    write_frame(
        wr,
        &Frame::SnapshotEnd {
            position: pin.position,
            epoch: pin.epoch,
        },
    )
    .await?;
    Ok(pin)
}

/// Sends the records after `sent` as they come; `pin` (a full copy's) is dropped once the
/// first of them are read.
async fn feed(
    wr: &mut BufWriter<OwnedWriteHalf>,
    log: &SharedLog,
    sent: &mut u64,
    mut pin: Option<CopyPin>,
) -> Result<()> {
    loop {
        if log.is_deposed() {
            return Err(ReplicationError::Fenced("this master is deposed".into()));
        }
        // Register for the wake-up before looking, so an append in between is not missed.
        let appended = log.appended.notified();
        tokio::pin!(appended);
        appended.as_mut().enable();
        let records = log.read_after(*sent, BATCH_RECORDS, BATCH_BYTES);
        drop(pin.take());
        match records {
            None => {
                return Err(ReplicationError::Protocol(format!(
                    "the slave fell behind the backlog (position {}); it reconnects for a full copy",
                    sent
                )));
            }
            Some(records) if !records.is_empty() => {
                let n = records.len() as u64;
                write_frame(
                    wr,
                    &Frame::Records {
                        epoch: log.epoch,
                        first: *sent + 1,
                        records,
                    },
                )
                .await?;
                *sent += n;
                continue_or_flush(wr).await?;
            }
            Some(_) => {
                wr.flush()
                    .await
                    .map_err(|e| ReplicationError::io("sending to a slave", e))?;
                if tokio::time::timeout(HEARTBEAT, appended).await.is_err() {
                    write_frame(wr, &Frame::Heartbeat(log.epoch)).await?;
                    wr.flush()
                        .await
                        .map_err(|e| ReplicationError::io("sending to a slave", e))?;
                }
            }
        }
    }
}

async fn continue_or_flush(wr: &mut BufWriter<OwnedWriteHalf>) -> Result<()> {
    wr.flush()
        .await
        .map_err(|e| ReplicationError::io("sending to a slave", e))
}

async fn read_acks(mut rd: OwnedReadHalf, log: SharedLog, id: u64) {
    loop {
        match read_frame(&mut rd).await {
            Ok(Some(Frame::Ack(p))) => log.ack(id, p),
            Ok(Some(Frame::Refuse(why))) => {
                log.depose(&why);
                return;
            }
            Ok(Some(other)) => {
                tracing::warn!("replication: unexpected frame from a slave: {other:?}");
                return;
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("replication: reading a slave's acks: {e}");
                return;
            }
        }
    }
}
