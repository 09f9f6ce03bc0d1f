//! One broker of a replicated group: a member in ZooKeeper, a slave until elected, then the
//! master serving the replicated store.
//!
//! Election, as ActiveMQ's replicated LevelDB chose it: when no master is registered, every
//! live member stops following, publishes its position as a candidate, and once a quorum
//! (`replicas / 2 + 1`) of candidates is visible the newest of them (epoch of its last record,
//! then position; ties to the oldest member) claims the next epoch with a conditional write
//! of `<zk_path>/epoch`. Only one claim of an epoch can succeed; slaves follow only the master
//! of the current epoch and refuse records of any other, so a deposed master cannot reach a
//! quorum.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use store_api::PersistenceAdapter;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zookeeper_client as zk;

use crate::SyncMode;
use crate::apply::Applier;
use crate::error::{ReplicationError, Result};
use crate::follower::{FollowerState, follow};
use crate::log::{Log, SharedLog};
use crate::member::{MemberData, Role};
use crate::position::PositionFile;
use crate::store::ReplicatedStore;

/// How often the election state is read from ZooKeeper.
const POLL: Duration = Duration::from_millis(100);

/// A node's settings (`[persistence.replicated]`).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This broker's name in the group (its member data `id`).
    pub id: String,
    /// Brokers in the group; a write needs `replicas / 2 + 1` of them.
    pub replicas: usize,
    /// Where this node's replication listener binds when it is master.
    pub bind: SocketAddr,
    /// The address slaves connect to (`hostname` and the bind port; a port of 0 is replaced by
    /// the one the listener took).
    pub advertise: String,
    /// ZooKeeper's `host:port[,host:port...]`.
    pub zk_address: String,
    /// The group's node in ZooKeeper (`/activemq/leveldb`).
    pub zk_path: String,
    pub zk_session_timeout: Duration,
    pub sync: SyncMode,
    /// How long a write waits for a quorum before failing.
    pub quorum_timeout: Duration,
    /// Bytes of recent records the master keeps for slaves that reconnect.
    pub backlog_bytes: usize,
    /// Where `replication.pos` lives (beside the local engine's files).
    pub directory: PathBuf,
}

impl NodeConfig {
    pub fn quorum(&self) -> usize {
        self.replicas / 2 + 1
    }
}

/// A member: its node name and data.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    data: MemberData,
}

struct Zk {
    client: zk::Client,
    members: String,
    epoch: String,
    me: String,
}

