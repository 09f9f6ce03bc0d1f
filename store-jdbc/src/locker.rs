//! Master election on a shared database: who may write.
//!
//! - [`LockerKind::Lease`] (the default): the lock row holds the owner and an expiry in the
//!   database's own clock. The master renews at most every third of the lease, in short
//!   transactions; each acquisition adds one to the row's `EPOCH`, and every write
//!   transaction of a store behind the [`Fence`] checks that epoch under a share lock, so a
//!   master that was deposed while frozen cannot write (ActiveMQ's lease locker has no such
//!   fence: its pain point 10). A master that cannot renew stops itself before its lease can
//!   expire, timed by its own monotonic clock from the last renewal that succeeded. The fence
//!   also carries an idle-transaction limit of half the lease, which the store's writer sets
//!   on its connection: a master frozen inside a write transaction holds the share lock that
//!   the slave's take must wait for, and without the limit the server would keep it for hours.
//! - [`LockerKind::Database`]: ActiveMQ's `DefaultDatabaseLocker`, for compatibility: `SELECT
//!   ... FOR UPDATE` on the lock row, in a transaction held open on a dedicated connection for
//!   the master's life, with a keep-alive `UPDATE` of `TIME` on it. Losing the connection loses
//!   the lock. Waits are bounded by a lock timeout and retried, so a waiting slave can stop.
//!   It cannot fence by epoch (the held row lock would block the check), so between the
//!   database dropping a dead connection and the master's next keep-alive both could write:
//!   use the lease locker where that matters.
//!
//! On SQLite, the database locker is an exclusive `flock` on `<database file>.lock` (holding a
//! SQLite write transaction would block the store itself) and the lease locker is the same
//! lease row, updated in `BEGIN IMMEDIATE` transactions.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::MessageFormat;
use crate::error::JdbcError;
use crate::fence::Fence;
use crate::sql::{Arg, Conn, Dialect, Options, redact};
use crate::statements::Statements;

/// Which locker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockerKind {
    Database,
    Lease,
}

#[derive(Debug, Clone)]
pub struct LockerConfig {
    pub url: String,
    pub table_prefix: String,
    pub kind: LockerKind,
    /// Names this broker in `BROKER_NAME`; a unique suffix is added per process so two brokers
    /// with one config never mistake each other's lease for their own.
    pub broker_name: String,
    /// How long a lease lasts (lease locker). Default 10 s.
    pub lease: Duration,
    /// How often the master renews (lease) or runs its keep-alive (database). At most a third
    /// of the lease; default a third.
    pub keep_alive: Option<Duration>,
    /// How long a slave waits between attempts (and, for the database locker, the lock-wait
    /// timeout of one attempt). Default 1 s.
    pub acquire_retry: Duration,
    /// Create the tables when missing. Default true.
    pub create_tables_on_startup: bool,
    /// The store's message format: with `OpenWire` the tables are ActiveMQ's exactly, so the
    /// lock row has no `EPOCH` and only the database locker can run.
    pub message_format: MessageFormat,
}

impl LockerConfig {
    pub fn new(url: impl Into<String>, kind: LockerKind) -> Self {
        LockerConfig {
            url: url.into(),
            table_prefix: String::new(),
            kind,
            broker_name: "broker".into(),
            lease: Duration::from_secs(10),
            keep_alive: None,
            acquire_retry: Duration::from_secs(1),
            create_tables_on_startup: true,
            message_format: MessageFormat::Native,
        }
    }

    fn keep_alive(&self) -> Duration {
        self.keep_alive.unwrap_or(self.lease / 3)
    }

