//! The commands a client and a broker exchange, one struct each with public fields in wire
//! order, and the `Command` and `DataStructure` enums over them.
//!
//! Every command but `WireFormatInfo` starts with `command_id` and `response_required`: a
//! command with `response_required` set is answered by a `Response` (or `ExceptionResponse`,
//! ...) whose `correlation_id` is that `command_id`. Fields a version added are read and written
//! only from that version on (noted on the field).

use bytes::Bytes;

use crate::data_type as t;
use crate::error::{DecodeError, EncodeError};
use crate::ids::{
    BrokerId, ConnectionId, ConsumerId, Destination, MessageId, ProducerId, SessionId,
    TransactionId,
};
use crate::marshal::{
    Marshal, read_array, read_nested, read_null, read_required, write_array, write_nested,
};
use crate::message::{Message, read_command_header};
use crate::throwable::Throwable;
use crate::wire::{Reader, Writer};
use crate::wireformat::WireFormatInfo;

/// Implements `Marshal` for a command struct with inherent `read_fields`/`write_fields`.
macro_rules! command_struct {
    ($ty:ident, $data_type:expr) => {
        impl Marshal for $ty {
            const NAME: &'static str = stringify!($ty);
            fn data_type(&self) -> u8 {
                $data_type
            }
            fn decode_body(data_type: u8, r: &mut Reader) -> Result<Self, DecodeError> {
                if data_type != $data_type {
                    return Err(DecodeError::UnexpectedType {
                        expected: Self::NAME,
                        found: data_type,
                    });
                }
                Self::read_fields(r)
            }
            fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
                self.write_fields(w)
            }
        }
    };
}

/// Defines a command that is only its header.
macro_rules! header_only {
    ($(#[$doc:meta])* $ty:ident, $data_type:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $ty {
            pub command_id: i32,
            pub response_required: bool,
        }

        impl $ty {
            fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
                let (command_id, response_required) = read_command_header(r)?;
                Ok($ty { command_id, response_required })
            }
            fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
                w.i32(self.command_id);
                w.bool(self.response_required);
                Ok(())
            }
        }

        command_struct!($ty, $data_type);
    };
}

header_only!(
    /// A heartbeat; the inactivity monitor answers one with `response_required` by another.
    KeepAliveInfo,
    t::KEEP_ALIVE_INFO
);
header_only!(
    /// The client is closing the connection on purpose.
    ShutdownInfo,
    t::SHUTDOWN_INFO
);
header_only!(
    /// Asks the transport to flush; no broker action.
    FlushCommand,
    t::FLUSH_COMMAND
);

/// The broker introduces itself after the wire format is agreed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BrokerInfo {
    pub command_id: i32,
    pub response_required: bool,
    pub broker_id: Option<BrokerId>,
    pub broker_url: Option<String>,
    pub peer_broker_infos: Option<Vec<BrokerInfo>>,
    pub broker_name: Option<String>,
    pub slave_broker: bool,
    pub master_broker: bool,
    pub fault_tolerant_configuration: bool,
    pub duplex_connection: bool,
    pub network_connection: bool,
    pub connection_id: i64,
    pub broker_upload_url: Option<String>,
    pub network_properties: Option<String>,
}

impl BrokerInfo {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        Ok(BrokerInfo {
            command_id,
            response_required,
            broker_id: read_nested(r)?,
            broker_url: r.opt_string("BrokerInfo.brokerURL")?,
            peer_broker_infos: read_array(r, "BrokerInfo.peerBrokerInfos")?,
            broker_name: r.opt_string("BrokerInfo.brokerName")?,
            slave_broker: r.bool("BrokerInfo.slaveBroker")?,
            master_broker: r.bool("BrokerInfo.masterBroker")?,
            fault_tolerant_configuration: r.bool("BrokerInfo.faultTolerantConfiguration")?,
            duplex_connection: r.bool("BrokerInfo.duplexConnection")?,
            network_connection: r.bool("BrokerInfo.networkConnection")?,
            connection_id: r.long("BrokerInfo.connectionId")?,
            broker_upload_url: r.opt_string("BrokerInfo.brokerUploadUrl")?,
            network_properties: r.opt_string("BrokerInfo.networkProperties")?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        write_nested(w, self.broker_id.as_ref())?;
        w.opt_string(self.broker_url.as_deref(), "BrokerInfo.brokerURL")?;
        write_array(
            w,
            self.peer_broker_infos.as_deref(),
            "BrokerInfo.peerBrokerInfos",
        )?;
        w.opt_string(self.broker_name.as_deref(), "BrokerInfo.brokerName")?;
        w.bool(self.slave_broker);
        w.bool(self.master_broker);
        w.bool(self.fault_tolerant_configuration);
        w.bool(self.duplex_connection);
        w.bool(self.network_connection);
        w.long(self.connection_id);
        w.opt_string(
            self.broker_upload_url.as_deref(),
            "BrokerInfo.brokerUploadUrl",
        )?;
        w.opt_string(
            self.network_properties.as_deref(),
            "BrokerInfo.networkProperties",
        )
    }
}
command_struct!(BrokerInfo, t::BROKER_INFO);

/// Opens a connection: the client's id and credentials.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionInfo {
    pub command_id: i32,
    pub response_required: bool,
    pub connection_id: ConnectionId,
    pub client_id: Option<String>,
    pub password: Option<String>,
    pub user_name: Option<String>,
    pub broker_path: Option<Vec<BrokerId>>,
    pub broker_master_connector: bool,
    pub manageable: bool,
    pub client_master: bool,
    pub fault_tolerant: bool,
    pub failover_reconnect: bool,
    pub client_ip: Option<String>,
}

