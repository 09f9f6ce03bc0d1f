//! The replayed state written into this broker's configured engine through the store API
//! (`PersistenceAdapter`), so that a topic message is pending exactly for the subscriptions
//! that had not acknowledged it: it is added (pending for every subscription the topic has)
//! and then acknowledged for the others. Each message keeps its own id, mapped as the OpenWire
//! door maps a client's (`conn:session:producer`, sequence), so a second import finds every
//! message already stored (`Duplicate`) and adds nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use broker_core::{Destination, Message, SubscriptionKey};
use store_api::{PersistenceAdapter, StoreError, SubscriptionInfo, TransactionId, TxOp, Xid};

use super::proto::{Command, DestinationType, KahaDestination, TxId};
use super::replay::Replay;
use super::{ImportKahaError, Summary};

/// Decodes OpenWire messages as KahaDB marshals them (a default `OpenWireFormat`: loose, size
/// prefix, the store's version), keeping the encoding that worked last: the same decoding as
/// the JDBC engine's openwire format, from `openwire::store`.
#[derive(Default)]
pub struct MessageDecoder(openwire::store::StoredDecoder);

impl MessageDecoder {
    pub fn decode(&mut self, bytes: &[u8]) -> Option<openwire::Message> {
        self.0.decode(bytes).ok()
    }
}

/// broker-core's message for an OpenWire one, under the id the OpenWire door gives it
/// (`<connection>:<session>:<producer>`, ActiveMQ's `MSGID_PROD`).
pub fn core_message(m: &openwire::Message, destination: Destination) -> Result<Message, String> {
    let mut msg = openwire::store::to_store(m, destination)?;
    // The engine the import writes to assigns its own sequence.
    msg.sequence = 0;
    Ok(msg)
}

/// A durable subscription's client id, name and selector, from its OpenWire
/// `SubscriptionInfo` (loose: clientId, destination, selector, subscriptionName).
pub fn subscription_info(bytes: &[u8]) -> Option<(String, String, Option<String>)> {
    let frame = bytes.get(4..)?;
    let (&kind, body) = frame.split_first()?;
    if kind != 55 {
        return None;
    }
    let mut r = body;
    let client_id = loose_string(&mut r)??;
    if loose_bool(&mut r)? {
        take(&mut r, 1)?;
        loose_string(&mut r)?;
    }
    let selector = loose_string(&mut r)?;
    let name = loose_string(&mut r)??;
    Some((client_id, name, selector))
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if r.len() < n {
        return None;
    }
    let (head, rest) = r.split_at(n);
    *r = rest;
    Some(head)
}

fn loose_bool(r: &mut &[u8]) -> Option<bool> {
    Some(take(r, 1)?[0] != 0)
}

/// Loose OpenWire string: a presence boolean, then Java's `writeUTF` (u16 length, modified
/// UTF-8, which for the names and selectors met here is UTF-8).
fn loose_string(r: &mut &[u8]) -> Option<Option<String>> {
    if !loose_bool(r)? {
        return Some(None);
    }
    let len = take(r, 2)?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    Some(Some(String::from_utf8_lossy(take(r, len)?).into_owned()))
}

fn destination(d: &KahaDestination) -> Option<Destination> {
    match d.kind {
        DestinationType::Queue => Some(Destination::queue(d.name.as_str())),
        DestinationType::Topic => Some(Destination::topic(d.name.as_str())),
        DestinationType::TempQueue | DestinationType::TempTopic => None,
    }
}

fn key_of(key: &str, info: &[u8]) -> (SubscriptionKey, Option<String>) {
    match subscription_info(info) {
        Some((client, name, selector)) => (SubscriptionKey::new(client, name), selector),
        // Without the info, ActiveMQ's key `clientId:subName` split at its last colon (client
        // ids often hold colons, subscription names seldom do).
        None => match key.rsplit_once(':') {
            Some((c, n)) => (SubscriptionKey::new(c, n), None),
            None => (SubscriptionKey::new("", key), None),
        },
    }
}

fn store_err(what: String) -> impl FnOnce(StoreError) -> ImportKahaError {
    move |source| ImportKahaError::Store {
        what,
        error: source,
    }
}