    fn validate(&self) -> Result<(), JdbcError> {
        if self.kind == LockerKind::Lease && self.message_format == MessageFormat::OpenWire {
            return Err(JdbcError::Config(
                "the lease locker needs the lock row's EPOCH column, which ActiveMQ's schema (message_format = \"openwire\") does not have; use the database locker".into(),
            ));
        }
        if self.kind == LockerKind::Lease && self.keep_alive() > self.lease / 3 {
            return Err(JdbcError::Config(format!(
                "locker keep_alive {:?} is more than a third of the lease {:?}: a missed renewal would let the lease lapse",
                self.keep_alive(),
                self.lease
            )));
        }
        if self.lease < Duration::from_millis(300) {
            return Err(JdbcError::Config(format!(
                "locker lease {:?} is too short; use at least 300 ms",
                self.lease
            )));
        }
        if self.acquire_retry.is_zero() {
            return Err(JdbcError::Config(
                "locker acquire_retry must be above zero".into(),
            ));
        }
        Ok(())
    }
}

fn db(dialect: Dialect, doing: &str, e: sqlx::Error) -> JdbcError {
    JdbcError::Database {
        dialect: dialect.name(),
        doing: doing.to_string(),
        source: e,
    }
}

/// A held lock: the master's. Dropping it stops the keep-alive without releasing (the lease
/// then lapses, the row lock goes with the connection); [`MasterLock::release`] hands it over
/// at once.
pub struct MasterLock {
    fence: Fence,
    lost: watch::Receiver<Option<String>>,
    stop: watch::Sender<Stop>,
    task: Option<JoinHandle<()>>,
    owner: String,
    epoch: Option<i64>,
    connection_id: Option<i64>,
    took_over: bool,
}

impl std::fmt::Debug for MasterLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterLock")
            .field("owner", &self.owner)
            .field("epoch", &self.epoch)
            .field("held", &self.fence.is_held())
            .finish()
    }
}

impl MasterLock {
    /// The fence to give the stores this lock guards.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// The unique owner name written in the lock row.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The epoch this master holds (lease locker).
    pub fn epoch(&self) -> Option<i64> {
        self.epoch
    }

    pub fn is_held(&self) -> bool {
        self.fence.is_held()
    }

    /// The server's id of the connection holding the row lock (database locker on MySQL or
    /// PostgreSQL): what an operator (or a test) kills to force a fail-over.
    pub fn connection_id(&self) -> Option<i64> {
        self.connection_id
    }

    /// True when this broker took the lock from a master that did not give it up cleanly, so
    /// that deliveries it made may never have been acknowledged in the store:
    ///
    /// - lease: the lease row still named a holder (a clean release clears the name), whether
    ///   this broker waited for the lease to lapse or started after its holder died;
    /// - database row lock: another session held the row when this broker first asked, without
    ///   waiting (`FOR UPDATE NOWAIT`). The blocking attempts that follow can succeed the moment
    ///   the holder's connection dies, so "my first attempt succeeded" is no evidence that
    ///   nobody held it. A holder that died before this broker first asked leaves no trace in
    ///   the row (its updates are never committed): use the lease locker where that matters;
    /// - SQLite file lock: the lock file names a holder that did not mark it released.
    pub fn took_over(&self) -> bool {
        self.took_over
    }

    /// Resolves when the lock is lost, with why. The fence is already revoked by then.
    pub async fn lost(&mut self) -> String {
        loop {
            if let Some(why) = self.lost.borrow().clone() {
                return why;
            }
            if self.lost.changed().await.is_err() {
                return "the locker's keep-alive task ended".into();
            }
        }
    }

    /// Stops renewing without releasing or revoking, as a process that froze would: the fence
    /// still says held, the lease runs out in the database. For fail-over tests.
    pub fn abandon(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Gives the lock up: the fence is revoked first, then the row is released so a slave can
    /// take over at once, and as no take-over.
    pub async fn release(self) {
        self.hand_over(Stop::Release).await;
    }

    /// Gives the lock up at once as [`MasterLock::release`] does, but marked as a take-over for
    /// the next holder (see [`MasterLock::took_over`]): this master stops with deliveries its
    /// clients never acknowledged. The lease keeps this holder's name; the SQLite lock file is
    /// not marked released. The database row lock can carry nothing: it is a plain release.
    pub async fn release_unsettled(self) {
        self.hand_over(Stop::ReleaseUnsettled).await;
    }

    async fn hand_over(mut self, how: Stop) {
        self.fence.revoke();
        let _ = self.stop.send(how);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// What the keep-alive task of a held lock is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Hold,
    Release,
    ReleaseUnsettled,
}

impl Drop for MasterLock {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            self.fence.revoke();
            t.abort();
        }
    }
}