impl ConnectionInfo {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        Ok(ConnectionInfo {
            command_id,
            response_required,
            connection_id: read_required(r, "ConnectionInfo.connectionId")?,
            client_id: r.opt_string("ConnectionInfo.clientId")?,
            password: r.opt_string("ConnectionInfo.password")?,
            user_name: r.opt_string("ConnectionInfo.userName")?,
            broker_path: read_array(r, "ConnectionInfo.brokerPath")?,
            broker_master_connector: r.bool("ConnectionInfo.brokerMasterConnector")?,
            manageable: r.bool("ConnectionInfo.manageable")?,
            client_master: r.bool("ConnectionInfo.clientMaster")?,
            fault_tolerant: r.bool("ConnectionInfo.faultTolerant")?,
            failover_reconnect: r.bool("ConnectionInfo.failoverReconnect")?,
            client_ip: r.opt_string("ConnectionInfo.clientIp")?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        write_nested(w, Some(&self.connection_id))?;
        w.opt_string(self.client_id.as_deref(), "ConnectionInfo.clientId")?;
        w.opt_string(self.password.as_deref(), "ConnectionInfo.password")?;
        w.opt_string(self.user_name.as_deref(), "ConnectionInfo.userName")?;
        write_array(w, self.broker_path.as_deref(), "ConnectionInfo.brokerPath")?;
        w.bool(self.broker_master_connector);
        w.bool(self.manageable);
        w.bool(self.client_master);
        w.bool(self.fault_tolerant);
        w.bool(self.failover_reconnect);
        w.opt_string(self.client_ip.as_deref(), "ConnectionInfo.clientIp")
    }
}
command_struct!(ConnectionInfo, t::CONNECTION_INFO);

/// Opens a session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionInfo {
    pub command_id: i32,
    pub response_required: bool,
    pub session_id: SessionId,
}

impl SessionInfo {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        Ok(SessionInfo {
            command_id,
            response_required,
            session_id: read_required(r, "SessionInfo.sessionId")?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        write_nested(w, Some(&self.session_id))
    }
}
command_struct!(SessionInfo, t::SESSION_INFO);

/// Opens a consumer (a subscription, durable when `subscription_name` is set).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerInfo {
    pub command_id: i32,
    pub response_required: bool,
    pub consumer_id: ConsumerId,
    pub browser: bool,
    pub destination: Option<Destination>,
    pub prefetch_size: i32,
    pub maximum_pending_message_limit: i32,
    pub dispatch_async: bool,
    pub selector: Option<String>,
    /// Version 10 on.
    pub client_id: Option<String>,
    pub subscription_name: Option<String>,
    pub no_local: bool,
    pub exclusive: bool,
    pub retroactive: bool,
    pub priority: i8,
    pub broker_path: Option<Vec<BrokerId>>,
    pub network_subscription: bool,
    pub optimized_acknowledge: bool,
    pub no_range_acks: bool,
    pub network_consumer_path: Option<Vec<ConsumerId>>,
}

impl ConsumerInfo {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        let consumer_id = read_required(r, "ConsumerInfo.consumerId")?;
        let browser = r.bool("ConsumerInfo.browser")?;
        let destination = read_nested(r)?;
        let prefetch_size = r.i32("ConsumerInfo.prefetchSize")?;
        let maximum_pending_message_limit = r.i32("ConsumerInfo.maximumPendingMessageLimit")?;
        let dispatch_async = r.bool("ConsumerInfo.dispatchAsync")?;
        let selector = r.opt_string("ConsumerInfo.selector")?;
        let client_id = if r.version >= 10 {
            r.opt_string("ConsumerInfo.clientId")?
        } else {
            None
        };
        let subscription_name = r.opt_string("ConsumerInfo.subscriptionName")?;
        let no_local = r.bool("ConsumerInfo.noLocal")?;
        let exclusive = r.bool("ConsumerInfo.exclusive")?;
        let retroactive = r.bool("ConsumerInfo.retroactive")?;
        let priority = r.i8("ConsumerInfo.priority")?;
        let broker_path = read_array(r, "ConsumerInfo.brokerPath")?;
        // A network bridge's filter; clients never set it.
        read_null(r, "ConsumerInfo.additionalPredicate")?;
        Ok(ConsumerInfo {
            command_id,
            response_required,
            consumer_id,
            browser,
            destination,
            prefetch_size,
            maximum_pending_message_limit,
            dispatch_async,
            selector,
            client_id,
            subscription_name,
            no_local,
            exclusive,
            retroactive,
            priority,
            broker_path,
            network_subscription: r.bool("ConsumerInfo.networkSubscription")?,
            optimized_acknowledge: r.bool("ConsumerInfo.optimizedAcknowledge")?,
            no_range_acks: r.bool("ConsumerInfo.noRangeAcks")?,
            network_consumer_path: read_array(r, "ConsumerInfo.networkConsumerPath")?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        write_nested(w, Some(&self.consumer_id))?;
        w.bool(self.browser);
        write_nested(w, self.destination.as_ref())?;
        w.i32(self.prefetch_size);
        w.i32(self.maximum_pending_message_limit);
        w.bool(self.dispatch_async);
        w.opt_string(self.selector.as_deref(), "ConsumerInfo.selector")?;
        if w.version >= 10 {
            w.opt_string(self.client_id.as_deref(), "ConsumerInfo.clientId")?;
        }
        w.opt_string(
            self.subscription_name.as_deref(),
            "ConsumerInfo.subscriptionName",
        )?;
        w.bool(self.no_local);
        w.bool(self.exclusive);
        w.bool(self.retroactive);
        w.i8(self.priority);
        write_array(w, self.broker_path.as_deref(), "ConsumerInfo.brokerPath")?;
        w.bool(false); // additionalPredicate
        w.bool(self.network_subscription);
        w.bool(self.optimized_acknowledge);
        w.bool(self.no_range_acks);
        write_array(
            w,
            self.network_consumer_path.as_deref(),
            "ConsumerInfo.networkConsumerPath",
        )
    }
}
command_struct!(ConsumerInfo, t::CONSUMER_INFO);

/// Opens a producer; `destination` is `None` for an anonymous producer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerInfo {
    pub command_id: i32,
    pub response_required: bool,
    pub producer_id: ProducerId,
    pub destination: Option<Destination>,
    pub broker_path: Option<Vec<BrokerId>>,
    pub dispatch_async: bool,
    /// Producer flow control: bytes the producer may send before waiting for a `ProducerAck`.
    pub window_size: i32,
}

