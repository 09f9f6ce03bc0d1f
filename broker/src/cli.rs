//! The client subcommands: producer, consumer, browse, purge, dstat. `producer` and `consumer`
//! double as a load generator.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use broker::client::{ClientError, ConnectOptions, StompClient, connect_any};
use broker::stomp::frame::Frame;
use broker::url::{Endpoint, parse};

#[derive(clap::Args, Clone)]
pub struct Common {
    /// `tcp://host:port`, `ssl://host:port` or `failover:(url,url)`.
    #[arg(long, default_value = "tcp://127.0.0.1:61613")]
    pub url: String,
    #[arg(long, default_value = "admin")]
    pub user: String,
    #[arg(long, default_value = "admin")]
    pub password: String,
    /// CA certificate (PEM) trusted for ssl:// URLs.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// How long to keep trying to (re)connect.
    #[arg(long, default_value_t = 60)]
    pub connect_timeout_secs: u64,
}

impl Common {
    fn endpoints(&self) -> Result<Vec<Endpoint>> {
        parse(&self.url).map_err(|e| anyhow::anyhow!(e))
    }

    fn options(&self, client_id: Option<String>) -> ConnectOptions {
        ConnectOptions {
            login: self.user.clone(),
            passcode: self.password.clone(),
            client_id,
            ca: self.ca.clone(),
        }
    }

    async fn connect(&self, client_id: Option<String>) -> Result<StompClient> {
        connect_any(
            &self.endpoints()?,
            &self.options(client_id),
            Duration::from_secs(self.connect_timeout_secs),
        )
        .await
        .with_context(|| format!("cannot connect to {}", self.url))
    }
}

#[derive(clap::Args)]
pub struct ProducerArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value = "/queue/TEST")]
    destination: String,
    /// Messages in all (split among the producers).
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Concurrent producers, one connection each.
    #[arg(long, default_value_t = 1)]
    producers: u64,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    persistent: bool,
    /// Messages per transaction (0: no transactions).
    #[arg(long, default_value_t = 0)]
    transaction_batch: u64,
    /// Body text; `{n}` is replaced by the message number. Default: `size` bytes of filler.
    #[arg(long)]
    message: Option<String>,
    /// `every`: each SEND waits for its receipt (the latency figures are per send). `last`:
    /// only each producer's last SEND asks for one, the others are pipelined as ActiveMQ
    /// clients do with asynchronous sends; the receipt still means all of them are stored.
    #[arg(long, default_value = "every", value_parser = ["every", "last"])]
    receipts: String,
}

/// Latency samples → (p50, p99) in milliseconds.
fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1000.0;
    (at(0.50), at(0.99))
}

fn retryable(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Io(_) | ClientError::Closed | ClientError::Timeout
    )
}

