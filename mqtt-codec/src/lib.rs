//! MQTT 3.1.1 control packets (OASIS standard, 2014) and their wire format, with limits for
//! hostile input. Pure encoding, no I/O: the broker's MQTT door (`broker::mqtt`) drives it over
//! a socket, and the fuzz target `mqtt_packet` builds it without the broker.
//!
//! ```text
//! fixed header:  type (4 bits) | flags (4 bits), remaining length (1-4 bytes, 7 bits each,
//!                low group first, high bit = "more")
//! variable header and payload: remaining length bytes, per packet type
//! ```
//! Strings are a big-endian u16 length and UTF-8 bytes (no U+0000); binary fields (password,
//! will payload) a u16 length and bytes; a PUBLISH payload is whatever is left.
//!
//! Guarantees of [`decode`]: it never panics, it rejects a packet whose announced size is over
//! the caller's limit as soon as the fixed header is in (before buffering its body), and every
//! rule of the standard a server must enforce on what it reads (reserved flag bits, protocol
//! name and level, packet id 0, QoS 3, UTF-8, wildcards in a topic name, malformed filters,
//! empty SUBSCRIBE/UNSUBSCRIBE) is a typed [`PacketError`] naming the problem.
//! [`Packet::encode`] writes what [`decode`] reads back equal.

mod decode;
mod encode;
mod error;
mod packet;
pub mod topic;

pub use decode::{decode, decode_remaining_length};
pub use error::{PacketError, Result};
pub use packet::{
    ConnAck, Connect, ConnectReturnCode, Packet, Publish, QoS, SubAck, SubAckCode, Subscribe,
    Unsubscribe, Will,
};

/// The largest remaining length four varint bytes can carry (256 MiB - 1).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// The protocol level of MQTT 3.1.1 in CONNECT.
pub const PROTOCOL_LEVEL: u8 = 4;