impl ProducerInfo {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        Ok(ProducerInfo {
            command_id,
            response_required,
            producer_id: read_required(r, "ProducerInfo.producerId")?,
            destination: read_nested(r)?,
            broker_path: read_array(r, "ProducerInfo.brokerPath")?,
            dispatch_async: r.bool("ProducerInfo.dispatchAsync")?,
            window_size: r.i32("ProducerInfo.windowSize")?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        write_nested(w, Some(&self.producer_id))?;
        write_nested(w, self.destination.as_ref())?;
        write_array(w, self.broker_path.as_deref(), "ProducerInfo.brokerPath")?;
        w.bool(self.dispatch_async);
        w.i32(self.window_size);
        Ok(())
    }
}
command_struct!(ProducerInfo, t::PRODUCER_INFO);

/// What a `TransactionInfo` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TransactionType {
    #[default]
    Begin,
    Prepare,
    CommitOnePhase,
    CommitTwoPhase,
    Rollback,
    /// List prepared XA transactions (answered by a `DataArrayResponse`).
    Recover,
    Forget,
    End,
    /// A code this codec does not know, kept so it re-encodes unchanged.
    Other(i8),
}

impl TransactionType {
    pub fn from_code(code: i8) -> Self {
        match code {
            0 => TransactionType::Begin,
            1 => TransactionType::Prepare,
            2 => TransactionType::CommitOnePhase,
            3 => TransactionType::CommitTwoPhase,
            4 => TransactionType::Rollback,
            5 => TransactionType::Recover,
            6 => TransactionType::Forget,
            7 => TransactionType::End,
            other => TransactionType::Other(other),
        }
    }

    pub fn code(self) -> i8 {
        match self {
            TransactionType::Begin => 0,
            TransactionType::Prepare => 1,
            TransactionType::CommitOnePhase => 2,
            TransactionType::CommitTwoPhase => 3,
            TransactionType::Rollback => 4,
            TransactionType::Recover => 5,
            TransactionType::Forget => 6,
            TransactionType::End => 7,
            TransactionType::Other(code) => code,
        }
    }
}

/// Begins, ends, prepares, commits, rolls back, forgets or recovers a transaction.
/// `transaction_id` is `None` for a recover.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransactionInfo {
    pub command_id: i32,
    pub response_required: bool,
    pub connection_id: ConnectionId,
    pub transaction_id: Option<TransactionId>,
    pub transaction_type: TransactionType,
}

impl TransactionInfo {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        Ok(TransactionInfo {
            command_id,
            response_required,
            connection_id: read_required(r, "TransactionInfo.connectionId")?,
            transaction_id: read_nested(r)?,
            transaction_type: TransactionType::from_code(r.i8("TransactionInfo.type")?),
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        write_nested(w, Some(&self.connection_id))?;
        write_nested(w, self.transaction_id.as_ref())?;
        w.i8(self.transaction_type.code());
        Ok(())
    }
}
command_struct!(TransactionInfo, t::TRANSACTION_INFO);

/// Adds or removes a destination (the client creates and deletes temporary destinations so).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DestinationInfo {
    pub command_id: i32,
    pub response_required: bool,
    pub connection_id: ConnectionId,
    pub destination: Destination,
    /// [`DestinationInfo::ADD`] or [`DestinationInfo::REMOVE`].
    pub operation_type: i8,
    pub timeout: i64,
    pub broker_path: Option<Vec<BrokerId>>,
}

impl DestinationInfo {
    pub const ADD: i8 = 0;
    pub const REMOVE: i8 = 1;

    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        Ok(DestinationInfo {
            command_id,
            response_required,
            connection_id: read_required(r, "DestinationInfo.connectionId")?,
            destination: read_required(r, "DestinationInfo.destination")?,
            operation_type: r.i8("DestinationInfo.operationType")?,
            timeout: r.long("DestinationInfo.timeout")?,
            broker_path: read_array(r, "DestinationInfo.brokerPath")?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        write_nested(w, Some(&self.connection_id))?;
        write_nested(w, Some(&self.destination))?;
        w.i8(self.operation_type);
        w.long(self.timeout);
        write_array(w, self.broker_path.as_deref(), "DestinationInfo.brokerPath")
    }
}
command_struct!(DestinationInfo, t::DESTINATION_INFO);

/// Deletes a durable subscription.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemoveSubscriptionInfo {
    pub command_id: i32,
    pub response_required: bool,
    pub connection_id: ConnectionId,
    /// ActiveMQ spells it `subcriptionName`.
    pub subscription_name: Option<String>,
    pub client_id: Option<String>,
}

