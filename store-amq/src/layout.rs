//! Where the AMQ engine keeps its files under the store directory (ActiveMQ's AMQ store
//! layout): the data logs and the control file in `journal/`, index snapshots in `kr-store/`.

use std::path::{Path, PathBuf};

/// The journal's file name prefix and suffix: `journal/data-1`, `journal/data-2`, …
pub(crate) const LOG_PREFIX: &str = "data-";
pub(crate) const LOG_SUFFIX: &str = "";

/// The AMQ engine's paths under one store directory.
#[derive(Debug, Clone)]
pub(crate) struct AmqPaths {
    /// `journal/`: the data logs and the control file.
    pub(crate) journal_dir: PathBuf,
    /// `kr-store/`: the index snapshots.
    pub(crate) kr_dir: PathBuf,
    /// `journal/data-control`.
    pub(crate) control: PathBuf,
}

impl AmqPaths {
    pub(crate) fn new(dir: &Path) -> Self {
        let journal_dir = dir.join("journal");
        AmqPaths {
            control: journal_dir.join("data-control"),
            kr_dir: dir.join("kr-store"),
            journal_dir,
        }
    }

    /// `kr-store/index-G.snapshot`.
    pub(crate) fn snapshot(&self, generation: u64) -> PathBuf {
        self.kr_dir.join(format!("index-{generation}.snapshot"))
    }
}
