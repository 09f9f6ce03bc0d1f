#!/usr/bin/env bash
# One OpenWire workload against this broker alone (release build, KahaDB, a fresh data
# directory), with the broker's CPU (user and all), voluntary context switches and, with
# PERF=1, a `perf record` of the broker (target/probe/perf.data) or, with PERF=2, its syscall
# counts (fdatasync, pwrite, sendto, recvfrom, epoll_wait, futex; target/probe/stat.txt).
# What found the acks' fsyncs on the topic row and measured `ack_sync_delay_ms`.
#
#   bash benches/probe-openwire.sh                       # JmsLoad topic 5000 subscribers=4
#   ROW="produce tcp://127.0.0.1:61646 p 10000 producers=1" bash benches/probe-openwire.sh
#   EXTRA=$'[persistence.kahadb]\nack_sync_delay_ms = 0' bash benches/probe-openwire.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BROKER="${CARGO_TARGET_DIR:-$ROOT/target}/release/broker"
OUT="$ROOT/target/probe"
PORT=61646
WORK="$(mktemp -d /tmp/probe-openwire.XXXXXX)"
mkdir -p "$OUT" "$WORK/classes"
cleanup() {
  if [ -n "${BP:-}" ]; then kill "$BP" 2>/dev/null || true; wait "$BP" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
CP="$(printf '/usr/share/java/%s:' activemq-client.jar geronimo-jms_1.1_spec.jar \
  geronimo-j2ee-management-1.1-spec.jar hawtbuf.jar slf4j-api.jar slf4j-nop.jar)$WORK/classes"
javac -d "$WORK/classes" -cp "$CP" "$ROOT/benches/java/JmsLoad.java"
cargo build --release -q -p broker --manifest-path "$ROOT/Cargo.toml"
cat >"$WORK/broker.toml" <<T
[broker]
data_directory = "$WORK/data"
[transports]
openwire = "127.0.0.1:$PORT"
stomp = ""
websocket = ""
mqtt = ""
web = ""
${EXTRA:-}
T
"$BROKER" start --config "$WORK/broker.toml" 2>"$WORK/broker.log" &
BP=$!
for _ in $(seq 1 60); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.5; done
cpu() { awk -v t="$(getconf CLK_TCK)" -v f="$2" '{ printf "%.2f", (f == "user" ? $14 : $14 + $15) / t }' "/proc/$1/stat"; }
switches() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt/ { s += $2 } END { print s }'; }
java -cp "$CP" JmsLoad topic "tcp://127.0.0.1:$PORT" warm.t 500 subscribers=4 >/dev/null
c0=$(cpu $BP all); u0=$(cpu $BP user); s0=$(switches $BP)
case "${PERF:-0}" in
  1) perf record -F 999 -g -p $BP -o "$OUT/perf.data" 2>/dev/null & PP=$!; sleep 0.5 ;;
  2) perf stat -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_pwrite64,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex \
       -p $BP -o "$OUT/stat.txt" & PP=$!; sleep 0.5 ;;
esac
# shellcheck disable=SC2086 # ROW is a JmsLoad argument list
java -cp "$CP" JmsLoad ${ROW:-topic tcp://127.0.0.1:$PORT t 5000 subscribers=4}
c1=$(cpu $BP all); u1=$(cpu $BP user); s1=$(switches $BP)
if [ "${PERF:-0}" != 0 ]; then kill -INT "$PP"; wait "$PP" || true; echo "perf output in $OUT"; fi
echo "broker CPU $(echo "$c1 - $c0" | bc) s (user $(echo "$u1 - $u0" | bc) s), voluntary context switches $((s1 - s0))"
