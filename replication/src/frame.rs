//! The replication connection's frames, master to slave and back.
//!
//! Each frame is `u32` LE body length, `u32` LE CRC-32 of the body, then the body: a `u8`
//! kind and its fields (varints as in store-api's codec). A frame longer than
//! [`MAX_FRAME`] or whose CRC does not match is refused before anything in it is used.
//!
//! | kind | frame | direction | fields |
//! |---|---|---|---|
//! | 1 | hello | slave → master | `str` node id, varint highest epoch seen, varint epoch of its last record, varint position, `u8` wants a full copy |
//! | 2 | welcome | master → slave | varint epoch, `u8` sync mode, `u8` full copy follows |
//! | 3 | records | master → slave | varint epoch, varint position of the first, varint count, (varint record epoch, `bin` op)* |
//! | 4 | snapshot | master → slave | varint count, `bin` op* (a full copy's state, in pieces) |
//! | 5 | snapshot end | master → slave | varint position the copy stands for, varint that record's epoch |
//! | 6 | ack | slave → master | varint position applied (durably, or received under `quorum_mem`) |
//! | 7 | refuse | either | `str` why (a newer epoch exists, a protocol error) |
//! | 8 | heartbeat | master → slave | varint epoch |

use bytes::{Bytes, BytesMut};
use store_api::DecodeError;
use store_api::codec::{Reader, Writer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::SyncMode;
use crate::error::{ReplicationError, Result};

/// The largest frame body accepted: a batch of records or a snapshot piece is cut below it.
pub const MAX_FRAME: usize = 64 << 20;

/// One replicated record: its position is implied by the frame's first position.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The epoch of the master that wrote it.
    pub epoch: u64,
    /// The encoded [`crate::op::Op`].
    pub op: Bytes,
}

/// A frame of the replication connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Hello {
        node: String,
        epoch_seen: u64,
        last_epoch: u64,
        position: u64,
        full_copy: bool,
    },
    Welcome {
        epoch: u64,
        sync: SyncMode,
        full_copy: bool,
    },
    Records {
        epoch: u64,
        first: u64,
        records: Vec<Record>,
    },
    Snapshot(Vec<Bytes>),
    SnapshotEnd {
        position: u64,
        epoch: u64,
    },
    Ack(u64),
    Refuse(String),
    Heartbeat(u64),
}

fn sync_byte(s: SyncMode) -> u8 {
    match s {
        SyncMode::QuorumDisk => 0,
        SyncMode::QuorumMem => 1,
        SyncMode::LocalDisk => 2,
    }
}

fn read_flag(r: &mut Reader<'_>) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        tag => Err(DecodeError::InvalidTag {
            what: "flag",
            tag,
            at: r.position() - 1,
        }),
    }
}

impl Frame {
    /// The frame's body (kind and fields), without the length and CRC.
    pub fn encode_body(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Frame::Hello {
                node,
                epoch_seen,
                last_epoch,
                position,
                full_copy,
            } => {
                w.u8(1);
                w.str(node);
                w.varint(*epoch_seen);
                w.varint(*last_epoch);
                w.varint(*position);
                w.u8(u8::from(*full_copy));
            }
            Frame::Welcome {
                epoch,
                sync,
                full_copy,
            } => {
                w.u8(2);
                w.varint(*epoch);
                w.u8(sync_byte(*sync));
                w.u8(u8::from(*full_copy));
            }
            Frame::Records {
                epoch,
                first,
                records,
            } => {
                w.u8(3);
                w.varint(*epoch);
                w.varint(*first);
                w.varint(records.len() as u64);
                for r in records {
                    w.varint(r.epoch);
                    w.bin(&r.op);
                }
            }
            Frame::Snapshot(ops) => {
                w.u8(4);
                w.varint(ops.len() as u64);
                for op in ops {
                    w.bin(op);
                }
            }
            Frame::SnapshotEnd { position, epoch } => {
                w.u8(5);
                w.varint(*position);
                w.varint(*epoch);
            }
            Frame::Ack(p) => {
                w.u8(6);
                w.varint(*p);
            }
            Frame::Refuse(why) => {
                w.u8(7);
                w.str(why);
            }
            Frame::Heartbeat(epoch) => {
                w.u8(8);
                w.varint(*epoch);
            }
        }
        w.into_inner()
    }

    /// Decodes one frame body: any other input is an error, never a panic.
    pub fn decode_body(buf: &[u8]) -> Result<Frame, DecodeError> {
        let mut r = Reader::new(buf);
        let frame = match r.u8()? {
            1 => Frame::Hello {
                node: r.str("node id")?.to_owned(),
                epoch_seen: r.varint()?,
                last_epoch: r.varint()?,
                position: r.varint()?,
                full_copy: read_flag(&mut r)?,
            },
            2 => Frame::Welcome {
                epoch: r.varint()?,
                sync: match r.u8()? {
                    0 => SyncMode::QuorumDisk,
                    1 => SyncMode::QuorumMem,
                    2 => SyncMode::LocalDisk,
                    tag => {
                        return Err(DecodeError::InvalidTag {
                            what: "sync mode",
                            tag,
                            at: r.position() - 1,
                        });
                    }
                },
                full_copy: read_flag(&mut r)?,
            },
            3 => {
                let epoch = r.varint()?;
                let first = r.varint()?;
                let n = r.length()?;
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    let epoch = r.varint()?;
                    let op = Bytes::copy_from_slice(r.bin()?);
                    records.push(Record { epoch, op });
                }
                Frame::Records {
                    epoch,
                    first,
                    records,
                }
            }
            4 => {
                let n = r.length()?;
                let mut ops = Vec::with_capacity(n);
                for _ in 0..n {
                    ops.push(Bytes::copy_from_slice(r.bin()?));
                }
                Frame::Snapshot(ops)
            }
            5 => Frame::SnapshotEnd {
                position: r.varint()?,
                epoch: r.varint()?,
            },
            6 => Frame::Ack(r.varint()?),
            7 => Frame::Refuse(r.str("reason")?.to_owned()),
            8 => Frame::Heartbeat(r.varint()?),
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "replication frame",
                    tag,
                    at: 0,
                });
            }
        };
        r.finish()?;
        Ok(frame)
    }

    /// The whole frame: length, CRC, body.
    pub fn encode(&self) -> Vec<u8> {
        let body = self.encode_body();
        let mut out = Vec::with_capacity(body.len() + 8);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }
}

/// Writes one frame.
pub async fn write_frame(w: &mut (impl AsyncWrite + Unpin), frame: &Frame) -> Result<()> {
    w.write_all(&frame.encode())
        .await
        .map_err(|e| ReplicationError::io("sending a replication frame", e))
}

/// Reads one frame; `Ok(None)` at a clean end of the stream between frames.
pub async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(ReplicationError::io("reading a replication frame", e)),
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_FRAME {
        return Err(ReplicationError::Protocol(format!(
            "a frame of {len} bytes, above the {MAX_FRAME} limit"
        )));
    }
    let mut body = BytesMut::zeroed(len);
    r.read_exact(&mut body)
        .await
        .map_err(|e| ReplicationError::io("reading a replication frame", e))?;
    if crc32fast::hash(&body) != crc {
        return Err(ReplicationError::Protocol(
            "a frame whose CRC does not match its body".into(),
        ));
    }
    Ok(Some(Frame::decode_body(&body)?))
}
