//! The scheduler's hot path: COUNT scheduled messages all due in the same millisecond, on a
//! real engine. Prints how long scheduling them took and how long from their due time until a
//! consumer had every one (each due batch is one store transaction).
//!
//! ```sh
//! cargo run --release -p engines --example scheduler_burst -- kahadb 100000
//! cargo run --release -p engines --example scheduler_burst -- memory 100000
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use broker_core::config::{BrokerSection, CoreConfig, LimitsSection, PolicySection};
use broker_core::{AMQ_SCHEDULED_DELAY, AckMode, Destination, Outgoing, Value};
use engines::{EngineConfig, LockerSection, PersistenceSection};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    broker: BrokerSection,
    persistence: PersistenceSection,
    locker: LockerSection,
    limits: LimitsSection,
    policy: PolicySection,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let engine = args.next().unwrap_or_else(|| "kahadb".into());
    let count: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()
        .context("COUNT must be a number")?
        .unwrap_or(100_000);
    if !matches!(engine.as_str(), "memory" | "kahadb") {
        bail!("engine must be memory or kahadb, not {engine:?}");
    }
    let dir = tempfile::tempdir()?;
    let toml = format!(
        "[broker]\nname = \"burst\"\ndata_directory = \"{}\"\n[persistence]\nkind = \"{engine}\"\n[limits]\nmemory_bytes = 1073741824\n",
        dir.path().display()
    );
    let c: Config = broker_core::config::from_toml(&toml)?;
    let broker = engines::broker(
        CoreConfig {
            broker: c.broker.clone(),
            limits: c.limits,
            policy: c.policy,
        },
        &EngineConfig {
            broker: c.broker,
            persistence: c.persistence,
            locker: c.locker,
        },
    );
    broker.start().await?;
    let conn = broker.connect(None).await?;
    let queue = Destination::queue("burst");
    // Far enough ahead that every job is stored before the first is due.
    let due_at = now_ms() + 5_000 + (count as i64) / 10;
    let started = Instant::now();
    // Transacted batches of 1000: a scheduled send is stored at commit, so the burst is
    // scheduled with one fsync per batch rather than per message.
    let tx = conn.session(AckMode::Transacted)?;
    let producer = tx.producer(queue.clone())?;
    for i in 0..count {
        let delay = (due_at - now_ms()).max(0);
        producer
            .send(
                Outgoing::text(format!("job {i}"))
                    .persistent(true)
                    .property(AMQ_SCHEDULED_DELAY, Value::I64(delay)),
            )
            .await?;
        if i % 1000 == 999 {
            tx.commit().await?;
        }
    }
    tx.commit().await?;
    let scheduled_in = started.elapsed();
    let late = now_ms() > due_at;
    let consumer = conn.session(AckMode::Auto)?.consumer(queue, None).await?;
    let wait = Duration::from_millis(u64::try_from(due_at - now_ms()).unwrap_or(0));
    tokio::time::sleep(wait).await;
    let due = Instant::now();
    let mut got = 0;
    while got < count {
        match consumer.receive_timeout(Duration::from_secs(60)).await? {
            Some(_) => got += 1,
            None => bail!("only {got} of {count} arrived"),
        }
    }
    let delivered_in = due.elapsed();
    println!(
        "{engine}: scheduled {count} in {:.2} s ({:.0}/s){}; all delivered {:.2} s after their due time ({:.0}/s)",
        scheduled_in.as_secs_f64(),
        count as f64 / scheduled_in.as_secs_f64(),
        if late {
            " (scheduling outlasted the due time)"
        } else {
            ""
        },
        delivered_in.as_secs_f64(),
        count as f64 / delivered_in.as_secs_f64(),
    );
    conn.close().await;
    broker.stop().await;
    Ok(())
}
