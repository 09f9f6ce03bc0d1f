//! Every SQL statement the engine runs, built once per store from the dialect and the table
//! prefix (ActiveMQ's `Statements.java`, one set per database).
//!
//! The text is written with `?` placeholders and renumbered to `$n` for PostgreSQL. The only
//! text spliced into SQL is the table prefix, which [`validate_prefix`] restricts to identifier
//! characters; every value is a bind parameter.

use crate::config::MessageFormat;
use crate::error::JdbcError;
use crate::sql::{Dialect, Sql};

/// `ACTIVEMQ_ACKS.PRIORITY` of the row that records that a destination exists (ActiveMQ's
/// AMQ-3695 trick: a priority no message can have).
pub const MARKER_PRIORITY: i64 = 11;
/// `ACTIVEMQ_ACKS.PRIORITY` of a durable subscription's row.
pub const SUB_PRIORITY: i64 = 0;
/// `ACTIVEMQ_ACKS.PRIORITY` of a subscription being deleted: hidden from every query, its
/// pending rows are removed in bounded batches, then the row itself.
pub const DELETING_PRIORITY: i64 = 12;
/// `ACTIVEMQ_ACKS.PRIORITY` of the row whose `LAST_ACKED_ID` reserves sequences: every
/// sequence handed out is at most this, so sequences keep rising across a reopen even after
/// the rows that held the highest ones were deleted.
pub const SEQUENCE_PRIORITY: i64 = 13;
/// `ACTIVEMQ_ACKS.CONTAINER` (and client id and name) of that row.
pub const SEQUENCE_CONTAINER: &str = "sequence://store";
/// `ACTIVEMQ_ACKS.PRIORITY` of the row whose `LAST_ACKED_ID` is the journaled JDBC engine's
/// checkpoint mark: the journal location the database reflects, packed as file << 32 | offset.
pub const MARK_PRIORITY: i64 = 14;
/// `ACTIVEMQ_ACKS.CONTAINER` of that row.
pub const MARK_CONTAINER: &str = "journal://mark";
/// `ACTIVEMQ_MSGS.CONTAINER` of the rows that hold prepared XA transactions.
pub const PREPARED_CONTAINER: &str = "xa://prepared";
/// Longest text a `VARCHAR(250)` column holds.
pub const MAX_TEXT: usize = 250;

/// Checks a table prefix: empty, or an identifier of at most 24 ASCII letters, digits and
/// underscores that does not start with a digit (short enough that every index name fits
/// PostgreSQL's 63 bytes).
pub fn validate_prefix(prefix: &str) -> Result<(), JdbcError> {
    let ok = prefix.len() <= 24
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !prefix.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(JdbcError::Config(format!(
            "table_prefix `{prefix}`: use at most 24 ASCII letters, digits or underscores, not starting with a digit"
        )))
    }
}

/// The SQL of one store.
#[derive(Debug)]
pub struct Statements {
    pub dialect: Dialect,
    pub format: MessageFormat,
    pub msgs: String,
    pub acks: String,
    pub lock: String,
    pub pending: String,

    pub begin: &'static str,
    pub lock_epoch_check: Sql,
    pub max_ids: Sql,
    pub ensure_sequence_row: Sql,
    pub reserve_sequences: Sql,

    pub ensure_destination: Sql,
    pub ensure_mark_row: Sql,
    pub set_mark: Sql,
    pub get_mark: Sql,
    pub message_key_size: Sql,
    pub pending_refs: Sql,
    pub destinations: Sql,
    pub delete_markers: Sql,
    pub marker_exists: Sql,

    pub delete_message: Sql,
    pub delete_message_by_id: Sql,
    pub message_key: Sql,
    pub get_message: Sql,
    pub page: Sql,
    pub count_bytes: Sql,
    pub expired: Sql,
    pub first_ids: Sql,
    pub all_ids: Sql,
    pub delete_id_range: Sql,
    pub prepared_rows: Sql,
    pub insert_prepared: Sql,

