# Shared shell functions for bench/run.sh and bench/compare.sh: free ports,
# starting and stopping the servers (flowcast, Node ws, nginx+nchan) pinned
# to CPU 0, running flowcast-bench pinned to CPU 1. Source it; call
# fcb_init first. Every process started here is killed by fcb_cleanup,
# which fcb_init installs as the EXIT trap.

FCB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FCB_BUILD="${FCB_BUILD:-$FCB_ROOT/build}"
FCB_SERVER_CPU="${FCB_SERVER_CPU:-0}"
FCB_BENCH_CPU="${FCB_BENCH_CPU:-1}"
FCB_PIDS=()
SERVER_PID=""
SERVER_PIDS=""
SERVER_PORT=""
# FCB_TLS=1 (the TLS scenarios set it): servers terminate TLS with the
# certificate from fcb_tls_material and flowcast-bench speaks TLS.
FCB_TLS="${FCB_TLS:-0}"

fcb_log() { echo "bench: $*" >&2; }

fcb_cleanup() {
  local p
  for p in "${FCB_PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${FCB_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  FCB_PIDS=()
  [ -n "${FCB_TMP:-}" ] && rm -rf "$FCB_TMP"
}

fcb_init() {
  FCB_TMP="$(mktemp -d /tmp/flowcast-bench.XXXXXX)"
  trap fcb_cleanup EXIT
  trap 'exit 130' INT TERM
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  if [ "$(nproc)" -lt 2 ]; then FCB_SERVER_CPU=0; FCB_BENCH_CPU=0; fi
}

# Prints a TCP port on 127.0.0.1 that nobody listens on, below the ephemeral
# range (as tests/e2e/fc_helpers.py's free_port): the port stays unbound until
# the server starts, and an ephemeral one could meanwhile become the local
# port of some connect(), fcb_wait_port's own included.
fcb_free_port() {
  /usr/bin/python3 "$FCB_ROOT/scripts/free-port" "$$" "$RANDOM"
}

# Waits until something accepts connections on 127.0.0.1:$1 (at most ~10 s,
# or FCB_WAIT_S seconds).
fcb_wait_port() {
  for _ in $(seq $(( ${FCB_WAIT_S:-10} * 20 ))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  fcb_log "nothing listens on port $1"; return 1
}

fcb_forget_pid() {
  local keep=() p
  for p in "${FCB_PIDS[@]}"; do [ "$p" != "$1" ] && keep+=("$p"); done
  FCB_PIDS=("${keep[@]}")
}

# Stops the server started by fcb_start_* (SIGTERM, then SIGKILL after 10 s).
fcb_stop_server() {
  [ -z "$SERVER_PID" ] && return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  fcb_forget_pid "$SERVER_PID"
  SERVER_PID=""; SERVER_PIDS=""
}

# fcb_tls_material: once per run, a self-signed ECDSA P-256 certificate for
# 127.0.0.1 and localhost in $FCB_TMP/tls/{cert,key}.pem, which every TLS
# server of the run uses (same key type, same chain: the same handshake work).
fcb_tls_material() {
  local d="$FCB_TMP/tls"
  [ -s "$d/cert.pem" ] && return 0
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
    -keyout "$d/key.pem" -out "$d/cert.pem" >/dev/null 2>&1 || {
    fcb_log "openssl could not make a test certificate"; return 1; }
}

# fcb_jwt_material ALG: a key for flowcast --jwt-key and a token signed with
# it (scope read write, one hour) for ALG hs256, rs256 or es256, in
# $FCB_TMP/jwt/ALG.{key,token}. HS256 is minted by `flowcast token`, the
# others by python3-jwt (flowcast token mints HS256 only).
fcb_jwt_material() {
  local alg="$1" d="$FCB_TMP/jwt"
  mkdir -p "$d"
  [ -s "$d/$alg.token" ] && return 0
  case "$alg" in
    hs256)
      openssl rand -hex 32 >"$d/hs256.key" &&
        "$FCB_BUILD/flowcast" token --key "$d/hs256.key" --scope 'read write' --ttl 1h \
          >"$d/hs256.token" ;;
    rs256|es256)
      if [ "$alg" = rs256 ]; then
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/$alg.pem" 2>/dev/null
      else
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$alg.pem" 2>/dev/null
      fi &&
        openssl pkey -in "$d/$alg.pem" -pubout -out "$d/$alg.key" 2>/dev/null &&
        /usr/bin/python3 -c 'import jwt, sys, time
print(jwt.encode({"scope": "read write", "iat": int(time.time()),
                  "exp": int(time.time()) + 3600},
                 open(sys.argv[1]).read(), algorithm=sys.argv[2]))' \
          "$d/$alg.pem" "${alg^^}" >"$d/$alg.token" ;;
    *) fcb_log "unknown JWT algorithm $alg"; return 1 ;;
  esac || { fcb_log "could not make a $alg key and token"; rm -f "$d/$alg.token"; return 1; }
}

