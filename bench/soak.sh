#!/usr/bin/env bash
# soak.sh: ringfwd under mixed traffic and table swaps for a long while.
#
# Usage: bench/soak.sh [--seconds N] [--ci] [--build-dir DIR] [--base PORT]
#                      [--keep-logs]
#   --seconds N     how long (default 600; 60 with --ci or when CI=true)
#   --ci            the short run of CI: 60 s
#   --build-dir DIR where ringfwd, pesto and soak_load are (default build;
#                   nothing is built here: ninja -C DIR ringfwd pesto soak_load)
#   --base PORT     first port of the set used (default 17000)
#   --keep-logs     keep the work directory (daemon log, soak output)
# Needs root (network namespaces).
#
# Two fresh namespaces, HOST (ringfwd runs there, clients connect there) and
# TARGET, lo only. ringfwd forwards with B = --base:
#   -t B+11:B+1  -t B+12:B+2  (HOST TCP rules: bulk and churn)
#   -u B+13:B+3               (HOST UDP rule: request/response)
#   -T B+14:B+4               (SPLICE TCP rule: TARGET to the HOST side)
# and bench/soak_load.cc runs, all at once: repeated 64 MiB echo transfers
# (every byte compared), 16 MiB transfers in the SPLICE direction,
# connection churn, UDP request/response, and a `pesto -A`/`-D` of other
# ports every second, while it samples the daemon's descriptors, VmRSS and
# CPU time. Pass: no byte corrupted or lost, no failed connection, request
# or swap, no growth of descriptors or VmRSS between the first and the last
# minute (a quarter of the run when shorter), the daemon's CPU time per byte
# within 25% of the first minute's, and a clean exit 0 on SIGTERM at the end.
# Prints a summary; exits 1 on any failure, 2 on bad usage or setup.
# Everything started here is killed and the namespaces deleted on exit.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
SECS=""
BUILD="$REPO/build"
BASE=17000
KEEP_LOGS=0

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case "$1" in
    --seconds) SECS="${2:?--seconds needs a value}"; shift 2 ;;
    --ci) SECS=60; shift ;;
    --build-dir) BUILD="${2:?--build-dir needs a value}"; shift 2 ;;
    --base) BASE="${2:?--base needs a value}"; shift 2 ;;
    --keep-logs) KEEP_LOGS=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "soak.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
if [[ -z "$SECS" ]]; then
  if [[ "${CI:-}" == "true" ]]; then SECS=60; else SECS=600; fi
fi
if ! [[ "$SECS" =~ ^[0-9]+$ ]] || ((SECS < 20)); then
  echo "soak.sh: --seconds must be a number >= 20" >&2
  exit 2
fi
if ! [[ "$BASE" =~ ^[0-9]+$ ]] || ((BASE < 1024 || BASE > 65000)); then
  echo "soak.sh: --base must be a port between 1024 and 65000" >&2
  exit 2
fi
BUILD="$(cd "$BUILD" 2>/dev/null && pwd)" || { echo "soak.sh: no build directory" >&2; exit 2; }
for bin in ringfwd pesto soak_load; do
  if [[ ! -x "$BUILD/bin/$bin" ]]; then
    echo "soak.sh: $BUILD/bin/$bin missing; build it: ninja -C $BUILD ringfwd pesto soak_load" >&2
    exit 2
  fi
done
if ((EUID != 0)); then
  echo "soak.sh: needs root (network namespaces)" >&2
  exit 2
fi

HOST_NS="rfsoak-$$-host"
TARGET_NS="rfsoak-$$-target"
WORK="$(mktemp -d /tmp/rfsoak-XXXXXX)"
DAEMON_PID=""
LOAD_PID=""

# shellcheck disable=SC2317  # reached through the trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "$LOAD_PID" "$DAEMON_PID"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  ip netns del "$HOST_NS" 2>/dev/null || true
  ip netns del "$TARGET_NS" 2>/dev/null || true
  if ((KEEP_LOGS)); then
    echo "soak.sh: logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for ns in "$HOST_NS" "$TARGET_NS"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done

p() { echo $((BASE + $1)); }
CTL="$WORK/ctl.sock"
LOG="$WORK/ringfwd.log"
echo "soak.sh: ${SECS} s, ringfwd $BUILD/bin/ringfwd, namespaces $HOST_NS and $TARGET_NS"
ip netns exec "$HOST_NS" "$BUILD/bin/ringfwd" --netns "$TARGET_NS" \
  -t "$(p 11):$(p 1)" -t "$(p 12):$(p 2)" -u "$(p 13):$(p 3)" -T "$(p 14):$(p 4)" \
  -c "$CTL" --log-file "$LOG" --pid "$WORK/ringfwd.pid" &
DAEMON_PID=$!
for _ in $(seq 1 500); do
  grep -q " ready" "$LOG" 2>/dev/null && break
  kill -0 "$DAEMON_PID" 2>/dev/null || break
  sleep 0.01
done
if ! grep -q " ready" "$LOG" 2>/dev/null; then
  echo "soak.sh: ringfwd did not start:" >&2
  cat "$LOG" >&2 2>/dev/null || true
  exit 2
fi

rc=0
timeout --signal=KILL $((SECS + 180)) "$BUILD/bin/soak_load" \
  --host-ns "/run/netns/$HOST_NS" --target-ns "/run/netns/$TARGET_NS" \
  --pid "$DAEMON_PID" --pesto "$BUILD/bin/pesto" --ctl "$CTL" \
  --seconds "$SECS" --base "$BASE" &
LOAD_PID=$!
wait "$LOAD_PID" || rc=$?
LOAD_PID=""

# The daemon: still there, and a clean exit.
if kill -0 "$DAEMON_PID" 2>/dev/null; then
  kill -TERM "$DAEMON_PID"
  drc=0
  for _ in $(seq 1 300); do
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.01
  done
  if kill -0 "$DAEMON_PID" 2>/dev/null; then
    echo "FAIL: ringfwd did not exit within 3 s of SIGTERM"
    rc=1
  else
    wait "$DAEMON_PID" || drc=$?
    if ((drc != 0)); then
      echo "FAIL: ringfwd exited with status $drc"
      rc=1
    fi
  fi
  DAEMON_PID=""
else
  echo "FAIL: ringfwd is gone"
  rc=1
fi
warnings=$(grep -c " warning: " "$LOG" || true)
errors=$(grep -c " error: " "$LOG" || true)
resets=$(grep -c "connection reset" "$LOG" || true)
echo "daemon log: $warnings warnings, $errors errors, $resets connections reset"
if ((errors > 0)); then
  grep " error: " "$LOG" | head -5
fi
if ((rc == 0)); then
  echo "soak.sh: PASS"
else
  echo "soak.sh: FAIL (status $rc)"
  cp "$LOG" "/tmp/rfsoak-last-ringfwd.log" 2>/dev/null && echo "daemon log: /tmp/rfsoak-last-ringfwd.log"
fi
exit "$rc"
