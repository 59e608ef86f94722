#include "fwd/tap_config.h"

#include <arpa/inet.h>

#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace ringfwd {
namespace {

in_addr ToIn(const Addr6& a) {
  in_addr r;
  r.s_addr = htonl(a.V4());
  return r;
}

bool IsLinkLocal6(const Addr6& a) { return !a.IsV4() && a.b[0] == 0xfe && (a.b[1] & 0xc0) == 0x80; }

// fe80::1, what we answer as on IPv6 when the gateway we take is global.
Addr6 DefaultLinkLocalGw() { return *Addr6::Parse("fe80::1"); }

absl::StatusOr<MacAddr> ParseMac(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  MacAddr m{};
  if (parts.size() != 6)
    return absl::InvalidArgumentError(absl::StrCat("--mac ", text, ": not a MAC address"));
  for (size_t i = 0; i < 6; i++) {
    uint32_t v;
    if (parts[i].empty() || parts[i].size() > 2 || !absl::SimpleHexAtoi(parts[i], &v))
      return absl::InvalidArgumentError(absl::StrCat("--mac ", text, ": not a MAC address"));
    m[i] = static_cast<uint8_t>(v);
  }
  if (m[0] & 1)
    return absl::InvalidArgumentError(absl::StrCat("--mac ", text, ": a multicast address"));
  return m;
}

}  // namespace

std::string MacToString(const MacAddr& m) {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

std::vector<Addr6> ParseResolvConf(const std::string& text) {
  std::vector<Addr6> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string word, addr;
    ls >> word >> addr;
    if (word != "nameserver") continue;
    if (size_t pct = addr.find('%'); pct != std::string::npos) addr.resize(pct);
    if (auto a = Addr6::Parse(addr)) out.push_back(*a);
  }
  return out;
}

