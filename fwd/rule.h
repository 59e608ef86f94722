// The forwarding-rule model: one Rule per line of a forwarding table, with
// exactly the fields of the pesto wire protocol (PROTOCOL.md section 3), the
// per-pif Table, and the TableSet a forwarder runs.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "fwd/addr.h"

namespace ringfwd {

// Interface ids ("pifs") as numbered on the wire.
enum class PifId : uint8_t {
  kNone = 0,
  kHost = 1,    // inbound: listen on the host, connect in the target
  kTap = 2,     // reserved for the Layer-2 link
  kSplice = 3,  // outbound: listen in the target namespace, connect on the host
};

// "HOST", "TAP", "SPLICE", or "PIF<n>" for anything else.
std::string PifName(PifId pif);

inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;

// Rule flags (wire byte).
inline constexpr uint8_t kFlagDualStackAny = 1 << 0;  // listen on any v4 or v6 address
inline constexpr uint8_t kFlagWeak = 1 << 1;          // bind failures tolerated
inline constexpr uint8_t kFlagScan = 1 << 2;          // forward only while target listens
inline constexpr uint8_t kFlagsKnown = kFlagDualStackAny | kFlagWeak | kFlagScan;

// Table capability bits (wire caps field).
inline constexpr uint32_t kCapIpv4 = 1u << 0;
inline constexpr uint32_t kCapIpv6 = 1u << 1;
inline constexpr uint32_t kCapTcp = 1u << 2;
inline constexpr uint32_t kCapUdp = 1u << 3;
inline constexpr uint32_t kCapScan = 1u << 4;
inline constexpr uint32_t kCapIfname = 1u << 5;
inline constexpr uint32_t kCapTxn = 1u << 31;  // ours: transactional update accepted
inline constexpr uint32_t kCapsAll = 0x3f | kCapTxn;

inline constexpr size_t kIfNameSize = 16;  // IFNAMSIZ
inline constexpr size_t kMaxRulesPerPif = 255;

struct Rule {
  Addr6 addr;                              // listen address (see kFlagDualStackAny)
  Addr6 target;                            // :: = default target (loopback of target side)
  std::array<char, kIfNameSize> ifname{};  // NUL-terminated, may be empty
  uint16_t first = 0;                      // first listening port
  uint16_t last = 0;                       // last listening port, inclusive
  uint16_t to = 0;                         // target port of `first`
  uint8_t proto = 0;                       // kProtoTcp or kProtoUdp
  uint8_t flags = 0;                       // kFlag* bits

  bool dual_stack() const { return flags & kFlagDualStackAny; }
  bool weak() const { return flags & kFlagWeak; }
  bool scan() const { return flags & kFlagScan; }
  bool has_target_addr() const { return !target.IsUnspecified6(); }
  // The interface name as a string (up to the first NUL).
  std::string_view ifname_view() const;
  // Sets ifname; returns false (leaving it unchanged) if name is too long.
  bool SetIfname(std::string_view name);
  // Target port for listening port `port` (first <= port <= last).
  uint16_t TargetPort(uint16_t port) const { return static_cast<uint16_t>(to + (port - first)); }

  friend bool operator==(const Rule&, const Rule&) = default;
};

// The text form of PROTOCOL.md, e.g. "TCP [127.0.0.1]:8000-8010  =>  9000-9010 ".
std::string RuleText(const Rule& r);

// One pif's forwarding table.
struct Table {
  PifId pif = PifId::kNone;
  std::string name;   // "HOST", "SPLICE", ... (from the wire, or PifName())
  uint32_t caps = 0;  // kCap* bits
  std::vector<Rule> rules;

  friend bool operator==(const Table&, const Table&) = default;
};

// The tables of every pif, in increasing pif id.
struct TableSet {
  std::vector<Table> tables;

  // The table of `pif`, or nullptr.
  Table* Find(PifId pif);
  const Table* Find(PifId pif) const;

  friend bool operator==(const TableSet&, const TableSet&) = default;
};

// Validates one rule on its own and against its pif's caps (PROTOCOL.md
// section 3). The error message names the rule in text form and says what is
// wrong, e.g. "TCP [*]:90-80  =>  90-80 : first port 90 is above last port 80".
absl::Status ValidateRule(const Rule& r, uint32_t caps);

// True if the two rules would compete for a socket: same protocol,
// overlapping listen addresses, overlapping port ranges.
bool RulesOverlap(const Rule& a, const Rule& b);

// Validates every rule of `t`, the rule count, and overlaps within it. Errors
// name the pif and the rule index, and both rules for an overlap.
absl::Status ValidateTable(const Table& t);

// What the daemon knows about its target side when it validates a table set.
struct TargetContext {
  bool has_netns = false;  // a target namespace is set (SPLICE and SCAN allowed)
  // HOST rules without a target address deliver to a VM on the tap link.
  bool tap_guest = false;
};

// Validates a whole table set for a daemon: each table, then the rules that
// would loop back into the daemon itself (PROTOCOL.md section 3), SPLICE or
// SCAN rules without a namespace.
absl::Status ValidateTableSet(const TableSet& set, const TargetContext& ctx);

}  // namespace ringfwd
