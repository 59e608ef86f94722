#!/usr/bin/env bash
# Builds everything (release and ASan+UBSan, plus the fuzzers with clang) and
# runs every test: the one test command of README and CI.
#   scripts/test.sh            everything
#   scripts/test.sh --quick    release build and tests only
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)
quick=0; [[ "${1:-}" == "--quick" ]] && quick=1

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build
(cd build && ctest --output-on-failure -j"$jobs" --timeout 300)
((quick)) && exit 0

# Sanitizer build: the same tests under ASan+UBSan (memory-size checks skip
# themselves when RINGFWD_ASAN is set).
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DRINGFWD_SANITIZE=ON \
  -DRINGFWD_BENCH=OFF >/dev/null
ninja -C build-asan
(cd build-asan && RINGFWD_ASAN=1 ASAN_OPTIONS=detect_leaks=1 \
  ctest --output-on-failure -j"$jobs" --timeout 600)

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
