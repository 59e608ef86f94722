#!/usr/bin/env bash
# Installs the Debian packages ringfwd needs to build, test and benchmark,
# skipping the ones already there. Safe to run again.
set -euo pipefail
pkgs=(cmake ninja-build g++ clang libclang-rt-14-dev pkg-config liburing-dev libabsl-dev
      libgtest-dev libgmock-dev libbenchmark-dev iproute2 procps util-linux python3
      busybox isc-dhcp-client)  # udhcpc, dhclient -6: real DHCP clients of tests/fwd/link_kernel_test
if [[ "${1:-}" == "--bench" ]]; then
  pkgs+=(passt haproxy iperf3 gnuplot-nox)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
