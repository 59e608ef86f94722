// Cost of validating a full table (rules plus the pairwise overlap check)
// and of parsing a port specification that covers every port.
#include <vector>

#include "benchmark/benchmark.h"
#include "fwd/port_spec.h"
#include "fwd/rule.h"

namespace ringfwd {
namespace {

// 255 valid, non-overlapping rules of both protocols and several address
// kinds: the worst case the protocol allows for one pif.
Table FullTable() {
  Table t{PifId::kHost, "HOST", kCapsAll, {}};
  const Addr6 addrs[] = {Addr6::Any6(), Addr6::Loopback4(), Addr6::Loopback6(),
                         *Addr6::Parse("192.0.2.1")};
  for (size_t i = 0; i < kMaxRulesPerPif; i++) {
    Rule r;
    r.proto = i % 2 ? kProtoUdp : kProtoTcp;
    r.addr = addrs[i % 4];
    if (i % 4 == 0) r.flags = kFlagDualStackAny;
    r.first = static_cast<uint16_t>(1000 + i * 100);
    r.last = static_cast<uint16_t>(r.first + 49);
    r.to = r.first;
    t.rules.push_back(r);
  }
  return t;
}

void BM_ValidateTable255(benchmark::State& state) {
  Table t = FullTable();
  if (!ValidateTable(t).ok()) {
    state.SkipWithError("table is not valid");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(ValidateTable(t));
  state.SetItemsProcessed(state.iterations() * t.rules.size());
}
BENCHMARK(BM_ValidateTable255);

void BM_ParsePortSpecAllButRange(benchmark::State& state) {
  PortSpecOptions opts;
  for (auto _ : state) {
    auto rules = ParsePortSpec("1-65535,~1000-2000", opts);
    if (!rules.ok() || rules->size() != 2) {
      state.SkipWithError("unexpected parse result");
      return;
    }
    benchmark::DoNotOptimize(rules);
  }
}
BENCHMARK(BM_ParsePortSpecAllButRange);

}  // namespace
}  // namespace ringfwd
