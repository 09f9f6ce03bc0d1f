//! The temp store's cost: COUNT non-persistent messages of SIZE bytes sent to a queue with no
//! consumer, then drained, once with memory for all of them and once through 1 MiB of memory
//! (so nearly all go to `tmp_storage` and are paged back in). Prints both rates and the temp
//! store's peak use.
//!
//! ```sh
//! cargo run --release -p engines --example temp_spool -- 100000 1024
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use broker_core::config::{BrokerSection, CoreConfig, LimitsSection, PolicySection};
use broker_core::{AckMode, Destination, Outgoing};
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

/// Sends and drains; returns (send seconds, drain seconds, peak temp bytes).
async fn run(count: usize, size: usize, memory_bytes: u64) -> Result<(f64, f64, u64)> {
    let dir = tempfile::tempdir()?;
    let toml = format!(
        "[broker]\nname = \"spool\"\ndata_directory = \"{}\"\n[persistence]\nkind = \"memory\"\n[limits]\nmemory_bytes = {memory_bytes}\n[policy]\nsend_fail_if_no_space = true\n",
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
    let queue = Destination::queue("spool");
    let s = conn.session(AckMode::Auto)?;
    let p = s.producer(queue.clone())?;
    let body = "x".repeat(size);
    let started = Instant::now();
    for _ in 0..count {
        p.send(Outgoing::text(body.clone()).persistent(false))
            .await?;
    }
    let sent_in = started.elapsed().as_secs_f64();
    let peak = broker.temp_usage()?.0;
    let c = s.consumer(queue, None).await?;
    let started = Instant::now();
    for got in 0..count {
        if c.receive_timeout(Duration::from_secs(60)).await?.is_none() {
            bail!("only {got} of {count} arrived");
        }
    }
    let drained_in = started.elapsed().as_secs_f64();
    conn.close().await;
    broker.stop().await;
    Ok((sent_in, drained_in, peak))
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut number = |default: usize| -> Result<usize> {
        Ok(args
            .next()
            .map(|n| n.parse())
            .transpose()
            .context("COUNT and SIZE must be numbers")?
            .unwrap_or(default))
    };
    let count = number(100_000)?;
    let size = number(1024)?;
    for (label, memory) in [
        ("in memory", 8 * 1024 * 1024 * 1024),
        ("spooled", 1024 * 1024),
    ] {
        let (sent, drained, peak) = run(count, size, memory).await?;
        println!(
            "{label}: sent {count} x {size} B in {sent:.2} s ({:.0}/s), drained in {drained:.2} s ({:.0}/s), temp store peak {peak} B",
            count as f64 / sent,
            count as f64 / drained,
        );
    }
    Ok(())
}
