// Test-only helpers for the frame and link-service tests: a FrameSink that
// keeps what it is given, an independent (slow, obvious) checksum, and a
// small frame builder written apart from fwd/packet_build.cc so that the
// tests do not check the code with itself.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fwd/frame_sink.h"
#include "fwd/link_config.h"
#include "gtest/gtest.h"

namespace ringfwd::testing {

using Bytes = std::vector<uint8_t>;

// Collects committed frames; can be made to refuse (a full send queue).
class VecSink : public FrameSink {
 public:
  std::span<uint8_t> Reserve(size_t max_len) override {
    if (refuse || max_len > max_frame) return {};
    buf_.assign(max_len, 0xa5);  // garbage, so unwritten bytes show; ASan sees overruns
    return std::span<uint8_t>(buf_);
  }
  void Commit(size_t len) override {
    EXPECT_LE(len, buf_.size());
    if (len) frames.emplace_back(buf_.begin(), buf_.begin() + len);
    if (len) reserved.push_back(buf_.size());
  }
  std::vector<Bytes> frames;
  std::vector<size_t> reserved;  // the reservation of each committed frame
  bool refuse = false;
  size_t max_frame = SIZE_MAX;  // larger reservations are refused (a link's MTU + 14)

 private:
  Bytes buf_;
};

// RFC 1071, one 16-bit word at a time.
inline uint32_t RefSum(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += (p[i] << 8) | p[i + 1];
  if (n & 1) sum += p[n - 1] << 8;
  return sum;
}
inline uint16_t RefFold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

inline uint16_t Get16(const Bytes& b, size_t off) {
  return static_cast<uint16_t>((b.at(off) << 8) | b.at(off + 1));
}
inline uint32_t Get32(const Bytes& b, size_t off) {
  return (uint32_t{Get16(b, off)} << 16) | Get16(b, off + 2);
}
inline void Put16(Bytes& b, size_t off, uint16_t v) {
  b.at(off) = v >> 8;
  b.at(off + 1) = v & 0xff;
}

// Checks the checksums of an Ethernet/IPv4 or /IPv6 frame without extension
// headers carrying UDP, TCP, ICMP or ICMPv6: the IPv4 header checksum and
// the L4 checksum with its pseudo-header. Fails the test with `what` if not.
inline void ExpectChecksumsValid(const Bytes& f, const std::string& what = "") {
  ASSERT_GE(f.size(), 14u) << what;
  uint16_t type = Get16(f, 12);
  size_t l4, l4_len;
  uint8_t proto;
  uint32_t pseudo;
  if (type == 0x0800) {
    ASSERT_GE(f.size(), 34u) << what;
    size_t ihl = (f[14] & 0xf) * 4;
    EXPECT_EQ(RefFold(RefSum(&f[14], ihl)), 0) << what << ": IPv4 header checksum";
    size_t total = Get16(f, 16);
    ASSERT_LE(14 + total, f.size()) << what;
    l4 = 14 + ihl;
    l4_len = total - ihl;
    proto = f[23];
    pseudo = RefSum(&f[26], 8) + proto + l4_len;
    if (proto == IPPROTO_ICMP) pseudo = 0;
  } else if (type == 0x86dd) {
    ASSERT_GE(f.size(), 54u) << what;
    l4 = 54;
    l4_len = Get16(f, 18);
    ASSERT_LE(54 + l4_len, f.size()) << what;
    proto = f[20];
    pseudo = RefSum(&f[22], 32) + proto + l4_len;
  } else {
    return;  // ARP: no checksum
  }
  EXPECT_EQ(RefFold(RefSum(&f[l4], l4_len, pseudo)), 0) << what << ": L4 checksum";
  if (proto == IPPROTO_UDP) {
    EXPECT_EQ(Get16(f, l4 + 4), l4_len) << what << ": UDP length";
  }
}

inline in_addr V4(const char* s) {
  in_addr a;
  EXPECT_EQ(inet_pton(AF_INET, s, &a), 1);
  return a;
}
inline in6_addr V6(const char* s) {
  in6_addr a;
  EXPECT_EQ(inet_pton(AF_INET6, s, &a), 1);
  return a;
}

// The link of the tests: documentation addresses only.
inline LinkConfig TestConfig() {
  LinkConfig c;
  c.has_v4 = true;
  c.addr4 = V4("192.0.2.10");
  c.prefix4 = 24;
  c.gw4 = V4("192.0.2.1");
  c.dns4 = {V4("198.51.100.53")};
  c.has_v6 = true;
  c.addr6 = V6("2001:db8:1::10");
  c.gw6 = V6("fe80::1");
  c.dns6 = {V6("2001:db8:53::1")};
  c.search = {"example.org", "lab.example.net"};
  c.mtu = 65520;
  return c;
}

inline constexpr MacAddr kGuestMac = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

// Hand-made frames (independent of fwd/packet_build.cc).
inline Bytes EthHeader(const MacAddr& dst, const MacAddr& src, uint16_t type) {
  Bytes b(dst.begin(), dst.end());
  b.insert(b.end(), src.begin(), src.end());
  b.push_back(type >> 8);
  b.push_back(type & 0xff);
  return b;
}

// Ethernet + IPv4 (no options) + `l4` (its checksum already right or not).
inline Bytes Ipv4Frame(const MacAddr& dst_mac, const char* src, const char* dst, uint8_t proto,
                       const Bytes& l4, uint8_t ttl = 64) {
  Bytes f = EthHeader(dst_mac, kGuestMac, 0x0800);
  size_t ip = f.size();
  f.resize(ip + 20);
  f[ip] = 0x45;
  Put16(f, ip + 2, static_cast<uint16_t>(20 + l4.size()));
  f[ip + 8] = ttl;
  f[ip + 9] = proto;
  in_addr s = V4(src), d = V4(dst);
  std::memcpy(&f[ip + 12], &s, 4);
  std::memcpy(&f[ip + 16], &d, 4);
  Put16(f, ip + 10, RefFold(RefSum(&f[ip], 20)));
  f.insert(f.end(), l4.begin(), l4.end());
  return f;
}

inline Bytes Ipv6Frame(const MacAddr& dst_mac, const char* src, const char* dst, uint8_t proto,
                       const Bytes& l4, uint8_t hop = 64) {
  Bytes f = EthHeader(dst_mac, kGuestMac, 0x86dd);
  size_t ip = f.size();
  f.resize(ip + 40);
  f[ip] = 0x60;
  Put16(f, ip + 4, static_cast<uint16_t>(l4.size()));
  f[ip + 6] = proto;
  f[ip + 7] = hop;
  in6_addr s = V6(src), d = V6(dst);
  std::memcpy(&f[ip + 8], &s, 16);
  std::memcpy(&f[ip + 24], &d, 16);
  f.insert(f.end(), l4.begin(), l4.end());
  return f;
}

// Fills in the L4 checksum of a frame made by Ipv4Frame/Ipv6Frame (field at
// csum_off within the L4 header).
inline void FixL4Checksum(Bytes& f, size_t csum_off) {
  bool v4 = Get16(f, 12) == 0x0800;
  size_t l4 = v4 ? 34 : 54;
  size_t l4_len = f.size() - l4;
  uint8_t proto = v4 ? f[23] : f[20];
  uint32_t pseudo = v4 ? RefSum(&f[26], 8) : RefSum(&f[22], 32);
  pseudo += proto + l4_len;
  if (v4 && proto == IPPROTO_ICMP) pseudo = 0;
  Put16(f, l4 + csum_off, 0);
  Put16(f, l4 + csum_off, RefFold(RefSum(&f[l4], l4_len, pseudo)));
}

inline Bytes UdpHeader(uint16_t sport, uint16_t dport, const Bytes& payload) {
  // Sized once and filled (GCC 12 at -O3 misreads an insert after an
  // 8-byte vector as out of bounds).
  Bytes u(8 + payload.size());
  Put16(u, 0, sport);
  Put16(u, 2, dport);
  Put16(u, 4, static_cast<uint16_t>(8 + payload.size()));
  std::copy(payload.begin(), payload.end(), u.begin() + 8);
  return u;
}

}  // namespace ringfwd::testing
