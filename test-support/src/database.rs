//! Where a database test runs: the server a variable names (or why the test skips), a table
//! prefix no other test uses, and dropping that prefix's tables afterwards.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use store_jdbc::{JdbcConfig, JdbcStore};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A table prefix no other test (in this process or another) uses, starting with `tag` (a
/// letter or two naming the suite, so leftover tables say whose they are). Short enough for
/// the engine's 24-character limit.
pub fn unique_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}{:x}_{:x}_{:x}_",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos & 0xffff
    )
}

/// The server URL in `var`, or the reason a test needing it skips.
pub fn server_url(var: &str) -> Result<String, String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => Err(format!("{var} is not set; `.ci/run` sets it")),
    }
}

/// The engine's config for a SQLite file in `dir`, with the small pool the tests use.
pub fn sqlite_config(dir: &Path) -> JdbcConfig {
    let mut config = JdbcConfig::new(format!("sqlite:{}", dir.join("store.db").display()));
    config.pool_size = 4;
    config
}

/// The engine's config for a fresh prefix starting with `tag` on the server at `url`, with the
/// small pool the tests use.
pub fn server_config(url: String, tag: &str) -> JdbcConfig {
    let mut config = JdbcConfig::new(url);
    config.table_prefix = unique_prefix(tag);
    config.pool_size = 4;
    config
}

/// The engine's config for the tables under `prefix` on `url`.
pub fn prefixed(url: &str, prefix: &str) -> JdbcConfig {
    let mut config = JdbcConfig::new(url.to_owned());
    config.table_prefix = prefix.to_owned();
    config
}

/// Drops `config`'s tables from a `Drop` impl: drop may run inside a runtime, where another
/// cannot block, so this runs one on a thread of its own. A failure is printed, not raised.
pub fn drop_tables_blocking(config: JdbcConfig) {
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            && let Err(e) = rt.block_on(JdbcStore::drop_tables(&config))
        {
            eprintln!("could not drop test tables {}*: {e}", config.table_prefix);
        }
    })
    .join();
}
