#!/usr/bin/env bash
# The replicated store next to its local engine alone, in one run on this machine: receipted
# persistent 1 KiB sends over STOMP (`broker producer`, 1 and 8 producers) to
#   - one broker on KahaDB (fsync on every write), and
#   - a group of three brokers replicating KahaDB through a local ZooKeeper (Debian's
#     `zookeeper` package), sync = quorum_disk and quorum_mem, measured on the master.
#
#   bash benches/compare-replicated.sh            # COUNT=20000 by default
# Needs a release build (cargo build --release -p broker) and Java with /usr/share/java/zookeeper.jar.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
COUNT="${COUNT:-20000}"
BROKER="$ROOT/target/release/broker"
WORK="$(mktemp -d /tmp/compare-replicated.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ZK_PORT=$(port)
mkdir -p "$WORK/zk"
printf 'tickTime=200\ndataDir=%s/zk/data\nclientPort=%s\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n' "$WORK" "$ZK_PORT" > "$WORK/zk/zoo.cfg"
java -Xmx128m -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar org.apache.zookeeper.server.ZooKeeperServerMain "$WORK/zk/zoo.cfg" >/dev/null 2>&1 &
PIDS+=($!)

wait_port() { for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
wait_port "$ZK_PORT"

# broker NAME STOMP_PORT EXTRA-PERSISTENCE-TOML
start() {
  local dir="$WORK/$1"; mkdir -p "$dir"
  printf '[broker]\nname = "%s"\ndata_directory = "%s/data"\n%s\n[transports]\nstomp = "127.0.0.1:%s"\nopenwire = ""\nwebsocket = ""\nmqtt = ""\nweb = ""\n' \
    "$1" "$dir" "$3" "$2" > "$dir/broker.toml"
  "$BROKER" start --config "$dir/broker.toml" > "$dir/log" 2>&1 &
  PIDS+=($!)
}

# rate STOMP_PORT PRODUCERS -> msg/s (the producer's own figure: its RESULT line)
rate() {
  "$BROKER" producer --url "tcp://127.0.0.1:$1" --destination "/queue/bench.$RANDOM" \
    --count "$COUNT" --producers "$2" --receipts every | sed -n 's/^RESULT msgs_per_sec=\([0-9]*\).*/\1/p'
}

echo "| store | 1 producer msg/s | 8 producers msg/s |"
echo "|---|---:|---:|"
P=$(port); start single "$P" $'[persistence]\nkind = "kahadb"'
wait_port "$P"
echo "| kahadb alone | $(rate "$P" 1) | $(rate "$P" 8) |"

for sync in quorum_disk quorum_mem; do
  PORTS=()
  for i in 0 1 2; do
    SP=$(port); RP=$(port); PORTS+=("$SP")
    start "$sync-b$i" "$SP" "[persistence]
kind = \"replicated\"
[persistence.replicated]
local = \"kahadb\"
replicas = 3
bind = \"tcp://127.0.0.1:$RP\"
zk_address = \"127.0.0.1:$ZK_PORT\"
zk_path = \"/bench/$sync\"
sync = \"$sync\"
zk_session_timeout_ms = 1000"
  done
  MASTER=""
  for _ in $(seq 1 600); do
    for p in "${PORTS[@]}"; do
      if (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null; then MASTER=$p; break 2; fi
    done
    sleep 0.1
  done
  [ -n "$MASTER" ] || { echo "no master elected" >&2; exit 1; }
  # Let both slaves connect before measuring.
  sleep 2
  echo "| replicated kahadb ×3, $sync | $(rate "$MASTER" 1) | $(rate "$MASTER" 8) |"
done
