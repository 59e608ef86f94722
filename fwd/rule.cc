// The forwarding-rule model: text form and validation (PROTOCOL.md section 3).
//
// Validation comes in three layers, each adding what it can know:
// - RuleReason: one rule on its own against its pif's caps (the wire rules);
// - ValidateTable: every rule, the count, and overlaps between rules;
// - ValidateTableSet: the daemon's view, which knows whether a target
//   namespace exists and so can refuse tables that forward into themselves.
// Clients only run the first two: they cannot know the daemon's context.
#include "fwd/rule.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ringfwd {
namespace {

const char* ProtoName(uint8_t proto) {
  switch (proto) {
    case kProtoTcp:
      return "TCP";
    case kProtoUdp:
      return "UDP";
    default:
      return "???";
  }
}

std::string FamilyName(const Addr6& a) { return a.IsV4() ? "IPv4" : "IPv6"; }

// The name a table goes by in messages: its wire name, else PifName().
std::string TableName(const Table& t) { return t.name.empty() ? PifName(t.pif) : t.name; }

// What is wrong with `r` on its own, or "" if nothing is.
std::string RuleReason(const Rule& r, uint32_t caps) {
  if (r.first == 0) return "first port is 0";
  if (r.first > r.last) return absl::StrCat("first port ", r.first, " is above last port ", r.last);
  if (r.to == 0) return "target port is 0";
  if (uint32_t{r.to} + (r.last - r.first) > 65535)
    return absl::StrCat("target range ", r.to, "-", uint32_t{r.to} + (r.last - r.first),
                        " passes port 65535");
  if (r.proto != kProtoTcp && r.proto != kProtoUdp)
    return absl::StrCat("unknown protocol ", r.proto);
  if (r.flags & ~kFlagsKnown)
    return absl::StrFormat("unknown flag bits 0x%02x", r.flags & ~kFlagsKnown);
  if (std::memchr(r.ifname.data(), '\0', r.ifname.size()) == nullptr)
    return "interface name is not NUL-terminated";
  if (r.dual_stack()) {
    if (!r.addr.IsUnspecified6())
      return absl::StrCat("dual-stack rule with listen address ", r.addr.ToString(),
                          " (only :: is allowed)");
    if (r.has_target_addr())
      return absl::StrCat("Dual stack forward to ", FamilyName(r.target), " address ",
                          r.target.ToString(), " unsupported");
  } else if (r.has_target_addr() && r.addr.IsV4() != r.target.IsV4()) {
    return absl::StrCat("listen address ", r.addr.ToString(), " is ", FamilyName(r.addr),
                        " but target address ", r.target.ToString(), " is ", FamilyName(r.target));
  }
  if (r.has_target_addr() && r.target.IsMulticast())
    return absl::StrCat("target address ", r.target.ToString(), " is multicast");
  if (!(caps & (r.proto == kProtoTcp ? kCapTcp : kCapUdp)))
    return absl::StrCat(ProtoName(r.proto), " is not supported by this pif");
  if (r.dual_stack()) {
    if (!(caps & (kCapIpv4 | kCapIpv6))) return "neither IPv4 nor IPv6 is supported by this pif";
  } else if (!(caps & (r.addr.IsV4() ? kCapIpv4 : kCapIpv6))) {
    return absl::StrCat(FamilyName(r.addr), " is not supported by this pif");
  }
  if (r.scan() && !(caps & kCapScan))
    return "auto-scan is not supported by this pif (it needs a target namespace: --netns)";
  if (!r.ifname_view().empty() && !(caps & kCapIfname))
    return "binding to an interface is not supported by this pif";
  return "";
}

// "HOST rule 3 (TCP [*]:80  =>  80 )": rules are numbered from 1, as listed.
std::string RuleRef(const Table& t, size_t index) {
  return absl::StrCat(TableName(t), " rule ", index + 1, " (", RuleText(t.rules[index]), ")");
}

// True if `r` accepts connections to the loopback address of its side (so a
// default target of the same port reaches it). Interface names are ignored:
// conservative, a rule bound to another interface is still counted.
bool CoversLoopback(const Rule& r) {
  return r.dual_stack() || r.addr.IsWildcard() || r.addr.IsLoopback();
}

// True if r, with no target namespace, forwards some port to its own
// listener: same port (to == first) and a target it listens on itself.
bool TargetsOwnListener(const Rule& r) {
  if (r.to != r.first) return false;
  if (!r.has_target_addr()) return CoversLoopback(r);
  if (r.target == r.addr) return true;
  return r.addr.IsWildcard() && r.addr.IsV4() == r.target.IsV4() && r.target.IsLoopback();
}

// True if HOST rule h and SPLICE rule s send some port around in a circle:
// h maps p to q in the namespace, s listens on q there and maps it back to p
// on the host. With default targets both connect to loopback, so this needs
// s.TargetPort(h.TargetPort(p)) == p for some p in h's range, i.e. offsets
// that cancel and h's target range meeting s's listening range.
bool FormsLoop(const Rule& h, const Rule& s) {
  if (h.proto != s.proto || h.has_target_addr() || s.has_target_addr()) return false;
  if (!CoversLoopback(h) || !CoversLoopback(s)) return false;
  int32_t h_offset = int32_t{h.to} - h.first;
  int32_t s_offset = int32_t{s.to} - s.first;
  if (h_offset + s_offset != 0) return false;
  int32_t h_to_last = int32_t{h.to} + (h.last - h.first);
  return h.to <= s.last && s.first <= h_to_last;
}

}  // namespace

