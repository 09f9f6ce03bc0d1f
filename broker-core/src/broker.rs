//! The embeddable broker's life cycle: take the lock (waiting as a slave), open and recover the
//! store, serve, and stop (cleanly, or because the lock was lost). The admin API over a serving
//! broker is in [`crate::admin`]; what serving means is in the crate-private `core` module.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::config::CoreConfig;
use crate::core::Core;
use crate::error::{BrokerError, Result};
use crate::locker::{HeldLock, Leaving, Locker, StoreOpener};
use crate::session::Connection;
use crate::state::BrokerState;

/// The broker's state and the transitions so far.
struct StateCell {
    current: watch::Sender<BrokerState>,
    history: Mutex<Vec<BrokerState>>,
}

/// An embeddable broker, like ActiveMQ's `BrokerService`.
///
/// `Broker::new(config, locker, store)` then `start()`: take the lock (waiting as a slave while
/// another broker holds it), open and recover the store, serve. Connections come from
/// [`Broker::connect`]. Losing the lock stops the broker; `stop()` stops it cleanly. The
/// `engines` crate builds the locker and the store a config file names.
pub struct Broker {
    config: CoreConfig,
    locker: Arc<dyn Locker>,
    store: Arc<dyn StoreOpener>,
    state: Arc<StateCell>,
    core: Mutex<Option<Arc<Core>>>,
    stop: watch::Sender<bool>,
    monitor: Mutex<Option<JoinHandle<()>>>,
}

