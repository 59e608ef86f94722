#!/usr/bin/env bash
# Builds everything (release) and runs the forwarder on a working default:
# a network namespace "ringfwd-demo" with a small web server on port 80
# inside it, host port 8080 forwarded there, and a control socket for pesto.
#   curl http://127.0.0.1:8080/                       # through ringfwd
#   build/bin/pesto /run/ringfwd-demo.sock            # list the tables
#   build/bin/pesto -A -t 8081:80 /run/ringfwd-demo.sock   # add a port live
# Extra arguments go to ringfwd (e.g. -d for debug logs). Ctrl-C stops it
# and removes the demo namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build ringfwd pesto

ns=ringfwd-demo
sock=/run/ringfwd-demo.sock
cleanup() {
  [[ -n "${web:-}" ]] && kill "$web" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
ip netns del "$ns" 2>/dev/null || true
ip netns add "$ns"
ip -n "$ns" link set lo up
mkdir -p /tmp/ringfwd-demo-www
echo "Hello from inside namespace $ns, through ringfwd." >/tmp/ringfwd-demo-www/index.html
ip netns exec "$ns" python3 -m http.server 80 --bind 127.0.0.1 \
  --directory /tmp/ringfwd-demo-www >/dev/null 2>&1 &
web=$!
echo "ringfwd: forwarding host port 8080 to port 80 in namespace $ns; try: curl http://127.0.0.1:8080/" >&2
build/bin/ringfwd --netns "$ns" -t 8080:80 -c "$sock" "$@"
