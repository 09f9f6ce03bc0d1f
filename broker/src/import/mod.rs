//! `broker import-config activemq.xml`: ActiveMQ Classic's XML configuration turned into the
//! `broker.toml` that does the same, as far as this broker can.
//!
//! The import never guesses silently: every element and attribute under `<broker>` (and every
//! top-level Spring bean and `<import>`) is either mapped to a key, or listed as an
//! [`Item`] in [`Imported::unmapped`] with its XML path and the reason; a mapping with a caveat
//! (a per-connector limit that becomes a total, an ActiveMQ default written out because this
//! broker's differs) is an item in [`Imported::notes`]. Spring's `${name}` placeholders are
//! resolved from `--set name=value`; one without a value stops the import, naming it and its
//! path, because a config with a hole in it would not do what the XML did.
//!
//! One file per part of the XML: `transports` (transportConnectors), `persistence`
//! (persistenceAdapter, its lockers and data sources), `policy` (destinationPolicy and the
//! redelivery plugin), `security` (authentication and authorization plugins); `xml` holds the
//! bookkeeping that makes the import exhaustive, `out` the TOML writer.

pub mod kahadb;
mod network;
mod out;
mod persistence;
mod policy;
mod reasons;
mod security;
mod transports;
mod xml;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use broker_core::config::ConfigError;
use roxmltree::Node;

use crate::config::BrokerConfig;
use out::{Doc, int};
use xml::{Ctx, child, children, elements, name, path};

/// activemq.xml files are a few kilobytes; anything past this is not one, and reading it
/// whole would only spend memory.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Nodes the XML parser may build at most (entity expansion included), for the same reason.
const MAX_NODES: u32 = 1_000_000;

/// Why there is no config to print.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any activemq.xml.
    #[error("{path} is larger than {MAX_FILE_BYTES} bytes; not an activemq.xml")]
    TooLarge { path: String },
    /// Not well-formed XML; the parser's message carries the line and column.
    #[error("not well-formed XML: {0}")]
    Xml(String),
    /// No `<broker>` element, at the root or under `<beans>`.
    #[error("no <broker> element at the root or under <beans>: not an ActiveMQ configuration")]
    NoBroker,
    /// A `${name}` without a `--set` value (or a malformed one).
    #[error("placeholder ${{{name}}} at {path} {reason}")]
    Placeholder {
        name: String,
        path: String,
        reason: String,
    },
    /// A `--set` argument without `=`.
    #[error("--set {0:?}: expected NAME=VALUE")]
    BadSet(String),
}

/// Something in the XML, by path, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// e.g. `/beans/broker/plugins/timeStampingBrokerPlugin` or `/beans/broker/@useJmx`.
    pub path: String,
    pub reason: String,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// The result of an import.
#[derive(Debug)]
pub struct Imported {
    /// The `broker.toml` text.
    pub toml: String,
    /// What could not be mapped, one item each.
    pub unmapped: Vec<Item>,
    /// What was mapped with a caveat.
    pub notes: Vec<Item>,
    /// Set when this build's config loader refuses the printed config (a `leveldb` engine on
    /// a broker built without it); the import's own mistakes are caught by its tests.
    pub load_error: Option<ConfigError>,
}

/// `--set name=value` arguments as a map; a later one wins.
pub fn parse_sets(sets: &[String]) -> Result<BTreeMap<String, String>, ImportError> {
    let mut vars = BTreeMap::new();
    for s in sets {
        let (k, v) = s
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| ImportError::BadSet(s.clone()))?;
        vars.insert(k.to_owned(), v.to_owned());
    }
    Ok(vars)
}

/// Reads and imports `file`.
pub fn import_file(file: &Path, vars: &BTreeMap<String, String>) -> Result<Imported, ImportError> {
    let shown = file.display().to_string();
    let read_err = |source| ImportError::Read {
        path: shown.clone(),
        source,
    };
    let f = std::fs::File::open(file).map_err(read_err)?;
    let mut text = String::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(ImportError::TooLarge { path: shown });
    }
    import(&text, vars, &shown)
}