/// Waits until this broker is master, logging while it waits as a slave.
pub async fn acquire(config: &LockerConfig) -> Result<MasterLock, JdbcError> {
    config.validate()?;
    let options = Options::parse(&config.url)?;
    let st = Statements::new(
        options.dialect(),
        &config.table_prefix,
        config.message_format,
    )?;
    if config.create_tables_on_startup {
        // The store's open creates the same schema; doing it here lets a slave wait on a
        // database nobody has used yet.
        let mut conn = options
            .connect()
            .await
            .map_err(|e| db(st.dialect, "connecting the locker", e))?;
        crate::store::create_schema(&mut conn, &st)
            .await
            .map_err(|e| JdbcError::LockLost(format!("creating the lock table: {e}")))?;
        let _ = conn.close().await;
    }
    let owner = format!(
        "{}#{}-{:x}",
        config.broker_name.chars().take(200).collect::<String>(),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    );
    match (config.kind, st.dialect) {
        (LockerKind::Lease, _) => lease::acquire(config, options, st, owner).await,
        (LockerKind::Database, Dialect::Sqlite) => file_lock::acquire(config, owner).await,
        (LockerKind::Database, _) => row_lock::acquire(config, options, st, owner).await,
    }
}

fn spawn_lock(
    fence: Fence,
    owner: String,
    epoch: Option<i64>,
    run: impl FnOnce(watch::Sender<Option<String>>, watch::Receiver<Stop>) -> JoinHandle<()>,
) -> MasterLock {
    let (lost_tx, lost_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(Stop::Hold);
    let task = run(lost_tx, stop_rx);
    MasterLock {
        fence,
        lost: lost_rx,
        stop: stop_tx,
        task: Some(task),
        owner,
        epoch,
        connection_id: None,
        took_over: false,
    }
}

/// A slave's attempts at a lock someone else holds: what it logs, the same for every locker.
/// The first refusal is one INFO line (the caller's words, which name the holder or the file);
/// every refusal is a debug line `slave: lock attempt N found it held` on target `locker`, for
/// whoever must know the slave is still trying (the fail-over tests wait for a few before
/// checking that a slave never serves).
#[derive(Debug, Default)]
pub struct SlaveWait {
    attempts: u64,
}

impl SlaveWait {
    /// One more attempt found the lock held; `first` logs the INFO line on the first one.
    pub fn held(&mut self, first: impl FnOnce()) {
        if self.attempts == 0 {
            first();
        }
        self.attempts += 1;
        debug!(target: "locker", "slave: lock attempt {} found it held", self.attempts);
    }

    /// Whether this broker waited for the lock at all.
    pub fn waited(&self) -> bool {
        self.attempts > 0
    }
}

/// The statement that bounds a session's lock waits to `retry` (MySQL: whole seconds, at
/// least one), so that a slave's attempt returns, and is retried (or stopped), instead of
/// sitting in one statement for as long as a rival holds the row.
fn lock_wait_limit(dialect: Dialect, retry: Duration) -> Option<String> {
    let ms = retry.as_millis().clamp(1, 1 << 40);
    match dialect {
        Dialect::MySql => Some(format!(
            "SET SESSION innodb_lock_wait_timeout = {}",
            ms.div_ceil(1000)
        )),
        Dialect::Postgres => Some(format!("SET lock_timeout = {ms}")),
        // SQLite waits by its busy timeout.
        Dialect::Sqlite => None,
    }
}

/// Marks the lock lost: revoke first, then tell whoever waits.
fn lose(fence: &Fence, lost: &watch::Sender<Option<String>>, why: String) {
    fence.revoke();
    warn!(target: "locker", "lost the master lock: {why}");
    let _ = lost.send(Some(why));
}

mod lease {
    use super::*;

    pub(super) async fn acquire(
        config: &LockerConfig,
        options: Options,
        st: Statements,
        owner: String,
    ) -> Result<MasterLock, JdbcError> {
        let now = st.db_now_ms();
        let take = st.sql(&format!(
            "UPDATE {} SET BROKER_NAME = ?, TIME = {now} + ?, EPOCH = EPOCH + 1 WHERE ID = 1 AND (TIME IS NULL OR TIME < {now})",
            st.lock
        ));
        let read = st.sql(&format!(
            "SELECT EPOCH, BROKER_NAME, TIME - {now} FROM {} WHERE ID = 1",
            st.lock
        ));
        // The holder before the take: a clean release clears BROKER_NAME, so a name still there
        // when the take succeeds is a master that died or froze holding the lease.
        let holder = st.sql(&format!("SELECT BROKER_NAME FROM {} WHERE ID = 1", st.lock));
        let lease_ms = config.lease.as_millis().min(i64::MAX as u128) as i64;
        // The take waits for the row while a master's write transaction share-locks it; the
        // wait is bounded so that the attempt is retried, not hung.
        let wait_limit = lock_wait_limit(st.dialect, config.acquire_retry);
        let mut conn: Option<Conn> = None;
        let mut wait = SlaveWait::default();
        loop {
            let c = match conn.take() {
                Some(c) => c,
                None => {
                    let opened = async {
                        let mut c = options.connect().await?;
                        if let Some(t) = &wait_limit {
                            c.raw(t).await?;
                        }
                        Ok::<Conn, sqlx::Error>(c)
                    }
                    .await;
                    match opened {
                        Ok(c) => c,
                        Err(e) => {
                            warn!(target: "locker", "cannot reach {}: {e}; retrying", redact(&config.url));
                            tokio::time::sleep(config.acquire_retry).await;
                            continue;
                        }
                    }
                }
            };
            let mut c = c;
            let started = Instant::now();
            let attempt: Result<Option<(i64, bool)>, sqlx::Error> = async {
                c.raw(st.begin).await?;
                let previous = match c.fetch_one(&holder, &[]).await? {
                    Some(r) => r.opt_string(0)?,
                    None => None,
                };
                let n = c
                    .execute(&take, &[Arg::Str(&owner), Arg::I64(lease_ms)])
                    .await?;
                let row = c.fetch_one(&read, &[]).await?;
                c.raw("COMMIT").await?;
                match row {
                    Some(r) if n == 1 => Ok(Some((r.i64(0)?, previous.is_some()))),
                    Some(r) => {
                        let (holder, expires) = (r.opt_string(1)?, r.opt_i64(2)?);
                        wait.held(|| {
                            info!(
                                target: "locker",
                                "slave: waiting for the lease held by {holder:?} (expires in {expires:?} ms)"
                            );
                        });
                        Ok(None)
                    }
                    None => Ok(None),
                }
            }
            .await;
            match attempt {
                Ok(Some((epoch, unreleased))) => {
                    info!(target: "locker", "master: took the lease as {owner}, epoch {epoch}");
                    let fence = Fence::new();
                    // Half the lease: a frozen master's transaction ends before its lease
                    // does, so it never delays the take-over, and a live master's writer,
                    // which never idles inside one, has a wide margin.
                    fence.limit_idle_transactions(config.lease / 2);
                    fence.grant(Some(epoch));
                    let renew = LeaseRenewer {
                        renew: st.sql(&format!(
                            "UPDATE {} SET TIME = {now} + ? WHERE ID = 1 AND BROKER_NAME = ? AND EPOCH = ?",
                            st.lock
                        )),
                        release: st.sql(&format!(
                            "UPDATE {} SET BROKER_NAME = NULL, TIME = 0 WHERE ID = 1 AND BROKER_NAME = ? AND EPOCH = ?",
                            st.lock
                        )),
                        release_unsettled: st.sql(&format!(
                            "UPDATE {} SET TIME = 0 WHERE ID = 1 AND BROKER_NAME = ? AND EPOCH = ?",
                            st.lock
                        )),
                        options,
                        conn: Some(c),
                        owner: owner.clone(),
                        epoch,
                        lease: config.lease,
                        lease_ms,
                        keep_alive: config.keep_alive(),
                        last_ok: started,
                        dialect: st.dialect,
                    };
                    let f = fence.clone();
                    let mut lock = spawn_lock(fence, owner, Some(epoch), move |lost, stop| {
                        tokio::spawn(renew.run(f, lost, stop))
                    });
                    lock.took_over = unreleased;
                    return Ok(lock);
                }
                Ok(None) => conn = Some(c),
                Err(e) => {
                    warn!(target: "locker", "lease attempt failed: {}; retrying", db(st.dialect, "taking the lease", e));
                    let _ = c.raw("ROLLBACK").await;
                }
            }
            tokio::time::sleep(config.acquire_retry).await;
        }
    }

    struct LeaseRenewer {
        renew: crate::sql::Sql,
        release: crate::sql::Sql,
        release_unsettled: crate::sql::Sql,
        options: Options,
        conn: Option<Conn>,
        owner: String,
        epoch: i64,
        lease: Duration,
        lease_ms: i64,
        keep_alive: Duration,
        /// When the last renewal that succeeded was sent: the lease runs at least a lease
        /// from there, in the database's time and so (clock rates being equal) in ours.
        last_ok: Instant,
        dialect: Dialect,
    }

    impl LeaseRenewer {
        /// The moment this master must have stopped writing: the lease from the last renewal,
        /// less a keep-alive period of margin.
        fn deadline(&self) -> Instant {
            self.last_ok + self.lease.saturating_sub(self.keep_alive)
        }

        async fn run(
            mut self,
            fence: Fence,
            lost: watch::Sender<Option<String>>,
            mut stop: watch::Receiver<Stop>,
        ) {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(self.keep_alive) => {}
                    changed = stop.changed() => {
                        // The lock dropped without a release (its holder gone without a clean
                        // stop): the lease is left to lapse, so the next master takes over as
                        // from one that died. Releasing here, racing the task's abort, marked
                        // such a stop clean (the flaky `*_lease_taken_over_from_a_dead_holder`).
                        if changed.is_err() {
                            return;
                        }
                        let unsettled = *stop.borrow() == Stop::ReleaseUnsettled;
                        self.release(unsettled).await;
                        return;
                    }
                }
                let sent = Instant::now();
                let budget = self.deadline().saturating_duration_since(sent);
                let outcome = tokio::time::timeout(budget, self.renew_once()).await;
                match outcome {
                    Ok(Ok(true)) => self.last_ok = sent,
                    Ok(Ok(false)) => {
                        return lose(
                            &fence,
                            &lost,
                            format!(
                                "the lease row no longer names {} at epoch {}: another broker took over",
                                self.owner, self.epoch
                            ),
                        );
                    }
                    Ok(Err(e)) => {
                        self.conn = None;
                        warn!(target: "locker", "renewal failed: {}", db(self.dialect, "renewing the lease", e));
                    }
                    Err(_) => self.conn = None,
                }
                if Instant::now() >= self.deadline() {
                    return lose(
                        &fence,
                        &lost,
                        format!(
                            "no renewal succeeded for {:?}; stopping before the lease of {:?} can expire",
                            self.last_ok.elapsed(),
                            self.lease
                        ),
                    );
                }
            }
        }

        async fn renew_once(&mut self) -> Result<bool, sqlx::Error> {
            let mut c = match self.conn.take() {
                Some(c) => c,
                None => self.options.connect().await?,
            };
            let n = c
                .execute(
                    &self.renew,
                    &[
                        Arg::I64(self.lease_ms),
                        Arg::Str(&self.owner),
                        Arg::I64(self.epoch),
                    ],
                )
                .await?;
            self.conn = Some(c);
            Ok(n == 1)
        }

        /// Ends the lease at once. An unsettled release keeps this holder's name in the row, so
        /// the next holder knows it takes over.
        async fn release(&mut self, unsettled: bool) {
            let r = async {
                let mut c = match self.conn.take() {
                    Some(c) => c,
                    None => self.options.connect().await?,
                };
                let sql = if unsettled {
                    &self.release_unsettled
                } else {
                    &self.release
                };
                c.execute(sql, &[Arg::Str(&self.owner), Arg::I64(self.epoch)])
                    .await?;
                let _ = c.close().await;
                Ok::<_, sqlx::Error>(())
            };
            match tokio::time::timeout(self.keep_alive, r).await {
                Ok(Ok(())) => info!(target: "locker", "released the lease"),
                _ => warn!(target: "locker", "could not release the lease; it will lapse"),
            }
        }
    }
}

