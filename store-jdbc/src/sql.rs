//! One small seam over sqlx's three drivers: a pool, a dedicated connection and a row, each an
//! enum over MySQL, PostgreSQL and SQLite, and bind values of the four kinds the tables use.
//!
//! The store's logic is written once against this seam; what differs between databases is the
//! SQL text, which [`crate::statements`] builds per dialect. sqlx's `Any` driver would do the
//! same dispatch, but it passes placeholders through unchanged and maps MySQL blobs differently
//! across versions; owning the dispatch keeps every type exact.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row as _};

use crate::error::JdbcError;

/// The SQL dialect, chosen by the URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    MySql,
    Postgres,
    Sqlite,
}

impl Dialect {
    /// The dialect of a connection URL: `mysql://` or `mariadb://`, `postgres://` or
    /// `postgresql://`, `sqlite:`.
    pub fn of_url(url: &str) -> Result<Dialect, JdbcError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "mysql" | "mariadb" => Ok(Dialect::MySql),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "sqlite" => Ok(Dialect::Sqlite),
            _ => Err(JdbcError::Config(format!(
                "url `{}`: the scheme must be mysql://, mariadb://, postgres:// or sqlite:",
                redact(url)
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::MySql => "mysql",
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }
}

/// A URL with its password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A bind value.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    I64(i64),
    Str(&'a str),
    OptStr(Option<&'a str>),
    Bytes(&'a [u8]),
}

/// A statement's text, built once per store.
pub type Sql = Arc<str>;

macro_rules! bind_all {
    ($sql:expr, $args:expr) => {{
        let mut q = sqlx::query(AssertSqlSafe($sql.clone()));
        for a in $args {
            q = match *a {
                Arg::I64(v) => q.bind(v),
                Arg::Str(s) => q.bind(s),
                Arg::OptStr(s) => q.bind(s),
                Arg::Bytes(b) => q.bind(b),
            };
        }
        q
    }};
}

/// How a connection is opened, per dialect.
#[derive(Debug, Clone)]
pub enum Options {
    MySql(MySqlConnectOptions),
    Postgres(PgConnectOptions),
    Sqlite(SqliteConnectOptions),
}

impl Options {
    pub fn parse(url: &str) -> Result<Options, JdbcError> {
        let bad = |e: sqlx::Error| {
            JdbcError::Config(format!("url `{}` cannot be used: {e}", redact(url)))
        };
        Ok(match Dialect::of_url(url)? {
            Dialect::MySql => Options::MySql(
                MySqlConnectOptions::from_str(&url.replacen("mariadb://", "mysql://", 1))
                    .map_err(bad)?
                    .charset("utf8mb4")
                    .disable_statement_logging(),
            ),
            Dialect::Postgres => Options::Postgres(
                PgConnectOptions::from_str(url)
                    .map_err(bad)?
                    .disable_statement_logging(),
            ),
            Dialect::Sqlite => Options::Sqlite(
                SqliteConnectOptions::from_str(url)
                    .map_err(bad)?
                    .create_if_missing(true)
                    // WAL lets the reader pool run beside the one writer; FULL makes a commit
                    // durable when it returns, which NORMAL does not in WAL mode.
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .disable_statement_logging(),
            ),
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Options::MySql(_) => Dialect::MySql,
            Options::Postgres(_) => Dialect::Postgres,
            Options::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Opens one connection outside any pool: the writer's and the locker's, which must not be
    /// recycled under them.
    pub async fn connect(&self) -> Result<Conn, sqlx::Error> {
        Ok(match self {
            Options::MySql(o) => Conn::MySql(MySqlConnection::connect_with(o).await?),
            Options::Postgres(o) => Conn::Postgres(PgConnection::connect_with(o).await?),
            Options::Sqlite(o) => Conn::Sqlite(SqliteConnection::connect_with(o).await?),
        })
    }

    /// A pool of at most `size` connections, opened lazily.
    pub fn pool(&self, size: u32, acquire_timeout: Duration) -> Pool {
        match self {
            Options::MySql(o) => Pool::MySql(
                MySqlPoolOptions::new()
                    .max_connections(size)
                    .acquire_timeout(acquire_timeout)
                    .connect_lazy_with(o.clone()),
            ),
            Options::Postgres(o) => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(size)
                    .acquire_timeout(acquire_timeout)
                    .connect_lazy_with(o.clone()),
            ),
            Options::Sqlite(o) => Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(size)
                    .acquire_timeout(acquire_timeout)
                    .connect_lazy_with(o.clone()),
            ),
        }
    }
}

/// A pool of connections for reads.
#[derive(Debug, Clone)]
pub enum Pool {
    MySql(sqlx::MySqlPool),
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

/// One connection held by its owner.
#[derive(Debug)]
pub enum Conn {
    MySql(MySqlConnection),
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// A result row.
pub enum Row {
    MySql(MySqlRow),
    Postgres(PgRow),
    Sqlite(SqliteRow),
}

macro_rules! executor_methods {
    () => {
        /// Runs a statement; returns the number of rows it changed.
        pub async fn execute(&mut self, sql: &Sql, args: &[Arg<'_>]) -> Result<u64, sqlx::Error> {
            Ok(match self.inner() {
                Inner::MySql(e) => bind_all!(sql, args).execute(e).await?.rows_affected(),
                Inner::Postgres(e) => bind_all!(sql, args).execute(e).await?.rows_affected(),
                Inner::Sqlite(e) => bind_all!(sql, args).execute(e).await?.rows_affected(),
            })
        }

        /// Runs a query and returns every row. Every caller bounds the rows with `LIMIT` or
        /// asks for an aggregate.
        pub async fn fetch(
            &mut self,
            sql: &Sql,
            args: &[Arg<'_>],
        ) -> Result<Vec<Row>, sqlx::Error> {
            Ok(match self.inner() {
                Inner::MySql(e) => bind_all!(sql, args)
                    .fetch_all(e)
                    .await?
                    .into_iter()
                    .map(Row::MySql)
                    .collect(),
                Inner::Postgres(e) => bind_all!(sql, args)
                    .fetch_all(e)
                    .await?
                    .into_iter()
                    .map(Row::Postgres)
                    .collect(),
                Inner::Sqlite(e) => bind_all!(sql, args)
                    .fetch_all(e)
                    .await?
                    .into_iter()
                    .map(Row::Sqlite)
                    .collect(),
            })
        }

        /// The first row, if any.
        pub async fn fetch_one(
            &mut self,
            sql: &Sql,
            args: &[Arg<'_>],
        ) -> Result<Option<Row>, sqlx::Error> {
            Ok(self.fetch(sql, args).await?.into_iter().next())
        }

        /// A query whose first row's first column is a BIGINT (a count, an id).
        pub async fn scalar(
            &mut self,
            sql: &Sql,
            args: &[Arg<'_>],
        ) -> Result<Option<i64>, sqlx::Error> {
            match self.fetch_one(sql, args).await? {
                Some(row) => row.opt_i64(0),
                None => Ok(None),
            }
        }
    };
}

enum Inner<'a> {
    MySql(&'a mut MySqlConnection),
    Postgres(&'a mut PgConnection),
    Sqlite(&'a mut SqliteConnection),
}

enum PoolInner<'a> {
    MySql(&'a sqlx::MySqlPool),
    Postgres(&'a sqlx::PgPool),
    Sqlite(&'a sqlx::SqlitePool),
}

impl Conn {
    fn inner(&mut self) -> Inner<'_> {
        match self {
            Conn::MySql(c) => Inner::MySql(c),
            Conn::Postgres(c) => Inner::Postgres(c),
            Conn::Sqlite(c) => Inner::Sqlite(c),
        }
    }

    executor_methods!();

    /// Runs a statement that is not prepared (transaction control, DDL).
    pub async fn raw(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let sql = AssertSqlSafe(sql.to_string());
        match self {
            Conn::MySql(c) => sqlx::raw_sql(sql).execute(c).await.map(|_| ()),
            Conn::Postgres(c) => sqlx::raw_sql(sql).execute(c).await.map(|_| ()),
            Conn::Sqlite(c) => sqlx::raw_sql(sql).execute(c).await.map(|_| ()),
        }
    }

    /// Asks the server to end this session when it sits idle inside a transaction for
    /// `limit` (MariaDB: whole seconds, rounded up). False where the server has no such
    /// setting (MySQL, SQLite).
    pub async fn limit_idle_transactions(&mut self, limit: Duration) -> Result<bool, sqlx::Error> {
        match self {
            Conn::MySql(_) => {
                let secs = limit.as_millis().div_ceil(1000).clamp(1, 1 << 31);
                match self
                    .raw(&format!("SET SESSION idle_transaction_timeout = {secs}"))
                    .await
                {
                    Ok(()) => Ok(true),
                    // MySQL has no such variable (MariaDB has it since 10.3).
                    Err(sqlx::Error::Database(e))
                        if e.message().contains("Unknown system variable") =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            }
            Conn::Postgres(_) => {
                let ms = limit.as_millis().clamp(1, i32::MAX as u128);
                self.raw(&format!("SET idle_in_transaction_session_timeout = {ms}"))
                    .await
                    .map(|()| true)
            }
            Conn::Sqlite(_) => Ok(false),
        }
    }

    pub async fn close(self) -> Result<(), sqlx::Error> {
        match self {
            Conn::MySql(c) => c.close().await,
            Conn::Postgres(c) => c.close().await,
            Conn::Sqlite(c) => c.close().await,
        }
    }
}

impl Pool {
    fn inner(&self) -> PoolInner<'_> {
        match self {
            Pool::MySql(p) => PoolInner::MySql(p),
            Pool::Postgres(p) => PoolInner::Postgres(p),
            Pool::Sqlite(p) => PoolInner::Sqlite(p),
        }
    }

    pub async fn close(&self) {
        match self {
            Pool::MySql(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
            Pool::Sqlite(p) => p.close().await,
        }
    }
}

// The pool's methods are the connection's, run on whichever pooled connection is free.
impl Pool {
    pub async fn fetch(&self, sql: &Sql, args: &[Arg<'_>]) -> Result<Vec<Row>, sqlx::Error> {
        Ok(match self.inner() {
            PoolInner::MySql(e) => bind_all!(sql, args)
                .fetch_all(e)
                .await?
                .into_iter()
                .map(Row::MySql)
                .collect(),
            PoolInner::Postgres(e) => bind_all!(sql, args)
                .fetch_all(e)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
            PoolInner::Sqlite(e) => bind_all!(sql, args)
                .fetch_all(e)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
        })
    }

    pub async fn fetch_one(&self, sql: &Sql, args: &[Arg<'_>]) -> Result<Option<Row>, sqlx::Error> {
        Ok(self.fetch(sql, args).await?.into_iter().next())
    }

    pub async fn scalar(&self, sql: &Sql, args: &[Arg<'_>]) -> Result<Option<i64>, sqlx::Error> {
        match self.fetch_one(sql, args).await? {
            Some(row) => row.opt_i64(0),
            None => Ok(None),
        }
    }
}

macro_rules! get {
    ($self:expr, $i:expr, $t:ty) => {
        match $self {
            Row::MySql(r) => r.try_get::<$t, _>($i),
            Row::Postgres(r) => r.try_get::<$t, _>($i),
            Row::Sqlite(r) => r.try_get::<$t, _>($i),
        }
    };
}

impl Row {
    pub fn i64(&self, i: usize) -> Result<i64, sqlx::Error> {
        get!(self, i, i64)
    }

    pub fn opt_i64(&self, i: usize) -> Result<Option<i64>, sqlx::Error> {
        get!(self, i, Option<i64>)
    }

    pub fn bytes(&self, i: usize) -> Result<Vec<u8>, sqlx::Error> {
        get!(self, i, Vec<u8>)
    }

    pub fn string(&self, i: usize) -> Result<String, sqlx::Error> {
        get!(self, i, String)
    }

    pub fn opt_string(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
        get!(self, i, Option<String>)
    }
}
