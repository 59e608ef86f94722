#!/usr/bin/env bash
# compare.sh: ringfwd side by side with direct loopback, pasta and haproxy,
# measured in one run on this machine.
#
# Usage: bench/compare.sh [--rounds N] [--quick] [--only LIST] [--build-dir DIR]
#                         [--rebuild] [--out DIR] [--keep-logs]
#   --rounds N      interleaved rounds (default 5); each round runs every
#                   forwarder once, starting one further along each round
#   --quick         smoke test: 1 round, short runs, results under the build
#                   directory (bench/results is left alone)
#   --only LIST     comma-separated subset of direct,ringfwd,pasta,haproxy
#                   (ratios need direct and pasta in the set)
#   --build-dir DIR ringfwd build (default build-bench; configured and built
#                   with cmake/ninja when a binary is missing)
#   --rebuild       run ninja for ringfwd, echo_server and connload first
#   --out DIR       where the CSV and PNG go (default bench/results)
#   --keep-logs     keep the work directory with every log and JSON output
# Needs root (network namespaces), iperf3, python3, gnuplot, and pasta
# (Debian's passt) / haproxy for those columns: scripts/deps.sh --bench.
#
# The setup, the same for every forwarder:
#   - two fresh namespaces: HOST (where the forwarders listen and the client
#     runs) and TARGET (the servers: iperf3 -s on 5201, bench/echo_server
#     on 5202 persistent and 5203 one-shot). Both have only lo up; HOST also
#     gets a veth pair with documentation addresses (198.51.100.1/24,
#     2001:db8::1/64) and default routes, only because pasta refuses to start
#     without a routable interface; no benchmark traffic uses it.
#   - ringfwd: in HOST, `--netns TARGET -t 10001-10003:5201-5203`.
#   - pasta: in HOST, `--config-net --netns TARGET --netns-only --runas 0:0
#     -f -t 10011-10013:5201-5203 -u none -T none -U none` (explicit ports and
#     -T/-U none: no port scanning; the loopback source makes it splice).
#   - haproxy: in HOST, tcp mode, one thread (nbthread 1, as the other two
#     have one data-path thread), option splice-request and splice-response,
#     listening on 127.0.0.1:10021-10023 and connecting with haproxy's
#     `namespace TARGET` server option. So haproxy has exactly the path of
#     ringfwd and pasta (host loopback in, target loopback out) instead of a
#     veth hop that would charge it for a link the others do not cross.
#   - direct: the client runs in TARGET and connects to the servers
#     themselves: the cost of the two loopback legs without a forwarder.
#   Every tool keeps its defaults otherwise (ringfwd 1 MiB pipes and reno on
#   its loopback connections whatever the system default, pasta's own
#   pipe sizes, haproxy's default tune.pipesize).
#
# Metrics, per forwarder and round:
#   tput_gbps        iperf3 -t T, client to server, receiver's rate
#   cpu_ms_per_gib   forwarder CPU time (utime+stime of every thread of the
#                    process, plus its children, live or reaped:
#                    /proc/PID/stat) over an
#                    iperf3 -n BYTES transfer, per GiB received
#   conn_per_s       connload rate: N connections, 32 at once, each connect,
#                    1-byte echo, server closes, client closes
#   cpu_us_per_conn  forwarder CPU time over that run, per connection
#   srv_us_per_conn, cli_us_per_conn  the same for the endpoints: echo_server
#                    (/proc/PID/stat) and connload (its own rusage); with
#                    direct they are the whole cost of a connection
#   path_us_per_conn forwarder + server + client: the CPU the connection rate
#                    runs on (two cores, three processes)
#   p50_us, p99_us   connload latency: 1-byte ping-pong round trips on one
#                    persistent connection
# The summary has the median and min-max over the rounds, ratios to direct
# and to pasta from the medians, and the latency overhead (each round's
# percentile minus direct's in the same round, median over rounds).
# Outputs: a table on stdout, OUT/compare-DATE.csv and
# OUT/latest.csv (summary), OUT/compare-DATE-raw.csv (every round), and
# OUT/compare.png.
#
# Everything started here is killed on exit and the namespaces are deleted.
# Each command runs under `timeout`; the loops are bounded by the round count.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS=5
QUICK=0
ONLY="direct,ringfwd,pasta,haproxy"
BUILD="$REPO/build-bench"
OUT=""
KEEP_LOGS=0
REBUILD=0

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case "$1" in
    --rounds) ROUNDS="${2:?}"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --only) ONLY="${2:?}"; shift 2 ;;
    --build-dir) BUILD="${2:?}"; shift 2 ;;
    --out) OUT="${2:?}"; shift 2 ;;
    --keep-logs) KEEP_LOGS=1; shift ;;
    --rebuild) REBUILD=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]?$ ]] || { echo "compare.sh: --rounds takes 1..99" >&2; exit 2; }

