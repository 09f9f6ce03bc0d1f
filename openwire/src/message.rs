//! `ActiveMQMessage` and its five body kinds: the header fields as the wire carries them, the
//! body as opaque bytes (`content`, shared with the frame, never copied), and typed accessors
//! that decode the body and properties only when asked.
//!
//! Bodies: a text body is itself an `int`-length-prefixed modified UTF-8 string; a map body a
//! primitive map; a stream body a sequence of typed values; bytes and object bodies are raw.
//! A compressed body (`compressed`) is a zlib stream (`java.util.zip.Deflater`) of that, except
//! for bytes messages, which put the uncompressed length (a big-endian `int`) before the stream.

use std::io::Read;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::read::ZlibDecoder;

use crate::command::DataStructure;
use crate::data_type as t;
use crate::error::{DecodeError, EncodeError};
use crate::ids::{BrokerId, ConsumerId, Destination, MessageId, ProducerId, TransactionId};
use crate::marshal::{Marshal, read_array, read_nested, write_array, write_nested};
use crate::mutf8;
use crate::primitive::{self, PrimitiveMap, Value};
use crate::wire::{Reader, Writer};

/// The JMS body kind, which is the message's OpenWire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MessageKind {
    /// A message without a body (`ActiveMQMessage`).
    #[default]
    Plain,
    Bytes,
    Map,
    /// A serialized Java object, opaque here.
    Object,
    Stream,
    Text,
}

impl MessageKind {
    pub fn data_type(self) -> u8 {
        match self {
            MessageKind::Plain => t::ACTIVEMQ_MESSAGE,
            MessageKind::Bytes => t::ACTIVEMQ_BYTES_MESSAGE,
            MessageKind::Map => t::ACTIVEMQ_MAP_MESSAGE,
            MessageKind::Object => t::ACTIVEMQ_OBJECT_MESSAGE,
            MessageKind::Stream => t::ACTIVEMQ_STREAM_MESSAGE,
            MessageKind::Text => t::ACTIVEMQ_TEXT_MESSAGE,
        }
    }

    pub fn from_data_type(data_type: u8) -> Option<Self> {
        match data_type {
            t::ACTIVEMQ_MESSAGE => Some(MessageKind::Plain),
            t::ACTIVEMQ_BYTES_MESSAGE => Some(MessageKind::Bytes),
            t::ACTIVEMQ_MAP_MESSAGE => Some(MessageKind::Map),
            t::ACTIVEMQ_OBJECT_MESSAGE => Some(MessageKind::Object),
            t::ACTIVEMQ_STREAM_MESSAGE => Some(MessageKind::Stream),
            t::ACTIVEMQ_TEXT_MESSAGE => Some(MessageKind::Text),
            _ => None,
        }
    }
}

/// ActiveMQ's default for the largest body a compressed message may inflate to (100 MiB).
pub const DEFAULT_MAX_INFLATED_SIZE: usize = 100 * 1024 * 1024;

/// A message as OpenWire carries it. Field names follow ActiveMQ's, misspellings included where
/// they are part of the protocol's vocabulary (`recieved_by_df_bridge`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message {
    pub kind: MessageKind,
    pub command_id: i32,
    pub response_required: bool,
    pub producer_id: Option<ProducerId>,
    pub destination: Option<Destination>,
    pub transaction_id: Option<TransactionId>,
    pub original_destination: Option<Destination>,
    pub message_id: Option<MessageId>,
    pub original_transaction_id: Option<TransactionId>,
    pub group_id: Option<String>,
    pub group_sequence: i32,
    pub correlation_id: Option<String>,
    pub persistent: bool,
    /// Milliseconds since the epoch; 0 never expires.
    pub expiration: i64,
    /// 0-9; ActiveMQ's default is 4.
    pub priority: i8,
    pub reply_to: Option<Destination>,
    pub timestamp: i64,
    /// `JMSType`.
    pub jms_type: Option<String>,
    /// The body, compressed if `compressed`.
    pub content: Option<Bytes>,
    /// The properties as a marshalled primitive map; see [`Message::properties`].
    pub marshalled_properties: Option<Bytes>,
    /// The payload of an advisory message (a `ConsumerInfo`, `DestinationInfo`, ...).
    pub data_structure: Option<Box<DataStructure>>,
    pub target_consumer_id: Option<ConsumerId>,
    pub compressed: bool,
    pub redelivery_counter: i32,
    pub broker_path: Option<Vec<BrokerId>>,
    pub arrival: i64,
    /// `JMSXUserID`.
    pub user_id: Option<String>,
    pub recieved_by_df_bridge: bool,
    pub droppable: bool,
    pub cluster: Option<Vec<BrokerId>>,
    pub broker_in_time: i64,
    pub broker_out_time: i64,
    /// Version 10 on.
    pub jmsx_group_first_for_consumer: bool,
}