impl RemoveSubscriptionInfo {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        Ok(RemoveSubscriptionInfo {
            command_id,
            response_required,
            connection_id: read_required(r, "RemoveSubscriptionInfo.connectionId")?,
            subscription_name: r.opt_string("RemoveSubscriptionInfo.subcriptionName")?,
            client_id: r.opt_string("RemoveSubscriptionInfo.clientId")?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        write_nested(w, Some(&self.connection_id))?;
        w.opt_string(
            self.subscription_name.as_deref(),
            "RemoveSubscriptionInfo.subcriptionName",
        )?;
        w.opt_string(self.client_id.as_deref(), "RemoveSubscriptionInfo.clientId")
    }
}
command_struct!(RemoveSubscriptionInfo, t::REMOVE_SUBSCRIPTION_INFO);

/// What a `RemoveInfo` closes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RemoveTarget {
    Connection(ConnectionId),
    Session(SessionId),
    Consumer(ConsumerId),
    Producer(ProducerId),
}

impl Default for RemoveTarget {
    fn default() -> Self {
        RemoveTarget::Connection(ConnectionId::default())
    }
}

impl Marshal for RemoveTarget {
    const NAME: &'static str = "RemoveInfo.objectId";
    fn data_type(&self) -> u8 {
        match self {
            RemoveTarget::Connection(id) => id.data_type(),
            RemoveTarget::Session(id) => id.data_type(),
            RemoveTarget::Consumer(id) => id.data_type(),
            RemoveTarget::Producer(id) => id.data_type(),
        }
    }
    fn decode_body(data_type: u8, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match data_type {
            t::CONNECTION_ID => RemoveTarget::Connection(ConnectionId::decode_body(data_type, r)?),
            t::SESSION_ID => RemoveTarget::Session(SessionId::decode_body(data_type, r)?),
            t::CONSUMER_ID => RemoveTarget::Consumer(ConsumerId::decode_body(data_type, r)?),
            t::PRODUCER_ID => RemoveTarget::Producer(ProducerId::decode_body(data_type, r)?),
            found => {
                return Err(DecodeError::UnexpectedType {
                    expected: Self::NAME,
                    found,
                });
            }
        })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match self {
            RemoveTarget::Connection(id) => id.encode_body(w),
            RemoveTarget::Session(id) => id.encode_body(w),
            RemoveTarget::Consumer(id) => id.encode_body(w),
            RemoveTarget::Producer(id) => id.encode_body(w),
        }
    }
}

/// Closes a connection, session, consumer or producer. For a consumer,
/// `last_delivered_sequence_id` is the broker sequence of the last message it delivered, so
/// that the broker redelivers only what the consumer never saw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemoveInfo {
    pub command_id: i32,
    pub response_required: bool,
    pub object_id: RemoveTarget,
    pub last_delivered_sequence_id: i64,
}

impl RemoveInfo {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        Ok(RemoveInfo {
            command_id,
            response_required,
            object_id: read_required(r, "RemoveInfo.objectId")?,
            last_delivered_sequence_id: r.long("RemoveInfo.lastDeliveredSequenceId")?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        write_nested(w, Some(&self.object_id))?;
        w.long(self.last_delivered_sequence_id);
        Ok(())
    }
}
command_struct!(RemoveInfo, t::REMOVE_INFO);

/// A named control command (e.g. the broker asking a client to shut down).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlCommand {
    pub command_id: i32,
    pub response_required: bool,
    pub command: Option<String>,
}

impl ControlCommand {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        Ok(ControlCommand {
            command_id,
            response_required,
            command: r.opt_string("ControlCommand.command")?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        w.opt_string(self.command.as_deref(), "ControlCommand.command")
    }
}
command_struct!(ControlCommand, t::CONTROL_COMMAND);

/// The broker reports an error on a connection that no command is waiting for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionError {
    pub command_id: i32,
    pub response_required: bool,
    pub exception: Option<Throwable>,
    pub connection_id: Option<ConnectionId>,
}

impl ConnectionError {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        Ok(ConnectionError {
            command_id,
            response_required,
            exception: Throwable::read(r)?,
            connection_id: read_nested(r)?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        Throwable::write(w, self.exception.as_ref())?;
        write_nested(w, self.connection_id.as_ref())
    }
}
command_struct!(ConnectionError, t::CONNECTION_ERROR);

/// The broker steers a consumer: a new prefetch, close, start, stop, flush.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerControl {
    pub command_id: i32,
    pub response_required: bool,
    pub destination: Option<Destination>,
    pub close: bool,
    pub consumer_id: Option<ConsumerId>,
    pub prefetch: i32,
    pub flush: bool,
    pub start: bool,
    pub stop: bool,
}

impl ConsumerControl {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        Ok(ConsumerControl {
            command_id,
            response_required,
            destination: read_nested(r)?,
            close: r.bool("ConsumerControl.close")?,
            consumer_id: read_nested(r)?,
            prefetch: r.i32("ConsumerControl.prefetch")?,
            flush: r.bool("ConsumerControl.flush")?,
            start: r.bool("ConsumerControl.start")?,
            stop: r.bool("ConsumerControl.stop")?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        write_nested(w, self.destination.as_ref())?;
        w.bool(self.close);
        write_nested(w, self.consumer_id.as_ref())?;
        w.i32(self.prefetch);
        w.bool(self.flush);
        w.bool(self.start);
        w.bool(self.stop);
        Ok(())
    }
}
command_struct!(ConsumerControl, t::CONSUMER_CONTROL);

/// The broker steers a connection: close, suspend, resume, or reconnect elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionControl {
    pub command_id: i32,
    pub response_required: bool,
    pub close: bool,
    pub exit: bool,
    pub fault_tolerant: bool,
    pub resume: bool,
    pub suspend: bool,
    pub connected_brokers: Option<String>,
    pub reconnect_to: Option<String>,
    pub rebalance_connection: bool,
    pub token: Option<Bytes>,
}

