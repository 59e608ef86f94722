// Frames per second through the link's pure code: parse + classify + answer
// (ARP request, DHCP discover), parse + group of UDP frames, and the
// checksum over 64 B, 1500 B and 64 KiB.
#include <benchmark/benchmark.h>
#include <netinet/in.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "fwd/frame_batch.h"
#include "fwd/link_services.h"
#include "fwd/packet.h"

namespace ringfwd {
namespace {

using Bytes = std::vector<uint8_t>;

// A sink with one reusable buffer that counts frames.
class CountingSink : public FrameSink {
 public:
  std::span<uint8_t> Reserve(size_t max_len) override {
    if (buf_.size() < max_len) buf_.resize(max_len);
    return std::span<uint8_t>(buf_.data(), max_len);
  }
  void Commit(size_t len) override { frames += len != 0; }
  uint64_t frames = 0;

 private:
  Bytes buf_;
};

LinkConfig Config() {
  LinkConfig c;
  c.has_v4 = true;
  c.addr4.s_addr = htonl(0xc000020a);
  c.gw4.s_addr = htonl(0xc0000201);
  c.dns4.push_back(in_addr{htonl(0xc6336435)});
  c.search = {"example.org"};
  return c;
}

const MacAddr kGuest = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

Bytes ArpRequest() {
  Bytes f(42);
  WriteEthHeader(f.data(), kBroadcastMac, kGuest, kEtherTypeArp);
  uint8_t* a = f.data() + 14;
  Store16(a, 1);
  Store16(a + 2, kEtherTypeIpv4);
  a[4] = 6;
  a[5] = 4;
  Store16(a + 6, 1);
  std::memcpy(a + 8, kGuest.data(), 6);
  Store32(a + 14, 0xc000020a);
  Store32(a + 24, 0xc0000201);
  return f;
}

Bytes DhcpDiscover() {
  Bytes msg(300);
  msg[0] = 1;
  msg[1] = 1;
  msg[2] = 6;
  std::memcpy(&msg[28], kGuest.data(), 6);
  Store32(&msg[236], 0x63825363);
  msg[240] = 53;
  msg[241] = 1;
  msg[242] = 1;
  msg[243] = 255;
  FrameAddrs a{kGuest, kBroadcastMac, Addr6::FromV4(0), Addr6::FromV4(0xffffffff)};
  Bytes f(kUdp4FrameHeadersLen + msg.size());
  f.resize(BuildUdpFrame(f, a, 68, 67, msg));
  return f;
}

void Answer(benchmark::State& state, const Bytes& frame) {
  LinkConfig config = Config();
  LinkState link_state;
  LinkServices services(config, link_state);
  CountingSink sink;
  for (auto _ : state) {
    FrameView v = ParseFrame(frame);
    if (!services.Handle(v, frame, sink)) std::abort();
  }
  if (sink.frames != static_cast<uint64_t>(state.iterations())) std::abort();
  state.SetItemsProcessed(state.iterations());
}

void BM_ArpRequestToReply(benchmark::State& state) { Answer(state, ArpRequest()); }
BENCHMARK(BM_ArpRequestToReply);

void BM_DhcpDiscoverToOffer(benchmark::State& state) { Answer(state, DhcpDiscover()); }
BENCHMARK(BM_DhcpDiscoverToOffer);

// A batch of 64 UDP frames of 8 flows: parse, offer to the services (not
// theirs), add to the batch, group. Items are frames.
void BM_UdpParseAndGroup(benchmark::State& state) {
  LinkConfig config = Config();
  LinkState link_state;
  LinkServices services(config, link_state);
  CountingSink sink;
  std::vector<Bytes> frames;
  Bytes payload(static_cast<size_t>(state.range(0)), 'x');
  for (int i = 0; i < 64; i++) {
    FrameAddrs a{kGuest, kDefaultOurMac, Addr6::FromV4(0xc000020a),
                 Addr6::FromV4(0xcb007105 + i % 8)};
    Bytes f(kUdp4FrameHeadersLen + payload.size());
    f.resize(BuildUdpFrame(f, a, 40000, 53, payload));
    frames.push_back(std::move(f));
  }
  static FrameBatch batch;
  for (auto _ : state) {
    batch.Clear();
    for (const Bytes& f : frames) {
      FrameView v = ParseFrame(f);
      if (!v.ok() || services.Handle(v, f, sink)) std::abort();
      batch.Add(v, f);
    }
    batch.Group();
    if (batch.group_count() != 8) std::abort();
  }
  state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_UdpParseAndGroup)->Arg(64)->Arg(1400);

void BM_Checksum(benchmark::State& state) {
  Bytes data(static_cast<size_t>(state.range(0)));
  for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<uint8_t>(i * 31);
  for (auto _ : state) benchmark::DoNotOptimize(Checksum(data));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
}
BENCHMARK(BM_Checksum)->Arg(64)->Arg(1500)->Arg(65536);

}  // namespace
}  // namespace ringfwd