pub async fn producer(a: ProducerArgs) -> Result<()> {
    if a.producers == 0 {
        bail!("--producers must be at least 1");
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..a.producers {
        let n = a.count / a.producers + u64::from(p < a.count % a.producers);
        let common = a.common.clone();
        let destination = a.destination.clone();
        let message = a.message.clone();
        let (size, persistent, batch) = (a.size, a.persistent, a.transaction_batch);
        let every = a.receipts == "every";
        tasks.push(tokio::spawn(async move {
            produce(
                common,
                destination,
                p,
                n,
                size,
                persistent,
                batch,
                every,
                message,
            )
            .await
        }));
    }
    let mut latencies = Vec::new();
    let mut resent = 0;
    for t in tasks {
        let (l, r) = t.await.context("producer task")??;
        latencies.extend(l);
        resent += r;
    }
    let secs = start.elapsed().as_secs_f64();
    let (p50, p99) = percentiles(latencies);
    println!(
        "sent {} messages of {} bytes with {} producer(s) in {secs:.2} s: {:.0} msgs/s; latency p50 {p50:.2} ms, p99 {p99:.2} ms{}",
        a.count,
        a.size,
        a.producers,
        a.count as f64 / secs,
        if resent > 0 {
            format!("; {resent} resent after fail-over")
        } else {
            String::new()
        }
    );
    println!(
        "RESULT msgs_per_sec={:.0} p50_ms={p50:.3} p99_ms={p99:.3}",
        a.count as f64 / secs
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn produce(
    common: Common,
    destination: String,
    producer: u64,
    count: u64,
    size: usize,
    persistent: bool,
    batch: u64,
    every_receipt: bool,
    message: Option<String>,
) -> Result<(Vec<Duration>, u64)> {
    let mut client = common.connect(None).await?;
    let filler = "x".repeat(size);
    let persistent = if persistent { "true" } else { "false" };
    let mut latencies = Vec::with_capacity(count as usize);
    let mut resent = 0;
    let mut i = 0;
    let mut txn = 0u64;
    while i < count {
        let n = if batch > 0 { batch.min(count - i) } else { 1 };
        let t0 = Instant::now();
        let result: std::result::Result<(), ClientError> = async {
            if batch > 0 {
                txn += 1;
                let tx = format!("p{producer}-t{txn}");
                client.begin(&tx).await?;
                for k in 0..n {
                    let body = body_of(&message, &filler, producer, i + k);
                    client
                        .send_frame(
                            Frame::new("SEND")
                                .header("destination", destination.clone())
                                .header("persistent", persistent)
                                .header("transaction", tx.clone())
                                .with_body(body),
                        )
                        .await?;
                }
                client.commit(&tx).await
            } else if !every_receipt && i + 1 < count {
                let body = body_of(&message, &filler, producer, i);
                client
                    .send_frame(
                        Frame::new("SEND")
                            .header("destination", destination.clone())
                            .header("persistent", persistent)
                            .with_body(body),
                    )
                    .await
            } else {
                let body = body_of(&message, &filler, producer, i);
                client
                    .send(&destination, body, &[("persistent", persistent)])
                    .await
            }
        }
        .await;
        match result {
            Ok(()) => {
                latencies.push(t0.elapsed());
                i += n;
            }
            Err(e) if retryable(&e) => {
                // Fail-over: reconnect and send again what had no receipt.
                eprintln!("producer {producer}: {e}; reconnecting");
                client = common.connect(None).await?;
                resent += n;
            }
            Err(e) => return Err(e.into()),
        }
    }
    client.disconnect().await.ok();
    Ok((latencies, resent))
}

fn body_of(message: &Option<String>, filler: &str, producer: u64, n: u64) -> String {
    match message {
        Some(m) => m
            .replace("{n}", &n.to_string())
            .replace("{p}", &producer.to_string()),
        None => filler.to_owned(),
    }
}

#[derive(clap::Args)]
pub struct ConsumerArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value = "/queue/TEST")]
    destination: String,
    /// Stop after this many messages (0: until idle for --idle-secs).
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// auto, client or client-individual.
    #[arg(long, default_value = "auto")]
    ack: String,
    #[arg(long)]
    selector: Option<String>,
    #[arg(long)]
    client_id: Option<String>,
    /// A durable subscription of that name (needs --client-id).
    #[arg(long)]
    durable: Option<String>,
    #[arg(long)]
    prefetch: Option<u32>,
    /// Stop when nothing arrives for this long.
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// Print each message's body (and `redelivered` when it is).
    #[arg(long)]
    print: bool,
}

async fn subscribe(
    c: &mut StompClient,
    destination: &str,
    ack: &str,
    headers: &[(String, String)],
) -> Result<()> {
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    c.subscribe("0", destination, ack, &h).await?;
    Ok(())
}

