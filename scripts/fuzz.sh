#!/usr/bin/env bash
# Runs every libFuzzer target of a build for a bounded time, each with a fresh
# corpus seeded from the captured interop bytes, and fails if any finds a
# crash, a leak or a broken invariant.
#   scripts/fuzz.sh BUILD_DIR SECONDS
# Crash reproducers are kept in BUILD_DIR/fuzz-artifacts/NAME/.
set -euo pipefail
if (($# != 2)); then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build=$1
secs=$2
root="$(cd "$(dirname "$0")/.." && pwd)"
interop="${RINGFWD_INTEROP_DIR:-$root/../shared/interop}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# seed NAME DIR: writes the seed inputs for fuzzer NAME into DIR.
seed() {
  local name=$1 dir=$2
  case "$name" in
    hello_fuzzer)
      head -c 20 "$interop/server_listing.bin" >"$dir/hello"
      ;;
    listing_fuzzer)
      tail -c +21 "$interop/server_listing.bin" >"$dir/listing"
      printf '\0' >"$dir/empty_listing"
      ;;
    update_fuzzer)
      for f in "$interop"/client_update_*.bin; do
        cp "$f" "$dir/$(basename "$f" .bin)"
        { printf 'basil:c\0'; cat "$f"; } >"$dir/txn_$(basename "$f" .bin)"
      done
      ;;
    control_fuzzer)
      # A mode byte (1: the client stays for its status, 0: it is gone),
      # then what the client sends after the listing.
      for f in "$interop"/client_update_*.bin; do
        { printf '\1basil:c\0'; cat "$f"; } >"$dir/stay_$(basename "$f" .bin)"
        { printf '\0basil:c\0'; cat "$f"; } >"$dir/gone_$(basename "$f" .bin)"
        { printf '\1'; cat "$f"; } >"$dir/v2_$(basename "$f" .bin)"
      done
      ;;
    status_fuzzer)
      printf '\0\0\0\0\0\0' >"$dir/applied"
      printf '\1\0\0\0\x0brule 3: bad\0' >"$dir/rejected"
      printf '\2\0\0\0\4oops\1\0\0\0\2\0\0\0\3\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1\0\0\0\x62\3\0\0\0\0\0' \
        >"$dir/apply_failed"
      ;;
    frame_fuzzer)
      # Raw frames, and bodies the fuzzer wraps in valid frames: D a DHCP
      # message, S a DHCPv6 message, N an ICMPv6 (NDP) message.
      printf '\xff\xff\xff\xff\xff\xff\x52\x54\x00\x12\x34\x56\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01\x52\x54\x00\x12\x34\x56\xc0\x00\x02\x0a\x00\x00\x00\x00\x00\x00\xc0\x00\x02\x01' >"$dir/arp"
      { printf 'D\x01\x01\x06\x00\xde\xad\xbe\xef'; head -c 20 /dev/zero
        printf '\x52\x54\x00\x12\x34\x56'; head -c 202 /dev/zero
        printf '\x63\x82\x53\x63\x35\x01\x01\x32\x04\xc0\x00\x02\x0a\xff'; } >"$dir/dhcp"
      printf 'S\x01\x12\x34\x56\x00\x01\x00\x0a\x00\x03\x00\x01\x52\x54\x00\x12\x34\x56\x00\x03\x00\x0c\x01\x02\x03\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0e\x00\x00' >"$dir/dhcpv6"
      printf 'N\x85\x00\x00\x00\x00\x00\x00\x00\x01\x01\x52\x54\x00\x12\x34\x56' >"$dir/rs"
      printf 'N\x87\x00\x00\x00\x00\x00\x00\x00\xfe\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01' >"$dir/ns"
      ;;
  esac
}

shopt -s nullglob
fuzzers=("$build"/bin/*_fuzzer)
if ((${#fuzzers[@]} == 0)); then
  echo "fuzz: no *_fuzzer binaries in $build/bin" >&2
  exit 1
fi
# run NAME BIN: one fuzzer for the bounded time; its verdict goes to
# $work/NAME.verdict and its output to $work/NAME.log.
run() {
  local name=$1 bin=$2
  local corpus="$work/$name" artifacts="$build/fuzz-artifacts/$name" log="$work/$name.log"
  mkdir -p "$corpus" "$artifacts"
  seed "$name" "$corpus"
  if "$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$artifacts/" \
    "$corpus" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz ok: $name, ${secs}s, ${execs:-?} runs, corpus $(ls "$corpus" | wc -l) inputs" \
      >"$work/$name.verdict"
  else
    echo "fail" >"$work/$name.verdict"
  fi
}

# One fuzzer per core at a time (each is single-threaded).
parallel=$(nproc)
running=0
for bin in "${fuzzers[@]}"; do
  if ((running >= parallel)); then
    wait -n || true
    running=$((running - 1))
  fi
  run "$(basename "$bin")" "$bin" &
  running=$((running + 1))
done
wait

failed=()
for bin in "${fuzzers[@]}"; do
  name=$(basename "$bin")
  if [[ -f "$work/$name.verdict" && "$(cat "$work/$name.verdict")" != fail ]]; then
    cat "$work/$name.verdict"
  else
    echo "fuzz FAILED: $name (reproducers in $build/fuzz-artifacts/$name)" >&2
    tail -n 40 "$work/$name.log" >&2 || true
    failed+=("$name")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: ${#failed[@]} fuzzer(s) failed: ${failed[*]}" >&2
  exit 1
fi
