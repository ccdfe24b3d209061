#!/usr/bin/env bash
# A Spark standalone cluster on 127.0.0.1: one master and two workers (1 core, 2 GiB each),
# started from the Spark that the pyspark package ships (bin/spark-class), on free ports.
#
#   scripts/cluster.sh start     # prints the master URL, e.g. spark://127.0.0.1:41234
#   scripts/cluster.sh status    # the master URL and the workers the master sees (exit 1 if down)
#   scripts/cluster.sh stop      # stops the processes it started, by their process ids
#
# State (pids, ports, logs, the workers' folders) lives in $RECSPARK_CLUSTER_DIR (default
# out/cluster/): master.url, master.json_url, <name>.pid, <name>.log, workers.ui.
# Settings: RECSPARK_CLUSTER_WORKERS (2), RECSPARK_WORKER_CORES (1), RECSPARK_WORKER_MEMORY (2g).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${RECSPARK_CLUSTER_DIR:-$repo/out/cluster}"
workers="${RECSPARK_CLUSTER_WORKERS:-2}"
cores="${RECSPARK_WORKER_CORES:-1}"
memory="${RECSPARK_WORKER_MEMORY:-2g}"
python="${PYTHON:-python3}"
host=127.0.0.1

spark_home() {
  "$python" -c 'from pyspark.find_spark_home import _find_spark_home; print(_find_spark_home())'
}

free_port() {  # a port nobody listens on now (the OS picks it)
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

master_json() {  # the master's JSON status, or nothing when it does not answer
  "$python" - "$(cat "$state/master.json_url")" <<'PY' 2>/dev/null || true
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
PY
}

alive_workers() {  # how many ALIVE workers the master lists
  master_json | "$python" -c 'import json, sys
text = sys.stdin.read()
print(sum(w["state"] == "ALIVE" for w in json.loads(text)["workers"]) if text.strip() else 0)'
}

running() {  # true when the pid file names a live process
  [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null
}

launch() {  # launch NAME CLASS ARGS...: a daemon in the background, its pid and log in $state
  local name="$1"; shift
  # A clean environment for the daemons and the executors they start: no PYTHONPATH or
  # PYSPARK_PYTHON of this shell, so jobs get their Python and library only from what
  # spark-submit ships (--py-files, --archives, spark.pyspark.python).
  nohup env -u PYTHONPATH -u PYSPARK_PYTHON -u PYSPARK_DRIVER_PYTHON -u PYSPARK_SUBMIT_ARGS \
    SPARK_HOME="$home" SPARK_LOG_DIR="$state" SPARK_WORKER_DIR="$state/work" \
    "$home/bin/spark-class" "$@" >"$state/$name.log" 2>&1 </dev/null &
  echo $! >"$state/$name.pid"
}

master_up() { [ -n "$(master_json)" ]; }

workers_up() { [ "$(alive_workers)" -ge "$workers" ]; }

wait_for() {  # wait_for SECONDS COMMAND...: until COMMAND succeeds (it is run again each time)
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 1
  done
}

start() {
  if running master; then
    echo "a cluster is already running: $(cat "$state/master.url") (scripts/cluster.sh stop first)" >&2
    exit 1
  fi
  command -v java >/dev/null || { echo "Spark needs Java 17 on PATH" >&2; exit 1; }
  home="$(spark_home)"
  mkdir -p "$state/work"
  rm -f "$state"/*.pid "$state/workers.ui"
  local port ui
  port="$(free_port)"; ui="$(free_port)"
  echo "spark://$host:$port" >"$state/master.url"
  echo "http://$host:$ui/json/" >"$state/master.json_url"
  launch master org.apache.spark.deploy.master.Master --host "$host" --port "$port" --webui-port "$ui"
  if ! wait_for 180 master_up; then
    echo "the master did not start; see $state/master.log" >&2; stop; exit 1
  fi
  for i in $(seq "$workers"); do
    local wport wui
    wport="$(free_port)"; wui="$(free_port)"
    launch "worker$i" org.apache.spark.deploy.worker.Worker "spark://$host:$port" --host "$host" \
      --cores "$cores" --memory "$memory" --port "$wport" --webui-port "$wui" \
      --work-dir "$state/work/worker$i"
    echo "http://$host:$wui/json/" >>"$state/workers.ui"
  done
  if ! wait_for 180 workers_up; then
    echo "the workers did not register; see $state/worker*.log" >&2; stop; exit 1
  fi
  cat "$state/master.url"
}

stop() {
  local pids=()
  for f in "$state"/*.pid; do
    [ -f "$f" ] || continue
    pids+=("$(cat "$f")")
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do  # give each 30 s to exit cleanly, then kill it
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -f "$state"/*.pid
}

status() {
  if ! running master; then echo "no cluster running (state in $state)"; exit 1; fi
  echo "master $(cat "$state/master.url") (pid $(cat "$state/master.pid")), $(alive_workers) worker(s) alive"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: scripts/cluster.sh start|stop|status" >&2; exit 2 ;;
esac
