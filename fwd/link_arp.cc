// ARP: we answer as the owner of every IPv4 address on the link except the
// guest's own, so the guest sends everything (gateway or not) to our MAC.
#include <cstring>

#include "fwd/link_handlers.h"

namespace ringfwd::link {
namespace {

constexpr size_t kArpFrameLen = kEthHeaderLen + 28;
constexpr size_t kMinFrameLen = 60;  // Ethernet minimum without FCS: padded

}  // namespace

void HandleArp(Ctx& c, const FrameView& v) {
  Addr6 guest = Addr6::FromIn6(in6_addr{});
  if (c.cfg.has_v4) guest = Addr6::FromV4(ntohl(c.cfg.addr4.s_addr));
  // Only requests get an answer; not announcements or gratuitous ARP (sender
  // and target the same), not questions about the guest's own address (its
  // duplicate address detection must find it free).
  if (!c.cfg.has_v4 || v.arp_op != 1 || v.arp_spa == v.arp_tpa || v.arp_tpa == guest ||
      v.arp_tpa.V4() == 0) {
    c.counters.arp_ignored++;
    return;
  }
  std::span<uint8_t> buf = Reserve(c, kMinFrameLen);
  if (buf.empty()) return;
  uint8_t* p = buf.data();
  std::memset(p, 0, kMinFrameLen);
  WriteEthHeader(p, v.arp_sha, c.cfg.our_mac, kEtherTypeArp);
  uint8_t* a = p + kEthHeaderLen;
  Store16(a, 1);  // Ethernet
  Store16(a + 2, kEtherTypeIpv4);
  a[4] = 6;
  a[5] = 4;
  Store16(a + 6, 2);  // reply
  std::memcpy(a + 8, c.cfg.our_mac.data(), 6);
  std::memcpy(a + 14, &v.arp_tpa.b[12], 4);
  std::memcpy(a + 18, v.arp_sha.data(), 6);
  std::memcpy(a + 24, &v.arp_spa.b[12], 4);
  static_assert(kArpFrameLen <= kMinFrameLen);
  c.out.Commit(kMinFrameLen);
  c.counters.arp_replies++;
}

}  // namespace ringfwd::link