/// Imports the XML text `xml` (`source` names it in the output's header).
pub fn import(
    xml: &str,
    vars: &BTreeMap<String, String>,
    source: &str,
) -> Result<Imported, ImportError> {
    let options = roxmltree::ParsingOptions {
        // Spring 1.x files start with a DOCTYPE; the parser bounds entity expansion itself
        // and the node limit bounds the rest.
        allow_dtd: true,
        nodes_limit: MAX_NODES,
    };
    let document = roxmltree::Document::parse_with_options(xml, options)
        .map_err(|e| ImportError::Xml(e.to_string()))?;
    let root = document.root_element();
    let broker = if name(root) == "broker" {
        root
    } else {
        child(root, "broker").ok_or(ImportError::NoBroker)?
    };
    let mut ctx = Ctx::new(vars);
    let mut doc = Doc::default();

    // The root's own attributes (schemaLocation and the like) are about the XML.
    ctx.visit(root);
    for a in root.attributes() {
        ctx.skip_attr(root, a.name());
    }
    for extra in children(root, "broker").filter(|b| b.id() != broker.id()) {
        ctx.unmapped(
            extra,
            "a second broker in one file; import it into a config of its own",
        );
    }

    broker_attributes(&mut ctx, broker, &mut doc)?;
    persistence::map(&mut ctx, broker, &mut doc)?;
    transports::map(&mut ctx, root, broker, &mut doc)?;
    system_usage(&mut ctx, broker, &mut doc)?;
    destination_interceptors(&mut ctx, broker, &mut doc)?;
    policy::map(&mut ctx, broker, &mut doc)?;
    security::map(&mut ctx, broker, &mut doc)?;
    if let Some(p) = child(broker, "plugins") {
        ctx.visit(p);
    }
    network::map(&mut ctx, broker, &mut doc)?;

    ctx.report_leftovers(root);
    // By path, so that what concerns one element reads together whatever mapper found it.
    ctx.unmapped.sort_by(|a, b| a.path.cmp(&b.path));
    ctx.notes.sort_by(|a, b| a.path.cmp(&b.path));

    let header = vec![
        format!("Imported from {source} by `broker import-config`."),
        "What could not be mapped was listed on stderr, one line per item.".to_owned(),
    ];
    let toml = doc.render(&header);
    let load_error = BrokerConfig::from_toml(&toml).err();
    Ok(Imported {
        toml,
        unmapped: ctx.unmapped,
        notes: ctx.notes,
        load_error,
    })
}

/// Whether this build's config loader knows `section.key` (some keys are being added by
/// other branches: a key the loader calls unknown is printed commented out, and becomes live
/// by itself once the loader learns it).
pub(crate) fn key_known(section: &str, key: &str, sample: &toml::Value) -> bool {
    match BrokerConfig::from_toml(&format!("[{section}]\n{key} = {sample}\n")) {
        Ok(_) => true,
        Err(e) => !(e.key == format!("{section}.{key}") && e.reason.contains("unknown field")),
    }
}

/// `<broker>`'s own attributes.
fn broker_attributes(ctx: &mut Ctx, b: Node, doc: &mut Doc) -> Result<(), ImportError> {
    if let Some(n) = ctx.attr(b, "brokerName")? {
        doc.table("broker").set("name", n);
    }
    if let Some(d) = ctx.attr(b, "dataDirectory")? {
        doc.table("broker").set("data_directory", d);
    }
    match ctx.bool_attr(b, "schedulerSupport")? {
        Some(s) => {
            doc.table("broker").set("scheduler_support", s);
        }
        None => {
            doc.table("broker").set_c(
                "scheduler_support",
                false,
                "ActiveMQ's default; this broker's is true",
            );
        }
    }
    if let Some(v) = ctx.bool_attr(b, "useVirtualTopics")? {
        doc.table("broker").set("use_virtual_topics", v);
    }
    if ctx.bool_attr(b, "advisorySupport")? == Some(false) {
        ctx.unmapped_at(
            xml::attr_path(b, "advisorySupport"),
            "advisorySupport=\"false\": advisory topics (ActiveMQ.Advisory.*) are always published here",
        );
    }
    if ctx.bool_attr(b, "useJmx")? != Some(false) {
        ctx.unmapped_at(
            xml::attr_path(b, "useJmx"),
            "JMX (on by ActiveMQ's default or useJmx=\"true\"): no JMX here; the web console (transports.web) and its /metrics and JSON API instead",
        );
    }
    // `persistent` is read with the persistence adapter.
    Ok(())
}

