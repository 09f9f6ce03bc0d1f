#!/usr/bin/env bash
# Side by side: Debian's ActiveMQ (5.17, KahaDB) and this broker (KahaDB), driven over STOMP by
# the same load generator (`broker producer` / `broker consumer`) in one run, on this machine.
#
#   bash benches/compare-activemq.sh            # counts: 5000 / 20000 / 20000
#   COUNT1=2000 COUNT8=8000 DRAIN=20000 bash benches/compare-activemq.sh
#
# Workloads (1 KiB persistent messages, each send waits for its receipt):
#   1 producer; 8 producers; a consumer draining 20,000 queued messages (auto ack).
# Prints a Markdown table with the ratio and writes it to target/compare-activemq/report.md.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
COUNT1="${COUNT1:-5000}"
COUNT8="${COUNT8:-20000}"
DRAIN="${DRAIN:-20000}"
AMQ_PORT="${AMQ_PORT:-61623}"
RUST_PORT="${RUST_PORT:-61633}"
OUT="$ROOT/target/compare-activemq"
WORK="$(mktemp -d /tmp/compare-activemq.XXXXXX)"
mkdir -p "$OUT"

if ! dpkg -s activemq >/dev/null 2>&1; then
  echo "installing Debian's activemq package..." >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq activemq >/dev/null
fi
AMQ_JAR=/usr/share/activemq/bin/activemq.jar
AMQ_VERSION="$(dpkg-query -W -f='${Version}' activemq)"

echo "building the broker (release)..." >&2
cargo build --release -q -p broker --manifest-path "$ROOT/Cargo.toml"
BROKER="$ROOT/target/release/broker"

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 120); do
    if (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  echo "nothing listens on port $1" >&2
  return 1
}

# ActiveMQ: its KahaDB defaults, a STOMP connector, no JMX.
mkdir -p "$WORK/amq/conf" "$WORK/amq/data"
cat >"$WORK/amq/conf/activemq.xml" <<EOF
<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="compare"
          dataDirectory="$WORK/amq/data">
    <persistenceAdapter><kahaDB directory="$WORK/amq/data/kahadb"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:$AMQ_PORT"/>
    </transportConnectors>
  </broker>
</beans>
EOF
java -Xms512M -Xmx512M -Dactivemq.base="$WORK/amq" -Dactivemq.home=/usr/share/activemq \
  -Dactivemq.conf="$WORK/amq/conf" -Dactivemq.data="$WORK/amq/data" \
  -jar "$AMQ_JAR" start "xbean:file:$WORK/amq/conf/activemq.xml" >"$WORK/amq.log" 2>&1 &
PIDS+=($!)

# This broker: the embedded default (KahaDB, sync always), on its own port.
cat >"$WORK/broker.toml" <<EOF
[broker]
data_directory = "$WORK/rust-data"
[transports]
stomp = "127.0.0.1:$RUST_PORT"
web = ""
EOF
"$BROKER" start --config "$WORK/broker.toml" 2>"$WORK/rust.log" &
PIDS+=($!)

wait_port "$AMQ_PORT"
wait_port "$RUST_PORT"

result() { grep '^RESULT' | sed -E "s/.*$1=([0-9.]+).*/\1/"; }

run_producer() { # port destination count producers
  "$BROKER" producer --url "tcp://127.0.0.1:$1" --destination "$2" --count "$3" --producers "$4" \
    --size 1024 --persistent true
}

declare -A R
for target in activemq rust; do
  port=$AMQ_PORT; [ "$target" = rust ] && port=$RUST_PORT
  echo "== $target" >&2
  out1="$(run_producer "$port" /queue/cmp.one "$COUNT1" 1)"; echo "$out1" | head -1 >&2
  out8="$(run_producer "$port" /queue/cmp.eight "$COUNT8" 8)"; echo "$out8" | head -1 >&2
  R[$target.p1]="$(echo "$out1" | result msgs_per_sec)"
  R[$target.p1_p99]="$(echo "$out1" | result p99_ms)"
  R[$target.p8]="$(echo "$out8" | result msgs_per_sec)"
  R[$target.p8_p99]="$(echo "$out8" | result p99_ms)"
  run_producer "$port" /queue/cmp.drain "$DRAIN" 8 >/dev/null
  outc="$("$BROKER" consumer --url "tcp://127.0.0.1:$port" --destination /queue/cmp.drain \
    --count "$DRAIN" --idle-secs 30 2>&1)"; echo "$outc" | grep received >&2 || true
  R[$target.drain]="$(echo "$outc" | result msgs_per_sec)"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'; }
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
{
  echo "Side by side on $(nproc) cores ($CPU), $(date -u +%Y-%m-%d); ActiveMQ $AMQ_VERSION"
  echo "(Debian package, KahaDB defaults) vs this broker (KahaDB, sync always), both over STOMP,"
  echo "1 KiB persistent messages, each send waiting for its receipt; one run of"
  echo "\`benches/compare-activemq.sh\` (COUNT1=$COUNT1 COUNT8=$COUNT8 DRAIN=$DRAIN)."
  echo
  echo "| workload | ActiveMQ msgs/s | this broker msgs/s | ratio | p99 send ms (ActiveMQ / this) |"
  echo "|---|---:|---:|---:|---:|"
  echo "| 1 producer | ${R[activemq.p1]} | ${R[rust.p1]} | $(ratio "${R[rust.p1]}" "${R[activemq.p1]}") | ${R[activemq.p1_p99]} / ${R[rust.p1_p99]} |"
  echo "| 8 producers | ${R[activemq.p8]} | ${R[rust.p8]} | $(ratio "${R[rust.p8]}" "${R[activemq.p8]}") | ${R[activemq.p8_p99]} / ${R[rust.p8_p99]} |"
  echo "| consumer draining $DRAIN | ${R[activemq.drain]} | ${R[rust.drain]} | $(ratio "${R[rust.drain]}" "${R[activemq.drain]}") | |"
} | tee "$OUT/report.md"
