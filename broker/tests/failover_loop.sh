#!/usr/bin/env bash
# Runs each master/slave fail-over scenario of broker/tests/failover.rs RUNS times in a row
# (default 50) and prints, per scenario, the runs, failures, take-over times and duplicates.
# Needs MYSQL_URL and POSTGRES_URL as .ci/run sets them. Failed runs keep their output in
# $OUT/fail-<scenario>-<n>.log.
#
#   broker/tests/failover_loop.sh [RUNS] [scenario ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-50}
shift || true
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(mariadb_database_locker mariadb_lease_locker postgres_lease_locker kahadb_shared_file_locker amq_shared_file_locker)
out=${OUT:-$(mktemp -d)}
bin=$(cargo test -p broker --test failover --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="failover" and m.get("executable"): print(m["executable"])' | tail -1)
log="$out/runs.log"
: > "$log"
for s in "${scenarios[@]}"; do
    for i in $(seq 1 "$runs"); do
        set +e
        result=$(cd broker && timeout 300 "$bin" --exact "$s" --nocapture --test-threads 1 </dev/null 2>&1)
        rc=$?
        set -e
        echo "$s run $i rc=$rc $(grep -m1 '^FAILOVER' <<<"$result" || true)" >> "$log"
        [ $rc -eq 0 ] || echo "$result" > "$out/fail-$s-$i.log"
    done
done
python3 - "$log" <<'PY'
import re, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = re.match(r"(\S+) run \d+ rc=(\d+) ?(.*)", line)
    f = re.search(r"take-over (\d+) ms.*duplicates (\d+), lost (\d+)", m.group(3))
    rows[m.group(1)].append((int(m.group(2)),) + (tuple(int(x) for x in f.groups()) if f else (None, 0, 0)))
for s, v in rows.items():
    t = sorted(x[1] for x in v if x[1] is not None)
    mid = f"{t[len(t)//2]} ms ({t[0]}-{t[-1]})" if t else "-"
    print(f"{s}: runs {len(v)}, failed {sum(x[0] != 0 for x in v)}, take-over median {mid}, "
          f"duplicates {sum(x[2] for x in v)} in {sum(x[2] > 0 for x in v)} runs, lost {sum(x[3] for x in v)}")
PY
echo "log: $log"