    pub insert_pending_for_subs: Sql,
    pub insert_pending_retroactive: Sql,
    pub delete_pending: Sql,
    pub delete_pending_of_message: Sql,
    pub delete_pending_range: Sql,
    pub delete_pending_of_topic_range: Sql,
    pub pending_exists: Sql,
    pub delete_if_unreferenced: Sql,
    pub delete_unreferenced_range: Sql,
    pub sub_page: Sql,
    pub sub_count_bytes: Sql,
    pub sub_first_pending: Sql,

    pub insert_subscription: Sql,
    pub lookup_subscription: Sql,
    pub subscriptions: Sql,
    pub mark_subscription_deleting: Sql,
    pub deleting_subscriptions: Sql,
    pub delete_subscription_row: Sql,

    // The openwire format's, on ActiveMQ's schema alone.
    /// A subscription's `(PRIORITY, LAST_ACKED_ID)` rows.
    pub ow_sub_marks: Sql,
    /// Moves a single-row subscription's mark.
    pub ow_set_mark: Sql,
    /// Moves one priority's mark of a subscription with a row per priority.
    pub ow_set_priority_mark: Sql,
    /// `(ID, PRIORITY)` of a container's messages after an id, in id order.
    pub ow_ids_after: Sql,
    /// The same, of one priority.
    pub ow_ids_after_priority: Sql,
    /// `(ID, MSG, PRIORITY)` of a container's messages after an id, in id order.
    pub ow_rows_after: Sql,
    /// Deletes a subscription's rows.
    pub ow_delete_subscription: Sql,
    /// ActiveMQ's destination list: every container of either table.
    pub ow_destinations: Sql,
}

