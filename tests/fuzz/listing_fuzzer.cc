// libFuzzer target: DecodeListing on any bytes. A decoded listing re-encodes
// to bytes that decode to the same tables (names are re-padded with NULs, so
// the bytes themselves may differ after a name's first NUL) and re-encode to
// the same bytes again.
#include "ctl/wire.h"
#include "tests/fuzz/fuzz_check.h"

namespace ringfwd::wire {
namespace {

int FuzzOne(const uint8_t* data, size_t size) {
  auto d = DecodeListing(ByteSpan(data, size));
  fuzz::CheckOutcome(d, size);
  if (!d.ok()) return 0;
  fuzz::CheckPrefixNeedsMore(d, data, DecodeListing);
  Bytes out;
  EncodeListing(d.value, &out);
  fuzz::Check(out.size() == d.consumed, "listing re-encodes to the same length");
  auto again = DecodeListing(ByteSpan(out.data(), out.size()));
  fuzz::Check(again.ok() && again.consumed == out.size(), "re-encoded listing decodes");
  fuzz::Check(again.value == d.value, "listing round trip keeps the tables");
  Bytes out2;
  EncodeListing(again.value, &out2);
  fuzz::Check(out2 == out, "listing encoding is canonical");
  return 0;
}

}  // namespace
}  // namespace ringfwd::wire

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return ringfwd::wire::FuzzOne(data, size);
}
