# The cluster scenarios (issue 10): three nodes on one PostgreSQL and one
# nats-server, started by scripts/cluster (the nodes connect straight to
# nats-server). First every process of the cluster on CPU 0
# (FCB_SERVER_CPU) and flowcast-bench on CPU 1, as for one server; then a
# second cluster with nothing pinned (the cluster and the bench share every
# core, as a deployment on this machine would). Sourced by bench/run.sh.
#   cluster-latency   100 subscribers on each node, 100 changes/s through node 1
#   cluster-ingest    64 producers over the three nodes, 1,000 workflows, nobody
#                     watching; with each process's CPU (bench/cluster_cpu.py)
#   cluster-bus-remote / cluster-bus-local
#                     10,000 subscribers on node 1, changes through node 2 (they
#                     reach node 1 over the bus) or through node 1; node 1's CPU
#   cluster-failover  10,000 subscribers on node 1, 200 changes/s through node 2;
#                     node 1 is killed (SIGKILL) after a few seconds and its
#                     subscribers move to nodes 2 and 3, resuming with ?since=
#   cluster-latency-unpinned, cluster-ingest-unpinned
#                     the same as cluster-latency and cluster-ingest, unpinned
# FCB_CLUSTER_PARTS (bench/cluster.sh --only) picks some of: latency ingest
# bus failover unpinned (all by default). FCB_CLUSTER_NODE_FLAGS: more flags
# for every node, to compare settings (e.g. "--io-threads 1"); the published
# figures use none.

FCB_FLOWCAST_ONLY="$FCB_FLOWCAST_ONLY cluster"

# fcb__cluster_start: starts the cluster; sets CL_PID (scripts/cluster),
# CL_PORTS and CL_PIDS (arrays: each node's port and process id).
fcb__cluster_start() {
  local info="$FCB_TMP/cluster.json" cpus="${1:-$FCB_SERVER_CPU}"
  rm -f "$info"
  taskset -c "$cpus" /usr/bin/python3 "$FCB_ROOT/scripts/cluster" \
    --bin "$FCB_BUILD/flowcast" --dir "$FCB_TMP/cluster" --info "$info" --no-proxy --free-ports \
    -- --log-level warn ${FCB_CLUSTER_NODE_FLAGS:-} >>"$FCB_TMP/cluster.log" 2>&1 &
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

fcb__cluster_part() { case " ${FCB_CLUSTER_PARTS:-latency ingest bus failover unpinned} " in *" $1 "*) return 0 ;; esac; return 1; }

# fcb__cluster_ingest LABEL: the ingest run, with each process's CPU added
# to its result line (bench/cluster_cpu.py).
fcb__cluster_ingest() {
  local before="$FCB_TMP/cpu-before.json" all
  all="$(fcb__cluster_ports "${CL_PORTS[@]}")"
  /usr/bin/python3 "$FCB_ROOT/bench/cluster_cpu.py" sample "$FCB_TMP/cluster.json" >"$before" || return 1
  fcb_bench flowcast "$1" --subscribers 0 --workflows "$(fcb_sz 1000 10)" \
    --publishers "$(fcb_sz 64 4)" --pub-ports "$all" --rate 0 --duration "$(fcb_sz 10 2)" || return 1
  [ -z "${FCB_RESULTS:-}" ] ||
    /usr/bin/python3 "$FCB_ROOT/bench/cluster_cpu.py" add "$before" "$FCB_TMP/cluster.json" "$FCB_RESULTS"
}

# fcb__cluster_latency LABEL: the latency run, with its hops (each node's
# commit→write and bus-lag histograms over the run) and each CPU's busy
# share against the cluster's own added to its result line
# (bench/cluster_hops.py).
fcb__cluster_latency() {
  local before="$FCB_TMP/hops-before.json"
  /usr/bin/python3 "$FCB_ROOT/bench/cluster_hops.py" sample "$FCB_TMP/cluster.json" >"$before" || return 1
  fcb_bench flowcast "$1" --subscribers "$(fcb_sz 300 30)" --workflows 1 \
    --sub-ports "$(fcb__cluster_ports "${CL_PORTS[@]}")" --pub-ports "${CL_PORTS[0]}" \
    --publishers 1 --rate 100 --duration "$(fcb_sz 10 2)" || return 1
  [ -z "${FCB_RESULTS:-}" ] ||
    /usr/bin/python3 "$FCB_ROOT/bench/cluster_hops.py" add "$before" "$FCB_TMP/cluster.json" "$FCB_RESULTS"
}

fcb__cluster_names() {
  FCB_CMD_NAMES="${CL_PORTS[0]}=\$N1 ${CL_PORTS[1]}=\$N2 ${CL_PORTS[2]}=\$N3"
  SERVER_PORT="${CL_PORTS[0]}"
  SERVER_PIDS="$(fcb__cluster_ports "${CL_PIDS[@]}")"
}

# The second cluster: nothing pinned. Every core of the machine (not nproc,
# which counts only those this shell may use), so a pinned caller's mask is
# not inherited either.
fcb__cluster_unpinned() {
  local rc=0 FCB_CMD_NAMES cpus
  cpus="0-$(( $(getconf _NPROCESSORS_ONLN) - 1 ))"
  fcb__cluster_start "$cpus" || return 1
  fcb__cluster_names
  if fcb__cluster_part latency; then
    FCB_BENCH_CPU="$cpus" fcb__cluster_latency cluster-latency-unpinned || rc=1
  fi
  if fcb__cluster_part ingest; then
    FCB_BENCH_CPU="$cpus" fcb__cluster_ingest cluster-ingest-unpinned || rc=1
  fi
  fcb__cluster_stop
  return $rc
}

fcb_scenario_cluster() {
  local rc=0 FCB_CMD_NAMES
  if fcb__cluster_part latency || fcb__cluster_part ingest || fcb__cluster_part bus ||
    fcb__cluster_part failover; then
    fcb__cluster_start || return 1
    fcb__cluster_names
    if fcb__cluster_part latency; then fcb__cluster_latency cluster-latency || rc=1; fi
    if fcb__cluster_part ingest; then fcb__cluster_ingest cluster-ingest || rc=1; fi
    if fcb__cluster_part bus; then
      SERVER_PIDS="${CL_PIDS[0]}"
      fcb_bench flowcast cluster-bus-remote --subscribers "$(fcb_sz 10000 50)" --workflows 1 \
        --sub-ports "${CL_PORTS[0]}" --pub-ports "${CL_PORTS[1]}" --publishers 64 --window 64 \
        --rate 0 --duration "$(fcb_sz 10 2)" --connect-concurrency 256 || rc=1
      fcb_bench flowcast cluster-bus-local --subscribers "$(fcb_sz 10000 50)" --workflows 1 \
        --sub-ports "${CL_PORTS[0]}" --pub-ports "${CL_PORTS[0]}" --publishers 64 --window 64 \
        --rate 0 --duration "$(fcb_sz 10 2)" --connect-concurrency 256 || rc=1
    fi
    if fcb__cluster_part failover; then
      # Failover: the bench connects everyone to node 1, then node 1 is killed.
      SERVER_PORT="${CL_PORTS[1]}"
      SERVER_PIDS="${CL_PIDS[0]}"
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
    fi
    fcb__cluster_stop
  fi
  if fcb__cluster_part unpinned; then fcb__cluster_unpinned || rc=1; fi
  return $rc
}
