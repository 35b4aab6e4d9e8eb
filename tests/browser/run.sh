#!/usr/bin/env bash
# Runs the browser end-to-end tests (node --test + playwright-core driving
# Debian's /usr/bin/chromium) against the flowcast binary in $FLOWCAST_BIN.
# Installs the npm dependencies when missing, keeps servers and browser data
# in a temp dir, kills whatever it started on exit, and gives up after
# FC_BROWSER_TIMEOUT seconds (default 600).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
: "${FLOWCAST_BIN:?set FLOWCAST_BIN to the flowcast binary}"
FLOWCAST_BIN=$(cd "$(dirname "$FLOWCAST_BIN")" && pwd)/$(basename "$FLOWCAST_BIN")
[ -x "$FLOWCAST_BIN" ] || { echo "run.sh: $FLOWCAST_BIN is not executable" >&2; exit 2; }
[ -x /usr/bin/chromium ] || { echo "run.sh: /usr/bin/chromium is missing (scripts/setup installs it)" >&2; exit 2; }
command -v node >/dev/null || { echo "run.sh: node is missing" >&2; exit 2; }

cd "$here"
if [ ! -f node_modules/playwright-core/package.json ]; then
  echo "run.sh: installing playwright-core (npm ci)"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 120 npm ci --no-audit --no-fund --loglevel=error
fi

work=$(mktemp -d /tmp/flowcast-browser.XXXXXX)
cleanup() {
  rc=$?
  if [ -f "$work/pids" ]; then
    while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$work/pids"
  fi
  if [ "$rc" -ne 0 ]; then
    for f in "$work"/server-*.log; do
      [ -f "$f" ] && { echo "----- $f"; tail -n 30 "$f"; }
    done
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Arguments name test files to run (e.g. auth.test.mjs); default: all of them.
files=()
for f in "$@"; do files+=("$here/$(basename "$f")"); done
[ ${#files[@]} -gt 0 ] || files=("$here"/client.test.mjs "$here"/request.test.mjs "$here"/dashboard.test.mjs
  "$here"/layout.test.mjs "$here"/scale.test.mjs "$here"/connection.test.mjs
  "$here"/resilience.test.mjs "$here"/epoch.test.mjs "$here"/cors.test.mjs "$here"/token.test.mjs "$here"/auth.test.mjs
  "$here"/expiry.test.mjs "$here"/tls.test.mjs "$here"/cluster.test.mjs)

export FLOWCAST_BIN FC_WORK="$work" FC_ROOT="$root"
timeout -k 5 "${FC_BROWSER_TIMEOUT:-600}" \
  node --test --test-concurrency=1 --test-timeout=90000 --test-reporter=spec "${files[@]}"
