#!/usr/bin/env python3
"""Disk probes behind the journal writer's choices in the README's Benchmarks section.

The journal's write path is a `pwrite` of one group followed by `fdatasync`. These probes time
that pair alone, without the store or the async runtime, so a reader can check on their own
disk the facts the choices rest on:

  direct    one group-sized write + fdatasync, with O_DIRECT and through the page cache,
            into a file whose blocks were already zero-written (the journal's preallocation);
  prealloc  the same buffered pair into fallocated (unwritten) blocks and into zeroed ones,
            at two write sizes (why the journal writes zeros over its fallocated files);
  parallel  one and two threads each doing write + fdatasync back to back, the rate of pairs
            per second (what two writes in flight could gain).

    python3 benches/disk-probe.py [DIR] [--count N]

DIR (default: the current directory) must be on the disk to measure: on tmpfs an fdatasync is
free and the probe refuses to run. Each probe does COUNT pairs (default 2000, a few seconds in
all) at growing offsets and prints the median and p99 in µs and the pairs per second. The files
are removed at the end.
"""

import argparse
import mmap
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# A group of 16 appends of ~1.1 KiB records is ~17.6 KiB; O_DIRECT needs a multiple of 512.
GROUP = 18 * 1024


def fs_type(path):
    out = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True)
    return out.stdout.strip()


def make_file(dir_, size, zeroed):
    """A file of `size` bytes: fallocated only, or fallocated then zero-written and synced."""
    fd, path = tempfile.mkstemp(prefix="disk-probe-", dir=dir_)
    os.posix_fallocate(fd, 0, size)
    if zeroed:
        chunk = bytes(1 << 20)
        for off in range(0, size, len(chunk)):
            os.pwrite(fd, chunk[: min(len(chunk), size - off)], off)
    os.fsync(fd)
    os.close(fd)
    return path


def timed_pairs(path, size, count, direct, start=0, stride=None):
    """`count` writes of `size` bytes at growing offsets, each followed by fdatasync; µs each."""
    flags = os.O_WRONLY | (os.O_DIRECT if direct else 0)
    fd = os.open(path, flags)
    buf = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT wants
    buf.write(b"\x5a" * size)
    stride = stride or size
    times = []
    try:
        for i in range(count):
            t0 = time.perf_counter()
            os.pwrite(fd, buf, start + i * stride)
            os.fdatasync(fd)
            times.append((time.perf_counter() - t0) * 1e6)
    finally:
        os.close(fd)
        buf.close()
    return times


def line(name, times, wall=None):
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    rate = len(times) / (wall if wall else sum(times) / 1e6)
    print(f"{name:<44} median {statistics.median(times):7.0f} µs  p99 {p99:7.0f} µs  {rate:8.0f}/s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", nargs="?", default=".")
    ap.add_argument("--count", type=int, default=2000)
    args = ap.parse_args()
    if not 1 <= args.count <= 100_000:
        sys.exit("--count: between 1 and 100000")
    kind = fs_type(args.dir)
    if kind == "tmpfs":
        sys.exit(f"{args.dir} is on tmpfs, where fdatasync is free: pass a directory on a disk")
    n = args.count
    print(f"disk probe in {os.path.abspath(args.dir)} ({kind}), {n} write+fdatasync pairs each")
    paths = []
    try:
        # direct: the journal's group size, into zeroed blocks, direct and buffered.
        for direct in (True, False):
            p = make_file(args.dir, GROUP * n, zeroed=True)
            paths.append(p)
            try:
                times = timed_pairs(p, GROUP, n, direct)
            except OSError as e:  # a file system without O_DIRECT
                print(f"direct: {e}")
                continue
            line(f"{GROUP // 1024} KiB, {'O_DIRECT' if direct else 'buffered'}, zeroed blocks", times)
        # prealloc: buffered writes into unwritten (fallocated) vs zeroed blocks.
        for size in (9 * 1024, 16 * 1024):
            for zeroed in (False, True):
                p = make_file(args.dir, size * n, zeroed)
                paths.append(p)
                times = timed_pairs(p, size, n, direct=False)
                line(f"{size // 1024} KiB, buffered, {'zeroed' if zeroed else 'fallocated'} blocks", times)
        # parallel: one and two threads, each its own region of one zeroed file.
        p = make_file(args.dir, GROUP * n * 2, zeroed=True)
        paths.append(p)
        for threads in (1, 2):
            results = [None] * threads
            per = n // threads

            def run(k):
                results[k] = timed_pairs(p, GROUP, per, direct=False, start=k * GROUP * per)

            t0 = time.perf_counter()
            ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            wall = time.perf_counter() - t0
            line(f"{GROUP // 1024} KiB, buffered, {threads} thread(s) in parallel",
                 [x for r in results for x in r], wall)
    finally:
        for p in paths:
            os.unlink(p)


if __name__ == "__main__":
    main()