impl Statements {
    pub fn new(
        dialect: Dialect,
        prefix: &str,
        format: MessageFormat,
    ) -> Result<Statements, JdbcError> {
        validate_prefix(prefix)?;
        let msgs = format!("{prefix}ACTIVEMQ_MSGS");
        let acks = format!("{prefix}ACTIVEMQ_ACKS");
        let lock = format!("{prefix}ACTIVEMQ_LOCK");
        let pending = format!("{prefix}ACTIVEMQ_SUB_PENDING");
        let sql = |text: String| -> Sql { renumber(dialect, &text).into() };
        let (ignore, on_conflict) = match dialect {
            Dialect::MySql => ("IGNORE ", ""),
            Dialect::Postgres | Dialect::Sqlite => ("", " ON CONFLICT DO NOTHING"),
        };
        let sum_len = |col: &str| match dialect {
            Dialect::MySql => format!("CAST(COALESCE(SUM(LENGTH({col})), 0) AS SIGNED)"),
            Dialect::Postgres => format!("CAST(COALESCE(SUM(LENGTH({col})), 0) AS BIGINT)"),
            Dialect::Sqlite => format!("COALESCE(SUM(LENGTH({col})), 0)"),
        };
        let len_msg = match dialect {
            Dialect::MySql => "CAST(LENGTH(MSG) AS SIGNED)",
            Dialect::Postgres => "CAST(LENGTH(MSG) AS BIGINT)",
            Dialect::Sqlite => "LENGTH(MSG)",
        };
        let share_lock = match dialect {
            Dialect::MySql => " LOCK IN SHARE MODE",
            Dialect::Postgres => " FOR SHARE",
            // A SQLite write transaction (BEGIN IMMEDIATE) already excludes every other writer.
            Dialect::Sqlite => "",
        };
        // ActiveMQ's rows of a prepared XA add carry the XID until the outcome: no read sees them.
        let visible = if format == MessageFormat::OpenWire {
            " AND XID IS NULL"
        } else {
            ""
        };
        Ok(Statements {
            dialect,
            format,
            begin: match dialect {
                Dialect::Sqlite => "BEGIN IMMEDIATE",
                _ => "BEGIN",
            },
            lock_epoch_check: sql(format!("SELECT EPOCH FROM {lock} WHERE ID = 1{share_lock}")),
            max_ids: sql(format!(
                "SELECT (SELECT COALESCE(MAX(ID), 0) FROM {msgs}), (SELECT COALESCE(MAX(LAST_ACKED_ID), 0) FROM {acks} WHERE PRIORITY <> {MARK_PRIORITY})"
            )),

            ensure_sequence_row: sql(format!(
                "INSERT {ignore}INTO {acks}(CONTAINER, CLIENT_ID, SUB_NAME, LAST_ACKED_ID, PRIORITY) VALUES ('{SEQUENCE_CONTAINER}', '{SEQUENCE_CONTAINER}', '{SEQUENCE_CONTAINER}', 0, {SEQUENCE_PRIORITY}){on_conflict}"
            )),
            reserve_sequences: sql(format!(
                "UPDATE {acks} SET LAST_ACKED_ID = ? WHERE CONTAINER = '{SEQUENCE_CONTAINER}' AND PRIORITY = {SEQUENCE_PRIORITY}"
            )),
            ensure_mark_row: sql(format!(
                "INSERT {ignore}INTO {acks}(CONTAINER, CLIENT_ID, SUB_NAME, LAST_ACKED_ID, PRIORITY) VALUES ('{MARK_CONTAINER}', '{MARK_CONTAINER}', '{MARK_CONTAINER}', 0, {MARK_PRIORITY}){on_conflict}"
            )),
            set_mark: sql(format!(
                "UPDATE {acks} SET LAST_ACKED_ID = ? WHERE CONTAINER = '{MARK_CONTAINER}' AND PRIORITY = {MARK_PRIORITY}"
            )),
            get_mark: sql(format!(
                "SELECT LAST_ACKED_ID FROM {acks} WHERE CONTAINER = '{MARK_CONTAINER}' AND PRIORITY = {MARK_PRIORITY}"
            )),
            message_key_size: sql(format!(
                "SELECT ID, PRIORITY, {len_msg} FROM {msgs} WHERE MSGID_PROD = ? AND MSGID_SEQ = ? AND CONTAINER = ?"
            )),
            pending_refs: sql(format!("SELECT COUNT(*) FROM {pending} WHERE MSG_ID = ?")),
            ensure_destination: sql(format!(
                "INSERT {ignore}INTO {acks}(CONTAINER, CLIENT_ID, SUB_NAME, SUB_DEST, LAST_ACKED_ID, PRIORITY) VALUES (?, ?, ?, ?, 0, {MARKER_PRIORITY}){on_conflict}"
            )),
            destinations: sql(format!(
                "SELECT CONTAINER FROM {acks} WHERE PRIORITY = {MARKER_PRIORITY}"
            )),
            delete_markers: sql(format!("DELETE FROM {acks} WHERE CONTAINER = ?")),
            marker_exists: sql(format!(
                "SELECT COUNT(*) FROM {acks} WHERE CONTAINER = ? AND CLIENT_ID = ? AND SUB_NAME = ? AND PRIORITY = {MARKER_PRIORITY}"
            )),

            delete_message: sql(format!(
                "DELETE FROM {msgs} WHERE MSGID_PROD = ? AND MSGID_SEQ = ? AND CONTAINER = ?"
            )),
            delete_message_by_id: sql(format!("DELETE FROM {msgs} WHERE ID = ?")),
            message_key: sql(format!(
                "SELECT ID, PRIORITY FROM {msgs} WHERE MSGID_PROD = ? AND MSGID_SEQ = ? AND CONTAINER = ?"
            )),
            get_message: sql(format!(
                "SELECT ID, MSG FROM {msgs} WHERE MSGID_PROD = ? AND MSGID_SEQ = ? AND CONTAINER = ?{visible}"
            )),
            page: sql(format!(
                "SELECT ID, MSG FROM {msgs} WHERE CONTAINER = ? AND PRIORITY = ? AND ID > ?{visible} ORDER BY ID LIMIT ?"
            )),
            count_bytes: sql(format!(
                "SELECT COUNT(*), {} FROM {msgs} WHERE CONTAINER = ?{visible}",
                sum_len("MSG")
            )),
            expired: sql(format!(
                "SELECT MSGID_PROD, MSGID_SEQ, PRIORITY, ID FROM {msgs} WHERE CONTAINER = ? AND EXPIRATION > 0 AND EXPIRATION <= ?{visible} ORDER BY PRIORITY DESC, ID LIMIT ?"
            )),
            all_ids: sql(format!(
                "SELECT ID, CONTAINER, MSGID_PROD, MSGID_SEQ FROM {msgs} WHERE ID > ? ORDER BY ID LIMIT ?"
            )),
            first_ids: sql(format!(
                "SELECT ID FROM {msgs} WHERE CONTAINER = ? ORDER BY ID LIMIT ?"
            )),
            delete_id_range: sql(format!(
                "DELETE FROM {msgs} WHERE CONTAINER = ? AND ID >= ? AND ID <= ?"
            )),
            prepared_rows: sql(format!(
                "SELECT ID, MSG FROM {msgs} WHERE CONTAINER = '{PREPARED_CONTAINER}' AND ID > ? ORDER BY ID LIMIT ?"
            )),
            insert_prepared: sql(format!(
                "INSERT INTO {msgs}(ID, CONTAINER, EXPIRATION, PRIORITY, MSG, XID) VALUES (?, '{PREPARED_CONTAINER}', 0, 0, ?, ?)"
            )),

            insert_pending_for_subs: sql(format!(
                "INSERT INTO {pending}(SUB_ID, PRIORITY, MSG_ID) SELECT LAST_ACKED_ID, ?, ? FROM {acks} WHERE CONTAINER = ? AND PRIORITY = {SUB_PRIORITY}"
            )),
            insert_pending_retroactive: sql(format!(
                "INSERT INTO {pending}(SUB_ID, PRIORITY, MSG_ID) SELECT ?, PRIORITY, ID FROM {msgs} WHERE CONTAINER = ?"
            )),
            delete_pending: sql(format!(
                "DELETE FROM {pending} WHERE SUB_ID = ? AND PRIORITY = ? AND MSG_ID = ?"
            )),
            delete_pending_of_message: sql(format!("DELETE FROM {pending} WHERE MSG_ID = ?")),
            delete_pending_range: sql(format!(
                "DELETE FROM {pending} WHERE SUB_ID = ? AND PRIORITY = ? AND MSG_ID >= ? AND MSG_ID <= ?"
            )),
            delete_pending_of_topic_range: sql(format!(
                "DELETE FROM {pending} WHERE MSG_ID >= ? AND MSG_ID <= ? AND SUB_ID IN (SELECT LAST_ACKED_ID FROM {acks} WHERE CONTAINER = ? AND PRIORITY <> {MARKER_PRIORITY})"
            )),
            pending_exists: sql(format!(
                "SELECT COUNT(*) FROM {pending} WHERE SUB_ID = ? AND PRIORITY = ? AND MSG_ID = ?"
            )),
            delete_if_unreferenced: sql(format!(
                "DELETE FROM {msgs} WHERE ID = ? AND NOT EXISTS (SELECT 1 FROM {pending} WHERE {pending}.MSG_ID = ?)"
            )),
            delete_unreferenced_range: sql(format!(
                "DELETE FROM {msgs} WHERE CONTAINER = ? AND ID >= ? AND ID <= ? AND NOT EXISTS (SELECT 1 FROM {pending} WHERE {pending}.MSG_ID = {msgs}.ID)"
            )),
            sub_page: sql(format!(
                "SELECT M.ID, M.MSG FROM {pending} P JOIN {msgs} M ON M.ID = P.MSG_ID WHERE P.SUB_ID = ? AND P.PRIORITY = ? AND P.MSG_ID > ? ORDER BY P.MSG_ID LIMIT ?"
            )),
            sub_count_bytes: sql(format!(
                "SELECT COUNT(*), {} FROM {pending} P JOIN {msgs} M ON M.ID = P.MSG_ID WHERE P.SUB_ID = ?",
                sum_len("M.MSG")
            )),
            sub_first_pending: sql(format!(
                "SELECT PRIORITY, MSG_ID FROM {pending} WHERE SUB_ID = ? ORDER BY PRIORITY, MSG_ID LIMIT ?"
            )),

            insert_subscription: sql(format!(
                "INSERT {ignore}INTO {acks}(CONTAINER, CLIENT_ID, SUB_NAME, SELECTOR, LAST_ACKED_ID, SUB_DEST, PRIORITY) VALUES (?, ?, ?, ?, ?, ?, {SUB_PRIORITY}){on_conflict}"
            )),
            lookup_subscription: sql(format!(
                "SELECT LAST_ACKED_ID, SELECTOR FROM {acks} WHERE CONTAINER = ? AND CLIENT_ID = ? AND SUB_NAME = ? AND PRIORITY = {SUB_PRIORITY}"
            )),
            subscriptions: sql(format!(
                "SELECT CLIENT_ID, SUB_NAME, SELECTOR FROM {acks} WHERE CONTAINER = ? AND PRIORITY = {SUB_PRIORITY}"
            )),
            mark_subscription_deleting: sql(format!(
                "UPDATE {acks} SET PRIORITY = {DELETING_PRIORITY} WHERE CONTAINER = ? AND CLIENT_ID = ? AND SUB_NAME = ? AND PRIORITY = {SUB_PRIORITY}"
            )),
            deleting_subscriptions: sql(format!(
                "SELECT CONTAINER, LAST_ACKED_ID FROM {acks} WHERE PRIORITY = {DELETING_PRIORITY}"
            )),
            delete_subscription_row: sql(format!(
                "DELETE FROM {acks} WHERE LAST_ACKED_ID = ? AND PRIORITY = {DELETING_PRIORITY}"
            )),

            ow_sub_marks: sql(format!(
                "SELECT PRIORITY, LAST_ACKED_ID FROM {acks} WHERE CONTAINER = ? AND CLIENT_ID = ? AND SUB_NAME = ? AND PRIORITY < 10"
            )),
            ow_set_mark: sql(format!(
                "UPDATE {acks} SET LAST_ACKED_ID = ?, XID = NULL WHERE CONTAINER = ? AND CLIENT_ID = ? AND SUB_NAME = ? AND PRIORITY < 10"
            )),
            ow_set_priority_mark: sql(format!(
                "UPDATE {acks} SET LAST_ACKED_ID = ?, XID = NULL WHERE CONTAINER = ? AND CLIENT_ID = ? AND SUB_NAME = ? AND PRIORITY = ?"
            )),
            ow_ids_after: sql(format!(
                "SELECT ID, PRIORITY FROM {msgs} WHERE CONTAINER = ? AND ID > ? AND XID IS NULL ORDER BY ID LIMIT ?"
            )),
            ow_ids_after_priority: sql(format!(
                "SELECT ID, PRIORITY FROM {msgs} WHERE CONTAINER = ? AND PRIORITY = ? AND ID > ? AND XID IS NULL ORDER BY ID LIMIT ?"
            )),
            ow_rows_after: sql(format!(
                "SELECT ID, MSG, PRIORITY FROM {msgs} WHERE CONTAINER = ? AND ID > ? AND XID IS NULL ORDER BY ID LIMIT ?"
            )),
            ow_delete_subscription: sql(format!(
                "DELETE FROM {acks} WHERE CONTAINER = ? AND CLIENT_ID = ? AND SUB_NAME = ? AND PRIORITY < 10"
            )),
            ow_destinations: sql(format!(
                "SELECT DISTINCT CONTAINER FROM {msgs} WHERE CONTAINER IS NOT NULL UNION SELECT DISTINCT CONTAINER FROM {acks}"
            )),

            msgs,
            acks,
            lock,
            pending,
        })
    }