/// `<systemUsage>`: memory and store limits and what a full store does to a producer.
fn system_usage(ctx: &mut Ctx, b: Node, doc: &mut Doc) -> Result<(), ImportError> {
    let Some(outer) = child(b, "systemUsage") else {
        return Ok(());
    };
    ctx.visit(outer);
    let Some(su) = child(outer, "systemUsage") else {
        return Ok(());
    };
    ctx.visit(su);
    let fail = ctx.bool_attr(su, "sendFailIfNoSpace")?;
    let after = ctx.u64_attr(su, "sendFailIfNoSpaceAfterTimeout")?;
    if let Some(f) = fail {
        doc.table("policy").set("send_fail_if_no_space", f);
    }
    if let Some(ms) = after {
        if ms == 0 {
            ctx.unmapped_at(
                xml::attr_path(su, "sendFailIfNoSpaceAfterTimeout"),
                "0 waits forever in ActiveMQ; here a send waits at most policy.send_timeout_ms (30000 by default)",
            );
        } else {
            doc.table("policy").set("send_timeout_ms", int(ms));
        }
    }
    if fail != Some(true) && after.is_none() {
        ctx.note(
            path(su),
            "a producer blocked by a full memory or store waits forever in ActiveMQ; here it fails after policy.send_timeout_ms (30000)",
        );
    }
    for (wrapper, usage, key, min) in [
        ("memoryUsage", "memoryUsage", "memory_bytes", 64 * 1024),
        ("storeUsage", "storeUsage", "store_bytes", 1),
        ("tempUsage", "tempUsage", "temp_bytes", 1),
    ] {
        let Some(w) = children(su, wrapper).next() else {
            continue;
        };
        ctx.visit(w);
        for u in elements(w) {
            if name(u) != usage {
                continue;
            }
            ctx.visit(u);
            ctx.skip_attr(u, "name"); // a label for JMX
            if let Some(pct) = ctx.attr(u, "percentOfJvmHeap")? {
                ctx.unmapped_at(
                    xml::attr_path(u, "percentOfJvmHeap"),
                    format!(
                        "percentOfJvmHeap={pct:?}: there is no JVM heap; limits.{key} takes bytes (default 64 MiB)"
                    ),
                );
            }
            if let Some(bytes) = ctx.bytes_attr(u, "limit")? {
                if bytes < min {
                    ctx.unmapped_at(
                        xml::attr_path(u, "limit"),
                        format!(
                            "{bytes} bytes is below this broker's minimum for limits.{key} ({min})"
                        ),
                    );
                } else {
                    doc.table("limits").set(key, int(bytes));
                }
            }
        }
    }
    // jobSchedulerUsage: reported by the leftover walk with its reason.
    Ok(())
}

/// `<destinationInterceptors>`: one virtual topic maps onto `[broker]`'s; the rest is
/// reported. Configuring the interceptors at all replaces ActiveMQ's default virtual topic.
fn destination_interceptors(ctx: &mut Ctx, b: Node, doc: &mut Doc) -> Result<(), ImportError> {
    let Some(di) = child(b, "destinationInterceptors") else {
        return Ok(());
    };
    ctx.visit(di);
    let mut mapped = false;
    for vdi in children(di, "virtualDestinationInterceptor") {
        ctx.visit(vdi);
        for vds in children(vdi, "virtualDestinations") {
            ctx.visit(vds);
            for vt in children(vds, "virtualTopic") {
                if mapped {
                    ctx.unmapped(
                        vt,
                        "a second virtual topic; this broker has one ([broker] virtual_topic_*)",
                    );
                    continue;
                }
                mapped = true;
                ctx.visit(vt);
                let t = doc.table("broker");
                t.set("use_virtual_topics", true);
                let name = ctx.attr(vt, "name")?;
                let prefix = ctx.attr(vt, "prefix")?;
                let postfix = ctx.attr(vt, "postfix")?;
                let t = doc.table("broker");
                if let Some(n) = name {
                    t.set("virtual_topic_name", n);
                }
                if let Some(p) = prefix {
                    t.set("virtual_topic_prefix", p);
                }
                if let Some(p) = postfix {
                    t.set("virtual_topic_postfix", p);
                }
                if ctx.bool_attr(vt, "selectorAware")? == Some(true) {
                    ctx.unmapped_at(
                        xml::attr_path(vt, "selectorAware"),
                        "copies go to every consumer queue whatever its consumers' selectors",
                    );
                }
            }
        }
    }
    if !mapped {
        doc.table("broker").set_c(
            "use_virtual_topics",
            false,
            "destinationInterceptors without a virtualTopic turn ActiveMQ's default one off",
        );
    }
    Ok(())
}