impl ConnectionControl {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        Ok(ConnectionControl {
            command_id,
            response_required,
            close: r.bool("ConnectionControl.close")?,
            exit: r.bool("ConnectionControl.exit")?,
            fault_tolerant: r.bool("ConnectionControl.faultTolerant")?,
            resume: r.bool("ConnectionControl.resume")?,
            suspend: r.bool("ConnectionControl.suspend")?,
            connected_brokers: r.opt_string("ConnectionControl.connectedBrokers")?,
            reconnect_to: r.opt_string("ConnectionControl.reconnectTo")?,
            rebalance_connection: r.bool("ConnectionControl.rebalanceConnection")?,
            token: r.opt_byte_array("ConnectionControl.token")?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        w.bool(self.close);
        w.bool(self.exit);
        w.bool(self.fault_tolerant);
        w.bool(self.resume);
        w.bool(self.suspend);
        w.opt_string(
            self.connected_brokers.as_deref(),
            "ConnectionControl.connectedBrokers",
        )?;
        w.opt_string(
            self.reconnect_to.as_deref(),
            "ConnectionControl.reconnectTo",
        )?;
        w.bool(self.rebalance_connection);
        w.opt_byte_array(self.token.as_deref(), "ConnectionControl.token")
    }
}
command_struct!(ConnectionControl, t::CONNECTION_CONTROL);

/// Producer flow control: the broker releases `size` bytes of the producer's window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerAck {
    pub command_id: i32,
    pub response_required: bool,
    pub producer_id: ProducerId,
    pub size: i32,
}

impl ProducerAck {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        Ok(ProducerAck {
            command_id,
            response_required,
            producer_id: read_required(r, "ProducerAck.producerId")?,
            size: r.i32("ProducerAck.size")?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        write_nested(w, Some(&self.producer_id))?;
        w.i32(self.size);
        Ok(())
    }
}
command_struct!(ProducerAck, t::PRODUCER_ACK);

/// A consumer with prefetch 0 asks for one message, waiting up to `timeout` ms (0: wait, -1:
/// don't).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessagePull {
    pub command_id: i32,
    pub response_required: bool,
    pub consumer_id: ConsumerId,
    pub destination: Option<Destination>,
    pub timeout: i64,
    pub correlation_id: Option<String>,
    pub message_id: Option<MessageId>,
}

impl MessagePull {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        Ok(MessagePull {
            command_id,
            response_required,
            consumer_id: read_required(r, "MessagePull.consumerId")?,
            destination: read_nested(r)?,
            timeout: r.long("MessagePull.timeout")?,
            correlation_id: r.opt_string("MessagePull.correlationId")?,
            message_id: read_nested(r)?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        write_nested(w, Some(&self.consumer_id))?;
        write_nested(w, self.destination.as_ref())?;
        w.long(self.timeout);
        w.opt_string(self.correlation_id.as_deref(), "MessagePull.correlationId")?;
        write_nested(w, self.message_id.as_ref())
    }
}
command_struct!(MessagePull, t::MESSAGE_PULL);

/// The broker delivers a message to a consumer. A dispatch without a message ends a browse or
/// answers a pull that timed out.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MessageDispatch {
    pub command_id: i32,
    pub response_required: bool,
    pub consumer_id: ConsumerId,
    pub destination: Option<Destination>,
    pub message: Option<Box<Message>>,
    pub redelivery_counter: i32,
}

impl MessageDispatch {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        Ok(MessageDispatch {
            command_id,
            response_required,
            consumer_id: read_required(r, "MessageDispatch.consumerId")?,
            destination: read_nested(r)?,
            message: read_nested(r)?.map(Box::new),
            redelivery_counter: r.i32("MessageDispatch.redeliveryCounter")?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        write_nested(w, Some(&self.consumer_id))?;
        write_nested(w, self.destination.as_ref())?;
        write_nested(w, self.message.as_deref())?;
        w.i32(self.redelivery_counter);
        Ok(())
    }
}
command_struct!(MessageDispatch, t::MESSAGE_DISPATCH);

/// The kind of a `MessageAck`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AckType {
    /// Delivered to the application but not yet consumed (extends the prefetch window).
    Delivered,
    /// Failed too often: send to the dead-letter queue (`poison_cause` says why).
    Poison,
    /// Consumed: every message from `first_message_id` to `last_message_id`.
    #[default]
    Standard,
    /// Redelivered to the consumer.
    Redelivered,
    /// Consumed: exactly `last_message_id` (`INDIVIDUAL_ACKNOWLEDGE`).
    Individual,
    /// Did not match the durable subscriber's selector.
    Unmatched,
    /// Expired before it was consumed.
    Expired,
    /// A code this codec does not know, kept so it re-encodes unchanged.
    Other(i8),
}

impl AckType {
    pub fn from_code(code: i8) -> Self {
        match code {
            0 => AckType::Delivered,
            1 => AckType::Poison,
            2 => AckType::Standard,
            3 => AckType::Redelivered,
            4 => AckType::Individual,
            5 => AckType::Unmatched,
            6 => AckType::Expired,
            other => AckType::Other(other),
        }
    }

    pub fn code(self) -> i8 {
        match self {
            AckType::Delivered => 0,
            AckType::Poison => 1,
            AckType::Standard => 2,
            AckType::Redelivered => 3,
            AckType::Individual => 4,
            AckType::Unmatched => 5,
            AckType::Expired => 6,
            AckType::Other(code) => code,
        }
    }
}