impl Message {
    /// An empty message of `kind` with ActiveMQ's default priority.
    pub fn new(kind: MessageKind) -> Self {
        Message {
            kind,
            priority: 4,
            ..Message::default()
        }
    }

    /// The body with any compression undone, inflating to at most `max_inflated` bytes; empty
    /// when there is no body.
    pub fn body(&self, max_inflated: usize) -> Result<Bytes, DecodeError> {
        let Some(content) = &self.content else {
            return Ok(Bytes::new());
        };
        if !self.compressed {
            return Ok(content.clone());
        }
        let mut stream = content.clone();
        if self.kind != MessageKind::Bytes {
            let out = inflate_up_to(&stream, max_inflated.saturating_add(1))?;
            if out.len() > max_inflated {
                return Err(DecodeError::InflatedTooLarge {
                    limit: max_inflated,
                });
            }
            return Ok(Bytes::from(out));
        }
        if stream.is_empty() {
            return Ok(Bytes::new());
        }
        if stream.len() < 4 {
            return Err(DecodeError::Truncated {
                what: "compressed bytes body length",
                needed: 4,
                remaining: stream.len(),
            });
        }
        // ActiveMQ inflates exactly the declared length and ignores anything past it (its
        // compressor deflates the whole backing array, so there often is something past it).
        let declared = stream.get_i32();
        let declared = match usize::try_from(declared) {
            Ok(len) if len <= max_inflated => len,
            _ => {
                return Err(DecodeError::InflatedTooLarge {
                    limit: max_inflated,
                });
            }
        };
        let out = inflate_up_to(&stream, declared)?;
        if out.len() != declared {
            return Err(DecodeError::Inflate(format!(
                "inflated {} bytes, the body declares {declared}",
                out.len()
            )));
        }
        Ok(Bytes::from(out))
    }

    /// A text message's text (`None` for a null text).
    pub fn text(&self, max_inflated: usize) -> Result<Option<String>, DecodeError> {
        if self.content.is_none() {
            return Ok(None);
        }
        let mut r = Reader::new(self.body(max_inflated)?, 12, false);
        let Ok(len) = usize::try_from(r.i32("text body length")?) else {
            return Ok(None);
        };
        Ok(Some(r.utf_of_len(len, "text body")?))
    }

    /// Sets a text body, uncompressed.
    pub fn set_text(&mut self, text: Option<&str>) -> Result<(), EncodeError> {
        let mut out = BytesMut::new();
        match text {
            Some(text) => {
                let encoded = mutf8::encode(text);
                let len = i32::try_from(encoded.len()).map_err(|_| EncodeError::TooLong {
                    what: "text body",
                    len: encoded.len(),
                })?;
                out.put_i32(len);
                out.put_slice(&encoded);
            }
            None => out.put_i32(-1),
        }
        self.content = Some(out.freeze());
        self.compressed = false;
        Ok(())
    }

    /// A map message's entries.
    pub fn map_body(&self, max_inflated: usize) -> Result<PrimitiveMap, DecodeError> {
        if self.content.is_none() {
            return Ok(PrimitiveMap::new());
        }
        PrimitiveMap::decode(self.body(max_inflated)?)
    }

    pub fn set_map_body(&mut self, map: &PrimitiveMap) -> Result<(), EncodeError> {
        self.content = Some(map.encode()?);
        self.compressed = false;
        Ok(())
    }

    /// A stream message's values.
    pub fn stream_body(&self, max_inflated: usize) -> Result<Vec<Value>, DecodeError> {
        primitive::decode_stream(self.body(max_inflated)?)
    }

    pub fn set_stream_body(&mut self, values: &[Value]) -> Result<(), EncodeError> {
        self.content = Some(primitive::encode_stream(values)?);
        self.compressed = false;
        Ok(())
    }

    /// The message properties (empty when there are none).
    pub fn properties(&self) -> Result<PrimitiveMap, DecodeError> {
        match &self.marshalled_properties {
            Some(bytes) => PrimitiveMap::decode(bytes.clone()),
            None => Ok(PrimitiveMap::new()),
        }
    }

    pub fn set_properties(&mut self, properties: &PrimitiveMap) -> Result<(), EncodeError> {
        self.marshalled_properties = Some(properties.encode()?);
        Ok(())
    }
}

