//! A slave following its master: greet it with this node's position, take the records after
//! it (or a full copy), apply them to the local store, and acknowledge what is applied.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::SyncMode;
use crate::apply::Applier;
use crate::error::{ReplicationError, Result};
use crate::frame::{Frame, Record, read_frame, write_frame};
use crate::op::Op;
use crate::position::{Position, PositionFile};
use crate::server::HEARTBEAT;

/// What a slave carries from one master to the next.
pub struct FollowerState {
    pub node: String,
    pub applier: Applier,
    pub position_file: PositionFile,
    /// The position applied, for status and the election (mirrors the position file).
    pub applied: Arc<AtomicU64>,
}

/// Follows the master at `addr` of `epoch` until `stop` turns true (between two batches, so
/// that the position stays exact) or the connection fails.
pub async fn follow(
    state: &mut FollowerState,
    addr: SocketAddr,
    epoch: u64,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let socket = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .map_err(|_| {
            ReplicationError::io(
                format!("connecting to the master at {addr}"),
                std::io::ErrorKind::TimedOut.into(),
            )
        })?
        .map_err(|e| ReplicationError::io(format!("connecting to the master at {addr}"), e))?;
    let _ = socket.set_nodelay(true);
    let (mut rd, wr) = socket.into_split();
    let mut wr = BufWriter::new(wr);
    let start = state.position_file.get();
    write_frame(
        &mut wr,
        &Frame::Hello {
            node: state.node.clone(),
            epoch_seen: epoch,
            last_epoch: start.epoch,
            position: start.position,
            full_copy: start.needs_full_copy(),
        },
    )
    .await?;
    flush(&mut wr).await?;
    // Nothing from a master is awaited longer than a few heartbeats: a silent one is dead.
    let quiet = HEARTBEAT * 10;
    let (sync, full_copy) = match next(&mut rd, quiet).await? {
        Frame::Welcome {
            epoch: e,
            sync,
            full_copy,
        } if e == epoch => (sync, full_copy),
        Frame::Welcome { epoch: e, .. } => {
            return Err(ReplicationError::Fenced(format!(
                "the master at {addr} answered with epoch {e}, expected {epoch}"
            )));
        }
        Frame::Refuse(why) => return Err(ReplicationError::Fenced(why)),
        other => {
            return Err(ReplicationError::Protocol(format!(
                "expected a welcome, got {other:?}"
            )));
        }
    };
    tracing::info!(
        "replication: following the master at {addr} (epoch {epoch}) from position {}{}",
        start.position,
        if full_copy { " with a full copy" } else { "" }
    );
    if full_copy {
        state.position_file.set(
            Position {
                position: 0,
                epoch: 0,
                was_master: false,
                copying: true,
            },
            true,
        )?;
        state.applied.store(0, Ordering::Release);
        state.applier.clear().await?;
        let mut copied = 0u64;
        loop {
            match next(&mut rd, quiet).await? {
                Frame::Snapshot(ops) => {
                    copied += ops.len() as u64;
                    let ops = ops
                        .iter()
                        .map(|b| Op::decode(b))
                        .collect::<Result<Vec<_>, _>>()?;
                    state.applier.apply(ops).await?;
                }
                Frame::SnapshotEnd { position, epoch: e } => {
                    state.position_file.set(
                        Position {
                            position,
                            epoch: e,
                            was_master: false,
                            copying: false,
                        },
                        true,
                    )?;
                    state.applied.store(position, Ordering::Release);
                    tracing::info!(
                        "replication: full copy done ({copied} records), at position {position}"
                    );
                    break;
                }
                Frame::Refuse(why) => return Err(ReplicationError::Fenced(why)),
                other => {
                    return Err(ReplicationError::Protocol(format!(
                        "unexpected frame during a full copy: {other:?}"
                    )));
                }
            }
        }
    }
    // A reader takes the master's frames (and under quorum_mem acknowledges each on
    // receipt) while this task applies: whatever arrived during one apply is applied together
    // by the next, so the slave's engine syncs once per batch however small the master's frames.
    let ack_on_receipt = sync == SyncMode::QuorumMem;
    // At most 16 frames (of at most 4 MiB of records each) wait here: what a slower slave has
    // not taken waits in TCP and in the master's bounded backlog (past which the slave takes a
    // full copy), and the quorum's writes wait for it only if no faster slave completes them.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, Vec<Record>)>(16);
    let start_at = state.position_file.get().position;
    let (mut reader_wr, mut ack_wr) = if ack_on_receipt {
        (Some(wr), None)
    } else {
        (None, Some(wr))
    };
    let mut reader = tokio::spawn(async move {
        let mut expected = start_at + 1;
        loop {
            match next(&mut rd, quiet).await? {
                Frame::Records {
                    epoch: e,
                    first,
                    records,
                } => {
                    if e != epoch {
                        let why = format!("records of epoch {e} from the master of epoch {epoch}");
                        if let Some(wr) = reader_wr.as_mut() {
                            let _ = write_frame(wr, &Frame::Refuse(why.clone())).await;
                        }
                        return Err(ReplicationError::Fenced(why));
                    }
                    if first != expected {
                        return Err(ReplicationError::Protocol(format!(
                            "records from position {first}, this slave expected {expected}"
                        )));
                    }
                    if records.is_empty() {
                        continue;
                    }
                    expected += records.len() as u64;
                    if let Some(wr) = reader_wr.as_mut() {
                        write_frame(wr, &Frame::Ack(expected - 1)).await?;
                        flush(wr).await?;
                    }
                    if tx.send((first, records)).await.is_err() {
                        return Ok(());
                    }
                }
                Frame::Heartbeat(e) if e == epoch => {}
                Frame::Refuse(why) => return Err(ReplicationError::Fenced(why)),
                other => {
                    return Err(ReplicationError::Protocol(format!(
                        "unexpected frame: {other:?}"
                    )));
                }
            }
        }
    });
    // Under quorum_disk this task acknowledges (`ack_wr`), once a batch is durable.
    let mut stopping = false;
    let mut reader_result: Option<Result<()>> = None;
    loop {
        // Wait for records (or a stop, or the reader's end); then take all that are queued.
        let mut batch = if stopping || reader_result.is_some() {
            match rx.try_recv() {
                Ok(b) => vec![b],
                Err(_) => break,
            }
        } else {
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    // Apply what was received (and perhaps acknowledged) before stopping.
                    stopping = true;
                    reader.abort();
                    continue;
                }
                r = &mut reader => {
                    reader_result = Some(match r {
                        Ok(r) => r,
                        Err(e) => Err(ReplicationError::Protocol(format!("the replication reader failed: {e}"))),
                    });
                    continue;
                }
                b = rx.recv() => match b {
                    Some(b) => vec![b],
                    None => continue,
                },
            }
        };
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut ops = Vec::new();
        let mut last = (0, 0);
        for (first, records) in &batch {
            for (i, r) in records.iter().enumerate() {
                ops.push(Op::decode(&r.op)?);
                last = (first + i as u64, r.epoch);
            }
        }
        state.applier.apply(ops).await?;
        state.position_file.set(
            Position {
                position: last.0,
                epoch: last.1,
                was_master: false,
                copying: false,
            },
            false,
        )?;
        state.applied.store(last.0, Ordering::Release);
        if let Some(wr) = ack_wr.as_mut() {
            write_frame(wr, &Frame::Ack(last.0)).await?;
            flush(wr).await?;
        }
    }
    reader.abort();
    reader_result.unwrap_or(Ok(()))
}

/// The master's next frame; silence longer than `quiet`, or the end of the stream, is an error.
async fn next(rd: &mut tokio::net::tcp::OwnedReadHalf, quiet: Duration) -> Result<Frame> {
    match tokio::time::timeout(quiet, read_frame(rd)).await {
        Err(_) => Err(ReplicationError::Protocol(format!(
            "the master said nothing for {} ms",
            quiet.as_millis()
        ))),
        Ok(Ok(None)) => Err(ReplicationError::Protocol(
            "the master closed the connection".into(),
        )),
        Ok(Ok(Some(f))) => Ok(f),
        Ok(Err(e)) => Err(e),
    }
}

async fn flush(wr: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>) -> Result<()> {
    wr.flush()
        .await
        .map_err(|e| ReplicationError::io("sending to the master", e))
}