mod row_lock {
    use super::*;

    pub(super) async fn acquire(
        config: &LockerConfig,
        options: Options,
        st: Statements,
        owner: String,
    ) -> Result<MasterLock, JdbcError> {
        let select = st.sql(&format!(
            "SELECT ID FROM {} WHERE ID = 1 FOR UPDATE",
            st.lock
        ));
        // The first question is asked without waiting: a blocking attempt that returns the row
        // may have waited in the server until the holder died, which looks exactly like a free
        // lock. (MariaDB 10.3+, MySQL 8, PostgreSQL all take NOWAIT.)
        let probe = st.sql(&format!(
            "SELECT ID FROM {} WHERE ID = 1 FOR UPDATE NOWAIT",
            st.lock
        ));
        let timeout = lock_wait_limit(st.dialect, config.acquire_retry);
        let mut wait = SlaveWait::default();
        let mut asked = false;
        loop {
            let mut c = match options.connect().await {
                Ok(c) => c,
                Err(e) => {
                    warn!(target: "locker", "cannot reach {}: {e}; retrying", redact(&config.url));
                    tokio::time::sleep(config.acquire_retry).await;
                    continue;
                }
            };
            let attempt = async {
                if let Some(t) = &timeout {
                    c.raw(t).await?;
                }
                c.raw("BEGIN").await?;
                let question = if asked { &select } else { &probe };
                asked = true;
                c.fetch(question, &[]).await
            }
            .await;
            let id_sql = st.sql(match st.dialect {
                Dialect::MySql => "SELECT CAST(CONNECTION_ID() AS SIGNED)",
                _ => "SELECT CAST(pg_backend_pid() AS BIGINT)",
            });
            let attempt = match attempt {
                Ok(_) => c.scalar(&id_sql, &[]).await,
                Err(e) => Err(e),
            };
            match attempt {
                Ok(connection_id) => {
                    info!(target: "locker", "master: holding the lock row as {owner}");
                    let fence = Fence::new();
                    fence.grant(None);
                    let keep = st.sql(&format!(
                        "UPDATE {} SET TIME = ?, BROKER_NAME = ? WHERE ID = 1",
                        st.lock
                    ));
                    let (dialect, period) = (st.dialect, config.keep_alive());
                    let f = fence.clone();
                    let o = owner.clone();
                    let mut lock = spawn_lock(fence, owner, None, move |lost, mut stop| {
                        tokio::spawn(async move {
                            loop {
                                let now = std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .map(|d| d.as_millis() as i64)
                                    .unwrap_or(0);
                                let r = tokio::time::timeout(
                                    period.max(Duration::from_millis(100)),
                                    c.execute(&keep, &[Arg::I64(now), Arg::Str(&o)]),
                                )
                                .await;
                                match r {
                                    Ok(Ok(1)) => {}
                                    Ok(Ok(n)) => {
                                        return lose(
                                            &f,
                                            &lost,
                                            format!("keep-alive updated {n} lock rows"),
                                        );
                                    }
                                    Ok(Err(e)) => {
                                        return lose(
                                            &f,
                                            &lost,
                                            db(dialect, "keeping the lock row alive", e)
                                                .to_string(),
                                        );
                                    }
                                    Err(_) => {
                                        return lose(&f, &lost, "keep-alive timed out".into());
                                    }
                                }
                                tokio::select! {
                                    _ = tokio::time::sleep(period) => {}
                                    _ = stop.changed() => {
                                        let _ = c.raw("ROLLBACK").await;
                                        let _ = c.close().await;
                                        info!(target: "locker", "released the lock row");
                                        return;
                                    }
                                }
                            }
                        })
                    });
                    lock.connection_id = connection_id;
                    lock.took_over = wait.waited();
                    return Ok(lock);
                }
                Err(e) => {
                    wait.held(|| {
                        info!(target: "locker", "slave: the lock row is held by another broker; waiting ({e})");
                    });
                    let _ = c.raw("ROLLBACK").await;
                    let _ = c.close().await;
                }
            }
        }
    }
}

