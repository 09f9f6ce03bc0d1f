//! ActiveMQ's OpenWire protocol, as spoken by the stock Java client (activemq-client 5.17/5.18,
//! port 61616): frames, commands, wire-format negotiation and message bodies. Pure encoding:
//! no I/O, no async, no broker logic.
//!
//! - [`decode`] takes whole frames off a `BytesMut` read buffer (`None` until one is complete,
//!   oversized frames refused from their size prefix); [`encode`] appends one.
//! - Versions 9 to 12, loose and tight encoding, marshal cache off. The cache is not implemented:
//!   a broker advertises it off ([`WireFormatOptions::broker_default`], which also picks loose
//!   encoding) and the client follows; [`negotiate`] computes what both sides then use.
//! - [`Command`] covers what the client sends and expects; every command is a struct with
//!   public fields in wire order. A decoded command re-encodes to the same bytes.
//! - [`Message`] keeps its body as `Bytes` sliced from the frame; [`Message::text`],
//!   [`Message::map_body`], [`Message::properties`], ... decode on demand and undo compression
//!   within a limit.
//! - No input panics or allocates beyond the frame it arrived in: every length is checked
//!   against the bytes left, nesting is bounded ([`wire::MAX_NESTING`]), and inflation is
//!   capped. The `openwire_frame` fuzz target holds the codec to that.
//!
//! - With the `store-api` feature, [`store`] converts messages to and from the store's model
//!   as ActiveMQ's KahaDB and JDBC stores hold them.
//!
//! Facts about the format come from ActiveMQ's generated marshallers (`openwire/v9` to `v12`);
//! the byte-exact tests replay vectors produced by the real client's `OpenWireFormat`
//! (`tests/java/Capture.java`).

pub mod command;
pub mod data_type;
mod error;
mod frame;
pub mod ids;
mod marshal;
pub mod message;
pub mod mutf8;
pub mod primitive;
#[cfg(feature = "store-api")]
pub mod store;
pub mod throwable;
pub mod wire;
pub mod wireformat;

pub use command::{
    AckType, BrokerInfo, Command, ConnectionControl, ConnectionError, ConnectionInfo,
    ConsumerControl, ConsumerInfo, ControlCommand, DataArrayResponse, DataResponse, DataStructure,
    DestinationInfo, ExceptionResponse, FlushCommand, IntegerResponse, KeepAliveInfo, MessageAck,
    MessageDispatch, MessagePull, ProducerAck, ProducerInfo, RemoveInfo, RemoveSubscriptionInfo,
    RemoveTarget, Response, SessionInfo, ShutdownInfo, TransactionInfo, TransactionType,
};
pub use error::{DecodeError, EncodeError, NegotiationError};
pub use frame::{decode, encode};
pub use ids::{
    BrokerId, ConnectionId, ConsumerId, Destination, DestinationKind, LocalTransactionId,
    MessageId, ProducerId, SessionId, TransactionId, XaTransactionId,
};
pub use message::{DEFAULT_MAX_INFLATED_SIZE, Message, MessageKind};
pub use primitive::{PrimitiveMap, Value};
pub use throwable::{StackTraceElement, Throwable};
pub use wireformat::{WireFormat, WireFormatInfo, WireFormatOptions, negotiate};
