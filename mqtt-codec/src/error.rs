//! Why bytes are not a valid MQTT 3.1.1 packet; each variant names the rule broken.

/// A decoding (or encoding) failure. After a decoding error the connection must be closed:
/// MQTT has no way to resynchronise on a byte stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// The announced packet is over the configured maximum (checked before it is buffered).
    #[error("packet of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The remaining-length varint runs past its fourth byte.
    #[error("remaining length longer than 4 bytes")]
    RemainingLengthTooLong,
    /// Packet type 0 or 15 (reserved).
    #[error("reserved packet type {0}")]
    ReservedPacketType(u8),
    /// The low four bits of the first byte are not what the standard fixes for this type.
    #[error("{packet} with reserved flag bits {flags:#06b}")]
    ReservedFlags { packet: &'static str, flags: u8 },
    /// A QoS field of 3.
    #[error("QoS 3 in {packet}")]
    QoS3 { packet: &'static str },
    /// CONNECT's protocol name is not `MQTT`.
    #[error("protocol name {0:?} is not \"MQTT\"")]
    ProtocolName(String),
    /// CONNECT's protocol level is not 4 (3.1.1); the server answers CONNACK 1.
    #[error("protocol level {0} is not 4 (MQTT 3.1.1)")]
    ProtocolLevel(u8),
    /// CONNECT's reserved flag bit 0 is set.
    #[error("CONNECT with the reserved flag bit set")]
    ConnectReservedFlag,
    /// Will QoS or will retain set without the will flag.
    #[error("CONNECT with will QoS or will retain but no will")]
    WillFlagsWithoutWill,
    /// A password flag without the user name flag.
    #[error("CONNECT with a password but no user name")]
    PasswordWithoutUsername,
    /// A packet id of 0 where one is required.
    #[error("packet id 0 in {packet}")]
    ZeroPacketId { packet: &'static str },
    /// A string field that is not UTF-8, or holds U+0000.
    #[error("{field} is not valid UTF-8 (or holds U+0000)")]
    BadUtf8 { field: &'static str },
    /// A PUBLISH topic (or will topic) holding `+` or `#`.
    #[error("wildcard in topic name {0:?}")]
    WildcardInTopicName(String),
    /// An empty topic name or topic filter.
    #[error("empty {field}")]
    EmptyTopic { field: &'static str },
    /// A topic filter with `#` not last or `+`/`#` not alone in its level.
    #[error("invalid topic filter {0:?}")]
    BadTopicFilter(String),
    /// SUBSCRIBE or UNSUBSCRIBE without any topic filter.
    #[error("{packet} without a topic filter")]
    NoTopicFilters { packet: &'static str },
    /// A SUBSCRIBE requested-QoS byte with its upper six bits set.
    #[error("SUBSCRIBE requested-QoS byte {0:#04x} has reserved bits set")]
    SubscribeReservedBits(u8),
    /// CONNACK's acknowledge flags or return code out of range.
    #[error("invalid CONNACK {0}")]
    BadConnAck(&'static str),
    /// A SUBACK return code other than 0, 1, 2 or 0x80.
    #[error("invalid SUBACK return code {0:#04x}")]
    BadSubAckCode(u8),
    /// The packet ends inside a field.
    #[error("{packet} ends inside its {field}")]
    Truncated {
        packet: &'static str,
        field: &'static str,
    },
    /// Bytes left over after the last field of a fixed-size packet.
    #[error("{packet} has {extra} bytes after its last field")]
    TrailingBytes { packet: &'static str, extra: usize },
    /// Encoding: a string or binary field over 65535 bytes.
    #[error("{field} of {len} bytes is over 65535")]
    FieldTooLong { field: &'static str, len: usize },
}

/// The crate's result.
pub type Result<T, E = PacketError> = std::result::Result<T, E>;
