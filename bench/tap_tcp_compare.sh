#!/bin/bash
# tap_tcp_compare.sh: TCP through the tap link, ringfwd beside pasta (Debian's
# package), in the same run with the same setup.
#
#   bench/tap_tcp_compare.sh [--build-dir DIR] [--rounds N] [--seconds S]
#                            [--mtus "1500 65520"] [--out DIR]
#
# Namespaces (documentation addresses only): a host H where the daemons run,
# with a veth to an outside namespace O (192.0.2.1 <-> 192.0.2.2, H's default
# route) holding iperf3 -s and bench/echo_server; two guests behind a tap
# each, G1 made by `ringfwd --netns G1 --tap`, G2 by `pasta --config-net`
# (-t none -u none -T none -U none: no port scanning), both 198.51.100.2/24
# with gateway 198.51.100.1 and the MTU under test. Per MTU and round, for
# each daemon (the order alternates between rounds): iperf3 from the guest
# to O (guest to host) and with -R (host to guest), and a 1-byte ping-pong
# (connload latency) from the guest to O. The daemon's CPU time (utime+stime
# of /proc/PID/stat) is read around each transfer: CPU seconds per GiB.
# Prints medians [min-max] and ringfwd/pasta ratios, writes a CSV and a PNG
# (gnuplot) to --out (default bench/results). Needs root, iperf3, pasta,
# python3 and gnuplot (scripts/deps.sh --bench).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$REPO/build"
ROUNDS=3
SECS=5
MTUS="1500 65520"
OUT="$REPO/bench/results"
while (($#)); do
  case "$1" in
    --build-dir) BUILD="$(cd "${2:?}" && pwd)"; shift 2 ;;
    --rounds) ROUNDS="${2:?}"; shift 2 ;;
    --seconds) SECS="${2:?}"; shift 2 ;;
    --mtus) MTUS="${2:?}"; shift 2 ;;
    --out) OUT="${2:?}"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "tap_tcp_compare.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
BIN=$BUILD/bin
for b in ringfwd echo_server connload; do
  [[ -x "$BIN/$b" ]] || { echo "tap_tcp_compare.sh: $BIN/$b missing (ninja -C $BUILD)" >&2; exit 2; }
done
for t in iperf3 pasta python3; do
  command -v "$t" >/dev/null || { echo "tap_tcp_compare.sh: $t not installed (scripts/deps.sh --bench)" >&2; exit 2; }
done

P=taptcp-$$
H=$P-h; O=$P-o; G1=$P-g1; G2=$P-g2
WORK=$(mktemp -d /tmp/tap_tcp_compare.XXXXXX)
DPIDS=""
stop_daemons() {
  for pid in $DPIDS; do kill "$pid" 2>/dev/null || true; done
  for pid in $DPIDS; do wait "$pid" 2>/dev/null || true; done
  DPIDS=""
}
cleanup() {
  stop_daemons
  for pid in ${SPIDS:-}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in $H $O $G1 $G2; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

for n in $H $O; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add out0 netns "$H" type veth peer name out0 netns "$O"
ip -n "$H" addr add 192.0.2.1/24 dev out0; ip -n "$H" link set out0 up
ip -n "$O" addr add 192.0.2.2/24 dev out0; ip -n "$O" link set out0 up
ip -n "$H" route add default via 192.0.2.2
SPIDS=""
ip netns exec "$O" iperf3 -s -B 192.0.2.2 -p 5201 >/dev/null 2>&1 & SPIDS="$SPIDS $!"
ip netns exec "$O" "$BIN/echo_server" --addr 192.0.2.2 --port 5202 --seconds 100000 \
  >/dev/null 2>&1 & SPIDS="$SPIDS $!"

# Starts both daemons for MTU $1: sets RF and PA (pids).
start_daemons() {
  local mtu=$1
  for g in $G1 $G2; do ip netns del "$g" 2>/dev/null || true; ip netns add "$g"; done
  ip netns exec "$H" "$BIN/ringfwd" --netns "$G1" --tap --mtu "$mtu" --address 198.51.100.2/24 \
    --gateway 198.51.100.1 >"$WORK/ringfwd-$mtu.log" 2>&1 & RF=$!
  ip netns exec "$H" pasta --config-net -a 198.51.100.2 -n 24 -g 198.51.100.1 -m "$mtu" \
    -t none -u none -T none -U none -f --runas 0 --netns "/run/netns/$G2" \
    >"$WORK/pasta-$mtu.log" 2>&1 & PA=$!
  DPIDS="$RF $PA"
  for _ in $(seq 100); do
    ip -n "$G1" -o addr show 2>/dev/null | grep -q 198.51.100.2 &&
      ip -n "$G2" -o addr show 2>/dev/null | grep -q 198.51.100.2 && return 0
    sleep 0.1
  done
  echo "tap_tcp_compare.sh: the guests did not come up; logs:" >&2
  cat "$WORK"/*.log >&2
  exit 1
}

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
CSV="$WORK/raw.csv"
echo "mtu,round,daemon,metric,value" >"$CSV"

# One transfer: daemon $1 (name), pid $2, guest $3, mtu $4, round $5, dir $6.
transfer() {
  local name=$1 pid=$2 g=$3 mtu=$4 round=$5 dir=$6 flag=""
  [[ $dir == h2g ]] && flag="-R"
  local c0 c1 js="$WORK/$name-$mtu-$round-$dir.json"
  c0=$(cpu "$pid")
  if ! ip netns exec "$g" timeout $((SECS + 30)) iperf3 -c 192.0.2.2 -p 5201 -t "$SECS" $flag \
    -J >"$js" 2>/dev/null; then
    echo "  $name mtu $mtu $dir: iperf3 failed" >&2
    return 0
  fi
  c1=$(cpu "$pid")
  python3 - "$js" "$((c1 - c0))" "$TCK" "$mtu" "$round" "$name" "$dir" >>"$CSV" <<'EOF'
import json, sys
js, ticks, tck, mtu, rnd, name, d = sys.argv[1:]
e = json.load(open(js))["end"]["sum_received"]
gib = e["bytes"] / 2**30
print(f"{mtu},{rnd},{name},{d}_gbps,{e['bits_per_second'] / 1e9:.3f}")
print(f"{mtu},{rnd},{name},{d}_cpu_s_per_gib,{int(ticks) / int(tck) / gib:.4f}")
EOF
}

latency() {
  local name=$1 g=$2 mtu=$3 round=$4 out
  if out=$(ip netns exec "$g" timeout 60 "$BIN/connload" latency --addr 192.0.2.2 --port 5202 \
    --count 5000 --seconds 30 2>/dev/null); then
    echo "$mtu,$round,$name,p50_us,$(sed -n 's/.*p50_us=\([0-9.]*\).*/\1/p' <<<"$out")" >>"$CSV"
    echo "$mtu,$round,$name,p99_us,$(sed -n 's/.*p99_us=\([0-9.]*\).*/\1/p' <<<"$out")" >>"$CSV"
  else
    echo "  $name mtu $mtu: latency run failed" >&2
  fi
}

for mtu in $MTUS; do
  start_daemons "$mtu"
  for round in $(seq "$ROUNDS"); do
    order="ringfwd pasta"
    ((round % 2 == 0)) && order="pasta ringfwd"
    for name in $order; do
      if [[ $name == ringfwd ]]; then pid=$RF g=$G1; else pid=$PA g=$G2; fi
      echo "[tap_tcp_compare] mtu $mtu round $round/$ROUNDS: $name" >&2
      transfer "$name" "$pid" "$g" "$mtu" "$round" g2h
      transfer "$name" "$pid" "$g" "$mtu" "$round" h2g
      latency "$name" "$g" "$mtu" "$round"
    done
  done
  stop_daemons
done

mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%d-%H%M%S)
python3 - "$CSV" "$OUT" "$STAMP" <<'EOF'
import csv, statistics, sys, collections
raw, out, stamp = sys.argv[1:]
vals = collections.defaultdict(list)
for r in csv.DictReader(open(raw)):
    if r["value"]:
        vals[(int(r["mtu"]), r["metric"], r["daemon"])].append(float(r["value"]))
