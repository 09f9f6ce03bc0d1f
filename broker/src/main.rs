//! `broker`: run the broker, or talk to one (modelled on ActiveMQ's `bin/activemq`).

mod cli;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use broker::listener::Server;
use broker::web::WebServer;
use broker::{Broker, BrokerConfig};
use clap::{Parser, Subcommand};
use tracing::{error, info};

/// mimalloc rather than glibc's malloc: a broker allocates and frees a message, its frames
/// and its futures per send and per ack, from several threads; glibc's arenas spent about a
/// tenth of the broker's CPU doing that in a profile of a drain with an ack per message.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "broker",
    version,
    about = "An ActiveMQ-style message broker with STOMP"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the broker (the embedded default without --config: KahaDB under ./data, STOMP on
    /// 127.0.0.1:61613).
    Start {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Sends messages; with several producers and a count, a load generator.
    Producer(cli::ProducerArgs),
    /// Receives messages; prints the rate and latency.
    Consumer(cli::ConsumerArgs),
    /// Lists a queue's messages without consuming them.
    Browse(cli::BrowseArgs),
    /// Deletes every message of a queue.
    Purge(cli::PurgeArgs),
    /// Per destination: pending, consumers, enqueued, dequeued.
    Dstat(cli::DstatArgs),
    /// Prints the broker.toml that does what an ActiveMQ activemq.xml did; what cannot be
    /// mapped is listed on stderr, one line per item with its XML path.
    ImportConfig {
        /// ActiveMQ's XML configuration (activemq.xml).
        file: PathBuf,
        /// A value for a `${name}` placeholder, e.g. `--set activemq.data=/var/lib/activemq/data`.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Loads the messages an ActiveMQ KahaDB directory still holds (queued, pending for a
    /// durable subscription, prepared XA) into the engine the config names; the directory is
    /// only read. Importing twice adds nothing the second time.
    ImportKahadb {
        /// ActiveMQ's KahaDB directory (holding db-N.log), or the data directory above it.
        dir: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Go on past damaged journal records, counting what was skipped.
        #[arg(long)]
        skip_damaged: bool,
    },
    /// Reads a password from stdin (its first line) and prints its argon2 hash, for a
    /// `[[users]] password` in broker.toml.
    Passwd,
}

/// `broker passwd`: the password is read from stdin rather than taken as an argument, so that
/// it stays out of the shell's history and the process list.
fn passwd() -> Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        anyhow::bail!("empty password on stdin");
    }
    let hash = broker::users::hash_password(password).map_err(anyhow::Error::msg)?;
    println!("{hash}");
    Ok(())
}

/// `broker import-config`: the config on stdout, then every unmapped item and every note on
/// stderr (`unmapped: <path>: <why>`, `note: <path>: <what>`), so that `> broker.toml` keeps
/// the terminal showing what needs a look.
fn import_config(file: &std::path::Path, set: &[String]) -> Result<()> {
    use std::io::Write;
    let vars = broker::import::parse_sets(set)?;
    let imported = broker::import::import_file(file, &vars)?;
    let mut out = std::io::stdout().lock();
    out.write_all(imported.toml.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the config to stdout")?;
    let mut err = std::io::stderr().lock();
    for item in &imported.unmapped {
        let _ = writeln!(err, "unmapped: {item}");
    }
    for item in &imported.notes {
        let _ = writeln!(err, "note: {item}");
    }
    if let Some(e) = &imported.load_error {
        let _ = writeln!(
            err,
            "warning: this build of the broker does not accept the printed config: {e}"
        );
    }
    Ok(())
}

/// `broker import-kahadb`: progress and the summary on stderr.
async fn import_kahadb(
    dir: &std::path::Path,
    config: Option<&std::path::Path>,
    skip_damaged: bool,
) -> Result<()> {
    let config = match config {
        Some(p) => BrokerConfig::from_file(p)?,
        None => BrokerConfig::default(),
    };
    let dir = broker::import::kahadb::kahadb_dir(dir);
    let summary = broker::import::kahadb::import(&dir, &config, skip_damaged).await?;
    eprint!("{summary}");
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            Command::Start { config } => start(config).await,
            Command::Producer(a) => cli::producer(a).await.map(|()| 0),
            Command::Consumer(a) => cli::consumer(a).await.map(|()| 0),
            Command::Browse(a) => cli::browse(a).await.map(|()| 0),
            Command::Purge(a) => cli::purge(a).await.map(|()| 0),
            Command::Dstat(a) => cli::dstat(a).await.map(|()| 0),
            Command::Passwd => passwd().map(|()| 0),
            Command::ImportConfig { file, set } => import_config(&file, &set).map(|()| 0),
            Command::ImportKahadb {
                dir,
                config,
                skip_damaged,
            } => import_kahadb(&dir, config.as_deref(), skip_damaged)
                .await
                .map(|()| 0),
        }
    });
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn init_logging(config: &BrokerConfig) -> Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let dir = &config.broker.data_directory;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("broker.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open the log {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file)),
        )
        .try_init()
        .context("logging")?;
    Ok(())
}

/// Exit codes: 0 after a clean stop (SIGINT/SIGTERM), 3 when the master lock was lost (a
/// supervisor should start it again: it comes back as a slave).
async fn start(config_path: Option<PathBuf>) -> Result<u8> {
    let config = match &config_path {
        Some(p) => BrokerConfig::from_file(p)?,
        None => BrokerConfig::default(),
    };
    init_logging(&config)?;
    info!(
        config = %config_path.as_ref().map_or("(embedded default)".into(), |p| p.display().to_string()),
        store = config.persistence.kind.name(),
        "starting broker {}",
        config.broker.name
    );
    let broker = Arc::new(Broker::new(config));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    let signal = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    };
    tokio::pin!(signal);
    tokio::select! {
        r = broker.start() => r?,
        s = &mut signal => {
            info!("{s} while waiting to start; stopping");
            broker.stop().await;
            return Ok(0);
        }
    }
    let server = match Server::start(Arc::clone(&broker)).await {
        Ok(s) => s,
        Err(e) => {
            broker.stop().await;
            return Err(e);
        }
    };
    let web_bind = broker.config().transports.web.clone();
    let web = if web_bind.is_empty() {
        None
    } else {
        match WebServer::start(Arc::clone(&broker), &web_bind).await {
            Ok(w) => Some(w),
            Err(e) => {
                server.stop().await;
                broker.stop().await;
                return Err(e);
            }
        }
    };
    let code = tokio::select! {
        s = &mut signal => {
            info!("{s}: stopping");
            0
        }
        _ = broker.stopped() => {
            error!("the broker stopped (lock lost); exiting");
            3
        }
    };
    if let Some(w) = web {
        w.stop().await;
    }
    server.stop().await;
    broker.stop().await;
    info!("stopped");
    Ok(code)
}
