// Port specifications (PROTOCOL.md, "Port specifications").
//
// A spec is parsed in three passes:
// 1. the optional address prefix "ADDR[%IF]/" (up to the first '/', taken
//    only if it reads as an address or starts with '%': a '/' can also sit
//    inside a chunk's target, "443:192.0.2.9/8443");
// 2. the comma list of chunks: port ranges with their targets, exclusions
//    ("~"), "all" and "auto";
// 3. the rules: each range (or, with no range at all, every non-ephemeral
//    port) cut around the exclusions, sorted by port, each validated on its
//    own and against the others.
#include "fwd/port_spec.h"

#include <algorithm>
#include <bitset>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ringfwd {
namespace {

constexpr uint32_t kNoPort = 0xffffffff;

// This abseil has its own string_view type: the bridge for StrCat.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// A port number of the spec syntax: decimal digits only, at most 65535.
// Zero is returned as such: callers decide whether it is allowed.
std::optional<uint16_t> ParsePort(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  uint32_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

// "first" or "first-last"; last is kNoPort when not given.
bool ParseRange(std::string_view text, uint16_t* first, uint32_t* last) {
  size_t dash = text.find('-');
  std::optional<uint16_t> a = ParsePort(text.substr(0, dash));
  if (!a) return false;
  *first = *a;
  *last = kNoPort;
  if (dash == std::string_view::npos) return true;
  std::optional<uint16_t> b = ParsePort(text.substr(dash + 1));
  if (!b) return false;
  *last = *b;
  return true;
}

absl::Status BadChunk(std::string_view chunk, absl::string_view why = "") {
  return absl::InvalidArgumentError(
      absl::StrCat("Invalid port specifier '", Av(chunk), "'", why.empty() ? "" : ": ", why));
}

// A listening range of one chunk, with its target.
struct Chunk {
  std::string_view text;
  uint16_t first = 0;
  uint16_t last = 0;
  uint16_t to = 0;
  Addr6 target;  // :: when the default target
};

// A listening range "first[-last]" of a chunk (or an exclusion): ports
// 1-65535, first <= last.
absl::Status ParseListenRange(std::string_view text, std::string_view chunk, uint16_t* first,
                              uint16_t* last) {
  uint32_t l;
  if (!ParseRange(text, first, &l)) return BadChunk(chunk);
  *last = l == kNoPort ? *first : static_cast<uint16_t>(l);
  if (*first == 0) return BadChunk(chunk, "port 0 cannot be forwarded");
  if (*first > *last)
    return BadChunk(chunk, absl::StrCat("first port ", *first, " is above last port ", *last));
  return absl::OkStatus();
}

// "first[-last][:target]", target one of "tofirst[-tolast]", "TADDR",
// "TADDR/tofirst[-tolast]".
absl::StatusOr<Chunk> ParseChunk(std::string_view text) {
  Chunk c;
  c.text = text;
  size_t colon = text.find(':');
  absl::Status s = ParseListenRange(text.substr(0, colon), text, &c.first, &c.last);
  if (!s.ok()) return s;
  c.to = c.first;
  if (colon == std::string_view::npos) return c;
  std::string_view target = text.substr(colon + 1);
  std::string_view ports;
  size_t slash = target.rfind('/');
  if (slash != std::string_view::npos) {
    std::optional<Addr6> a = Addr6::Parse(target.substr(0, slash));
    if (!a)
      return BadChunk(text,
                      absl::StrCat("invalid target address '", Av(target.substr(0, slash)), "'"));
    c.target = *a;
    ports = target.substr(slash + 1);
  } else if (std::optional<Addr6> a = Addr6::Parse(target)) {
    c.target = *a;
  } else {
    ports = target;
  }
  if (slash != std::string_view::npos || c.target.IsUnspecified6()) {
    uint16_t to_first;
    uint32_t to_last;
    if (!ParseRange(ports, &to_first, &to_last)) return BadChunk(text);
    if (to_first == 0) return BadChunk(text, "maps to port 0");
    if (to_last != kNoPort && to_last - to_first != uint32_t{c.last} - c.first)
      return BadChunk(text, absl::StrCat("target range ", Av(ports), " is not the size of ",
                                         Av(text.substr(0, colon))));
    c.to = to_first;
  }
  if (uint32_t{c.to} + (c.last - c.first) > 65535)
    return BadChunk(text, "target range passes port 65535");
  return c;
}

// The address prefix of a spec.
struct Listen {
  bool dual_stack = true;
  Addr6 addr;
  std::string ifname;
};

absl::StatusOr<Listen> ParseAddrIf(std::string_view text) {
  Listen l;
  size_t pct = text.find('%');
  std::string_view addr = text.substr(0, pct);
  if (!addr.empty()) {
    std::optional<Addr6> a = Addr6::Parse(addr);
    if (!a) return absl::InvalidArgumentError(absl::StrCat("Invalid address '", Av(addr), "'"));
    l.addr = *a;
    l.dual_stack = false;
  }
  if (pct != std::string_view::npos) {
    l.ifname = std::string(text.substr(pct + 1));
    if (l.ifname.empty() || l.ifname.size() >= kIfNameSize)
      return absl::InvalidArgumentError(absl::StrCat("Invalid interface name '", l.ifname, "'"));
  }
  return l;
}

// Adds to `out` the rules for ports first..last of `c` that are not in
// `excluded`, one rule per unbroken run. `c.to` is the target of `c.first`.
void AddRuns(const Chunk& c, const std::bitset<65536>& excluded, const Rule& proto_rule,
             std::vector<std::pair<Rule, std::string_view>>* out) {
  uint32_t p = c.first;
  while (p <= c.last) {
    while (p <= c.last && excluded[p]) p++;
    if (p > c.last) break;
    uint32_t run_end = p;
    while (run_end + 1 <= c.last && !excluded[run_end + 1]) run_end++;
    Rule r = proto_rule;
    r.first = static_cast<uint16_t>(p);
    r.last = static_cast<uint16_t>(run_end);
    r.to = static_cast<uint16_t>(c.to + (p - c.first));
    r.target = c.target;
    out->emplace_back(r, c.text);
    p = run_end + 1;
  }
}

}  // namespace

PortRange ReadEphemeralRange(const char* path) {
  PortRange fallback{32768, 60999};
  std::ifstream in(path);
  uint32_t a = 0, b = 0;
  if (!(in >> a >> b)) return fallback;
  if (a == 0 || a > b || b > 65535) return fallback;
  return PortRange{static_cast<uint16_t>(a), static_cast<uint16_t>(b)};
}

absl::StatusOr<std::vector<Rule>> ParsePortSpec(std::string_view spec,
                                                const PortSpecOptions& opts) {
  if (spec.empty()) return absl::InvalidArgumentError("Empty port specification");
  if (spec == "none") return std::vector<Rule>{};

  // 1. Address prefix.
  Listen listen;
  std::string_view ports = spec;
  size_t slash = spec.find('/');
  if (slash != std::string_view::npos) {
    std::string_view prefix = spec.substr(0, slash);
    if (prefix.starts_with('%') || Addr6::Parse(prefix.substr(0, prefix.find('%')))) {
      absl::StatusOr<Listen> l = ParseAddrIf(prefix);
      if (!l.ok()) return l.status();
      listen = *std::move(l);
      ports = spec.substr(slash + 1);
    } else if (prefix.find(':') == std::string_view::npos) {
      // Not "PORTS:TADDR/..." either: a bad address.
      return absl::InvalidArgumentError(absl::StrCat("Invalid address '", Av(prefix), "'"));
    }
  }
  if (ports.empty()) return absl::InvalidArgumentError("No ports in port specification");

  // 2. Chunks.
  auto excluded = std::make_unique<std::bitset<65536>>();
  std::vector<Chunk> chunks;
  bool all = false, scan = false;
  for (absl::string_view piece : absl::StrSplit(Av(ports), ',')) {
    std::string_view text(piece.data(), piece.size());
    if (text == "all") {
      all = true;
    } else if (text == "auto") {
      scan = true;
    } else if (text.starts_with('~')) {
      uint16_t first, last;
      absl::Status s = ParseListenRange(text.substr(1), text, &first, &last);
      if (!s.ok()) return s;
      for (uint32_t p = first; p <= last; p++) excluded->set(p);
    } else {
      absl::StatusOr<Chunk> c = ParseChunk(text);
      if (!c.ok()) return c.status();
      chunks.push_back(*c);
    }
  }
  if (all && !chunks.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("'all' cannot be combined with port ranges ('", Av(chunks[0].text), "')"));

  // 3. Rules.
  Rule base;
  base.proto = opts.proto;
  base.addr = listen.addr;
  if (listen.dual_stack) base.flags |= kFlagDualStackAny;
  if (scan) base.flags |= kFlagScan;
  std::string ifname = listen.ifname;
  if (ifname.empty() && opts.pif == PifId::kSplice) ifname = "lo";
  base.SetIfname(ifname);  // length checked by ParseAddrIf

  std::vector<std::pair<Rule, std::string_view>> rules;
  if (chunks.empty()) {
    // "all", "auto", or exclusions only: every non-ephemeral port.
    base.flags |= kFlagWeak;
    for (uint32_t p = std::max<uint32_t>(opts.ephemeral.first, 1); p <= opts.ephemeral.last; p++)
      excluded->set(p);
    Chunk every;
    every.text = ports;
    every.first = 1;
    every.last = 65535;
    every.to = 1;
    AddRuns(every, *excluded, base, &rules);
  } else {
    for (const Chunk& c : chunks) AddRuns(c, *excluded, base, &rules);
  }
  if (rules.empty())
    return absl::InvalidArgumentError(absl::StrCat("No ports left in '", Av(spec), "'"));
  std::stable_sort(rules.begin(), rules.end(),
                   [](const auto& a, const auto& b) { return a.first.first < b.first.first; });

  std::vector<Rule> out;
  out.reserve(rules.size());
  size_t widest = 0;  // among rules so far, the one reaching the highest port
  for (size_t i = 0; i < rules.size(); i++) {
    const auto& [r, text] = rules[i];
    absl::Status s = ValidateRule(r, kCapsAll);
    if (!s.ok()) return BadChunk(text, s.message());
    if (i > 0 && RulesOverlap(rules[widest].first, r))
      return absl::InvalidArgumentError(absl::StrCat(
          "Overlapping port specifiers '", Av(rules[widest].second), "' and '", Av(text), "': (",
          RuleText(rules[widest].first), ") and (", RuleText(r), ")"));
    if (i == 0 || r.last > rules[widest].first.last) widest = i;
    out.push_back(r);
  }
  return out;
}

}  // namespace ringfwd
