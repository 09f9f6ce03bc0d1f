//! Identifiers and destinations: the small structures every command refers to.
//!
//! Their fields follow ActiveMQ's, with one Rust liberty: a string or id that every ActiveMQ
//! client always sets is a plain value here, and a null on the wire is a decode error rather
//! than an `Option` the broker would have to unwrap everywhere.

use std::fmt;

use bytes::Bytes;

use crate::data_type as t;
use crate::error::{DecodeError, EncodeError};
use crate::marshal::{Marshal, read_nested, read_required, write_nested};
use crate::wire::{Reader, Writer};

fn expect(data_type: u8, wanted: u8, name: &'static str) -> Result<(), DecodeError> {
    if data_type == wanted {
        Ok(())
    } else {
        Err(DecodeError::UnexpectedType {
            expected: name,
            found: data_type,
        })
    }
}

/// A connection, named by the client (`ID:host-port-time-n:c`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ConnectionId {
    pub value: String,
}

impl ConnectionId {
    pub fn new(value: impl Into<String>) -> Self {
        ConnectionId {
            value: value.into(),
        }
    }
}

impl Marshal for ConnectionId {
    const NAME: &'static str = "ConnectionId";
    fn data_type(&self) -> u8 {
        t::CONNECTION_ID
    }
    fn decode_body(data_type: u8, r: &mut Reader) -> Result<Self, DecodeError> {
        expect(data_type, t::CONNECTION_ID, Self::NAME)?;
        Ok(ConnectionId {
            value: r.string("ConnectionId.value")?,
        })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string(&self.value, "ConnectionId.value")
    }
}

/// A session within a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SessionId {
    pub connection_id: String,
    pub value: i64,
}

impl Marshal for SessionId {
    const NAME: &'static str = "SessionId";
    fn data_type(&self) -> u8 {
        t::SESSION_ID
    }
    fn decode_body(data_type: u8, r: &mut Reader) -> Result<Self, DecodeError> {
        expect(data_type, t::SESSION_ID, Self::NAME)?;
        Ok(SessionId {
            connection_id: r.string("SessionId.connectionId")?,
            value: r.long("SessionId.value")?,
        })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string(&self.connection_id, "SessionId.connectionId")?;
        w.long(self.value);
        Ok(())
    }
}

/// A producer within a session. On the wire its value comes before its session id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ProducerId {
    pub connection_id: String,
    pub session_id: i64,
    pub value: i64,
}

impl Marshal for ProducerId {
    const NAME: &'static str = "ProducerId";
    fn data_type(&self) -> u8 {
        t::PRODUCER_ID
    }
    fn decode_body(data_type: u8, r: &mut Reader) -> Result<Self, DecodeError> {
        expect(data_type, t::PRODUCER_ID, Self::NAME)?;
        let connection_id = r.string("ProducerId.connectionId")?;
        let value = r.long("ProducerId.value")?;
        let session_id = r.long("ProducerId.sessionId")?;
        Ok(ProducerId {
            connection_id,
            session_id,
            value,
        })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string(&self.connection_id, "ProducerId.connectionId")?;
        w.long(self.value);
        w.long(self.session_id);
        Ok(())
    }
}

/// A consumer within a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ConsumerId {
    pub connection_id: String,
    pub session_id: i64,
    pub value: i64,
}

impl Marshal for ConsumerId {
    const NAME: &'static str = "ConsumerId";
    fn data_type(&self) -> u8 {
        t::CONSUMER_ID
    }
    fn decode_body(data_type: u8, r: &mut Reader) -> Result<Self, DecodeError> {
        expect(data_type, t::CONSUMER_ID, Self::NAME)?;
        Ok(ConsumerId {
            connection_id: r.string("ConsumerId.connectionId")?,
            session_id: r.long("ConsumerId.sessionId")?,
            value: r.long("ConsumerId.value")?,
        })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string(&self.connection_id, "ConsumerId.connectionId")?;
        w.long(self.session_id);
        w.long(self.value);
        Ok(())
    }
}

/// A broker, named by itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct BrokerId {
    pub value: String,
}

