#include "fwd/rule.h"

#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace ringfwd {
namespace {

using ::testing::HasSubstr;

constexpr uint32_t kCaps = 0x3f;

// A rule; addr nullptr means dual-stack any ("::" with kFlagDualStackAny).
Rule MakeRule(uint8_t proto, const char* addr, uint16_t first, uint16_t last, uint16_t to,
              uint8_t flags = 0, const char* ifname = "", const char* target = nullptr) {
  Rule r;
  r.proto = proto;
  if (addr) {
    r.addr = *Addr6::Parse(addr);
  } else {
    r.flags |= kFlagDualStackAny;
  }
  r.flags |= flags;
  r.first = first;
  r.last = last;
  r.to = to;
  EXPECT_TRUE(r.SetIfname(ifname));
  if (target) r.target = *Addr6::Parse(target);
  return r;
}

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// The pasta server's tables of interop/README.md.
TableSet InteropTables() {
  TableSet set;
  set.tables.push_back(Table{PifId::kHost,
                             "HOST",
                             kCaps,
                             {
                                 MakeRule(kProtoTcp, nullptr, 15201, 15201, 15201),
                                 MakeRule(kProtoTcp, "127.0.0.1", 8000, 8010, 9000),
                                 MakeRule(kProtoTcp, "::1", 2222, 2222, 22),
                                 MakeRule(kProtoUdp, nullptr, 5353, 5353, 5353),
                                 MakeRule(kProtoUdp, nullptr, 10000, 10049, 10000),
                                 MakeRule(kProtoUdp, nullptr, 10051, 10100, 10051),
                             }});
  set.tables.push_back(Table{PifId::kSplice,
                             "SPLICE",
                             kCaps,
                             {
                                 MakeRule(kProtoTcp, nullptr, 3000, 3000, 3000, 0, "lo"),
                                 MakeRule(kProtoUdp, nullptr, 53, 53, 53, 0, "lo"),
                             }});
  return set;
}

TEST(PifName, NamesKnownAndUnknownPifs) {
  EXPECT_EQ(PifName(PifId::kHost), "HOST");
  EXPECT_EQ(PifName(PifId::kTap), "TAP");
  EXPECT_EQ(PifName(PifId::kSplice), "SPLICE");
  EXPECT_EQ(PifName(static_cast<PifId>(7)), "PIF7");
  EXPECT_EQ(PifName(PifId::kNone), "PIF0");
}

TEST(Rule, SetsAndReadsInterfaceName) {
  Rule r;
  EXPECT_EQ(r.ifname_view(), "");
  EXPECT_TRUE(r.SetIfname("eth0"));
  EXPECT_EQ(r.ifname_view(), "eth0");
  EXPECT_TRUE(r.SetIfname("lo"));
  EXPECT_EQ(r.ifname_view(), "lo");
  EXPECT_EQ(r.ifname[2], '\0');
  EXPECT_EQ(r.ifname[3], '\0');  // the old name is fully overwritten
  EXPECT_TRUE(r.SetIfname("fifteen-chars-x"));
  EXPECT_EQ(r.ifname_view(), "fifteen-chars-x");
  EXPECT_FALSE(r.SetIfname("sixteen-chars-xx"));
  EXPECT_EQ(r.ifname_view(), "fifteen-chars-x");
  r.ifname.fill('x');  // not NUL-terminated: the view stops at the array's end
  EXPECT_EQ(r.ifname_view(), std::string(16, 'x'));
}

TEST(Rule, TargetPortShiftsWithTheRange) {
  Rule r = MakeRule(kProtoTcp, "127.0.0.1", 8000, 8010, 9000);
  EXPECT_EQ(r.TargetPort(8000), 9000);
  EXPECT_EQ(r.TargetPort(8010), 9010);
}

TEST(RuleText, MatchesEveryLineOfPestoList) {
  std::string text = testing::ReadFileText(testing::InteropDir() + "/pesto_list.txt");
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.substr(0, 4) == "    ") lines.emplace_back(line.substr(4));
  }
  TableSet set = InteropTables();
  std::vector<std::string> printed;
  for (const Table& t : set.tables)
    for (const Rule& r : t.rules) printed.push_back(RuleText(r));
  ASSERT_EQ(lines.size(), 8u);
  EXPECT_EQ(printed, lines);
  EXPECT_EQ(printed[0], "TCP [*]:15201  =>  15201 ");
  EXPECT_EQ(printed[6], "TCP [*]%lo:3000  =>  3000 ");
}

