#include "fwd/tap_config.h"

#include <arpa/inet.h>

#include "gtest/gtest.h"

namespace ringfwd {
namespace {

std::string V4Text(const in_addr& a) { return Addr6::FromV4(ntohl(a.s_addr)).ToString(); }
std::string V6Text(const in6_addr& a) { return Addr6::FromIn6(a).ToString(); }

HostNetInfo Host() {
  HostNetInfo h;
  TemplateIface t4;
  t4.ifindex = 2;
  t4.name = "eth7";
  t4.addrs.push_back(IfAddr{*Addr6::Parse("192.0.2.10"), 24});
  t4.gateway = *Addr6::Parse("192.0.2.1");
  t4.has_gateway = true;
  h.v4 = t4;
  TemplateIface t6 = t4;
  t6.addrs = {IfAddr{*Addr6::Parse("2001:db8::10"), 64}};
  t6.gateway = *Addr6::Parse("fe80::9");
  h.v6 = t6;
  h.resolvers = {*Addr6::Parse("127.0.0.53"), *Addr6::Parse("2001:db8::53")};
  return h;
}

TEST(TapConfig, TakesTheHostsTemplateByDefault) {
  TapArgs a;
  a.tap = true;
  a.netns = "ns1";
  absl::StatusOr<TapLinkOptions> o = BuildTapLinkOptions(a, Host());
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->mode, TapLinkOptions::Mode::kTap);
  EXPECT_EQ(o->ifname, "eth7");
  const LinkConfig& l = o->link;
  EXPECT_EQ(l.mtu, 65520u);
  EXPECT_TRUE(l.has_v4);
  EXPECT_EQ(V4Text(l.addr4), "192.0.2.10");
  EXPECT_EQ(l.prefix4, 24);
  EXPECT_EQ(V4Text(l.gw4), "192.0.2.1");
  EXPECT_TRUE(l.has_v6);
  EXPECT_EQ(V6Text(l.addr6), "2001:db8::10");
  EXPECT_EQ(V6Text(l.gw6), "fe80::9");
  // A loopback resolver is advertised as the gateway, queries forwarded to it.
  ASSERT_EQ(l.dns4.size(), 1u);
  EXPECT_EQ(V4Text(l.dns4[0]), "192.0.2.1");
  EXPECT_EQ(o->udp.dns4_target.ToString(), "127.0.0.53");
  ASSERT_EQ(l.dns6.size(), 1u);
  EXPECT_EQ(V6Text(l.dns6[0]), "2001:db8::53");
  EXPECT_TRUE(l.map_host_loopback);
}

TEST(TapConfig, OptionsOverrideTheTemplate) {
  TapArgs a;
  a.qemu_socket = "/tmp/x.sock";
  a.mtu = 1500;
  a.addresses = {"198.51.100.7/25", "2001:db8:5::7"};
  a.gateways = {"198.51.100.1", "2001:db8:5::1"};
  a.dns = {"198.51.100.53"};
  a.dns_forward = {"203.0.113.53"};
  a.mac = "02:00:00:00:00:aa";
  a.no_map_host_loopback = true;
  absl::StatusOr<TapLinkOptions> o = BuildTapLinkOptions(a, HostNetInfo{});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->mode, TapLinkOptions::Mode::kQemu);
  EXPECT_EQ(o->ifname, "tap0") << "no template: tap0";
  const LinkConfig& l = o->link;
  EXPECT_EQ(l.mtu, 1500u);
  EXPECT_EQ(V4Text(l.addr4), "198.51.100.7");
  EXPECT_EQ(l.prefix4, 25);
  EXPECT_EQ(V6Text(l.addr6), "2001:db8:5::7");
  EXPECT_EQ(l.prefix6, 64);
  EXPECT_EQ(V6Text(l.gw6_global), "2001:db8:5::1");
  EXPECT_EQ(V6Text(l.gw6), "fe80::1") << "a global gateway gets a link-local one beside it";
  ASSERT_EQ(l.dns4.size(), 1u);
  EXPECT_EQ(V4Text(l.dns4[0]), "198.51.100.53");
  EXPECT_EQ(o->udp.dns4_target.ToString(), "203.0.113.53");
  EXPECT_EQ(MacToString(l.our_mac), "02:00:00:00:00:aa");
  EXPECT_FALSE(l.map_host_loopback);
}

TEST(TapConfig, RefusesWithOneLineNamingTheOption) {
  auto err = [](TapArgs a, const HostNetInfo& h = HostNetInfo{}) {
    absl::StatusOr<TapLinkOptions> o = BuildTapLinkOptions(a, h);
    return o.ok() ? std::string("ok") : std::string(o.status().message());
  };
  TapArgs a;
  a.tap = true;
  EXPECT_NE(err(a).find("--tap needs --netns"), std::string::npos) << err(a);
  TapArgs b;
  b.mtu = 1500;
  EXPECT_NE(err(b).find("need --tap or --qemu-socket"), std::string::npos) << err(b);
  TapArgs c;
  c.qemu_socket = "/tmp/s";
  EXPECT_NE(err(c).find("no address for the guest"), std::string::npos) << err(c);
  c.addresses = {"192.0.2.5/24"};
  EXPECT_NE(err(c).find("no gateway"), std::string::npos) << err(c);
  c.gateways = {"192.0.2.1"};
  EXPECT_EQ(err(c), "ok");
  TapArgs d = c;
  d.mtu = 70000;
  EXPECT_NE(err(d).find("--mtu 70000"), std::string::npos) << err(d);
  d = c;
  d.mac = "01:00:00:00:00:01";
  EXPECT_NE(err(d).find("--mac"), std::string::npos) << err(d);
  d = c;
  d.addresses = {"192.0.2.5/40"};
  EXPECT_NE(err(d).find("--address 192.0.2.5/40"), std::string::npos) << err(d);
  d = c;
  d.gateways = {"nonsense"};
  EXPECT_NE(err(d).find("--gateway nonsense"), std::string::npos) << err(d);
  d = c;
  d.tap = true;
  EXPECT_NE(err(d).find("exclusive"), std::string::npos) << err(d);
}

TEST(TapConfig, ReadsNameserversFromResolvConf) {
  std::vector<Addr6> r = ParseResolvConf(
      "# comment\nsearch example\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\n"
      "nameserver bogus\noptions edns0\n");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].ToString(), "192.0.2.53");
  EXPECT_EQ(r[1].ToString(), "fe80::1");
}

}  // namespace
}  // namespace ringfwd
