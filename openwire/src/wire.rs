//! The loose encoding's building blocks: a bounds-checked reader and a writer of Java
//! `DataInput`/`DataOutput` values, and the conventions OpenWire layers on them (a boolean
//! before every nullable value, `writeUTF` strings, `int`-prefixed byte arrays).
//!
//! Tight encoding moves every boolean (fields, and the presence flags of nullable values) into a
//! bit stream written once at the front of the frame, and writes a `long` in 0, 2, 4 or 8 bytes
//! as two of those bits say. The reader and writer below hide the difference: a command's
//! fields are read and written the same way in both encodings, in wire order.
//!
//! Every read checks the bytes remaining before it takes or allocates anything, so a length
//! field cannot make the decoder allocate more than the frame it already holds.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::mutf8;

/// How deep data structures, throwables and primitive maps may nest. Java allows 127 map levels;
/// no client nests anywhere near this, and the bound keeps recursion off the end of the stack.
pub const MAX_NESTING: usize = 64;

/// The booleans of a tightly encoded frame (ActiveMQ's `BooleanStream`), least significant
/// bit first.
pub(crate) struct BitReader {
    bits: Bytes,
    pos: usize,
}

impl BitReader {
    /// Reads the stream's length (one byte; `C0` then a byte; `80` then a short) and its bytes.
    pub fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let len = match r.u8("boolean stream length")? {
            0xC0 => usize::from(r.u8("boolean stream length")?),
            0x80 => r.array_len("boolean stream length")?,
            n => usize::from(n),
        };
        Ok(BitReader {
            bits: r.bytes(len, "boolean stream")?,
            pos: 0,
        })
    }

    fn next(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let byte = self.bits.get(self.pos / 8).ok_or(DecodeError::Truncated {
            what,
            needed: self.pos / 8 + 1,
            remaining: self.bits.len(),
        })?;
        let bit = (byte >> (self.pos % 8)) & 1 == 1;
        self.pos += 1;
        Ok(bit)
    }
}

/// Collects the booleans of a tightly encoded frame.
#[derive(Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    len: usize,
}

impl BitWriter {
    fn push(&mut self, bit: bool) {
        if self.len.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if let (true, Some(last)) = (bit, self.bytes.last_mut()) {
            *last |= 1 << (self.len % 8);
        }
        self.len += 1;
    }

    /// Writes the stream as `BooleanStream.marshal` does.
    pub fn write_to(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let len = self.bytes.len();
        if len < 64 {
            out.put_u8(len as u8);
        } else if len < 256 {
            out.put_u8(0xC0);
            out.put_u8(len as u8);
        } else {
            let len = i16::try_from(len).map_err(|_| EncodeError::TooLong {
                what: "boolean stream",
                len,
            })?;
            out.put_u8(0x80);
            out.put_i16(len);
        }
        out.put_slice(&self.bytes);
        Ok(())
    }
}

/// The longest string tight encoding writes (`tightMarshalString1` refuses 32767 and up).
const TIGHT_MAX_UTF: usize = 32766;

/// Reads a frame's (or a body's) values; byte arrays are zero-copy slices.
pub(crate) struct Reader {
    buf: Bytes,
    depth: usize,
    /// The frame's booleans when it is tightly encoded.
    pub bits: Option<BitReader>,
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
            bits: None,
            version,
            stack_trace,
        }
    }

    pub fn is_tight(&self) -> bool {
        self.bits.is_some()
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

    /// A boolean field or presence flag: a byte (any non-zero byte is true, as Java's
    /// `readBoolean`) or, tight, the next bit.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match &mut self.bits {
            Some(bits) => bits.next(what),
            None => Ok(self.u8(what)? != 0),
        }
    }

    /// A `long` field: eight bytes, or, tight, none, two, four or eight as two bits say (the
    /// short and int forms are unsigned).
    pub fn long(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        if !self.is_tight() {
            return self.i64(what);
        }
        if self.bool(what)? {
            if self.bool(what)? {
                self.i64(what)
            } else {
                Ok(i64::from(self.i32(what)? as u32))
            }
        } else if self.bool(what)? {
            Ok(i64::from(self.u16(what)?))
        } else {
            Ok(0)
        }
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

    /// OpenWire's nullable string: a presence flag, then `readUTF`; tight, a second bit says
    /// the string is ASCII, written as a short length and one byte per character.
    pub fn opt_string(&mut self, what: &'static str) -> Result<Option<String>, DecodeError> {
        if !self.bool(what)? {
            return Ok(None);
        }
        if self.is_tight() && self.bool(what)? {
            let len = self.array_len(what)?;
            // Java builds the string with `new String(bytes, 0)`: each byte is a Latin-1 char.
            let bytes = self.bytes(len, what)?;
            return Ok(Some(bytes.iter().map(|&b| char::from(b)).collect()));
        }
        Ok(Some(self.utf(what)?))
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

/// Writes a frame's values.
pub(crate) struct Writer<'a> {
    pub out: &'a mut BytesMut,
    /// The frame's booleans when it is tightly encoded.
    pub bits: Option<BitWriter>,
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

    pub fn is_tight(&self) -> bool {
        self.bits.is_some()
    }

    /// A boolean field or presence flag: a byte, or, tight, a bit.
    pub fn bool(&mut self, v: bool) {
        match &mut self.bits {
            Some(bits) => bits.push(v),
            None => self.out.put_u8(u8::from(v)),
        }
    }

    /// A `long` field, tight in the fewest of 0, 2, 4 or 8 bytes (`tightMarshalLong1`).
    pub fn long(&mut self, v: i64) {
        if !self.is_tight() {
            self.i64(v);
        } else if v == 0 {
            self.bool(false);
            self.bool(false);
        } else if v as u64 & 0xFFFF_FFFF_FFFF_0000 == 0 {
            self.bool(false);
            self.bool(true);
            self.u16(v as u16);
        } else if v as u64 & 0xFFFF_FFFF_0000_0000 == 0 {
            self.bool(true);
            self.bool(false);
            self.i32(v as u32 as i32);
        } else {
            self.bool(true);
            self.bool(true);
            self.i64(v);
        }
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
        let Some(s) = s else {
            return Ok(());
        };
        if self.is_tight() {
            let len = mutf8::encoded_len(s);
            if len > TIGHT_MAX_UTF {
                return Err(EncodeError::StringTooLong { what, len });
            }
            // ASCII without NUL is written as its bytes after a short length: the same bytes
            // as `writeUTF`, but flagged by a bit.
            let ascii = s.bytes().all(|b| (0x01..=0x7F).contains(&b));
            self.bool(ascii);
        }
        self.utf(s, what)
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