TEST(RuleText, ShowsAddressesTargetsAndFlags) {
  EXPECT_EQ(RuleText(MakeRule(kProtoTcp, "127.0.0.1", 8000, 8010, 9000)),
            "TCP [127.0.0.1]:8000-8010  =>  9000-9010 ");
  EXPECT_EQ(RuleText(MakeRule(kProtoUdp, nullptr, 10000, 10049, 10000, kFlagWeak)),
            "UDP [*]:10000-10049  =>  10000-10049  (best effort)");
  EXPECT_EQ(RuleText(MakeRule(kProtoTcp, nullptr, 1, 32767, 1, kFlagWeak | kFlagScan)),
            "TCP [*]:1-32767  =>  1-32767  (best effort) (auto-scan)");
  EXPECT_EQ(RuleText(MakeRule(kProtoTcp, nullptr, 8000, 8010, 8000, kFlagScan)),
            "TCP [*]:8000-8010  =>  8000-8010  (auto-scan)");
  EXPECT_EQ(RuleText(MakeRule(kProtoTcp, "127.0.0.1", 443, 443, 8443, 0, "", "192.0.2.9")),
            "TCP [127.0.0.1]:443  =>  192.0.2.9:8443 ");
  EXPECT_EQ(RuleText(MakeRule(kProtoTcp, "::", 8443, 8443, 8443, 0, "", "2001:db8::5")),
            "TCP [::]:8443  =>  2001:db8::5:8443 ");
  EXPECT_EQ(RuleText(MakeRule(kProtoTcp, "0.0.0.0", 8080, 8081, 80)),
            "TCP [0.0.0.0]:8080-8081  =>  80-81 ");
  EXPECT_EQ(RuleText(MakeRule(kProtoTcp, "192.0.2.1", 443, 443, 8443, 0, "eth0")),
            "TCP [192.0.2.1]%eth0:443  =>  8443 ");
  // A reversed range shows its first target port only.
  EXPECT_EQ(RuleText(MakeRule(kProtoTcp, nullptr, 90, 80, 90)), "TCP [*]:90-80  =>  90 ");
}

TEST(ValidateRule, AcceptsValidRules) {
  TableSet set = InteropTables();
  for (const Table& t : set.tables)
    for (const Rule& r : t.rules) EXPECT_TRUE(ValidateRule(r, kCaps).ok()) << RuleText(r);
  EXPECT_TRUE(
      ValidateRule(MakeRule(kProtoTcp, nullptr, 1, 65535, 1, kFlagWeak | kFlagScan), kCaps).ok());
  EXPECT_TRUE(ValidateRule(MakeRule(kProtoTcp, nullptr, 65535, 65535, 1), kCaps).ok());
  EXPECT_TRUE(ValidateRule(MakeRule(kProtoTcp, "::1", 1, 10, 65526), kCaps).ok());
  // A :: target is the default target, not IPv6: fine with an IPv4 listener.
  EXPECT_TRUE(ValidateRule(MakeRule(kProtoTcp, "127.0.0.1", 80, 80, 81, 0, "", "::"), kCaps).ok());
  EXPECT_TRUE(
      ValidateRule(MakeRule(kProtoTcp, "127.0.0.1", 443, 443, 8443, 0, "", "192.0.2.9"), kCaps)
          .ok());
  EXPECT_TRUE(
      ValidateRule(MakeRule(kProtoTcp, "::", 8443, 8443, 8443, 0, "", "2001:db8::5"), kCaps).ok());
  // No loop check here: a client cannot know the daemon's context.
  EXPECT_TRUE(ValidateRule(MakeRule(kProtoTcp, nullptr, 8080, 8080, 8080), kCaps).ok());
}

