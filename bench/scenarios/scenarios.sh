# The benchmark scenarios of issue 4, one shell function each:
#   fcb_scenario_NAME TARGET SIZE RUN
# SIZE is full (the sizes in the issue) or tiny (smoke: 50 subscribers, ~2 s).
# Each starts a fresh server, runs flowcast-bench once, stops the server.
# Sourced by bench/run.sh after bench/lib.sh.

FCB_SCENARIOS="seed fanout-1k fanout-10k many-workflows ingest capacity storm io-threads"
# Scenarios that need flowcast's REST model or resume (?since=) run on it only.
FCB_FLOWCAST_ONLY="ingest storm io-threads"

fcb_sz() { [ "$FCB_SIZE" = tiny ] && echo "$2" || echo "$1"; }

# seed: 100 subscribers, 1 workflow, 100 changes/s for 10 s.
fcb_scenario_seed() {
  fcb_start_server "$1" || return 1
  fcb_bench "$1" seed --subscribers "$(fcb_sz 100 50)" --workflows 1 --publishers 1 \
    --rate 100 --duration "$(fcb_sz 10 2)"
  local rc=$?; fcb_stop_server; return $rc
}

# fanout: N subscribers on one workflow; 64 publishers publish as fast as
# acknowledged, with at most 64 changes not yet delivered to every
# subscriber: the server is kept saturated, and nothing may be lost (64 stays
# under flowcast's default --backlog of 100, so it never coalesces).
fcb__fanout() {
  fcb_start_server "$1" || return 1
  fcb_bench "$1" "$3" --subscribers "$2" --workflows 1 --publishers 64 --window "$4" \
    --rate 0 --duration "$(fcb_sz 10 2)"
  local rc=$?; fcb_stop_server; return $rc
}
fcb_scenario_fanout-1k() { fcb__fanout "$1" "$(fcb_sz 1000 50)" fanout-1k 64; }
fcb_scenario_fanout-10k() { fcb__fanout "$1" "$(fcb_sz 10000 50)" fanout-10k 64; }

# many-workflows: 10,000 subscribers over 1,000 workflows, round-robin changes.
fcb_scenario_many-workflows() {
  fcb_start_server "$1" || return 1
  fcb_bench "$1" many-workflows --subscribers "$(fcb_sz 10000 50)" \
    --workflows "$(fcb_sz 1000 10)" --publishers 8 --window 1000 --rate 0 \
    --duration "$(fcb_sz 10 2)"
  local rc=$?; fcb_stop_server; return $rc
}

# ingest: 64 producers PATCHing 1,000 workflows as fast as possible, nobody
# watching; default durability, then --sync full.
fcb_scenario_ingest() {
  local sync
  for sync in normal full; do
    fcb_start_flowcast "" --sync "$sync" || return 1
    fcb_bench flowcast "ingest-sync-$sync" --subscribers 0 --workflows "$(fcb_sz 1000 10)" \
      --publishers "$(fcb_sz 64 4)" --rate 0 --duration "$(fcb_sz 10 2)" || { fcb_stop_server; return 1; }
    fcb_stop_server
  done
}

# capacity: as many idle WebSocket connections as one process may open here
# (19,500 under the 20,000 open-file limit), then 20 s idle with the
# server's default ping interval: connect time, RSS per connection, idle CPU.
fcb_scenario_capacity() {
  fcb_start_server "$1" || return 1
  fcb_bench "$1" capacity --subscribers "$(fcb_sz 19500 50)" --workflows 1 --no-publish \
    --settle 2 --duration "$(fcb_sz 20 2)" --connect-concurrency 256
  local rc=$?; fcb_stop_server; return $rc
}

# storm: 10,000 subscribers over 100 workflows, 200 changes/s; the server is
# restarted (SIGTERM, start again on the same port and database) after a few
# seconds; subscribers reconnect with ?since= and must lose nothing.
fcb_scenario_storm() {
  local port db; port="$(fcb_free_port)"; db="$FCB_TMP/storm-$$.db"
  FCB_DB="$db" fcb_start_flowcast "$port" || return 1
  local out="$FCB_TMP/storm.json"
  ( fcb_bench flowcast storm --subscribers "$(fcb_sz 10000 50)" --workflows "$(fcb_sz 100 5)" \
      --publishers 4 --rate 200 --duration "$(fcb_sz 12 4)" --drain 10 --reconnect \
      --connect-concurrency 512 ) &
  local bpid=$!
  FCB_PIDS+=("$bpid")
  # Restart once every subscriber had time to connect.
  sleep "$(fcb_sz 6 2)"
  fcb_stop_server
  FCB_DB="$db" fcb_start_flowcast "$port" || { wait "$bpid"; return 1; }
  wait "$bpid"; local rc=$?
  fcb_forget_pid "$bpid"
  fcb_stop_server
  return $rc
}

# io-threads: flowcast on both cores (flowcast-bench shares CPU 1 with it),
# with one I/O thread and with two: fanout-10k, many-workflows and ingest.
# Labels end in -1t / -2t. Every other scenario pins the server to one core.
fcb_scenario_io-threads() {
  local n rc=0 saved="$FCB_SERVER_CPU"
  [ "$(nproc)" -ge 2 ] && FCB_SERVER_CPU=0,1
  for n in 1 2; do
    fcb_start_flowcast "" --io-threads "$n" || { rc=1; break; }
    fcb_bench flowcast "fanout-10k-2cpu-${n}t" --subscribers "$(fcb_sz 10000 50)" --workflows 1 \
      --publishers 64 --window 64 --rate 0 --duration "$(fcb_sz 10 2)" || rc=1
    fcb_stop_server
    fcb_start_flowcast "" --io-threads "$n" || { rc=1; break; }
    fcb_bench flowcast "many-workflows-2cpu-${n}t" --subscribers "$(fcb_sz 10000 50)" \
      --workflows "$(fcb_sz 1000 10)" --publishers 8 --window 1000 --rate 0 \
      --duration "$(fcb_sz 10 2)" || rc=1
    fcb_stop_server
    fcb_start_flowcast "" --io-threads "$n" || { rc=1; break; }
    fcb_bench flowcast "ingest-2cpu-${n}t" --subscribers 0 --workflows "$(fcb_sz 1000 10)" \
      --publishers "$(fcb_sz 64 4)" --rate 0 --duration "$(fcb_sz 10 2)" || rc=1
    fcb_stop_server
  done
  FCB_SERVER_CPU="$saved"
  return $rc
}
