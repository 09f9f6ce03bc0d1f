#!/usr/bin/env bash
# The single-client rows against this broker alone (release build, KahaDB, a fresh data
# directory): COUNT QoS 1 MQTT publishes each waiting for its PUBACK (benches/examples/mqtt_load.rs),
# then COUNT STOMP sends each waiting for its receipt, with the broker's CPU (user and all) and
# voluntary context switches for each. With one client every message waits for its own fsync,
# so compare with `python3 benches/disk-probe.py` run just before.
#
#   bash benches/probe-single-client.sh            # COUNT=10000
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BROKER="$TARGET/release/broker"
MQTT_LOAD="$TARGET/release/examples/mqtt_load"
COUNT="${COUNT:-10000}"
MQTT_PORT=61648
STOMP_PORT=61649
WORK="$(mktemp -d /tmp/probe-single.XXXXXX)"
cleanup() {
  if [ -n "${BP:-}" ]; then kill "$BP" 2>/dev/null || true; wait "$BP" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
cargo build --release -q -p broker --manifest-path "$ROOT/Cargo.toml"
cargo build --release -q -p benches --example mqtt_load --manifest-path "$ROOT/Cargo.toml"
cat >"$WORK/broker.toml" <<T
[broker]
data_directory = "$WORK/data"
[transports]
stomp = "127.0.0.1:$STOMP_PORT"
mqtt = "127.0.0.1:$MQTT_PORT"
openwire = ""
websocket = ""
web = ""
T
"$BROKER" start --config "$WORK/broker.toml" 2>"$WORK/broker.log" &
BP=$!
for _ in $(seq 1 60); do (echo >/dev/tcp/127.0.0.1/$MQTT_PORT) 2>/dev/null && break; sleep 0.5; done
cpu() { awk -v t="$(getconf CLK_TCK)" -v f="$2" '{ printf "%.2f", (f == "user" ? $14 : $14 + $15) / t }' "/proc/$1/stat"; }
switches() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt/ { s += $2 } END { print s }'; }
"$MQTT_LOAD" "127.0.0.1:$MQTT_PORT" 500 1 >/dev/null 2>&1
for what in mqtt stomp; do
  c0=$(cpu $BP all); u0=$(cpu $BP user); s0=$(switches $BP)
  if [ "$what" = mqtt ]; then
    "$MQTT_LOAD" "127.0.0.1:$MQTT_PORT" "$COUNT" 1 2>&1 | grep RESULT
  else
    "$BROKER" producer --url "tcp://127.0.0.1:$STOMP_PORT" --destination /queue/probe \
      --count "$COUNT" --receipts every 2>&1 | grep RESULT
  fi
  c1=$(cpu $BP all); u1=$(cpu $BP user); s1=$(switches $BP)
  echo "$what: broker CPU $(echo "$c1 - $c0" | bc) s (user $(echo "$u1 - $u0" | bc) s), voluntary context switches $((s1 - s0))"
done
