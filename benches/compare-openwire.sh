#!/usr/bin/env bash
# Side by side over OpenWire: Debian's ActiveMQ (5.17, KahaDB) and this broker (KahaDB, fsync
# on every write), driven by the same JMS load generator (benches/java/JmsLoad.java, the stock
# ActiveMQ 5.17 Java client from Debian's libactivemq-java) in one run, on this machine. Every
# message is a 1 KiB persistent BytesMessage.
#
#   bash benches/compare-openwire.sh
#   COUNT=20000 ROUNDS=3 bash benches/compare-openwire.sh          # the defaults
#
# Rows: 1 and 8 producers with synchronous sends (the client's default for persistent messages
# outside a transaction: each send waits for the broker's response); 1 producer in transacted
# batches of 100; one consumer draining COUNT with auto, client and individual acks; a topic
# with 4 durable subscribers (publish rate, and the seconds until all four have everything).
# Each row gives the CPU seconds of the client and of the broker too. Rows run ROUNDS times,
# ActiveMQ and this broker taking turns within each round; each cell is the median.
# Writes the Markdown table to target/compare-openwire/report.md.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
COUNT="${COUNT:-20000}"
ROUNDS="${ROUNDS:-3}"
AMQ_PORT="${AMQ_PORT:-61626}"
RUST_PORT="${RUST_PORT:-61636}"
WEB_PORT="${WEB_PORT:-61637}"
OUT="$ROOT/target/compare-openwire"
WORK="$(mktemp -d /tmp/compare-openwire.XXXXXX)"
mkdir -p "$OUT"

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! dpkg -s activemq libactivemq-java >/dev/null 2>&1 || ! command -v javac >/dev/null; then
  echo "installing Debian's activemq, libactivemq-java and a JDK..." >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq activemq libactivemq-java default-jdk-headless >/dev/null
fi
AMQ_JAR=/usr/share/activemq/bin/activemq.jar
AMQ_VERSION="$(dpkg-query -W -f='${Version}' activemq)"
CP="$(printf '/usr/share/java/%s:' activemq-client.jar geronimo-jms_1.1_spec.jar \
  geronimo-j2ee-management-1.1-spec.jar hawtbuf.jar slf4j-api.jar slf4j-nop.jar)$WORK/classes"
mkdir -p "$WORK/classes"
javac -d "$WORK/classes" -cp "$CP" "$ROOT/benches/java/JmsLoad.java"

echo "building the broker (release)..." >&2
cargo build --release -q -p broker --manifest-path "$ROOT/Cargo.toml"
BROKER="${CARGO_TARGET_DIR:-$ROOT/target}/release/broker"

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

# ActiveMQ: its KahaDB defaults, an OpenWire connector, no JMX, its default heap.
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
      <transportConnector name="openwire" uri="tcp://127.0.0.1:$AMQ_PORT"/>
    </transportConnectors>
  </broker>
</beans>
EOF
java -Xms64M -Xmx1G -Dactivemq.base="$WORK/amq" -Dactivemq.home=/usr/share/activemq \
  -Dactivemq.conf="$WORK/amq/conf" -Dactivemq.data="$WORK/amq/data" \
  -jar "$AMQ_JAR" start "xbean:file:$WORK/amq/conf/activemq.xml" >"$WORK/amq.log" 2>&1 &
PIDS+=($!)
AMQ_PID=$!

# This broker: the embedded default (KahaDB, sync always) with users, OpenWire on its own port.
cat >"$WORK/broker.toml" <<EOF
[broker]
data_directory = "$WORK/rust-data"
[transports]
openwire = "127.0.0.1:$RUST_PORT"
stomp = ""
websocket = ""
web = "127.0.0.1:$WEB_PORT"
EOF
"$BROKER" start --config "$WORK/broker.toml" 2>"$WORK/rust.log" &
PIDS+=($!)
RUST_PID=$!

wait_port "$AMQ_PORT"
wait_port "$RUST_PORT"

cpu_of() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
load() { java -Xmx512M -cp "$CP" JmsLoad "$@"; }
export CP
export -f load