# fcb_start_flowcast [PORT] [extra flowcast flags...]: a fresh database
# unless FCB_DB is set; TLS on the port with FCB_TLS=1. Sets SERVER_PID,
# SERVER_PIDS, SERVER_PORT.
fcb_start_flowcast() {
  local port="${1:-}"; shift || true
  [ -z "$port" ] && port="$(fcb_free_port)"
  local db="${FCB_DB:-$FCB_TMP/flowcast-$port.db}"
  if [ "$FCB_TLS" = 1 ]; then
    fcb_tls_material || return 1
    set -- --tls-cert "$FCB_TMP/tls/cert.pem" --tls-key "$FCB_TMP/tls/key.pem" "$@"
  fi
  # FCB_WRAP: a command the server runs under (bench/profile.sh: valgrind).
  # shellcheck disable=SC2086
  taskset -c "$FCB_SERVER_CPU" ${FCB_WRAP:-} "$FCB_BUILD/flowcast" serve --listen "127.0.0.1:$port" \
    --db "$db" --log-level warn "$@" >>"$FCB_TMP/flowcast.log" 2>&1 &
  SERVER_PID=$!; SERVER_PIDS=$SERVER_PID; SERVER_PORT=$port
  FCB_PIDS+=("$SERVER_PID")
  fcb_wait_port "$port"
}

fcb_start_ws() {
  local port; port="$(fcb_free_port)"
  taskset -c "$FCB_SERVER_CPU" node "$FCB_ROOT/bench/peers/ws-server/server.js" "$port" \
    >>"$FCB_TMP/ws.log" 2>&1 &
  SERVER_PID=$!; SERVER_PIDS=$SERVER_PID; SERVER_PORT=$port
  FCB_PIDS+=("$SERVER_PID")
  fcb_wait_port "$port"
}

# With FCB_TLS=1 nginx terminates TLS itself (listen ... ssl) with Mozilla's
# "intermediate" settings, the profile flowcast's own TLS follows: the same
# protocols, TLS 1.2 ciphers and groups, no session cache, and one session
# ticket per handshake as flowcast sends (OpenSSL's default, which nginx
# keeps, is two: that would charge nginx for a second ticket).
fcb_start_nchan() {
  local port; port="$(fcb_free_port)"
  local dir="$FCB_TMP/nginx-$port" ssl=""
  mkdir -p "$dir"
  : >"$dir/tls.conf"
  if [ "$FCB_TLS" = 1 ]; then
    fcb_tls_material || return 1
    ssl="ssl "
    cat >"$dir/tls.conf" <<EOF
ssl_certificate $FCB_TMP/tls/cert.pem;
ssl_certificate_key $FCB_TMP/tls/key.pem;
ssl_protocols TLSv1.2 TLSv1.3;
ssl_ecdh_curve X25519:prime256v1:secp384r1;
ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
ssl_prefer_server_ciphers off;
ssl_session_cache none;
ssl_conf_command NumTickets 1;
${FCB_NGINX_TLS_EXTRA:-}
EOF
  fi
  sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$dir|g" -e "s|@SSL@|$ssl|g" \
    "$FCB_ROOT/bench/peers/nchan/nginx.conf.template" >"$dir/nginx.conf"
  taskset -c "$FCB_SERVER_CPU" nginx -p "$dir" -c "$dir/nginx.conf" >>"$dir/out.log" 2>&1 &
  SERVER_PID=$!; SERVER_PORT=$port
  FCB_PIDS+=("$SERVER_PID")
  fcb_wait_port "$port" || { cat "$dir/error.log" "$dir/out.log" >&2; return 1; }
  local worker=""
  for _ in $(seq 50); do
    worker="$(pgrep -P "$SERVER_PID" | head -n 1 || true)"
    [ -n "$worker" ] && break; sleep 0.05
  done
  SERVER_PIDS="$SERVER_PID${worker:+,$worker}"
}

# fcb_start_server TARGET: one of flowcast, ws, nchan.
fcb_start_server() {
  case "$1" in
    flowcast) fcb_start_flowcast "" ;;
    ws) fcb_start_ws ;;
    nchan) fcb_start_nchan ;;
    *) fcb_log "unknown target $1"; return 1 ;;
  esac
}

# fcb_bench TARGET LABEL [flowcast-bench flags...]: runs the load generator
# on CPU 1 against the current server; appends its JSON line to
# $FCB_RESULTS when set; the human summary goes to stderr.
fcb_bench() {
  local target="$1" label="$2"; shift 2
  [ "$FCB_TLS" = 1 ] && set -- --tls "$@"
  local out cmd="flowcast-bench --target $target $*" p
  # FCB_CMD_NAMES="PORT=NAME ...": the report shows NAME, not the run's port.
  for p in ${FCB_CMD_NAMES:-}; do
    cmd="$(sed -E "s/(^|[ ,])${p%%=*}([ ,]|\$)/\1${p#*=}\2/g" <<<"$cmd")"
  done
  out="$(taskset -c "$FCB_BENCH_CPU" "$FCB_BUILD/flowcast-bench" --target "$target" \
    --port "$SERVER_PORT" --server-pid "$SERVER_PIDS" --label "$label" --json --quiet "$@")" || {
    fcb_log "flowcast-bench failed ($target $label)"; return 1; }
  # Tag the run with the size and the command (no quotes in it to escape).
  out="${out%\}},\"size\":\"${FCB_SIZE:-full}\",\"cmd\":\"$cmd\"}"
  [ -n "${FCB_RESULTS:-}" ] && printf '%s\n' "$out" >>"$FCB_RESULTS"
  return 0
}
