// libFuzzer target: DecodeHello on any bytes; a decoded hello re-encodes to
// exactly the bytes it came from.
#include "ctl/wire.h"
#include "tests/fuzz/fuzz_check.h"

namespace ringfwd::wire {
namespace {

int FuzzOne(const uint8_t* data, size_t size) {
  auto d = DecodeHello(ByteSpan(data, size));
  fuzz::CheckOutcome(d, size);
  if (!d.ok()) return 0;
  fuzz::Check(d.consumed == kHelloSize, "a hello is 20 bytes");
  fuzz::CheckPrefixNeedsMore(d, data, DecodeHello);
  Bytes out;
  EncodeHello(d.value, &out);
  fuzz::Check(out == Bytes(data, data + d.consumed), "hello re-encodes to its bytes");
  return 0;
}

}  // namespace
}  // namespace ringfwd::wire

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return ringfwd::wire::FuzzOne(data, size);
}
