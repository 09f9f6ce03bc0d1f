#!/usr/bin/env bash
# Side by side: Debian's ActiveMQ (5.17, KahaDB) and this broker (KahaDB, fsync on every
# write), driven over STOMP by the same load generator (`broker producer` / `broker consumer`)
# in one run, on this machine. Every message is 1 KiB and persistent.
#
#   bash benches/compare-activemq.sh
#   COUNT=20000 BIG=1000000 bash benches/compare-activemq.sh     # the defaults
#   BIG=0 bash benches/compare-activemq.sh                        # without the memory row
#   ROUNDS=3 bash benches/compare-activemq.sh                     # the default: medians of 3
#   MQTT=0 bash benches/compare-activemq.sh                       # without the MQTT rows
#   MQTT_ONLY=1 BIG=0 bash benches/compare-activemq.sh            # only the MQTT rows
#
# Rows: sends each waiting for its receipt (1, 8, 32 producers); MQTT QoS 1 publishes each
# waiting for its PUBACK (1 and 8 clients, `benches/examples/mqtt_load.rs`, with a durable
# QoS 1 subscriber registered so that the messages are stored); sends without receipts but
# the last of each producer (1, 8); one consumer draining COUNT queued messages with auto,
# client and client-individual acks (an ACK frame per message); a topic with 4 durable
# subscribers (publish rate, and the time until all four have everything); resident memory of
# the broker process with BIG messages queued. Each row also gives the CPU seconds the client
# and the broker used, so that a client-bound figure shows. For this broker the journal's fsync
# count per message of the unreceipted single producer is printed too. The rows run ROUNDS
# times, ActiveMQ and this broker taking turns within each round so that both see the same disk
# and machine; each cell is the median of the rounds (a single run of a fsync-bound row moves by
# a fifth from one run to the next on this VM's disk).
# Writes the Markdown table to target/compare-activemq/report.md.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
COUNT="${COUNT:-20000}"
BIG="${BIG:-1000000}"
ROUNDS="${ROUNDS:-3}"
WEB_PORT="${WEB_PORT:-61634}"
AMQ_PORT="${AMQ_PORT:-61623}"
RUST_PORT="${RUST_PORT:-61633}"
AMQ_MQTT_PORT="${AMQ_MQTT_PORT:-61625}"
RUST_MQTT_PORT="${RUST_MQTT_PORT:-61635}"
OUT="$ROOT/target/compare-activemq"
WORK="$(mktemp -d /tmp/compare-activemq.XXXXXX)"
mkdir -p "$OUT"

if ! dpkg -s activemq >/dev/null 2>&1; then
  echo "installing Debian's activemq package..." >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq activemq >/dev/null
fi
# Debian's activemq ships activemq-mqtt.jar but not the FuseSource MQTT codec it needs
# (org.fusesource.mqtt.codec): without it ActiveMQ's MQTT connector accepts connections and
# never answers a CONNECT. Debian packages the codec as libmqtt-client-java; it goes into
# this run's own lib directory (activemq.base/lib), never into the system's.
if [ "${MQTT:-1}" = 1 ] || [ "${MQTT_ONLY:-0}" = 1 ]; then
  if [ ! -e /usr/share/java/mqtt-client.jar ]; then
    echo "installing Debian's libmqtt-client-java (ActiveMQ's MQTT codec)..." >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libmqtt-client-java >/dev/null
  fi
fi
AMQ_JAR=/usr/share/activemq/bin/activemq.jar
AMQ_VERSION="$(dpkg-query -W -f='${Version}' activemq)"

echo "building the broker (release)..." >&2
cargo build --release -q -p broker --manifest-path "$ROOT/Cargo.toml"
BROKER="${CARGO_TARGET_DIR:-$ROOT/target}/release/broker"
cargo build --release -q -p benches --example mqtt_load --manifest-path "$ROOT/Cargo.toml"
MQTT_LOAD="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/mqtt_load"

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

# ActiveMQ: its KahaDB defaults, a STOMP and an MQTT connector, no JMX.
mkdir -p "$WORK/amq/conf" "$WORK/amq/data" "$WORK/amq/lib"
[ -e /usr/share/java/mqtt-client.jar ] && ln -s /usr/share/java/mqtt-client.jar "$WORK/amq/lib/"
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
      <transportConnector name="mqtt" uri="mqtt://127.0.0.1:$AMQ_MQTT_PORT"/>
    </transportConnectors>
  </broker>
</beans>
EOF
# ActiveMQ's own default heap (bin/env: ACTIVEMQ_OPTS_MEMORY).
java -Xms64M -Xmx1G -Dactivemq.base="$WORK/amq" -Dactivemq.home=/usr/share/activemq \
  -Dactivemq.conf="$WORK/amq/conf" -Dactivemq.data="$WORK/amq/data" \
  -jar "$AMQ_JAR" start "xbean:file:$WORK/amq/conf/activemq.xml" >"$WORK/amq.log" 2>&1 &
