//! The loose encoding's building blocks: a bounds-checked reader and a writer of Java
//! `DataInput`/`DataOutput` values, and the conventions OpenWire layers on them (a boolean
//! before every nullable value, `writeUTF` strings, `int`-prefixed byte arrays).
//!
//! Every read checks the bytes remaining before it takes or allocates anything, so a length
//! field cannot make the decoder allocate more than the frame it already holds.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::mutf8;

/// How deep data structures, throwables and primitive maps may nest. Java allows 127 map levels;
/// no client nests anywhere near this, and the bound keeps recursion off the end of the stack.
pub const MAX_NESTING: usize = 64;

/// Reads loose-encoded values from one frame (or one body); byte arrays are zero-copy slices.
pub(crate) struct Reader {
    buf: Bytes,
    depth: usize,
    /// The negotiated protocol version: fields newer than it are not on the wire.
    pub version: i32,
    /// Whether throwables carry stack traces and causes.
    pub stack_trace: bool,
}

impl Reader {
    pub fn new(buf: Bytes, version: i32, stack_trace: bool) -> Self {
        Reader {
            buf,
            depth: 0,
            version,
            stack_trace,
        }
    }

    pub fn remaining(&self) -> usize {
        self.buf.remaining()
    }

    fn need(&self, needed: usize, what: &'static str) -> Result<(), DecodeError> {
        let remaining = self.buf.remaining();
        if remaining < needed {
            return Err(DecodeError::Truncated {
                what,
                needed,
                remaining,
            });
        }
        Ok(())
    }

    /// Enters one level of nesting; paired with [`Reader::leave`].
    pub fn enter(&mut self) -> Result<(), DecodeError> {
        if self.depth >= MAX_NESTING {
            return Err(DecodeError::TooDeep(MAX_NESTING));
        }
        self.depth += 1;
        Ok(())
    }

    pub fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    pub fn i8(&mut self, what: &'static str) -> Result<i8, DecodeError> {
        self.need(1, what)?;
        Ok(self.buf.get_i8())
    }

    /// Java's `readBoolean`: any non-zero byte is true.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        Ok(self.u8(what)? != 0)
    }

    pub fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        self.need(2, what)?;
        Ok(self.buf.get_i16())
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.need(2, what)?;
        Ok(self.buf.get_u16())
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        self.need(4, what)?;
        Ok(self.buf.get_i32())
    }

    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        self.need(8, what)?;
        Ok(self.buf.get_i64())
    }

    pub fn f32(&mut self, what: &'static str) -> Result<f32, DecodeError> {
        self.need(4, what)?;
        Ok(self.buf.get_f32())
    }

    pub fn f64(&mut self, what: &'static str) -> Result<f64, DecodeError> {
        self.need(8, what)?;
        Ok(self.buf.get_f64())
    }

    /// The next `len` bytes, sharing the frame's buffer.
    pub fn bytes(&mut self, len: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        self.need(len, what)?;
        Ok(self.buf.split_to(len))
    }

    /// A length read as a Java `int`, refused when negative.
    pub fn len_i32(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let len = self.i32(what)?;
        usize::try_from(len).map_err(|_| DecodeError::NegativeLength { what, len })
    }

    /// Modified UTF-8 of `len` bytes.
    pub fn utf_of_len(&mut self, len: usize, what: &'static str) -> Result<String, DecodeError> {
        self.need(len, what)?;
        let s = mutf8::decode(&self.buf[..len]).ok_or(DecodeError::InvalidString(what))?;
        self.buf.advance(len);
        Ok(s)
    }

    /// `DataInput.readUTF`: an unsigned 16-bit length, then modified UTF-8.
    pub fn utf(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let len = self.u16(what)?;
        self.utf_of_len(usize::from(len), what)
    }

    /// OpenWire's nullable string: a boolean, then `readUTF` when true.
    pub fn opt_string(&mut self, what: &'static str) -> Result<Option<String>, DecodeError> {
        if self.bool(what)? {
            Ok(Some(self.utf(what)?))
        } else {
            Ok(None)
        }
    }

    /// A string the codec cannot do without.
    pub fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        self.opt_string(what)?
            .ok_or(DecodeError::MissingField(what))
    }

    /// OpenWire's nullable byte array (and byte sequence): a boolean, an `int` length, bytes.
    pub fn opt_byte_array(&mut self, what: &'static str) -> Result<Option<Bytes>, DecodeError> {
        if self.bool(what)? {
            let len = self.len_i32(what)?;
            Ok(Some(self.bytes(len, what)?))
        } else {
            Ok(None)
        }
    }

    /// The count of an OpenWire object array, whose presence boolean was already read.
    pub fn array_len(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let len = self.i16(what)?;
        usize::try_from(len).map_err(|_| DecodeError::NegativeLength {
            what,
            len: i32::from(len),
        })
    }
}

/// Writes loose-encoded values.
pub(crate) struct Writer<'a> {
    pub out: &'a mut BytesMut,
    pub version: i32,
    pub stack_trace: bool,
}

impl Writer<'_> {
    pub fn u8(&mut self, v: u8) {
        self.out.put_u8(v);
    }

    pub fn i8(&mut self, v: i8) {
        self.out.put_i8(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.out.put_u8(u8::from(v));
    }

    pub fn i16(&mut self, v: i16) {
        self.out.put_i16(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.out.put_u16(v);
    }

    pub fn i32(&mut self, v: i32) {
        self.out.put_i32(v);
    }

    pub fn i64(&mut self, v: i64) {
        self.out.put_i64(v);
    }

    pub fn f32(&mut self, v: f32) {
        self.out.put_f32(v);
    }

    pub fn f64(&mut self, v: f64) {
        self.out.put_f64(v);
    }

    pub fn raw(&mut self, v: &[u8]) {
        self.out.put_slice(v);
    }

    /// A length written as a Java `int`.
    pub fn len_i32(&mut self, len: usize, what: &'static str) -> Result<(), EncodeError> {
        let len = i32::try_from(len).map_err(|_| EncodeError::TooLong { what, len })?;
        self.i32(len);
        Ok(())
    }

    /// `DataOutput.writeUTF`.
    pub fn utf(&mut self, s: &str, what: &'static str) -> Result<(), EncodeError> {
        let len = mutf8::encoded_len(s);
        let len16 = u16::try_from(len).map_err(|_| EncodeError::StringTooLong { what, len })?;
        self.u16(len16);
        let mut buf = Vec::with_capacity(len);
        mutf8::encode_into(s, &mut buf);
        self.raw(&buf);
        Ok(())
    }

    pub fn opt_string(&mut self, s: Option<&str>, what: &'static str) -> Result<(), EncodeError> {
        self.bool(s.is_some());
        match s {
            Some(s) => self.utf(s, what),
            None => Ok(()),
        }
    }

    pub fn string(&mut self, s: &str, what: &'static str) -> Result<(), EncodeError> {
        self.opt_string(Some(s), what)
    }

    pub fn opt_byte_array(
        &mut self,
        b: Option<&[u8]>,
        what: &'static str,
    ) -> Result<(), EncodeError> {
        self.bool(b.is_some());
        if let Some(b) = b {
            self.len_i32(b.len(), what)?;
            self.raw(b);
        }
        Ok(())
    }

    /// The count of an object array, after its presence boolean.
    pub fn array_len(&mut self, len: usize, what: &'static str) -> Result<(), EncodeError> {
        let len16 = i16::try_from(len).map_err(|_| EncodeError::TooLong { what, len })?;
        self.i16(len16);
        Ok(())
    }
}
