// ParseFrame and VerifyL4Checksum: the checks a frame from the guest passes
// before anything acts on it. The builders are in packet_build.cc.
#include "fwd/packet.h"

#include <netinet/in.h>

#include <cstring>

namespace ringfwd {
namespace {

// IPv6 extension headers walked on the way to the L4 header; more than this
// many is refused (a chain that long is an attack, not a guest).
constexpr int kMaxExtHeaders = 8;

MacAddr LoadMac(const uint8_t* p) {
  MacAddr m;
  std::memcpy(m.data(), p, 6);
  return m;
}

Addr6 LoadV4(const uint8_t* p) {
  Addr6 a;
  a.b[10] = 0xff;
  a.b[11] = 0xff;
  std::memcpy(&a.b[12], p, 4);
  return a;
}

Addr6 LoadV6(const uint8_t* p) {
  Addr6 a;
  std::memcpy(a.b.data(), p, 16);
  return a;
}

void ParseArp(std::span<const uint8_t> f, FrameView& v) {
  // htype(2) ptype(2) hlen(1) plen(1) op(2) sha(6) spa(4) tha(6) tpa(4)
  constexpr size_t kArpLen = 28;
  if (f.size() < v.l3_off + kArpLen) {
    v.drop = DropReason::kTruncatedArp;
    return;
  }
  const uint8_t* p = f.data() + v.l3_off;
  if (Load16(p) != 1 || Load16(p + 2) != kEtherTypeIpv4 || p[4] != 6 || p[5] != 4) {
    v.drop = DropReason::kBadArp;
    return;
  }
  v.arp_op = Load16(p + 6);
  v.arp_sha = LoadMac(p + 8);
  v.arp_spa = LoadV4(p + 14);
  v.arp_tha = LoadMac(p + 18);
  v.arp_tpa = LoadV4(p + 24);
}

// Parses the L4 header of the segment [l4_off, l4_off + l4_len).
void ParseL4(std::span<const uint8_t> f, FrameView& v) {
  const uint8_t* p = f.data() + v.l4_off;
  switch (v.l4_proto) {
    case IPPROTO_UDP: {
      if (v.l4_len < kUdpHeaderLen) {
        v.drop = DropReason::kTruncatedL4;
        return;
      }
      uint16_t len = Load16(p + 4);
      if (len < kUdpHeaderLen || len != v.l4_len) {
        v.drop = DropReason::kBadUdpLen;
        return;
      }
      v.sport = Load16(p);
      v.dport = Load16(p + 2);
      v.payload_off = v.l4_off + kUdpHeaderLen;
      v.payload_len = v.l4_len - kUdpHeaderLen;
      return;
    }
    case IPPROTO_TCP: {
      if (v.l4_len < 20) {
        v.drop = DropReason::kTruncatedL4;
        return;
      }
      uint32_t hlen = (p[12] >> 4) * 4u;
      if (hlen < 20 || hlen > v.l4_len) {
        v.drop = DropReason::kBadTcpHeaderLen;
        return;
      }
      v.sport = Load16(p);
      v.dport = Load16(p + 2);
      v.tcp_seq = Load32(p + 4);
      v.tcp_ack = Load32(p + 8);
      v.tcp_flags = p[13];
      v.tcp_window = Load16(p + 14);
      v.tcp_opt_off = v.l4_off + 20;
      v.tcp_opt_len = hlen - 20;
      v.payload_off = v.l4_off + hlen;
      v.payload_len = v.l4_len - hlen;
      return;
    }
    case IPPROTO_ICMP:
    case IPPROTO_ICMPV6: {
      // The ICMP type must match the IP version.
      if ((v.l4_proto == IPPROTO_ICMP) != v.is_v4()) return;
      if (v.l4_len < kIcmpHeaderLen) {
        v.drop = DropReason::kTruncatedL4;
        return;
      }
      v.icmp_type = p[0];
      v.icmp_code = p[1];
      bool echo = v.is_v4() ? (p[0] == kIcmpEchoRequest || p[0] == kIcmpEchoReply)
                            : (p[0] == kIcmp6EchoRequest || p[0] == kIcmp6EchoReply);
      if (echo) {
        v.icmp_id = Load16(p + 4);
        v.icmp_seq = Load16(p + 6);
        v.sport = v.dport = v.icmp_id;
      }
      v.payload_off = v.l4_off + kIcmpHeaderLen;
      v.payload_len = v.l4_len - kIcmpHeaderLen;
      return;
    }
    default:
      return;  // carried, not parsed
  }
}

void ParseIpv4(std::span<const uint8_t> f, FrameView& v) {
  size_t avail = f.size() - v.l3_off;
  const uint8_t* p = f.data() + v.l3_off;
  if (avail < kIpv4HeaderLen) {
    v.drop = DropReason::kTruncatedIp;
    return;
  }
  if ((p[0] >> 4) != 4) {
    v.drop = DropReason::kBadIpVersion;
    return;
  }
  size_t ihl = (p[0] & 0xf) * 4u;
  if (ihl < kIpv4HeaderLen) {
    v.drop = DropReason::kBadIpHeaderLen;
    return;
  }
  if (avail < ihl) {
    v.drop = DropReason::kTruncatedIp;
    return;
  }
  size_t total = Load16(p + 2);
  if (total < ihl || total > avail) {
    v.drop = DropReason::kBadIpLen;
    return;
  }
  if (Checksum(std::span<const uint8_t>(p, ihl)) != 0) {
    v.drop = DropReason::kBadIpChecksum;
    return;
  }
  v.tos = p[1];
  v.ttl = p[8];
  v.l4_proto = p[9];
  v.src = LoadV4(p + 12);
  v.dst = LoadV4(p + 16);
  v.ip_len = static_cast<uint32_t>(total);
  uint16_t frag = Load16(p + 6);
  if (frag & 0x3fff) {  // MF or a fragment offset
    v.drop = DropReason::kFragment;
    return;
  }
  v.l4_off = static_cast<uint32_t>(v.l3_off + ihl);
  v.l4_len = static_cast<uint32_t>(total - ihl);
  ParseL4(f, v);
}

void ParseIpv6(std::span<const uint8_t> f, FrameView& v) {
  size_t avail = f.size() - v.l3_off;
  const uint8_t* p = f.data() + v.l3_off;
  if (avail < kIpv6HeaderLen) {
    v.drop = DropReason::kTruncatedIp;
    return;
  }
  if ((p[0] >> 4) != 6) {
    v.drop = DropReason::kBadIpVersion;
    return;
  }
  size_t plen = Load16(p + 4);
  // A payload length of 0 with a hop-by-hop header is a jumbogram: refused
  // like any length beyond the frame.
  if (plen == 0 && p[6] == IPPROTO_HOPOPTS) {
    v.drop = DropReason::kBadIpLen;
    return;
  }
  if (kIpv6HeaderLen + plen > avail) {
    v.drop = DropReason::kBadIpLen;
    return;
  }
  v.tos = static_cast<uint8_t>((Load16(p) >> 4) & 0xff);
  v.ttl = p[7];
  v.src = LoadV6(p + 8);
  v.dst = LoadV6(p + 24);
  if (v.src.IsV4() || v.dst.IsV4() || v.src.IsMulticast()) {
    v.drop = DropReason::kBadAddress;
    return;
  }
  v.ip_len = static_cast<uint32_t>(kIpv6HeaderLen + plen);
  uint8_t next = p[6];
  size_t off = kIpv6HeaderLen;  // from the IPv6 header
  size_t end = kIpv6HeaderLen + plen;
  for (int i = 0;; i++) {
    if (next == IPPROTO_FRAGMENT) {
      v.l4_proto = next;
      v.drop = DropReason::kFragment;
      return;
    }
    if (next != IPPROTO_HOPOPTS && next != IPPROTO_DSTOPTS && next != IPPROTO_ROUTING) break;
    // Hop-by-hop is only allowed right after the IPv6 header.
    if (i == kMaxExtHeaders || end - off < 8 || (next == IPPROTO_HOPOPTS && i != 0)) {
      v.drop = DropReason::kBadExtHeader;
      return;
    }
    size_t hlen = (p[off + 1] + 1u) * 8;
    if (hlen > end - off) {
      v.drop = DropReason::kBadExtHeader;
      return;
    }
    next = p[off];
    off += hlen;
  }
  v.l4_proto = next;
  v.l4_off = static_cast<uint32_t>(v.l3_off + off);
  v.l4_len = static_cast<uint32_t>(end - off);
  ParseL4(f, v);
}

}  // namespace

const char* DropReasonName(DropReason r) {
  switch (r) {
    case DropReason::kNone:
      return "none";
    case DropReason::kTruncatedEth:
      return "truncated_eth";
    case DropReason::kVlan:
      return "vlan";
    case DropReason::kUnknownEthertype:
      return "unknown_ethertype";
    case DropReason::kTruncatedArp:
      return "truncated_arp";
    case DropReason::kBadArp:
      return "bad_arp";
    case DropReason::kTruncatedIp:
      return "truncated_ip";
    case DropReason::kBadIpVersion:
      return "bad_ip_version";
    case DropReason::kBadIpHeaderLen:
      return "bad_ip_header_len";
    case DropReason::kBadIpLen:
      return "bad_ip_len";
    case DropReason::kBadIpChecksum:
      return "bad_ip_checksum";
    case DropReason::kFragment:
      return "fragment";
    case DropReason::kBadExtHeader:
      return "bad_ext_header";
    case DropReason::kTruncatedL4:
      return "truncated_l4";
    case DropReason::kBadUdpLen:
      return "bad_udp_len";
    case DropReason::kBadTcpHeaderLen:
      return "bad_tcp_header_len";
    case DropReason::kBadAddress:
      return "bad_address";
    case DropReason::kCount:
      break;
  }
  return "unknown";
}

FrameView ParseFrame(std::span<const uint8_t> frame) {
  FrameView v;
  if (frame.size() < kEthHeaderLen) {
    v.drop = DropReason::kTruncatedEth;
    return v;
  }
  const uint8_t* p = frame.data();
  v.eth_dst = LoadMac(p);
  v.eth_src = LoadMac(p + 6);
  v.ethertype = Load16(p + 12);
  v.l3_off = kEthHeaderLen;
  switch (v.ethertype) {
    case kEtherTypeArp:
      v.l3 = L3Kind::kArp;
      ParseArp(frame, v);
      break;
    case kEtherTypeIpv4:
      v.l3 = L3Kind::kIpv4;
      ParseIpv4(frame, v);
      break;
    case kEtherTypeIpv6:
      v.l3 = L3Kind::kIpv6;
      ParseIpv6(frame, v);
      break;
    case kEtherTypeVlan:
    case 0x88a8:  // 802.1ad
      v.drop = DropReason::kVlan;
      break;
    default:
      v.drop = DropReason::kUnknownEthertype;
      break;
  }
  return v;
}

bool VerifyL4Checksum(const FrameView& v, std::span<const uint8_t> frame) {
  if (!v.ok() || (!v.is_v4() && !v.is_v6())) return false;
  if (size_t{v.l4_off} + v.l4_len > frame.size()) return false;
  std::span<const uint8_t> l4 = frame.subspan(v.l4_off, v.l4_len);
  uint32_t sum;
  switch (v.l4_proto) {
    case IPPROTO_UDP:
      if (v.l4_len < kUdpHeaderLen) return false;
      if (v.is_v4() && Load16(l4.data() + 6) == 0) return true;  // no checksum
      break;
    case IPPROTO_TCP:
      if (v.l4_len < 20) return false;
      break;
    case IPPROTO_ICMP:
      if (!v.is_v4() || v.l4_len < 4) return false;
      return Checksum(l4) == 0;
    case IPPROTO_ICMPV6:
      if (!v.is_v6() || v.l4_len < 4) return false;
      break;
    default:
      return false;
  }
  if (v.checksum_trusted) return true;  // partial or verified by the guest's kernel
  if (v.is_v4())
    sum = PseudoHeaderSum4(&v.src.b[12], &v.dst.b[12], v.l4_proto, v.l4_len);
  else
    sum = PseudoHeaderSum6(v.src.b.data(), v.dst.b.data(), v.l4_proto, v.l4_len);
  return ChecksumFinish(ChecksumAdd(l4, sum)) == 0;
}

}  // namespace ringfwd