impl Zk {
    async fn connect(config: &NodeConfig, first: &MemberData) -> Result<Zk> {
        let client = zk::Client::connector()
            .with_session_timeout(config.zk_session_timeout)
            .connect(&config.zk_address)
            .await
            .map_err(|e| ReplicationError::zk(format!("connecting to {}", config.zk_address), e))?;
        let root = config.zk_path.trim_end_matches('/');
        let members = format!("{root}/members");
        let epoch = format!("{root}/epoch");
        let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        client
            .mkdir(&members, &persistent)
            .await
            .map_err(|e| ReplicationError::zk(format!("creating {members}"), e))?;
        match client.create(&epoch, b"0", &persistent).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(ReplicationError::zk(format!("creating {epoch}"), e)),
        }
        let ephemeral = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
        let (_, seq) = client
            .create(&format!("{members}/member-"), &first.encode(), &ephemeral)
            .await
            .map_err(|e| ReplicationError::zk(format!("registering under {members}"), e))?;
        let me = format!("member-{seq}");
        tracing::info!(
            "replication: registered as {members}/{me} (ZooKeeper session timeout {} ms)",
            client.session_timeout().as_millis()
        );
        Ok(Zk {
            client,
            members,
            epoch,
            me,
        })
    }

    /// [`Zk::connect`] until it succeeds: a broker started before ZooKeeper (or while the
    /// ensemble has no quorum) waits for it, as a slave waits for a lock.
    async fn connect_retrying(config: &NodeConfig, first: &MemberData) -> Zk {
        let mut attempt = 0u64;
        loop {
            match Zk::connect(config, first).await {
                Ok(zk) => return zk,
                Err(e) => {
                    attempt += 1;
                    if attempt <= 3 || attempt.is_multiple_of(30) {
                        tracing::warn!("replication: {e} (attempt {attempt}); retrying");
                    }
                    tokio::time::sleep(POLL * 10).await;
                }
            }
        }
    }

    async fn publish(&self, data: &MemberData) -> Result<()> {
        let path = format!("{}/{}", self.members, self.me);
        self.client
            .set_data(&path, &data.encode(), None)
            .await
            .map_err(|e| ReplicationError::zk(format!("updating {path}"), e))?;
        Ok(())
    }

    async fn epoch(&self) -> Result<(u64, i32)> {
        let (data, stat) = self
            .client
            .get_data(&self.epoch)
            .await
            .map_err(|e| ReplicationError::zk(format!("reading {}", self.epoch), e))?;
        let v = std::str::from_utf8(&data)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ReplicationError::Protocol(format!("{} does not hold a number", self.epoch))
            })?;
        Ok((v, stat.version))
    }

    /// Claims `epoch` if the node still has `version`.
    async fn claim(&self, epoch: u64, version: i32) -> Result<bool> {
        match self
            .client
            .set_data(&self.epoch, epoch.to_string().as_bytes(), Some(version))
            .await
        {
            Ok(_) => Ok(true),
            Err(zk::Error::BadVersion) => Ok(false),
            Err(e) => Err(ReplicationError::zk(format!("claiming epoch {epoch}"), e)),
        }
    }

    /// Every member whose data parses, in registration order.
    async fn members(&self) -> Result<Vec<Member>> {
        let mut names = self
            .client
            .list_children(&self.members)
            .await
            .map_err(|e| ReplicationError::zk(format!("listing {}", self.members), e))?;
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let path = format!("{}/{name}", self.members);
            match self.client.get_data(&path).await {
                Ok((data, _)) => match MemberData::decode(&data) {
                    Ok(data) => out.push(Member { name, data }),
                    Err(why) => tracing::warn!("replication: ignoring {path}: {why}"),
                },
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(ReplicationError::zk(format!("reading {path}"), e)),
            }
        }
        Ok(out)
    }

    async fn exists(&self, name: &str) -> Result<bool> {
        let path = format!("{}/{name}", self.members);
        self.client
            .check_stat(&path)
            .await
            .map(|s| s.is_some())
            .map_err(|e| ReplicationError::zk(format!("checking {path}"), e))
    }
}

/// This node's status, for logs and the console while it is a slave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub role: Role,
    pub epoch: u64,
    pub position: u64,
}

/// A broker of a replicated group, before it is master.
pub struct Node {
    config: NodeConfig,
    zk: Zk,
    follower: Option<FollowerState>,
    applied: Arc<AtomicU64>,
    epoch_seen: u64,
}

impl Node {
    /// Registers in ZooKeeper over the local store `local` (already open: it is what this node
    /// replicates into as a slave and serves as master).
    pub async fn join(config: NodeConfig, local: Arc<dyn PersistenceAdapter>) -> Result<Node> {
        if config.replicas == 0 {
            return Err(ReplicationError::Config(
                "replicas must be at least 1".into(),
            ));
        }
        let position_file = PositionFile::open(&config.directory)?;
        let at = position_file.get();
        let applied = Arc::new(AtomicU64::new(at.position));
        let first = MemberData {
            id: config.id.clone(),
            address: config.advertise.clone(),
            role: Role::Slave,
            epoch: 0,
            position: at.position,
            last_epoch: at.epoch,
        };
        let zk = Zk::connect_retrying(&config, &first).await;
        Ok(Node {
            follower: Some(FollowerState {
                node: config.id.clone(),
                applier: Applier::new(local),
                position_file,
                applied: Arc::clone(&applied),
            }),
            config,
            zk,
            applied,
            epoch_seen: 0,
        })
    }

    fn data(&self, role: Role, epoch: u64) -> MemberData {
        let at = self
            .follower
            .as_ref()
            .map(|f| f.position_file.get())
            .unwrap_or_default();
        MemberData {
            id: self.config.id.clone(),
            address: self.config.advertise.clone(),
            role,
            epoch,
            position: at.position,
            last_epoch: at.epoch,
        }
    }

