#!/bin/bash
# Throughput across a network bridge, beside the same load on one broker: 1 KiB persistent
# messages over STOMP (`broker producer`, 8 producers with a receipt per send, and `broker
# consumer` running at the same time), release builds on KahaDB (sync always).
#   bash broker/tests/network_throughput.sh      (N=20000 messages by default)
# "one broker": producer and consumer on broker A. "bridge": producer on A, consumer on B, A's
# [[network_connectors]] bridge forwarding to B on B's demand.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
if [ -z "${BROKER:-}" ]; then
  cargo build --release -q -p broker --manifest-path "$ROOT/Cargo.toml"
  BROKER="${CARGO_TARGET_DIR:-$ROOT/target}/release/broker"
fi
N=${N:-20000}
W=$(mktemp -d /tmp/network-throughput.XXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# conf NAME STOMP OPENWIRE EXTRA
conf() { cat >"$W/$1.toml" <<EOT
[broker]
name = "$1"
data_directory = "$W/$1"
[transports]
stomp = "127.0.0.1:$2"
openwire = "127.0.0.1:$3"
websocket = ""
mqtt = ""
web = ""
$4
EOT
}
wait_log() { for _ in $(seq 1 300); do grep -q "$2" "$W/$1.log" && return 0; sleep 0.1; done; echo "no '$2' in $1.log" >&2; return 1; }
# run LABEL PRODUCER_PORT CONSUMER_PORT [LOG_TO_WAIT_FOR_DEMAND]
run() {
  "$BROKER" consumer --url "tcp://127.0.0.1:$3" --destination "/queue/$1" --count "$N" >"$W/$1.out" 2>&1 &
  local pc=$!
  if [ -n "${4:-}" ]; then wait_log "$4" "demand for queue://$1"; else sleep 0.5; fi
  local start end
  start=$(date +%s.%N)
  "$BROKER" producer --url "tcp://127.0.0.1:$2" --destination "/queue/$1" --count "$N" --size 1024 --producers 8 >"$W/$1.prod" 2>&1
  wait "$pc"
  end=$(date +%s.%N)
  awk -v l="$1" -v n="$N" -v s="$start" -v e="$end" 'BEGIN { printf "%-10s %d messages in %.2f s: %.0f msgs/s end to end\n", l, n, e - s, n / (e - s) }'
  grep -h "^sent\|^received" "$W/$1.prod" "$W/$1.out" | sed 's/^/           /'
}
SA=$(port); SB=$(port); OA=$(port); OB=$(port)
conf b "$SB" "$OB" ""
conf a "$SA" "$OA" "[[network_connectors]]
uri = \"static:(tcp://127.0.0.1:$OB)\"
user_name = \"admin\"
password = \"admin\""
"$BROKER" start --config "$W/b.toml" 2>"$W/b.log" & PIDS+=($!)
wait_log b "listening for OpenWire"
"$BROKER" start --config "$W/a.toml" 2>"$W/a.log" & PIDS+=($!)
wait_log a "network bridge connected"
run onebroker "$SA" "$SA"
run bridge "$SA" "$SB" a
