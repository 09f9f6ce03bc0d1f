//! `<destinationPolicy>` and the redelivery plugin → `[policy]` and `[[policy.entries]]`.
//!
//! A `policyEntry` for a queue or topic pattern becomes an entry with the keys this broker has
//! per destination; its `defaultEntry` becomes `[policy]` itself. The redelivery plugin's
//! `redeliveryPolicy` entries join the entry of the same pattern (or make one), its default
//! entry joins `[policy]`. What an entry cannot say here (a memory limit per destination, a
//! cursor, a dispatch policy) is reported with the entry's path.

use roxmltree::Node;
use toml::Value;

use super::ImportError;
use super::out::{Doc, int};
use super::xml::{Ctx, attr_path, child, children, elements, name, path};

/// One entry being built: which destinations, and its keys in order.
struct Entry {
    kind: &'static str,
    pattern: String,
    keys: Vec<(&'static str, Value)>,
}

impl Entry {
    fn set(&mut self, key: &'static str, v: impl Into<Value>) {
        self.keys.retain(|(k, _)| *k != key);
        self.keys.push((key, v.into()));
    }
}

/// `[policy]` keys with no per-entry twin; entry keys with no `[policy]` twin.
const GLOBAL_ONLY: [&str; 1] = ["dead_letter_queue"];
const ENTRY_ONLY: [&str; 1] = ["dead_letter_queue_prefix"];
/// The default entry's keys that are `[limits]` here.
const LIMITS: [&str; 3] = ["max_page_size", "queue_prefetch", "topic_prefetch"];

pub(super) fn map(ctx: &mut Ctx, b: Node, doc: &mut Doc) -> Result<(), ImportError> {
    let mut global = Entry {
        kind: "",
        pattern: String::new(),
        keys: Vec::new(),
    };
    let mut entries: Vec<Entry> = Vec::new();
    if let Some(dp) = child(b, "destinationPolicy") {
        ctx.visit(dp);
        for pm in children(dp, "policyMap") {
            ctx.visit(pm);
            for pes in children(pm, "policyEntries") {
                ctx.visit(pes);
                for pe in children(pes, "policyEntry") {
                    let Some((kind, pattern)) = destination(ctx, pe)? else {
                        continue;
                    };
                    let mut e = Entry {
                        kind,
                        pattern,
                        keys: Vec::new(),
                    };
                    policy_entry(ctx, pe, &mut e, false)?;
                    entries.push(e);
                }
            }
            if let Some(de) = child(pm, "defaultEntry") {
                ctx.visit(de);
                for pe in children(de, "policyEntry") {
                    policy_entry(ctx, pe, &mut global, true)?;
                }
            }
        }
    }
    redelivery_plugin(ctx, b, &mut global, &mut entries)?;

    for (k, v) in global.keys {
        if ENTRY_ONLY.contains(&k) {
            continue; // reported where it was read
        }
        if LIMITS.contains(&k) {
            doc.table("limits").set(k, v);
        } else {
            doc.table("policy").set(k, v);
        }
    }
    for e in entries {
        // An entry whose every setting was reported changes nothing here.
        if e.keys.iter().all(|(k, _)| GLOBAL_ONLY.contains(k)) {
            continue;
        }
        let t = doc.push("policy.entries");
        t.set(e.kind, e.pattern);
        for (k, v) in e.keys {
            if !GLOBAL_ONLY.contains(&k) {
                t.set(k, v);
            }
        }
    }
    Ok(())
}

/// The `queue` or `topic` an entry is for; an entry for temporary destinations, or naming
/// neither, is reported.
fn destination(ctx: &mut Ctx, pe: Node) -> Result<Option<(&'static str, String)>, ImportError> {
    ctx.visit(pe);
    for temp in ["tempQueue", "tempTopic"] {
        if ctx.bool_attr(pe, temp)? == Some(true) {
            ctx.unmapped(
                pe,
                format!("{temp}=\"true\": no policies for temporary destinations here"),
            );
            return Ok(None);
        }
    }
    let queue = ctx.attr(pe, "queue")?;
    let topic = ctx.attr(pe, "topic")?;
    match (queue, topic) {
        (Some(q), None) => Ok(Some(("queue", q))),
        (None, Some(t)) => Ok(Some(("topic", t))),
        _ => {
            ctx.unmapped(pe, "an entry needs exactly one of queue and topic");
            Ok(None)
        }
    }
}

/// A `policyEntry`'s settings into `e` (`is_default`: the map's default entry, i.e. `[policy]`).
fn policy_entry(
    ctx: &mut Ctx,
    pe: Node,
    e: &mut Entry,
    is_default: bool,
) -> Result<(), ImportError> {
    ctx.visit(pe);
    if is_default {
        // A pattern on the default entry means nothing to ActiveMQ either.
        ctx.skip_attr(pe, "queue");
        ctx.skip_attr(pe, "topic");
    }
    // Queues and topics alike (a topic goes once it has no subscriber, durable or not).
    if let Some(gc) = ctx.bool_attr(pe, "gcInactiveDestinations")? {
        e.set("gc_inactive_destinations", gc);
    }
    // ActiveMQ's own misspelling, and the corrected name newer versions also accept.
    for attr in ["inactiveTimoutBeforeGC", "inactiveTimeoutBeforeGC"] {
        if let Some(ms) = ctx.u64_attr(pe, attr)? {
            e.set("inactive_timeout_before_gc_ms", int(ms));
        }
    }
    // true is ActiveMQ's default and this broker's behaviour; false cannot be had.
    if ctx.bool_attr(pe, "producerFlowControl")? == Some(false) {
        ctx.unmapped_at(
            attr_path(pe, "producerFlowControl"),
            "producerFlowControl=\"false\": flow control is always on here (limits.memory_bytes, limits.store_bytes)",
        );
    }
    // Written only when the XML says: without it ActiveMQ delivers in arrival order, this
    // broker by priority (see README, "Differences from ActiveMQ").
    if let Some(p) = ctx.bool_attr(pe, "prioritizedMessages")? {
        e.set("prioritized_messages", p);
    }
    if let Some(m) = ctx.attr(pe, "memoryLimit")? {
        match super::xml::parse_bytes(&m) {
            Some(bytes) if e.kind == "queue" && !is_default && bytes > 0 => {
                e.set("memory_limit_bytes", int(bytes));
            }
            Some(_) if e.kind == "queue" && !is_default => ctx.unmapped_at(
                attr_path(pe, "memoryLimit"),
                format!("memoryLimit={m:?}: a limit of 0 bytes; leave it out for none"),
            ),
            Some(_) => ctx.unmapped_at(
                attr_path(pe, "memoryLimit"),
                format!(
                    "memoryLimit={m:?}: a memory limit of its own is for queue entries only here; topics and the default share limits.memory_bytes"
                ),
            ),
            None => ctx.unmapped_at(
                attr_path(pe, "memoryLimit"),
                format!("memoryLimit={m:?}: not a size"),
            ),
        }
    }
    if is_default {
        for (attr, key) in [
            ("maxPageSize", "max_page_size"),
            ("queuePrefetch", "queue_prefetch"),
            ("topicPrefetch", "topic_prefetch"),
        ] {
            if let Some(v) = ctx.u64_attr(pe, attr)? {
                // The default entry covers every destination: this broker's global limit.
                if v == 0 {
                    ctx.unmapped_at(
                        attr_path(pe, attr),
                        format!("0: limits.{key} must be above 0"),
                    );
                } else if key != "max_page_size" && v > u64::from(broker_core::MAX_PREFETCH) {
                    ctx.unmapped_at(
                        attr_path(pe, attr),
                        format!(
                            "{v}: limits.{key} is at most {} (ActiveMQ's own maximum prefetch)",
                            broker_core::MAX_PREFETCH
                        ),
                    );
                } else {
                    e.set(key, int(v));
                }
            }
        }
        if let Some(ms) = ctx.u64_attr(pe, "expireMessagesPeriod")? {
            if ms == 0 {
                ctx.unmapped_at(
                    attr_path(pe, "expireMessagesPeriod"),
                    "0 turns expiry checks off in ActiveMQ; here they always run",
                );
            } else {
                e.set("expire_check_interval_ms", int(ms));
            }
        }
    }
    if let Some(ds) = child(pe, "deadLetterStrategy") {
        ctx.visit(ds);
        let mut first = true;
        for s in elements(ds) {
            if !first {
                ctx.unmapped(s, "a second dead letter strategy");
                continue;
            }
            first = false;
            dead_letter_strategy(ctx, s, e, is_default)?;
        }
    }
    if let Some(f) = child(pe, "networkBridgeFilterFactory") {
        ctx.visit(f);
        // Its other attributes (rateLimit, selectorAware, ...) are reported by the leftover
        // walk.
        if let Some(c) = child(f, "conditionalNetworkBridgeFilterFactory") {
            ctx.visit(c);
            if e.kind == "topic" {
                ctx.unmapped(
                    c,
                    "replay applies to queues only here (ActiveMQ ignores it for topics)",
                );
            } else {
                if let Some(r) = ctx.bool_attr(c, "replayWhenNoConsumers")? {
                    e.set("replay_when_no_consumers", r);
                }
                if let Some(ms) = ctx.u64_attr(c, "replayDelay")? {
                    e.set("replay_delay_ms", int(ms));
                }
            }
        }
    }
    Ok(())
}

fn dead_letter_strategy(
    ctx: &mut Ctx,
    s: Node,
    e: &mut Entry,
    is_default: bool,
) -> Result<(), ImportError> {
    match name(s) {
        "sharedDeadLetterStrategy" => {
            ctx.visit(s);
            e.set("dead_letter_strategy", "shared");
            if let Some(dlq) = child(s, "deadLetterQueue") {
                ctx.visit(dlq);
                if let Some(q) = child(dlq, "queue") {
                    ctx.visit(q);
                    if let Some(n) = ctx.attr(q, "physicalName")? {
                        if is_default {
                            e.set("dead_letter_queue", n);
                        } else {
                            ctx.unmapped(
                                dlq,
                                format!("the shared dead letter queue {n:?} is one for every destination here: set it as [policy] dead_letter_queue (in the default entry)"),
                            );
                        }
                    }
                }
            }
        }
        "individualDeadLetterStrategy" => {
            ctx.visit(s);
            e.set("dead_letter_strategy", "individual");
            let prefix_attr = if e.kind == "topic" {
                "topicPrefix"
            } else {
                "queuePrefix"
            };
            let other_attr = if e.kind == "topic" {
                "queuePrefix"
            } else {
                "topicPrefix"
            };
            if let Some(p) = ctx.attr(s, prefix_attr)? {
                if is_default {
                    ctx.unmapped_at(
                        attr_path(s, prefix_attr),
                        format!("{prefix_attr}={p:?}: a prefix is set per [[policy.entries]] here, not in [policy]"),
                    );
                } else {
                    e.set("dead_letter_queue_prefix", p);
                }
            }
            if !is_default && s.attribute(other_attr).is_some() {
                // The other kind's prefix does not apply to this entry's destinations.
                ctx.skip_attr(s, other_attr);
            }
            for attr in ["useQueueForQueueMessages", "useQueueForTopicMessages"] {
                if ctx.bool_attr(s, attr)? == Some(false) {
                    ctx.unmapped_at(attr_path(s, attr), "dead letters always go to a queue here");
                }
            }
        }
        other => {
            ctx.unmapped(s, format!("no {other} here (shared and individual are)"));
            return Ok(());
        }
    }
    if ctx.bool_attr(s, "processExpired")? == Some(false) {
        e.set("expired", "discard");
    }
    if ctx.bool_attr(s, "processNonPersistent")? == Some(true) {
        ctx.unmapped_at(
            attr_path(s, "processNonPersistent"),
            "non-persistent messages are never dead-lettered here",
        );
    }
    Ok(())
}

/// `<plugins><redeliveryPlugin>`: its policy map's entries and default.
fn redelivery_plugin(
    ctx: &mut Ctx,
    b: Node,
    global: &mut Entry,
    entries: &mut Vec<Entry>,
) -> Result<(), ImportError> {
    let Some(plugins) = child(b, "plugins") else {
        return Ok(());
    };
    let Some(rp) = child(plugins, "redeliveryPlugin") else {
        return Ok(());
    };
    ctx.visit(rp);
    for attr in ["fallbackToDeadLetter", "sendToDlqIfMaxRetriesExceeded"] {
        if ctx.bool_attr(rp, attr)? == Some(false) {
            ctx.unmapped_at(
                attr_path(rp, attr),
                "a message out of redeliveries always goes to its dead letter queue here",
            );
        }
    }
    for outer in children(rp, "redeliveryPolicyMap") {
        ctx.visit(outer);
        for map in children(outer, "redeliveryPolicyMap") {
            ctx.visit(map);
            for list in children(map, "redeliveryPolicyEntries") {
                ctx.visit(list);
                for rpol in children(list, "redeliveryPolicy") {
                    let Some((kind, pattern)) = destination(ctx, rpol)? else {
                        continue;
                    };
                    let i = match entries
                        .iter()
                        .position(|e| e.kind == kind && e.pattern == pattern)
                    {
                        Some(i) => i,
                        None => {
                            entries.push(Entry {
                                kind,
                                pattern,
                                keys: Vec::new(),
                            });
                            entries.len() - 1
                        }
                    };
                    redelivery_policy(ctx, rpol, &mut entries[i])?;
                }
            }
            if let Some(de) = child(map, "defaultEntry") {
                ctx.visit(de);
                for rpol in children(de, "redeliveryPolicy") {
                    ctx.skip_attr(rpol, "queue");
                    ctx.skip_attr(rpol, "topic");
                    redelivery_policy(ctx, rpol, global)?;
                }
            }
        }
    }
    Ok(())
}

/// A `redeliveryPolicy` (ActiveMQ's `RedeliveryPolicy` defaults: 6 redeliveries, 1000 ms
/// before each, back-off ×5 when exponential, no cap).
fn redelivery_policy(ctx: &mut Ctx, r: Node, e: &mut Entry) -> Result<(), ImportError> {
    ctx.visit(r);
    match ctx.int_attr(r, "maximumRedeliveries")? {
        Some(n) if n >= 0 => e.set("maximum_redeliveries", int(n.unsigned_abs())),
        Some(_) => ctx.unmapped_at(
            attr_path(r, "maximumRedeliveries"),
            "-1 (redeliver forever) is not available; a number of redeliveries is",
        ),
        None => {}
    }
    let initial = ctx.u64_attr(r, "initialRedeliveryDelay")?;
    let delay = ctx.u64_attr(r, "redeliveryDelay")?;
    match (initial, delay) {
        (Some(i), Some(d)) if i != d => {
            e.set("redelivery_delay_ms", int(d));
            ctx.unmapped_at(
                attr_path(r, "initialRedeliveryDelay"),
                format!("one delay before every redelivery here: redelivery_delay_ms = {d} (redeliveryDelay), so the first waits {d} ms, not {i}"),
            );
        }
        (Some(v), _) | (None, Some(v)) => e.set("redelivery_delay_ms", int(v)),
        (None, None) => {
            e.set("redelivery_delay_ms", int(1000));
            ctx.note(
                path(r),
                "redelivery_delay_ms = 1000: RedeliveryPolicy's default, written out because this broker's is 0",
            );
        }
    }
    if let Some(b) = ctx.bool_attr(r, "useExponentialBackOff")? {
        e.set("use_exponential_backoff", b);
    }
    if let Some(m) = ctx.attr(r, "backOffMultiplier")? {
        match m.trim().parse::<f64>() {
            Ok(f) if f.is_finite() && f >= 1.0 => e.set("backoff_multiplier", f),
            _ => ctx.unmapped_at(
                attr_path(r, "backOffMultiplier"),
                format!("{m:?}: backoff_multiplier takes a number of 1 or more"),
            ),
        }
    }
    match ctx.int_attr(r, "maximumRedeliveryDelay")? {
        Some(n) if n >= 0 => e.set("maximum_redelivery_delay_ms", int(n.unsigned_abs())),
        Some(_) => e.set("maximum_redelivery_delay_ms", int(0)), // -1: no cap, as 0 here
        None => {}
    }
    Ok(())
}