absl::StatusOr<TapLinkOptions> BuildTapLinkOptions(const TapArgs& args, const HostNetInfo& host) {
  TapLinkOptions o;
  if (args.tap && !args.qemu_socket.empty())
    return absl::InvalidArgumentError("--tap and --qemu-socket are exclusive");
  if (args.tap && args.netns.empty())
    return absl::InvalidArgumentError("--tap needs --netns (the namespace to create the tap in)");
  if (!args.tap && args.qemu_socket.empty()) {
    if (args.AnyLinkOption())
      return absl::InvalidArgumentError(
          "--mtu, --address, --gateway, --dns, --dns-forward, --mac, --tap-fault and "
          "--no-map-host-loopback "
          "need --tap or --qemu-socket");
    return o;  // tap mode off
  }
  o.mode = args.tap ? TapLinkOptions::Mode::kTap : TapLinkOptions::Mode::kQemu;
  o.qemu_path = args.qemu_socket;
  LinkConfig& l = o.link;
  if (args.mtu) {
    if (*args.mtu < 576 || *args.mtu > 65520)
      return absl::InvalidArgumentError(
          absl::StrCat("--mtu ", *args.mtu, ": out of range (576-65520)"));
    l.mtu = *args.mtu;
  }
  if (!args.mac.empty()) {
    absl::StatusOr<MacAddr> m = ParseMac(args.mac);
    if (!m.ok()) return m.status();
    l.our_mac = *m;
  }
  l.map_host_loopback = !args.no_map_host_loopback;
  if (!args.fault.empty()) {
    absl::StatusOr<LinkFaultOptions> f = ParseLinkFault(args.fault);
    if (!f.ok()) return f.status();
    o.fault = *f;
  }

  // Addresses: the options, else the template's first global address.
  bool addr4 = false, addr6 = false;
  for (const std::string& text : args.addresses) {
    std::string a = text;
    int prefix = -1;
    if (size_t slash = text.find('/'); slash != std::string::npos) {
      a = text.substr(0, slash);
      if (!absl::SimpleAtoi(text.substr(slash + 1), &prefix) || prefix < 0)
        return absl::InvalidArgumentError(absl::StrCat("--address ", text, ": bad prefix length"));
    }
    std::optional<Addr6> p = Addr6::Parse(a);
    if (!p || p->IsWildcard() || p->IsMulticast() || p->IsLoopback())
      return absl::InvalidArgumentError(
          absl::StrCat("--address ", text, ": not a unicast address"));
    if (p->IsV4()) {
      if (addr4)
        return absl::InvalidArgumentError(
            absl::StrCat("--address ", text, ": a second IPv4 address"));
      if (prefix > 32)
        return absl::InvalidArgumentError(absl::StrCat("--address ", text, ": bad prefix length"));
      l.addr4 = ToIn(*p);
      l.prefix4 = prefix < 0 ? 24 : prefix;
      addr4 = true;
    } else {
      if (addr6)
        return absl::InvalidArgumentError(
            absl::StrCat("--address ", text, ": a second IPv6 address"));
      if (prefix > 128 || IsLinkLocal6(*p))
        return absl::InvalidArgumentError(
            absl::StrCat("--address ", text, ": bad IPv6 address or prefix"));
      l.addr6 = p->In6();
      l.prefix6 = prefix < 0 ? 64 : prefix;
      addr6 = true;
    }
  }
  if (!addr4 && host.v4 && !host.v4->addrs.empty()) {
    l.addr4 = ToIn(host.v4->addrs[0].addr);
    l.prefix4 = host.v4->addrs[0].prefix;
    addr4 = true;
  }
  if (!addr6 && host.v6 && !host.v6->addrs.empty()) {
    l.addr6 = host.v6->addrs[0].addr.In6();
    l.prefix6 = host.v6->addrs[0].prefix;
    addr6 = true;
  }
  // Gateways: the options, else the template's.
  bool gw4 = false, gw6 = false;
  auto set_gw6 = [&](const Addr6& g) {
    if (IsLinkLocal6(g)) {
      l.gw6 = g.In6();
    } else {
      l.gw6 = DefaultLinkLocalGw().In6();
      l.gw6_global = g.In6();
    }
  };
  for (const std::string& text : args.gateways) {
    std::optional<Addr6> p = Addr6::Parse(text);
    if (!p || p->IsWildcard() || p->IsMulticast() || p->IsLoopback())
      return absl::InvalidArgumentError(
          absl::StrCat("--gateway ", text, ": not a unicast address"));
    if (p->IsV4()) {
      if (gw4)
        return absl::InvalidArgumentError(
            absl::StrCat("--gateway ", text, ": a second IPv4 gateway"));
      l.gw4 = ToIn(*p);
      gw4 = true;
    } else {
      if (gw6)
        return absl::InvalidArgumentError(
            absl::StrCat("--gateway ", text, ": a second IPv6 gateway"));
      set_gw6(*p);
      gw6 = true;
    }
  }
  if (!gw4 && host.v4 && host.v4->has_gateway) {
    l.gw4 = ToIn(host.v4->gateway);
    gw4 = true;
  }
  if (!gw6 && host.v6 && host.v6->has_gateway) {
    set_gw6(host.v6->gateway);
    gw6 = true;
  }
  if (addr6 && !gw6) {
    l.gw6 = DefaultLinkLocalGw().In6();  // no IPv6 router on the host: still ours on the link
    gw6 = true;
  }
  if (addr4 && !gw4)
    return absl::InvalidArgumentError(
        absl::StrCat("IPv4 address ", Addr6::FromV4(ntohl(l.addr4.s_addr)).ToString(),
                     " but no gateway: the host has no IPv4 default route; give --gateway"));
  l.has_v4 = addr4;
  l.has_v6 = addr6;
  if (!l.has_v4 && !l.has_v6)
    return absl::InvalidArgumentError(
        "no address for the guest: the host has no default route; give --address and --gateway");
  if (l.has_v4 && l.gw4.s_addr == l.addr4.s_addr)
    return absl::InvalidArgumentError("the IPv4 gateway is the guest's own address");

  // DNS: what the guest is told, and where its queries go.
  for (const std::string& text : args.dns) {
    std::optional<Addr6> p = Addr6::Parse(text);
    if (!p || p->IsWildcard() || p->IsMulticast())
      return absl::InvalidArgumentError(absl::StrCat("--dns ", text, ": not a unicast address"));
    if (p->IsV4())
      l.dns4.push_back(ToIn(*p));
    else
      l.dns6.push_back(p->In6());
  }
  std::optional<Addr6> fwd4, fwd6;
  for (const std::string& text : args.dns_forward) {
    std::optional<Addr6> p = Addr6::Parse(text);
    if (!p || p->IsWildcard() || p->IsMulticast())
      return absl::InvalidArgumentError(
          absl::StrCat("--dns-forward ", text, ": not a unicast address"));
    (p->IsV4() ? fwd4 : fwd6) = *p;
  }
  for (const Addr6& r : host.resolvers) {
    if (r.IsV4() && !fwd4) fwd4 = r;
    if (!r.IsV4() && !fwd6) fwd6 = r;
  }
  if (args.dns.empty()) {
    // The host's resolvers; one on its loopback is reached through the
    // gateway's address (queries to it are forwarded to the resolver).
    for (const Addr6& r : host.resolvers) {
      if (r.IsV4() && l.has_v4) {
        in_addr a = r.IsLoopback() ? l.gw4 : ToIn(r);
        if (l.dns4.empty() || l.dns4.back().s_addr != a.s_addr) l.dns4.push_back(a);
      } else if (!r.IsV4() && l.has_v6) {
        l.dns6.push_back(r.IsLoopback() ? (IsLinkLocal6(Addr6::FromIn6(l.gw6_global)) ||
                                                   Addr6::FromIn6(l.gw6_global).IsUnspecified6()
                                               ? l.gw6
                                               : l.gw6_global)
                                        : r.In6());
      }
    }
  }
  if (fwd4) o.udp.dns4_target = *fwd4;
  if (fwd6) o.udp.dns6_target = *fwd6;

  // The tap is named after the host's template interface.
  if (host.v4 && !host.v4->name.empty())
    o.ifname = host.v4->name;
  else if (host.v6 && !host.v6->name.empty())
    o.ifname = host.v6->name;
  return o;
}