std::string PifName(PifId pif) {
  switch (pif) {
    case PifId::kHost:
      return "HOST";
    case PifId::kTap:
      return "TAP";
    case PifId::kSplice:
      return "SPLICE";
    default:
      return absl::StrCat("PIF", static_cast<int>(pif));
  }
}

std::string_view Rule::ifname_view() const {
  const char* end = static_cast<const char*>(std::memchr(ifname.data(), '\0', ifname.size()));
  return std::string_view(ifname.data(), end ? end - ifname.data() : ifname.size());
}

bool Rule::SetIfname(std::string_view name) {
  if (name.size() >= kIfNameSize || name.find('\0') != std::string_view::npos) return false;
  ifname.fill('\0');
  std::memcpy(ifname.data(), name.data(), name.size());
  return true;
}

std::string RuleText(const Rule& r) {
  std::string out = absl::StrCat(
      ProtoName(r.proto), " [",
      r.dual_stack() && r.addr.IsUnspecified6() ? std::string("*") : r.addr.ToString(), "]");
  std::string_view ifname = r.ifname_view();
  if (!ifname.empty()) absl::StrAppend(&out, "%", absl::string_view(ifname.data(), ifname.size()));
  absl::StrAppend(&out, ":", r.first);
  if (r.last != r.first) absl::StrAppend(&out, "-", r.last);
  absl::StrAppend(&out, "  =>  ");
  if (r.has_target_addr()) absl::StrAppend(&out, r.target.ToString(), ":");
  absl::StrAppend(&out, r.to);
  // A reversed range has no target range to show: its first port only.
  if (r.last > r.first) absl::StrAppend(&out, "-", uint32_t{r.to} + (r.last - r.first));
  absl::StrAppend(&out, " ");
  if (r.weak()) absl::StrAppend(&out, " (best effort)");
  if (r.scan()) absl::StrAppend(&out, " (auto-scan)");
  return out;
}

Table* TableSet::Find(PifId pif) {
  for (Table& t : tables)
    if (t.pif == pif) return &t;
  return nullptr;
}

const Table* TableSet::Find(PifId pif) const {
  for (const Table& t : tables)
    if (t.pif == pif) return &t;
  return nullptr;
}

absl::Status ValidateRule(const Rule& r, uint32_t caps) {
  std::string reason = RuleReason(r, caps);
  if (reason.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(RuleText(r), ": ", reason));
}

bool RulesOverlap(const Rule& a, const Rule& b) {
  if (a.proto != b.proto) return false;
  if (a.first > b.last || b.first > a.last) return false;
  if (a.dual_stack() || b.dual_stack()) return true;
  if (a.addr == b.addr) return true;
  if (a.addr.IsV4() != b.addr.IsV4()) return false;
  return a.addr.IsWildcard() || b.addr.IsWildcard();
}

absl::Status ValidateTable(const Table& t) {
  if (t.rules.size() > kMaxRulesPerPif)
    return absl::InvalidArgumentError(absl::StrCat(TableName(t), " table has ", t.rules.size(),
                                                   " rules, at most ", kMaxRulesPerPif,
                                                   " are allowed"));
  for (size_t i = 0; i < t.rules.size(); i++) {
    std::string reason = RuleReason(t.rules[i], t.caps);
    if (!reason.empty())
      return absl::InvalidArgumentError(absl::StrCat(RuleRef(t, i), ": ", reason));
  }
  for (size_t i = 1; i < t.rules.size(); i++) {
    for (size_t j = 0; j < i; j++) {
      if (RulesOverlap(t.rules[i], t.rules[j]))
        return absl::InvalidArgumentError(
            absl::StrCat(RuleRef(t, i), " overlaps rule ", j + 1, " (", RuleText(t.rules[j]), ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTableSet(const TableSet& set, const TargetContext& ctx) {
  for (size_t i = 0; i < set.tables.size(); i++) {
    for (size_t j = 0; j < i; j++) {
      if (set.tables[i].pif == set.tables[j].pif)
        return absl::InvalidArgumentError(
            absl::StrCat("two tables for pif ", PifName(set.tables[i].pif)));
    }
    absl::Status s = ValidateTable(set.tables[i]);
    if (!s.ok()) return s;
  }
  const Table* host = set.Find(PifId::kHost);
  const Table* splice = set.Find(PifId::kSplice);
  if (!ctx.has_netns) {
    if (splice && !splice->rules.empty())
      return absl::InvalidArgumentError(
          absl::StrCat(RuleRef(*splice, 0), ": SPLICE rules need a target namespace (--netns)"));
    for (const Table& t : set.tables) {
      for (size_t i = 0; i < t.rules.size(); i++) {
        if (t.rules[i].scan())
          return absl::InvalidArgumentError(
              absl::StrCat(RuleRef(t, i), ": SCAN rules need a target namespace (--netns)"));
      }
    }
    if (host) {
      for (size_t i = 0; i < host->rules.size(); i++) {
        const Rule& r = host->rules[i];
        if (ctx.tap_guest && !r.has_target_addr()) continue;  // to the guest over the link
        if (TargetsOwnListener(host->rules[i]))
          return absl::InvalidArgumentError(
              absl::StrCat(RuleRef(*host, i),
                           ": would connect to its own listener (there is no target namespace);"
                           " remap it to another port or give a target address"));
      }
    }
    return absl::OkStatus();
  }
  if (host && splice) {
    for (size_t i = 0; i < host->rules.size(); i++) {
      for (size_t j = 0; j < splice->rules.size(); j++) {
        if (FormsLoop(host->rules[i], splice->rules[j]))
          return absl::InvalidArgumentError(absl::StrCat(
              RuleRef(*host, i), " and ", RuleRef(*splice, j),
              " forward into each other: a connection would loop between host and namespace"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace ringfwd
