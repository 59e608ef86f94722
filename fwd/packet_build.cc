// The frame builders of packet.h: every frame we send to the guest is made
// here or from these pieces, with all its checksums.
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "fwd/packet.h"

namespace ringfwd {
namespace {

size_t IpHeaderLen(const Addr6& src) { return src.IsV4() ? kIpv4HeaderLen : kIpv6HeaderLen; }

// The largest L4 segment an IP packet of this family can carry.
size_t MaxL4Len(const Addr6& src) { return 65535 - (src.IsV4() ? kIpv4HeaderLen : 0); }

}  // namespace

void WriteEthHeader(uint8_t* out, const MacAddr& dst, const MacAddr& src, uint16_t ethertype) {
  std::memcpy(out, dst.data(), 6);
  std::memcpy(out + 6, src.data(), 6);
  Store16(out + 12, ethertype);
}

void WriteIpv4Header(uint8_t* out, const Addr6& src, const Addr6& dst, uint8_t proto, uint8_t ttl,
                     size_t l4_len) {
  out[0] = 0x45;
  out[1] = 0;
  Store16(out + 2, static_cast<uint16_t>(kIpv4HeaderLen + l4_len));
  Store16(out + 4, 0);       // ID: unused, the datagram is atomic (RFC 6864)
  Store16(out + 6, 0x4000);  // DF
  out[8] = ttl;
  out[9] = proto;
  Store16(out + 10, 0);
  std::memcpy(out + 12, &src.b[12], 4);
  std::memcpy(out + 16, &dst.b[12], 4);
  Store16(out + 10, Checksum(std::span<const uint8_t>(out, kIpv4HeaderLen)));
}

void WriteIpv6Header(uint8_t* out, const Addr6& src, const Addr6& dst, uint8_t proto,
                     uint8_t hop_limit, size_t l4_len) {
  Store32(out, 0x60000000);
  Store16(out + 4, static_cast<uint16_t>(l4_len));
  out[6] = proto;
  out[7] = hop_limit;
  std::memcpy(out + 8, src.b.data(), 16);
  std::memcpy(out + 24, dst.b.data(), 16);
}

size_t WriteEthIpHeaders(uint8_t* out, const FrameAddrs& a, uint8_t proto, size_t l4_len) {
  if (a.src.IsV4()) {
    WriteEthHeader(out, a.dst_mac, a.src_mac, kEtherTypeIpv4);
    WriteIpv4Header(out + kEthHeaderLen, a.src, a.dst, proto, a.ttl, l4_len);
    return kEthHeaderLen + kIpv4HeaderLen;
  }
  WriteEthHeader(out, a.dst_mac, a.src_mac, kEtherTypeIpv6);
  WriteIpv6Header(out + kEthHeaderLen, a.src, a.dst, proto, a.ttl, l4_len);
  return kEthHeaderLen + kIpv6HeaderLen;
}

void FillL4Checksum(std::span<uint8_t> l4, const Addr6& src, const Addr6& dst, uint8_t proto,
                    size_t csum_off) {
  Store16(l4.data() + csum_off, 0);
  uint32_t sum = 0;
  if (!src.IsV4())
    sum = PseudoHeaderSum6(src.b.data(), dst.b.data(), proto, static_cast<uint32_t>(l4.size()));
  else if (proto != IPPROTO_ICMP)
    sum = PseudoHeaderSum4(&src.b[12], &dst.b[12], proto, static_cast<uint32_t>(l4.size()));
  uint16_t c = ChecksumFinish(ChecksumAdd(l4, sum));
  if (c == 0 && proto == IPPROTO_UDP) c = 0xffff;
  Store16(l4.data() + csum_off, c);
}

size_t FinishUdpFrame(std::span<uint8_t> out, const FrameAddrs& a, uint16_t sport, uint16_t dport,
                      size_t payload_len) {
  size_t l4_len = kUdpHeaderLen + payload_len;
  size_t l4_off = kEthHeaderLen + IpHeaderLen(a.src);
  if (l4_len > MaxL4Len(a.src) || out.size() < l4_off + l4_len) return 0;
  WriteEthIpHeaders(out.data(), a, IPPROTO_UDP, l4_len);
  uint8_t* u = out.data() + l4_off;
  Store16(u, sport);
  Store16(u + 2, dport);
  Store16(u + 4, static_cast<uint16_t>(l4_len));
  FillL4Checksum(out.subspan(l4_off, l4_len), a.src, a.dst, IPPROTO_UDP, 6);
  return l4_off + l4_len;
}

size_t BuildUdpFrame(std::span<uint8_t> out, const FrameAddrs& a, uint16_t sport, uint16_t dport,
                     std::span<const uint8_t> payload) {
  size_t off = kEthHeaderLen + IpHeaderLen(a.src) + kUdpHeaderLen;
  if (out.size() < off + payload.size()) return 0;
  if (!payload.empty()) std::memmove(out.data() + off, payload.data(), payload.size());
  return FinishUdpFrame(out, a, sport, dport, payload.size());
}

size_t FinishTcpFrame(std::span<uint8_t> out, const FrameAddrs& a, const TcpSegmentHeader& h,
                      size_t payload_len, bool partial_checksum) {
  size_t opt_len = h.options.size();
  if (opt_len % 4 || opt_len > 40) return 0;
  size_t l4_len = kTcpHeaderLen + opt_len + payload_len;
  size_t l4_off = kEthHeaderLen + IpHeaderLen(a.src);
  if (l4_len > MaxL4Len(a.src) || out.size() < l4_off + l4_len) return 0;
  WriteEthIpHeaders(out.data(), a, IPPROTO_TCP, l4_len);
  uint8_t* t = out.data() + l4_off;
  Store16(t, h.sport);
  Store16(t + 2, h.dport);
  Store32(t + 4, h.seq);
  Store32(t + 8, h.ack);
  t[12] = static_cast<uint8_t>(((kTcpHeaderLen + opt_len) / 4) << 4);
  t[13] = h.flags;
  Store16(t + 14, h.window);
  Store16(t + 18, 0);  // urgent pointer
  if (opt_len) std::memcpy(t + kTcpHeaderLen, h.options.data(), opt_len);
  if (partial_checksum) {
    uint32_t len32 = static_cast<uint32_t>(l4_len);
    uint32_t sum = a.src.IsV4()
                       ? PseudoHeaderSum4(&a.src.b[12], &a.dst.b[12], IPPROTO_TCP, len32)
                       : PseudoHeaderSum6(a.src.b.data(), a.dst.b.data(), IPPROTO_TCP, len32);
    Store16(t + 16, static_cast<uint16_t>(~ChecksumFinish(sum)));  // folded, not complemented
  } else {
    FillL4Checksum(out.subspan(l4_off, l4_len), a.src, a.dst, IPPROTO_TCP, 16);
  }
  return l4_off + l4_len;
}

size_t BuildEchoFrame(std::span<uint8_t> out, const FrameAddrs& a, bool reply, uint16_t id,
                      uint16_t seq, std::span<const uint8_t> data) {
  bool v4 = a.src.IsV4();
  size_t l4_len = kIcmpHeaderLen + data.size();
  size_t l4_off = kEthHeaderLen + IpHeaderLen(a.src);
  if (l4_len > MaxL4Len(a.src) || out.size() < l4_off + l4_len) return 0;
  uint8_t proto = v4 ? uint8_t{IPPROTO_ICMP} : uint8_t{IPPROTO_ICMPV6};
  WriteEthIpHeaders(out.data(), a, proto, l4_len);
  uint8_t* m = out.data() + l4_off;
  m[0] = v4 ? (reply ? kIcmpEchoReply : kIcmpEchoRequest)
            : (reply ? kIcmp6EchoReply : kIcmp6EchoRequest);
  m[1] = 0;
  Store16(m + 4, id);
  Store16(m + 6, seq);
  if (!data.empty()) std::memmove(m + kIcmpHeaderLen, data.data(), data.size());
  FillL4Checksum(out.subspan(l4_off, l4_len), a.src, a.dst, proto, 2);
  return l4_off + l4_len;
}

size_t BuildIcmpErrorFrame(std::span<uint8_t> out, const FrameAddrs& a, uint8_t type, uint8_t code,
                           uint32_t info, std::span<const uint8_t> original) {
  if (original.empty()) return 0;
  bool v4 = a.src.IsV4();
  size_t ip_hdr = IpHeaderLen(a.src);
  size_t limit = v4 ? 576 : 1280;  // the whole error packet, IP header included
  size_t quote = std::min(original.size(), limit - ip_hdr - kIcmpHeaderLen);
  size_t l4_len = kIcmpHeaderLen + quote;
  size_t l4_off = kEthHeaderLen + ip_hdr;
  if (out.size() < l4_off + l4_len) return 0;
  uint8_t proto = v4 ? uint8_t{IPPROTO_ICMP} : uint8_t{IPPROTO_ICMPV6};
  WriteEthIpHeaders(out.data(), a, proto, l4_len);
  uint8_t* m = out.data() + l4_off;
  m[0] = type;
  m[1] = code;
  Store32(m + 4, info);
  std::memmove(m + kIcmpHeaderLen, original.data(), quote);
  FillL4Checksum(out.subspan(l4_off, l4_len), a.src, a.dst, proto, 2);
  return l4_off + l4_len;
}

}  // namespace ringfwd
