// libFuzzer target: DecodeUpdate on any bytes (both forms); a decoded update
// re-encodes to exactly the bytes it came from, and EncodeUpdateFromTables
// agrees with EncodeUpdate for the same blocks.
#include "ctl/wire.h"
#include "tests/fuzz/fuzz_check.h"

namespace ringfwd::wire {
namespace {

int FuzzOne(const uint8_t* data, size_t size) {
  auto d = DecodeUpdate(ByteSpan(data, size));
  fuzz::CheckOutcome(d, size);
  if (!d.ok()) return 0;
  fuzz::CheckPrefixNeedsMore(d, data, DecodeUpdate);
  Bytes out;
  EncodeUpdate(d.value, &out);
  fuzz::Check(out == Bytes(data, data + d.consumed), "update re-encodes to its bytes");

  TableSet set;
  for (const UpdateBlock& b : d.value.blocks) {
    Table t;
    t.pif = static_cast<PifId>(b.pif);
    t.rules = b.rules;
    set.tables.push_back(std::move(t));
  }
  Bytes from_tables;
  EncodeUpdateFromTables(set, d.value.transactional, &from_tables);
  fuzz::Check(from_tables == out, "EncodeUpdateFromTables matches EncodeUpdate");
  return 0;
}

}  // namespace
}  // namespace ringfwd::wire

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return ringfwd::wire::FuzzOne(data, size);
}
