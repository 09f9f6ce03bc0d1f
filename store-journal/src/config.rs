//! How a journal is laid out and written: its configuration and what recovery does with
//! damage.

use std::path::PathBuf;
use std::time::Duration;

use store_api::{SyncPolicy, WriteRefusal};

/// [`JournalConfig::defer_delay`]'s default: several times a write+fsync on a fast disk, so that
/// the acknowledgements of a busy broker ride on its message writes, and short enough that one
/// a client does wait for (a receipt after it) is not held up noticeably.
pub const DEFAULT_DEFER_DELAY: Duration = Duration::from_millis(2);

/// What to do when recovery finds damage followed by valid data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Refuse to open, naming the file and offset (the default): silently dropping data that
    /// was acknowledged is worse than stopping.
    #[default]
    Strict,
    /// Skip damaged ranges, logging each one (ActiveMQ's `ignoreMissingJournalfiles`).
    SkipCorrupt,
}

/// How the journal is laid out and written.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    pub directory: PathBuf,
    /// File names are `{prefix}{id}{suffix}`: `db-` + `.log` for KahaDB, `data-` + `` for AMQ.
    pub file_prefix: String,
    pub file_suffix: String,
    /// A data file is not extended past this unless one record alone is larger.
    pub max_file_length: u64,
    /// A batch (one write, at most one fsync) holds at most this many bytes, unless one append
    /// alone is larger.
    pub max_write_batch_size: usize,
    pub sync: SyncPolicy,
    /// Reserve each new file's blocks for its full length when it is created (ahead of need,
    /// on a helper thread), so later appends do not change the file's size and `fdatasync`
    /// has no allocation metadata to write.
    pub preallocate: bool,
    pub recovery: RecoveryMode,
    /// Under [`SyncPolicy::Always`], how many group commits may be in flight at once, each
    /// written and fsynced by its own writer thread and answered in journal order; the other
    /// policies always use 1. The default is 1: on a machine with few cores the second thread's
    /// wake-ups cost more CPU than the overlap of two flushes saves (measured on the 2-core
    /// development VM: see the README's Benchmarks section). A machine with more cores and a
    /// deep-queue disk (NVMe) is where more than one pays.
    pub writes_in_flight: usize,
    /// Under [`SyncPolicy::Always`] with one write in flight: the append that completes a group
    /// writes and fsyncs it on its own thread when its completion is awaited (or dropped),
    /// instead of waking the writer thread.
    pub leader_writes: bool,
    /// A write+fsync slower than this is a disk in trouble: for [`Self::lead_cool_down`] after
    /// one, the writer thread does all the I/O. Default 20 ms (see `writer.rs` for why).
    pub lead_stall: Duration,
    /// How long appenders leave the I/O to the writer thread after a stall. Default 1 s. Tests
    /// set it to pin one behaviour whatever the machine's load does to their timing.
    pub lead_cool_down: Duration,
    /// Replay reads sealed data files (those no write will ever reach again) through a
    /// read-only map (see [`crate::mmap`]), one file at a time, instead of two `pread`s and a
    /// buffer per batch. Default false here; KahaDB and AMQ turn it on (measured there).
    pub map_replay: bool,
    /// Reads by location ([`crate::Journal::read`]) of records in sealed data files go through
    /// a read-only map of the file, kept (up to 128 MiB of maps, least recently used dropped
    /// first) until the journal closes or deletes the file. Default false here; KahaDB and AMQ
    /// turn it on.
    pub map_reads: bool,
    /// Under [`SyncPolicy::Always`], how long a deferred append ([`crate::Journal::append_deferred`]:
    /// an acknowledgement no client waits for) may wait for an urgent one to share its fsync
    /// before it is written and fsynced on its own. Zero writes deferred appends at once, like
    /// the others. Default 2 ms.
    pub defer_delay: Duration,
}

/// What a journal store asked to take writes again (`PersistenceAdapter::resume_writes`)
/// should do: answer at once, or reopen its journal in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Writes are taken (`true`: there was no refusal), or cannot be yet (`false`: the
    /// refusal was not for space, and what reached the disk is unknown, so only a restart is
    /// safe; or the disk is still full).
    Answer(bool),
    /// Refused for want of space, and a whole journal file fits again.
    Reopen,
}

impl JournalConfig {
    /// The first step of a store's `resume_writes`, from its refusal and the space left on
    /// `fs` (KahaDB, AMQ and journaled JDBC share it).
    pub fn resume(&self, refusal: Option<&WriteRefusal>, fs: &dyn crate::fs::FileSystem) -> Resume {
        match refusal {
            None => Resume::Answer(true),
            Some(r) if r.disk_full.is_none() => Resume::Answer(false),
            Some(_) if !self.room_for_a_file(fs) => Resume::Answer(false),
            Some(_) => Resume::Reopen,
        }
    }

    /// Whether a whole journal file's blocks can be reserved on `fs` now, by reserving and
    /// releasing them in a scratch file in the journal's directory (a reservation fails at once
    /// on a full disk, without writing).
    fn room_for_a_file(&self, fs: &dyn crate::fs::FileSystem) -> bool {
        let path = self.directory.join(".space-probe");
        let fits = fs
            .open(&path, true)
            .and_then(|f| f.allocate(self.max_file_length));
        let _ = fs.remove(&path);
        fits.is_ok()
    }

    /// ActiveMQ's defaults: 32 MiB files, 4 MiB batches, sync always, preallocated.
    pub fn new(directory: impl Into<PathBuf>, file_prefix: &str, file_suffix: &str) -> Self {
        JournalConfig {
            directory: directory.into(),
            file_prefix: file_prefix.into(),
            file_suffix: file_suffix.into(),
            max_file_length: 32 * 1024 * 1024,
            max_write_batch_size: 4 * 1024 * 1024,
            sync: SyncPolicy::Always,
            preallocate: true,
            recovery: RecoveryMode::Strict,
            writes_in_flight: 1,
            leader_writes: true,
            lead_stall: crate::writer::LEAD_STALL,
            lead_cool_down: crate::writer::LEAD_COOL_DOWN,
            map_replay: false,
            map_reads: false,
            defer_delay: DEFAULT_DEFER_DELAY,
        }
    }

    pub(crate) fn file_name(&self, id: u32) -> String {
        format!("{}{id}{}", self.file_prefix, self.file_suffix)
    }

    /// The path of journal file `id`.
    pub fn path_of(&self, id: u32) -> PathBuf {
        self.directory.join(self.file_name(id))
    }

    /// The id in a data file's name, if it is one of ours.
    pub(crate) fn parse_file_name(&self, name: &str) -> Option<u32> {
        name.strip_prefix(&self.file_prefix)?
            .strip_suffix(&self.file_suffix)?
            .parse()
            .ok()
    }
}