PIDS+=($!)
AMQ_PID=$!

# This broker: the embedded default (KahaDB, sync always), on its own port.
cat >"$WORK/broker.toml" <<EOF
[broker]
data_directory = "$WORK/rust-data"
[transports]
stomp = "127.0.0.1:$RUST_PORT"
# Only STOMP and MQTT are compared: the other doors stay closed.
mqtt = "127.0.0.1:$RUST_MQTT_PORT"
openwire = ""
websocket = ""
web = "127.0.0.1:$WEB_PORT"
EOF
"$BROKER" start --config "$WORK/broker.toml" 2>"$WORK/rust.log" &
PIDS+=($!)
RUST_PID=$!

wait_port "$AMQ_PORT"
wait_port "$RUST_PORT"
wait_port "$AMQ_MQTT_PORT"
wait_port "$RUST_MQTT_PORT"

result() { grep '^RESULT' | sed -E "s/.*$1=([0-9.]+).*/\1/"; }

run_producer() { # port destination count producers
  "$BROKER" producer --url "tcp://127.0.0.1:$1" --destination "$2" --count "$3" --producers "$4" \
    --size 1024 --persistent true
}


# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
rss_mib() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
fsyncs() {
  curl -s -u admin:admin "http://127.0.0.1:$WEB_PORT/metrics" | awk '/^broker_store_journal_fsyncs / { print $2 }'
}

declare -A R
# row KEY PID COMMAND...: runs COMMAND (a client), records msgs/s, client and broker CPU.
row() {
  local key=$1 pid=$2; shift 2
  local b0 b1 out
  b0=$(cpu_of "$pid")
  out="$( { /usr/bin/time -f 'CLIENTCPU %U %S' bash -c '"$@"' _ "$@"; } 2>&1 )"
  b1=$(cpu_of "$pid")
  local rate ccpu bcpu
  rate="$(echo "$out" | grep '^RESULT' | sed -E 's/.*msgs_per_sec=([0-9.]+).*/\1/' | head -1)"
  ccpu="$(echo "$out" | awk '/^CLIENTCPU/ { printf "%.2f", $2 + $3 }')"
  bcpu="$(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.2f", b - a }')"
  R[$key]+=" $rate"; R[$key.ccpu]+=" $ccpu"; R[$key.bcpu]+=" $bcpu"
  echo "$key: $rate msgs/s, client $ccpu s, broker $bcpu s CPU" >&2
}
# The median of a space-separated list of numbers.
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

producer() { # port destination count producers receipts
  "$BROKER" producer --url "tcp://127.0.0.1:$1" --destination "$2" --count "$3" --producers "$4" \
    --size 1024 --persistent true --receipts "$5"
}
consumer() { # port destination count ack
  "$BROKER" consumer --url "tcp://127.0.0.1:$1" --destination "$2" --count "$3" --ack "$4" --idle-secs 30
}
mqtt_load() { # port count clients
  "$MQTT_LOAD" "127.0.0.1:$1" "$2" "$3"
}
export BROKER MQTT_LOAD
export -f producer consumer mqtt_load

F0=0; F1=0
for round in $(seq 1 "$ROUNDS"); do
for target in activemq rust; do
  port=$AMQ_PORT; pid=$AMQ_PID; mport=$AMQ_MQTT_PORT
  if [ "$target" = rust ]; then port=$RUST_PORT; pid=$RUST_PID; mport=$RUST_MQTT_PORT; fi
  echo "== $target, round $round of $ROUNDS" >&2
  if [ "${MQTT_ONLY:-0}" = 1 ]; then
    row "$target.m1" "$pid" mqtt_load "$mport" $((COUNT / 4)) 1
    row "$target.m8" "$pid" mqtt_load "$mport" "$COUNT" 8
    continue
  fi
  row "$target.r1" "$pid" producer "$port" /queue/cmp.r1 $((COUNT / 4)) 1 every
  row "$target.r8" "$pid" producer "$port" /queue/cmp.r8 "$COUNT" 8 every
  row "$target.r32" "$pid" producer "$port" /queue/cmp.r32 "$COUNT" 32 every
  if [ "${MQTT:-1}" = 1 ]; then
    row "$target.m1" "$pid" mqtt_load "$mport" $((COUNT / 4)) 1
    row "$target.m8" "$pid" mqtt_load "$mport" "$COUNT" 8
  fi
  [ "$target" = rust ] && F0=$(fsyncs)
  row "$target.u1" "$pid" producer "$port" /queue/cmp.auto "$COUNT" 1 last
  [ "$target" = rust ] && F1=$(fsyncs)
  row "$target.u8" "$pid" producer "$port" /queue/cmp.client "$COUNT" 8 last
  producer "$port" /queue/cmp.indiv "$COUNT" 8 last >/dev/null
  row "$target.dauto" "$pid" consumer "$port" /queue/cmp.auto "$COUNT" auto
  row "$target.dclient" "$pid" consumer "$port" /queue/cmp.client "$COUNT" client
  row "$target.dindiv" "$pid" consumer "$port" /queue/cmp.indiv "$COUNT" client-individual
  # A topic with 4 durable subscribers: they subscribe, go on receiving in the background;
  # the publisher sends COUNT/4 without receipts (the last with one).
  TOPIC_N=$((COUNT / 4))
  subs=()
  for s in 1 2 3 4; do
    "$BROKER" consumer --url "tcp://127.0.0.1:$port" --destination /topic/cmp.t --count "$TOPIC_N" \
      --client-id "cmp-$target-$s" --durable "s$s" --idle-secs 60 >"$WORK/sub-$target-$s.out" 2>&1 &
    subs+=($!)
  done
  sleep 3
  t0=$(date +%s.%N)
  row "$target.topic" "$pid" producer "$port" /topic/cmp.t "$TOPIC_N" 1 last
  for p in "${subs[@]}"; do wait "$p" || true; done
  t1=$(date +%s.%N)
  all="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
  got="$(cat "$WORK"/sub-"$target"-*.out | grep -c '^RESULT received='"$TOPIC_N"' ' || true)"
  R[$target.topic_all]+=" $all"
  echo "$target.topic: all four had ${TOPIC_N} after $all s ($got/4 complete)" >&2
