//! Scheduled and delayed delivery, as ActiveMQ's `schedulerSupport`: a message sent with
//! `AMQ_SCHEDULED_DELAY` (ms), `AMQ_SCHEDULED_PERIOD` (ms) and `AMQ_SCHEDULED_REPEAT` is
//! delivered to its destination once its time comes, and again `repeat` times every `period`;
//! with `AMQ_SCHEDULED_CRON` at every time a cron pattern matches.
//!
//! The jobs live in the store as messages of one hidden queue ([`JOBS`]), each carrying its
//! target and its next due time in reserved properties. So every engine keeps them with the
//! durability, group commit, crash recovery and corruption checks it already has for queues,
//! and the conformance kit and the crash harness cover them with no new store contract.
//! (ActiveMQ keeps them in a separate KahaDB-based job store, the only one it has.)
//!
//! Exactly once: a due job is delivered in one store transaction that adds the message to its
//! destination and removes the job (adding the next occurrence of a repeating job), so a crash
//! leaves it either still scheduled or delivered, never both. In memory the broker holds only
//! a heap of (due time, job id); bodies stay in the store until due.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use store_api::{Destination, DestinationKind, Message, MessageId, OrderKey, TxOp, Value};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::{Core, Placed, Then, now_ms};
use crate::error::{BrokerError, Result};

/// The delay before the first delivery, in ms.
pub const AMQ_SCHEDULED_DELAY: &str = "AMQ_SCHEDULED_DELAY";
/// The time between repeated deliveries, in ms.
pub const AMQ_SCHEDULED_PERIOD: &str = "AMQ_SCHEDULED_PERIOD";
/// How many times the message is delivered again after the first.
pub const AMQ_SCHEDULED_REPEAT: &str = "AMQ_SCHEDULED_REPEAT";
/// A cron pattern (5 fields, or 6 with seconds first): delivered at each time it matches, in
/// the broker's local time, until cancelled.
pub const AMQ_SCHEDULED_CRON: &str = "AMQ_SCHEDULED_CRON";
/// Set on each delivered copy: the job it came from. A message carrying it is never scheduled
/// again (ActiveMQ's `scheduledJobId`), so forwarding a delivered message sends it at once.
pub const AMQ_SCHEDULED_ID: &str = "scheduledJobId";

/// The hidden queue holding the jobs. Clients can neither send to it nor consume from it.
pub const JOBS: &str = "ActiveMQ.Scheduler.Jobs";

// Reserved properties of a job message; removed from the copies delivered.
const TARGET_KIND: &str = "ActiveMQ.Scheduler.kind";
const TARGET_NAME: &str = "ActiveMQ.Scheduler.name";
const PERSISTENT: &str = "ActiveMQ.Scheduler.persistent";
const DUE: &str = "ActiveMQ.Scheduler.due";
const LEFT: &str = "ActiveMQ.Scheduler.left";
const JOB: &str = "ActiveMQ.Scheduler.job";

/// Due jobs delivered per store transaction: a burst due in the same instant shares fsyncs.
const BATCH: usize = 512;
/// A batch the store refused is tried again this much later.
const RETRY: Duration = Duration::from_secs(1);

/// What a message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schedule {
    pub delay: i64,
    pub period: i64,
    pub repeat: i64,
    pub cron: Option<String>,
}

/// The schedule a message asks for, `None` for an ordinary send. A value that is not a
/// non-negative whole number is refused naming the property.
pub(crate) fn schedule_of(m: &Message) -> Result<Option<Schedule>> {
    if m.properties.is_empty() || m.properties.contains_key(AMQ_SCHEDULED_ID) {
        return Ok(None);
    }
    let delay = number(m, AMQ_SCHEDULED_DELAY)?;
    let period = number(m, AMQ_SCHEDULED_PERIOD)?;
    let repeat = number(m, AMQ_SCHEDULED_REPEAT)?;
    let cron = match m.properties.get(AMQ_SCHEDULED_CRON) {
        None => None,
        Some(Value::String(c)) if !c.trim().is_empty() => {
            parse_cron(c)?;
            Some(c.trim().to_owned())
        }
        Some(v) => {
            return Err(BrokerError::Invalid(format!(
                "{AMQ_SCHEDULED_CRON} must be a cron pattern, not {v:?}"
            )));
        }
    };
    if delay.is_none() && period.is_none() && repeat.is_none() && cron.is_none() {
        return Ok(None);
    }
    let s = Schedule {
        delay: delay.unwrap_or(0),
        period: period.unwrap_or(0),
        repeat: repeat.unwrap_or(0),
        cron,
    };
    if s.cron.is_some() && (s.repeat > 0 || s.period > 0) {
        return Err(BrokerError::Invalid(format!(
            "{AMQ_SCHEDULED_CRON} with {AMQ_SCHEDULED_REPEAT} or {AMQ_SCHEDULED_PERIOD} is not supported here; use the cron pattern alone"
        )));
    }
    if s.cron.is_some() {
        return Ok(Some(s));
    }
    if s.repeat > 0 && s.period == 0 {
        return Err(BrokerError::Invalid(format!(
            "{AMQ_SCHEDULED_REPEAT} {} needs an {AMQ_SCHEDULED_PERIOD} greater than 0",
            s.repeat
        )));
    }
    // Nothing to wait for: an ordinary send (as ActiveMQ delivers a job due now at once).
    if s.delay == 0 && s.repeat == 0 {
        return Ok(None);
    }
    Ok(Some(s))
}