impl Marshal for BrokerId {
    const NAME: &'static str = "BrokerId";
    fn data_type(&self) -> u8 {
        t::BROKER_ID
    }
    fn decode_body(data_type: u8, r: &mut Reader) -> Result<Self, DecodeError> {
        expect(data_type, t::BROKER_ID, Self::NAME)?;
        Ok(BrokerId {
            value: r.string("BrokerId.value")?,
        })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string(&self.value, "BrokerId.value")
    }
}

/// A message: its producer and the producer's sequence number, plus the broker's sequence.
///
/// `text_view` (version 10 on) carries an id that is not ActiveMQ's own (a JMS 2 or foreign id);
/// such an id may come without a producer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MessageId {
    pub text_view: Option<String>,
    pub producer_id: Option<ProducerId>,
    pub producer_sequence_id: i64,
    pub broker_sequence_id: i64,
}

impl fmt::Display for MessageId {
    /// ActiveMQ's `MessageId.toString` (the `JMSMessageID`):
    /// `<connection>:<session>:<producer>:<sequence>`, or the text view, prefixed `ID:`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.text_view, &self.producer_id) {
            (Some(text), _) if text.starts_with("ID:") => f.write_str(text),
            (Some(text), _) => write!(f, "ID:{text}"),
            (None, Some(p)) => write!(
                f,
                "{}:{}:{}:{}",
                p.connection_id, p.session_id, p.value, self.producer_sequence_id
            ),
            (None, None) => write!(f, "null:{}", self.producer_sequence_id),
        }
    }
}

impl Marshal for MessageId {
    const NAME: &'static str = "MessageId";
    fn data_type(&self) -> u8 {
        t::MESSAGE_ID
    }
    fn decode_body(data_type: u8, r: &mut Reader) -> Result<Self, DecodeError> {
        expect(data_type, t::MESSAGE_ID, Self::NAME)?;
        let text_view = if r.version >= 10 {
            r.opt_string("MessageId.textView")?
        } else {
            None
        };
        Ok(MessageId {
            text_view,
            producer_id: read_nested(r)?,
            producer_sequence_id: r.long("MessageId.producerSequenceId")?,
            broker_sequence_id: r.long("MessageId.brokerSequenceId")?,
        })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        if w.version >= 10 {
            w.opt_string(self.text_view.as_deref(), "MessageId.textView")?;
        }
        write_nested(w, self.producer_id.as_ref())?;
        w.long(self.producer_sequence_id);
        w.long(self.broker_sequence_id);
        Ok(())
    }
}

/// A local (single-connection) transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LocalTransactionId {
    pub value: i64,
    pub connection_id: ConnectionId,
}

/// An XA transaction branch: a `javax.transaction.xa.Xid`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct XaTransactionId {
    pub format_id: i32,
    pub global_transaction_id: Bytes,
    pub branch_qualifier: Bytes,
}

/// A transaction, local or XA.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransactionId {
    Local(LocalTransactionId),
    Xa(XaTransactionId),
}

impl Marshal for TransactionId {
    const NAME: &'static str = "TransactionId";
    fn data_type(&self) -> u8 {
        match self {
            TransactionId::Local(_) => t::LOCAL_TRANSACTION_ID,
            TransactionId::Xa(_) => t::XA_TRANSACTION_ID,
        }
    }
    fn decode_body(data_type: u8, r: &mut Reader) -> Result<Self, DecodeError> {
        match data_type {
            t::LOCAL_TRANSACTION_ID => Ok(TransactionId::Local(LocalTransactionId {
                value: r.long("LocalTransactionId.value")?,
                connection_id: read_required(r, "LocalTransactionId.connectionId")?,
            })),
            t::XA_TRANSACTION_ID => {
                let format_id = r.i32("XATransactionId.formatId")?;
                let global_transaction_id = r
                    .opt_byte_array("XATransactionId.globalTransactionId")?
                    .ok_or(DecodeError::MissingField(
                        "XATransactionId.globalTransactionId",
                    ))?;
                let branch_qualifier = r
                    .opt_byte_array("XATransactionId.branchQualifier")?
                    .ok_or(DecodeError::MissingField("XATransactionId.branchQualifier"))?;
                Ok(TransactionId::Xa(XaTransactionId {
                    format_id,
                    global_transaction_id,
                    branch_qualifier,
                }))
            }
            found => Err(DecodeError::UnexpectedType {
                expected: Self::NAME,
                found,
            }),
        }
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match self {
            TransactionId::Local(id) => {
                w.long(id.value);
                write_nested(w, Some(&id.connection_id))
            }
            TransactionId::Xa(id) => {
                w.i32(id.format_id);
                w.opt_byte_array(
                    Some(&id.global_transaction_id),
                    "XATransactionId.globalTransactionId",
                )?;
                w.opt_byte_array(
                    Some(&id.branch_qualifier),
                    "XATransactionId.branchQualifier",
                )
            }
        }
    }
}

