//! How a data structure is written inside another: the trait every structure implements and the
//! nested-object conventions built on it.
//!
//! A nested object is a presence boolean, its type byte, then its fields. With the marshal cache
//! off (the only mode this codec speaks) a "cached" field is written exactly like a nested one.
//! Tight encoding adds one more boolean after the type of a "marshal-aware" structure (a message
//! or a `WireFormatInfo`): whether a cached marshalled form follows, which ActiveMQ never writes.

use crate::data_type as t;
use crate::error::{DecodeError, EncodeError};
use crate::wire::{Reader, Writer};

/// A data structure with a type byte and a loose encoding.
pub(crate) trait Marshal: Sized {
    /// Its name in errors.
    const NAME: &'static str;
    /// The type byte this value is written with.
    fn data_type(&self) -> u8;
    /// Reads the fields of a structure whose type byte was `data_type`, refusing types that do
    /// not fit `Self`.
    fn decode_body(data_type: u8, r: &mut Reader) -> Result<Self, DecodeError>;
    /// Writes the fields (not the type byte).
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError>;
}

/// A nullable nested structure.
pub(crate) fn read_nested<T: Marshal>(r: &mut Reader) -> Result<Option<T>, DecodeError> {
    if !r.bool(T::NAME)? {
        return Ok(None);
    }
    let data_type = r.u8(T::NAME)?;
    if r.is_tight() && is_marshal_aware(data_type) && r.bool(T::NAME)? {
        return Err(DecodeError::UnexpectedType {
            expected: "a structure without a cached marshalled form",
            found: data_type,
        });
    }
    r.enter()?;
    let value = T::decode_body(data_type, r)?;
    r.leave();
    Ok(Some(value))
}

/// A nested structure that must be there.
pub(crate) fn read_required<T: Marshal>(
    r: &mut Reader,
    what: &'static str,
) -> Result<T, DecodeError> {
    read_nested(r)?.ok_or(DecodeError::MissingField(what))
}

pub(crate) fn write_nested<T: Marshal>(
    w: &mut Writer<'_>,
    value: Option<&T>,
) -> Result<(), EncodeError> {
    w.bool(value.is_some());
    if let Some(value) = value {
        let data_type = value.data_type();
        w.u8(data_type);
        if w.is_tight() && is_marshal_aware(data_type) {
            w.bool(false);
        }
        value.encode_body(w)?;
    }
    Ok(())
}

/// ActiveMQ's `isMarshallAware()`: true for messages and `WireFormatInfo` only.
fn is_marshal_aware(data_type: u8) -> bool {
    matches!(
        data_type,
        t::WIREFORMAT_INFO | t::ACTIVEMQ_MESSAGE..=t::ACTIVEMQ_BLOB_MESSAGE
    )
}

/// A nullable array of nested structures (a short count); null elements are refused.
pub(crate) fn read_array<T: Marshal>(
    r: &mut Reader,
    what: &'static str,
) -> Result<Option<Vec<T>>, DecodeError> {
    if !r.bool(what)? {
        return Ok(None);
    }
    let len = r.array_len(what)?;
    // Not `with_capacity(len)`: the count is untrusted; each element is at least one byte.
    let mut items = Vec::with_capacity(len.min(r.remaining()));
    for _ in 0..len {
        items.push(read_required(r, what)?);
    }
    Ok(Some(items))
}

pub(crate) fn write_array<T: Marshal>(
    w: &mut Writer<'_>,
    items: Option<&[T]>,
    what: &'static str,
) -> Result<(), EncodeError> {
    w.bool(items.is_some());
    if let Some(items) = items {
        w.array_len(items.len(), what)?;
        for item in items {
            write_nested(w, Some(item))?;
        }
    }
    Ok(())
}

/// A field that is always null from a client (e.g. a network bridge's filter): refused if set.
pub(crate) fn read_null(r: &mut Reader, what: &'static str) -> Result<(), DecodeError> {
    if r.bool(what)? {
        let found = r.u8(what)?;
        return Err(DecodeError::UnexpectedType {
            expected: "null",
            found,
        });
    }
    Ok(())
}
