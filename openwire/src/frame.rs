//! Framing: a 4-byte big-endian size (of what follows, not of itself), the type byte, then the
//! command's fields; tight, the frame's boolean stream comes between the type and the fields. `SizePrefixDisabled` is not supported: a size prefix is what lets the
//! decoder refuse an oversized frame before buffering it.

use bytes::{Buf, BufMut, BytesMut};

use crate::command::Command;
use crate::data_type as t;
use crate::error::{DecodeError, EncodeError};
use crate::marshal::Marshal;
use crate::wire::{BitReader, BitWriter, Reader, Writer};
use crate::wireformat::WireFormat;

const SIZE_PREFIX: usize = 4;

/// Takes the next command off the front of `buf`: `Ok(None)` until a whole frame is there.
///
/// A frame whose size prefix is above `wf.max_frame_size` is refused as soon as the prefix is
/// read, so a hostile size never makes the caller buffer more. Null frames (type 0) are
/// skipped. After an error the connection's stream is out of step and should be closed.
pub fn decode(buf: &mut BytesMut, wf: &WireFormat) -> Result<Option<Command>, DecodeError> {
    loop {
        if buf.len() < SIZE_PREFIX {
            return Ok(None);
        }
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let Ok(len) = usize::try_from(size) else {
            return Err(DecodeError::InvalidFrameSize(size));
        };
        if len == 0 {
            return Err(DecodeError::InvalidFrameSize(size));
        }
        if len as u64 > wf.max_frame_size {
            return Err(DecodeError::FrameTooLarge {
                size: len as u64,
                max: wf.max_frame_size,
            });
        }
        // No `reserve` for the rest: a peer that announces a large frame and sends it slowly
        // would otherwise hold that much memory per connection before sending a byte of it.
        if buf.len() < SIZE_PREFIX + len {
            return Ok(None);
        }
        buf.advance(SIZE_PREFIX);
        let frame = buf.split_to(len).freeze();
        let mut r = Reader::new(frame, wf.version, wf.stack_trace_enabled);
        let data_type = r.u8("data structure type")?;
        if data_type == t::NULL {
            continue;
        }
        // WireFormatInfo is loose whatever is being negotiated.
        if data_type != t::WIREFORMAT_INFO {
            if wf.cache_enabled {
                return Err(DecodeError::CacheNotSupported);
            }
            if wf.tight_encoding_enabled {
                r.bits = Some(BitReader::read(&mut r)?);
            }
        }
        let command = Command::decode_body(data_type, &mut r)?;
        if r.remaining() != 0 {
            return Err(DecodeError::TrailingBytes {
                data_type,
                extra: r.remaining(),
            });
        }
        return Ok(Some(command));
    }
}

/// Appends `command` as one frame to `out`. On error `out` is left as it was.
pub fn encode(command: &Command, wf: &WireFormat, out: &mut BytesMut) -> Result<(), EncodeError> {
    let data_type = command.data_type();
    let tight = data_type != t::WIREFORMAT_INFO && wf.tight_encoding_enabled;
    if data_type != t::WIREFORMAT_INFO && wf.cache_enabled {
        return Err(EncodeError::CacheNotSupported);
    }
    let start = out.len();
    out.put_u32(0);
    out.put_u8(data_type);
    let written = if tight {
        // The booleans go before the fields but are only known once the fields are written:
        // write the fields aside, then the bits, then the fields.
        let mut fields = BytesMut::new();
        let mut w = Writer {
            out: &mut fields,
            bits: Some(BitWriter::default()),
            version: wf.version,
            stack_trace: wf.stack_trace_enabled,
        };
        command.encode_body(&mut w).and_then(|()| {
            let bits = w.bits.take().unwrap_or_default();
            bits.write_to(out)?;
            out.put_slice(&fields);
            Ok(())
        })
    } else {
        let mut w = Writer {
            out,
            bits: None,
            version: wf.version,
            stack_trace: wf.stack_trace_enabled,
        };
        command.encode_body(&mut w)
    };
    let size = out.len() - start - SIZE_PREFIX;
    let checked = written.and_then(|()| {
        if size as u64 > wf.max_frame_size {
            return Err(EncodeError::FrameTooLarge {
                size: size as u64,
                max: wf.max_frame_size,
            });
        }
        u32::try_from(size).map_err(|_| EncodeError::TooLong {
            what: "frame",
            len: size,
        })
    });
    match checked {
        Ok(size) => {
            out[start..start + SIZE_PREFIX].copy_from_slice(&size.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}
