#include "tests/e2e/frame6_util.h"

#include <arpa/inet.h>

#include <cstring>

namespace ringfwd::e2e {
namespace {

constexpr size_t kEth = 14, kIp6 = 40;

void Put16At(Bytes& b, size_t off, uint16_t v) {
  b[off] = v >> 8;
  b[off + 1] = v & 0xff;
}
uint16_t Get16At(const Bytes& b, size_t off) { return (b[off] << 8) | b[off + 1]; }

uint32_t PseudoSum6(const Ip6& src, const Ip6& dst, uint8_t next, uint32_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i < 16; i += 2) {
    sum += (src[i] << 8) | src[i + 1];
    sum += (dst[i] << 8) | dst[i + 1];
  }
  return sum + (len >> 16) + (len & 0xffff) + next;
}

// Ethernet and IPv6 headers around `l4`, the checksum at `l4[csum_off]`
// computed over the pseudo-header.
Bytes Ip6Frame(const Mac& src_mac, const Mac& dst_mac, const Ip6& src, const Ip6& dst, uint8_t next,
               uint8_t hop_limit, Bytes l4, size_t csum_off) {
  Bytes f(kEth + kIp6, 0);
  std::memcpy(f.data(), dst_mac.data(), 6);
  std::memcpy(f.data() + 6, src_mac.data(), 6);
  Put16At(f, 12, 0x86dd);
  f[kEth] = 0x60;
  Put16At(f, kEth + 4, static_cast<uint16_t>(l4.size()));
  f[kEth + 6] = next;
  f[kEth + 7] = hop_limit;
  std::memcpy(f.data() + kEth + 8, src.data(), 16);
  std::memcpy(f.data() + kEth + 24, dst.data(), 16);
  Put16At(l4, csum_off, 0);
  uint16_t c = InetChecksum(l4.data(), l4.size(),
                            PseudoSum6(src, dst, next, static_cast<uint32_t>(l4.size())));
  if (next == 17 && c == 0) c = 0xffff;
  Put16At(l4, csum_off, c);
  f.insert(f.end(), l4.begin(), l4.end());
  return f;
}

Mac MulticastMac(const Ip6& group) {
  return {0x33, 0x33, group[12], group[13], group[14], group[15]};
}

}  // namespace

Ip6 Ip6Of(const char* text) {
  Ip6 a{};
  inet_pton(AF_INET6, text, a.data());
  return a;
}

Bytes UdpFrame6(const Mac& src_mac, const Mac& dst_mac, const Ip6& src, const Ip6& dst,
                uint16_t sport, uint16_t dport, const Bytes& payload) {
  Bytes u(8, 0);
  Put16At(u, 0, sport);
  Put16At(u, 2, dport);
  Put16At(u, 4, static_cast<uint16_t>(8 + payload.size()));
  u.insert(u.end(), payload.begin(), payload.end());
  return Ip6Frame(src_mac, dst_mac, src, dst, 17, 64, std::move(u), 6);
}

Bytes NeighbourSolicitation(const Mac& mac, const Ip6& src, const Ip6& target) {
  Ip6 group = Ip6Of("ff02::1:ff00:0");
  group[13] = target[13];
  group[14] = target[14];
  group[15] = target[15];
  Bytes m(24, 0);
  m[0] = 135;
  std::memcpy(m.data() + 8, target.data(), 16);
  m.insert(m.end(), {1, 1});
  m.insert(m.end(), mac.begin(), mac.end());
  return Ip6Frame(mac, MulticastMac(group), src, group, 58, 255, std::move(m), 2);
}

Bytes RouterSolicitation(const Mac& mac, const Ip6& src) {
  Ip6 routers = Ip6Of("ff02::2");
  Bytes m(8, 0);
  m[0] = 133;
  m.insert(m.end(), {1, 1});
  m.insert(m.end(), mac.begin(), mac.end());
  return Ip6Frame(mac, MulticastMac(routers), src, routers, 58, 255, std::move(m), 2);
}

Parsed6 ParseFrame6(const Bytes& f) {
  Parsed6 r;
  if (f.size() < kEth + kIp6 || Get16At(f, 12) != 0x86dd || (f[kEth] >> 4) != 6) return r;
  std::memcpy(r.dst_mac.data(), f.data(), 6);
  std::memcpy(r.src_mac.data(), f.data() + 6, 6);
  size_t plen = Get16At(f, kEth + 4);
  if (kEth + kIp6 + plen > f.size()) return r;
  r.next = f[kEth + 6];
  r.hop_limit = f[kEth + 7];
  std::memcpy(r.src.data(), f.data() + kEth + 8, 16);
  std::memcpy(r.dst.data(), f.data() + kEth + 24, 16);
  const uint8_t* l4 = f.data() + kEth + kIp6;
  if (r.next != 17 && r.next != 58) return r;
  if (InetChecksum(l4, plen, PseudoSum6(r.src, r.dst, r.next, static_cast<uint32_t>(plen))) != 0)
    return r;
  if (r.next == 17) {
    if (plen < 8 || Get16At(f, kEth + kIp6 + 4) != plen) return r;
    r.sport = Get16At(f, kEth + kIp6);
    r.dport = Get16At(f, kEth + kIp6 + 2);
    r.payload.assign(l4 + 8, l4 + plen);
  } else {
    if (plen < 4) return r;
    r.icmp_type = l4[0];
    r.payload.assign(l4, l4 + plen);
  }
  r.ok = true;
  return r;
}

std::optional<Mac> NdpLinkLayerOption(const Bytes& icmp, uint8_t type) {
  // Options start after the fixed part: 24 bytes for NS/NA, 16 for RA.
  size_t off = icmp.empty() ? 0 : (icmp[0] == 134 ? 16 : 24);
  while (off + 2 <= icmp.size()) {
    size_t len = icmp[off + 1] * 8;
    if (len == 0 || off + len > icmp.size()) return std::nullopt;
    if (icmp[off] == type && len >= 8) {
      Mac m;
      std::memcpy(m.data(), icmp.data() + off + 2, 6);
      return m;
    }
    off += len;
  }
  return std::nullopt;
}

}  // namespace ringfwd::e2e
