// Internal to the link services (link_services.cc and link_*.cc): the
// handlers the dispatcher calls and the pieces they share. Not a public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fwd/frame_sink.h"
#include "fwd/link_config.h"
#include "fwd/link_services.h"
#include "fwd/packet.h"

namespace ringfwd::link {

// What a handler works with for one frame.
struct Ctx {
  const LinkConfig& cfg;
  LinkState& state;
  LinkCounters& counters;
  FrameSink& out;
};

// Each takes a view that parsed and is of its kind (see the dispatcher).
void HandleArp(Ctx& c, const FrameView& v);
void HandleNdp(Ctx& c, const FrameView& v, std::span<const uint8_t> frame);
void HandleDhcp(Ctx& c, const FrameView& v, std::span<const uint8_t> frame);
void HandleDhcpv6(Ctx& c, const FrameView& v, std::span<const uint8_t> frame);

// Sends a router advertisement to dst (ff02::1 for an unsolicited one).
void SendRouterAdvert(Ctx& c, const MacAddr& dst_mac, const Addr6& dst);

// A buffer of max_len bytes from the sink, or an empty span (counted).
std::span<uint8_t> Reserve(Ctx& c, size_t max_len);

// Writes `names` as a sequence of uncompressed DNS names (RFC 1035 3.1:
// length-prefixed labels, a zero byte at the end of each name), the encoding
// of DHCP option 119, DHCPv6 option 24 and the NDP DNSSL option. Empty labels
// are skipped; a name with a label over 63 bytes is left out. Returns the
// bytes written, or the bytes needed when `out` is too short (so a call with
// an empty span measures).
size_t EncodeDomainNames(const std::vector<std::string>& names, std::span<uint8_t> out);

// ff02::1 (all nodes) and ff02::1:2 (all DHCP relay agents and servers).
Addr6 AllNodes6();
Addr6 AllDhcpServers6();
// The Ethernet multicast address of an IPv6 multicast address (33:33:...).
MacAddr MulticastMac6(const Addr6& a);

}  // namespace ringfwd::link
