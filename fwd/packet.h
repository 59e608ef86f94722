// Parsing and building of the Ethernet frames of a tap link.
//
// ParseFrame() checks a frame from the guest layer by layer (Ethernet, ARP or
// IPv4/IPv6 with the common IPv6 extension headers, then UDP, TCP, ICMP or
// ICMPv6) and fills a FrameView: offsets into the frame, addresses, ports,
// and on a bad frame the reason it is dropped. It never copies the frame and
// never reads outside it; the view stays valid as long as the frame's bytes.
//
// The Build* functions write one complete frame (Ethernet header included,
// every checksum computed) into a caller's buffer, typically the span
// FrameSink::Reserve() returned, and return its length, or 0 if it does not
// fit (nothing meaningful is written then).
//
// Conventions: multi-byte fields of FrameView are in host byte order;
// addresses are Addr6 (fwd/addr.h), IPv4 in its mapped form ::ffff:a.b.c.d.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "fwd/addr.h"
#include "fwd/checksum.h"
#include "fwd/link_config.h"

namespace ringfwd {

inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEtherTypeVlan = 0x8100;
inline constexpr uint16_t kEtherTypeIpv6 = 0x86dd;

inline constexpr size_t kEthHeaderLen = 14;
inline constexpr size_t kIpv4HeaderLen = 20;  // as we build them: no options
inline constexpr size_t kIpv6HeaderLen = 40;
inline constexpr size_t kUdpHeaderLen = 8;
inline constexpr size_t kIcmpHeaderLen = 8;  // type, code, checksum, 4 bytes
// Headers in front of the payload of a UDP frame we build.
inline constexpr size_t kUdp4FrameHeadersLen = kEthHeaderLen + kIpv4HeaderLen + kUdpHeaderLen;
inline constexpr size_t kUdp6FrameHeadersLen = kEthHeaderLen + kIpv6HeaderLen + kUdpHeaderLen;
// The largest frame: a 65535-byte IP packet plus the Ethernet header.
inline constexpr size_t kMaxFrameLen = 65535 + kEthHeaderLen;

inline constexpr MacAddr kBroadcastMac = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

// Why ParseFrame refused a frame. Every value has a name (DropReasonName) for
// counters and logs; kCount is the number of values.
enum class DropReason : uint8_t {
  kNone = 0,          // the frame parsed
  kTruncatedEth,      // shorter than an Ethernet header
  kVlan,              // 802.1Q tagged: no VLANs on the link
  kUnknownEthertype,  // neither IPv4, IPv6 nor ARP
  kTruncatedArp,      // shorter than an Ethernet/IPv4 ARP packet
  kBadArp,            // ARP for another hardware or protocol type
  kTruncatedIp,       // shorter than the IP header (or its IHL)
  kBadIpVersion,      // version field does not match the ethertype
  kBadIpHeaderLen,    // IPv4 IHL under 5
  kBadIpLen,          // IPv4 total length or IPv6 payload length beyond the
                      // frame, IPv4 total length under the header, jumbograms
  kBadIpChecksum,     // IPv4 header checksum
  kFragment,          // IPv4 MF/offset or an IPv6 fragment header: unsupported
  kBadExtHeader,      // IPv6 extension header truncated, or too many
  kTruncatedL4,       // shorter than the UDP/TCP/ICMP header
  kBadUdpLen,         // UDP length under 8 or not matching the IP length
  kBadTcpHeaderLen,   // TCP data offset under 5 or beyond the segment
  kBadAddress,        // IPv6 header with an IPv4-mapped address (never valid on
                      // the wire, and ambiguous in Addr6) or a multicast source
  kCount
};

// A static name for counters and logs ("truncated_eth", "fragment", ...).
const char* DropReasonName(DropReason r);

// TCP flag bits (FrameView::tcp_flags).
inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;
inline constexpr uint8_t kTcpUrg = 0x20;

// ICMP types and codes used on the link.
inline constexpr uint8_t kIcmpEchoReply = 0;
inline constexpr uint8_t kIcmpDestUnreach = 3;  // codes: 0 net, 1 host, 3 port, 4 frag needed,
                                                //        13 administratively prohibited
inline constexpr uint8_t kIcmpEchoRequest = 8;
inline constexpr uint8_t kIcmpTimeExceeded = 11;
inline constexpr uint8_t kIcmp6DestUnreach = 1;  // codes: 0 no route, 1 prohibited,
                                                 //        3 address unreachable, 4 port
inline constexpr uint8_t kIcmp6PacketTooBig = 2;
inline constexpr uint8_t kIcmp6TimeExceeded = 3;
inline constexpr uint8_t kIcmp6EchoRequest = 128;
inline constexpr uint8_t kIcmp6EchoReply = 129;
inline constexpr uint8_t kIcmp6RouterSolicit = 133;
inline constexpr uint8_t kIcmp6RouterAdvert = 134;
inline constexpr uint8_t kIcmp6NeighborSolicit = 135;
inline constexpr uint8_t kIcmp6NeighborAdvert = 136;

enum class L3Kind : uint8_t { kNone = 0, kArp, kIpv4, kIpv6 };

// What ParseFrame found. Offsets are from the start of the frame. A field is
// meaningful only for the layers the frame has (see l3, l4_proto); on a drop,
// the fields of the layers parsed before the failure are set.
struct FrameView {
  DropReason drop = DropReason::kNone;
  bool ok() const { return drop == DropReason::kNone; }

