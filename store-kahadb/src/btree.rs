//! B+trees of fixed 16-byte keys and fixed-size values, in pages of the [`PageFile`].
//!
//! Nodes are changed in place in the cache, copied only while a checkpoint still holds them
//! (the cache hands out shared nodes, `Arc::make_mut` on change), and written back
//! dirty; a checkpoint persists them. Deletes do not rebalance (as KahaDB's trees do not), but an
//! emptied leaf is unlinked and its page freed, and a branch left with one child is replaced by
//! that child, so a queue in steady state (adds at the tail, acks at the head) does not leave a
//! trail of empty pages behind.

use std::ops::Bound;

use crate::error::Result;
use crate::page_file::{Key, Node, PageFile, PageId};

/// Creates an empty tree and returns its root page.
pub fn create(pf: &mut PageFile, value_size: usize) -> PageId {
    let id = pf.allocate();
    pf.put(id, Node::empty_leaf(value_size));
    id
}

pub fn get(pf: &mut PageFile, root: PageId, key: &Key) -> Result<Option<Vec<u8>>> {
    let mut page = root;
    loop {
        let node = pf.get(page)?;
        match &*node {
            Node::Leaf {
                value_size,
                keys,
                values,
            } => {
                return Ok(keys
                    .binary_search(key)
                    .ok()
                    .map(|i| values[i * value_size..(i + 1) * value_size].to_vec()));
            }
            Node::Branch { keys, children } => {
                page = children[keys.partition_point(|k| k <= key)];
            }
        }
    }
}

/// Inserts or replaces; returns the value replaced.
pub fn insert(
    pf: &mut PageFile,
    root: &mut PageId,
    key: Key,
    value: &[u8],
) -> Result<Option<Vec<u8>>> {
    let (old, split) = insert_into(pf, *root, key, value)?;
    if let Some((sep, right)) = split {
        let new_root = pf.allocate();
        pf.put(
            new_root,
            Node::Branch {
                keys: vec![sep],
                children: vec![*root, right],
            },
        );
        *root = new_root;
    }
    Ok(old)
}

type Split = Option<(Key, PageId)>;

fn insert_into(
    pf: &mut PageFile,
    page: PageId,
    key: Key,
    value: &[u8],
) -> Result<(Option<Vec<u8>>, Split)> {
    // Descend through a branch without copying it: only a split below changes it.
    let descend = match &*pf.get(page)? {
        Node::Branch { keys, children } => {
            let idx = keys.partition_point(|k| *k <= key);
            Some((idx, children[idx]))
        }
        Node::Leaf { .. } => None,
    };
    let mut split_below = None;
    let mut old = None;
    if let Some((idx, child)) = descend {
        let (o, split) = insert_into(pf, child, key, value)?;
        old = o;
        match split {
            Some(s) => split_below = Some((idx, s)),
            None => return Ok((old, None)),
        }
    }
    // Changed in place in the cache: the common add touches one leaf, and moving it out of
    // the cache and back cost two hash probes and an allocation.
    match pf.modify(page)? {
        Node::Leaf {
            value_size,
            keys,
            values,
        } => {
            let vs = *value_size;
            debug_assert_eq!(value.len(), vs);
            match keys.binary_search(&key) {
                Ok(i) => {
                    let old = values[i * vs..(i + 1) * vs].to_vec();
                    values[i * vs..(i + 1) * vs].copy_from_slice(value);
                    Ok((Some(old), None))
                }
                Err(i) => {
                    keys.insert(i, key);
                    values.splice(i * vs..i * vs, value.iter().copied());
                    if keys.len() <= Node::leaf_capacity(vs) {
                        return Ok((None, None));
                    }
                    let mid = keys.len() / 2;
                    let right_keys = keys.split_off(mid);
                    let right_values = values.split_off(mid * vs);
                    let sep = right_keys[0];
                    let right = pf.allocate();
                    pf.put(
                        right,
                        Node::Leaf {
                            value_size: vs,
                            keys: right_keys,
                            values: right_values,
                        },
                    );
                    Ok((None, Some((sep, right))))
                }
            }
        }
        Node::Branch { keys, children } => {
            let Some((idx, (sep, new_child))) = split_below else {
                return Ok((old, None));
            };
            keys.insert(idx, sep);
            children.insert(idx + 1, new_child);
            if keys.len() <= Node::BRANCH_CAPACITY {
                return Ok((old, None));
            }
            let mid = keys.len() / 2;
            let mut right_keys = keys.split_off(mid);
            let promoted = right_keys.remove(0);
            let right_children = children.split_off(mid + 1);
            let right = pf.allocate();
            pf.put(
                right,
                Node::Branch {
                    keys: right_keys,
                    children: right_children,
                },
            );
            Ok((old, Some((promoted, right))))
        }
    }
}

