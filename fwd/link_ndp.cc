// NDP (RFC 4861): neighbour advertisements for every address on the link but
// the guest's own, and router advertisements - on solicitation and, through
// LinkServices::Tick, now and then - that tell the guest its /64 prefix
// (on-link, for SLAAC), the MTU, its resolvers (RDNSS, DNSSL; RFC 8106) and,
// with the managed flag, to ask DHCPv6 for its address.
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "fwd/link_handlers.h"

namespace ringfwd::link {
namespace {

constexpr uint8_t kNdpHopLimit = 255;
// Lifetimes (seconds): the router for three periods of unsolicited RAs, the
// prefix and resolvers for longer (RFC 8106 asks at least 3 periods).
constexpr uint16_t kRouterLifetime = 1800;
constexpr uint32_t kPrefixValid = 7200;
constexpr uint32_t kPrefixPreferred = 3600;
constexpr uint32_t kResolverLifetime = 1800;
constexpr size_t kMaxRdnss = 8;

// Checks shared by all NDP messages we answer (RFC 4861 6.1, 7.1.1).
bool ValidNdp(const FrameView& v, std::span<const uint8_t> frame, size_t min_len) {
  return v.ttl == kNdpHopLimit && v.icmp_code == 0 && v.l4_len >= min_len &&
         VerifyL4Checksum(v, frame);
}

void HandleNeighborSolicit(Ctx& c, const FrameView& v, std::span<const uint8_t> frame) {
  if (!ValidNdp(v, frame, 24)) {
    c.counters.bad++;
    return;
  }
  Addr6 target;
  std::memcpy(target.b.data(), frame.data() + v.l4_off + 8, 16);
  if (target.IsMulticast() || target.IsV4()) {  // IsV4: an IPv4-mapped address
    c.counters.bad++;
    return;
  }
  // Not for the guest's own addresses, and not during its duplicate address
  // detection (source ::): the guest must find its addresses free.
  if (v.src.IsUnspecified6() || target == Addr6::FromIn6(c.cfg.addr6) ||
      (c.state.guest_ll6_known && target == Addr6::FromIn6(c.state.guest_ll6))) {
    c.counters.ns_ignored++;
    return;
  }
  constexpr size_t kNaLen = 32;  // header, target, target link-layer option
  constexpr size_t kFrameLen = kEthHeaderLen + kIpv6HeaderLen + kNaLen;
  std::span<uint8_t> buf = Reserve(c, kFrameLen);
  if (buf.empty()) return;
  FrameAddrs a{c.cfg.our_mac, v.eth_src, target, v.src, kNdpHopLimit};
  size_t off = WriteEthIpHeaders(buf.data(), a, IPPROTO_ICMPV6, kNaLen);
  uint8_t* m = buf.data() + off;
  std::memset(m, 0, kNaLen);
  m[0] = kIcmp6NeighborAdvert;
  m[4] = 0xe0;  // router, solicited, override
  std::memcpy(m + 8, target.b.data(), 16);
  m[24] = 2;  // target link-layer address
  m[25] = 1;
  std::memcpy(m + 26, c.cfg.our_mac.data(), 6);
  FillL4Checksum(buf.subspan(off, kNaLen), a.src, a.dst, IPPROTO_ICMPV6, 2);
  c.out.Commit(kFrameLen);
  c.counters.na_sent++;
}

void HandleRouterSolicit(Ctx& c, const FrameView& v, std::span<const uint8_t> frame) {
  if (!ValidNdp(v, frame, 8)) {
    c.counters.bad++;
    return;
  }
  c.counters.rs_received++;
  if (v.src.IsUnspecified6())
    SendRouterAdvert(c, MulticastMac6(AllNodes6()), AllNodes6());
  else
    SendRouterAdvert(c, v.eth_src, v.src);
}

}  // namespace

void HandleNdp(Ctx& c, const FrameView& v, std::span<const uint8_t> frame) {
  if (!c.cfg.has_v6) return;
  switch (v.icmp_type) {
    case kIcmp6NeighborSolicit:
      HandleNeighborSolicit(c, v, frame);
      return;
    case kIcmp6RouterSolicit:
      HandleRouterSolicit(c, v, frame);
      return;
    default:
      return;  // MLD, advertisements and redirects from the guest: nothing to do
  }
}

void SendRouterAdvert(Ctx& c, const MacAddr& dst_mac, const Addr6& dst) {
  const LinkConfig& cfg = c.cfg;
  size_t n_dns = std::min(cfg.dns6.size(), kMaxRdnss);
  size_t names_len = EncodeDomainNames(cfg.search, {});
  size_t dnssl_len = (8 + names_len + 7) / 8 * 8;
  if (names_len == 0 || dnssl_len > 255 * 8) dnssl_len = 0;  // none, or too long to carry
  bool mtu = cfg.mtu >= 1280;
  size_t ra_len = 16 + 8 /* source link-layer */ + (mtu ? 8 : 0) + 32 /* prefix */ +
                  (n_dns ? 8 + 16 * n_dns : 0) + dnssl_len;
  size_t frame_len = kEthHeaderLen + kIpv6HeaderLen + ra_len;
  if (dnssl_len && frame_len > kEthHeaderLen + std::max<uint32_t>(cfg.mtu, 1280)) {
    // A search list too long for the link's MTU: the RA goes without it.
    ra_len -= dnssl_len;
    frame_len -= dnssl_len;
    dnssl_len = 0;
  }
  std::span<uint8_t> buf = Reserve(c, frame_len);
  if (buf.empty()) return;
  FrameAddrs a{cfg.our_mac, dst_mac, Addr6::FromIn6(cfg.gw6), dst, kNdpHopLimit};
  size_t off = WriteEthIpHeaders(buf.data(), a, IPPROTO_ICMPV6, ra_len);
  uint8_t* m = buf.data() + off;
  std::memset(m, 0, ra_len);
  m[0] = kIcmp6RouterAdvert;
  m[4] = 64;    // current hop limit for the guest
  m[5] = 0x80;  // managed: addresses from DHCPv6
  Store16(m + 6, kRouterLifetime);
  uint8_t* o = m + 16;
  o[0] = 1;  // source link-layer address
  o[1] = 1;
  std::memcpy(o + 2, cfg.our_mac.data(), 6);
  o += 8;
  if (mtu) {
    o[0] = 5;
    o[1] = 1;
    Store32(o + 4, cfg.mtu);
    o += 8;
  }
  o[0] = 3;  // prefix information: the guest's /64, on-link and autonomous
  o[1] = 4;
  o[2] = 64;
  o[3] = 0xc0;
  Store32(o + 4, kPrefixValid);
  Store32(o + 8, kPrefixPreferred);
  std::memcpy(o + 16, &cfg.addr6, 8);
  o += 32;
  if (n_dns) {
    o[0] = 25;
    o[1] = static_cast<uint8_t>(1 + 2 * n_dns);
    Store32(o + 4, kResolverLifetime);
    for (size_t i = 0; i < n_dns; i++) std::memcpy(o + 8 + 16 * i, &cfg.dns6[i], 16);
    o += 8 + 16 * n_dns;
  }
  if (dnssl_len) {
    o[0] = 31;
    o[1] = static_cast<uint8_t>(dnssl_len / 8);
    Store32(o + 4, kResolverLifetime);
    EncodeDomainNames(cfg.search, std::span<uint8_t>(o + 8, names_len));
    o += dnssl_len;
  }
  FillL4Checksum(buf.subspan(off, ra_len), a.src, a.dst, IPPROTO_ICMPV6, 2);
  c.out.Commit(frame_len);
  c.counters.ra_sent++;
}

}  // namespace ringfwd::link
