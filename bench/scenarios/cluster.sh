# The cluster scenarios (issue 10): three nodes on one PostgreSQL and one
# nats-server, started by scripts/cluster (the services of the cluster
# tests), every process of the cluster on CPU 0 (FCB_SERVER_CPU) and
# flowcast-bench on CPU 1, as for one server. Sourced by bench/run.sh.
#   cluster-latency   100 subscribers on each node, 100 changes/s through node 1
#   cluster-ingest    64 producers over the three nodes, 1,000 workflows, nobody watching
#   cluster-bus-remote / cluster-bus-local
#                     10,000 subscribers on node 1, changes through node 2 (they
#                     reach node 1 over the bus) or through node 1; node 1's CPU
#   cluster-failover  10,000 subscribers on node 1, 200 changes/s through node 2;
#                     node 1 is killed (SIGKILL) after a few seconds and its
#                     subscribers move to nodes 2 and 3, resuming with ?since=

FCB_FLOWCAST_ONLY="$FCB_FLOWCAST_ONLY cluster"

# fcb__cluster_start: starts the cluster; sets CL_PID (scripts/cluster),
# CL_PORTS and CL_PIDS (arrays: each node's port and process id).
fcb__cluster_start() {
  local info="$FCB_TMP/cluster.json"
  rm -f "$info"
  taskset -c "$FCB_SERVER_CPU" /usr/bin/python3 "$FCB_ROOT/scripts/cluster" \
    --bin "$FCB_BUILD/flowcast" --dir "$FCB_TMP/cluster" --info "$info" --no-proxy \
    -- --log-level warn >>"$FCB_TMP/cluster.log" 2>&1 &
  CL_PID=$!
  FCB_PIDS+=("$CL_PID")
  for _ in $(seq 1200); do
    [ -s "$info" ] && break
    kill -0 "$CL_PID" 2>/dev/null || break
    sleep 0.05
  done
  [ -s "$info" ] || { fcb_log "the cluster did not start"; tail -n 30 "$FCB_TMP/cluster.log" >&2; return 1; }
  read -r -a CL_PORTS <<<"$(/usr/bin/python3 -c 'import json,sys
print(" ".join(str(n["port"]) for n in json.load(open(sys.argv[1]))["nodes"]))' "$info")"
  read -r -a CL_PIDS <<<"$(/usr/bin/python3 -c 'import json,sys
print(" ".join(str(n["pid"]) for n in json.load(open(sys.argv[1]))["nodes"]))' "$info")"
}

fcb__cluster_stop() {
  [ -z "${CL_PID:-}" ] && return 0
  kill -TERM "$CL_PID" 2>/dev/null || true
  wait "$CL_PID" 2>/dev/null || true
  fcb_forget_pid "$CL_PID"
  CL_PID=""
}

fcb__cluster_ports() { local IFS=,; echo "$*"; }

fcb_scenario_cluster() {
  local rc=0 all
  fcb__cluster_start || return 1
  all="$(fcb__cluster_ports "${CL_PORTS[@]}")"
  local FCB_CMD_NAMES="${CL_PORTS[0]}=\$N1 ${CL_PORTS[1]}=\$N2 ${CL_PORTS[2]}=\$N3"
  SERVER_PORT="${CL_PORTS[0]}"
  SERVER_PIDS="$(fcb__cluster_ports "${CL_PIDS[@]}")"
  fcb_bench flowcast cluster-latency --subscribers "$(fcb_sz 300 30)" --workflows 1 \
    --sub-ports "$all" --pub-ports "${CL_PORTS[0]}" --publishers 1 --rate 100 \
    --duration "$(fcb_sz 10 2)" || rc=1
  fcb_bench flowcast cluster-ingest --subscribers 0 --workflows "$(fcb_sz 1000 10)" \
    --publishers "$(fcb_sz 64 4)" --pub-ports "$all" --rate 0 --duration "$(fcb_sz 10 2)" || rc=1
  SERVER_PIDS="${CL_PIDS[0]}"
  fcb_bench flowcast cluster-bus-remote --subscribers "$(fcb_sz 10000 50)" --workflows 1 \
    --sub-ports "${CL_PORTS[0]}" --pub-ports "${CL_PORTS[1]}" --publishers 64 --window 64 \
    --rate 0 --duration "$(fcb_sz 10 2)" --connect-concurrency 256 || rc=1
  fcb_bench flowcast cluster-bus-local --subscribers "$(fcb_sz 10000 50)" --workflows 1 \
    --sub-ports "${CL_PORTS[0]}" --pub-ports "${CL_PORTS[0]}" --publishers 64 --window 64 \
    --rate 0 --duration "$(fcb_sz 10 2)" --connect-concurrency 256 || rc=1
  # Failover: the bench connects everyone to node 1, then node 1 is killed.
  SERVER_PORT="${CL_PORTS[1]}"
  ( fcb_bench flowcast cluster-failover --subscribers "$(fcb_sz 10000 50)" \
      --workflows "$(fcb_sz 100 5)" --sub-ports "${CL_PORTS[0]}" \
      --failover-ports "${CL_PORTS[1]},${CL_PORTS[2]}" --pub-ports "${CL_PORTS[1]}" \
      --publishers 4 --rate 200 --duration "$(fcb_sz 14 6)" --drain 10 --reconnect \
      --connect-concurrency 512 ) &
  local bpid=$!
  FCB_PIDS+=("$bpid")
  # Kill once every subscriber had time to connect (the bench's own
  # connect phase comes first: wait for node 1 to hold them).
  sleep "$(fcb_sz 9 4)"
  kill -KILL "${CL_PIDS[0]}" 2>/dev/null || true
  wait "$bpid" || rc=1
  fcb_forget_pid "$bpid"
  fcb__cluster_stop
  return $rc
}
