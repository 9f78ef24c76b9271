#!/usr/bin/env bash
# Drives `cachet serve` with the official OpenAI and Anthropic npm client libraries.
#
#   run_client_tests.sh CACHET_BIN WORK_DIR
#
# Installs the pinned packages (package-lock.json beside this script) into WORK_DIR with
# `npm ci`, makes a tiny random-weight Qwen3 model with the real Qwen3 tokenizer, starts
# `CACHET_BIN serve` on a free loopback port and runs openai_client.test.mjs and
# anthropic_client.test.mjs against it, then the same against a second server started with
# --api-key (which adds the 401 checks). Each server must exit 0 within 30 s of SIGTERM.
#
# Exit status: 0 all passed; 77 skipped (no node or npm); 1 something failed. The source tree
# is left untouched: everything is written under WORK_DIR.
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SOURCE_DIR="$(cd "$SCRIPT_DIR/../../.." && pwd)"
readonly SCRIPT_DIR SOURCE_DIR
readonly API_KEY="secret-key"
readonly HEALTH_TIMEOUT_S=60
readonly STOP_TIMEOUT_S=30

log() { echo "run_client_tests: $*"; }
die() { echo "run_client_tests: error: $*" >&2; exit 1; }

if [[ $# -ne 2 || -z "$1" || -z "$2" ]]; then
  echo "usage: run_client_tests.sh CACHET_BIN WORK_DIR" >&2
  exit 2
fi
CACHET_BIN="$1"
WORK_DIR="$2"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "run_client_tests: skip: '$tool' not found in PATH (the client-library tests need Node.js 18+ and npm)"
    exit 77
  fi
done
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if (( node_major < 18 )); then
  echo "run_client_tests: skip: Node.js $(node --version 2>/dev/null) is older than 18, which the pinned SDKs need"
  exit 77
fi
[[ -x "$CACHET_BIN" ]] || die "CACHET_BIN '$CACHET_BIN' is not an executable file"
CACHET_BIN="$(cd "$(dirname "$CACHET_BIN")" && pwd)/$(basename "$CACHET_BIN")"

mkdir -p "$WORK_DIR" || die "cannot create WORK_DIR '$WORK_DIR'"
WORK_DIR="$(cd "$WORK_DIR" && pwd)"

# --- the pinned client libraries --------------------------------------------------------------
# The tests import "openai" and "@anthropic-ai/sdk", which Node resolves from the importing
# file's folder: the test files are copied beside WORK_DIR/node_modules and run from there.
cp "$SCRIPT_DIR/package.json" "$SCRIPT_DIR/package-lock.json" "$SCRIPT_DIR"/*.mjs "$WORK_DIR/" ||
  die "cannot copy the test files into '$WORK_DIR'"
lock_hash="$(cksum <"$SCRIPT_DIR/package-lock.json")"
stamp="$WORK_DIR/node_modules/.cachet-lock-stamp"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$lock_hash" ]]; then
  log "client libraries already installed in $WORK_DIR/node_modules"
else
  log "installing the pinned client libraries into $WORK_DIR/node_modules (npm ci)"
  if ! npm ci --prefix "$WORK_DIR" --no-audit --no-fund --loglevel=error \
        --prefer-offline --fetch-timeout=60000 --fetch-retries=2 --fetch-retry-mintimeout=2000 \
        --fetch-retry-maxtimeout=10000 >"$WORK_DIR/npm-ci.log" 2>&1; then
    tail -n 30 "$WORK_DIR/npm-ci.log" >&2
    die "'npm ci' failed: is the npm registry reachable? (log: $WORK_DIR/npm-ci.log)"
  fi
  echo "$lock_hash" >"$stamp"
fi
log "node $(node --version), openai $(node -p 'require(process.argv[1]).version' "$WORK_DIR/node_modules/openai/package.json"), @anthropic-ai/sdk $(node -p 'require(process.argv[1]).version' "$WORK_DIR/node_modules/@anthropic-ai/sdk/package.json")"

# --- the model --------------------------------------------------------------------------------
MODEL_DIR="$WORK_DIR/tiny-qwen3"
MODEL_NAME="$(basename "$MODEL_DIR")"
rm -rf "$MODEL_DIR"
if ! "$CACHET_BIN" make-model --arch qwen3 --preset tiny --seed 7 \
      --tokenizer "$SOURCE_DIR/tests/data/tokenizers/qwen3" --out "$MODEL_DIR" \
      >"$WORK_DIR/make-model.log" 2>&1; then
  cat "$WORK_DIR/make-model.log" >&2
  die "make-model failed"
fi

# --- servers ----------------------------------------------------------------------------------
declare -a SERVER_PIDS=()
SERVER_PID=""
SERVER_PORT=""
SERVER_LOG=""

CLIENT_PID=""

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local pid
  if [[ -n "$CLIENT_PID" ]]; then
    kill -TERM "$CLIENT_PID" 2>/dev/null
  fi
  for pid in "${SERVER_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
    fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  node -e 'const s = require("net").createServer();
           s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# GET URL: prints the body, succeeds on a 2xx (curl when there is one, else Node's http).
http_get() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 5 "$1" 2>/dev/null
  else
    node -e 'require("http").get(process.argv[1], { timeout: 5000 }, (res) => {
               let body = ""; res.on("data", (c) => body += c);
               res.on("end", () => { process.stdout.write(body);
                                     process.exit(res.statusCode >= 200 && res.statusCode < 300 ? 0 : 1); });
             }).on("error", () => process.exit(1)).on("timeout", () => process.exit(1));' "$1"
  fi
}

print_log_tail() {
  [[ -n "$1" && -f "$1" ]] || return 0
  echo "----- last 40 lines of $1 -----"
  tail -n 40 "$1"
  echo "-----"
}

# start_server LOG [EXTRA ARGS...]: starts `cachet serve` on a free port; sets SERVER_PID,
# SERVER_PORT, SERVER_LOG. Returns non-zero (with the log's tail printed) if the server exits
# or /health is not {"status": "ok"} within HEALTH_TIMEOUT_S. A port taken between choosing it
# and binding it gets a second and a third try.
start_server() {
  local log_file="$1"; shift
  local attempt deadline body status
  SERVER_LOG="$log_file"
  for attempt in 1 2 3; do
    SERVER_PORT="$(free_port)" || { log "cannot pick a free port"; return 1; }
    log "starting: cachet serve --port $SERVER_PORT${*:+ $*} (log: $log_file)"
    "$CACHET_BIN" serve --model "$MODEL_DIR" --host 127.0.0.1 --port "$SERVER_PORT" \
      --device cpu --threads 1 --block-size 4 "$@" >"$log_file" 2>&1 &
    SERVER_PID=$!
    SERVER_PIDS+=("$SERVER_PID")
    deadline=$((SECONDS + HEALTH_TIMEOUT_S))
    while (( SECONDS < deadline )); do
      if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        wait "$SERVER_PID" 2>/dev/null
        status=$?
        if (( attempt < 3 )) && grep -qi "address already in use\|EADDRINUSE" "$log_file"; then
          log "port $SERVER_PORT was taken; trying another"
          continue 2
        fi
        log "the server exited with status $status before it was ready"
        print_log_tail "$log_file"
        return 1
      fi
      if body="$(http_get "http://127.0.0.1:$SERVER_PORT/health")"; then
        if [[ "$(printf '%s' "$body" | node -e 'let s = ""; process.stdin.on("data", (c) => s += c);
              process.stdin.on("end", () => { try { console.log(JSON.parse(s).status); } catch { console.log("?"); } });')" == "ok" ]]; then
          log "server ready on port $SERVER_PORT (pid $SERVER_PID)"
          return 0
        fi
        log "GET /health answered 2xx without {\"status\": \"ok\"}: $body"
      fi
      sleep 0.25
    done
    log "the server did not answer GET /health within ${HEALTH_TIMEOUT_S} s"
    print_log_tail "$log_file"
    return 1
  done
  return 1
}

# stop_server: SIGTERM, then the server must exit 0 within STOP_TIMEOUT_S.
stop_server() {
  local pid="$SERVER_PID" deadline status
  [[ -n "$pid" ]] || return 0
  SERVER_PID=""
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null
    status=$?
    log "the server (pid $pid) had already exited, with status $status, before SIGTERM"
    return 1
  fi
  kill -TERM "$pid"
  deadline=$((SECONDS + STOP_TIMEOUT_S))
  while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "the server (pid $pid) did not exit within ${STOP_TIMEOUT_S} s of SIGTERM"
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 1
  fi
  wait "$pid"
  status=$?
  if (( status != 0 )); then
    log "the server (pid $pid) exited with status $status after SIGTERM (want 0)"
    return 1
  fi
  log "the server (pid $pid) exited 0 after SIGTERM"
  return 0
}

# --- the runs ---------------------------------------------------------------------------------
PASSED=0
FAILED=0
SKIPPED=0
declare -a FAILURES=()
declare -a FAILED_LOGS=()

# record NAME STATUS LOG: counts an outcome (0 pass, 77 skip, else fail; LOG is shown on failure).
record() {
  local name="$1" status="$2" log_file="$3"
  if (( status == 0 )); then
    PASSED=$((PASSED + 1))
    log "PASS: $name"
  elif (( status == 77 )); then
    SKIPPED=$((SKIPPED + 1))
    log "SKIP: $name"
  else
    FAILED=$((FAILED + 1))
    FAILURES+=("$name")
    FAILED_LOGS+=("$log_file")
    log "FAIL: $name (status $status)"
  fi
}

# run_node_test NAME SCRIPT [API_KEY]: runs a client test against the current server.
run_node_test() {
  local name="$1" script="$2"; shift 2
  log "running $script against http://127.0.0.1:$SERVER_PORT"
  # In the background with `wait`, so that a signal to this script is handled at once.
  (cd "$WORK_DIR" && exec timeout 600 node "$script" "http://127.0.0.1:$SERVER_PORT" "$MODEL_NAME" "$@") &
  CLIENT_PID=$!
  wait "$CLIENT_PID"
  local status=$?
  CLIENT_PID=""
  if (( status == 124 )); then
    log "$script did not finish within 600 s"
  fi
  record "$name" "$status" "$SERVER_LOG"
}

# 1. No API key.
if start_server "$WORK_DIR/server.log"; then
  record "server starts" 0 ""
  run_node_test "openai client" openai_client.test.mjs
  run_node_test "anthropic client" anthropic_client.test.mjs
  stop_server
  record "server exits 0 on SIGTERM" $? "$WORK_DIR/server.log"
else
  record "server starts" 1 ""  # start_server printed the log
fi

# 2. With --api-key: the same tests with the key, plus their 401 checks.
if start_server "$WORK_DIR/server-api-key.log" --api-key "$API_KEY"; then
  record "server with --api-key starts" 0 ""
  run_node_test "openai client with an API key" openai_client.test.mjs "$API_KEY"
  run_node_test "anthropic client with an API key" anthropic_client.test.mjs "$API_KEY"
  stop_server
  record "server with --api-key exits 0 on SIGTERM" $? "$WORK_DIR/server-api-key.log"
else
  record "server with --api-key starts" 1 ""
fi

if (( FAILED > 0 )); then
  log "failed: ${FAILURES[*]}"
  printf '%s\n' "${FAILED_LOGS[@]}" | awk 'NF && !seen[$0]++' | while read -r f; do print_log_tail "$f"; done
fi
echo "serve-clients: $PASSED passed, $FAILED failed, $SKIPPED skipped"
if (( FAILED > 0 )); then
  exit 1
fi
exit 0
