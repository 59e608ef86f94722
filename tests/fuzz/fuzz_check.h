// Shared checks for the wire fuzzers: invariants every decoder must keep on
// any input, whatever the outcome.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "ctl/wire.h"

namespace ringfwd::wire::fuzz {

// Aborts (a crash libFuzzer reports) with `what` when `ok` is false.
inline void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

// The outcome-independent invariants of a Decoded<T> for an input of `size`
// bytes: kOk consumed something within the input; kError points inside it
// and says where ("offset N: ...").
template <typename T>
void CheckOutcome(const Decoded<T>& d, size_t size) {
  switch (d.state) {
    case DecodeState::kOk:
      Check(d.consumed > 0 && d.consumed <= size, "kOk consumed within the input");
      break;
    case DecodeState::kError:
      Check(d.error_offset < size, "error offset inside the input");
      Check(d.error.rfind("offset " + std::to_string(d.error_offset) + ": ", 0) == 0,
            "error message starts with its offset");
      break;
    case DecodeState::kNeedMore:
      break;
  }
}

// For a kOk decode: the consumed bytes minus their last one are a valid
// prefix, so they must decode as kNeedMore.
template <typename T, typename Fn>
void CheckPrefixNeedsMore(const Decoded<T>& d, const uint8_t* data, Fn decode) {
  auto shorter = decode(ByteSpan(data, d.consumed - 1));
  Check(shorter.state == DecodeState::kNeedMore, "a proper prefix of a message needs more");
}

}  // namespace ringfwd::wire::fuzz
