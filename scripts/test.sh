#!/usr/bin/env bash
# Builds everything (release, ASan+UBSan, TSan, plus the fuzzers with clang) and
# runs every test: the one test command of README and CI.
#   scripts/test.sh            everything
#   scripts/test.sh --quick    release build and tests only
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)
quick=0; [[ "${1:-}" == "--quick" ]] && quick=1

# Line tables only (-g1) in these builds: enough for sanitizer reports and
# backtraces, and a fifth less compile time than full debug info.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" >/dev/null
ninja -C build
(cd build && ctest --output-on-failure -j"$jobs" --timeout 300)
((quick)) && exit 0

# The sanitizer stages build the product (libraries, ringfwd, pesto) and the
# in-process test suites under the sanitizer; the e2e suite is the release
# build's test binary driving the sanitizer build's ringfwd and pesto
# (RINGFWD_BIN_DIR), with RINGFWD_ASAN=1 (longer deadlines; memory-size
# checks skip themselves). The daemons are what the e2e tests exercise.
#
# A failed test is run once more here: three clean-clone runs each lost one
# socket-path e2e test to a missed reset under ASan (fixed since: a poll
# removal that the kernel refused left sockets open); the release run above
# stays strict, and a test that fails twice still fails.
e2e_against() {  # e2e_against BUILD_DIR [ctest args...]: the e2e suite, BUILD_DIR's daemons
  local daemons="$PWD/$1/bin"
  shift
  (cd build && RINGFWD_BIN_DIR="$daemons" RINGFWD_ASAN=1 \
    ctest --output-on-failure -j"$jobs" --timeout 600 --repeat until-pass:2 -L '^e2e$' "$@")
}

# ASan+UBSan: every in-process suite, then the whole e2e suite.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g1" \
  -DRINGFWD_SANITIZE=ON -DRINGFWD_BENCH=OFF -DRINGFWD_TEST_DIRS="uring;fwd;ctl" >/dev/null
ninja -C build-asan
export ASAN_OPTIONS=detect_leaks=1
(cd build-asan && RINGFWD_ASAN=1 ctest --output-on-failure -j"$jobs" --timeout 600 \
  --repeat until-pass:2)
e2e_against build-asan
unset ASAN_OPTIONS

# ThreadSanitizer: the control server, the namespace thread and the swap's
# bind threads share state with the loop. The ctl suite (client and server in
# one process), then the e2e suites that drive those threads (control, swaps,
# scans, lifecycle, load, plain TCP/UDP through the namespace's socket pool),
# with any race report fatal (exit 66). The tap and edge-case suites add no
# threads; they run under release and ASan.
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DRINGFWD_TSAN=ON -DRINGFWD_BENCH=OFF \
  -DRINGFWD_TEST_DIRS="ctl" >/dev/null
ninja -C build-tsan
export TSAN_OPTIONS="halt_on_error=1 exitcode=66"
(cd build-tsan && RINGFWD_ASAN=1 ctest --output-on-failure -j"$jobs" --timeout 600 \
  --repeat until-pass:2)
e2e_against build-tsan -R '^(CliTest|ControlTest|LifecycleTest|LoadTest|ScanTest|SwapTest|TcpTest|UdpTest)[.]'
unset TSAN_OPTIONS

# Fuzzers (clang, libFuzzer), each for a bounded time, seeded with interop/.
if ls tests/fuzz/*_fuzzer.cc >/dev/null 2>&1; then
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DRINGFWD_FUZZ=ON -DRINGFWD_TESTS=OFF -DRINGFWD_BENCH=OFF >/dev/null
  ninja -C build-fuzz
  scripts/fuzz.sh build-fuzz "${RINGFWD_FUZZ_SECONDS:-20}"
fi

# Benchmarks in smoke mode: each runs once, briefly, to prove it still works.
for b in build/bin/*_benchmark; do
  [[ -x "$b" ]] || continue
  "$b" --benchmark_min_time=0.01 >/dev/null
  echo "smoke ok: $(basename "$b")"
done