enum Removed {
    /// The node still has entries.
    Kept,
    /// The node is empty; the parent unlinks it.
    Empty,
    /// The node is a branch with one child left; the parent points at the child instead.
    Collapse(PageId),
}

/// Removes a key; returns its value. `value_size` is the tree's.
pub fn remove(
    pf: &mut PageFile,
    root: &mut PageId,
    key: &Key,
    value_size: usize,
) -> Result<Option<Vec<u8>>> {
    let (old, outcome) = remove_from(pf, *root, key)?;
    match outcome {
        Removed::Kept => {}
        Removed::Collapse(child) => {
            pf.release(*root);
            *root = child;
        }
        Removed::Empty => {
            // The root stays, as an empty leaf of the tree's value size.
            if !matches!(&*pf.get(*root)?, Node::Leaf { .. }) {
                pf.release(*root);
                *root = pf.allocate();
            }
            pf.put(*root, Node::empty_leaf(value_size));
        }
    }
    Ok(old)
}

fn remove_from(pf: &mut PageFile, page: PageId, key: &Key) -> Result<(Option<Vec<u8>>, Removed)> {
    let mut node = Node::clone(&*pf.get(page)?);
    match &mut node {
        Node::Leaf {
            value_size,
            keys,
            values,
        } => {
            let vs = *value_size;
            let Ok(i) = keys.binary_search(key) else {
                return Ok((None, Removed::Kept));
            };
            keys.remove(i);
            let old: Vec<u8> = values.drain(i * vs..(i + 1) * vs).collect();
            let empty = keys.is_empty();
            pf.put(page, node);
            Ok((
                Some(old),
                if empty { Removed::Empty } else { Removed::Kept },
            ))
        }
        Node::Branch { keys, children } => {
            let idx = keys.partition_point(|k| k <= key);
            let child = children[idx];
            let (old, outcome) = remove_from(pf, child, key)?;
            match outcome {
                Removed::Kept => return Ok((old, Removed::Kept)),
                Removed::Collapse(grandchild) => {
                    pf.release(child);
                    children[idx] = grandchild;
                }
                Removed::Empty => {
                    pf.release(child);
                    children.remove(idx);
                    keys.remove(idx.saturating_sub(1));
                }
            }
            let outcome = match children.len() {
                0 => Removed::Empty,
                1 => Removed::Collapse(children[0]),
                _ => Removed::Kept,
            };
            if matches!(outcome, Removed::Kept) {
                pf.put(page, node);
            }
            Ok((old, outcome))
        }
    }
}

/// Calls `f` with each entry in key order within the bounds, until it returns false.
pub fn scan(
    pf: &mut PageFile,
    root: PageId,
    from: Bound<Key>,
    to: Bound<Key>,
    f: &mut dyn FnMut(&Key, &[u8]) -> bool,
) -> Result<()> {
    scan_page(pf, root, &from, &to, f).map(|_| ())
}

fn after_lower(k: &Key, from: &Bound<Key>) -> bool {
    match from {
        Bound::Included(b) => k >= b,
        Bound::Excluded(b) => k > b,
        Bound::Unbounded => true,
    }
}

fn before_upper(k: &Key, to: &Bound<Key>) -> bool {
    match to {
        Bound::Included(b) => k <= b,
        Bound::Excluded(b) => k < b,
        Bound::Unbounded => true,
    }
}

