//! The crate's errors: what was wrong with the bytes, and where.
//!
//! Decoding never panics: every way input can be wrong is a variant here, and each names the
//! field or structure it was reading so that a refused frame can be explained in a log line.

use thiserror::Error;

/// Why bytes could not be decoded into a frame, a command or a message body.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The size prefix announces a frame above the configured maximum; nothing was buffered.
    #[error("frame of {size} bytes exceeds the maximum frame size of {max} bytes")]
    FrameTooLarge {
        /// The announced size.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// The size prefix is negative or zero (a frame holds at least its type byte).
    #[error("invalid frame size {0}")]
    InvalidFrameSize(i32),
    /// The frame (or body) ended while a field was still being read.
    #[error("truncated while reading {what}: {needed} bytes needed, {remaining} left")]
    Truncated {
        /// The field or structure being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A length or count field is negative where the format allows no null.
    #[error("negative length {len} for {what}")]
    NegativeLength {
        /// The field being read.
        what: &'static str,
        /// The length read.
        len: i32,
    },
    /// The data-structure type byte is not one this codec knows.
    #[error("unknown OpenWire data structure type {0}")]
    UnknownType(u8),
    /// A nested data structure has a type that does not fit its field.
    #[error("data structure type {found} where {expected} was expected")]
    UnexpectedType {
        /// What the field holds.
        expected: &'static str,
        /// The type byte found.
        found: u8,
    },
    /// A field the codec needs to build a value was null.
    #[error("{0} is null")]
    MissingField(&'static str),
    /// A string is not valid (modified) UTF-8, or holds an unpaired surrogate.
    #[error("invalid modified UTF-8 in {0}")]
    InvalidString(&'static str),
    /// A command was decoded but bytes of its frame were left over.
    #[error("{extra} trailing bytes after data structure type {data_type}")]
    TrailingBytes {
        /// The command's type byte.
        data_type: u8,
        /// How many bytes were not consumed.
        extra: usize,
    },
    /// Data structures, throwables or primitive maps nest deeper than the codec allows.
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    /// A primitive map or stream value has an unknown type byte.
    #[error("unknown primitive type {0}")]
    UnknownPrimitiveType(u8),
    /// The negotiated wire format uses the marshal cache, which this codec does not implement.
    #[error("marshal cache not supported")]
    CacheNotSupported,
    /// A compressed body inflates past the allowed size.
    #[error("compressed body inflates past {limit} bytes")]
    InflatedTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A compressed body is not a valid zlib stream.
    #[error("corrupt compressed body: {0}")]
    Inflate(String),
}

/// Why a value could not be encoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// A string is longer than `DataOutput.writeUTF` allows (65,535 bytes of modified UTF-8).
    #[error("string of {len} encoded bytes in {what} is longer than 65535")]
    StringTooLong {
        /// The field being written.
        what: &'static str,
        /// Its encoded length.
        len: usize,
    },
    /// An array or body is longer than its length field can say.
    #[error("{what} has {len} elements, more than its length field holds")]
    TooLong {
        /// The field being written.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// The encoded frame is larger than the negotiated maximum frame size.
    #[error("frame of {size} bytes exceeds the maximum frame size of {max} bytes")]
    FrameTooLarge {
        /// The encoded size.
        size: u64,
        /// The negotiated limit.
        max: u64,
    },
    /// The wire format asks for the marshal cache, which this codec does not implement.
    #[error("marshal cache not supported")]
    CacheNotSupported,
}

/// Why a client's `WireFormatInfo` cannot be accepted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The magic is not `ActiveMQ`: the peer does not speak OpenWire.
    #[error("wire format magic is {0:?}, not \"ActiveMQ\"")]
    BadMagic(Vec<u8>),
    /// The peer's version is older than the oldest this codec speaks.
    #[error("wire format version {version} is below the minimum {minimum}")]
    VersionTooOld {
        /// The peer's version.
        version: i32,
        /// The oldest version supported.
        minimum: i32,
    },
    /// A property has the wrong type or the properties do not decode.
    #[error("wire format property {name}: {reason}")]
    BadProperty {
        /// The property's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}