fn parse_cron(pattern: &str) -> Result<croner::Cron> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(pattern.trim())
        .map_err(|e| BrokerError::Invalid(format!("{AMQ_SCHEDULED_CRON} {pattern:?}: {e}")))
}

/// The first time after `after_ms` that `pattern` matches, in local time, in ms.
fn next_cron(pattern: &str, after_ms: i64) -> Option<i64> {
    let cron = parse_cron(pattern).ok()?;
    let start = chrono::DateTime::from_timestamp_millis(after_ms)?.with_timezone(&chrono::Local);
    let next = cron.find_next_occurrence(&start, false).ok()?;
    Some(next.timestamp_millis())
}

fn number(m: &Message, key: &str) -> Result<Option<i64>> {
    let Some(v) = m.properties.get(key) else {
        return Ok(None);
    };
    let n = match v {
        Value::I8(n) => Some(i64::from(*n)),
        Value::I16(n) => Some(i64::from(*n)),
        Value::I32(n) => Some(i64::from(*n)),
        Value::I64(n) => Some(*n),
        // STOMP headers arrive as strings.
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n >= 0 => Ok(Some(n)),
        _ => Err(BrokerError::Invalid(format!(
            "{key} must be a whole number of 0 or more, not {v:?}"
        ))),
    }
}

/// One scheduled job, as listed by [`Core::scheduled_jobs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledJob {
    /// The job's id, which is the id of the message as sent (cancel with it).
    pub id: String,
    /// Where it is delivered.
    pub destination: Destination,
    /// When it is next due, ms since the epoch.
    pub due_ms: i64,
    /// The ms between repeated deliveries.
    pub period_ms: i64,
    /// Deliveries still to come after the next one; -1 for a cron job (until cancelled).
    pub repeats_left: i64,
    /// The cron pattern of a cron job.
    pub cron: Option<String>,
}

/// The jobs' due times, and the task that delivers them.
pub(crate) struct Scheduler {
    heap: Mutex<BinaryHeap<Reverse<(i64, MessageId)>>>,
    wake: Notify,
    /// Ids of the next occurrences of repeating jobs: fresh per run (the incarnation).
    next_seq: AtomicU64,
    /// Held while a batch is delivered and while a job is cancelled, so that a cancel never
    /// misses the next occurrence a delivery in flight adds. Only the scheduler task and
    /// cancels take it; no other writer waits on it.
    firing: tokio::sync::Mutex<()>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler {
            heap: Mutex::new(BinaryHeap::new()),
            wake: Notify::new(),
            next_seq: AtomicU64::new(1),
            firing: tokio::sync::Mutex::new(()),
        }
    }
}

impl Scheduler {
    fn track(&self, due: i64, id: MessageId) {
        let earliest = {
            let mut heap = self.heap.lock();
            heap.push(Reverse((due, id)));
            heap.peek().map(|Reverse((d, _))| *d) == Some(due)
        };
        if earliest {
            self.wake.notify_one();
        }
    }

    fn due_now(&self, now: i64) -> Vec<MessageId> {
        let mut heap = self.heap.lock();
        let mut out = Vec::new();
        while out.len() < BATCH {
            match heap.peek() {
                Some(Reverse((d, _))) if *d <= now => {
                    if let Some(Reverse((_, id))) = heap.pop() {
                        out.push(id);
                    }
                }
                _ => break,
            }
        }
        out
    }

    fn next_due(&self) -> Option<i64> {
        self.heap.lock().peek().map(|Reverse((d, _))| *d)
    }
}

pub(crate) fn jobs() -> Destination {
    Destination::queue(JOBS)
}

pub(crate) fn is_jobs(d: &Destination) -> bool {
    d.kind == DestinationKind::Queue && &*d.name == JOBS
}

