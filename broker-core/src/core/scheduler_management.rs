//! ActiveMQ's scheduler management destination, `ActiveMQ.Scheduler.Management`: a message sent
//! there is an order to the scheduler, not a message to store, named by its
//! `AMQ_SCHEDULER_ACTION` property —
//!
//! - `BROWSE`: a copy of every scheduled message (those due between `ACTION_START_TIME` and
//!   `ACTION_END_TIME`, ms since the epoch, when given) goes to the order's reply-to, each with
//!   its job id in `scheduledJobId`;
//! - `REMOVE`: the job whose id is in `scheduledJobId` is cancelled;
//! - `REMOVEALL`: every job (in the time range, when given) is cancelled.
//!
//! This is how JMS applications written for ActiveMQ manage delayed messages
//! (`ScheduledMessage.AMQ_SCHEDULER_MANAGEMENT_DESTINATION`); the console and the JSON API do the
//! same for operators. An order with an unknown action, or a BROWSE without a reply-to, is
//! refused with an error naming it.

use std::sync::Arc;

use store_api::{Message, MessageId, Value};

use super::Core;
use super::scheduler::{AMQ_SCHEDULED_ID, JobPages, as_delivered, listed};
use crate::error::{BrokerError, Result};

/// The destination's name (a topic or a queue of that name, as ActiveMQ accepts either).
pub const AMQ_SCHEDULER_MANAGEMENT_DESTINATION: &str = "ActiveMQ.Scheduler.Management";
/// The property naming the action.
pub const AMQ_SCHEDULER_ACTION: &str = "AMQ_SCHEDULER_ACTION";
/// The range of due times a BROWSE or REMOVEALL applies to, ms since the epoch.
pub const AMQ_SCHEDULER_ACTION_START_TIME: &str = "ACTION_START_TIME";
pub const AMQ_SCHEDULER_ACTION_END_TIME: &str = "ACTION_END_TIME";

/// Whether a send goes to the management destination.
pub(crate) fn is_management(m: &Message) -> bool {
    &*m.destination.name == AMQ_SCHEDULER_MANAGEMENT_DESTINATION
}

fn text<'a>(m: &'a Message, key: &str) -> Option<&'a str> {
    match m.properties.get(key) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// A time bound: a long, or digits (STOMP headers are strings).
fn time(m: &Message, key: &str) -> Result<Option<i64>> {
    match m.properties.get(key) {
        None => Ok(None),
        Some(Value::I64(n)) => Ok(Some(*n)),
        Some(Value::I32(n)) => Ok(Some(i64::from(*n))),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
            BrokerError::Invalid(format!("{key} {s:?} is not a time in ms since the epoch"))
        }),
        Some(other) => Err(BrokerError::Invalid(format!(
            "{key} must be a time in ms since the epoch, not {other:?}"
        ))),
    }
}

impl Core {
    /// Carries out the order `m` sent to the management destination.
    pub(crate) async fn scheduler_management(self: &Arc<Self>, m: &Message) -> Result<()> {
        let action = text(m, AMQ_SCHEDULER_ACTION).unwrap_or_default();
        let range = (
            time(m, AMQ_SCHEDULER_ACTION_START_TIME)?,
            time(m, AMQ_SCHEDULER_ACTION_END_TIME)?,
        );
        let in_range = |due: i64| {
            range.0.is_none_or(|start| due >= start) && range.1.is_none_or(|end| due <= end)
        };
        match action {
            "BROWSE" => {
                let reply_to = m.reply_to.clone().ok_or_else(|| {
                    BrokerError::Invalid(format!(
                        "{AMQ_SCHEDULER_MANAGEMENT_DESTINATION}: BROWSE needs a reply-to"
                    ))
                })?;
                let mut pages = JobPages::open(self).await?;
                while let Some(page) = pages.next().await? {
                    for job in &page {
                        if !listed(job).is_some_and(|j| in_range(j.due_ms)) {
                            continue;
                        }
                        let mut copy = as_delivered(job, reply_to.clone());
                        copy.id = MessageId::new(
                            format!("{}:scheduler-browse", self.incarnation),
                            self.next_id(),
                        );
                        copy.sequence = 0;
                        self.send(copy).await?;
                    }
                }
                Ok(())
            }
            "REMOVE" => {
                let id = text(m, AMQ_SCHEDULED_ID).ok_or_else(|| {
                    BrokerError::Invalid(format!(
                        "{AMQ_SCHEDULER_MANAGEMENT_DESTINATION}: REMOVE needs the job id in {AMQ_SCHEDULED_ID}"
                    ))
                })?;
                self.cancel_scheduled(id).await.map(drop)
            }
            "REMOVEALL" => self.cancel_scheduled_due(in_range).await.map(drop),
            other => Err(BrokerError::Invalid(format!(
                "{AMQ_SCHEDULER_MANAGEMENT_DESTINATION}: {AMQ_SCHEDULER_ACTION} {other:?} is not BROWSE, REMOVE or REMOVEALL"
            ))),
        }
    }
}