metrics = [("g2h_gbps", "guest to host, Gbit/s", True), ("h2g_gbps", "host to guest, Gbit/s", True),
           ("g2h_cpu_s_per_gib", "CPU s/GiB, guest to host", False),
           ("h2g_cpu_s_per_gib", "CPU s/GiB, host to guest", False),
           ("p50_us", "latency p50, us", False), ("p99_us", "latency p99, us", False)]
def fmt(v):
    if not v: return "-"
    return f"{statistics.median(v):.3g} [{min(v):.3g}-{max(v):.3g}]"
rows = []
print(f"\ntap mode TCP, ringfwd beside pasta: median [min-max] over rounds ({stamp})")
print(f"{'MTU':>6} {'metric':<28} {'ringfwd':>24} {'pasta':>24} {'ratio':>7}")
for mtu in sorted({k[0] for k in vals}):
    for m, label, _ in metrics:
        a, b = vals.get((mtu, m, "ringfwd"), []), vals.get((mtu, m, "pasta"), [])
        ratio = statistics.median(a) / statistics.median(b) if a and b and statistics.median(b) else float("nan")
        print(f"{mtu:>6} {label:<28} {fmt(a):>24} {fmt(b):>24} {ratio:>6.2f}x")
        for d, v in (("ringfwd", a), ("pasta", b)):
            if v:
                rows.append([stamp, mtu, d, m, f"{statistics.median(v):.4g}", f"{min(v):.4g}",
                             f"{max(v):.4g}", len(v), f"{ratio:.3f}" if d == "ringfwd" else ""])
with open(f"{out}/tap_tcp.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["date", "mtu", "daemon", "metric", "median", "min", "max", "rounds", "ratio_vs_pasta"])
    w.writerows(rows)
with open(f"{out}/tap_tcp.dat", "w") as f:
    for mtu in sorted({k[0] for k in vals}):
        for m in ("g2h_gbps", "h2g_gbps"):
            a, b = vals.get((mtu, m, "ringfwd"), []), vals.get((mtu, m, "pasta"), [])
            if a and b:
                name = ("up" if m.startswith("g2h") else "down") + f"/{mtu}"
                f.write(f"{name} {statistics.median(a):.3f} {statistics.median(b):.3f}\n")
print(f"\nresults: {out}/tap_tcp.csv")
EOF
if command -v gnuplot >/dev/null && [[ -s "$OUT/tap_tcp.dat" ]]; then
  gnuplot <<EOF
set terminal pngcairo size 900,420 font ",10"
set output "$OUT/tap_tcp.png"
set title "tap mode TCP throughput, median of $ROUNDS rounds (Gbit/s, higher is better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set yrange [0:*]
set grid ytics
set xtics noenhanced
set xlabel "direction (up: guest to host) / MTU"
plot "$OUT/tap_tcp.dat" using 2:xtic(1) title "ringfwd --tap", "" using 3 title "pasta"
EOF
  echo "plot: $OUT/tap_tcp.png"
fi
rm -f "$OUT/tap_tcp.dat"
