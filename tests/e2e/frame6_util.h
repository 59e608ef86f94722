// IPv6 frames for the tap-mode end-to-end tests, built and checked
// independently of ringfwd's own packet code: UDP datagrams, neighbour and
// router solicitations, and a parser that verifies every checksum.
#pragma once

#include <array>
#include <cstdint>

#include "tests/e2e/tap_util.h"

namespace ringfwd::e2e {

using Ip6 = std::array<uint8_t, 16>;

Ip6 Ip6Of(const char* text);

// An Ethernet/IPv6/UDP frame with a valid UDP checksum.
Bytes UdpFrame6(const Mac& src_mac, const Mac& dst_mac, const Ip6& src, const Ip6& dst,
                uint16_t sport, uint16_t dport, const Bytes& payload);
// A neighbour solicitation from (mac, src) for `target`, to the target's
// solicited-node multicast group, with the source link-layer option.
Bytes NeighbourSolicitation(const Mac& mac, const Ip6& src, const Ip6& target);
// A router solicitation from (mac, src) to all routers, with the source
// link-layer option.
Bytes RouterSolicitation(const Mac& mac, const Ip6& src);

// A parsed IPv6 frame: ok only if the UDP or ICMPv6 checksum verifies.
struct Parsed6 {
  bool ok = false;
  Mac dst_mac{}, src_mac{};
  uint8_t next = 0;  // 17 UDP, 58 ICMPv6 (no extension headers expected)
  uint8_t hop_limit = 0;
  Ip6 src{}, dst{};
  uint16_t sport = 0, dport = 0;  // UDP
  uint8_t icmp_type = 0;          // ICMPv6
  Bytes payload;                  // UDP payload, or the ICMPv6 message whole
};
Parsed6 ParseFrame6(const Bytes& frame);

// The link-layer address option (type 1 source, 2 target) of an NDP
// message (Parsed6::payload), or nullopt.
std::optional<Mac> NdpLinkLayerOption(const Bytes& icmp, uint8_t type);

}  // namespace ringfwd::e2e
