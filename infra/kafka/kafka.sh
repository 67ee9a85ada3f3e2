#!/usr/bin/env bash
# Local single-node Apache Kafka 4.x (KRaft, combined broker+controller) for pit-streams.
# No Docker, no tarball: the broker's jars are resolved from Maven Central (infra/kafka/pom.xml)
# into .cache/kafka-jars once, and the broker runs as `java -cp '.cache/kafka-jars/*' kafka.Kafka`.
#
#   infra/kafka/kafka.sh start  [--port N] [--controller-port N] [--data-dir DIR] [--extra-props FILE]
#                               [--owner-pid PID]
#   infra/kafka/kafka.sh stop   [--data-dir DIR]
#   infra/kafka/kafka.sh status [--data-dir DIR]
#   infra/kafka/kafka.sh jars                   resolve the jars (no-op when infra/kafka/pom.xml is unchanged)
#   infra/kafka/kafka.sh version                print the Kafka version the jars hold
#
# Defaults: --port $KAFKA_PORT or 9092, --controller-port $KAFKA_CONTROLLER_PORT or port+1 (or any
# free port when port+1 is taken),
# --data-dir $KAFKA_DATA_DIR or <repo>/.run/kafka. --extra-props FILE is appended to the generated
# server.properties, so its keys override the template (Kafka keeps the last occurrence of a key);
# @PORT@, @CONTROLLER_PORT@ and @DATA_DIR@ in it are replaced as in the template.
# Keep a PLAINTEXT listener on --port: readiness is checked with a Metadata request on it.
# --owner-pid PID: also stop the broker when process PID exits (test sessions use it so a killed
# pytest does not leave a broker behind).
#
# Everything the broker writes stays in the data dir: server.log (log4j2), stdout.log, kafka.pid.
# Env: KAFKA_HEAP_OPTS (default -Xms256m -Xmx512m), KAFKA_JVM_OPTS, KAFKA_START_TIMEOUT (s, 120),
# KAFKA_STOP_TIMEOUT (s, 30), JAVA_HOME or JAVA, PYTHON (python3), KAFKA_JARS_DIR.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
POM=$SCRIPT_DIR/pom.xml
JARS_DIR=${KAFKA_JARS_DIR:-$REPO_ROOT/.cache/kafka-jars}
PYTHON=${PYTHON:-python3}
if [[ -n ${JAVA:-} ]]; then :
elif [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then JAVA=$JAVA_HOME/bin/java
else JAVA=java
fi
START_TIMEOUT=${KAFKA_START_TIMEOUT:-120}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
HOST=127.0.0.1

die() { echo "kafka: $*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

# ---------------------------------------------------------------- jars

kafka_version() {
  local jar
  jar=$(compgen -G "$JARS_DIR/kafka_2.13-*.jar" | head -n1) || return 1
  jar=${jar##*/kafka_2.13-}
  echo "${jar%.jar}"
}

ensure_jars() {
  local hash
  hash=$(sha256sum "$POM" | cut -d' ' -f1)
  if [[ -f $JARS_DIR/.stamp && $(<"$JARS_DIR/.stamp") == "$hash" ]] && kafka_version >/dev/null; then
    return 0
  fi
  mkdir -p "$(dirname "$JARS_DIR")"
  # Serialise concurrent resolutions (e.g. two shells running `make test`).
  exec 9>"$JARS_DIR.lock"
  flock 9
  if [[ -f $JARS_DIR/.stamp && $(<"$JARS_DIR/.stamp") == "$hash" ]] && kafka_version >/dev/null; then
    exec 9>&-; return 0
  fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed once to fetch the Kafka jars (e.g. apt-get install maven)"
  echo "kafka: resolving broker jars from Maven Central (infra/kafka/pom.xml -> ${JARS_DIR#"$REPO_ROOT"/}) ..." >&2
  local tmp=$JARS_DIR.tmp.$$ log=$JARS_DIR.mvn.log
  rm -rf "$tmp"
  if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
      -DoutputDirectory="$tmp" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -rf "$tmp"
    die "Maven could not resolve the Kafka jars (full log: $log)"
  fi
  rm -rf "$JARS_DIR"
  mv "$tmp" "$JARS_DIR"
  echo "$hash" >"$JARS_DIR/.stamp"
  exec 9>&-
  echo "kafka: $(find "$JARS_DIR" -name '*.jar' | wc -l) jars for Apache Kafka $(kafka_version) in ${JARS_DIR#"$REPO_ROOT"/}" >&2
  JARS_RESOLVED=1
}

check_java() {
  command -v "$JAVA" >/dev/null || die "java not found: Kafka 4.x needs Java 17+ (set JAVA_HOME)"
  local spec
  spec=$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  [[ ${spec%%.*} =~ ^[0-9]+$ ]] || die "cannot tell the Java version of $JAVA"
  ((${spec%%.*} >= 17)) || die "Kafka 4.x brokers need Java 17+, $JAVA is Java $spec (set JAVA_HOME)"
}

# ---------------------------------------------------------------- processes

# Alive and not a zombie.
is_alive() {
  local pid=$1 state
  [[ -r /proc/$pid/stat ]] || return 1
  state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# Prints the broker pid recorded in the data dir if that process is alive and is a Kafka broker.
running_pid() {
  local pid
  [[ -s $PID_FILE ]] || return 1
  pid=$(<"$PID_FILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  is_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
  echo "$pid"
}

port_in_use() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# show_logs FILE...: the last lines of each non-empty file, to stderr.
show_logs() {
  local f
  for f in "$@"; do
    [[ -s $f ]] || continue
    echo "---- last lines of $f" >&2
    tail -n 30 "$f" >&2
  done
}

# ---------------------------------------------------------------- commands

cmd_start() {
  mkdir -p "$DATA_DIR"
  DATA_DIR=$(cd "$DATA_DIR" && pwd)
  PID_FILE=$DATA_DIR/kafka.pid
  local pid
  if pid=$(running_pid); then
    local rport=$PORT
    [[ -s $DATA_DIR/kafka.port ]] && read -r rport _ <"$DATA_DIR/kafka.port"
    echo "Kafka already running on $HOST:$rport (pid $pid); run 'make kafka-down' first"
    return 0
  fi
  rm -f "$PID_FILE"
  [[ $PORT =~ ^[0-9]+$ && $CONTROLLER_PORT =~ ^[0-9]+$ ]] || die "ports must be numbers"
  [[ $PORT != "$CONTROLLER_PORT" ]] || die "--port and --controller-port must differ"
  if [[ $CONTROLLER_PORT_DEFAULTED == 1 ]] && port_in_use "$CONTROLLER_PORT"; then
    # port+1 is taken: any free loopback port will do for the internal controller listener.
    CONTROLLER_PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  fi
  local p
  for p in "$PORT" "$CONTROLLER_PORT"; do
    if port_in_use "$p"; then
      die "port $HOST:$p is already in use by another process (another broker? see 'make kafka-down', or pick --port/--controller-port)"
    fi
  done
  if [[ -n $EXTRA_PROPS ]]; then
    [[ -r $EXTRA_PROPS ]] || die "--extra-props: cannot read $EXTRA_PROPS"
  fi
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found (needed for the readiness probe)"
  ensure_jars
  check_java
  local version t0 cp="$JARS_DIR/*"  # the JVM expands the classpath wildcard
  version=$(kafka_version)
  t0=$(now_ms)
  # server.log keeps earlier runs; remember where this one starts.
  local log_start=0
  [[ -f $DATA_DIR/server.log ]] && log_start=$(wc -l <"$DATA_DIR/server.log")

  # server.properties = template + extra props (last occurrence of a key wins in Kafka).
  local props=$DATA_DIR/server.properties
  local subst=(-e "s|@NODE_ID@|1|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" -e "s|@PORT@|$PORT|g"
               -e "s|@DATA_DIR@|$DATA_DIR|g")
  sed "${subst[@]}" "$SCRIPT_DIR/server.properties.template" >"$props.tmp"
  if [[ -n $EXTRA_PROPS ]]; then
    # The same @PORT@/@CONTROLLER_PORT@/@DATA_DIR@ placeholders work in the extra props.
    { printf '\n############################# Extra props: %s\n' "$EXTRA_PROPS"; sed "${subst[@]}" "$EXTRA_PROPS"; echo; } >>"$props.tmp"
  fi
  mv "$props.tmp" "$props"
  echo "$PORT $CONTROLLER_PORT" >"$DATA_DIR/kafka.port"

  local log_opts=(-Dkafka.logs.dir="$DATA_DIR" -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.properties")

  # Format the storage once per data dir (and again only if log.dirs changed).
  if [[ ! -s $DATA_DIR/cluster.id ]]; then
    # What `StorageTool random-uuid` prints (a random UUID, base64url without padding, not
    # starting with '-'), minus a JVM start; `format -t` validates it.
    "$PYTHON" -c 'import base64, uuid
while (u := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"): pass
print(u)' >"$DATA_DIR/cluster.id.tmp"
    mv "$DATA_DIR/cluster.id.tmp" "$DATA_DIR/cluster.id"
  fi
  local cluster_id log_dirs
  cluster_id=$(tr -d '[:space:]' <"$DATA_DIR/cluster.id")
  log_dirs=$(grep -E '^[[:space:]]*log\.dirs[[:space:]]*=' "$props" | tail -n1)
  if [[ ! -f $DATA_DIR/formatted || $(<"$DATA_DIR/formatted") != "$cluster_id $log_dirs" ]]; then
    # Static quorum (controller.quorum.voters), so no --standalone/--initial-controllers.
    if ! "$JAVA" -Xmx128m -cp "$cp" "${log_opts[@]}" kafka.tools.StorageTool format \
        -t "$cluster_id" -c "$props" --ignore-formatted >"$DATA_DIR/format.log" 2>&1; then
      show_logs "$DATA_DIR/format.log"
      die "formatting the storage in $DATA_DIR failed"
    fi
    echo "$cluster_id $log_dirs" >"$DATA_DIR/formatted"
  fi

  # shellcheck disable=SC2206  # word splitting of the option strings is intended
  local heap=(${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m})
  # shellcheck disable=SC2206
  local jvm=(${KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true})
  # Detached (own session, no terminal): survives the calling shell, quiet, logs in the data dir.
  (
    cd "$DATA_DIR"
    exec setsid "$JAVA" "${heap[@]}" "${jvm[@]}" "${log_opts[@]}" -cp "$cp" kafka.Kafka "$props" \
      >"$DATA_DIR/stdout.log" 2>&1 </dev/null
  ) &
  pid=$!
  echo "$pid" >"$PID_FILE"

  if [[ -n $OWNER_PID ]]; then
    # Watchdog: stop the broker once the owner process is gone.
    # shellcheck disable=SC2016  # $1..$3 are the inner script's arguments
    setsid bash -c '
      while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
      if kill -0 "$2" 2>/dev/null; then
        kill -TERM "$2" 2>/dev/null
        for _ in $(seq 1 "$3"); do kill -0 "$2" 2>/dev/null || exit 0; sleep 1; done
        kill -KILL "$2" 2>/dev/null
      fi' _ "$OWNER_PID" "$pid" "$STOP_TIMEOUT" >/dev/null 2>&1 </dev/null &
  fi

  local rc=0 out
  out=$("$PYTHON" "$SCRIPT_DIR/probe.py" "$HOST:$PORT" --wait "$START_TIMEOUT" --pid "$pid" 2>&1) || rc=$?
  if ((rc == 0)); then
    local ms=$(($(now_ms) - t0))
    printf 'kafka: started Apache Kafka %s (KRaft) on %s:%s, pid %s, in %d.%ds (data dir %s)\n' \
      "$version" "$HOST" "$PORT" "$pid" $((ms / 1000)) $((ms % 1000 / 100)) "$DATA_DIR"
    return 0
  fi
  if ((rc == 2)); then
    echo "kafka: the broker (pid $pid) exited during startup" >&2
  else
    echo "kafka: the broker (pid $pid) did not answer a metadata request on $HOST:$PORT within ${START_TIMEOUT}s: $out" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
  show_logs "$DATA_DIR/stdout.log" "$DATA_DIR/server.log"
  local errors
  errors=$(tail -n "+$((log_start + 1))" "$DATA_DIR/server.log" 2>/dev/null | grep -E '^\[[^]]*\] (ERROR|FATAL) ' | head -n 5 | cut -c1-400) || true
  if [[ -n $errors ]]; then
    echo "---- first ERROR lines of this start in $DATA_DIR/server.log" >&2
    echo "$errors" >&2
  fi
  die "start failed (logs in $DATA_DIR)"
}

cmd_stop() {
  PID_FILE=$DATA_DIR/kafka.pid
  local pid
  if ! pid=$(running_pid); then
    rm -f "$PID_FILE"
    echo "Kafka is not running (data dir $DATA_DIR)"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$(($(now_ms) + STOP_TIMEOUT * 1000))
  while is_alive "$pid" && (($(now_ms) < deadline)); do sleep 0.1; done
  if is_alive "$pid"; then
    echo "kafka: pid $pid still running after ${STOP_TIMEOUT}s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    while is_alive "$pid"; do sleep 0.1; done
  fi
  rm -f "$PID_FILE"
  echo "kafka: stopped (pid $pid)"
}

cmd_status() {
  PID_FILE=$DATA_DIR/kafka.pid
  local pid rport=$PORT
  if ! pid=$(running_pid); then
    echo "Kafka is not running (data dir $DATA_DIR)"
    return 3
  fi
  [[ -s $DATA_DIR/kafka.port ]] && read -r rport _ <"$DATA_DIR/kafka.port"
  local out
  if out=$("$PYTHON" "$SCRIPT_DIR/probe.py" "$HOST:$rport" 2>&1); then
    echo "Kafka $(kafka_version || echo '?') running on $HOST:$rport (pid $pid), answering metadata requests ($out)"
  else
    echo "Kafka running on $HOST:$rport (pid $pid) but not answering: $out"
  fi
}

# ---------------------------------------------------------------- main

CMD=${1:-}
[[ $# -gt 0 ]] && shift
PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-}
DATA_DIR=${KAFKA_DATA_DIR:-$REPO_ROOT/.run/kafka}
EXTRA_PROPS=""
OWNER_PID=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --port) PORT=${2:?--port needs a value}; shift 2 ;;
    --port=*) PORT=${1#*=}; shift ;;
    --controller-port) CONTROLLER_PORT=${2:?--controller-port needs a value}; shift 2 ;;
    --controller-port=*) CONTROLLER_PORT=${1#*=}; shift ;;
    --data-dir) DATA_DIR=${2:?--data-dir needs a value}; shift 2 ;;
    --data-dir=*) DATA_DIR=${1#*=}; shift ;;
    --extra-props) EXTRA_PROPS=${2:?--extra-props needs a file}; shift 2 ;;
    --extra-props=*) EXTRA_PROPS=${1#*=}; shift ;;
    --owner-pid) OWNER_PID=${2:?--owner-pid needs a pid}; shift 2 ;;
    --owner-pid=*) OWNER_PID=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done
[[ $PORT =~ ^[0-9]+$ ]] || die "--port must be a number, got '$PORT'"
CONTROLLER_PORT_DEFAULTED=0
if [[ -z $CONTROLLER_PORT ]]; then CONTROLLER_PORT=$((PORT + 1)); CONTROLLER_PORT_DEFAULTED=1; fi
if [[ -n $EXTRA_PROPS ]]; then EXTRA_PROPS=$(cd "$(dirname "$EXTRA_PROPS")" && pwd)/$(basename "$EXTRA_PROPS"); fi
[[ -d $DATA_DIR ]] && DATA_DIR=$(cd "$DATA_DIR" && pwd)
PID_FILE=$DATA_DIR/kafka.pid

case $CMD in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  jars)
    JARS_RESOLVED=0
    ensure_jars
    ((JARS_RESOLVED)) || echo "kafka: jars for Apache Kafka $(kafka_version) in ${JARS_DIR#"$REPO_ROOT"/} (up to date)"
    ;;
  version) ensure_jars; kafka_version ;;
  -h|--help|help) usage ;;
  "") usage >&2; exit 2 ;;
  *) usage >&2; die "unknown command: $CMD" ;;
esac