declare -A R
# row KEY PID ARGS...: runs the load generator, records msgs/s (and all_s), client and broker CPU.
row() {
  local key=$1 pid=$2; shift 2
  local b0 b1 out rate all ccpu bcpu
  b0=$(cpu_of "$pid")
  out="$( { /usr/bin/time -f 'CLIENTCPU %U %S' bash -c 'load "$@"' _ "$@"; } 2>&1 )" || {
    echo "$key failed: $out" >&2; return 1; }
  b1=$(cpu_of "$pid")
  rate="$(echo "$out" | grep '^RESULT' | sed -E 's/.*msgs_per_sec=([0-9.]+).*/\1/')"
  all="$(echo "$out" | grep '^RESULT' | grep -o 'all_s=[0-9.]*' | cut -d= -f2 || true)"
  ccpu="$(echo "$out" | awk '/^CLIENTCPU/ { printf "%.2f", $2 + $3 }')"
  bcpu="$(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.2f", b - a }')"
  R[$key]+=" $rate"; R[$key.ccpu]+=" $ccpu"; R[$key.bcpu]+=" $bcpu"
  [ -n "$all" ] && R[$key.all]+=" $all"
  echo "$key: $rate msgs/s${all:+, all after $all s}, client $ccpu s, broker $bcpu s CPU" >&2
}

for round in $(seq 1 "$ROUNDS"); do
for target in activemq rust; do
  port=$AMQ_PORT; pid=$AMQ_PID
  if [ "$target" = rust ]; then port=$RUST_PORT; pid=$RUST_PID; fi
  url="tcp://127.0.0.1:$port"
  echo "== $target, round $round of $ROUNDS" >&2
  row "$target.p1" "$pid" produce "$url" cmp.auto $((COUNT / 4)) producers=1
  row "$target.p8" "$pid" produce "$url" cmp.client "$COUNT" producers=8
  row "$target.tx" "$pid" produce "$url" cmp.indiv "$COUNT" tx_batch=100
  # Top the queues up to COUNT for the drains (the 1-producer row sent a quarter).
  load produce "$url" cmp.auto $((COUNT - COUNT / 4)) producers=8 >/dev/null
  row "$target.dauto" "$pid" consume "$url" cmp.auto "$COUNT" ack=auto
  row "$target.dclient" "$pid" consume "$url" cmp.client "$COUNT" ack=client
  row "$target.dindiv" "$pid" consume "$url" cmp.indiv "$COUNT" ack=individual
  row "$target.topic" "$pid" topic "$url" cmp.t $((COUNT / 4)) subscribers=4
done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'; }
for k in "${!R[@]}"; do R[$k]="$(median "${R[$k]}")"; done
line() { # label key
  echo "| $1 | ${R[activemq.$2]} | ${R[rust.$2]} | $(ratio "${R[rust.$2]}" "${R[activemq.$2]}") | ${R[activemq.$2.ccpu]} / ${R[activemq.$2.bcpu]} | ${R[rust.$2.ccpu]} / ${R[rust.$2.bcpu]} |"
}
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
{
  echo "Side by side on $(nproc) cores ($CPU), $(date -u +%Y-%m-%d); ActiveMQ $AMQ_VERSION"
  echo "(Debian package, KahaDB defaults, -Xmx1G) vs this broker (KahaDB, fsync on every write),"
  echo "both over OpenWire with the ActiveMQ 5.17 JMS client, 1 KiB persistent BytesMessages; one run"
  echo "of \`benches/compare-openwire.sh\` (COUNT=$COUNT ROUNDS=$ROUNDS): each cell the median of"
  echo "$ROUNDS rounds, the two brokers taking turns. CPU columns: seconds used by the client / by the broker."
  echo
  echo "| workload | ActiveMQ msgs/s | this broker msgs/s | ratio | CPU s ActiveMQ row | CPU s this row |"
  echo "|---|---:|---:|---:|---:|---:|"
  line "1 producer, synchronous sends ($((COUNT / 4)))" p1
  line "8 producers, synchronous sends" p8
  line "1 producer, transacted batches of 100" tx
  line "drain, AUTO_ACKNOWLEDGE" dauto
  line "drain, CLIENT_ACKNOWLEDGE (acknowledge() per message)" dclient
  line "drain, INDIVIDUAL_ACKNOWLEDGE" dindiv
  line "topic, 4 durable subscribers: publish ($((COUNT / 4)))" topic
  echo "| topic, 4 durable subscribers: s until all have all (lower is better) | ${R[activemq.topic.all]} | ${R[rust.topic.all]} | $(ratio "${R[activemq.topic.all]}" "${R[rust.topic.all]}") | | |"
} | tee "$OUT/report.md"