mod file_lock {
    use super::*;
    use rustix::fs::{FlockOperation, flock};

    /// The line a holder that stops cleanly appends to the lock file.
    const RELEASED: &str = "released";

    /// The SQLite database file of a `sqlite:` URL.
    fn database_path(url: &str) -> Result<PathBuf, JdbcError> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let path = rest.split('?').next().unwrap_or(rest);
        if path.is_empty() || path == ":memory:" {
            return Err(JdbcError::Config(format!(
                "url `{url}`: a SQLite locker needs a database file"
            )));
        }
        Ok(PathBuf::from(path))
    }

    pub(super) async fn acquire(
        config: &LockerConfig,
        owner: String,
    ) -> Result<MasterLock, JdbcError> {
        let mut path = database_path(&config.url)?.into_os_string();
        path.push(".lock");
        let path = PathBuf::from(path);
        let mut wait = SlaveWait::default();
        loop {
            let file: File = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| JdbcError::LockLost(format!("opening {}: {e}", path.display())))?;
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {
                    info!(target: "locker", "master: holding {} as {owner}", path.display());
                    // A holder that stopped cleanly appended `released`; one that did not may
                    // have delivered messages whose acks never reached the database.
                    let previous = std::fs::read_to_string(&path).unwrap_or_default();
                    let unreleased = previous.lines().next().is_some_and(|l| !l.is_empty())
                        && !previous.lines().any(|l| l == RELEASED);
                    let _ = std::fs::write(&path, format!("{owner}\n"));
                    let released_path = path.clone();
                    let fence = Fence::new();
                    fence.grant(None);
                    let mut lock = spawn_lock(fence, owner, None, move |_lost, mut stop| {
                        tokio::spawn(async move {
                            // The lock lives as long as the open file.
                            let _ = stop.changed().await;
                            if *stop.borrow() != Stop::Release {
                                drop(file);
                                return;
                            }
                            let mark = OpenOptions::new()
                                .append(true)
                                .open(&released_path)
                                .and_then(|mut f| {
                                    std::io::Write::write_all(
                                        &mut f,
                                        format!("{RELEASED}\n").as_bytes(),
                                    )
                                });
                            if let Err(e) = mark {
                                warn!(target: "locker", "cannot mark {} released: {e}", released_path.display());
                            }
                            drop(file);
                        })
                    });
                    lock.took_over = unreleased;
                    return Ok(lock);
                }
                Err(e) => wait.held(|| {
                    info!(target: "locker", "slave: {} is locked by another broker ({e}); waiting", path.display());
                }),
            }
            tokio::time::sleep(config.acquire_retry).await;
        }
    }
}