/// A consumer acknowledges `message_count` messages, `first_message_id` to `last_message_id`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageAck {
    pub command_id: i32,
    pub response_required: bool,
    pub destination: Option<Destination>,
    pub transaction_id: Option<TransactionId>,
    pub consumer_id: ConsumerId,
    pub ack_type: AckType,
    pub first_message_id: Option<MessageId>,
    pub last_message_id: Option<MessageId>,
    pub message_count: i32,
    pub poison_cause: Option<Throwable>,
}

impl MessageAck {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required) = read_command_header(r)?;
        Ok(MessageAck {
            command_id,
            response_required,
            destination: read_nested(r)?,
            transaction_id: read_nested(r)?,
            consumer_id: read_required(r, "MessageAck.consumerId")?,
            ack_type: AckType::from_code(r.i8("MessageAck.ackType")?),
            first_message_id: read_nested(r)?,
            last_message_id: read_nested(r)?,
            message_count: r.i32("MessageAck.messageCount")?,
            poison_cause: Throwable::read(r)?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.i32(self.command_id);
        w.bool(self.response_required);
        write_nested(w, self.destination.as_ref())?;
        write_nested(w, self.transaction_id.as_ref())?;
        write_nested(w, Some(&self.consumer_id))?;
        w.i8(self.ack_type.code());
        write_nested(w, self.first_message_id.as_ref())?;
        write_nested(w, self.last_message_id.as_ref())?;
        w.i32(self.message_count);
        Throwable::write(w, self.poison_cause.as_ref())
    }
}
command_struct!(MessageAck, t::MESSAGE_ACK);

/// The answer to a command that asked for one; `correlation_id` is that command's id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub command_id: i32,
    pub response_required: bool,
    pub correlation_id: i32,
}

/// A failed command's answer: the client throws `exception`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExceptionResponse {
    pub command_id: i32,
    pub response_required: bool,
    pub correlation_id: i32,
    pub exception: Option<Throwable>,
}

/// An answer carrying one data structure.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataResponse {
    pub command_id: i32,
    pub response_required: bool,
    pub correlation_id: i32,
    pub data: Option<Box<DataStructure>>,
}

/// An answer carrying several (an XA recover answers with the prepared `XATransactionId`s).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataArrayResponse {
    pub command_id: i32,
    pub response_required: bool,
    pub correlation_id: i32,
    pub data: Option<Vec<DataStructure>>,
}

/// An answer carrying an `int` (an XA prepare answers with its vote, `XAResource.XA_OK` = 0 or
/// `XA_RDONLY` = 3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IntegerResponse {
    pub command_id: i32,
    pub response_required: bool,
    pub correlation_id: i32,
    pub result: i32,
}

/// Reads the header every response starts with: command id, response required, correlation id.
fn read_response_header(r: &mut Reader) -> Result<(i32, bool, i32), DecodeError> {
    let (command_id, response_required) = read_command_header(r)?;
    Ok((
        command_id,
        response_required,
        r.i32("Response.correlationId")?,
    ))
}

fn write_response_header(w: &mut Writer<'_>, command_id: i32, required: bool, correlation: i32) {
    w.i32(command_id);
    w.bool(required);
    w.i32(correlation);
}

impl Response {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required, correlation_id) = read_response_header(r)?;
        Ok(Response {
            command_id,
            response_required,
            correlation_id,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        write_response_header(
            w,
            self.command_id,
            self.response_required,
            self.correlation_id,
        );
        Ok(())
    }
}
command_struct!(Response, t::RESPONSE);

impl ExceptionResponse {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required, correlation_id) = read_response_header(r)?;
        Ok(ExceptionResponse {
            command_id,
            response_required,
            correlation_id,
            exception: Throwable::read(r)?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        write_response_header(
            w,
            self.command_id,
            self.response_required,
            self.correlation_id,
        );
        Throwable::write(w, self.exception.as_ref())
    }
}
command_struct!(ExceptionResponse, t::EXCEPTION_RESPONSE);

impl DataResponse {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required, correlation_id) = read_response_header(r)?;
        Ok(DataResponse {
            command_id,
            response_required,
            correlation_id,
            data: read_nested(r)?.map(Box::new),
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        write_response_header(
            w,
            self.command_id,
            self.response_required,
            self.correlation_id,
        );
        write_nested(w, self.data.as_deref())
    }
}
command_struct!(DataResponse, t::DATA_RESPONSE);

impl DataArrayResponse {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required, correlation_id) = read_response_header(r)?;
        Ok(DataArrayResponse {
            command_id,
            response_required,
            correlation_id,
            data: read_array(r, "DataArrayResponse.data")?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        write_response_header(
            w,
            self.command_id,
            self.response_required,
            self.correlation_id,
        );
        write_array(w, self.data.as_deref(), "DataArrayResponse.data")
    }
}
command_struct!(DataArrayResponse, t::DATA_ARRAY_RESPONSE);

impl IntegerResponse {
    fn read_fields(r: &mut Reader) -> Result<Self, DecodeError> {
        let (command_id, response_required, correlation_id) = read_response_header(r)?;
        Ok(IntegerResponse {
            command_id,
            response_required,
            correlation_id,
            result: r.i32("IntegerResponse.result")?,
        })
    }
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        write_response_header(
            w,
            self.command_id,
            self.response_required,
            self.correlation_id,
        );
        w.i32(self.result);
        Ok(())
    }
}
command_struct!(IntegerResponse, t::INTEGER_RESPONSE);