    /// Follows masters until this node is elected; then returns the master's store.
    pub async fn run_until_master(mut self) -> Result<Master> {
        let mut published: Option<MemberData> = None;
        loop {
            match self.step(&mut published).await {
                Ok(Some(epoch)) => return self.become_master(epoch).await,
                Ok(None) => {}
                // ZooKeeper unreachable for a while: keep trying (a slave waits, as for a
                // lock); a session that ended is replaced by a new registration.
                Err(ReplicationError::ZooKeeper { what, source }) => {
                    tracing::warn!("replication: ZooKeeper {what}: {source}; retrying");
                    published = None;
                    tokio::time::sleep(POLL * 10).await;
                    if matches!(
                        self.zk.client.state(),
                        zk::SessionState::Expired
                            | zk::SessionState::Closed
                            | zk::SessionState::AuthFailed
                    ) {
                        let first = self.data(Role::Slave, self.epoch_seen);
                        self.zk = Zk::connect_retrying(&self.config, &first).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One look at the group: follow its master, or stand as a candidate; `Some(epoch)` when
    /// this node claimed that epoch.
    async fn step(&mut self, published: &mut Option<MemberData>) -> Result<Option<u64>> {
        let quorum = self.config.quorum();
        let (epoch, version) = self.zk.epoch().await?;
        self.epoch_seen = self.epoch_seen.max(epoch);
        let members = self.zk.members().await?;
        let master = members
            .iter()
            .find(|m| m.data.role == Role::Master && m.data.epoch == epoch && m.name != self.zk.me)
            .cloned();
        if let Some(master) = master {
            self.zk.publish(&self.data(Role::Slave, epoch)).await?;
            *published = None;
            self.follow(&master, epoch).await?;
            return Ok(None);
        }
        let me = self.data(Role::Candidate, self.epoch_seen);
        if published.as_ref() != Some(&me) {
            self.zk.publish(&me).await?;
            tracing::info!(
                "replication: no master; candidate at position {} (epoch {})",
                me.position,
                me.last_epoch
            );
            *published = Some(me);
            tokio::time::sleep(POLL).await;
            return Ok(None);
        }
        let candidates: Vec<&Member> = members
            .iter()
            .filter(|m| m.data.role == Role::Candidate)
            .collect();
        let best = candidates.iter().max_by(|a, b| {
            a.data
                .newness()
                .cmp(&b.data.newness())
                .then(b.name.cmp(&a.name))
        });
        if candidates.len() >= quorum
            && best.is_some_and(|b| b.name == self.zk.me)
            && self.zk.claim(epoch + 1, version).await?
        {
            return Ok(Some(epoch + 1));
        }
        tokio::time::sleep(POLL).await;
        Ok(None)
    }

    /// Follows `master` until its member node goes, a newer epoch is claimed, or the
    /// connection fails (then it is retried while the master stays registered).
    async fn follow(&mut self, master: &Member, epoch: u64) -> Result<()> {
        let addr: SocketAddr = tokio::net::lookup_host(&master.data.address)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                ReplicationError::Protocol(format!(
                    "master address {:?} does not resolve",
                    master.data.address
                ))
            })?;
        let Some(mut state) = self.follower.take() else {
            return Err(ReplicationError::Protocol("no follower state".into()));
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut task: JoinHandle<(FollowerState, Result<()>)> = tokio::spawn(async move {
            let r = follow(&mut state, addr, epoch, stop_rx).await;
            (state, r)
        });
        let mut last_publish = Instant::now();
        let outcome = loop {
            tokio::select! {
                joined = &mut task => break joined,
                _ = tokio::time::sleep(POLL) => {
                    let gone = !self.zk.exists(&master.name).await.unwrap_or(false);
                    let newer = self.zk.epoch().await.map(|(e, _)| e > epoch).unwrap_or(false);
                    if gone || newer {
                        tracing::info!(
                            "replication: master {} (epoch {epoch}) is {}; stopping to follow it",
                            master.data.id,
                            if gone { "gone" } else { "deposed" }
                        );
                        let _ = stop_tx.send(true);
                        break (&mut task).await;
                    }
                    if last_publish.elapsed() >= Duration::from_secs(1) {
                        last_publish = Instant::now();
                        let mut d = self.data(Role::Slave, epoch);
                        d.position = self.applied.load(Ordering::Acquire);
                        let _ = self.zk.publish(&d).await;
                    }
                }
            }
        };
        match outcome {
            Ok((state, result)) => {
                self.follower = Some(state);
                if let Err(e) = result {
                    tracing::warn!("replication: following {}: {e}", master.data.id);
                    tokio::time::sleep(POLL * 5).await;
                }
                Ok(())
            }
            Err(e) => Err(ReplicationError::Protocol(format!(
                "the follower task failed: {e}"
            ))),
        }
    }

    async fn become_master(mut self, epoch: u64) -> Result<Master> {
        let Some(state) = self.follower.take() else {
            return Err(ReplicationError::Protocol("no follower state".into()));
        };
        let listener = TcpListener::bind(self.config.bind).await.map_err(|e| {
            ReplicationError::io(
                format!("binding the replication listener {}", self.config.bind),
                e,
            )
        })?;
        // `bind = "tcp://0.0.0.0:0"` (ActiveMQ's example) takes any free port: slaves learn the
        // one taken from the member data.
        if let Some(host) = self.config.advertise.strip_suffix(":0")
            && let Ok(a) = listener.local_addr()
        {
            self.config.advertise = format!("{host}:{}", a.port());
        }
        let local = Arc::clone(state.applier.store());
        let log = Arc::new(Log::new(
            epoch,
            self.config.sync,
            self.config.quorum(),
            self.config.quorum_timeout,
            self.config.backlog_bytes,
            state.position_file,
        )?);
        let store = Arc::new(ReplicatedStore::new(Arc::clone(&local), Arc::clone(&log)).await?);
        let server = tokio::spawn(crate::server::serve(listener, Arc::clone(&log), local));
        let (head, last_epoch) = log.head();
        self.zk
            .publish(&MemberData {
                id: self.config.id.clone(),
                address: self.config.advertise.clone(),
                role: Role::Master,
                epoch,
                position: head,
                last_epoch,
            })
            .await?;
        tracing::info!(
            "replication: elected master of epoch {epoch} at position {head}; slaves connect to {}",
            self.config.advertise
        );
        Ok(Master {
            store,
            log,
            zk: self.zk,
            server,
            session_timeout: self.config.zk_session_timeout,
        })
    }
}

/// The elected master: its store, and what tells it that it must stop.
pub struct Master {
    store: Arc<ReplicatedStore>,
    log: SharedLog,
    zk: Zk,
    server: JoinHandle<()>,
    session_timeout: Duration,
}

impl Master {
    /// The store to serve.
    pub fn store(&self) -> Arc<ReplicatedStore> {
        Arc::clone(&self.store)
    }

    pub fn epoch(&self) -> u64 {
        self.log.epoch
    }

    /// Resolves when this broker must stop serving: its ZooKeeper session expired or has been
    /// cut for two thirds of its timeout (the ensemble is about to expire it and elect
    /// another), or a newer epoch exists.
    pub async fn lost(&self) -> String {
        let mut states = self.zk.client.state_watcher();
        let mut cut_since: Option<Instant> = None;
        loop {
            let state = states.peek_state();
            match state {
                zk::SessionState::Expired
                | zk::SessionState::Closed
                | zk::SessionState::AuthFailed => {
                    self.log.depose("ZooKeeper session ended");
                    return format!("the ZooKeeper session ended ({state:?})");
                }
                zk::SessionState::Disconnected => {
                    let since = *cut_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.session_timeout * 2 / 3 {
                        self.log.depose("cut from ZooKeeper");
                        return format!(
                            "cut from ZooKeeper for {} ms (session timeout {} ms)",
                            since.elapsed().as_millis(),
                            self.session_timeout.as_millis()
                        );
                    }
                }
                _ => cut_since = None,
            }
            if self.log.is_deposed() {
                return "deposed: a slave has seen a newer epoch".into();
            }
            if let Ok(Ok((e, _))) = tokio::time::timeout(POLL, self.zk.epoch()).await
                && e > self.log.epoch
            {
                self.log.depose("a newer epoch was claimed");
                return format!(
                    "epoch {e} was claimed while this master had {}",
                    self.log.epoch
                );
            }
            tokio::select! {
                _ = states.changed() => {}
                _ = self.log.deposed_notify.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Steps down cleanly: stops the listener and leaves ZooKeeper so another is elected now.
    pub async fn step_down(self) {
        self.server.abort();
        let path = format!("{}/{}", self.zk.members, self.zk.me);
        let _ = self.zk.client.delete(&path, None).await;
        tracing::info!(
            "replication: stepped down as master of epoch {}",
            self.log.epoch
        );
    }
}

/// Exposed for status pages.
impl NodeStatus {
    pub fn of_master(m: &Master) -> NodeStatus {
        NodeStatus {
            role: Role::Master,
            epoch: m.log.epoch,
            position: m.log.head().0,
        }
    }
}
