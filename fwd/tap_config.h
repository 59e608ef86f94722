// TapConfig: from the command line and the host's template interface to the
// options of a tap link (LinkConfig and friends).
//
// Pure functions: the caller looks up the template interfaces (netlink) and
// reads /etc/resolv.conf; this file decides what the guest is told.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fwd/netlink.h"
#include "fwd/tap_link.h"

namespace ringfwd {

// The tap options as given on the command line (text, unparsed).
struct TapArgs {
  bool tap = false;
  std::string qemu_socket;
  std::string netns;
  std::optional<uint32_t> mtu;
  std::vector<std::string> addresses;  // ADDR[/PREFIX], either family
  std::vector<std::string> gateways;
  std::vector<std::string> dns;
  std::vector<std::string> dns_forward;
  std::string mac;
  bool no_map_host_loopback = false;
  std::string fault;  // --tap-fault drop=N,reorder=M (tests)

  // True if any tap-only option was given.
  bool AnyLinkOption() const {
    return mtu || !addresses.empty() || !gateways.empty() || !dns.empty() || !dns_forward.empty() ||
           !mac.empty() || no_map_host_loopback || !fault.empty();
  }
};

// What the host offers: its template interface per family (absent: none) and
// its resolvers (nameserver lines of /etc/resolv.conf, in order).
struct HostNetInfo {
  std::optional<TemplateIface> v4;
  std::optional<TemplateIface> v6;
  std::vector<Addr6> resolvers;
};

// Builds the link options; errors are one line naming the option.
absl::StatusOr<TapLinkOptions> BuildTapLinkOptions(const TapArgs& args, const HostNetInfo& host);

// The nameserver addresses of resolv.conf text.
std::vector<Addr6> ParseResolvConf(const std::string& text);

// "02:52:46:57:44:01"
std::string MacToString(const MacAddr& m);
// One line describing the link, for the startup log.
std::string DescribeTapLink(const TapLinkOptions& o, const std::string& where);

}  // namespace ringfwd