/// Every command this codec reads and writes as a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    WireFormatInfo(WireFormatInfo),
    BrokerInfo(BrokerInfo),
    ConnectionInfo(ConnectionInfo),
    SessionInfo(SessionInfo),
    ConsumerInfo(Box<ConsumerInfo>),
    ProducerInfo(ProducerInfo),
    TransactionInfo(TransactionInfo),
    DestinationInfo(DestinationInfo),
    RemoveSubscriptionInfo(RemoveSubscriptionInfo),
    KeepAliveInfo(KeepAliveInfo),
    ShutdownInfo(ShutdownInfo),
    RemoveInfo(RemoveInfo),
    ControlCommand(ControlCommand),
    FlushCommand(FlushCommand),
    ConnectionError(ConnectionError),
    ConsumerControl(ConsumerControl),
    ConnectionControl(ConnectionControl),
    ProducerAck(ProducerAck),
    MessagePull(MessagePull),
    MessageDispatch(MessageDispatch),
    MessageAck(Box<MessageAck>),
    /// A message of any of the five body kinds (or none).
    Message(Box<Message>),
    Response(Response),
    ExceptionResponse(ExceptionResponse),
    DataResponse(DataResponse),
    DataArrayResponse(DataArrayResponse),
    IntegerResponse(IntegerResponse),
}

/// Applies `$body` to the struct inside any `Command` variant.
macro_rules! each_command {
    ($cmd:expr, $c:ident => $body:expr) => {
        match $cmd {
            Command::WireFormatInfo($c) => $body,
            Command::BrokerInfo($c) => $body,
            Command::ConnectionInfo($c) => $body,
            Command::SessionInfo($c) => $body,
            Command::ConsumerInfo($c) => $body,
            Command::ProducerInfo($c) => $body,
            Command::TransactionInfo($c) => $body,
            Command::DestinationInfo($c) => $body,
            Command::RemoveSubscriptionInfo($c) => $body,
            Command::KeepAliveInfo($c) => $body,
            Command::ShutdownInfo($c) => $body,
            Command::RemoveInfo($c) => $body,
            Command::ControlCommand($c) => $body,
            Command::FlushCommand($c) => $body,
            Command::ConnectionError($c) => $body,
            Command::ConsumerControl($c) => $body,
            Command::ConnectionControl($c) => $body,
            Command::ProducerAck($c) => $body,
            Command::MessagePull($c) => $body,
            Command::MessageDispatch($c) => $body,
            Command::MessageAck($c) => $body,
            Command::Message($c) => $body,
            Command::Response($c) => $body,
            Command::ExceptionResponse($c) => $body,
            Command::DataResponse($c) => $body,
            Command::DataArrayResponse($c) => $body,
            Command::IntegerResponse($c) => $body,
        }
    };
}

impl Command {
    /// The command's OpenWire type byte.
    pub fn data_type(&self) -> u8 {
        Marshal::data_type(self)
    }

    /// The id a response to this command correlates with (0 for `WireFormatInfo`).
    pub fn command_id(&self) -> i32 {
        match self {
            Command::WireFormatInfo(_) => 0,
            other => each_command!(other, c => c.command_id_field()),
        }
    }

    /// Whether the sender waits for a `Response` to this command.
    pub fn response_required(&self) -> bool {
        match self {
            Command::WireFormatInfo(_) => false,
            other => each_command!(other, c => c.response_required_field()),
        }
    }
}

/// Field access the `Command` methods share; `WireFormatInfo` has no command header.
trait Header {
    fn command_id_field(&self) -> i32;
    fn response_required_field(&self) -> bool;
}

impl Header for WireFormatInfo {
    fn command_id_field(&self) -> i32 {
        0
    }
    fn response_required_field(&self) -> bool {
        false
    }
}

macro_rules! header {
    ($($ty:ty),*) => {$(
        impl Header for $ty {
            fn command_id_field(&self) -> i32 {
                self.command_id
            }
            fn response_required_field(&self) -> bool {
                self.response_required
            }
        }
    )*};
}

header!(
    BrokerInfo,
    ConnectionInfo,
    SessionInfo,
    Box<ConsumerInfo>,
    ProducerInfo,
    TransactionInfo,
    DestinationInfo,
    RemoveSubscriptionInfo,
    KeepAliveInfo,
    ShutdownInfo,
    RemoveInfo,
    ControlCommand,
    FlushCommand,
    ConnectionError,
    ConsumerControl,
    ConnectionControl,
    ProducerAck,
    MessagePull,
    MessageDispatch,
    Box<MessageAck>,
    Box<Message>,
    Response,
    ExceptionResponse,
    DataResponse,
    DataArrayResponse,
    IntegerResponse
);

impl Marshal for Command {
    const NAME: &'static str = "Command";
    fn data_type(&self) -> u8 {
        each_command!(self, c => c.data_type())
    }