if ((QUICK)); then
  ROUNDS=1; TPUT_SECONDS=1; BULK_BYTES=512M; CONNS=2000; RTTS=2000
  OUT="${OUT:-$BUILD/compare-quick}"
else
  TPUT_SECONDS=5; BULK_BYTES=4G; CONNS=20000; RTTS=20000
  OUT="${OUT:-$REPO/bench/results}"
fi
CONCURRENCY=32

IFS=',' read -r -a FWDS <<<"$ONLY"
for f in "${FWDS[@]}"; do
  case "$f" in direct|ringfwd|pasta|haproxy) ;; *)
    echo "compare.sh: unknown forwarder '$f' (direct, ringfwd, pasta, haproxy)" >&2; exit 2 ;;
  esac
done
has() { [[ ",$ONLY," == *",$1,"* ]]; }

# ---- prerequisites ----------------------------------------------------------
[[ $(id -u) -eq 0 ]] || { echo "compare.sh: needs root (network namespaces)" >&2; exit 1; }
need=(ip iperf3 python3 gnuplot timeout ss)
has pasta && need+=(pasta)
has haproxy && need+=(haproxy)
for t in "${need[@]}"; do
  command -v "$t" >/dev/null || { echo "compare.sh: $t not found (scripts/deps.sh --bench)" >&2; exit 1; }
done
BIN="$BUILD/bin"
if ((REBUILD)) || [[ ! -x "$BIN/ringfwd" || ! -x "$BIN/echo_server" || ! -x "$BIN/connload" ]]; then
  echo "compare.sh: building ringfwd, echo_server and connload in $BUILD" >&2
  [[ -f "$BUILD/build.ninja" ]] ||
    cmake -S "$REPO" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  ninja -C "$BUILD" ringfwd echo_server connload >/dev/null
fi

# ---- state and cleanup ------------------------------------------------------
HOST_NS="rfb-host-$$"
TGT_NS="rfb-tgt-$$"
WORK="$(mktemp -d /tmp/ringfwd-compare.XXXXXX)"
PIDS=()
declare -A FWD_PID=()
CLEANED=0

cleanup() {
  ((CLEANED)) && return
  CLEANED=1
  local p ns
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 20); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  # Anything still inside our own namespaces was started by this script
  # (pasta forks, for one).
  for ns in "$HOST_NS" "$TGT_NS"; do
    if [[ -e "/run/netns/$ns" ]]; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  if ((KEEP_LOGS)); then echo "compare.sh: logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[compare] %s\n' "$*" >&2; }

# ---- namespaces and servers -------------------------------------------------
ip netns add "$HOST_NS"
ip netns add "$TGT_NS"
for ns in "$HOST_NS" "$TGT_NS"; do
  ip -n "$ns" link set lo up
  # Room for tens of thousands of connections per round; the defaults
  # already reuse TIME_WAIT ports on loopback (tcp_tw_reuse=2).
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="20000 60999"
done
ip -n "$HOST_NS" link add rfb0 type veth peer name rfb1
ip -n "$HOST_NS" addr add 198.51.100.1/24 dev rfb0
ip -n "$HOST_NS" addr add 2001:db8::1/64 dev rfb0 nodad
ip -n "$HOST_NS" link set rfb0 up
ip -n "$HOST_NS" link set rfb1 up
ip -n "$HOST_NS" route add default via 198.51.100.254
ip -n "$HOST_NS" -6 route add default via 2001:db8::fffe

# The longest the run may take: a bound for the servers' own lifetime.
LIFETIME=$((600 + ROUNDS * 4 * 300))

