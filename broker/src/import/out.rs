//! The `broker.toml` that `broker import-config` prints: tables in the order the README
//! documents them, one key per line with a comment where the value needs a word (an ActiveMQ
//! default made explicit, a setting that waits for a key this build lacks).
//!
//! Values are written by the `toml` crate's own serializer, so quoting and escapes are right
//! whatever the XML held; the keys are this broker's fixed snake-case names.

use toml::Value;

/// Tables in the order they are printed; arrays of tables keep their insertion order.
const ORDER: [&str; 14] = [
    "broker",
    "persistence",
    "persistence.kahadb",
    "persistence.amq",
    "persistence.jdbc",
    "persistence.journaled_jdbc",
    "persistence.leveldb",
    "locker",
    "limits",
    "policy",
    "policy.entries",
    "transports",
    "users",
    "authorization",
];

struct Line {
    key: String,
    value: Value,
    comment: Option<String>,
    /// Printed as a comment: a setting this build cannot take yet.
    disabled: bool,
}

/// One `[table]` or `[[array.entry]]`.
pub(crate) struct Table {
    name: &'static str,
    array: bool,
    lines: Vec<Line>,
}

impl Table {
    /// Sets `key` (replacing an earlier value).
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.put(key, value.into(), None, false)
    }

    /// Sets `key` with a comment after it.
    pub fn set_c(&mut self, key: &str, value: impl Into<Value>, comment: &str) -> &mut Self {
        self.put(key, value.into(), Some(comment.to_owned()), false)
    }

    /// Writes `key = value` commented out, with why.
    pub fn set_disabled(&mut self, key: &str, value: impl Into<Value>, why: &str) -> &mut Self {
        self.put(key, value.into(), Some(why.to_owned()), true)
    }

    fn put(
        &mut self,
        key: &str,
        value: Value,
        comment: Option<String>,
        disabled: bool,
    ) -> &mut Self {
        self.lines.retain(|l| l.key != key);
        self.lines.push(Line {
            key: key.to_owned(),
            value,
            comment,
            disabled,
        });
        self
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.lines
            .iter()
            .find(|l| l.key == key && !l.disabled)
            .map(|l| &l.value)
    }
}

/// The document being built.
#[derive(Default)]
pub(crate) struct Doc {
    tables: Vec<Table>,
}

impl Doc {
    /// The plain table `name`, created empty on first use.
    pub fn table(&mut self, name: &'static str) -> &mut Table {
        let i = match self.tables.iter().position(|t| t.name == name && !t.array) {
            Some(i) => i,
            None => {
                self.tables.push(Table {
                    name,
                    array: false,
                    lines: Vec::new(),
                });
                self.tables.len() - 1
            }
        };
        &mut self.tables[i]
    }

    /// A new `[[name]]` entry.
    pub fn push(&mut self, name: &'static str) -> &mut Table {
        self.tables.push(Table {
            name,
            array: true,
            lines: Vec::new(),
        });
        let last = self.tables.len() - 1;
        &mut self.tables[last]
    }

    /// The TOML text, `header` (comment lines) first.
    pub fn render(&self, header: &[String]) -> String {
        let mut out = String::new();
        for h in header {
            out.push_str(&format!("# {h}\n"));
        }
        let rank = |t: &Table| {
            ORDER
                .iter()
                .position(|n| *n == t.name)
                .unwrap_or(ORDER.len())
        };
        let mut tables: Vec<&Table> = self.tables.iter().collect();
        tables.sort_by_key(|t| rank(t)); // stable: entries keep their order
        for t in tables {
            // An empty plain table says nothing; an empty entry is still an entry.
            if t.lines.is_empty() && !t.array {
                continue;
            }
            out.push('\n');
            if t.array {
                out.push_str(&format!("[[{}]]\n", t.name));
            } else {
                out.push_str(&format!("[{}]\n", t.name));
            }
            for l in &t.lines {
                let mut line = format!(
                    "{}{} = {}",
                    if l.disabled { "# " } else { "" },
                    l.key,
                    l.value
                );
                if let Some(c) = &l.comment {
                    line.push_str(&format!("  # {c}"));
                }
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }
}

/// A byte count or other whole number as a TOML integer (TOML's are signed 64-bit).
pub(crate) fn int(n: u64) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// A list of strings.
pub(crate) fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::String).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_parseable_toml_in_the_documented_order() {
        let mut d = Doc::default();
        d.table("transports").set("stomp", "0.0.0.0:61613");
        d.push("users")
            .set("name", "a\"b")
            .set("groups", strings(&["x".into()]));
        d.table("broker").set_c("name", "b1", "brokerName");
        d.table("transports")
            .set_disabled("mqtt", "0.0.0.0:1883", "not in this build");
        d.table("limits");
        let text = d.render(&["imported".into()]);
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["broker"]["name"].as_str(), Some("b1"));
        assert_eq!(parsed["users"][0]["name"].as_str(), Some("a\"b"));
        assert!(parsed["transports"].get("mqtt").is_none());
        assert!(parsed.get("limits").is_none());
        assert!(text.find("[broker]") < text.find("[transports]"));
        assert!(text.contains("# mqtt = \"0.0.0.0:1883\""));
    }
}
