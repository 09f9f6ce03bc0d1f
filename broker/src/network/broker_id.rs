//! The broker's id in a network of brokers: it goes into every forwarded message's and every
//! bridged consumer's broker path, which is what stops loops. Kept in `broker.id` under the
//! data directory so that it outlives a restart (a message stored before the restart still
//! names this broker) and is shared by a master and its slave on one shared directory.

use std::path::Path;

use tracing::warn;

use crate::BrokerConfig;

/// The file under the data directory.
const FILE: &str = "broker.id";

/// The id from `broker.id`, or a new one written there; a new one for this run only (with a
/// warning) when the directory cannot be written.
pub fn load_or_create(config: &BrokerConfig) -> String {
    let dir = &config.broker.data_directory;
    let path = dir.join(FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim();
        if is_valid(id) {
            return id.to_owned();
        }
        warn!(
            "{} does not hold a broker id; writing a new one",
            path.display()
        );
    }
    let id = generate(&config.broker.name);
    if let Err(e) = write(dir, &path, &id) {
        warn!(
            "cannot keep the broker id in {}: {e}; using {id} for this run only",
            path.display()
        );
    }
    id
}

/// Letters, digits, `-` and `:` only: the id goes into selectors (the bridges' loop check)
/// and comma-separated lists.
fn is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':')
}

fn generate(name: &str) -> String {
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    let mut bytes = [0u8; 8];
    let random = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    let suffix = match random {
        Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        // No system randomness: the process and the clock are unique enough on one host.
        Err(_) => format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ),
    };
    format!("ID:{name}-{suffix}")
}

/// Write, sync, rename: a crash leaves the old file or the new one, never half of one.
fn write(dir: &Path, path: &Path, id: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(format!("{id}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::default();
        config.broker.data_directory = dir.path().join("data");
        config.broker.name = "a b/c".into();
        let first = load_or_create(&config);
        assert!(first.starts_with("ID:abc-"), "{first}");
        assert!(is_valid(&first));
        assert_eq!(load_or_create(&config), first);
        std::fs::write(dir.path().join("data").join(FILE), "bad id,\n").unwrap();
        let second = load_or_create(&config);
        assert_ne!(second, first);
        assert_eq!(load_or_create(&config), second);
    }
}