# Starts "$@" in the background in namespace $1 under a `timeout` of the
# whole run's length; logs to $WORK/$2.log. Sets LAST_PID (the timeout).
LAST_PID=""
start_in() {
  local ns="$1" name="$2"
  shift 2
  ip netns exec "$ns" timeout -k 5 "$LIFETIME" "$@" >"$WORK/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# Waits (at most 5 s) until something listens on TCP port $2 in namespace $1.
wait_listen() {
  local ns="$1" port="$2"
  for _ in $(seq 50); do
    [[ -n "$(ip netns exec "$ns" ss -Hltn "sport = :$port" 2>/dev/null)" ]] && return 0
    sleep 0.1
  done
  echo "compare.sh: nothing listens on port $port in $ns" >&2
  return 1
}

# The pid of the real process under a `timeout` wrapper.
child_of() {
  local p="$1"
  for _ in $(seq 50); do
    local c
    c="$(awk '{print $1}' "/proc/$p/task/$p/children" 2>/dev/null)"
    [[ -n "$c" ]] && { echo "$c"; return 0; }
    sleep 0.1
  done
  return 1
}

start_in "$TGT_NS" iperf3 iperf3 -s -p 5201
start_in "$TGT_NS" echo_server "$BIN/echo_server" --port 5202 --oneshot-port 5203 \
  --seconds "$LIFETIME"
ECHO_PID=$(child_of "$LAST_PID")
wait_listen "$TGT_NS" 5201
wait_listen "$TGT_NS" 5203

declare -A BASE_PORT=([direct]=5201 [ringfwd]=10001 [pasta]=10011 [haproxy]=10021)

if has ringfwd; then
  start_in "$HOST_NS" ringfwd "$BIN/ringfwd" --netns "$TGT_NS" -t 10001-10003:5201-5203
  FWD_PID[ringfwd]=$(child_of "$LAST_PID")
  wait_listen "$HOST_NS" 10003
fi
if has pasta; then
  start_in "$HOST_NS" pasta pasta --config-net --netns "$TGT_NS" --netns-only \
    --runas 0:0 -f -q -P "$WORK/pasta.pid" -t 10011-10013:5201-5203 -u none -T none -U none
  wait_listen "$HOST_NS" 10013
  for _ in $(seq 50); do [[ -s "$WORK/pasta.pid" ]] && break; sleep 0.1; done
  if [[ -s "$WORK/pasta.pid" ]]; then
    FWD_PID[pasta]=$(cat "$WORK/pasta.pid")
  else
    FWD_PID[pasta]=$(child_of "$LAST_PID")
  fi
fi
if has haproxy; then
  {
    echo "global"
    echo "  nbthread 1"
    echo "  maxconn 4096"
    echo "defaults"
    echo "  mode tcp"
    echo "  timeout connect 5s"
    echo "  timeout client 120s"
    echo "  timeout server 120s"
    echo "  option splice-request"
    echo "  option splice-response"
    for i in 1 2 3; do
      echo "listen p$i"
      echo "  bind 127.0.0.1:$((10020 + i))"
      echo "  server s$i 127.0.0.1:$((5200 + i)) namespace $TGT_NS"
    done
  } >"$WORK/haproxy.cfg"
  start_in "$HOST_NS" haproxy haproxy -db -f "$WORK/haproxy.cfg"
  FWD_PID[haproxy]=$(child_of "$LAST_PID")
  wait_listen "$HOST_NS" 10023
fi

HZ=$(getconf CLK_TCK)

# CPU time in clock ticks of process $1 and its descendants: utime+stime
# (all threads) plus cutime+cstime (children it has reaped: pasta opens
# target-side sockets in short-lived clone()d children), then the same for
# each live child, recursively (bounded depth).
cpu_ticks() {
  local pid="$1" depth="${2:-0}" total=0 s rest kid
  if [[ -r "/proc/$pid/stat" ]]; then
    s="$(cat "/proc/$pid/stat" 2>/dev/null || true)"
    rest="${s##*) }"
    # shellcheck disable=SC2206
    local f=($rest)
    ((total += f[11] + f[12] + f[13] + f[14])) || true
    if ((depth < 4)); then
      # shellcheck disable=SC2013  # children holds pids separated by spaces
      for kid in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        ((total += $(cpu_ticks "$kid" $((depth + 1))))) || true
      done
    fi
  fi
  echo "$total"
}

fwd_ticks() { if [[ "$1" == direct ]]; then echo 0; else cpu_ticks "${FWD_PID[$1]}"; fi; }
# Microseconds per connection of the rate run, from clock ticks $1.
per_conn() { awk -v t="$1" -v hz="$HZ" -v n="$CONNS" 'BEGIN{printf "%.2f", t / hz * 1e6 / n}'; }

RAW="$WORK/raw.csv"
echo "round,forwarder,metric,value" >"$RAW"
record() { echo "$1,$2,$3,$4" >>"$RAW"; }

json_field() {
  python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
if "error" in d: sys.exit("iperf3: " + d["error"])
e=d["end"]["sum_received"]
print(e[sys.argv[2]])' "$1" "$2"
}

# Runs every measurement for forwarder $2 in round $1.
measure() {
  local round="$1" fwd="$2" ns="$HOST_NS" base="${BASE_PORT[$2]}" t0 t1 out
  [[ "$fwd" == direct ]] && ns="$TGT_NS"
  local tag="$WORK/r$round-$fwd"

  # Throughput.
  if timeout $((TPUT_SECONDS + 20)) ip netns exec "$ns" iperf3 -c 127.0.0.1 -p "$base" \
    -t "$TPUT_SECONDS" -J >"$tag-tput.json" 2>&1 &&
    out=$(json_field "$tag-tput.json" bits_per_second); then
    record "$round" "$fwd" tput_gbps "$(awk -v b="$out" 'BEGIN{printf "%.3f", b/1e9}')"
  else
    log "round $round $fwd: iperf3 throughput run failed (see $tag-tput.json)"
  fi

  # CPU per GiB over a fixed-size transfer.
  t0=$(fwd_ticks "$fwd")
  if timeout 120 ip netns exec "$ns" iperf3 -c 127.0.0.1 -p "$base" -n "$BULK_BYTES" \
    -J >"$tag-bulk.json" 2>&1 && out=$(json_field "$tag-bulk.json" bytes); then
    t1=$(fwd_ticks "$fwd")
    if [[ "$fwd" != direct ]]; then
      record "$round" "$fwd" cpu_ms_per_gib \
        "$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v b="$out" \
          'BEGIN{printf "%.1f", t / hz * 1000 / (b / 1073741824)}')"
    fi
  else
    log "round $round $fwd: iperf3 -n $BULK_BYTES failed (see $tag-bulk.json)"
  fi

  # Connection rate and CPU per connection, the forwarder's and the
  # endpoints'.
  local e0 e1 fwd_us srv_us cli_us
  t0=$(fwd_ticks "$fwd")
  e0=$(cpu_ticks "$ECHO_PID")
  if out=$(timeout 150 ip netns exec "$ns" "$BIN/connload" rate --port $((base + 2)) \
    --conns "$CONNS" --concurrency "$CONCURRENCY" --seconds 120 2>"$tag-rate.err"); then
    t1=$(fwd_ticks "$fwd")
    e1=$(cpu_ticks "$ECHO_PID")
    record "$round" "$fwd" conn_per_s "$(sed -n 's/.*rate=\([0-9.]*\).*/\1/p' <<<"$out")"
    fwd_us=$(per_conn $((t1 - t0)))
    srv_us=$(per_conn $((e1 - e0)))
    cli_us=$(sed -n 's/.*cpu_us=\([0-9]*\).*/\1/p' <<<"$out" |
      awk -v n="$CONNS" 'NF{printf "%.2f", $1 / n}')
    if [[ "$fwd" != direct ]]; then record "$round" "$fwd" cpu_us_per_conn "$fwd_us"; fi
    record "$round" "$fwd" srv_us_per_conn "$srv_us"
    if [[ -n "$cli_us" ]]; then
      record "$round" "$fwd" cli_us_per_conn "$cli_us"
      record "$round" "$fwd" path_us_per_conn \
        "$(awk -v a="$fwd_us" -v b="$srv_us" -v c="$cli_us" 'BEGIN{printf "%.2f", a + b + c}')"
    fi
  else
    log "round $round $fwd: connection-rate run failed: $out $(head -3 "$tag-rate.err")"
  fi

  # Request/response latency.
  if out=$(timeout 150 ip netns exec "$ns" "$BIN/connload" latency --port $((base + 1)) \
    --count "$RTTS" --seconds 120 2>"$tag-lat.err"); then
    record "$round" "$fwd" p50_us "$(sed -n 's/.*p50_us=\([0-9.]*\).*/\1/p' <<<"$out")"
    record "$round" "$fwd" p99_us "$(sed -n 's/.*p99_us=\([0-9.]*\).*/\1/p' <<<"$out")"
  else
    log "round $round $fwd: latency run failed: $out $(head -3 "$tag-lat.err")"
  fi
}

DATE="$(date +%Y%m%d-%H%M%S)"
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
log "forwarders: ${FWDS[*]}; $ROUNDS round(s); $(nproc) CPUs; load average $LOAD0"
awk -v l="${LOAD0%% *}" -v n="$(nproc)" 'BEGIN{exit !(l > n / 2)}' &&
  log "warning: the machine is busy (load $LOAD0): numbers will be noisy"

n=${#FWDS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
  for ((i = 0; i < n; i++)); do
    fwd="${FWDS[$(((i + r - 1) % n))]}"
    log "round $r/$ROUNDS: $fwd"
    measure "$r" "$fwd"
  done
done
LOAD1="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- summary, CSV and plot --------------------------------------------------
mkdir -p "$OUT"
cp "$RAW" "$OUT/compare-$DATE-raw.csv"
VERSIONS="ringfwd built $(date -r "$BIN/ringfwd" '+%F %H:%M') (tree at"
VERSIONS+=" $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?') now);"
VERSIONS+=" passt $(dpkg-query -W -f='${Version}' passt 2>/dev/null || echo '?');"
VERSIONS+=" haproxy $(haproxy -v 2>/dev/null | awk 'NR==1{print $3}');"
VERSIONS+=" iperf3 $(iperf3 --version | awk 'NR==1{print $2}'); kernel $(uname -r); $(nproc) CPUs"

python3 - "$RAW" "$OUT" "$DATE" "$ONLY" "$VERSIONS" "$LOAD0" "$LOAD1" <<'PY'
import csv, statistics, sys
raw, out, date, only, versions, load0, load1 = sys.argv[1:8]
fwds = only.split(",")
vals = {}
by_round = {}  # (forwarder, metric) -> {round: value}
for row in csv.DictReader(open(raw)):
    if row["value"] == "":
        continue
    vals.setdefault((row["forwarder"], row["metric"]), []).append(float(row["value"]))
    by_round.setdefault((row["forwarder"], row["metric"]), {})[row["round"]] = float(row["value"])

metrics = [  # name, label, unit, higher is better
    ("tput_gbps", "throughput", "Gbit/s", True),
    ("cpu_ms_per_gib", "CPU per GiB", "ms", False),
    ("conn_per_s", "connection rate", "conn/s", True),
    ("cpu_us_per_conn", "CPU per connection", "us", False),
    ("srv_us_per_conn", "server CPU per conn", "us", False),
    ("cli_us_per_conn", "client CPU per conn", "us", False),
    ("path_us_per_conn", "all CPU per conn", "us", False),
    ("p50_us", "latency p50", "us", False),
    ("p99_us", "latency p99", "us", False),
]

def stat(f, m):
    v = vals.get((f, m))
    if not v:
        return None
    return statistics.median(v), min(v), max(v), len(v)

def overhead(f, q):
    a, d = by_round.get((f, q), {}), by_round.get(("direct", q), {})
    return [a[r] - d[r] for r in a if r in d]

def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None

def fmt(x, nd=None):
    if x is None:
        return "-"
    if nd is None:
        nd = 0 if abs(x) >= 1000 else 1 if abs(x) >= 10 else 2
    return f"{x:.{nd}f}"

rows = []
for f in fwds:
    for m, label, unit, _ in metrics:
        s = stat(f, m)
        if s is None:
            continue
        med, lo, hi, n = s
        d = stat("direct", m)
        p = stat("pasta", m)
        rows.append(dict(forwarder=f, metric=m, unit=unit, median=med, min=lo, max=hi, rounds=n,
                         vs_direct=ratio(med, d[0] if d else None),
                         vs_pasta=ratio(med, p[0] if p else None)))
    # Latency overhead: the forwarder's percentile minus direct's in the same
    # round, then the median over rounds. Rounds minutes apart drift by more
    # than the overhead itself (direct's p50 moves by 5-10 us here), and a
    # difference of two medians would carry that drift.
    for q in ("p50_us", "p99_us"):
        if f == "direct":
            continue
        diffs = overhead(f, q)
        if not diffs:
            continue
        pd = overhead("pasta", q)
        rows.append(dict(forwarder=f, metric=q.replace("_us", "_overhead_us"), unit="us",
                         median=statistics.median(diffs), min=min(diffs), max=max(diffs),
                         rounds=len(diffs), vs_direct=None,
                         vs_pasta=ratio(statistics.median(diffs),
                                        statistics.median(pd) if pd else None)))

# A forwarder adds a server endpoint and a client endpoint to the path: its
# CPU per connection beside what direct's echo_server and connload (one
# server, one client) spend on the same connections.
ends = [stat("direct", m) for m in ("srv_us_per_conn", "cli_us_per_conn")]
ends_us = ends[0][0] + ends[1][0] if all(ends) else None
for f in fwds:
    s = stat(f, "cpu_us_per_conn")
    if s and ends_us:
        rows.append(dict(forwarder=f, metric="cpu_per_conn_vs_endpoints", unit="x",
                         median=s[0] / ends_us, min=s[1] / ends_us, max=s[2] / ends_us,
                         rounds=s[3], vs_direct=None, vs_pasta=None))

def write_csv(path):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["date", "forwarder", "metric", "unit", "median", "min", "max", "rounds",
                    "ratio_vs_direct", "ratio_vs_pasta"])
        for r in rows:
            w.writerow([date, r["forwarder"], r["metric"], r["unit"], f"{r['median']:.4g}",
                        f"{r['min']:.4g}", f"{r['max']:.4g}", r["rounds"],
                        "" if r["vs_direct"] is None else f"{r['vs_direct']:.3f}",
                        "" if r["vs_pasta"] is None else f"{r['vs_pasta']:.3f}"])
        fh.write(f"# {versions}; load average {load0} before, {load1} after\n")

write_csv(f"{out}/compare-{date}.csv")
write_csv(f"{out}/latest.csv")

get = {(r["forwarder"], r["metric"]): r for r in rows}
print()
print(f"ringfwd side-by-side, {date}: median [min-max] over rounds")
print(f"{versions}; load average {load0} before, {load1} after")
width = 24
head = f"{'metric':<26}" + "".join(f"{f:>{width}}" for f in fwds)
print(head)
print("-" * len(head))
all_metrics = metrics + [("p50_overhead_us", "p50 over direct", "us", False),
                         ("p99_overhead_us", "p99 over direct", "us", False)]
for m, label, unit, _ in all_metrics:
    line = f"{label + ' (' + unit + ')':<26}"
    for f in fwds:
        r = get.get((f, m))
        cell = "-" if r is None else f"{fmt(r['median'])} [{fmt(r['min'])}-{fmt(r['max'])}]"
        line += f"{cell:>{width}}"
    print(line)
for base, key in (("direct", "vs_direct"), ("pasta", "vs_pasta")):
    if base not in fwds:
        continue
    print()
    print(f"ratios of medians against {base} (x)")
    for m, label, unit, hib in all_metrics:
        cells = [get.get((f, m), {}).get(key) for f in fwds]
        if all(c is None for c in cells):
            continue
        better = "higher is better" if hib else "lower is better"
        print(f"{label + ' (' + better + ')':<40}" +
              "".join(f"{f + ' ' + fmt(c, 2) if c is not None else '':>16}"
                      for f, c in zip(fwds, cells)))

if ends_us:
    print()
    print(f"CPU per connection against direct's server + client ({fmt(ends_us)} us), "
          "the two endpoints a forwarder adds (x, lower is better)")
    print(f"{'':<40}" + "".join(
        f"{f + ' ' + fmt(get[(f, 'cpu_per_conn_vs_endpoints')]['median'], 2):>16}"
        for f in fwds if (f, "cpu_per_conn_vs_endpoints") in get))

# Data for gnuplot: one line per forwarder; .plot-fwd.dat without direct.
def g(f, m, k="median"):
    r = get.get((f, m))
    if r is None and k in ("median", "min", "max"):
        s = stat(f, m)
        r = None if s is None else dict(median=s[0], min=s[1], max=s[2])
    return "NaN" if r is None or r.get(k) is None else f"{r[k]:.4g}"
for name, keep in ((".plot.dat", fwds), (".plot-fwd.dat", [f for f in fwds if f != "direct"])):
    with open(f"{out}/{name}", "w") as fh:
        fh.write("# fwd tput_rel conn_rel cpu_gib lo hi cpu_conn lo hi p50 lo hi p99 lo hi "
                 "tput conn\n")
        for f in keep:
            fh.write(" ".join([f, g(f, "tput_gbps", "vs_direct"), g(f, "conn_per_s", "vs_direct"),
                               g(f, "cpu_ms_per_gib"), g(f, "cpu_ms_per_gib", "min"),
                               g(f, "cpu_ms_per_gib", "max"), g(f, "cpu_us_per_conn"),
                               g(f, "cpu_us_per_conn", "min"), g(f, "cpu_us_per_conn", "max"),
                               g(f, "p50_us"), g(f, "p50_us", "min"), g(f, "p50_us", "max"),
                               g(f, "p99_us"), g(f, "p99_us", "min"), g(f, "p99_us", "max"),
                               g(f, "tput_gbps"), g(f, "conn_per_s")])
                     + "\n")
PY

if has direct; then
  FIRST_PANEL='set title "relative to direct loopback (higher is better)"
plot "'"$OUT"'/.plot.dat" using 2:xtic(1) title "throughput", "" using 3 title "connection rate"'
else
  FIRST_PANEL='set title "throughput (Gbit/s, higher is better)"
plot "'"$OUT"'/.plot.dat" using 16:xtic(1) title "throughput"'
fi
NPLOT_FWD=${#FWDS[@]}
has direct && NPLOT_FWD=$((NPLOT_FWD - 1))
gnuplot <<GP || log "gnuplot failed; no plot"
set terminal pngcairo size 1200,860 font ",10"
set output "$OUT/compare.png"
set multiplot layout 2,2 title "ringfwd side by side, $DATE, $(nproc) CPUs, load average $LOAD0 at start: medians of $ROUNDS round(s), bars min-max"
set style fill solid 0.8 border -1
set grid ytics
set yrange [0:*]
set xrange [-0.6:$((${#FWDS[@]} - 1)).6]
set style data histograms
set style histogram clustered gap 1
set boxwidth 0.9
set key top right
$FIRST_PANEL
unset key
set boxwidth 0.6
set xrange [-0.6:$((NPLOT_FWD - 1)).6]
set title "forwarder CPU per GiB moved (ms, lower is better)"
plot "$OUT/.plot-fwd.dat" using 0:4:xtic(1) with boxes lc rgb "#4477aa", \
     '' using 0:4:5:6 with yerrorbars lc rgb "black" pt 7 ps 0.4
set title "forwarder CPU per connection (us, lower is better)"
plot "$OUT/.plot-fwd.dat" using 0:7:xtic(1) with boxes lc rgb "#cc6677", \
     '' using 0:7:8:9 with yerrorbars lc rgb "black" pt 7 ps 0.4
set key top left
set logscale y
set yrange [*:*]
set boxwidth 0.35
set xrange [-0.6:$((${#FWDS[@]} - 1)).6]
set title "latency, 1-byte ping-pong on one connection (us, log scale)"
plot "$OUT/.plot.dat" using (\$0-0.18):10:xtic(1) with boxes lc rgb "#228833" title "p50", \
     '' using (\$0-0.18):10:11:12 with yerrorbars lc rgb "black" pt 7 ps 0.4 notitle, \
     '' using (\$0+0.18):13 with boxes lc rgb "#ccbb44" title "p99", \
     '' using (\$0+0.18):13:14:15 with yerrorbars lc rgb "black" pt 7 ps 0.4 notitle
unset multiplot
GP
rm -f "$OUT/.plot.dat" "$OUT/.plot-fwd.dat"
log "results: $OUT/compare-$DATE.csv, $OUT/latest.csv, $OUT/compare.png"