/// Writes `replay` into `store`; counts in `summary`.
pub async fn load(
    replay: &Replay,
    store: &Arc<dyn PersistenceAdapter>,
    decoder: &mut MessageDecoder,
    summary: &mut Summary,
) -> Result<(), ImportKahaError> {
    for (kd, state) in &replay.destinations {
        let Some(dest) = destination(kd) else {
            continue;
        };
        let pending: Vec<_> = state.pending().collect();
        if pending.is_empty() && state.subscriptions.is_empty() {
            continue;
        }
        summary.destinations += 1;
        eprintln!(
            "importing {} {} ({} messages)",
            if dest.is_queue() { "queue" } else { "topic" },
            dest.name,
            pending.len()
        );
        let mut messages = Vec::with_capacity(pending.len());
        for p in &pending {
            let Some(m) = decoder.decode(&p.bytes) else {
                summary.skip("message whose OpenWire bytes do not decode");
                continue;
            };
            match core_message(&m, dest.clone()) {
                Ok(msg) => messages.push((p, msg)),
                Err(why) => summary.skip(&format!("message not mappable: {why}")),
            }
        }
        if dest.is_queue() {
            let qs = store
                .queue_store(&dest)
                .await
                .map_err(store_err(format!("opening queue {}", dest.name)))?;
            for (_, msg) in messages {
                let size = msg.size();
                match qs.add(msg).await {
                    Ok(_) => summary.added(size),
                    Err(StoreError::Duplicate(_)) => summary.already_there += 1,
                    Err(e) => return Err(store_err(format!("adding to queue {}", dest.name))(e)),
                }
            }
        } else {
            let ts = store
                .topic_store(&dest)
                .await
                .map_err(store_err(format!("opening topic {}", dest.name)))?;
            let mut keys = BTreeMap::new();
            for (key, info) in &state.subscriptions {
                let (k, selector) = key_of(key, info);
                match ts
                    .add_subscription(SubscriptionInfo::new(k.clone(), selector), false)
                    .await
                {
                    Ok(()) => summary.subscriptions += 1,
                    Err(StoreError::Duplicate(_)) => {}
                    Err(e) => {
                        return Err(store_err(format!("subscribing on topic {}", dest.name))(e));
                    }
                }
                keys.insert(key.clone(), k);
            }
            let all: Vec<SubscriptionKey> = ts
                .subscriptions()
                .await
                .map_err(store_err(format!("listing subscriptions of {}", dest.name)))?
                .into_iter()
                .map(|s| s.key)
                .collect();
            for (p, msg) in messages {
                let id = msg.id.clone();
                let size = msg.size();
                match ts.add(msg).await {
                    Ok(_) => summary.added(size),
                    Err(StoreError::Duplicate(_)) => {
                        summary.already_there += 1;
                        continue;
                    }
                    Err(e) => return Err(store_err(format!("adding to topic {}", dest.name))(e)),
                }
                let pending_for: BTreeSet<&SubscriptionKey> =
                    p.subscriptions.iter().filter_map(|k| keys.get(k)).collect();
                for k in all.iter().filter(|k| !pending_for.contains(k)) {
                    match ts.acknowledge(k, &id).await {
                        Ok(()) | Err(StoreError::NotFound(_)) => {}
                        Err(e) => {
                            return Err(store_err(format!("acknowledging on {}", dest.name))(e));
                        }
                    }
                }
            }
        }
    }
    load_prepared(replay, store, decoder, summary).await
}

/// Prepared XA transactions become prepared transactions of this store, so that a transaction
/// manager can still commit or roll them back.
async fn load_prepared(
    replay: &Replay,
    store: &Arc<dyn PersistenceAdapter>,
    decoder: &mut MessageDecoder,
    summary: &mut Summary,
) -> Result<(), ImportKahaError> {
    if replay.prepared.is_empty() {
        return Ok(());
    }
    let existing: Vec<Xid> = store
        .prepared_transactions()
        .await
        .map_err(store_err("listing prepared transactions".into()))?
        .into_iter()
        .map(|p| p.xid)
        .collect();
    'tx: for (tx, commands) in &replay.prepared {
        let TxId::Xa {
            format_id,
            branch_qualifier,
            global_id,
        } = tx
        else {
            continue;
        };
        let xid = Xid {
            format_id: *format_id,
            global_id: global_id.clone(),
            branch_qualifier: branch_qualifier.clone(),
        };
        if existing.contains(&xid) {
            summary.already_there += 1;
            continue;
        }
        let mut ops = Vec::new();
        for c in commands {
            let op = match c {
                Command::Add(a) => {
                    let (Some(dest), Some(m)) =
                        (destination(&a.destination), decoder.decode(&a.message))
                    else {
                        summary.skip("prepared XA transaction with an unreadable message");
                        continue 'tx;
                    };
                    match core_message(&m, dest) {
                        Ok(msg) => TxOp::Add(msg),
                        Err(_) => {
                            summary.skip("prepared XA transaction with an unmappable message");
                            continue 'tx;
                        }
                    }
                }
                Command::Remove(_) => {
                    // An ack names the message by ActiveMQ's id string; the message it acks
                    // was imported under the OpenWire door's id, which the journal's remove
                    // does not carry.
                    summary.skip("prepared XA transaction with acknowledgements");
                    continue 'tx;
                }
                _ => continue,
            };
            ops.push(op);
        }
        let id = TransactionId::Xa(xid.clone());
        store
            .begin(&id)
            .await
            .map_err(store_err("begin XA".into()))?;
        for op in ops {
            store
                .enlist(&id, op)
                .await
                .map_err(store_err("enlist XA".into()))?;
        }
        store
            .prepare(&xid)
            .await
            .map_err(store_err("prepare XA".into()))?;
        summary.prepared += 1;
    }
    Ok(())
}
