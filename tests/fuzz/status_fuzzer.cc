// libFuzzer target: DecodeStatus on any bytes; a decoded status re-encodes to
// exactly the bytes it came from.
#include "ctl/wire.h"
#include "tests/fuzz/fuzz_check.h"

namespace ringfwd::wire {
namespace {

int FuzzOne(const uint8_t* data, size_t size) {
  auto d = DecodeStatus(ByteSpan(data, size));
  fuzz::CheckOutcome(d, size);
  if (!d.ok()) return 0;
  fuzz::Check(d.value.message.size() <= kMaxStatusMessage, "message within its bound");
  fuzz::CheckPrefixNeedsMore(d, data, DecodeStatus);
  Bytes out;
  EncodeStatus(d.value, &out);
  fuzz::Check(out == Bytes(data, data + d.consumed), "status re-encodes to its bytes");
  return 0;
}

}  // namespace
}  // namespace ringfwd::wire

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return ringfwd::wire::FuzzOne(data, size);
}
