//! Journal commands replayed in journal order into what is still pending: per queue its
//! messages, per topic its durable subscriptions and, per message, the subscriptions that have
//! not acknowledged it. Commands of a transaction wait for its COMMIT (applied) or ROLLBACK
//! (dropped); an XA transaction PREPAREd and never finished is kept apart, with its commands.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::proto::{Command, DestinationType, KahaDestination, TxId};

/// A message still pending, with its OpenWire bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMessage {
    /// ActiveMQ's message id string, as the journal keys it.
    pub id: String,
    pub bytes: Vec<u8>,
    /// On a topic: the subscription keys (`clientId:subName`) it is pending for.
    pub subscriptions: BTreeSet<String>,
}

/// One destination's state at the end of the journal.
#[derive(Debug, Default)]
pub struct DestinationState {
    /// In the order they were added; `None` once consumed.
    messages: Vec<Option<PendingMessage>>,
    index: HashMap<String, usize>,
    /// Durable subscriptions (topics only): key to the OpenWire `SubscriptionInfo` bytes.
    pub subscriptions: BTreeMap<String, Vec<u8>>,
}

impl DestinationState {
    pub fn pending(&self) -> impl Iterator<Item = &PendingMessage> {
        self.messages.iter().flatten()
    }

    fn remove(&mut self, id: &str) {
        if let Some(i) = self.index.remove(id) {
            self.messages[i] = None;
        }
    }
}

/// What the journal leaves pending.
#[derive(Debug, Default)]
pub struct Replay {
    pub destinations: BTreeMap<KahaDestination, DestinationState>,
    /// XA transactions prepared and never committed or rolled back, with their commands.
    pub prepared: Vec<(TxId, Vec<Command>)>,
    open: BTreeMap<TxId, (bool, Vec<Command>)>,
    /// Things passed over, each with its reason (`temporary destination`, ...).
    pub skipped: BTreeMap<String, u64>,
}

impl Replay {
    /// Applies every command of one journal file's bytes, skipping what is damaged or does not
    /// decode; `inspect` sees each command first. What the fuzz targets run (the broker's own
    /// `fuzz_journal` and `fuzz/fuzz_targets/kahadb_import.rs`, which compiles this module
    /// from here): it must never panic, whatever `data` holds.
    pub fn apply_file_lossy(&mut self, data: &[u8], mut inspect: impl FnMut(&Command)) {
        let mut skipped = super::journal::Skipped::default();
        let _ = super::journal::read_records(data, "fuzz", true, &mut skipped, |_, payload| {
            if let Ok(c) = super::proto::decode_command(payload) {
                inspect(&c);
                self.apply(c);
            }
        });
    }

    /// Applies one command, in journal order.
    pub fn apply(&mut self, command: Command) {
        let tx = match &command {
            Command::Add(a) | Command::Update(a) => a.tx.clone(),
            Command::Remove(r) => r.tx.clone(),
            _ => None,
        };
        if let Some(tx) = tx {
            self.open.entry(tx).or_default().1.push(command);
            return;
        }
        match command {
            Command::Prepare(tx) => {
                self.open.entry(tx).or_default().0 = true;
            }
            Command::Commit(tx) => {
                if let Some((_, commands)) = self.open.remove(&tx) {
                    for c in commands {
                        self.apply_now(c);
                    }
                }
            }
            Command::Rollback(tx) => {
                self.open.remove(&tx);
            }
            other => self.apply_now(other),
        }
    }

    fn apply_now(&mut self, command: Command) {
        match command {
            Command::Add(a) => {
                if matches!(
                    a.destination.kind,
                    DestinationType::TempQueue | DestinationType::TempTopic
                ) {
                    self.skip("message to a temporary destination (they do not outlive a broker)");
                    return;
                }
                let topic = a.destination.kind == DestinationType::Topic;
                let d = self.destinations.entry(a.destination).or_default();
                if d.index.contains_key(&a.message_id) {
                    return;
                }
                let subscriptions: BTreeSet<String> = if topic {
                    d.subscriptions.keys().cloned().collect()
                } else {
                    BTreeSet::new()
                };
                if topic && subscriptions.is_empty() {
                    // No durable subscription to keep it for: ActiveMQ drops it too.
                    return;
                }
                d.index.insert(a.message_id.clone(), d.messages.len());
                d.messages.push(Some(PendingMessage {
                    id: a.message_id,
                    bytes: a.message,
                    subscriptions,
                }));
            }
            Command::Update(a) => {
                if let Some(d) = self.destinations.get_mut(&a.destination)
                    && let Some(&i) = d.index.get(&a.message_id)
                    && let Some(m) = d.messages[i].as_mut()
                {
                    m.bytes = a.message;
                }
            }
            Command::Remove(r) => {
                let Some(d) = self.destinations.get_mut(&r.destination) else {
                    return;
                };
                match r.subscription_key {
                    Some(key) if r.destination.kind == DestinationType::Topic => {
                        let Some(&i) = d.index.get(&r.message_id) else {
                            return;
                        };
                        let done = d.messages[i].as_mut().is_some_and(|m| {
                            m.subscriptions.remove(&key);
                            m.subscriptions.is_empty()
                        });
                        if done {
                            d.remove(&r.message_id);
                        }
                    }
                    _ => d.remove(&r.message_id),
                }
            }
            Command::RemoveDestination(dest) => {
                self.destinations.remove(&dest);
            }
            Command::Subscription(s) => {
                let d = self.destinations.entry(s.destination).or_default();
                match s.info {
                    Some(info) => {
                        d.subscriptions.insert(s.key, info);
                    }
                    None => {
                        d.subscriptions.remove(&s.key);
                        let mut emptied = Vec::new();
                        for m in d.messages.iter_mut().flatten() {
                            if m.subscriptions.remove(&s.key) && m.subscriptions.is_empty() {
                                emptied.push(m.id.clone());
                            }
                        }
                        for id in emptied {
                            d.remove(&id);
                        }
                    }
                }
            }
            Command::Prepare(_)
            | Command::Commit(_)
            | Command::Rollback(_)
            | Command::Ignored(_) => {}
        }
    }

    fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_owned()).or_default() += 1;
    }

    /// Ends the replay: prepared XA transactions are set apart, unfinished ones counted as
    /// skipped (ActiveMQ rolls them back when it recovers).
    pub fn finish(mut self) -> Replay {
        for (tx, (prepared, commands)) in std::mem::take(&mut self.open) {
            if prepared && matches!(tx, TxId::Xa { .. }) {
                self.prepared.push((tx, commands));
            } else {
                *self
                    .skipped
                    .entry(
                        "command of a transaction never committed (ActiveMQ rolls it back)".into(),
                    )
                    .or_default() += commands.len() as u64;
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::proto::{AddMessage, RemoveMessage, Subscription};
    use super::*;

    fn dest(kind: DestinationType) -> KahaDestination {
        KahaDestination {
            kind,
            name: "d".into(),
        }
    }

    fn add(kind: DestinationType, id: &str, tx: Option<TxId>) -> Command {
        Command::Add(AddMessage {
            tx,
            destination: dest(kind),
            message_id: id.into(),
            message: id.as_bytes().to_vec(),
        })
    }

    fn remove(kind: DestinationType, id: &str, key: Option<&str>) -> Command {
        Command::Remove(RemoveMessage {
            tx: None,
            destination: dest(kind),
            message_id: id.into(),
            subscription_key: key.map(str::to_owned),
        })
    }

    fn ids(r: &Replay, kind: DestinationType) -> Vec<(String, Vec<String>)> {
        r.destinations[&dest(kind)]
            .pending()
            .map(|m| (m.id.clone(), m.subscriptions.iter().cloned().collect()))
            .collect()
    }

    #[test]
    fn queue_adds_removes_and_transactions() {
        let local = TxId::Local {
            connection_id: "c".into(),
            transaction_id: 1,
        };
        let mut r = Replay::default();
        r.apply(add(DestinationType::Queue, "a", None));
        r.apply(add(DestinationType::Queue, "b", None));
        r.apply(remove(DestinationType::Queue, "a", None));
        r.apply(add(DestinationType::Queue, "t1", Some(local.clone())));
        r.apply(add(
            DestinationType::Queue,
            "t2",
            Some(TxId::Local {
                connection_id: "c".into(),
                transaction_id: 2,
            }),
        ));
        r.apply(Command::Commit(local));
        r.apply(Command::Rollback(TxId::Local {
            connection_id: "c".into(),
            transaction_id: 2,
        }));
        let r = r.finish();
        let got: Vec<_> = ids(&r, DestinationType::Queue)
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(got, ["b", "t1"]);
    }

    #[test]
    fn topic_messages_pending_per_subscription() {
        let sub = |key: &str, info: Option<Vec<u8>>| {
            Command::Subscription(Subscription {
                destination: dest(DestinationType::Topic),
                key: key.into(),
                retroactive: false,
                info,
            })
        };
        let mut r = Replay::default();
        r.apply(add(DestinationType::Topic, "before", None));
        r.apply(sub("c:s1", Some(vec![])));
        r.apply(add(DestinationType::Topic, "m1", None));
        r.apply(sub("c:s2", Some(vec![])));
        r.apply(add(DestinationType::Topic, "m2", None));
        r.apply(remove(DestinationType::Topic, "m2", Some("c:s1")));
        r.apply(sub("c:s3", Some(vec![])));
        r.apply(add(DestinationType::Topic, "m3", None));
        r.apply(sub("c:s3", None));
        let r = r.finish();
        assert_eq!(
            ids(&r, DestinationType::Topic),
            [
                ("m1".to_string(), vec!["c:s1".to_string()]),
                ("m2".into(), vec!["c:s2".into()]),
                ("m3".into(), vec!["c:s1".into(), "c:s2".into()]),
            ]
        );
    }
}