/// What kind of destination, with its OpenWire type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DestinationKind {
    #[default]
    Queue,
    Topic,
    TempQueue,
    TempTopic,
}

impl DestinationKind {
    pub fn data_type(self) -> u8 {
        match self {
            DestinationKind::Queue => t::ACTIVEMQ_QUEUE,
            DestinationKind::Topic => t::ACTIVEMQ_TOPIC,
            DestinationKind::TempQueue => t::ACTIVEMQ_TEMP_QUEUE,
            DestinationKind::TempTopic => t::ACTIVEMQ_TEMP_TOPIC,
        }
    }

    pub fn from_data_type(data_type: u8) -> Option<Self> {
        match data_type {
            t::ACTIVEMQ_QUEUE => Some(DestinationKind::Queue),
            t::ACTIVEMQ_TOPIC => Some(DestinationKind::Topic),
            t::ACTIVEMQ_TEMP_QUEUE => Some(DestinationKind::TempQueue),
            t::ACTIVEMQ_TEMP_TOPIC => Some(DestinationKind::TempTopic),
            _ => None,
        }
    }

    /// Queues (temporary or not) give each message to one consumer; topics to every subscriber.
    pub fn is_queue(self) -> bool {
        matches!(self, DestinationKind::Queue | DestinationKind::TempQueue)
    }

    pub fn is_temporary(self) -> bool {
        matches!(
            self,
            DestinationKind::TempQueue | DestinationKind::TempTopic
        )
    }
}

/// An `ActiveMQDestination`. The physical name may be composite (`a,b`) or a wildcard; that is
/// the broker's to interpret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Destination {
    pub kind: DestinationKind,
    pub physical_name: String,
}

impl Destination {
    pub fn queue(name: impl Into<String>) -> Self {
        Destination {
            kind: DestinationKind::Queue,
            physical_name: name.into(),
        }
    }

    pub fn topic(name: impl Into<String>) -> Self {
        Destination {
            kind: DestinationKind::Topic,
            physical_name: name.into(),
        }
    }
}

impl Marshal for Destination {
    const NAME: &'static str = "ActiveMQDestination";
    fn data_type(&self) -> u8 {
        self.kind.data_type()
    }
    fn decode_body(data_type: u8, r: &mut Reader) -> Result<Self, DecodeError> {
        let kind =
            DestinationKind::from_data_type(data_type).ok_or(DecodeError::UnexpectedType {
                expected: Self::NAME,
                found: data_type,
            })?;
        Ok(Destination {
            kind,
            physical_name: r.string("ActiveMQDestination.physicalName")?,
        })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string(&self.physical_name, "ActiveMQDestination.physicalName")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_print_as_jms_message_ids() {
        let mut id = MessageId {
            text_view: None,
            producer_id: Some(ProducerId {
                connection_id: "ID:host-1-2:3".into(),
                session_id: 4,
                value: 5,
            }),
            producer_sequence_id: 6,
            broker_sequence_id: 0,
        };
        assert_eq!(id.to_string(), "ID:host-1-2:3:4:5:6");
        id.text_view = Some("foreign".into());
        assert_eq!(id.to_string(), "ID:foreign");
    }
}
