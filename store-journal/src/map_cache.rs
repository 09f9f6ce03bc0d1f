//! The maps of sealed data files that reads by location keep between reads
//! (`JournalConfig::map_reads`), bounded: a mapped page counts in the process's resident memory
//! for as long as it is mapped, so keeping a map of every file a consumer far behind the head
//! has read would show the whole journal as the broker's memory. Past [`MAPPED_BYTES_KEPT`] the
//! least recently used map is dropped (a reader still holding it keeps it until it is done).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::mmap::SealedMap;

/// How many bytes of maps are kept: four 32 MiB files. A drain reads file after file, so it
/// needs one at a time; a few consumers at different places in the journal need one each.
/// The bound is what the maps can add to the resident memory (the README's Benchmarks section
/// has the figures).
pub(crate) const MAPPED_BYTES_KEPT: usize = 128 << 20;

#[derive(Default)]
pub(crate) struct MapCache {
    /// By file id: the map and when it was last used.
    maps: BTreeMap<u32, (Arc<SealedMap>, u64)>,
    clock: u64,
    bytes: usize,
}

impl MapCache {
    pub(crate) fn get(&mut self, id: u32) -> Option<Arc<SealedMap>> {
        self.clock += 1;
        let clock = self.clock;
        self.maps.get_mut(&id).map(|(m, used)| {
            *used = clock;
            m.clone()
        })
    }

    /// Keeps `map` of file `id` (unless one is kept already), dropping the least recently used
    /// maps to stay within [`MAPPED_BYTES_KEPT`]; one map is kept whatever its size.
    pub(crate) fn insert(&mut self, id: u32, map: Arc<SealedMap>) {
        if self.maps.contains_key(&id) {
            return;
        }
        while !self.maps.is_empty() && self.bytes + map.len() > MAPPED_BYTES_KEPT {
            let oldest = self
                .maps
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.remove(oldest);
            }
        }
        self.clock += 1;
        self.bytes += map.len();
        self.maps.insert(id, (map, self.clock));
    }

    pub(crate) fn remove(&mut self, id: u32) {
        if let Some((m, _)) = self.maps.remove(&id) {
            self.bytes -= m.len();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.maps.clear();
        self.bytes = 0;
    }

    /// The ids of the files mapped, for tests.
    #[cfg(test)]
    pub(crate) fn ids(&self) -> Vec<u32> {
        self.maps.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::mmap::SealedProof;

    /// A map of a sparse file of `len` bytes (nothing is written or read).
    fn map(dir: &std::path::Path, name: &str, len: u64) -> Arc<SealedMap> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join(name))
            .unwrap();
        f.set_len(len).unwrap();
        Arc::new(
            SealedMap::new(&f, SealedProof::file_is_sealed())
                .unwrap()
                .unwrap(),
        )
    }

    #[test]
    fn the_least_recently_used_map_goes_once_the_budget_is_spent() {
        let dir = tempfile::tempdir().unwrap();
        let half = (MAPPED_BYTES_KEPT / 2) as u64;
        let mut cache = MapCache::default();
        cache.insert(1, map(dir.path(), "1", half));
        cache.insert(2, map(dir.path(), "2", half));
        assert_eq!(cache.ids(), [1, 2]);
        assert!(cache.get(1).is_some());
        cache.insert(3, map(dir.path(), "3", half));
        assert_eq!(cache.ids(), [1, 3], "2 was the least recently used");
        cache.remove(1);
        cache.insert(4, map(dir.path(), "4", half));
        assert_eq!(cache.ids(), [3, 4]);
        // One map is kept whatever its size.
        cache.insert(5, map(dir.path(), "5", half * 3));
        assert_eq!(cache.ids(), [5]);
        cache.clear();
        assert!(cache.ids().is_empty() && cache.get(5).is_none());
    }
}