fn scan_page(
    pf: &mut PageFile,
    page: PageId,
    from: &Bound<Key>,
    to: &Bound<Key>,
    f: &mut dyn FnMut(&Key, &[u8]) -> bool,
) -> Result<bool> {
    let node = pf.get(page)?;
    match &*node {
        Node::Leaf {
            value_size,
            keys,
            values,
        } => {
            let start = match from {
                Bound::Included(b) => keys.partition_point(|k| k < b),
                Bound::Excluded(b) => keys.partition_point(|k| k <= b),
                Bound::Unbounded => 0,
            };
            for i in start..keys.len() {
                if !before_upper(&keys[i], to) {
                    return Ok(false);
                }
                debug_assert!(after_lower(&keys[i], from));
                if !f(&keys[i], &values[i * value_size..(i + 1) * value_size]) {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Node::Branch { keys, children } => {
            let start = match from {
                Bound::Included(b) | Bound::Excluded(b) => keys.partition_point(|k| k <= b),
                Bound::Unbounded => 0,
            };
            for i in start..children.len() {
                if i > 0 && !before_upper(&keys[i - 1], to) {
                    return Ok(false);
                }
                if !scan_page(pf, children[i], from, to, f)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    }
}

/// Frees every page of a tree.
pub fn destroy(pf: &mut PageFile, root: PageId) -> Result<()> {
    let node = pf.get(root)?;
    if let Node::Branch { children, .. } = &*node {
        for c in children {
            destroy(pf, *c)?;
        }
    }
    pf.release(root);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    use proptest::prelude::*;
    use store_journal::fs::SimFs;

    use super::*;

    fn key(n: u16) -> Key {
        let mut k = [0u8; 16];
        k[0..2].copy_from_slice(&n.to_be_bytes());
        k
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        /// Random inserts, removes and range scans agree with a BTreeMap, through splits,
        /// emptied leaves and collapsed branches, with a cache small enough to evict.
        #[test]
        fn agrees_with_a_btreemap(ops in proptest::collection::vec((any::<bool>(), 0u16..3000, any::<u8>()), 1..3000)) {
            let fs = Arc::new(SimFs::new());
            let (mut pf, _) = PageFile::open(fs, Path::new("/idx"), 64).unwrap();
            let mut root = create(&mut pf, 3);
            let mut model = BTreeMap::new();
            for (insert_op, k, v) in ops {
                let value = [v, v, v];
                if insert_op {
                    prop_assert_eq!(insert(&mut pf, &mut root, key(k), &value).unwrap(), model.insert(k, value.to_vec()));
                } else {
                    prop_assert_eq!(remove(&mut pf, &mut root, &key(k), 3).unwrap(), model.remove(&k));
                }
            }
            let mut all = Vec::new();
            scan(&mut pf, root, Bound::Unbounded, Bound::Unbounded, &mut |k, v| { all.push((u16::from_be_bytes([k[0], k[1]]), v.to_vec())); true }).unwrap();
            prop_assert_eq!(all, model.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>());
            let mut some = Vec::new();
            scan(&mut pf, root, Bound::Excluded(key(1000)), Bound::Included(key(2000)), &mut |k, _| { some.push(u16::from_be_bytes([k[0], k[1]])); some.len() < 50 }).unwrap();
            let expected: Vec<u16> = model.range(1001..=2000).map(|(k, _)| *k).take(50).collect();
            prop_assert_eq!(some, expected);
            for k in [0u16, 17, 999, 2999] {
                prop_assert_eq!(get(&mut pf, root, &key(k)).unwrap(), model.get(&k).cloned());
            }
            prop_assert_eq!(pf.dirty_pages(), pf.count_dirty(), "kept dirty count");
            let _ = pf.take_flush_set(Vec::new());
            pf.flush_done();
            prop_assert_eq!((pf.dirty_pages(), pf.count_dirty()), (0, 0));
            insert(&mut pf, &mut root, key(1), &[1, 1, 1]).unwrap();
            prop_assert_eq!(pf.dirty_pages(), pf.count_dirty(), "kept dirty count after a checkpoint");
        }
    }
}