  // Ethernet.
  MacAddr eth_dst{};
  MacAddr eth_src{};
  uint16_t ethertype = 0;
  L3Kind l3 = L3Kind::kNone;
  uint32_t l3_off = 0;  // the IP header or the ARP packet

  // ARP (l3 == kArp), Ethernet/IPv4 only.
  uint16_t arp_op = 0;  // 1 request, 2 reply
  MacAddr arp_sha{};    // sender hardware address
  MacAddr arp_tha{};    // target hardware address
  Addr6 arp_spa;        // sender and target protocol addresses (mapped)
  Addr6 arp_tpa;

  // IP (l3 == kIpv4 or kIpv6).
  Addr6 src;  // mapped for IPv4
  Addr6 dst;
  uint8_t ttl = 0;  // TTL or hop limit
  uint8_t tos = 0;  // TOS or traffic class
  // The IP packet as its header says, excluding Ethernet padding: ip_len
  // bytes from l3_off. For IPv6, 40 + payload length.
  uint32_t ip_len = 0;

  // Layer 4: the protocol after any IPv6 extension headers (IPPROTO_UDP,
  // IPPROTO_TCP, IPPROTO_ICMP, IPPROTO_ICMPV6, or another value whose header
  // is not parsed), and its segment: l4_len bytes from l4_off.
  uint8_t l4_proto = 0;
  uint32_t l4_off = 0;
  uint32_t l4_len = 0;
  // Ports for UDP and TCP. For ICMP/ICMPv6 echo request and reply both are
  // the echo identifier, so an echo flow groups like a port pair.
  uint16_t sport = 0;
  uint16_t dport = 0;
  // The L4 payload: UDP data, TCP data after options, ICMP data after the
  // 8-byte ICMP header.
  uint32_t payload_off = 0;
  uint32_t payload_len = 0;

  // TCP.
  uint32_t tcp_seq = 0;
  uint32_t tcp_ack = 0;
  uint16_t tcp_window = 0;  // unscaled
  uint8_t tcp_flags = 0;
  uint32_t tcp_opt_off = 0;  // option area: tcp_opt_len bytes from tcp_opt_off
  uint32_t tcp_opt_len = 0;

  // ICMP and ICMPv6.
  uint8_t icmp_type = 0;
  uint8_t icmp_code = 0;
  uint16_t icmp_id = 0;  // echo identifier and sequence (echo types only)
  uint16_t icmp_seq = 0;

  // Set by the caller, not by ParseFrame: the link vouched for the L4
  // checksum (kFrameChecksumTrusted: the guest's kernel left it partial for
  // the link to fill, or verified it). VerifyL4Checksum then passes TCP,
  // UDP and ICMPv6 on their lengths alone.
  bool checksum_trusted = false;

