// LinkConfig: what the guest on a tap link is told, and who we are on it.
//
// Filled in once at start (from the host's template interface, overridden by
// --address, --gateway, --dns, --mtu) and read by the link services (ARP,
// NDP, DHCP, DHCPv6) and the translation of UDP, ICMP and TCP. Only the
// guest's MAC changes afterwards: it is learned from the frames the guest
// sends (LinkState).
#pragma once

#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ringfwd {

using MacAddr = std::array<uint8_t, 6>;

// Our MAC on the link unless configured: locally administered, unicast.
inline constexpr MacAddr kDefaultOurMac = {0x02, 0x52, 0x46, 0x57, 0x44, 0x01};

struct LinkConfig {
  MacAddr our_mac = kDefaultOurMac;
  uint32_t mtu = 65520;

  // IPv4: the guest's address and prefix, the gateway we answer as (the
  // host's own gateway address, as passt does), and the resolvers we
  // advertise. An unset address (INADDR_ANY) disables IPv4 on the link.
  bool has_v4 = false;
  in_addr addr4{};
  uint8_t prefix4 = 24;
  in_addr gw4{};
  std::vector<in_addr> dns4;

  // IPv6: the guest's global address (advertised as a /64 prefix and given by
  // DHCPv6), the gateway (a link-local address we answer as; its global
  // counterpart, if the host's gateway had one, is also ours), and resolvers.
  bool has_v6 = false;
  in6_addr addr6{};
  uint8_t prefix6 = 64;
  in6_addr gw6{};         // link-local, fe80::/64
  in6_addr gw6_global{};  // the host gateway's global address, or :: (none)
  std::vector<in6_addr> dns6;

  std::vector<std::string> search;  // DNS search list (DHCP option 119, DHCPv6 24)
  uint32_t lease_time_s = 3600;     // DHCPv4 lease and RA lifetimes

  // Guest traffic to the gateway's address goes to the host's loopback.
  bool map_host_loopback = true;
};

// What we learn about the guest as frames arrive.
struct LinkState {
  MacAddr guest_mac{};  // all zero until the guest sent a frame
  bool guest_mac_known = false;
  in6_addr guest_ll6{};  // the guest's link-local IPv6 address, once seen
  bool guest_ll6_known = false;
};

}  // namespace ringfwd
