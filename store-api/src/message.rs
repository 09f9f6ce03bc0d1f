//! The message model every engine stores: ids, destinations, headers, typed properties and the
//! five JMS body kinds.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Result, StoreError};

/// Highest JMS priority; priorities run 0..=9, 4 is the JMS default.
pub const MAX_PRIORITY: u8 = 9;
/// The JMS default priority.
pub const DEFAULT_PRIORITY: u8 = 4;

/// A message's identity: the producer that sent it and that producer's sequence number.
/// Unique within a destination; a second add of the same id is a duplicate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId {
    pub producer: Arc<str>,
    pub producer_seq: u64,
}

impl MessageId {
    pub fn new(producer: impl Into<Arc<str>>, producer_seq: u64) -> Self {
        MessageId {
            producer: producer.into(),
            producer_seq,
        }
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.producer, self.producer_seq)
    }
}

/// Point-to-point or publish/subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DestinationKind {
    Queue,
    Topic,
}

/// A queue or topic by name. Names are arbitrary Unicode; engines store them literally.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Destination {
    pub kind: DestinationKind,
    pub name: Arc<str>,
}

impl Destination {
    pub fn queue(name: impl Into<Arc<str>>) -> Self {
        Destination {
            kind: DestinationKind::Queue,
            name: name.into(),
        }
    }

    pub fn topic(name: impl Into<Arc<str>>) -> Self {
        Destination {
            kind: DestinationKind::Topic,
            name: name.into(),
        }
    }

    pub fn is_queue(&self) -> bool {
        self.kind == DestinationKind::Queue
    }

    pub fn is_topic(&self) -> bool {
        self.kind == DestinationKind::Topic
    }

    /// `InvalidArgument` unless this is a queue: what an adapter's `queue_store` answers for a
    /// topic.
    pub fn expect_queue(&self) -> Result<()> {
        self.expect(DestinationKind::Queue, "queue")
    }

    /// `InvalidArgument` unless this is a topic: what an adapter's `topic_store` answers for a
    /// queue.
    pub fn expect_topic(&self) -> Result<()> {
        self.expect(DestinationKind::Topic, "topic")
    }

    fn expect(&self, kind: DestinationKind, what: &str) -> Result<()> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(StoreError::InvalidArgument(format!(
                "{self} is not a {what}"
            )))
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            DestinationKind::Queue => write!(f, "queue://{}", self.name),
            DestinationKind::Topic => write!(f, "topic://{}", self.name),
        }
    }
}

/// A typed value: a message property, a map-message entry or a stream-message element.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    I8(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    String(String),
    Bytes(Bytes),
}

/// The body of a message, one of the five JMS kinds. `Object` holds an already serialized object.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Body {
    /// A message with no body (a plain `javax.jms.Message`).
    #[default]
    Empty,
    Text(String),
    Bytes(Bytes),
    Map(BTreeMap<String, Value>),
    Stream(Vec<Value>),
    Object(Bytes),
}

/// A message as stored. `sequence` is assigned by the store when the add becomes visible and is
/// zero before that; every other field is the producer's and is kept exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub destination: Destination,
    /// Store-assigned, strictly increasing per store (across destinations and reopens).
    pub sequence: u64,
    /// 0..=9; higher is delivered first.
    pub priority: u8,
    /// Milliseconds since the Unix epoch when the producer sent it.
    pub timestamp: i64,
    /// Milliseconds since the Unix epoch after which it must not be delivered; 0 = never.
    pub expiration: i64,
    pub persistent: bool,
    pub redelivery_count: u32,
    pub correlation_id: Option<String>,
    pub reply_to: Option<Destination>,
    pub message_type: Option<String>,
    pub group_id: Option<String>,
    pub group_seq: i32,
    pub properties: BTreeMap<String, Value>,
    pub body: Body,
}

impl Message {
    /// A persistent message with default headers and the given body.
    pub fn new(id: MessageId, destination: Destination, body: Body) -> Self {
        Message {
            id,
            destination,
            sequence: 0,
            priority: DEFAULT_PRIORITY,
            timestamp: 0,
            expiration: 0,
            persistent: true,
            redelivery_count: 0,
            correlation_id: None,
            reply_to: None,
            message_type: None,
            group_id: None,
            group_seq: 0,
            properties: BTreeMap::new(),
            body,
        }
    }

    pub fn with_priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }

    pub fn with_expiration(mut self, expiration: i64) -> Self {
        self.expiration = expiration;
        self
    }

    pub fn with_property(mut self, name: impl Into<String>, value: Value) -> Self {
        self.properties.insert(name.into(), value);
        self
    }

    /// True when the message has an expiration and it is at or before `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expiration != 0 && self.expiration <= now_ms
    }

    /// The size the store accounts for this message: its encoded length. Every engine reports
    /// byte counts in this unit, so the numbers agree across engines.
    pub fn size(&self) -> u64 {
        crate::codec::encoded_len(self) as u64
    }

    /// Checks what the contract requires of a message handed to `add` for `destination`.
    pub fn validate_for(&self, destination: &Destination) -> Result<()> {
        if self.priority > MAX_PRIORITY {
            return Err(StoreError::InvalidArgument(format!(
                "priority {} of message {} is above {MAX_PRIORITY}",
                self.priority, self.id
            )));
        }
        if &self.destination != destination {
            return Err(StoreError::InvalidArgument(format!(
                "message {} is addressed to {} but was added to {destination}",
                self.id, self.destination
            )));
        }
        Ok(())
    }
}