TEST(ValidateRule, RefusesBadPortsWithExactMessages) {
  EXPECT_EQ(Message(ValidateRule(MakeRule(kProtoTcp, nullptr, 0, 0, 80), kCaps)),
            "TCP [*]:0  =>  80 : first port is 0");
  EXPECT_EQ(Message(ValidateRule(MakeRule(kProtoTcp, nullptr, 90, 80, 90), kCaps)),
            "TCP [*]:90-80  =>  90 : first port 90 is above last port 80");
  EXPECT_EQ(Message(ValidateRule(MakeRule(kProtoTcp, nullptr, 65000, 65100, 65500), kCaps)),
            "TCP [*]:65000-65100  =>  65500-65600 : target range 65500-65600 passes port 65535");
  EXPECT_EQ(Message(ValidateRule(MakeRule(kProtoTcp, nullptr, 22, 22, 0), kCaps)),
            "TCP [*]:22  =>  0 : target port is 0");
  EXPECT_EQ(ValidateRule(MakeRule(kProtoTcp, nullptr, 90, 80, 90), kCaps).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ValidateRule, RefusesBadProtocolFlagsAndInterface) {
  EXPECT_EQ(Message(ValidateRule(MakeRule(42, nullptr, 22, 22, 22), kCaps)),
            "??? [*]:22  =>  22 : unknown protocol 42");
  EXPECT_EQ(Message(ValidateRule(MakeRule(kProtoTcp, nullptr, 22, 22, 22, 0x08), kCaps)),
            "TCP [*]:22  =>  22 : unknown flag bits 0x08");
  Rule r = MakeRule(kProtoTcp, nullptr, 22, 22, 22);
  r.ifname.fill('x');
  EXPECT_THAT(Message(ValidateRule(r, kCaps)), HasSubstr(": interface name is not NUL-terminated"));
}

TEST(ValidateRule, RefusesBadDualStackRules) {
  Rule r = MakeRule(kProtoTcp, "127.0.0.1", 22, 22, 22, kFlagDualStackAny);
  EXPECT_EQ(
      Message(ValidateRule(r, kCaps)),
      "TCP [127.0.0.1]:22  =>  22 : dual-stack rule with listen address 127.0.0.1 (only :: is "
      "allowed)");
  EXPECT_EQ(
      Message(ValidateRule(MakeRule(kProtoTcp, nullptr, 22, 22, 22, 0, "", "192.0.2.7"), kCaps)),
      "TCP [*]:22  =>  192.0.2.7:22 : Dual stack forward to IPv4 address 192.0.2.7 unsupported");
  EXPECT_EQ(
      Message(ValidateRule(MakeRule(kProtoTcp, nullptr, 22, 22, 22, 0, "", "2001:db8::7"), kCaps)),
      "TCP [*]:22  =>  2001:db8::7:22 : Dual stack forward to IPv6 address 2001:db8::7 "
      "unsupported");
}

TEST(ValidateRule, RefusesFamilyMismatchAndMulticastTargets) {
  EXPECT_EQ(Message(ValidateRule(MakeRule(kProtoTcp, "127.0.0.1", 80, 80, 80, 0, "", "2001:db8::1"),
                                 kCaps)),
            "TCP [127.0.0.1]:80  =>  2001:db8::1:80 : listen address 127.0.0.1 is IPv4 but "
            "target address 2001:db8::1 is IPv6");
  EXPECT_EQ(
      Message(ValidateRule(MakeRule(kProtoTcp, "::1", 80, 80, 80, 0, "", "192.0.2.1"), kCaps)),
      "TCP [::1]:80  =>  192.0.2.1:80 : listen address ::1 is IPv6 but target address "
      "192.0.2.1 is IPv4");
  EXPECT_EQ(
      Message(ValidateRule(MakeRule(kProtoUdp, "0.0.0.0", 80, 80, 80, 0, "", "224.0.0.1"), kCaps)),
      "UDP [0.0.0.0]:80  =>  224.0.0.1:80 : target address 224.0.0.1 is multicast");
  EXPECT_EQ(Message(ValidateRule(MakeRule(kProtoUdp, "::", 80, 80, 80, 0, "", "ff02::1"), kCaps)),
            "UDP [::]:80  =>  ff02::1:80 : target address ff02::1 is multicast");
}

TEST(ValidateRule, RefusesWhatThePifCannotDo) {
  Rule tcp = MakeRule(kProtoTcp, nullptr, 22, 22, 22);
  EXPECT_EQ(Message(ValidateRule(tcp, kCaps & ~kCapTcp)),
            "TCP [*]:22  =>  22 : TCP is not supported by this pif");
  Rule udp = MakeRule(kProtoUdp, nullptr, 53, 53, 53);
  EXPECT_EQ(Message(ValidateRule(udp, kCaps & ~kCapUdp)),
            "UDP [*]:53  =>  53 : UDP is not supported by this pif");
  EXPECT_TRUE(ValidateRule(udp, kCapUdp | kCapIpv6).ok());  // dual stack: one family is enough
  EXPECT_TRUE(ValidateRule(udp, kCapUdp | kCapIpv4).ok());
  EXPECT_EQ(Message(ValidateRule(udp, kCapUdp)),
            "UDP [*]:53  =>  53 : neither IPv4 nor IPv6 is supported by this pif");
  Rule v4 = MakeRule(kProtoTcp, "127.0.0.1", 22, 22, 22);
  EXPECT_EQ(Message(ValidateRule(v4, kCaps & ~kCapIpv4)),
            "TCP [127.0.0.1]:22  =>  22 : IPv4 is not supported by this pif");
  EXPECT_TRUE(ValidateRule(v4, kCaps & ~kCapIpv6).ok());
  Rule v6 = MakeRule(kProtoTcp, "::", 22, 22, 22);
  EXPECT_EQ(Message(ValidateRule(v6, kCaps & ~kCapIpv6)),
            "TCP [::]:22  =>  22 : IPv6 is not supported by this pif");
  Rule scan = MakeRule(kProtoTcp, nullptr, 22, 22, 22, kFlagScan);
  EXPECT_EQ(Message(ValidateRule(scan, kCaps & ~kCapScan)),
            "TCP [*]:22  =>  22  (auto-scan): auto-scan is not supported by this pif (it needs a "
            "target namespace: --netns)");
  Rule ifname = MakeRule(kProtoTcp, nullptr, 22, 22, 22, 0, "eth0");
  EXPECT_EQ(Message(ValidateRule(ifname, kCaps & ~kCapIfname)),
            "TCP [*]%eth0:22  =>  22 : binding to an interface is not supported by this pif");
  EXPECT_TRUE(ValidateRule(tcp, kCaps & ~kCapIfname & ~kCapScan).ok());
}

TEST(RulesOverlap, NeedsSameProtocolPortsAndAddresses) {
  Rule any = MakeRule(kProtoTcp, nullptr, 8000, 8010, 8000);
  EXPECT_TRUE(RulesOverlap(any, MakeRule(kProtoTcp, "127.0.0.1", 8010, 8020, 9000)));
  EXPECT_TRUE(RulesOverlap(any, MakeRule(kProtoTcp, "::1", 7000, 8000, 7000)));
  EXPECT_FALSE(RulesOverlap(any, MakeRule(kProtoTcp, "127.0.0.1", 8011, 8020, 9000)));
  EXPECT_FALSE(RulesOverlap(any, MakeRule(kProtoUdp, nullptr, 8000, 8010, 8000)));
  Rule v4any = MakeRule(kProtoTcp, "0.0.0.0", 80, 80, 80);
  EXPECT_TRUE(RulesOverlap(v4any, MakeRule(kProtoTcp, "192.0.2.1", 80, 80, 81)));
  EXPECT_TRUE(RulesOverlap(MakeRule(kProtoTcp, "192.0.2.1", 80, 80, 81), v4any));
  EXPECT_FALSE(RulesOverlap(v4any, MakeRule(kProtoTcp, "::1", 80, 80, 81)));
  EXPECT_FALSE(RulesOverlap(v4any, MakeRule(kProtoTcp, "::", 80, 80, 81)));
  Rule v6any = MakeRule(kProtoTcp, "::", 80, 80, 80);
  EXPECT_TRUE(RulesOverlap(v6any, MakeRule(kProtoTcp, "2001:db8::1", 80, 80, 81)));
  EXPECT_FALSE(RulesOverlap(v6any, MakeRule(kProtoTcp, "192.0.2.1", 80, 80, 81)));
  EXPECT_TRUE(RulesOverlap(MakeRule(kProtoTcp, "192.0.2.1", 80, 80, 81),
                           MakeRule(kProtoTcp, "192.0.2.1", 80, 90, 81)));
  EXPECT_FALSE(RulesOverlap(MakeRule(kProtoTcp, "192.0.2.1", 80, 80, 81),
                            MakeRule(kProtoTcp, "192.0.2.2", 80, 80, 81)));
  // Interface names are ignored: conservative.
  EXPECT_TRUE(RulesOverlap(MakeRule(kProtoTcp, nullptr, 80, 80, 80, 0, "eth0"),
                           MakeRule(kProtoTcp, nullptr, 80, 80, 80, 0, "eth1")));
}

TEST(ValidateTable, AcceptsInteropTables) {
  TableSet set = InteropTables();
  for (const Table& t : set.tables) EXPECT_TRUE(ValidateTable(t).ok()) << t.name;
}

TEST(ValidateTable, NamesTheRuleAndItsIndex) {
  Table t{PifId::kHost,
          "HOST",
          kCaps,
          {MakeRule(kProtoTcp, nullptr, 22, 22, 22), MakeRule(kProtoUdp, nullptr, 22, 22, 22),
           MakeRule(kProtoTcp, nullptr, 90, 80, 90)}};
  EXPECT_EQ(Message(ValidateTable(t)),
            "HOST rule 3 (TCP [*]:90-80  =>  90 ): first port 90 is above last port 80");
  t.rules[2] = MakeRule(kProtoTcp, nullptr, 30, 30, 30);
  t.caps &= ~kCapUdp;
  EXPECT_EQ(Message(ValidateTable(t)),
            "HOST rule 2 (UDP [*]:22  =>  22 ): UDP is not supported by this pif");
  t.name = "";  // no wire name: PifName()
  t.pif = PifId::kSplice;
  EXPECT_THAT(Message(ValidateTable(t)), HasSubstr("SPLICE rule 2 "));
}

TEST(ValidateTable, RefusesOverlapsNamingBothRules) {
  Table t{
      PifId::kHost,
      "HOST",
      kCaps,
      {MakeRule(kProtoTcp, nullptr, 8000, 8010, 8000), MakeRule(kProtoTcp, "::1", 2222, 2222, 22),
       MakeRule(kProtoTcp, "127.0.0.1", 8005, 8005, 9005)}};
  EXPECT_EQ(Message(ValidateTable(t)),
            "HOST rule 3 (TCP [127.0.0.1]:8005  =>  9005 ) overlaps rule 1 (TCP [*]:8000-8010  "
            "=>  8000-8010 )");
}

TEST(ValidateTable, AllowsAtMost255Rules) {
  Table t{PifId::kHost, "HOST", kCaps, {}};
  for (uint16_t i = 1; i <= 255; i++) t.rules.push_back(MakeRule(kProtoTcp, nullptr, i, i, i));
  EXPECT_TRUE(ValidateTable(t).ok());
  t.rules.push_back(MakeRule(kProtoTcp, nullptr, 1000, 1000, 1000));
  EXPECT_EQ(Message(ValidateTable(t)), "HOST table has 256 rules, at most 255 are allowed");
}

TEST(ValidateTableSet, AcceptsInteropTablesWithNamespace) {
  EXPECT_TRUE(ValidateTableSet(InteropTables(), {.has_netns = true}).ok());
}

TEST(ValidateTableSet, RefusesRepeatedPifAndBadTables) {
  TableSet set = InteropTables();
  set.tables.push_back(set.tables[0]);
  EXPECT_EQ(Message(ValidateTableSet(set, {.has_netns = true})), "two tables for pif HOST");
  set = InteropTables();
  set.tables[1].rules.push_back(MakeRule(kProtoTcp, nullptr, 3000, 3000, 3001, 0, "lo"));
  EXPECT_THAT(Message(ValidateTableSet(set, {.has_netns = true})),
              HasSubstr("SPLICE rule 3 (TCP [*]%lo:3000  =>  3001 ) overlaps rule 1"));
}

TEST(ValidateTableSet, WithoutNamespaceRefusesSpliceAndScan) {
  TableSet set = InteropTables();
  set.tables[0].rules = {MakeRule(kProtoTcp, nullptr, 8080, 8080, 80)};
  EXPECT_EQ(Message(ValidateTableSet(set, {})),
            "SPLICE rule 1 (TCP [*]%lo:3000  =>  3000 ): SPLICE rules need a target namespace "
            "(--netns)");
  set.tables[1].rules.clear();
  EXPECT_TRUE(ValidateTableSet(set, {}).ok());
  set.tables[0].rules.push_back(MakeRule(kProtoUdp, nullptr, 53, 53, 5353, kFlagScan));
  EXPECT_EQ(Message(ValidateTableSet(set, {})),
            "HOST rule 2 (UDP [*]:53  =>  5353  (auto-scan)): SCAN rules need a target namespace "
            "(--netns)");
  EXPECT_TRUE(ValidateTableSet(set, {.has_netns = true}).ok());
}

TEST(ValidateTableSet, WithoutNamespaceRefusesRulesOntoTheirOwnListener) {
  TableSet set;
  set.tables.push_back(Table{PifId::kHost, "HOST", kCaps, {}});
  Rule& r = set.tables[0].rules.emplace_back(MakeRule(kProtoTcp, nullptr, 8080, 8080, 8080));
  EXPECT_EQ(Message(ValidateTableSet(set, {})),
            "HOST rule 1 (TCP [*]:8080  =>  8080 ): would connect to its own listener (there is "
            "no target namespace); remap it to another port or give a target address");
  EXPECT_TRUE(ValidateTableSet(set, {.has_netns = true}).ok());
  r = MakeRule(kProtoTcp, nullptr, 8080, 8090, 8080);  // every port onto itself
  EXPECT_FALSE(ValidateTableSet(set, {}).ok());
  r = MakeRule(kProtoTcp, "0.0.0.0", 8080, 8080, 8080);
  EXPECT_FALSE(ValidateTableSet(set, {}).ok());
  r = MakeRule(kProtoTcp, "::1", 8080, 8080, 8080);
  EXPECT_FALSE(ValidateTableSet(set, {}).ok());
  r = MakeRule(kProtoTcp, "127.0.0.1", 80, 80, 80, 0, "", "127.0.0.1");
  EXPECT_FALSE(ValidateTableSet(set, {}).ok());
  r = MakeRule(kProtoTcp, "0.0.0.0", 80, 80, 80, 0, "", "127.0.0.1");
  EXPECT_FALSE(ValidateTableSet(set, {}).ok());
  // Remapped, or with a target elsewhere: fine.
  r = MakeRule(kProtoTcp, nullptr, 8080, 8080, 8081);
  EXPECT_TRUE(ValidateTableSet(set, {}).ok());
  r = MakeRule(kProtoTcp, "127.0.0.1", 443, 443, 443, 0, "", "192.0.2.9");
  EXPECT_TRUE(ValidateTableSet(set, {}).ok());
  // Listening on an address that is not loopback: the default target
  // (loopback) is not this listener.
  r = MakeRule(kProtoTcp, "192.0.2.1", 8080, 8080, 8080);
  EXPECT_TRUE(ValidateTableSet(set, {}).ok());
}

TEST(ValidateTableSet, WithNamespaceRefusesHostSpliceLoops) {
  TableSet set;
  set.tables.push_back(Table{PifId::kHost,
                             "HOST",
                             kCaps,
                             {MakeRule(kProtoTcp, nullptr, 15201, 15201, 15201),
                              MakeRule(kProtoTcp, nullptr, 8080, 8089, 80)}});
  set.tables.push_back(Table{
      PifId::kSplice, "SPLICE", kCaps, {MakeRule(kProtoTcp, nullptr, 85, 85, 8085, 0, "lo")}});
  // Host 8085 -> namespace 85 -> host 8085.
  EXPECT_EQ(Message(ValidateTableSet(set, {.has_netns = true})),
            "HOST rule 2 (TCP [*]:8080-8089  =>  80-89 ) and SPLICE rule 1 (TCP [*]%lo:85  =>  "
            "8085 ) forward into each other: a connection would loop between host and namespace");
  // Other protocol, offsets that do not cancel, or ranges that miss: no loop.
  set.tables[1].rules[0].proto = kProtoUdp;
  EXPECT_TRUE(ValidateTableSet(set, {.has_netns = true}).ok());
  set.tables[1].rules[0] = MakeRule(kProtoTcp, nullptr, 85, 85, 8086, 0, "lo");
  EXPECT_TRUE(ValidateTableSet(set, {.has_netns = true}).ok());
  set.tables[1].rules[0] = MakeRule(kProtoTcp, nullptr, 90, 95, 8090, 0, "lo");
  EXPECT_TRUE(ValidateTableSet(set, {.has_netns = true}).ok());
  set.tables[1].rules[0] = MakeRule(kProtoTcp, nullptr, 89, 95, 8089, 0, "lo");
  EXPECT_FALSE(ValidateTableSet(set, {.has_netns = true}).ok());
  // "-t 80 -T 80": each side forwards 80 to the other's listener.
  set.tables[0].rules = {MakeRule(kProtoTcp, nullptr, 80, 80, 80)};
  set.tables[1].rules = {MakeRule(kProtoTcp, nullptr, 80, 80, 80, 0, "lo")};
  EXPECT_FALSE(ValidateTableSet(set, {.has_netns = true}).ok());
  // A target address breaks the circle.
  set.tables[1].rules[0].addr = *Addr6::Parse("::");
  set.tables[1].rules[0].flags = 0;
  set.tables[1].rules[0].target = *Addr6::Parse("2001:db8::9");
  EXPECT_TRUE(ValidateTableSet(set, {.has_netns = true}).ok());
}

}  // namespace
}  // namespace ringfwd

namespace ringfwd {
namespace {

TEST(ValidateTableSet, WithAVmOnTheTapLinkUdpAndTcpGoToTheGuest) {
  TableSet set;
  set.tables.push_back(Table{PifId::kHost, "HOST", kCaps, {}});
  Rule& r = set.tables[0].rules.emplace_back(MakeRule(kProtoUdp, nullptr, 5353, 5353, 5353));
  // Same port, no target address: the guest's, not our own listener.
  EXPECT_TRUE(ValidateTableSet(set, {.has_netns = false, .tap_guest = true}).ok());
  EXPECT_FALSE(ValidateTableSet(set, {}).ok());
  r = MakeRule(kProtoTcp, nullptr, 8080, 8080, 80);
  EXPECT_TRUE(ValidateTableSet(set, {.has_netns = false, .tap_guest = true}).ok());
  r = MakeRule(kProtoTcp, "0.0.0.0", 8080, 8080, 80, 0, "", "192.0.2.9");
  EXPECT_TRUE(ValidateTableSet(set, {.has_netns = false, .tap_guest = true}).ok());
}

}  // namespace
}  // namespace ringfwd
