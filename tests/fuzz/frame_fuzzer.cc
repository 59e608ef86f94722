// libFuzzer target: any bytes as a frame from the guest through ParseFrame,
// VerifyL4Checksum, LinkServices::Handle and FrameBatch. Whatever the link
// services answer must itself parse and carry valid checksums.
#include <netinet/in.h>

#include <cstring>
#include <vector>

#include "fwd/frame_batch.h"
#include "fwd/link_services.h"
#include "fwd/packet.h"
#include "tests/fuzz/fuzz_check.h"

namespace ringfwd {
namespace {

using wire::fuzz::Check;

// Checks every frame committed to it.
class CheckingSink : public FrameSink {
 public:
  std::span<uint8_t> Reserve(size_t max_len) override {
    buf_.assign(max_len, 0);
    return std::span<uint8_t>(buf_);
  }
  void Commit(size_t len) override {
    Check(len == 0 || len == buf_.size(), "link services reserve exactly what they send");
    if (len == 0) return;
    std::span<const uint8_t> f(buf_.data(), len);
    FrameView v = ParseFrame(f);
    Check(v.ok(), "an answer parses");
    Check(v.eth_src == kDefaultOurMac, "answers come from our MAC");
    if (v.l3 != L3Kind::kArp) Check(VerifyL4Checksum(v, f), "an answer's L4 checksum is valid");
  }

 private:
  std::vector<uint8_t> buf_;
};

LinkConfig MakeConfig() {
  LinkConfig c;
  c.has_v4 = true;
  c.addr4.s_addr = htonl(0xc000020a);  // 192.0.2.10
  c.gw4.s_addr = htonl(0xc0000201);
  c.dns4.push_back(in_addr{htonl(0xc6336435)});
  c.has_v6 = true;
  c.addr6.s6_addr[0] = 0x20;
  c.addr6.s6_addr[1] = 0x01;
  c.addr6.s6_addr[2] = 0x0d;
  c.addr6.s6_addr[3] = 0xb8;
  c.addr6.s6_addr[15] = 0x10;
  c.gw6.s6_addr[0] = 0xfe;
  c.gw6.s6_addr[1] = 0x80;
  c.gw6.s6_addr[15] = 1;
  c.dns6.push_back(c.addr6);
  c.search = {"example.org", "lab.example.net"};
  return c;
}

// Inputs starting with 'D', 'S' or 'N' are not frames but the body of a
// DHCP message, a DHCPv6 message or an ICMPv6 message (NDP), wrapped here
// in a valid frame with right checksums: random bytes alone would almost
// never get past the checksums to the parsers of the services.
std::vector<uint8_t> Wrap(const uint8_t* data, size_t size) {
  std::vector<uint8_t> f;
  if (size == 0 || size > 4000) return f;
  const MacAddr guest = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
  std::span<const uint8_t> body(data + 1, size - 1);
  Addr6 ll6 = *Addr6::Parse("fe80::5054:ff:fe12:3456");
  f.resize(kMaxFrameLen);
  size_t n = 0;
  switch (data[0]) {
    case 'D':
      n = BuildUdpFrame(f, {guest, kBroadcastMac, Addr6::FromV4(0), Addr6::FromV4(0xffffffff)}, 68,
                        67, body);
      break;
    case 'S':
      n = BuildUdpFrame(f, {guest, kBroadcastMac, ll6, *Addr6::Parse("ff02::1:2")}, 546, 547, body);
      break;
    case 'N': {
      if (body.size() < 4) return {};
      FrameAddrs a{guest, kBroadcastMac, ll6, *Addr6::Parse("ff02::2"), 255};
      size_t off = WriteEthIpHeaders(f.data(), a, IPPROTO_ICMPV6, body.size());
      std::memcpy(f.data() + off, body.data(), body.size());
      FillL4Checksum(std::span<uint8_t>(f).subspan(off, body.size()), a.src, a.dst, IPPROTO_ICMPV6,
                     2);
      n = off + body.size();
      break;
    }
    default:
      return {};
  }
  f.resize(n);
  return f;
}

int FuzzOne(const uint8_t* raw, size_t raw_size) {
  static const LinkConfig config = MakeConfig();
  static FrameBatch batch;
  LinkState state;
  LinkServices services(config, state);
  CheckingSink sink;
  std::vector<uint8_t> wrapped = Wrap(raw, raw_size);
  const uint8_t* data = wrapped.empty() ? raw : wrapped.data();
  size_t size = wrapped.empty() ? raw_size : wrapped.size();
  std::span<const uint8_t> frame(data, size);
  FrameView v = ParseFrame(frame);
  Check(v.ok() == (v.drop == DropReason::kNone), "ok() is no drop reason");
  if (v.ok() && (v.is_v4() || v.is_v6())) {
    Check(size_t{v.l3_off} + v.ip_len <= size, "IP packet within the frame");
    Check(size_t{v.l4_off} + v.l4_len <= size, "L4 segment within the frame");
    Check(size_t{v.payload_off} + v.payload_len <= size, "payload within the frame");
    Check(size_t{v.tcp_opt_off} + v.tcp_opt_len <= size, "TCP options within the frame");
  }
  VerifyL4Checksum(v, frame);
  if (services.Handle(v, frame, sink)) Check(v.ok(), "only parsed frames are consumed");
  services.Tick(1, sink);
  if (v.ok() && v.l3 != L3Kind::kArp) {
    batch.Clear();
    batch.Add(v, frame);
    batch.Add(v, frame);
    batch.Group();
    Check(batch.group_count() == 1 && batch.group(0).size() == 2, "one flow, one group");
  }
  return 0;
}

}  // namespace
}  // namespace ringfwd

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return ringfwd::FuzzOne(data, size);
}
