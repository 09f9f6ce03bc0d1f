//! The client subcommands: producer, consumer, browse, purge, dstat. `producer` and `consumer`
//! double as a load generator, over STOMP or OpenWire: the protocol is the one the URL's port
//! speaks (an OpenWire broker speaks first, with its WireFormatInfo, so a STOMP CONNECT that is
//! answered in OpenWire is retried over OpenWire). browse does too; purge and dstat speak STOMP
//! only (they use STOMP-side extensions).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use broker::client::{ClientError, ConnectOptions, StompClient, connect_any};
use broker::openwire_client::{self as ow, OpenWireClient};
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
    /// `auto`: the protocol the port speaks (a STOMP CONNECT first; an OpenWire port answers
    /// with its WireFormatInfo and is connected to again in OpenWire). `openwire` skips that
    /// probe, which an OpenWire broker logs as a malformed frame. purge and dstat: STOMP only.
    #[arg(long, default_value = "auto", value_parser = ["auto", "stomp", "openwire"])]
    pub protocol: String,
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

    /// A STOMP connection (purge, dstat); an OpenWire port is refused.
    async fn connect(&self, client_id: Option<String>) -> Result<StompClient> {
        if self.protocol == "openwire" {
            bail!(
                "purge and dstat speak STOMP only: --protocol openwire is for producer, consumer and browse"
            );
        }
        connect_any(
            &self.endpoints()?,
            &self.options(client_id),
            Duration::from_secs(self.connect_timeout_secs),
        )
        .await
        .map_err(|e| match e {
            ClientError::NotStomp(why) => anyhow::anyhow!(
                "{why}: purge and dstat speak STOMP only; use the broker's STOMP port \
                 (61613 by default)"
            ),
            e => e.into(),
        })
        .with_context(|| format!("cannot connect to {}", self.url))
    }

    /// A connection in whichever protocol the endpoint speaks, trying the endpoints in turn
    /// until `--connect-timeout-secs` passes (a `failover:` URL's behaviour).
    async fn connect_either(&self, client_id: Option<String>) -> Result<Conn> {
        let endpoints = self.endpoints()?;
        let opts = self.options(client_id);
        let until = Instant::now() + Duration::from_secs(self.connect_timeout_secs);
        let result = async {
            let mut last = ClientError::Closed;
            loop {
                for e in &endpoints {
                    let stomp = match self.protocol.as_str() {
                        "openwire" => Err(ClientError::NotStomp(String::new())),
                        _ => StompClient::connect(e, &opts).await,
                    };
                    let attempt = match stomp {
                        Ok(c) => Ok(Conn::Stomp(Box::new(c))),
                        // An OpenWire port (ActiveMQ's 61616): again, in its protocol.
                        Err(ClientError::NotStomp(_)) if self.protocol != "stomp" => {
                            OpenWireClient::connect(e, &opts)
                                .await
                                .map(|c| Conn::OpenWire(Box::new(c)))
                        }
                        Err(err) => Err(err),
                    };
                    match attempt {
                        Ok(c) => return Ok(c),
                        Err(err) if !retryable(&err) => return Err(err),
                        Err(err) => last = err,
                    }
                }
                if Instant::now() >= until {
                    return Err(last);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        .await;
        result.with_context(|| format!("cannot connect to {}", self.url))
    }
}

/// A producer's or consumer's connection in the protocol its broker port speaks.
enum Conn {
    Stomp(Box<StompClient>),
    OpenWire(Box<OpenWireClient>),
}

impl Conn {
    /// Opens a producer's connection: over OpenWire the producer is declared too.
    async fn producer(common: &Common) -> Result<Conn> {
        let mut c = common.connect_either(None).await?;
        if let Conn::OpenWire(o) = &mut c {
            o.producer().await?;
        }
        Ok(c)
    }

    /// One send; `sync`: waits until the broker has it (a STOMP receipt, an OpenWire
    /// Response).
    async fn send(
        &mut self,
        destination: &str,
        body: String,
        persistent: bool,
        sync: bool,
    ) -> std::result::Result<(), ClientError> {
        match self {
            Conn::Stomp(c) => {
                let persistent = if persistent { "true" } else { "false" };
                if sync {
                    c.send(destination, body, &[("persistent", persistent)])
                        .await
                } else {
                    c.send_frame(
                        Frame::new("SEND")
                            .header("destination", destination)
                            .header("persistent", persistent)
                            .with_body(body),
                    )
                    .await
                }
            }
            Conn::OpenWire(c) => {
                let d = ow::destination(destination)?;
                c.send_text(&d, &body, persistent, sync, None).await
            }
        }
    }

    /// Sends `bodies` in one transaction, returning once it is committed.
    async fn send_transaction(
        &mut self,
        destination: &str,
        bodies: Vec<String>,
        persistent: bool,
        name: String,
    ) -> std::result::Result<(), ClientError> {
        match self {
            Conn::Stomp(c) => {
                let persistent = if persistent { "true" } else { "false" };
                c.begin(&name).await?;
                for body in bodies {
                    c.send_frame(
                        Frame::new("SEND")
                            .header("destination", destination)
                            .header("persistent", persistent)
                            .header("transaction", name.clone())
                            .with_body(body),
                    )
                    .await?;
                }
                c.commit(&name).await
            }
            Conn::OpenWire(c) => {
                let d = ow::destination(destination)?;
                let tx = c.begin().await?;
                for body in bodies {
                    c.send_text(&d, &body, persistent, false, Some(&tx)).await?;
                }
                c.commit(&tx).await
            }
        }
    }

    async fn disconnect(self) {
        match self {
            Conn::Stomp(c) => c.disconnect().await.ok(),
            Conn::OpenWire(c) => c.disconnect().await.ok(),
        };
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
    /// Over OpenWire the same with synchronous sends (`responseRequired`) for receipts.
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
    let mut client = Conn::producer(&common).await?;
    let filler = "x".repeat(size);
    let mut latencies = Vec::with_capacity(count as usize);
    let mut resent = 0;
    let mut i = 0;
    let mut txn = 0u64;
    while i < count {
        let n = if batch > 0 { batch.min(count - i) } else { 1 };
        let t0 = Instant::now();
        let result = if batch > 0 {
            txn += 1;
            let bodies = (0..n)
                .map(|k| body_of(&message, &filler, producer, i + k))
                .collect();
            client
                .send_transaction(
                    &destination,
                    bodies,
                    persistent,
                    format!("p{producer}-t{txn}"),
                )
                .await
        } else {
            // Without receipts for every send, the last one still waits: once it is answered,
            // the broker has them all.
            let sync = every_receipt || i + 1 == count;
            let body = body_of(&message, &filler, producer, i);
            client.send(&destination, body, persistent, sync).await
        };
        match result {
            Ok(()) => {
                latencies.push(t0.elapsed());
                i += n;
            }
            Err(e) if retryable(&e) => {
                // Fail-over: reconnect and send again what had no receipt.
                eprintln!("producer {producer}: {e}; reconnecting");
                client = Conn::producer(&common).await?;
                resent += n;
            }
            Err(e) => return Err(e.into()),
        }
    }
    client.disconnect().await;
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
    /// Messages the broker may send ahead of acks (ActiveMQ's defaults when absent); 0 over
    /// OpenWire pulls each message.
    #[arg(long)]
    prefetch: Option<u32>,
    /// Stop when nothing arrives for this long.
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// Print each message's body (and `redelivered` when it is).
    #[arg(long)]
    print: bool,
}

/// A message as the consumer reports it, whichever protocol brought it.
struct Received {
    body: String,
    redelivered: bool,
    /// When it was sent (ms since the epoch), for the end-to-end latency.
    timestamp: Option<i64>,
}

/// A consumer's subscription in the protocol its broker port speaks.
enum Subscriber {
    Stomp {
        client: Box<StompClient>,
        /// Whether each message is acknowledged (any mode but `auto`).
        acks: bool,
    },
    OpenWire {
        client: Box<OpenWireClient>,
        consumer: ow::ConsumerId,
        /// `None`: auto, a standard ack for each half prefetch (and the rest at the end).
        mode: Option<ow::AckMode>,
        batch: i32,
        unacked: i32,
        last: Option<Box<ow::Delivery>>,
    },
}

impl Subscriber {
    async fn open(a: &ConsumerArgs) -> Result<Subscriber> {
        match a.common.connect_either(a.client_id.clone()).await? {
            Conn::Stomp(mut client) => {
                let mut headers: Vec<(&str, String)> = Vec::new();
                if let Some(s) = &a.selector {
                    headers.push(("selector", s.clone()));
                }
                if let Some(d) = &a.durable {
                    headers.push(("activemq.subscriptionName", d.clone()));
                }
                if let Some(p) = a.prefetch {
                    headers.push(("activemq.prefetchSize", p.to_string()));
                }
                let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                client.subscribe("0", &a.destination, &a.ack, &h).await?;
                Ok(Subscriber::Stomp {
                    client,
                    acks: a.ack != "auto",
                })
            }
            Conn::OpenWire(mut client) => {
                let mode = match a.ack.as_str() {
                    "auto" => None,
                    "client" => Some(ow::AckMode::Standard),
                    "client-individual" => Some(ow::AckMode::Individual),
                    other => bail!("--ack {other}: auto, client or client-individual"),
                };
                let d = ow::destination(&a.destination)?;
                let sub = ow::Subscription {
                    selector: a.selector.clone(),
                    durable: a.durable.clone(),
                    prefetch: a.prefetch,
                };
                let consumer = client.subscribe(&d, &sub).await?;
                let prefetch = a.prefetch.map_or(1000, |p| p.min(65536) as i32);
                Ok(Subscriber::OpenWire {
                    client,
                    consumer,
                    mode,
                    batch: (prefetch / 2).max(1),
                    unacked: 0,
                    last: None,
                })
            }
        }
    }

    /// The next message (acknowledged as the mode says), `None` when idle for `idle`.
    async fn recv(&mut self, idle: Duration) -> std::result::Result<Option<Received>, ClientError> {
        match self {
            Subscriber::Stomp { client, acks } => loop {
                let Some(m) = client.recv_timeout(idle).await? else {
                    return Ok(None);
                };
                if m.command != "MESSAGE" {
                    continue;
                }
                if *acks {
                    let id = m.get("ack").unwrap_or_default().to_owned();
                    if let Err(e) = client.send_frame(Frame::new("ACK").header("id", id)).await {
                        eprintln!("consumer: ack failed: {e}");
                    }
                }
                return Ok(Some(Received {
                    body: String::from_utf8_lossy(&m.body).into_owned(),
                    redelivered: m.get("redelivered") == Some("true"),
                    timestamp: m.get("timestamp").and_then(|t| t.parse().ok()),
                }));
            },
            Subscriber::OpenWire {
                client,
                mode,
                batch,
                unacked,
                last,
                ..
            } => {
                let Some(d) = client.recv_timeout(idle).await? else {
                    return Ok(None);
                };
                let r = Received {
                    body: d.body_text(),
                    redelivered: d.redelivered(),
                    timestamp: Some(d.message.timestamp).filter(|t| *t > 0),
                };
                *unacked += 1;
                match mode {
                    Some(m) => {
                        client.ack(&d, 1, *m).await?;
                        *unacked = 0;
                    }
                    None if *unacked >= *batch => {
                        client.ack(&d, *unacked, ow::AckMode::Standard).await?;
                        *unacked = 0;
                    }
                    None => {}
                }
                *last = Some(Box::new(d));
                Ok(Some(r))
            }
        }
    }

    /// Acknowledges what auto mode still owes, gives back what was prefetched and not
    /// consumed, and closes.
    async fn close(self) -> std::result::Result<(), ClientError> {
        match self {
            Subscriber::Stomp { client, .. } => client.disconnect().await,
            Subscriber::OpenWire {
                mut client,
                consumer,
                unacked,
                last,
                ..
            } => {
                if let Some(d) = &last
                    && unacked > 0
                {
                    client.ack(d, unacked, ow::AckMode::Standard).await?;
                }
                client.close_consumer(&consumer, last.as_deref()).await?;
                client.disconnect().await
            }
        }
    }
}

pub async fn consumer(a: ConsumerArgs) -> Result<()> {
    let mut sub = Subscriber::open(&a).await?;
    let mut latencies = Vec::new();
    let (mut received, mut redelivered) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let idle = Duration::from_secs(a.idle_secs);
    while a.count == 0 || received < a.count {
        let m = match sub.recv(idle).await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) if retryable(&e) => {
                eprintln!("consumer: {e}; reconnecting");
                sub = Subscriber::open(&a).await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        first.get_or_insert_with(Instant::now);
        received += 1;
        redelivered += u64::from(m.redelivered);
        if let Some(ts) = m.timestamp {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            latencies.push(Duration::from_millis(now.saturating_sub(ts).max(0) as u64));
        }
        if a.print {
            println!(
                "{}{}",
                m.body,
                if m.redelivered { " redelivered" } else { "" }
            );
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
    if let Err(e) = sub.close().await {
        eprintln!("consumer: closing: {e}");
    }
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
    let mut client = match a.common.connect_either(None).await? {
        Conn::Stomp(c) => c,
        Conn::OpenWire(c) => return browse_openwire(*c, &a.destination).await,
    };
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

/// `browse` over OpenWire: a queue browser, printed as over STOMP.
async fn browse_openwire(mut client: OpenWireClient, destination: &str) -> Result<()> {
    let queue = ow::destination(destination)?;
    let messages = client.browse(&queue).await?;
    for d in &messages {
        let m = &d.message;
        println!(
            "{} priority={} persistent={} {}",
            m.message_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            m.priority,
            m.persistent,
            d.body_text()
        );
    }
    eprintln!("{} message(s)", messages.len());
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
