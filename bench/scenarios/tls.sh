# The TLS scenarios of issue 9, one shell function each (called like those
# in scenarios.sh: fcb_scenario_NAME TARGET SIZE RUN). bench/tls.sh runs them
# against flowcast (--tls-cert/--tls-key) and nginx+nchan terminating TLS
# (listen ... ssl), both with the same ECDSA P-256 certificate; jwt-connect
# runs on flowcast only (nchan has no JWT). Sourced by bench/run.sh.

FCB_TLS_SCENARIOS="tls-idle tls-handshake tls-fanout-1k jwt-connect"
FCB_FLOWCAST_ONLY="$FCB_FLOWCAST_ONLY jwt-connect"

# tls-idle: N idle wss subscribers on one workflow; the server's RSS with
# all of them open less its RSS after the first 1% (warm-up), over the rest.
fcb_scenario_tls-idle() {
  local FCB_TLS=1
  fcb_start_server "$1" || return 1
  fcb_bench "$1" tls-idle --subscribers "$(fcb_sz 10000 50)" --workflows 1 --no-publish \
    --settle 2 --duration "$(fcb_sz 5 1)" --connect-concurrency 64
  local rc=$?; fcb_stop_server; return $rc
}

# tls-handshake: full handshakes, one after another, 32 at a time: connect,
# handshake, close_notify, the server's close (label tls-handshake); then
# whole wss connects up to the upgrade's 101 (label tls-wss-connect). The
# tool never resumes a session, so every handshake is a full one.
fcb_scenario_tls-handshake() {
  local FCB_TLS=1 rc=0
  fcb_start_server "$1" || return 1
  fcb_bench "$1" tls-handshake --churn "$(fcb_sz 10000 50)" --churn-stage tls \
    --connect-concurrency 32 --duration "$(fcb_sz 60 5)" || rc=1
  fcb_bench "$1" tls-wss-connect --churn "$(fcb_sz 5000 50)" --churn-stage ws \
    --connect-concurrency 32 --duration "$(fcb_sz 60 5)" || rc=1
  fcb_stop_server; return $rc
}

# tls-fanout-1k: 1,000 wss subscribers on one workflow, one publisher (HTTPS,
# keep-alive, 8 requests in flight) publishing as fast as acknowledged
# within a window of 64 changes not yet delivered to everyone.
fcb_scenario_tls-fanout-1k() {
  local FCB_TLS=1
  fcb_start_server "$1" || return 1
  fcb_bench "$1" tls-fanout-1k --subscribers "$(fcb_sz 1000 50)" --workflows 1 --publishers 1 \
    --pipeline 8 --window 64 --rate 0 --duration "$(fcb_sz 10 1)"
  local rc=$?; fcb_stop_server; return $rc
}

# jwt-connect: WebSocket connects (plain HTTP, so the token is the only
# difference) per server CPU-second without auth and with a token verified
# on each connect: HS256, RS256 (2048-bit key) and ES256 (P-256), one token
# for every connect (the cache of verified tokens answers all but the first),
# and RS256/ES256 again with --jwt-cache 0 (every connect verified). Labels
# jwt-none, jwt-hs256, jwt-rs256, jwt-es256, jwt-rs256-uncached, jwt-es256-uncached.
fcb_scenario_jwt-connect() {
  local FCB_TLS=0 alg rc=0 n
  n="$(fcb_sz 5000 50)"
  fcb_start_flowcast "" || return 1
  fcb_bench flowcast jwt-none --churn "$n" --churn-stage ws --connect-concurrency 32 \
    --duration "$(fcb_sz 60 5)" || rc=1
  fcb_stop_server
  for run in hs256 rs256 es256 rs256-uncached es256-uncached; do
    alg="${run%-uncached}"
    fcb_jwt_material "$alg" || { rc=1; continue; }
    fcb_start_flowcast "" --jwt-key "$FCB_TMP/jwt/$alg.key" \
      --jwt-cache "$([ "$run" = "$alg" ] && echo 4096 || echo 0)" || { rc=1; continue; }
    fcb_bench flowcast "jwt-$run" --churn "$n" --churn-stage ws --connect-concurrency 32 \
      --duration "$(fcb_sz 60 5)" --token-file "$FCB_TMP/jwt/$alg.token" || rc=1
    fcb_stop_server
  done
  return $rc
}