impl Broker {
    pub fn new(config: CoreConfig, locker: Arc<dyn Locker>, store: Arc<dyn StoreOpener>) -> Broker {
        Broker {
            config,
            locker,
            store,
            state: Arc::new(StateCell {
                current: watch::Sender::new(BrokerState::Created),
                history: Mutex::new(vec![BrokerState::Created]),
            }),
            core: Mutex::new(None),
            stop: watch::Sender::new(false),
            monitor: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    pub fn state(&self) -> BrokerState {
        *self.state.current.borrow()
    }

    /// Every state the broker has been in, in order, from `Created`.
    pub fn history(&self) -> Vec<BrokerState> {
        self.state.history.lock().clone()
    }

    /// Follows the state as it changes.
    pub fn watch_state(&self) -> watch::Receiver<BrokerState> {
        self.state.current.subscribe()
    }

    fn set_state(state: &StateCell, name: &str, to: BrokerState) {
        let mut history = state.history.lock();
        let from = *state.current.borrow();
        info!(broker = name, "{from} -> {to}");
        history.push(to);
        state.current.send_replace(to);
    }

    /// Takes the lock (waiting as long as another broker holds it), recovers the store and
    /// starts serving. Returns once serving; `stop()` from another task ends a wait.
    pub async fn start(&self) -> Result<()> {
        if self.state() != BrokerState::Created {
            return Err(BrokerError::Invalid(format!(
                "the broker was already started (it is {})",
                self.state()
            )));
        }
        let name = self.config.broker.name.clone();
        Self::set_state(&self.state, &name, BrokerState::WaitingForLock);
        let mut stop = self.stop.subscribe();
        let lock = tokio::select! {
            lock = self.locker.acquire() => lock,
            _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                Self::set_state(&self.state, &name, BrokerState::Stopped);
                return Err(BrokerError::NotServing(BrokerState::Stopped));
            }
        };
        let mut lock = match lock {
            Ok(l) => l,
            Err(e) => {
                Self::set_state(&self.state, &name, BrokerState::Stopped);
                return Err(e);
            }
        };
        Self::set_state(&self.state, &name, BrokerState::Recovering);
        info!(
            broker = %name,
            lock = %lock.describe(),
            took_over = lock.took_over(),
            "this broker is the master"
        );
        let core = match self.open_core(lock.as_ref()).await {
            Ok(c) => c,
            Err(e) => {
                // Nothing was delivered here; a dead predecessor's deliveries still are.
                let leaving = if lock.took_over() {
                    Leaving::Unsettled
                } else {
                    Leaving::Settled
                };
                lock.release(leaving).await;
                Self::set_state(&self.state, &name, BrokerState::Stopped);
                return Err(e);
            }
        };
        // Measured before anyone can send: until the first measurement nothing is held, and
        // the monitor's first run is a task that a busy machine may start late (a burst right
        // after the start overshot limits.store_bytes then).
        core.refresh_store_usage().await;
        *self.core.lock() = Some(Arc::clone(&core));
        Self::set_state(&self.state, &name, BrokerState::Serving);

        let state = Arc::clone(&self.state);
        let interval = self.config.expire_check_interval();
        let monitor = tokio::spawn(async move {
            let sweeper = {
                let core = Arc::clone(&core);
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(interval);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        if core.is_closed() {
                            return;
                        }
                        core.sweep_expired().await;
                    }
                })
            };
            let store_watch = tokio::spawn(Arc::clone(&core).watch_store());
            let usage_watch = tokio::spawn(Arc::clone(&core).watch_usage());
            let gc = core.policies.any_gc().then(|| {
                let core = Arc::clone(&core);
                let every =
                    std::time::Duration::from_millis(core.config.policy.gc_check_interval_ms);
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        if core.is_closed() {
                            return;
                        }
                        core.sweep_inactive().await;
                    }
                })
            });
            tokio::select! {
                why = lock.lost() => {
                    error!(broker = %name, "lost the master lock: {why}; stopping so that another broker can take over");
                    Self::set_state(&state, &name, BrokerState::LockLost);
                    core.shutdown().await;
                }
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    let leaving = core.shutdown().await;
                    lock.release(leaving).await;
                }
            }
            sweeper.abort();
            store_watch.abort();
            usage_watch.abort();
            if let Some(gc) = gc {
                gc.abort();
            }
            Self::set_state(&state, &name, BrokerState::Stopped);
        });
        *self.monitor.lock() = Some(monitor);
        Ok(())
    }

    async fn open_core(&self, lock: &dyn HeldLock) -> Result<Arc<Core>> {
        let store = self.store.open(lock).await?;
        Core::open(self.config.clone(), store, lock.took_over()).await
    }

    /// Stops serving: connections are closed (unacked messages stay in the store for the next
    /// run), the store is closed and the lock released. A slave still waiting stops waiting.
    pub async fn stop(&self) {
        if matches!(self.state(), BrokerState::Serving) {
            Self::set_state(&self.state, &self.config.broker.name, BrokerState::Stopping);
        }
        self.stop.send_replace(true);
        let monitor = self.monitor.lock().take();
        if let Some(m) = monitor {
            let _ = m.await;
        }
        self.core.lock().take();
    }

    /// Resolves once the broker has stopped, for any reason (a lost lock included).
    pub async fn stopped(&self) {
        let mut w = self.state.current.subscribe();
        let _ = w.wait_for(|s| *s == BrokerState::Stopped).await;
    }

    pub(crate) fn core(&self) -> Result<Arc<Core>> {
        let core = self.core.lock().clone();
        match core {
            Some(c) if self.state() == BrokerState::Serving && !c.is_closed() => Ok(c),
            _ => Err(BrokerError::NotServing(self.state())),
        }
    }

    /// Opens a connection. A client id, when given, must not be in use by another connection
    /// (it names the connection's durable subscriptions).
    pub async fn connect(&self, client_id: Option<&str>) -> Result<Connection> {
        Connection::open(self.core()?, client_id, None)
    }

    /// As [`Broker::connect`], naming the wire protocol and the peer's address (shown by
    /// [`Broker::connections`]).
    pub async fn connect_from(
        &self,
        client_id: Option<&str>,
        protocol: &str,
        remote: &str,
    ) -> Result<Connection> {
        Connection::open(self.core()?, client_id, Some((protocol, remote)))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