std::string DescribeTapLink(const TapLinkOptions& o, const std::string& where) {
  const LinkConfig& l = o.link;
  std::string s =
      absl::StrCat("tap link: ", where, ", MTU ", l.mtu, ", our MAC ", MacToString(l.our_mac));
  if (l.has_v4)
    absl::StrAppend(&s, "; guest ", Addr6::FromV4(ntohl(l.addr4.s_addr)).ToString(), "/", l.prefix4,
                    " gateway ", Addr6::FromV4(ntohl(l.gw4.s_addr)).ToString());
  if (l.has_v6) {
    absl::StrAppend(&s, "; guest ", Addr6::FromIn6(l.addr6).ToString(), "/", l.prefix6, " gateway ",
                    Addr6::FromIn6(l.gw6).ToString());
    if (!Addr6::FromIn6(l.gw6_global).IsUnspecified6())
      absl::StrAppend(&s, " and ", Addr6::FromIn6(l.gw6_global).ToString());
  }
  std::string dns;
  for (const in_addr& d : l.dns4)
    absl::StrAppend(&dns, " ", Addr6::FromV4(ntohl(d.s_addr)).ToString());
  for (const in6_addr& d : l.dns6) absl::StrAppend(&dns, " ", Addr6::FromIn6(d).ToString());
  absl::StrAppend(&s, "; DNS", dns.empty() ? " none" : dns);
  if (!o.udp.dns4_target.IsUnspecified6() || !o.udp.dns6_target.IsUnspecified6()) {
    absl::StrAppend(&s, " (forwarded to");
    if (!o.udp.dns4_target.IsUnspecified6()) absl::StrAppend(&s, " ", o.udp.dns4_target.ToString());
    if (!o.udp.dns6_target.IsUnspecified6()) absl::StrAppend(&s, " ", o.udp.dns6_target.ToString());
    absl::StrAppend(&s, ")");
  }
  absl::StrAppend(&s, l.map_host_loopback ? "; gateway address maps to host loopback"
                                          : "; host loopback not mapped");
  return s;
}

}  // namespace ringfwd
