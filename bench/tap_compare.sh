#!/bin/bash
# tap_compare.sh: UDP request/response through the tap link, ringfwd beside
# pasta (Debian's package), same run, same setup.
#
#   bench/tap_compare.sh [BUILD_DIR] [SECONDS]
#
# Namespaces (documentation addresses only): a host (where the daemons run)
# with a veth to an outside namespace (192.0.2.1 <-> 192.0.2.2, the default
# route) holding a udp_rr echo server; two guests behind a tap each, one
# made by ringfwd --tap, one by pasta --config-net, both 198.51.100.2/24 with
# gateway 198.51.100.1. The client in each guest runs 1 and 16 flows of
# 64-byte requests; the daemon's CPU time (utime+stime) is read around each
# run. Prints one line per run: daemon, flows, transactions/s, p50/p99 and
# CPU microseconds per transaction (two frames read, two written, two
# datagrams through host sockets). Then frames per second through the link's
# own answers: arp_flood keeps 32 ARP requests for the gateway in flight from
# a packet socket in each guest (read, parse, answer; no host socket), with
# the daemon's CPU per reply. Needs root.
set -euo pipefail
BUILD=${1:-build}
SECS=${2:-5}
BIN=$BUILD/bin
P=tapcmp-$$
H=$P-h; O=$P-o; G1=$P-g1; G2=$P-g2
cleanup() {
  for pid in ${PIDS:-}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in $H $O $G1 $G2; do ip netns del "$n" 2>/dev/null || true; done
}
trap cleanup EXIT
for n in $H $O $G1 $G2; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add out0 netns "$H" type veth peer name out0 netns "$O"
ip -n "$H" addr add 192.0.2.1/24 dev out0; ip -n "$H" link set out0 up
ip -n "$O" addr add 192.0.2.2/24 dev out0; ip -n "$O" link set out0 up
ip -n "$H" route add default via 192.0.2.2
PIDS=""
ip netns exec "$O" "$BIN/udp_rr" server --addr 192.0.2.2 --port 7777 --seconds 600 & PIDS="$PIDS $!"
ip netns exec "$H" "$BIN/ringfwd" --netns "$G1" --tap --address 198.51.100.2/24 \
  --gateway 198.51.100.1 >/tmp/$P-ringfwd.log 2>&1 & RF=$!; PIDS="$PIDS $RF"
ip netns exec "$H" pasta --config-net -a 198.51.100.2 -n 24 -g 198.51.100.1 \
  -t none -u none -T none -U none -f --runas 0 --netns "/run/netns/$G2" >/tmp/$P-pasta.log 2>&1 & PA=$!
PIDS="$PIDS $PA"
for i in $(seq 50); do
  ip -n "$G1" -o addr show 2>/dev/null | grep -q 198.51.100.2 &&
    ip -n "$G2" -o addr show 2>/dev/null | grep -q 198.51.100.2 && break
  sleep 0.1
done
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
for flows in 1 16; do
  for d in ringfwd pasta; do
    if [ $d = ringfwd ]; then g=$G1; pid=$RF; else g=$G2; pid=$PA; fi
    c0=$(cpu $pid)
    out=$(ip netns exec "$g" "$BIN/udp_rr" client --addr 192.0.2.2 --port 7777 \
      --flows $flows --seconds "$SECS")
    c1=$(cpu $pid)
    tx=$(sed -n 's/.*transactions=\([0-9]*\).*/\1/p' <<<"$out")
    us=$(awk -v c=$((c1 - c0)) -v t="$tck" -v n="$tx" 'BEGIN { if (n > 0) printf "%.2f", c / t * 1e6 / n; else print "nan" }')
    echo "$d $out cpu_us_per_transaction=$us"
  done
done
for d in ringfwd pasta; do
  if [ $d = ringfwd ]; then g=$G1; pid=$RF; else g=$G2; pid=$PA; fi
  c0=$(cpu $pid)
  out=$(ip netns exec "$g" "$BIN/arp_flood" --dev out0 --ip 198.51.100.2 --target 198.51.100.1 \
    --window 32 --seconds "$SECS")
  c1=$(cpu $pid)
  n=$(sed -n 's/.*replies=\([0-9]*\).*/\1/p' <<<"$out")
  us=$(awk -v c=$((c1 - c0)) -v t="$tck" -v n="$n" 'BEGIN { if (n > 0) printf "%.2f", c / t * 1e6 / n; else print "nan" }')
  echo "$d arp $out cpu_us_per_reply=$us"
done