/// The job message for `message`: the message itself, moved to [`JOBS`], persistent, with
/// its target and its first due time in reserved properties.
pub(crate) fn job_of(message: &Message, s: Schedule, now: i64) -> Message {
    let start = now.saturating_add(s.delay);
    let due = match &s.cron {
        Some(c) => next_cron(c, start).unwrap_or(start),
        None => start,
    };
    let mut job = message.clone();
    let p = &mut job.properties;
    p.insert(
        TARGET_KIND.into(),
        Value::String(
            if message.destination.is_queue() {
                "queue"
            } else {
                "topic"
            }
            .into(),
        ),
    );
    p.insert(
        TARGET_NAME.into(),
        Value::String(message.destination.name.to_string()),
    );
    p.insert(PERSISTENT.into(), Value::Bool(message.persistent));
    p.insert(DUE.into(), Value::I64(due));
    p.insert(
        LEFT.into(),
        Value::I64(if s.cron.is_some() { -1 } else { s.repeat }),
    );
    p.insert(JOB.into(), Value::String(message.id.to_string()));
    job.destination = jobs();
    // The job outlives a restart whatever the message is; the copy delivered is persistent
    // only if the message was.
    job.persistent = true;
    job
}

fn prop_i64(m: &Message, key: &str) -> i64 {
    match m.properties.get(key) {
        Some(Value::I64(n)) => *n,
        _ => 0,
    }
}

fn prop_str<'a>(m: &'a Message, key: &str) -> Option<&'a str> {
    match m.properties.get(key) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn target_of(job: &Message) -> Option<Destination> {
    let name = prop_str(job, TARGET_NAME)?;
    match prop_str(job, TARGET_KIND)? {
        "queue" => Some(Destination::queue(name)),
        "topic" => Some(Destination::topic(name)),
        _ => None,
    }
}

/// The message a job delivers to `to`: as it was sent, without the scheduler's own
/// properties, with its job id in `scheduledJobId` (ActiveMQ's `AMQ_SCHEDULED_ID`).
pub(crate) fn as_delivered(job: &Message, to: Destination) -> Message {
    let mut m = job.clone();
    for k in [TARGET_KIND, TARGET_NAME, PERSISTENT, DUE, LEFT, JOB] {
        m.properties.remove(k);
    }
    m.properties.insert(
        AMQ_SCHEDULED_ID.into(),
        Value::String(prop_str(job, JOB).unwrap_or_default().to_owned()),
    );
    m.persistent = matches!(job.properties.get(PERSISTENT), Some(Value::Bool(true)));
    m.destination = to;
    m
}

/// The job store read a page at a time, in its order: a whole scan without holding every job.
pub(crate) struct JobPages {
    store: Arc<dyn store_api::QueueStore>,
    after: Option<OrderKey>,
    done: bool,
}

impl JobPages {
    const PAGE: usize = 1000;

    pub(crate) async fn open(core: &Core) -> Result<JobPages> {
        Ok(JobPages {
            store: core.store.queue_store(&jobs()).await?,
            after: None,
            done: false,
        })
    }

    /// The next page; `None` once every job was read.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<Message>>> {
        if self.done {
            return Ok(None);
        }
        let page = self.store.browse(self.after, Self::PAGE).await?;
        match page.last() {
            Some(last) => {
                self.after = Some(OrderKey::of(last));
                Ok(Some(page))
            }
            None => {
                self.done = true;
                Ok(None)
            }
        }
    }
}

pub(crate) fn listed(job: &Message) -> Option<ScheduledJob> {
    Some(ScheduledJob {
        id: prop_str(job, JOB)?.to_owned(),
        destination: target_of(job)?,
        due_ms: prop_i64(job, DUE),
        period_ms: number(job, AMQ_SCHEDULED_PERIOD)
            .ok()
            .flatten()
            .unwrap_or(0),
        repeats_left: prop_i64(job, LEFT),
        cron: prop_str(job, AMQ_SCHEDULED_CRON).map(str::to_owned),
    })
}

impl Core {
    /// Schedules a message (a send outside a transaction): the job is submitted to the store
    /// now, and tracked once written.
    pub(crate) async fn schedule(self: &Arc<Self>, job: Message) -> Result<Placed> {
        let store = self.store.queue_store(&jobs()).await?;
        self.wait_for_store(job.size()).await?;
        let due = prop_i64(&job, DUE);
        let id = job.id.clone();
        let written = store.submit_add(job).await?;
        Ok(Placed {
            written,
            then: Then::Scheduled(due, id),
        })
    }