    /// The DDL that creates the final schema (not ActiveMQ's historical ALTER chain), each
    /// statement safe to run again on an existing schema.
    pub fn create_schema(&self, mysql_collation: &str) -> Vec<String> {
        if self.format == MessageFormat::OpenWire {
            return self.create_activemq_schema(mysql_collation);
        }
        let (m, a, l, p) = (&self.msgs, &self.acks, &self.lock, &self.pending);
        match self.dialect {
            Dialect::MySql => {
                // A binary, no-pad collation: JMS names are case- and space-sensitive, and
                // MySQL's default collations would make `Orders` and `orders ` one queue.
                let table =
                    format!("ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={mysql_collation}");
                vec![
                    format!(
                        "CREATE TABLE IF NOT EXISTS {m}(ID BIGINT NOT NULL, CONTAINER VARCHAR(250) NOT NULL, MSGID_PROD VARCHAR(250), MSGID_SEQ BIGINT, EXPIRATION BIGINT, MSG LONGBLOB, PRIORITY BIGINT, XID VARCHAR(250), PRIMARY KEY (ID), UNIQUE INDEX {m}_MIDX (MSGID_PROD, MSGID_SEQ, CONTAINER), INDEX {m}_CPIDX (CONTAINER, PRIORITY, ID), INDEX {m}_EIDX (CONTAINER, EXPIRATION), INDEX {m}_XIDX (XID)) {table}"
                    ),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {a}(CONTAINER VARCHAR(250) NOT NULL, SUB_DEST VARCHAR(250), CLIENT_ID VARCHAR(250) NOT NULL, SUB_NAME VARCHAR(250) NOT NULL, SELECTOR VARCHAR(250), LAST_ACKED_ID BIGINT, PRIORITY BIGINT DEFAULT 5 NOT NULL, XID VARCHAR(250), PRIMARY KEY (CONTAINER, CLIENT_ID, SUB_NAME, PRIORITY), INDEX {a}_XIDX (XID), INDEX {a}_PIDX (PRIORITY)) {table}"
                    ),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {l}(ID BIGINT NOT NULL, TIME BIGINT, BROKER_NAME VARCHAR(250), EPOCH BIGINT DEFAULT 0 NOT NULL, PRIMARY KEY (ID)) {table}"
                    ),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {p}(SUB_ID BIGINT NOT NULL, PRIORITY BIGINT NOT NULL, MSG_ID BIGINT NOT NULL, PRIMARY KEY (SUB_ID, PRIORITY, MSG_ID), INDEX {p}_MIDX (MSG_ID)) {table}"
                    ),
                ]
            }
            Dialect::Postgres | Dialect::Sqlite => {
                let blob = if self.dialect == Dialect::Postgres {
                    "BYTEA"
                } else {
                    "BLOB"
                };
                vec![
                    format!(
                        "CREATE TABLE IF NOT EXISTS {m}(ID BIGINT NOT NULL, CONTAINER VARCHAR(250) NOT NULL, MSGID_PROD VARCHAR(250), MSGID_SEQ BIGINT, EXPIRATION BIGINT, MSG {blob}, PRIORITY BIGINT, XID VARCHAR(250), PRIMARY KEY (ID))"
                    ),
                    format!(
                        "CREATE UNIQUE INDEX IF NOT EXISTS {m}_MIDX ON {m} (MSGID_PROD, MSGID_SEQ, CONTAINER)"
                    ),
                    format!(
                        "CREATE INDEX IF NOT EXISTS {m}_CPIDX ON {m} (CONTAINER, PRIORITY, ID)"
                    ),
                    format!("CREATE INDEX IF NOT EXISTS {m}_EIDX ON {m} (CONTAINER, EXPIRATION)"),
                    format!("CREATE INDEX IF NOT EXISTS {m}_XIDX ON {m} (XID)"),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {a}(CONTAINER VARCHAR(250) NOT NULL, SUB_DEST VARCHAR(250), CLIENT_ID VARCHAR(250) NOT NULL, SUB_NAME VARCHAR(250) NOT NULL, SELECTOR VARCHAR(250), LAST_ACKED_ID BIGINT, PRIORITY BIGINT DEFAULT 5 NOT NULL, XID VARCHAR(250), PRIMARY KEY (CONTAINER, CLIENT_ID, SUB_NAME, PRIORITY))"
                    ),
                    format!("CREATE INDEX IF NOT EXISTS {a}_XIDX ON {a} (XID)"),
                    format!("CREATE INDEX IF NOT EXISTS {a}_PIDX ON {a} (PRIORITY)"),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {l}(ID BIGINT NOT NULL, TIME BIGINT, BROKER_NAME VARCHAR(250), EPOCH BIGINT DEFAULT 0 NOT NULL, PRIMARY KEY (ID))"
                    ),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {p}(SUB_ID BIGINT NOT NULL, PRIORITY BIGINT NOT NULL, MSG_ID BIGINT NOT NULL, PRIMARY KEY (SUB_ID, PRIORITY, MSG_ID))"
                    ),
                    format!("CREATE INDEX IF NOT EXISTS {p}_MIDX ON {p} (MSG_ID)"),
                ]
            }
        }
    }

    /// ActiveMQ's own schema (its `Statements` after the ALTER chain, with the MySQL adapter's
    /// `LONGBLOB` and InnoDB), nothing added but one index: `CPIDX (CONTAINER, PRIORITY, ID)`,
    /// which every bounded page of this engine reads along. An index is invisible to ActiveMQ's
    /// statements; a table or a column ActiveMQ does not know would not be (a missing default,
    /// a schema check), so there is none.
    fn create_activemq_schema(&self, mysql_collation: &str) -> Vec<String> {
        let (m, a, l) = (&self.msgs, &self.acks, &self.lock);
        let blob = match self.dialect {
            Dialect::MySql => "LONGBLOB",
            Dialect::Postgres => "BYTEA",
            Dialect::Sqlite => "BLOB",
        };
        let msgs = format!(
            "CREATE TABLE IF NOT EXISTS {m}(ID BIGINT NOT NULL, CONTAINER VARCHAR(250), MSGID_PROD VARCHAR(250), MSGID_SEQ BIGINT, EXPIRATION BIGINT, MSG {blob}, PRIORITY BIGINT, XID VARCHAR(250), PRIMARY KEY (ID))"
        );
        let acks = format!(
            "CREATE TABLE IF NOT EXISTS {a}(CONTAINER VARCHAR(250) NOT NULL, SUB_DEST VARCHAR(250), CLIENT_ID VARCHAR(250) NOT NULL, SUB_NAME VARCHAR(250) NOT NULL, SELECTOR VARCHAR(250), LAST_ACKED_ID BIGINT, PRIORITY BIGINT DEFAULT 5 NOT NULL, XID VARCHAR(250), PRIMARY KEY (CONTAINER, CLIENT_ID, SUB_NAME, PRIORITY))"
        );
        let lock = format!(
            "CREATE TABLE IF NOT EXISTS {l}(ID BIGINT NOT NULL, TIME BIGINT, BROKER_NAME VARCHAR(250), PRIMARY KEY (ID))"
        );
        let indexes = [
            (m, "MIDX", "MSGID_PROD, MSGID_SEQ"),
            (m, "CIDX", "CONTAINER"),
            (m, "EIDX", "EXPIRATION"),
            (m, "PIDX", "PRIORITY"),
            (m, "XIDX", "XID"),
            (m, "CPIDX", "CONTAINER, PRIORITY, ID"),
            (a, "XIDX", "XID"),
        ];
        match self.dialect {
            Dialect::MySql => {
                // MySQL has no CREATE INDEX IF NOT EXISTS: the indexes go inside the CREATE
                // TABLE, which does nothing when the table (ActiveMQ's, say) exists. The
                // binary no-pad collation keeps names exact, as in the native format.
                let table =
                    format!(" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={mysql_collation}");
                let with = |ddl: String, t: &str| {
                    let idx: Vec<String> = indexes
                        .iter()
                        .filter(|(on, _, _)| on.as_str() == t)
                        .map(|(on, n, cols)| format!(", INDEX {on}_{n} ({cols})"))
                        .collect();
                    let body = ddl.trim_end_matches(')');
                    format!("{body}){}){table}", idx.concat())
                };
                vec![with(msgs, m), with(acks, a), format!("{lock}{table}")]
            }
            Dialect::Postgres | Dialect::Sqlite => {
                let mut out = vec![msgs, acks, lock];
                for (on, n, cols) in indexes {
                    out.push(format!(
                        "CREATE INDEX IF NOT EXISTS {on}_{n} ON {on} ({cols})"
                    ));
                }
                out
            }
        }
    }

    /// How an insert skips rows whose key exists: the words after `INSERT` and after the
    /// values.
    fn skip_duplicates(&self) -> (&'static str, &'static str) {
        match self.dialect {
            Dialect::MySql => ("IGNORE ", ""),
            Dialect::Postgres | Dialect::Sqlite => ("", " ON CONFLICT DO NOTHING"),
        }
    }

    /// A multi-row insert of `n` messages (the columns of ActiveMQ's add statement), duplicates
    /// skipped.
    pub fn insert_messages(&self, n: usize) -> Sql {
        let (ignore, on_conflict) = self.skip_duplicates();
        let rows = vec!["(?, ?, ?, ?, ?, ?, ?, NULL)"; n].join(", ");
        self.sql(&format!(
            "INSERT {ignore}INTO {}(ID, MSGID_PROD, MSGID_SEQ, CONTAINER, EXPIRATION, PRIORITY, MSG, XID) VALUES {rows}{on_conflict}",
            self.msgs
        ))
    }

    /// A multi-row insert of `n` pending rows, duplicates skipped.
    pub fn insert_pendings(&self, n: usize) -> Sql {
        let (ignore, on_conflict) = self.skip_duplicates();
        let rows = vec!["(?, ?, ?)"; n].join(", ");
        self.sql(&format!(
            "INSERT {ignore}INTO {}(SUB_ID, PRIORITY, MSG_ID) VALUES {rows}{on_conflict}",
            self.pending
        ))
    }

    /// Counts the lock row with a plain read, which never waits for the row lock a database
    /// locker holds (an `INSERT IGNORE` of the row would).
    pub fn lock_row_count(&self) -> Sql {
        self.sql(&format!("SELECT COUNT(*) FROM {} WHERE ID = 1", self.lock))
    }

    /// Inserts the single lock row.
    pub fn insert_lock_row(&self) -> Sql {
        if self.format == MessageFormat::OpenWire {
            return self.sql(&format!("INSERT INTO {}(ID) VALUES (1)", self.lock));
        }
        self.sql(&format!(
            "INSERT INTO {}(ID, EPOCH) VALUES (1, 0)",
            self.lock
        ))
    }

    /// Adds the fencing column to a lock table that ActiveMQ itself created.
    pub fn add_epoch_column(&self) -> String {
        format!(
            "ALTER TABLE {} ADD EPOCH BIGINT DEFAULT 0 NOT NULL",
            self.lock
        )
    }

    /// The DDL that drops this prefix's tables (tests and `delete_all` of a throwaway schema).
    pub fn drop_schema(&self) -> Vec<String> {
        [&self.pending, &self.msgs, &self.acks, &self.lock]
            .iter()
            .map(|t| format!("DROP TABLE IF EXISTS {t}"))
            .collect()
    }

    /// The database's clock in milliseconds since the epoch, as SQL.
    pub fn db_now_ms(&self) -> &'static str {
        match self.dialect {
            Dialect::MySql => "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
            Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        }
    }

    /// Builds an ad-hoc statement (the lockers') with this store's placeholder style.
    pub fn sql(&self, text: &str) -> Sql {
        renumber(self.dialect, text).into()
    }
}

/// Rewrites `?` placeholders to PostgreSQL's `$1, $2, ...`. No statement here has a `?`
/// inside a literal.
fn renumber(dialect: Dialect, text: &str) -> String {
    if dialect != Dialect::Postgres {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered() {
        assert_eq!(
            renumber(Dialect::Postgres, "a = ? AND b = ?"),
            "a = $1 AND b = $2"
        );
        assert_eq!(renumber(Dialect::MySql, "a = ?"), "a = ?");
    }

    #[test]
    fn prefixes_are_identifiers() {
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("AMQ_1_").is_ok());
        for bad in [
            "1abc",
            "a;DROP",
            "a b",
            "ä",
            "x'",
            "abcdefghijklmnopqrstuvwxyz",
        ] {
            assert!(validate_prefix(bad).is_err(), "{bad}");
        }
    }
}