/// Inflates at most `limit` bytes of a zlib stream: a small frame can hold a body that
/// inflates to gigabytes, so the output is capped rather than the input trusted.
fn inflate_up_to(stream: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    ZlibDecoder::new(stream)
        .take(u64::try_from(limit).unwrap_or(u64::MAX))
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Inflate(e.to_string()))?;
    Ok(out)
}

pub(crate) fn read_command_header(r: &mut Reader) -> Result<(i32, bool), DecodeError> {
    Ok((r.i32("commandId")?, r.bool("responseRequired")?))
}

impl Marshal for Message {
    const NAME: &'static str = "Message";
    fn data_type(&self) -> u8 {
        self.kind.data_type()
    }

    fn decode_body(data_type: u8, r: &mut Reader) -> Result<Self, DecodeError> {
        let kind = MessageKind::from_data_type(data_type).ok_or(DecodeError::UnexpectedType {
            expected: Self::NAME,
            found: data_type,
        })?;
        let (command_id, response_required) = read_command_header(r)?;
        Ok(Message {
            kind,
            command_id,
            response_required,
            producer_id: read_nested(r)?,
            destination: read_nested(r)?,
            transaction_id: read_nested(r)?,
            original_destination: read_nested(r)?,
            message_id: read_nested(r)?,
            original_transaction_id: read_nested(r)?,
            group_id: r.opt_string("Message.groupID")?,
            group_sequence: r.i32("Message.groupSequence")?,
            correlation_id: r.opt_string("Message.correlationId")?,
            persistent: r.bool("Message.persistent")?,
            expiration: r.long("Message.expiration")?,
            priority: r.i8("Message.priority")?,
            reply_to: read_nested(r)?,
            timestamp: r.long("Message.timestamp")?,
            jms_type: r.opt_string("Message.type")?,
            content: r.opt_byte_array("Message.content")?,
            marshalled_properties: r.opt_byte_array("Message.marshalledProperties")?,
            data_structure: read_nested(r)?.map(Box::new),
            target_consumer_id: read_nested(r)?,
            compressed: r.bool("Message.compressed")?,
            redelivery_counter: r.i32("Message.redeliveryCounter")?,
            broker_path: read_array(r, "Message.brokerPath")?,
            arrival: r.long("Message.arrival")?,
            user_id: r.opt_string("Message.userID")?,
            recieved_by_df_bridge: r.bool("Message.recievedByDFBridge")?,
            droppable: r.bool("Message.droppable")?,
            cluster: read_array(r, "Message.cluster")?,
            broker_in_time: r.long("Message.brokerInTime")?,
            broker_out_time: r.long("Message.brokerOutTime")?,
            jmsx_group_first_for_consumer: r.version >= 10
                && r.bool("Message.jmsXGroupFirstForConsumer")?,
        })
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        write_nested(w, self.producer_id.as_ref())?;
        write_nested(w, self.destination.as_ref())?;
        write_nested(w, self.transaction_id.as_ref())?;
        write_nested(w, self.original_destination.as_ref())?;
        write_nested(w, self.message_id.as_ref())?;
        write_nested(w, self.original_transaction_id.as_ref())?;
        w.opt_string(self.group_id.as_deref(), "Message.groupID")?;
        w.i32(self.group_sequence);
        w.opt_string(self.correlation_id.as_deref(), "Message.correlationId")?;
        w.bool(self.persistent);
        w.long(self.expiration);
        w.i8(self.priority);
        write_nested(w, self.reply_to.as_ref())?;
        w.long(self.timestamp);
        w.opt_string(self.jms_type.as_deref(), "Message.type")?;
        w.opt_byte_array(self.content.as_deref(), "Message.content")?;
        w.opt_byte_array(
            self.marshalled_properties.as_deref(),
            "Message.marshalledProperties",
        )?;
        write_nested(w, self.data_structure.as_deref())?;
        write_nested(w, self.target_consumer_id.as_ref())?;
        w.bool(self.compressed);
        w.i32(self.redelivery_counter);
        write_array(w, self.broker_path.as_deref(), "Message.brokerPath")?;
        w.long(self.arrival);
        w.opt_string(self.user_id.as_deref(), "Message.userID")?;
        w.bool(self.recieved_by_df_bridge);
        w.bool(self.droppable);
        write_array(w, self.cluster.as_deref(), "Message.cluster")?;
        w.long(self.broker_in_time);
        w.long(self.broker_out_time);
        if w.version >= 10 {
            w.bool(self.jmsx_group_first_for_consumer);
        }
        Ok(())
    }
}