done
done
for target in activemq rust; do
  port=$AMQ_PORT; pid=$AMQ_PID
  if [ "$target" = rust ]; then port=$RUST_PORT; pid=$RUST_PID; fi
  if [ "$BIG" -gt 0 ]; then
    producer "$port" /queue/cmp.big "$BIG" 8 last >/dev/null
    sleep 5
    R[$target.rss]="$(rss_mib "$pid")"
    echo "$target: resident ${R[$target.rss]} MiB with $BIG queued" >&2
  fi
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'; }
for k in "${!R[@]}"; do R[$k]="$(median "${R[$k]}")"; done
line() { # label key; a row this run did not measure (MQTT_ONLY, MQTT=0) is left out
  [ -n "${R[activemq.$2]:-}" ] || return 0
  echo "| $1 | ${R[activemq.$2]} | ${R[rust.$2]} | $(ratio "${R[rust.$2]}" "${R[activemq.$2]}") | ${R[activemq.$2.ccpu]} / ${R[activemq.$2.bcpu]} | ${R[rust.$2.ccpu]} / ${R[rust.$2.bcpu]} |"
}
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
{
  echo "Side by side on $(nproc) cores ($CPU), $(date -u +%Y-%m-%d); ActiveMQ $AMQ_VERSION"
  echo "(Debian package, KahaDB defaults, -Xmx1G) vs this broker (KahaDB, fsync on every write),"
  echo "over STOMP (MQTT QoS 1 rows: MQTT), 1 KiB persistent messages; one run of \`benches/compare-activemq.sh\`"
  echo "(COUNT=$COUNT BIG=$BIG ROUNDS=$ROUNDS): each cell the median of $ROUNDS rounds, the two"
  echo "brokers taking turns. CPU columns: seconds used by the client / by the broker."
  echo
  echo "| workload | ActiveMQ msgs/s | this broker msgs/s | ratio | CPU s ActiveMQ row | CPU s this row |"
  echo "|---|---:|---:|---:|---:|---:|"
  line "1 producer, receipt per send ($((COUNT / 4)))" r1
  line "8 producers, receipt per send" r8
  line "32 producers, receipt per send" r32
  if [ -n "${R[activemq.m1]:-}" ]; then
    line "MQTT QoS 1, 1 client, PUBACK per publish ($((COUNT / 4)))" m1
    line "MQTT QoS 1, 8 clients, PUBACK per publish" m8
  fi
  line "1 producer, no receipts but the last" u1
  line "8 producers, no receipts but the last" u8
  line "drain, ack auto" dauto
  line "drain, ack client (ACK per message)" dclient
  line "drain, ack client-individual" dindiv
  line "topic, 4 durable subscribers: publish ($((COUNT / 4)))" topic
  if [ -n "${R[activemq.topic_all]:-}" ]; then
    echo "| topic, 4 durable subscribers: s until all have all | ${R[activemq.topic_all]} | ${R[rust.topic_all]} | $(ratio "${R[activemq.topic_all]}" "${R[rust.topic_all]}") | | |"
  fi
  if [ "$BIG" -gt 0 ]; then
    echo "| resident MiB with $BIG queued (lower is better) | ${R[activemq.rss]} | ${R[rust.rss]} | $(ratio "${R[activemq.rss]}" "${R[rust.rss]}") | | |"
  fi
  if [ "${MQTT_ONLY:-0}" != 1 ]; then
    echo
    echo "This broker's journal fsyncs for the $COUNT unreceipted sends of 1 producer: $((F1 - F0))" \
      "($(awk -v f=$((F1 - F0)) -v n="$COUNT" 'BEGIN { printf "%.3f", f / n }') per message)."
  fi
} | tee "$OUT/report.md"
