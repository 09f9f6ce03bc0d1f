//! The JDBC message store: messages, durable subscriptions and prepared transactions in
//! ActiveMQ's own tables on MySQL/MariaDB, PostgreSQL or SQLite, plus the lockers that make
//! master/slave work on a shared database.
//!
//! # Tables
//!
//! ActiveMQ's tables and columns, created at open when `create_tables_on_startup` (the final
//! shape directly, not ActiveMQ's ALTER history), each name prefixed by `table_prefix`:
//!
//! - `ACTIVEMQ_MSGS(ID, CONTAINER, MSGID_PROD, MSGID_SEQ, EXPIRATION, MSG, PRIORITY, XID)`: one
//!   row per stored message. `ID` is the store sequence, `CONTAINER` is `queue://name` or
//!   `topic://name`, `MSG` is the `store-api` encoding of the message. A queue ack deletes the
//!   row. Rows with `CONTAINER = 'xa://prepared'` hold prepared XA transactions: `XID` is `+`
//!   and the base64 transaction id (as ActiveMQ writes it), `MSG` the encoded operations.
//!   Indexes: `MIDX` unique on `(MSGID_PROD, MSGID_SEQ, CONTAINER)` (duplicate detection by the
//!   database), `CPIDX (CONTAINER, PRIORITY, ID)` (every cursor and browse is a range of it),
//!   `EIDX (CONTAINER, EXPIRATION)`, `XIDX (XID)`.
//! - `ACTIVEMQ_ACKS(CONTAINER, SUB_DEST, CLIENT_ID, SUB_NAME, SELECTOR, LAST_ACKED_ID, PRIORITY,
//!   XID)`: one row per durable subscription (`PRIORITY` 0), and one per destination
//!   (`CLIENT_ID = SUB_NAME = CONTAINER`, `PRIORITY` 11, ActiveMQ's AMQ-3695 marker) so that
//!   empty destinations are listed. A subscription's `LAST_ACKED_ID` is a sequence taken when it
//!   was created: ActiveMQ's high-water mark at creation, and the subscription's id.
//! - `ACTIVEMQ_LOCK(ID, TIME, BROKER_NAME, EPOCH)`: the single lock row. `EPOCH` is added to
//!   ActiveMQ's columns: the lease locker's fencing token.
//! - `ACTIVEMQ_SUB_PENDING(SUB_ID, PRIORITY, MSG_ID)`: the one table ActiveMQ does not have. A
//!   durable subscription's state in ActiveMQ is one high-water mark, which cannot record an
//!   individual or out-of-order ack (its pain point 13); here a topic message is pending for a
//!   subscription while its row exists, an ack deletes that row, and the message row goes with
//!   the last ack. `PRIMARY KEY (SUB_ID, PRIORITY, MSG_ID)` serves the subscription's cursor in
//!   delivery order; an index on `MSG_ID` finds a message's last reference.
//!
//! # The openwire message format
//!
//! With [`MessageFormat::OpenWire`] (`message_format = "openwire"`) the tables are ActiveMQ's
//! and nothing else, so that this engine and an Apache ActiveMQ 5.x `jdbcPersistenceAdapter`
//! can be master and slave of one database (a rolling migration: swap the slave, fail over):
//!
//! - `MSG` holds the message as ActiveMQ marshals it (OpenWire version 11, loose encoding,
//!   size prefix; older versions and tight encoding are read too), `MSGID_PROD` is ActiveMQ's
//!   `ProducerId.toString()` (`openwire::store` maps this store's producers both ways), and
//!   rows whose `XID` is set (ActiveMQ's prepared XA adds) are invisible, as to ActiveMQ.
//! - No `ACTIVEMQ_SUB_PENDING`, no `EPOCH`, no bookkeeping rows: destinations are ActiveMQ's
//!   `PRIORITY` 11 markers, sequences continue from the highest `ID` and `LAST_ACKED_ID` at
//!   open (as ActiveMQ's do; a sequence freed by deleting the highest rows may be used again
//!   after a reopen), and the schema created at open is ActiveMQ's own, plus the `CPIDX`
//!   index (and, on MySQL/MariaDB, the binary no-pad collation, so names compare exactly;
//!   tables ActiveMQ created keep the server's default). The lease locker needs `EPOCH` and is refused; the database locker takes the row
//!   lock ActiveMQ's `DefaultDatabaseLocker` takes (`SELECT ... FOR UPDATE` on the lock row).
//! - A durable subscription is ActiveMQ's: one `ACTIVEMQ_ACKS` row (`PRIORITY` 0) whose
//!   `LAST_ACKED_ID` covers every priority, or, when ActiveMQ created it with
//!   `prioritizedMessages`, one row per priority. An ack moves the mark when it is the oldest
//!   pending message; an ack out of that order is held in memory until the mark reaches it,
//!   and is lost (the message delivered again) if the broker stops first. At least once,
//!   never lost; the contract's exact out-of-order acks hold only while the store is open.
//!   A topic message is deleted once every subscription has acknowledged it.
//! - XA prepare is refused (ActiveMQ's encoding of a prepared transaction is not written);
//!   local transactions and one-phase XA commits work.
//! - Counts and bytes are in this store's unit (the `store-api` encoding's length), which
//!   `MSG` is not: the first count of a destination decodes each of its rows once, in the
//!   writer, which then keeps the sizes with every add and delete (memory: one entry per
//!   stored message of a destination that was counted).
//!
//! The conformance kit's profile for this mode is in `tests/conformance_mysql_openwire.rs`.
//!
//! # Writes and ordering
//!
//! Every change goes through one writer task on a dedicated connection ([`writer`]), which
//! assigns sequences and commits batches of concurrent changes in one transaction each (group
//! commit). Commits therefore happen in sequence order, and a batch cursor reading
//! `ID > position` per priority can never pass a sequence that is assigned but not yet visible.
//! Bulk deletes (purge, unsubscribe, destination removal) run in transactions of at most 1000
//! rows, selected by key range; no statement sweeps a whole table.
//!
//! Every batch read has a `LIMIT`. Reads run on a pool of connections.
//!
//! The journaled JDBC engine builds on this store through [`journaled`], an API nothing else
//! uses.

mod activemq;
mod columns;
mod config;
mod error;
mod fence;
pub mod journaled;
pub mod locker;
mod sql;
mod statements;
mod store;
mod writer;

pub use config::{JdbcConfig, MessageFormat};
pub use error::JdbcError;
pub use fence::Fence;
pub use sql::{Dialect, redact};
pub use statements::validate_prefix;
pub use store::JdbcStore;
