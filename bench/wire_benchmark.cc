// Encode and decode of a full listing (one pif of 255 rules, the most a pif
// may hold), the largest message the control socket carries routinely.
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "ctl/wire.h"

namespace ringfwd::wire {
namespace {

TableSet FullListing() {
  Table t{PifId::kHost, "HOST", kCapsAll, {}};
  for (uint16_t i = 0; i < kMaxRulesPerPif; i++) {
    Rule r;
    r.addr = Addr6::FromV4(0x7f000001 + (i % 4));
    r.first = static_cast<uint16_t>(1000 + i * 10);
    r.last = static_cast<uint16_t>(r.first + 4);
    r.to = static_cast<uint16_t>(20000 + i * 10);
    r.proto = (i % 2) ? kProtoUdp : kProtoTcp;
    r.flags = (i % 3) ? kFlagWeak : 0;
    if (i % 5 == 0) r.SetIfname("eth0");
    t.rules.push_back(r);
  }
  TableSet set;
  set.tables.push_back(std::move(t));
  return set;
}

void BM_EncodeListing255(benchmark::State& state) {
  TableSet set = FullListing();
  Bytes out;
  for (auto _ : state) {
    out.clear();
    EncodeListing(set, &out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * out.size()));
}
BENCHMARK(BM_EncodeListing255);

void BM_DecodeListing255(benchmark::State& state) {
  Bytes in;
  EncodeListing(FullListing(), &in);
  for (auto _ : state) {
    auto d = DecodeListing(ByteSpan(in.data(), in.size()));
    if (!d.ok()) std::abort();
    benchmark::DoNotOptimize(d.value.tables.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * in.size()));
}
BENCHMARK(BM_DecodeListing255);

}  // namespace
}  // namespace ringfwd::wire