  bool is_v4() const { return l3 == L3Kind::kIpv4; }
  bool is_v6() const { return l3 == L3Kind::kIpv6; }
};

// Parses `frame` (an Ethernet frame without FCS); see FrameView.
FrameView ParseFrame(std::span<const uint8_t> frame);

// True if the L4 checksum of a parsed IP frame (UDP, TCP, ICMP, ICMPv6) is
// right: the pseudo-header for all but ICMP; a UDP/IPv4 checksum of 0 means
// none and passes, and so does a frame whose checksum the link vouched for
// (FrameView::checksum_trusted; not ICMP, never offloaded). False for other protocols and for
// frames that did not parse. ParseFrame does not check it (the cost grows with the size); the link
// services check what they consume.
bool VerifyL4Checksum(const FrameView& v, std::span<const uint8_t> frame);

// The Ethernet and IP endpoints of a frame we build. src and dst are of one
// family: both mapped IPv4, or both IPv6.
struct FrameAddrs {
  MacAddr src_mac{};
  MacAddr dst_mac{};
  Addr6 src;
  Addr6 dst;
  uint8_t ttl = 64;  // TTL or hop limit
};

// Writes the Ethernet, IP and UDP headers in front of a payload of
// `payload_len` bytes that is already in place at out[kUdp4FrameHeadersLen]
// (IPv4) or out[kUdp6FrameHeadersLen] (IPv6), e.g. received there by
// recvmsg(): the zero-copy path. Computes the UDP checksum over the payload.
// Returns the frame length, 0 if out is too short or the packet would exceed
// 65535 bytes.
size_t FinishUdpFrame(std::span<uint8_t> out, const FrameAddrs& a, uint16_t sport, uint16_t dport,
                      size_t payload_len);

// Copies `payload` behind the headers and finishes the frame as above.
size_t BuildUdpFrame(std::span<uint8_t> out, const FrameAddrs& a, uint16_t sport, uint16_t dport,
                     std::span<const uint8_t> payload);

// The TCP header fields of a segment we build. `options` (a multiple of 4
// bytes, at most 40) follow the 20-byte header.
struct TcpSegmentHeader {
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;  // as sent (already scaled down)
  std::span<const uint8_t> options;
};

inline constexpr size_t kTcpHeaderLen = 20;
// Where the payload of a TCP frame we build starts, for the family of `v4`
// and `opt_len` bytes of options.
inline size_t TcpPayloadOffset(bool v4, size_t opt_len) {
  return kEthHeaderLen + (v4 ? kIpv4HeaderLen : kIpv6HeaderLen) + kTcpHeaderLen + opt_len;
}

// Writes the Ethernet, IP and TCP headers (options included) in front of a
// payload of `payload_len` bytes already in place at
// out[TcpPayloadOffset(...)], e.g. peeked there from a socket, and computes
// the TCP checksum. Returns the frame length, 0 if out is too short, the
// options are malformed or the packet would exceed 65535 bytes. With
// `partial_checksum` the checksum field holds only the folded pseudo-header
// sum, for a receiver that completes it (FrameSink::CommitPartial, at
// TcpChecksumStart(), offset 16).
size_t FinishTcpFrame(std::span<uint8_t> out, const FrameAddrs& a, const TcpSegmentHeader& h,
                      size_t payload_len, bool partial_checksum = false);
// Where the TCP header (the checksummed part) starts in such a frame.
inline size_t TcpChecksumStart(bool v4) {
  return kEthHeaderLen + (v4 ? kIpv4HeaderLen : kIpv6HeaderLen);
}

// An ICMP (IPv4) or ICMPv6 (IPv6) echo request or reply with identifier,
// sequence and data.
size_t BuildEchoFrame(std::span<uint8_t> out, const FrameAddrs& a, bool reply, uint16_t id,
                      uint16_t seq, std::span<const uint8_t> data);

// An ICMP/ICMPv6 error of `type` and `code` quoting `original`, the IP packet
// that caused it (from its IP header). `info` goes in the 4 bytes after the
// checksum: the next-hop MTU of "fragmentation needed" (low 16 bits) or the
// MTU of an ICMPv6 "packet too big"; 0 otherwise. As the RFCs ask, IPv4
// quotes as much of the original as keeps the error within 576 bytes (RFC
// 1812), IPv6 within 1280 (RFC 4443); `original` shorter than that is
// quoted whole. Returns 0 for an empty original or if out is too short.
size_t BuildIcmpErrorFrame(std::span<uint8_t> out, const FrameAddrs& a, uint8_t type, uint8_t code,
                           uint32_t info, std::span<const uint8_t> original);

// Low-level pieces for the other builders (link services, translators):
// write the Ethernet header (14 bytes) / an IPv4 header without options (20
// bytes, DF set, ID 0, header checksum computed) / an IPv6 header (40 bytes)
// for an L4 segment of `l4_len` bytes. `out` must be long enough.
void WriteEthHeader(uint8_t* out, const MacAddr& dst, const MacAddr& src, uint16_t ethertype);
void WriteIpv4Header(uint8_t* out, const Addr6& src, const Addr6& dst, uint8_t proto, uint8_t ttl,
                     size_t l4_len);
void WriteIpv6Header(uint8_t* out, const Addr6& src, const Addr6& dst, uint8_t proto,
                     uint8_t hop_limit, size_t l4_len);

// Writes Ethernet and IP headers for `a` (the family of a.src) and returns
// the offset of the L4 header (34 or 54); the L4 segment of l4_len bytes
// follows. `out` must hold the whole frame.
size_t WriteEthIpHeaders(uint8_t* out, const FrameAddrs& a, uint8_t proto, size_t l4_len);

// The L4 checksum of the segment `l4` (its checksum field zero or not: it is
// skipped) between src and dst for protocol proto: with the pseudo-header for
// IPv6 and for UDP/TCP over IPv4, without for ICMP over IPv4. `csum_off` is
// the checksum field's offset in the segment (UDP 6, TCP 16, ICMP 2). The
// result is stored into the field, big-endian; a UDP checksum computing to 0
// is sent as 0xffff.
void FillL4Checksum(std::span<uint8_t> l4, const Addr6& src, const Addr6& dst, uint8_t proto,
                    size_t csum_off);

// Big-endian loads and stores.
inline uint16_t Load16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t Load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
inline void Store16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void Store32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

}  // namespace ringfwd
