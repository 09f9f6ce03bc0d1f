//! ActiveMQ's typed-value format (`MarshallingSupport`): the primitive map behind message
//! properties, `MapMessage` bodies and `WireFormatInfo` properties, and the value sequence of
//! `StreamMessage` bodies.
//!
//! A map is an `int` count then, per entry, a `writeUTF` key and a typed value: a type byte and
//! the value in `DataOutput` form. Maps keep their entries in wire order, so a decoded map
//! re-encodes to the same bytes (Java's order is its `HashMap`'s, which we cannot recompute).

use bytes::{Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::mutf8;
use crate::wire::{Reader, Writer};

const NULL: u8 = 0;
const BOOLEAN: u8 = 1;
const BYTE: u8 = 2;
const CHAR: u8 = 3;
const SHORT: u8 = 4;
const INTEGER: u8 = 5;
const LONG: u8 = 6;
const DOUBLE: u8 = 7;
const FLOAT: u8 = 8;
const STRING: u8 = 9;
const BYTE_ARRAY: u8 = 10;
const MAP: u8 = 11;
const LIST: u8 = 12;
const BIG_STRING: u8 = 13;

/// Java writes a string of fewer UTF-16 units than this with `writeUTF` (type 9), a longer one
/// with an `int` length (type 13): `Short.MAX_VALUE / 4`.
const BIG_STRING_UNITS: usize = 8191;

/// One typed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Byte(i8),
    /// A Java `char`: one UTF-16 code unit.
    Char(u16),
    Short(i16),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    Bytes(Bytes),
    String(String),
    Map(PrimitiveMap),
    List(Vec<Value>),
}

impl Value {
    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Long(v)
    }
}

/// A string-keyed map of typed values, in wire order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PrimitiveMap {
    pub entries: Vec<(String, Value)>,
}

impl PrimitiveMap {
    pub fn new() -> Self {
        PrimitiveMap::default()
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Sets `name`, replacing its value in place if present, else appending.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        let name = name.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name, value)),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decodes a marshalled map; a null map (count -1) is an empty one.
    pub fn decode(bytes: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, 12, false);
        let map = read_map(&mut r)?.unwrap_or_default();
        if r.remaining() != 0 {
            return Err(DecodeError::TrailingBytes {
                data_type: MAP,
                extra: r.remaining(),
            });
        }
        Ok(map)
    }

    /// The marshalled form.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::new();
        let mut w = Writer {
            out: &mut out,
            bits: None,
            version: 12,
            stack_trace: false,
        };
        write_map(&mut w, self)?;
        Ok(out.freeze())
    }
}

/// Decodes a `StreamMessage` body: values one after another to the end.
pub fn decode_stream(bytes: Bytes) -> Result<Vec<Value>, DecodeError> {
    let mut r = Reader::new(bytes, 12, false);
    let mut values = Vec::new();
    while r.remaining() > 0 {
        values.push(read_value(&mut r)?);
    }
    Ok(values)
}

/// Encodes a `StreamMessage` body.
pub fn encode_stream(values: &[Value]) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::new();
    let mut w = Writer {
        out: &mut out,
        bits: None,
        version: 12,
        stack_trace: false,
    };
    for v in values {
        write_value(&mut w, v)?;
    }
    Ok(out.freeze())
}

fn read_map(r: &mut Reader) -> Result<Option<PrimitiveMap>, DecodeError> {
    let Ok(count) = usize::try_from(r.i32("primitive map size")?) else {
        return Ok(None);
    };
    r.enter()?;
    // Each entry takes at least three bytes (key length, type byte).
    let mut entries = Vec::with_capacity(count.min(r.remaining() / 3));
    for _ in 0..count {
        let key = r.utf("primitive map key")?;
        let value = read_value(r)?;
        entries.push((key, value));
    }
    r.leave();
    Ok(Some(PrimitiveMap { entries }))
}

