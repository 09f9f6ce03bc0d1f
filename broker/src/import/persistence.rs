//! `<persistenceAdapter>` (and `<persistenceFactory>`) → `[persistence]` and `[locker]`:
//! the engine of the same name with its settings, a JDBC adapter's Spring data source turned
//! into this broker's database URL, and the adapter's locker. A `jdbcPersistenceAdapter`
//! under ActiveMQ's database locker becomes `message_format = "openwire"`: the tables are
//! ActiveMQ's, and this broker then reads what ActiveMQ left there and can be its master or
//! slave (under a lease locker, which that format cannot fence, a note says so instead).
//!
//! An adapter this broker cannot run (mKahaDB, a Derby or Oracle database) is reported and
//! `[persistence]` is left out, so the broker's default engine applies: the line on stderr
//! says so, rather than a different database being picked quietly.

use roxmltree::Node;

use super::ImportError;
use super::out::{Doc, int};
use super::xml::{Ctx, attr_path, child, children, elements, name, path};

pub(super) fn map(ctx: &mut Ctx, b: Node, doc: &mut Doc) -> Result<(), ImportError> {
    let persistent = ctx.bool_attr(b, "persistent")?;
    let holders: Vec<Node> = [
        child(b, "persistenceAdapter"),
        child(b, "persistenceFactory"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if persistent == Some(false) {
        doc.table("persistence")
            .set_c("kind", "memory", "persistent=\"false\"");
        for h in holders {
            ctx.unmapped(
                h,
                "not used: with persistent=\"false\" ActiveMQ keeps every message in memory, as persistence.kind = \"memory\" does",
            );
        }
        return Ok(());
    }
    let mut adapters = Vec::new();
    for h in holders {
        ctx.visit(h);
        adapters.extend(elements(h));
    }
    let mut mapped = false;
    for a in adapters {
        if mapped {
            ctx.unmapped(a, "a second persistence adapter; ActiveMQ uses one");
            continue;
        }
        mapped = true;
        match name(a) {
            "kahaDB" => kahadb(ctx, a, doc)?,
            "amqPersistenceAdapter" => amq(ctx, a, doc)?,
            "jdbcPersistenceAdapter" => jdbc(ctx, a, doc, false)?,
            "journaledJDBC" | "journalPersistenceAdapterFactory" => jdbc(ctx, a, doc, true)?,
            "levelDB" => leveldb(ctx, a, doc, false)?,
            "replicatedLevelDB" => leveldb(ctx, a, doc, true)?,
            "memoryPersistenceAdapter" => {
                ctx.visit(a);
                doc.table("persistence").set("kind", "memory");
            }
            other => ctx.unmapped(
                a,
                format!(
                    "no {other} engine in this broker; [persistence] is left out, so the broker's default applies (kahadb under data_directory)"
                ),
            ),
        }
    }
    Ok(())
}

/// Copies whole-number attribute `attr` to `table.key`.
fn put_u64(
    ctx: &mut Ctx,
    doc: &mut Doc,
    n: Node,
    attr: &str,
    table: &'static str,
    key: &str,
) -> Result<(), ImportError> {
    if let Some(v) = ctx.u64_attr(n, attr)? {
        doc.table(table).set(key, int(v));
    }
    Ok(())
}

/// Copies size attribute `attr` ("32 mb") to `table.key` in bytes, when at least `min`.
fn put_bytes(
    ctx: &mut Ctx,
    doc: &mut Doc,
    n: Node,
    attr: &str,
    table: &'static str,
    key: &str,
    min: u64,
) -> Result<(), ImportError> {
    if let Some(v) = ctx.bytes_attr(n, attr)? {
        if v < min {
            ctx.unmapped_at(
                attr_path(n, attr),
                format!("{v} bytes is below this broker's minimum for {table}.{key} ({min})"),
            );
        } else {
            doc.table(table).set(key, int(v));
        }
    }
    Ok(())
}

fn put_bool(
    ctx: &mut Ctx,
    doc: &mut Doc,
    n: Node,
    attr: &str,
    table: &'static str,
    key: &str,
) -> Result<(), ImportError> {
    if let Some(v) = ctx.bool_attr(n, attr)? {
        doc.table(table).set(key, v);
    }
    Ok(())
}

fn put_str(
    ctx: &mut Ctx,
    doc: &mut Doc,
    n: Node,
    attr: &str,
    table: &'static str,
    key: &str,
) -> Result<(), ImportError> {
    if let Some(v) = ctx.attr(n, attr)? {
        doc.table(table).set(key, v);
    }
    Ok(())
}

/// The note every file engine's directory gets: the files there are not ActiveMQ's.
fn directory_note(ctx: &mut Ctx, a: Node, what: &str) {
    if a.attribute("directory").is_some() || a.attribute("dataDirectory").is_some() {
        ctx.note(
            path(a),
            format!(
                "this broker's {what} files are its own format and ActiveMQ's are not read: point the directory at an empty one (messages still in ActiveMQ's store are not carried over)"
            ),
        );
    }
}

fn kahadb(ctx: &mut Ctx, a: Node, doc: &mut Doc) -> Result<(), ImportError> {
    const T: &str = "persistence.kahadb";
    ctx.visit(a);
    doc.table("persistence").set("kind", "kahadb");
    put_str(ctx, doc, a, "directory", T, "directory")?;
    directory_note(ctx, a, "KahaDB");
    put_bytes(
        ctx,
        doc,
        a,
        "journalMaxFileLength",
        T,
        "journal_max_file_length",
        64 * 1024,
    )?;
    put_bytes(
        ctx,
        doc,
        a,
        "journalMaxWriteBatchSize",
        T,
        "journal_max_write_batch_size",
        1,
    )?;
    put_u64(
        ctx,
        doc,
        a,
        "checkpointInterval",
        T,
        "checkpoint_interval_ms",
    )?;
    put_u64(ctx, doc, a, "cleanupInterval", T, "cleanup_interval_ms")?;
    put_u64(ctx, doc, a, "indexCacheSize", T, "index_cache_size")?;
    put_u64(
        ctx,
        doc,
        a,
        "indexWriteBatchSize",
        T,
        "index_write_batch_size",
    )?;
    // ActiveMQ spells it with a lower-case f.
    put_bool(
        ctx,
        doc,
        a,
        "ignoreMissingJournalfiles",
        T,
        "ignore_missing_journal_files",
    )?;
    put_bool(
        ctx,
        doc,
        a,
        "enableAckCompaction",
        T,
        "enable_ack_compaction",
    )?;
    put_bool(ctx, doc, a, "cleanupOnStop", T, "cleanup_on_stop")?;
    sync(
        ctx,
        doc,
        a,
        T,
        "journalDiskSyncStrategy",
        "journalDiskSyncInterval",
        "enableJournalDiskSyncs",
    )?;
    put_u64(
        ctx,
        doc,
        a,
        "lockKeepAlivePeriod",
        "locker",
        "keep_alive_ms",
    )?;
    if let Some(l) = child(a, "locker") {
        locker(ctx, l, doc, None)?;
    }
    fit_lease(ctx, doc, a);
    Ok(())
}

/// The sync policy: ActiveMQ 5.14's strategy (`always`, `periodic`, `never`) and interval, or
/// the older `enableJournalDiskSyncs="false"` (= never).
fn sync(
    ctx: &mut Ctx,
    doc: &mut Doc,
    a: Node,
    table: &'static str,
    strategy_attr: &str,
    interval_attr: &str,
    enable_attr: &str,
) -> Result<(), ImportError> {
    let strategy = ctx.attr(a, strategy_attr)?.map(|s| s.to_ascii_lowercase());
    let enable = ctx.bool_attr(a, enable_attr)?;
    let interval = ctx.u64_attr(a, interval_attr)?;
    let kind = match (strategy.as_deref(), enable) {
        (Some(s @ ("always" | "periodic" | "never")), _) => Some(s.to_owned()),
        (Some(other), _) => {
            ctx.unmapped_at(
                attr_path(a, strategy_attr),
                format!("{other:?}: expected always, periodic or never"),
            );
            None
        }
        (None, Some(false)) => Some("never".to_owned()),
        (None, _) => None,
    };
    if let Some(k) = &kind {
        doc.table(table).set("sync", k.as_str());
    }
    if let Some(ms) = interval {
        if kind.as_deref() == Some("periodic") && ms > 0 {
            doc.table(table).set("sync_interval_ms", int(ms));
        } else {
            ctx.unmapped_at(
                attr_path(a, interval_attr),
                "applies only with the periodic strategy, in ActiveMQ as here",
            );
        }
    }
    Ok(())
}

fn amq(ctx: &mut Ctx, a: Node, doc: &mut Doc) -> Result<(), ImportError> {
    const T: &str = "persistence.amq";
    ctx.visit(a);
    doc.table("persistence").set("kind", "amq");
    put_str(ctx, doc, a, "directory", T, "directory")?;
    directory_note(ctx, a, "AMQ");
    put_bytes(
        ctx,
        doc,
        a,
        "maxFileLength",
        T,
        "max_file_length",
        64 * 1024,
    )?;
    put_u64(
        ctx,
        doc,
        a,
        "checkpointInterval",
        T,
        "checkpoint_interval_ms",
    )?;
    put_u64(ctx, doc, a, "cleanupInterval", T, "cleanup_interval_ms")?;
    Ok(())
}

fn leveldb(ctx: &mut Ctx, a: Node, doc: &mut Doc, replicated: bool) -> Result<(), ImportError> {
    const T: &str = "persistence.leveldb";
    ctx.visit(a);
    doc.table("persistence").set("kind", "leveldb");
    put_str(ctx, doc, a, "directory", T, "directory")?;
    directory_note(ctx, a, "LevelDB");
    put_bytes(ctx, doc, a, "logSize", T, "log_size", 1024 * 1024)?;
    put_bytes(ctx, doc, a, "indexCacheSize", T, "index_cache_size", 1)?;
    put_bytes(
        ctx,
        doc,
        a,
        "indexWriteBufferSize",
        T,
        "index_write_buffer_size",
        64 * 1024,
    )?;
    put_bool(ctx, doc, a, "verifyChecksums", T, "verify_checksums")?;
    put_bool(ctx, doc, a, "paranoidChecks", T, "paranoid_checks")?;
    if !replicated {
        put_bool(ctx, doc, a, "sync", T, "sync")?;
        return Ok(());
    }
    // A replicated store over a local leveldb: the LevelDB settings above stay in
    // [persistence.leveldb], the replication ones go to [persistence.replicated].
    const R: &str = "persistence.replicated";
    doc.table("persistence").set("kind", "replicated");
    doc.table(R).set("local", "leveldb");
    put_u64(ctx, doc, a, "replicas", R, "replicas")?;
    put_str(ctx, doc, a, "bind", R, "bind")?;
    put_str(ctx, doc, a, "zkAddress", R, "zk_address")?;
    put_str(ctx, doc, a, "zkPath", R, "zk_path")?;
    put_str(ctx, doc, a, "hostname", R, "hostname")?;
    if let Some(v) = ctx.attr(a, "zkSessionTimeout")? {
        let ms = v
            .strip_suffix("ms")
            .and_then(|n| n.trim().parse::<u64>().ok())
            .or_else(|| {
                v.strip_suffix('s')
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .map(|s| s * 1000)
            });
        match ms {
            Some(ms) if ms > 0 => {
                doc.table(R).set("zk_session_timeout_ms", int(ms));
            }
            _ => ctx.unmapped_at(
                attr_path(a, "zkSessionTimeout"),
                format!("zkSessionTimeout={v:?} is not a duration like \"2s\" or \"1500ms\""),
            ),
        }
    }
    if let Some(v) = ctx.attr(a, "sync")? {
        let parts: Vec<&str> = v.split(',').map(str::trim).collect();
        let mode = if parts.contains(&"quorum_disk") {
            Some("quorum_disk")
        } else if parts.contains(&"quorum_mem") {
            Some("quorum_mem")
        } else if parts == ["local_disk"] {
            Some("local_disk")
        } else {
            None
        };
        match mode {
            Some(m) => {
                doc.table(R).set("sync", m);
                // The local store syncs what the master acknowledges.
                doc.table(T).set("sync", true);
            }
            None => ctx.unmapped_at(
                attr_path(a, "sync"),
                format!("sync={v:?}: this broker has quorum_disk, quorum_mem and local_disk"),
            ),
        }
    }
    for attr in ["zkPassword", "securityToken"] {
        if a.attribute(attr).is_some() {
            ctx.skip_attr(a, attr);
            ctx.unmapped_at(
                attr_path(a, attr),
                format!("{attr}=(hidden): this broker's ZooKeeper client and replication connection take no password"),
            );
        }
    }
    Ok(())
}

/// A JDBC adapter, or ActiveMQ's journal in front of one.
fn jdbc(ctx: &mut Ctx, a: Node, doc: &mut Doc, journaled: bool) -> Result<(), ImportError> {
    ctx.visit(a);
    let Some(ds) = find_data_source(ctx, a)? else {
        ctx.unmapped(
            a,
            "no usable dataSource (ActiveMQ's default is an embedded Apache Derby database, which this broker cannot use); [persistence] is left out, so the broker's default applies (kahadb under data_directory)",
        );
        return Ok(());
    };
    let url = match data_source_url(ctx, ds)? {
        Ok(u) => u,
        Err(why) => {
            ctx.unmapped(
                a,
                format!(
                    "{why}; [persistence] is left out, so the broker's default applies (kahadb under data_directory)"
                ),
            );
            return Ok(());
        }
    };
    let mut journaled = journaled;
    if journaled && ctx.bool_attr(a, "useJournal")? == Some(false) {
        journaled = false;
        ctx.note(path(a), "useJournal=\"false\": plain jdbc");
    }
    doc.table("persistence")
        .set("kind", if journaled { "journaled-jdbc" } else { "jdbc" });
    const T: &str = "persistence.jdbc";
    doc.table(T).set("url", url.url.clone());
    if let Some(p) = url.pool {
        doc.table(T).set("pool_size", int(u64::from(p)));
    }
    put_bool(
        ctx,
        doc,
        a,
        "createTablesOnStartup",
        T,
        "create_tables_on_startup",
    )?;
    if let Some(st) = child(a, "statements") {
        ctx.visit(st);
        for s in children(st, "statements") {
            ctx.visit(s);
            put_str(ctx, doc, s, "tablePrefix", T, "table_prefix")?;
        }
    }
    if let Some(ad) = child(a, "adapter") {
        ctx.done(ad);
        ctx.note(
            path(ad),
            "the SQL dialect follows the url's scheme here; the adapter element is not needed",
        );
    }
    if journaled {
        const J: &str = "persistence.journaled_jdbc";
        // ActiveMQ's journal lives in <dataDirectory>/journal.
        if let Some(d) = ctx.attr(a, "dataDirectory")? {
            let dir = std::path::Path::new(&d).join("journal");
            doc.table(J).set("directory", dir.display().to_string());
            directory_note(ctx, a, "journal");
        }
        put_bytes(ctx, doc, a, "journalLogFileSize", J, "max_file_length", 1)?;
        if ctx.bool_attr(a, "useDatabaseLock")? != Some(false) {
            ctx.note(
                path(a),
                "journaled-jdbc runs under a shared-file lock on its journal here (a database lock cannot fence a local journal): no master/slave on the database",
            );
        }
        return Ok(());
    }
    let use_lock = match ctx.bool_attr(a, "useLock")? {
        Some(v) => Some(v),
        None => ctx.bool_attr(a, "useDatabaseLock")?,
    };
    if let Some(ms) = ctx.u64_attr(a, "lockKeepAlivePeriod")? {
        doc.table("locker").set("keep_alive_ms", int(ms));
    }
    put_u64(
        ctx,
        doc,
        a,
        "lockAcquireSleepInterval",
        "locker",
        "acquire_retry_ms",
    )?;
    if use_lock == Some(false) {
        doc.table("locker").set("kind", "none");
    } else if let Some(l) = child(a, "locker") {
        locker(ctx, l, doc, Some(&url.url))?;
    } else {
        doc.table("locker").set_c(
            "kind",
            "database",
            "ActiveMQ's default for JDBC (DefaultDatabaseLocker)",
        );
    }
    // The tables are ActiveMQ's and hold what ActiveMQ marshalled: read and write them as
    // ActiveMQ does, so this broker takes over what is there and can run beside ActiveMQ as
    // its master or slave. That needs the database locker (ActiveMQ's schema has no fencing
    // epoch for the lease).
    let lease = doc.table("locker").get("kind").and_then(|k| k.as_str()) == Some("lease");
    if lease {
        ctx.note(
            path(a),
            "persistence.jdbc.message_format stays \"native\" (tables of this broker's own) because the locker is a lease; to take over ActiveMQ's messages in these tables, or to run beside ActiveMQ on them, use message_format = \"openwire\" with locker.kind = \"database\"",
        );
    } else {
        doc.table(T).set_c(
            "message_format",
            "openwire",
            "ActiveMQ's own MSG encoding and schema: takes over what ActiveMQ left in these tables, and can be ActiveMQ's master or slave on them",
        );
    }
    fit_lease(ctx, doc, a);
    Ok(())
}

/// A lease must be at least three keep-alives long here; ActiveMQ has no such rule, so a
/// keep-alive given in the XML sets the lease when the default (10 s) is too short.
fn fit_lease(ctx: &mut Ctx, doc: &mut Doc, a: Node) {
    let t = doc.table("locker");
    let lease = t.get("kind").and_then(|k| k.as_str()) == Some("lease");
    let ka = t.get("keep_alive_ms").and_then(toml::Value::as_integer);
    if let (true, Some(ka)) = (lease, ka)
        && ka.saturating_mul(3) > 10_000
    {
        t.set("lease_ms", ka.saturating_mul(3));
        ctx.note(
            path(a),
            format!(
                "locker.lease_ms = {} so that the keep-alive ({ka} ms) is at most a third of the lease, as this broker requires",
                ka.saturating_mul(3)
            ),
        );
    }
}

/// `<locker>` of an adapter: which lock, and its settings. `engine_url` is the JDBC engine's
/// database, the lock's default one.
fn locker(
    ctx: &mut Ctx,
    wrapper: Node,
    doc: &mut Doc,
    engine_url: Option<&str>,
) -> Result<(), ImportError> {
    ctx.visit(wrapper);
    let mut first = true;
    for l in elements(wrapper) {
        if !first {
            ctx.unmapped(l, "a second locker; ActiveMQ uses one");
            continue;
        }
        first = false;
        let kind = match name(l) {
            "shared-file-locker" => "shared-file",
            "lease-database-locker" => "lease",
            "database-locker" | "transact-database-locker" => "database",
            other => {
                ctx.unmapped(
                    l,
                    format!("no {other} here (shared-file, database and lease are)"),
                );
                continue;
            }
        };
        // A database lock needs a database: its own data source, or the JDBC engine's.
        let mut url = None;
        if kind != "shared-file" {
            let mut why = None;
            if let Some(ds) = find_data_source(ctx, l)? {
                match data_source_url(ctx, ds)? {
                    Ok(u) => url = Some(u.url),
                    Err(w) => why = Some(w),
                }
            }
            if url.is_none() && engine_url.is_none() {
                ctx.unmapped(
                    l,
                    format!(
                        "a {kind} locker needs a database this broker can use{}; [locker] keeps the engine's default lock",
                        why.map(|w| format!(" ({w})")).unwrap_or_default()
                    ),
                );
                continue;
            }
        }
        ctx.visit(l);
        doc.table("locker").set("kind", kind);
        if let Some(u) = url.filter(|u| Some(u.as_str()) != engine_url) {
            doc.table("locker").set("url", u);
        }
        put_u64(
            ctx,
            doc,
            l,
            "lockAcquireSleepInterval",
            "locker",
            "acquire_retry_ms",
        )?;
        if ctx.bool_attr(l, "failIfLocked")? == Some(true) {
            ctx.unmapped_at(
                attr_path(l, "failIfLocked"),
                "a slave always waits for the lock here",
            );
        }
        if let Some(st) = child(l, "statements").filter(|_| kind != "shared-file") {
            ctx.visit(st);
            for s in children(st, "statements") {
                ctx.visit(s);
                put_str(ctx, doc, s, "tablePrefix", "locker", "table_prefix")?;
            }
        }
    }
    Ok(())
}

/// The `<bean>` a `dataSource="#id"` attribute (or a `<dataSource><ref bean="id"/>` or
/// inline `<bean>` child) names; a missing one is reported.
fn find_data_source<'a, 'i>(
    ctx: &mut Ctx,
    holder: Node<'a, 'i>,
) -> Result<Option<Node<'a, 'i>>, ImportError> {
    let id = if let Some(r) = ctx.attr(holder, "dataSource")? {
        Some((
            r.trim_start_matches('#').to_owned(),
            attr_path(holder, "dataSource"),
        ))
    } else if let Some(d) = child(holder, "dataSource") {
        ctx.visit(d);
        if let Some(inline) = child(d, "bean") {
            return Ok(Some(inline));
        }
        match child(d, "ref") {
            Some(r) => {
                ctx.visit(r);
                let bean = ctx.attr(r, "bean")?.or(ctx.attr(r, "local")?);
                bean.map(|b| (b, path(r)))
            }
            None => None,
        }
    } else {
        None
    };
    let Some((id, at)) = id else {
        return Ok(None);
    };
    let bean = holder
        .document()
        .descendants()
        .find(|n| n.is_element() && name(*n) == "bean" && n.attribute("id") == Some(id.as_str()));
    if bean.is_none() {
        ctx.unmapped_at(at, format!("no <bean id=\"{id}\"> in this file"));
    }
    Ok(bean)
}

/// A data source as this broker's database URL.
struct DataSourceUrl {
    url: String,
    pool: Option<u32>,
}

/// Reads a data source bean's properties into this broker's URL (`mysql://user:pass@host/db`,
/// `postgres://...`, `sqlite:path`); `Err` says why it cannot be used. Every property it does
/// not use is reported.
fn data_source_url(
    ctx: &mut Ctx,
    bean: Node,
) -> Result<Result<DataSourceUrl, String>, ImportError> {
    ctx.done(bean);
    let class = bean.attribute("class").unwrap_or("").to_owned();
    let mut used: Vec<&str> = Vec::new();
    let props: Vec<Node> = children(bean, "property").collect();
    let mut get = |ctx: &mut Ctx, key: &'static str| -> Result<Option<String>, ImportError> {
        let Some(p) = props.iter().find(|p| p.attribute("name") == Some(key)) else {
            return Ok(None);
        };
        used.push(key);
        let raw = match p.attribute("value") {
            Some(v) => v.to_owned(),
            None => child(*p, "value")
                .and_then(|v| v.text())
                .unwrap_or("")
                .trim()
                .to_owned(),
        };
        ctx.resolve(&raw, &path(*p)).map(Some)
    };
    let url = match get(ctx, "url")? {
        Some(u) => Some(u),
        None => get(ctx, "jdbcUrl")?, // HikariCP
    };
    let user = match get(ctx, "username")? {
        Some(u) => Some(u),
        None => get(ctx, "user")?,
    };
    let password = get(ctx, "password")?;
    let _ = get(ctx, "driverClassName")?; // the url's scheme picks the driver
    let mut pool = None;
    for key in ["maxTotal", "maxActive", "maximumPoolSize", "maxConnections"] {
        if let Some(v) = get(ctx, key)? {
            pool = v.trim().parse::<u32>().ok().filter(|n| *n > 0);
        }
    }
    let result = if let Some(jdbc) = url {
        jdbc_url(
            ctx,
            &path(bean),
            &jdbc,
            user.as_deref(),
            password.as_deref(),
        )
    } else {
        // Drivers' own data sources name the parts.
        let scheme = if class.contains("postgresql") {
            Some("postgres")
        } else if class.contains("mysql") || class.contains("mariadb") {
            Some("mysql")
        } else {
            None
        };
        match scheme {
            Some(scheme) => {
                let host = get(ctx, "serverName")?.unwrap_or_else(|| "localhost".into());
                let port = match get(ctx, "portNumber")? {
                    Some(p) => Some(p),
                    None => get(ctx, "port")?,
                }
                .filter(|p| p.trim() != "0" && !p.trim().is_empty());
                let db = get(ctx, "databaseName")?.unwrap_or_default();
                let hostport = match port {
                    Some(p) => format!("{host}:{}", p.trim()),
                    None => host,
                };
                Ok(format!(
                    "{scheme}://{}{hostport}/{db}",
                    userinfo(user.as_deref(), password.as_deref())
                ))
            }
            None if class.contains("derby") => Err(format!(
                "data source {} is Apache Derby ({class}), which this broker cannot use (MySQL/MariaDB, PostgreSQL and SQLite it can)",
                bean.attribute("id").unwrap_or("(inline)")
            )),
            None => Err(format!(
                "data source {} ({class}) has no url property this broker can read",
                bean.attribute("id").unwrap_or("(inline)")
            )),
        }
    };
    // A data source that cannot be used is reported as a whole by the caller.
    for p in props.iter().filter(|_| result.is_ok()) {
        let key = p.attribute("name").unwrap_or("");
        if !used.contains(&key) {
            ctx.unmapped_at(
                path(*p),
                "a connection-pool or driver setting; this broker's pool takes persistence.jdbc.pool_size and acquire_timeout_ms only",
            );
        }
    }
    if pool.is_some() {
        ctx.note(
            path(bean),
            "the pool's maximum size becomes persistence.jdbc.pool_size",
        );
    }
    Ok(result.map(|url| DataSourceUrl { url, pool }))
}

/// `jdbc:mysql://host[:port]/db?params` and friends → this broker's URL, credentials from the
/// bean (or the URL's own `user`/`password` parameters) in the user-info part.
fn jdbc_url(
    ctx: &mut Ctx,
    at: &str,
    jdbc: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> Result<String, String> {
    let Some(rest) = jdbc.strip_prefix("jdbc:") else {
        return Err(format!("url {jdbc:?} is not a jdbc: URL"));
    };
    if let Some(path) = rest.strip_prefix("sqlite:") {
        return Ok(format!("sqlite:{path}"));
    }
    let (scheme, rest) = if let Some(r) = rest.strip_prefix("mysql:") {
        ("mysql", r)
    } else if let Some(r) = rest.strip_prefix("mariadb:") {
        ("mysql", r)
    } else if let Some(r) = rest.strip_prefix("postgresql:") {
        ("postgres", r)
    } else {
        let db = rest.split(':').next().unwrap_or(rest);
        return Err(format!(
            "url {jdbc:?}: {db} databases are not supported (MySQL/MariaDB, PostgreSQL and SQLite are)"
        ));
    };
    let Some(rest) = rest.strip_prefix("//") else {
        return Err(format!("url {jdbc:?}: expected //host/database"));
    };
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (hostport, db) = main.split_once('/').unwrap_or((main, ""));
    if hostport.contains(',') {
        return Err(format!(
            "url {jdbc:?}: several hosts (driver-side fail-over) are not supported; name one"
        ));
    }
    let mut user = user.map(str::to_owned);
    let mut password = password.map(str::to_owned);
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        match k {
            "user" if user.is_none() => user = Some(v.to_owned()),
            "password" if password.is_none() => password = Some(v.to_owned()),
            "relaxAutoCommit" => ctx.note(
                at.to_owned(),
                format!("url parameter {param}: ActiveMQ needs it with MySQL; this broker does not"),
            ),
            _ => ctx.unmapped_at(
                at.to_owned(),
                format!("url parameter {param}: a JDBC driver setting this broker's database URL does not take"),
            ),
        }
    }
    Ok(format!(
        "{scheme}://{}{hostport}/{db}",
        userinfo(user.as_deref(), password.as_deref())
    ))
}

/// `user:password@`, percent-encoded, or nothing.
fn userinfo(user: Option<&str>, password: Option<&str>) -> String {
    match (user, password) {
        (Some(u), Some(p)) if !p.is_empty() => format!("{}:{}@", encode(u), encode(p)),
        (Some(u), _) if !u.is_empty() => format!("{}@", encode(u)),
        _ => String::new(),
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jdbc_urls_become_this_brokers() {
        let vars = Default::default();
        let mut ctx = Ctx::new(&vars);
        assert_eq!(
            jdbc_url(
                &mut ctx,
                "/x",
                "jdbc:mysql://localhost/activemq?relaxAutoCommit=true",
                Some("activemq"),
                Some("p@ss word"),
            )
            .unwrap(),
            "mysql://activemq:p%40ss%20word@localhost/activemq"
        );
        assert_eq!(ctx.notes.len(), 1, "relaxAutoCommit is noted");
        assert_eq!(
            jdbc_url(
                &mut ctx,
                "/x",
                "jdbc:postgresql://db:5432/amq",
                Some("u"),
                None
            )
            .unwrap(),
            "postgres://u@db:5432/amq"
        );
        assert_eq!(
            jdbc_url(
                &mut ctx,
                "/x",
                "jdbc:mysql://h:3306/d?user=a&password=b&useSSL=false",
                None,
                None
            )
            .unwrap(),
            "mysql://a:b@h:3306/d"
        );
        assert_eq!(ctx.unmapped.len(), 1, "useSSL is reported");
        assert!(
            jdbc_url(
                &mut ctx,
                "/x",
                "jdbc:oracle:thin:@localhost:1521:AMQDB",
                None,
                None
            )
            .unwrap_err()
            .contains("oracle")
        );
        assert!(jdbc_url(&mut ctx, "/x", "jdbc:derby:db", None, None).is_err());
    }
}
