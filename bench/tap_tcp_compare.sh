#!/bin/bash
# tap_tcp_compare.sh: TCP throughput through the tap link, ringfwd beside
# pasta (Debian's package), same run, same setup as tap_compare.sh.
#
#   bench/tap_tcp_compare.sh [BUILD_DIR] [SECONDS]
#
# Namespaces (documentation addresses only): a host (where the daemons run)
# with a veth to an outside namespace (192.0.2.1 <-> 192.0.2.2, the default
# route) holding iperf3 servers; two guests behind a tap each, one made by
# ringfwd --tap, one by pasta --config-net (-t none -u none -T none -U none),
# both 198.51.100.2/24 with gateway 198.51.100.1. For MTU 1500 and 65520 the
# daemons are started afresh; iperf3 runs one stream guest -> outside
# ("up": the guest sends) and outside -> guest ("down", iperf3 -R) for
# SECONDS each. Prints one line per run: daemon, MTU, direction, Gbit/s
# (received), and the daemon's CPU seconds (utime+stime from /proc/PID/stat)
# per GiB moved. Needs root, iperf3 and pasta.
set -euo pipefail
BUILD=${1:-build}
SECS=${2:-5}
BIN=$BUILD/bin
P=taptcp-$$
H=$P-h; O=$P-o; G1=$P-g1; G2=$P-g2
cleanup() {
  for pid in ${PIDS:-} ${RF:-} ${PA:-}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in $H $O $G1 $G2; do ip netns del "$n" 2>/dev/null || true; done
}
trap cleanup EXIT
for n in $H $O; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add out0 netns "$H" type veth peer name out0 netns "$O"
ip -n "$H" addr add 192.0.2.1/24 dev out0; ip -n "$H" link set out0 up
ip -n "$O" addr add 192.0.2.2/24 dev out0; ip -n "$O" link set out0 up
ip -n "$H" route add default via 192.0.2.2
PIDS=""
ip netns exec "$O" iperf3 -s -B 192.0.2.2 -p 5201 >/dev/null 2>&1 & PIDS="$PIDS $!"
ip netns exec "$O" iperf3 -s -B 192.0.2.2 -p 5202 >/dev/null 2>&1 & PIDS="$PIDS $!"
REPORT='
import json, os, sys
d, mtu, direction, ticks, tck = sys.argv[1:]
try:
    r = json.loads(os.environ["IPERF_JSON"])["end"]["sum_received"]
    gib = r["bytes"] / 2**30
    gbit = r["bits_per_second"] / 1e9
    per_gib = (int(ticks) / int(tck)) / gib if gib else float("nan")
    print(f"{d} mtu={mtu} {direction} gbit_s={gbit:.2f} cpu_s_per_gib={per_gib:.3f}")
except Exception as e:
    print(f"{d} mtu={mtu} {direction} failed: {e}")
'
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
for mtu in 1500 65520; do
  for n in $G1 $G2; do ip netns del "$n" 2>/dev/null || true; ip netns add "$n"; done
  ip netns exec "$H" "$BIN/ringfwd" --netns "$G1" --tap --mtu $mtu --address 198.51.100.2/24 \
    --gateway 198.51.100.1 >/tmp/$P-ringfwd.log 2>&1 & RF=$!
  ip netns exec "$H" pasta --config-net -m $mtu -a 198.51.100.2 -n 24 -g 198.51.100.1 \
    -t none -u none -T none -U none -f --runas 0 --netns "/run/netns/$G2" \
    >/tmp/$P-pasta.log 2>&1 & PA=$!
  for i in $(seq 50); do
    ip -n "$G1" -o addr show 2>/dev/null | grep -q 198.51.100.2 &&
      ip -n "$G2" -o addr show 2>/dev/null | grep -q 198.51.100.2 && break
    sleep 0.1
  done
  sleep 0.5
  for dir in up down; do
    for d in ringfwd pasta; do
      if [ $d = ringfwd ]; then g=$G1; pid=$RF; port=5201; else g=$G2; pid=$PA; port=5202; fi
      flag=""; [ $dir = down ] && flag="-R"
      c0=$(cpu $pid)
      json=$(ip netns exec "$g" iperf3 -c 192.0.2.2 -p $port -t "$SECS" $flag -J || true)
      c1=$(cpu $pid)
      IPERF_JSON="$json" python3 -c "$REPORT" "$d" "$mtu" "$dir" "$((c1 - c0))" "$tck"
    done
  done
  kill $RF $PA 2>/dev/null || true
  wait $RF $PA 2>/dev/null || true
done