    /// A job is stored: it is delivered when due.
    pub(crate) fn scheduled(&self, due: i64, id: MessageId) {
        self.scheduler.track(due, id);
    }

    /// After a transaction that added `job` committed.
    pub(crate) fn committed_job(&self, job: &Message) {
        self.scheduled(prop_i64(job, DUE), job.id.clone());
    }

    /// At start: every stored job back in the heap (in store order, a page at a time).
    pub(crate) async fn recover_jobs(&self) -> Result<usize> {
        let store = self.store.queue_store(&jobs()).await?;
        let mut after: Option<OrderKey> = None;
        let mut n = 0;
        loop {
            let page = store.browse(after, 1000).await?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(OrderKey::of(last));
            for job in &page {
                self.scheduler.track(prop_i64(job, DUE), job.id.clone());
                n += 1;
            }
        }
        Ok(n)
    }

    /// The scheduled jobs, soonest first.
    pub async fn scheduled_jobs(&self) -> Result<Vec<ScheduledJob>> {
        let mut pages = JobPages::open(self).await?;
        let mut out = Vec::new();
        while let Some(page) = pages.next().await? {
            out.extend(page.iter().filter_map(listed));
        }
        out.sort_by(|a, b| (a.due_ms, &a.id).cmp(&(b.due_ms, &b.id)));
        Ok(out)
    }

    /// Cancels job `id` (every later repeat with it). False when there is no such job.
    pub async fn cancel_scheduled(&self, id: &str) -> Result<bool> {
        parse_id(id)?;
        // Not while a batch is being delivered: its next occurrence of this job would be
        // added after the scan and live on.
        let _firing = self.scheduler.firing.lock().await;
        let removed = self.remove_jobs(&HashSet::from([id.to_owned()])).await?;
        Ok(removed > 0)
    }

    /// Cancels every job with an occurrence due at a time `due` accepts (with its other
    /// occurrences): one pass to choose, one to remove, however many jobs there are (a
    /// cancel per job, each a scan, made `REMOVEALL` quadratic). Returns how many stored
    /// occurrences were removed.
    pub(crate) async fn cancel_scheduled_due(&self, due: impl Fn(i64) -> bool) -> Result<usize> {
        let _firing = self.scheduler.firing.lock().await;
        let mut pages = JobPages::open(self).await?;
        let mut ids = HashSet::new();
        while let Some(page) = pages.next().await? {
            ids.extend(
                page.iter()
                    .filter_map(listed)
                    .filter(|j| due(j.due_ms))
                    .map(|j| j.id),
            );
        }
        self.remove_jobs(&ids).await
    }