pub async fn consumer(a: ConsumerArgs) -> Result<()> {
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(s) = &a.selector {
        headers.push(("selector".into(), s.clone()));
    }
    if let Some(d) = &a.durable {
        headers.push(("activemq.subscriptionName".into(), d.clone()));
    }
    if let Some(p) = a.prefetch {
        headers.push(("activemq.prefetchSize".into(), p.to_string()));
    }
    let mut client = a.common.connect(a.client_id.clone()).await?;
    subscribe(&mut client, &a.destination, &a.ack, &headers).await?;
    let mut latencies = Vec::new();
    let (mut received, mut redelivered) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let idle = Duration::from_secs(a.idle_secs);
    while a.count == 0 || received < a.count {
        let m = match client.recv_timeout(idle).await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) if retryable(&e) => {
                eprintln!("consumer: {e}; reconnecting");
                client = a.common.connect(a.client_id.clone()).await?;
                subscribe(&mut client, &a.destination, &a.ack, &headers).await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if m.command != "MESSAGE" {
            continue;
        }
        first.get_or_insert_with(Instant::now);
        received += 1;
        let again = m.get("redelivered") == Some("true");
        redelivered += u64::from(again);
        if let Some(ts) = m.get("timestamp").and_then(|t| t.parse::<i64>().ok()) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            latencies.push(Duration::from_millis(now.saturating_sub(ts).max(0) as u64));
        }
        if a.print {
            println!(
                "{}{}",
                String::from_utf8_lossy(&m.body),
                if again { " redelivered" } else { "" }
            );
        }
        if a.ack != "auto" {
            let id = m.get("ack").unwrap_or_default().to_owned();
            if let Err(e) = client.send_frame(Frame::new("ACK").header("id", id)).await {
                eprintln!("consumer: ack failed: {e}");
            }
        }
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64()).max(1e-9);
    let (p50, p99) = percentiles(latencies);
    eprintln!(
        "received {received} messages ({redelivered} redelivered) in {secs:.2} s: {:.0} msgs/s; end-to-end latency p50 {p50:.0} ms, p99 {p99:.0} ms",
        received as f64 / secs
    );
    println!(
        "RESULT received={received} redelivered={redelivered} msgs_per_sec={:.0}",
        received as f64 / secs
    );
    client.disconnect().await.ok();
    Ok(())
}

#[derive(clap::Args)]
pub struct BrowseArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value = "/queue/TEST")]
    destination: String,
}

async fn browse_frames(client: &mut StompClient, destination: &str) -> Result<Vec<Frame>> {
    client
        .subscribe("browse", destination, "auto", &[("browser", "true")])
        .await?;
    let mut out = Vec::new();
    loop {
        let m = client.recv().await?;
        if m.get("browser") == Some("end") {
            return Ok(out);
        }
        out.push(m);
    }
}

pub async fn browse(a: BrowseArgs) -> Result<()> {
    let mut client = a.common.connect(None).await?;
    let frames = browse_frames(&mut client, &a.destination).await?;
    for m in &frames {
        println!(
            "{} priority={} persistent={} {}",
            m.get("message-id").unwrap_or_default(),
            m.get("priority").unwrap_or_default(),
            m.get("persistent").unwrap_or_default(),
            String::from_utf8_lossy(&m.body)
        );
    }
    eprintln!("{} message(s)", frames.len());
    client.disconnect().await.ok();
    Ok(())
}

#[derive(clap::Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long)]
    destination: String,
}

pub async fn purge(a: PurgeArgs) -> Result<()> {
    let Some(queue) = a.destination.strip_prefix("/queue/") else {
        bail!("only queues can be purged: --destination /queue/<name>");
    };
    let mut client = a.common.connect(None).await?;
    client
        .send(&format!("/queue/ActiveMQ.Admin.Purge.{queue}"), "", &[])
        .await?;
    println!("purged {}", a.destination);
    client.disconnect().await.ok();
    Ok(())
}

#[derive(clap::Args)]
pub struct DstatArgs {
    #[command(flatten)]
    common: Common,
}

pub async fn dstat(a: DstatArgs) -> Result<()> {
    let mut client = a.common.connect(None).await?;
    let rows = browse_frames(&mut client, "/queue/ActiveMQ.Statistics.Destination").await?;
    println!(
        "{:<40} {:>10} {:>10} {:>10} {:>10}",
        "Name", "Pending", "Consumers", "Enqueued", "Dequeued"
    );
    for r in rows {
        let mut name = r.get("destinationName").unwrap_or_default().to_owned();
        if let Some(s) = r.get("subscriptionName") {
            name = format!("{name} [{s}]");
        }
        println!(
            "{:<40} {:>10} {:>10} {:>10} {:>10}",
            name,
            r.get("pending").unwrap_or_default(),
            r.get("consumers").unwrap_or_default(),
            r.get("enqueued").unwrap_or_default(),
            r.get("dequeued").unwrap_or_default()
        );
    }
    client.disconnect().await.ok();
    Ok(())
}