fn read_value(r: &mut Reader) -> Result<Value, DecodeError> {
    Ok(match r.u8("primitive type")? {
        NULL => Value::Null,
        BOOLEAN => Value::Bool(r.u8("boolean value")? != 0),
        BYTE => Value::Byte(r.i8("byte value")?),
        CHAR => Value::Char(r.u16("char value")?),
        SHORT => Value::Short(r.i16("short value")?),
        INTEGER => Value::Int(r.i32("int value")?),
        LONG => Value::Long(r.i64("long value")?),
        FLOAT => Value::Float(r.f32("float value")?),
        DOUBLE => Value::Double(r.f64("double value")?),
        BYTE_ARRAY => {
            let len = r.len_i32("byte array value")?;
            Value::Bytes(r.bytes(len, "byte array value")?)
        }
        STRING => Value::String(r.utf("string value")?),
        BIG_STRING => {
            let len = r.len_i32("big string value")?;
            Value::String(r.utf_of_len(len, "big string value")?)
        }
        MAP => match read_map(r)? {
            Some(map) => Value::Map(map),
            None => Value::Null,
        },
        LIST => {
            let count = r.len_i32("primitive list size")?;
            r.enter()?;
            let mut items = Vec::with_capacity(count.min(r.remaining()));
            for _ in 0..count {
                items.push(read_value(r)?);
            }
            r.leave();
            Value::List(items)
        }
        other => return Err(DecodeError::UnknownPrimitiveType(other)),
    })
}

fn write_map(w: &mut Writer<'_>, map: &PrimitiveMap) -> Result<(), EncodeError> {
    w.len_i32(map.entries.len(), "primitive map")?;
    for (key, value) in &map.entries {
        w.utf(key, "primitive map key")?;
        write_value(w, value)?;
    }
    Ok(())
}

fn write_value(w: &mut Writer<'_>, value: &Value) -> Result<(), EncodeError> {
    match value {
        Value::Null => w.u8(NULL),
        Value::Bool(v) => {
            w.u8(BOOLEAN);
            w.u8(u8::from(*v));
        }
        Value::Byte(v) => {
            w.u8(BYTE);
            w.i8(*v);
        }
        Value::Char(v) => {
            w.u8(CHAR);
            w.u16(*v);
        }
        Value::Short(v) => {
            w.u8(SHORT);
            w.i16(*v);
        }
        Value::Int(v) => {
            w.u8(INTEGER);
            w.i32(*v);
        }
        Value::Long(v) => {
            w.u8(LONG);
            w.i64(*v);
        }
        Value::Float(v) => {
            w.u8(FLOAT);
            w.f32(*v);
        }
        Value::Double(v) => {
            w.u8(DOUBLE);
            w.f64(*v);
        }
        Value::Bytes(v) => {
            w.u8(BYTE_ARRAY);
            w.len_i32(v.len(), "byte array value")?;
            w.raw(v);
        }
        Value::String(s) => {
            if s.encode_utf16().count() < BIG_STRING_UNITS {
                w.u8(STRING);
                w.utf(s, "string value")?;
            } else {
                w.u8(BIG_STRING);
                let encoded = mutf8::encode(s);
                w.len_i32(encoded.len(), "big string value")?;
                w.raw(&encoded);
            }
        }
        Value::Map(map) => {
            w.u8(MAP);
            write_map(w, map)?;
        }
        Value::List(items) => {
            w.u8(LIST);
            w.len_i32(items.len(), "primitive list")?;
            for item in items {
                write_value(w, item)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_string_switches_to_the_big_form_where_java_does() {
        let mut map = PrimitiveMap::new();
        map.insert("short", "x".repeat(BIG_STRING_UNITS - 1));
        map.insert("big", "y".repeat(BIG_STRING_UNITS));
        let bytes = map.encode().expect("encodes");
        // count, then "short": key, STRING and a u16 length
        assert_eq!(
            bytes[4..13],
            [0, 5, b's', b'h', b'o', b'r', b't', STRING, 0x1F]
        );
        assert_eq!(PrimitiveMap::decode(bytes).expect("decodes"), map);
    }

    #[test]
    fn nesting_is_bounded() {
        // MAP_TYPE values nested far deeper than allowed: a count of 1, a key "", type 11, ...
        let mut bytes = Vec::new();
        for _ in 0..1000 {
            bytes.extend_from_slice(&[0, 0, 0, 1, 0, 0, MAP]);
        }
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            PrimitiveMap::decode(Bytes::from(bytes)),
            Err(DecodeError::TooDeep(crate::wire::MAX_NESTING))
        );
    }

    #[test]
    fn counts_past_the_end_are_refused_without_allocating() {
        let bytes = Bytes::from_static(&[0x7F, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(
            PrimitiveMap::decode(bytes),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
