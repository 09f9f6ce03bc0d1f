//! broker-core: JMS messaging semantics over any message-store engine.
//!
//! An embeddable broker ([`Broker`], like ActiveMQ's `BrokerService`) built from a
//! [`CoreConfig`], a [`Locker`] and a [`StoreOpener`]: it takes the master lock, opens and
//! recovers the store (an `Arc<dyn PersistenceAdapter>`), and serves in-process
//! [`Connection`]s, [`Session`]s, [`Producer`]s and [`Consumer`]s. It depends on `store-api`
//! only: the `engines` crate opens the engine and the locker a config file names, and the
//! `broker` program puts STOMP in front of it. No network code lives here.
//!
//! What it gives on every engine:
//! - queues (each message to one consumer, competing consumers with prefetch) and topics
//!   (every subscriber a copy; durable subscriptions keep messages while their subscriber is
//!   away, across restarts);
//! - AUTO, CLIENT (cumulative), DUPS_OK and INDIVIDUAL acknowledgement, and transacted
//!   sessions whose sends and acks commit or roll back together (one store transaction), plus
//!   XA prepare / commit / rollback that survive restarts;
//! - redelivery with count and flag on rollback, recover, session close and consumer loss;
//!   after `maximum_redeliveries` a message moves to `ActiveMQ.DLQ` (the move is one store
//!   transaction) with the reason in `dlqDeliveryFailureCause`;
//! - JMS selectors ([`selector`]), priorities 0–9, expiry (never delivered once expired;
//!   dead-lettered or dropped per policy), non-persistent messages that never touch the store;
//! - bounded memory: destinations page from the store's batch cursor into a window of at most
//!   `max_page_size` messages and only while the broker's message memory is under its limit
//!   ([`dispatch`]); non-persistent messages past the limit spool to a temp store on disk
//!   ([`temp_store`]) and page back in, in order, as memory frees;
//! - per-connection caps (`[limits]`): consumers, open transactions, uncommitted transacted
//!   sends in count and bytes (which also count against the memory limit), destinations
//!   created per second, and prefetch clamped to ActiveMQ's maximum;
//! - ActiveMQ's destination features ([`destination_filter`]): wildcard consumers (`orders.>`,
//!   `*.eu`) on topics and queues, composite sends (`a,b`, `queue://a,topic://c`) stored in one
//!   store transaction, and virtual topics (`VirtualTopic.X` copied to `Consumer.*.VirtualTopic.X`
//!   queues in the same transaction);
//! - temporary queues and topics, owned by their connection and gone with it, never stored
//!   (`core::temporary`);
//! - the master/slave life cycle ([`BrokerState`]): waiting for the lock → recovering →
//!   serving → (lock lost →) stopped, each transition logged.

pub mod admin;
pub mod authorization;
pub mod broker;
pub mod config;
pub(crate) mod core;
pub mod destination_filter;
pub(crate) mod dispatch;
pub mod error;
pub mod locker;
pub mod memory;
pub mod policy;
pub mod selector;
pub mod session;
pub mod state;
pub mod temp_store;

pub use crate::core::StoreStatus;
pub use crate::core::advisory::LiveConsumer;
pub use crate::core::scheduler::{
    AMQ_SCHEDULED_CRON, AMQ_SCHEDULED_DELAY, AMQ_SCHEDULED_ID, AMQ_SCHEDULED_PERIOD,
    AMQ_SCHEDULED_REPEAT, JOBS as SCHEDULER_JOBS_QUEUE, ScheduledJob,
};
pub use crate::core::scheduler_management::{
    AMQ_SCHEDULER_ACTION, AMQ_SCHEDULER_ACTION_END_TIME, AMQ_SCHEDULER_ACTION_START_TIME,
    AMQ_SCHEDULER_MANAGEMENT_DESTINATION,
};
pub use crate::core::temporary::{TemporaryEvent, temporary_url};
pub use admin::{DestinationStats, TemporaryEvents};
pub use broker::Broker;
pub use config::{ConfigError, CoreConfig};
pub use dispatch::{BROKER_PATH_PROPERTY, GROUP_FIRST_FOR_CONSUMER};
pub use error::{BrokerError, Result};
pub use locker::{HeldLock, Leaving, Locker, NoLock, OpenedStore, StoreOpener};
pub use selector::{CONVERT_STRING_EXPRESSIONS, Selector, SelectorError};
pub use session::{
    AckMode, AckWait, Connection, ConnectionInfo, Consumer, ConsumerSlot, DeclaredProducer,
    MAX_PREFETCH, Outgoing, Producer, Received, Session, SpooledPages, Submitted, clamp_prefetch,
};
pub use state::BrokerState;
pub use store_api::{
    Body, Destination, DestinationKind, Message, MessageId, OrderKey, SubscriptionKey, Value, Xid,
};
