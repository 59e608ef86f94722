// The -t/-u/-T/-U port specification syntax of pasta and pesto
// (PROTOCOL.md, "Port specifications"), parsed into Rules.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "fwd/rule.h"

namespace ringfwd {

struct PortRange {
  uint16_t first = 0;
  uint16_t last = 0;
};

// Reads the ephemeral port range (default path
// /proc/sys/net/ipv4/ip_local_port_range); falls back to 32768-60999 if the
// file cannot be read or parsed.
PortRange ReadEphemeralRange(const char* path = "/proc/sys/net/ipv4/ip_local_port_range");

struct PortSpecOptions {
  PifId pif = PifId::kHost;  // kSplice: rules bind to "lo" unless an interface is given
  uint8_t proto = kProtoTcp;
  PortRange ephemeral{32768, 60999};
};

// Parses one specification ("22", "none", "127.0.0.1/8000-8010:9000-9010",
// "all", "auto", "5-25,~10-20", ...) into rules, in port order. "none" gives
// an empty vector. Errors name the offending chunk
// ("Invalid port specifier '70000'"); rules that map to port 0 or overlap
// each other are refused with both rules printed.
absl::StatusOr<std::vector<Rule>> ParsePortSpec(std::string_view spec, const PortSpecOptions& opts);

}  // namespace ringfwd