    /// Removes every stored occurrence of the jobs `ids`, in one pass; the caller holds
    /// `scheduler.firing`.
    async fn remove_jobs(&self, ids: &HashSet<String>) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut pages = JobPages::open(self).await?;
        let mut removed = 0;
        while let Some(page) = pages.next().await? {
            for job in page
                .iter()
                .filter(|j| prop_str(j, JOB).is_some_and(|id| ids.contains(id)))
            {
                // The heap entry stays; the job is gone from the store when it comes due.
                match pages.store.remove(&job.id).await {
                    Ok(()) => removed += 1,
                    Err(store_api::StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(removed)
    }

    /// The scheduler task: sleeps until the earliest job is due, delivers every due job in
    /// batches, and ends with the core.
    pub(crate) async fn run_scheduler(core: Weak<Core>) {
        loop {
            let Some(c) = core.upgrade() else {
                return;
            };
            if c.is_closed() {
                return;
            }
            let now = now_ms();
            let due = c.scheduler.due_now(now);
            if !due.is_empty() {
                c.deliver_due(due, now).await;
                continue;
            }
            let wait = match c.scheduler.next_due() {
                Some(d) => Duration::from_millis(u64::try_from(d - now).unwrap_or(0).max(1)),
                None => Duration::from_secs(3600),
            };
            // A job tracked meanwhile left a permit (`notify_one`), so none is missed; the
            // wait is bounded so that a closed core is noticed without a wake.
            let _ = tokio::time::timeout(
                wait.min(Duration::from_secs(1)),
                c.scheduler.wake.notified(),
            )
            .await;
        }
    }

    /// Delivers due jobs in one store transaction: each copy added to its destination(s),
    /// each job removed, each next occurrence added.
    async fn deliver_due(self: &Arc<Self>, ids: Vec<MessageId>, now: i64) {
        let _firing = self.scheduler.firing.lock().await;
        let store = match self.store.queue_store(&jobs()).await {
            Ok(s) => s,
            Err(e) => {
                warn!("scheduler: cannot open its store: {e}");
                self.retry(ids, now);
                return;
            }
        };
        let mut ops = Vec::new();
        let mut thens = Vec::new();
        let mut next = Vec::new();
        let mut in_memory = false;
        let mut taken = Vec::new();
        for id in &ids {
            let job = match store.get(id).await {
                Ok(j) => j,
                // Cancelled.
                Err(store_api::StoreError::NotFound(_)) => continue,
                Err(e) => {
                    warn!("scheduler: cannot read job {id}: {e}");
                    self.retry(vec![id.clone()], now);
                    continue;
                }
            };
            let Some(target) = target_of(&job) else {
                warn!("scheduler: job {id} has no destination; dropped");
                ops.push(TxOp::QueueAck {
                    destination: jobs(),
                    id: id.clone(),
                });
                continue;
            };
            let left = prop_i64(&job, LEFT);
            let cron = prop_str(&job, AMQ_SCHEDULED_CRON).map(str::to_owned);
            let repeating = cron.is_some()
                || left > 0
                || number(&job, AMQ_SCHEDULED_REPEAT).ok().flatten() > Some(0);
            let mut m = as_delivered(&job, target.clone());
            m.sequence = 0;
            m.timestamp = now;
            if repeating {
                // Each delivery of a repeating job is a message of its own.
                m.id = self.scheduler_message_id();
            }
            let routes = match self.routes(&target) {
                Ok(r) => r,
                Err(e) => {
                    warn!("scheduler: job {id} for {target}: {e}; dropped");
                    Vec::new()
                }
            };
            let copies: Vec<Message> = routes
                .into_iter()
                .map(|d| {
                    let mut c = m.clone();
                    c.destination = d;
                    c
                })
                .collect();
            match self.route_ops(copies).await {
                Ok((o, t, mem)) => {
                    ops.extend(o);
                    thens.push(t);
                    in_memory |= mem;
                }
                Err(e) => {
                    warn!("scheduler: job {id} for {target}: {e}; tried again later");
                    self.retry(vec![id.clone()], now);
                    continue;
                }
            }
            ops.push(TxOp::QueueAck {
                destination: jobs(),
                id: id.clone(),
            });
            // The next occurrence: a cron job's next match after now (missed ones while the
            // broker was down are not made up), a repeat's one period on.
            let again = match &cron {
                Some(c) => next_cron(c, now.max(prop_i64(&job, DUE))).map(|d| (d, -1)),
                None if left > 0 => {
                    let period = number(&job, AMQ_SCHEDULED_PERIOD)
                        .ok()
                        .flatten()
                        .unwrap_or(0);
                    let due = prop_i64(&job, DUE).max(now - period).saturating_add(period);
                    Some((due, left - 1))
                }
                None => None,
            };
            if let Some((due, left)) = again {
                let mut again = job.clone();
                again.id = self.scheduler_message_id();
                again.sequence = 0;
                again.properties.insert(DUE.into(), Value::I64(due));
                again.properties.insert(LEFT.into(), Value::I64(left));
                next.push((due, again.id.clone()));
                ops.push(TxOp::Add(again));
            }
            taken.push(id.clone());
        }
        if ops.is_empty() {
            return;
        }
        if in_memory && let Err(e) = self.wait_for_memory().await {
            warn!("scheduler: {e}; due jobs tried again later");
            self.retry(taken, now);
            return;
        }
        let tx = self.new_local_tx();
        if let Err(e) = self.run_transaction(&tx, ops).await {
            warn!(
                "scheduler: delivering {} due jobs failed: {e}; tried again later",
                taken.len()
            );
            self.retry(taken, now);
            return;
        }
        for then in thens {
            self.delivered(then);
        }
        for (due, id) in next {
            self.scheduler.track(due, id);
        }
    }

    fn retry(&self, ids: Vec<MessageId>, now: i64) {
        let at = now.saturating_add(RETRY.as_millis() as i64);
        for id in ids {
            self.scheduler.track(at, id);
        }
    }

    fn scheduler_message_id(&self) -> MessageId {
        MessageId::new(
            format!("ID:{}-scheduler", self.incarnation),
            self.scheduler.next_seq.fetch_add(1, Ordering::Relaxed),
        )
    }
}

fn parse_id(text: &str) -> Result<MessageId> {
    text.rsplit_once(':')
        .and_then(|(p, seq)| Some(MessageId::new(p, seq.parse().ok()?)))
        .ok_or_else(|| BrokerError::Invalid(format!("{text:?} is not a scheduled job id")))
}

/// Logs what recovery found.
pub(crate) fn log_recovered(n: usize) {
    if n > 0 {
        info!(jobs = n, "scheduled jobs recovered");
    }
}