    fn decode_body(data_type: u8, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match data_type {
            t::WIREFORMAT_INFO => {
                Command::WireFormatInfo(WireFormatInfo::decode_body(data_type, r)?)
            }
            t::BROKER_INFO => Command::BrokerInfo(BrokerInfo::read_fields(r)?),
            t::CONNECTION_INFO => Command::ConnectionInfo(ConnectionInfo::read_fields(r)?),
            t::SESSION_INFO => Command::SessionInfo(SessionInfo::read_fields(r)?),
            t::CONSUMER_INFO => Command::ConsumerInfo(Box::new(ConsumerInfo::read_fields(r)?)),
            t::PRODUCER_INFO => Command::ProducerInfo(ProducerInfo::read_fields(r)?),
            t::TRANSACTION_INFO => Command::TransactionInfo(TransactionInfo::read_fields(r)?),
            t::DESTINATION_INFO => Command::DestinationInfo(DestinationInfo::read_fields(r)?),
            t::REMOVE_SUBSCRIPTION_INFO => {
                Command::RemoveSubscriptionInfo(RemoveSubscriptionInfo::read_fields(r)?)
            }
            t::KEEP_ALIVE_INFO => Command::KeepAliveInfo(KeepAliveInfo::read_fields(r)?),
            t::SHUTDOWN_INFO => Command::ShutdownInfo(ShutdownInfo::read_fields(r)?),
            t::REMOVE_INFO => Command::RemoveInfo(RemoveInfo::read_fields(r)?),
            t::CONTROL_COMMAND => Command::ControlCommand(ControlCommand::read_fields(r)?),
            t::FLUSH_COMMAND => Command::FlushCommand(FlushCommand::read_fields(r)?),
            t::CONNECTION_ERROR => Command::ConnectionError(ConnectionError::read_fields(r)?),
            t::CONSUMER_CONTROL => Command::ConsumerControl(ConsumerControl::read_fields(r)?),
            t::CONNECTION_CONTROL => Command::ConnectionControl(ConnectionControl::read_fields(r)?),
            t::PRODUCER_ACK => Command::ProducerAck(ProducerAck::read_fields(r)?),
            t::MESSAGE_PULL => Command::MessagePull(MessagePull::read_fields(r)?),
            t::MESSAGE_DISPATCH => Command::MessageDispatch(MessageDispatch::read_fields(r)?),
            t::MESSAGE_ACK => Command::MessageAck(Box::new(MessageAck::read_fields(r)?)),
            t::ACTIVEMQ_MESSAGE..=t::ACTIVEMQ_TEXT_MESSAGE => {
                Command::Message(Box::new(Message::decode_body(data_type, r)?))
            }
            t::RESPONSE => Command::Response(Response::read_fields(r)?),
            t::EXCEPTION_RESPONSE => Command::ExceptionResponse(ExceptionResponse::read_fields(r)?),
            t::DATA_RESPONSE => Command::DataResponse(DataResponse::read_fields(r)?),
            t::DATA_ARRAY_RESPONSE => {
                Command::DataArrayResponse(DataArrayResponse::read_fields(r)?)
            }
            t::INTEGER_RESPONSE => Command::IntegerResponse(IntegerResponse::read_fields(r)?),
            other => return Err(DecodeError::UnknownType(other)),
        })
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        each_command!(self, c => c.encode_body(w))
    }
}

/// Any data structure that can sit in a polymorphic field (an advisory message's payload, a
/// `DataResponse`, the elements of a `DataArrayResponse`).
#[derive(Debug, Clone, PartialEq)]
pub enum DataStructure {
    Command(Command),
    Destination(Destination),
    ConnectionId(ConnectionId),
    SessionId(SessionId),
    ConsumerId(ConsumerId),
    ProducerId(ProducerId),
    MessageId(MessageId),
    BrokerId(BrokerId),
    TransactionId(TransactionId),
}

impl Marshal for DataStructure {
    const NAME: &'static str = "DataStructure";
    fn data_type(&self) -> u8 {
        match self {
            DataStructure::Command(c) => c.data_type(),
            DataStructure::Destination(d) => d.data_type(),
            DataStructure::ConnectionId(id) => id.data_type(),
            DataStructure::SessionId(id) => id.data_type(),
            DataStructure::ConsumerId(id) => id.data_type(),
            DataStructure::ProducerId(id) => id.data_type(),
            DataStructure::MessageId(id) => id.data_type(),
            DataStructure::BrokerId(id) => id.data_type(),
            DataStructure::TransactionId(id) => Marshal::data_type(id),
        }
    }

    fn decode_body(data_type: u8, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match data_type {
            t::ACTIVEMQ_QUEUE..=t::ACTIVEMQ_TEMP_TOPIC => {
                DataStructure::Destination(Destination::decode_body(data_type, r)?)
            }
            t::CONNECTION_ID => {
                DataStructure::ConnectionId(ConnectionId::decode_body(data_type, r)?)
            }
            t::SESSION_ID => DataStructure::SessionId(SessionId::decode_body(data_type, r)?),
            t::CONSUMER_ID => DataStructure::ConsumerId(ConsumerId::decode_body(data_type, r)?),
            t::PRODUCER_ID => DataStructure::ProducerId(ProducerId::decode_body(data_type, r)?),
            t::MESSAGE_ID => DataStructure::MessageId(MessageId::decode_body(data_type, r)?),
            t::BROKER_ID => DataStructure::BrokerId(BrokerId::decode_body(data_type, r)?),
            t::LOCAL_TRANSACTION_ID | t::XA_TRANSACTION_ID => {
                DataStructure::TransactionId(TransactionId::decode_body(data_type, r)?)
            }
            other => DataStructure::Command(Command::decode_body(other, r)?),
        })
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match self {
            DataStructure::Command(c) => c.encode_body(w),
            DataStructure::Destination(d) => d.encode_body(w),
            DataStructure::ConnectionId(id) => id.encode_body(w),
            DataStructure::SessionId(id) => id.encode_body(w),
            DataStructure::ConsumerId(id) => id.encode_body(w),
            DataStructure::ProducerId(id) => id.encode_body(w),
            DataStructure::MessageId(id) => id.encode_body(w),
            DataStructure::BrokerId(id) => id.encode_body(w),
            DataStructure::TransactionId(id) => id.encode_body(w),
        }
    }
}
