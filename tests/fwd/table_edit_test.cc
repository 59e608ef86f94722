#include "fwd/table_edit.h"

#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace ringfwd {
namespace {

constexpr uint32_t kCaps = 0x3f;
constexpr uint8_t kAny = kFlagDualStackAny;
constexpr PortRange kEphemeral{32768, 60999};

// A rule; addr nullptr means "::" (pass kAny in flags for dual-stack any).
Rule R(uint8_t proto, const char* addr, uint16_t first, uint16_t last, uint16_t to, uint8_t flags,
       const char* ifname = "") {
  Rule r;
  r.proto = proto;
  if (addr) r.addr = *Addr6::Parse(addr);
  r.first = first;
  r.last = last;
  r.to = to;
  r.flags = flags;
  EXPECT_TRUE(r.SetIfname(ifname));
  return r;
}

// The six HOST rules and two SPLICE rules of interop/server_listing.bin.
std::vector<Rule> InteropHost() {
  return {R(kProtoTcp, nullptr, 15201, 15201, 15201, kAny),
          R(kProtoTcp, "127.0.0.1", 8000, 8010, 9000, 0),
          R(kProtoTcp, "::1", 2222, 2222, 22, 0),
          R(kProtoUdp, nullptr, 5353, 5353, 5353, kAny),
          R(kProtoUdp, nullptr, 10000, 10049, 10000, kAny),
          R(kProtoUdp, nullptr, 10051, 10100, 10051, kAny)};
}
std::vector<Rule> InteropSplice() {
  return {R(kProtoTcp, nullptr, 3000, 3000, 3000, kAny, "lo"),
          R(kProtoUdp, nullptr, 53, 53, 53, kAny, "lo")};
}
TableSet InteropTables() {
  TableSet set;
  set.tables.push_back(Table{PifId::kHost, "HOST", kCaps, InteropHost()});
  set.tables.push_back(Table{PifId::kSplice, "SPLICE", kCaps, InteropSplice()});
  return set;
}

std::string Apply(const std::vector<EditArg>& args, TableSet* set) {
  absl::Status s = ApplyEdits(args, kEphemeral, set);
  return s.ok() ? "" : std::string(s.message());
}

// client_update_add.bin: "-A -t 192.0.2.1%eth0/443:8443 -u 7000-7002".
TEST(ApplyEdits, AddAppendsInCommandLineOrder) {
  TableSet set = InteropTables();
  ASSERT_EQ(Apply({{'A', ""}, {'t', "192.0.2.1%eth0/443:8443"}, {'u', "7000-7002"}}, &set), "");
  std::vector<Rule> host = InteropHost();
  host.push_back(R(kProtoTcp, "192.0.2.1", 443, 443, 8443, 0, "eth0"));
  host.push_back(R(kProtoUdp, nullptr, 7000, 7002, 7000, kAny));
  ASSERT_EQ(set.tables.size(), 2u);
  EXPECT_EQ(set.tables[0].rules, host);
  EXPECT_EQ(set.tables[1].rules, InteropSplice());
  EXPECT_EQ(set.tables[0].name, "HOST");
  EXPECT_EQ(set.tables[0].caps, kCaps);
}

// client_update_replace.bin: "-t 80 -t 0.0.0.0/8080-8081:80-81 -u ::/53 -T none".
TEST(ApplyEdits, FirstSpecReplacesLaterOnesAdd) {
  TableSet set = InteropTables();
  ASSERT_EQ(
      Apply({{'t', "80"}, {'t', "0.0.0.0/8080-8081:80-81"}, {'u', "::/53"}, {'T', "none"}}, &set),
      "");
  EXPECT_EQ(set.tables[0].rules, (std::vector<Rule>{R(kProtoTcp, nullptr, 80, 80, 80, kAny),
                                                    R(kProtoTcp, "0.0.0.0", 8080, 8081, 80, 0),
                                                    R(kProtoUdp, "::", 53, 53, 53, 0)}));
  EXPECT_EQ(set.tables[1].rules, std::vector<Rule>{});
}

// client_update_delete.bin: "-s -D -t 127.0.0.1/8000-8010:9000-9010 -C SPLICE",
// printed as the "Updated configuration" of pesto_show_delete.txt.
TEST(ApplyEdits, DeleteAndClearMatchInteropOutput) {
  TableSet set = InteropTables();
  ASSERT_EQ(Apply({{'D', ""}, {'t', "127.0.0.1/8000-8010:9000-9010"}, {'C', "SPLICE"}}, &set), "");
  std::vector<Rule> host = InteropHost();
  host.erase(host.begin() + 1);
  EXPECT_EQ(set.tables[0].rules, host);
  EXPECT_EQ(set.tables[1].rules, std::vector<Rule>{});

  std::string text = testing::ReadFileText(testing::InteropDir() + "/pesto_show_delete.txt");
  std::vector<std::string> updated;
  bool after = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.substr(0, 7) == "Updated") after = true;
    if (after && line.substr(0, 4) == "    ") updated.emplace_back(line.substr(4));
  }
  std::vector<std::string> printed;
  for (const Table& t : set.tables)
    for (const Rule& r : t.rules) printed.push_back(RuleText(r));
  EXPECT_EQ(printed, updated);
  EXPECT_EQ(printed.size(), 5u);
}

TEST(ApplyEdits, DeleteThenAddSameRange) {
  TableSet set = InteropTables();
  ASSERT_EQ(Apply({{'D', ""}, {'u', "10000-10049"}, {'A', ""}, {'u', "10000-10010"}}, &set), "");
  std::vector<Rule> host = InteropHost();
  host.erase(host.begin() + 4);
  host.push_back(R(kProtoUdp, nullptr, 10000, 10010, 10000, kAny));
  EXPECT_EQ(set.tables[0].rules, host);
  EXPECT_EQ(set.tables[1].rules, InteropSplice());
}

TEST(ApplyEdits, SpliceSpecsReplaceOnlySplice) {
  TableSet set = InteropTables();
  ASSERT_EQ(Apply({{'T', "4000"}, {'U', "5353"}}, &set), "");
  EXPECT_EQ(set.tables[0].rules, InteropHost());
  EXPECT_EQ(set.tables[1].rules,
            (std::vector<Rule>{R(kProtoTcp, nullptr, 4000, 4000, 4000, kAny, "lo"),
                               R(kProtoUdp, nullptr, 5353, 5353, 5353, kAny, "lo")}));
  // A UDP spec alone also replaces the whole HOST table.
  ASSERT_EQ(Apply({{'u', "5353"}}, &set), "");
  EXPECT_EQ(set.tables[0].rules, std::vector<Rule>{R(kProtoUdp, nullptr, 5353, 5353, 5353, kAny)});
}

TEST(ApplyEdits, ReplaceThenAddThenDelete) {
  TableSet set = InteropTables();
  ASSERT_EQ(Apply({{'t', "80"}, {'A', ""}, {'t', "81"}, {'D', ""}, {'t', "80"}}, &set), "");
  EXPECT_EQ(set.tables[0].rules, std::vector<Rule>{R(kProtoTcp, nullptr, 81, 81, 81, kAny)});
}

TEST(ApplyEdits, ClearTakesNamesInAnyCaseOrNumbers) {
  for (const char* name : {"SPLICE", "splice", "Splice", "3"}) {
    TableSet set = InteropTables();
    ASSERT_EQ(Apply({{'C', name}}, &set), "") << name;
    EXPECT_EQ(set.tables[0].rules, InteropHost()) << name;
    EXPECT_EQ(set.tables[1].rules, std::vector<Rule>{}) << name;
  }
  for (const char* name : {"HOST", "host", "1"}) {
    TableSet set = InteropTables();
    ASSERT_EQ(Apply({{'C', name}}, &set), "") << name;
    EXPECT_EQ(set.tables[0].rules, std::vector<Rule>{}) << name;
    EXPECT_EQ(set.tables[1].rules, InteropSplice()) << name;
  }
  // Clear, then add into the empty table.
  TableSet set = InteropTables();
  ASSERT_EQ(Apply({{'C', "host"}, {'A', ""}, {'t', "22"}}, &set), "");
  EXPECT_EQ(set.tables[0].rules, std::vector<Rule>{R(kProtoTcp, nullptr, 22, 22, 22, kAny)});
}

TEST(ApplyEdits, ErrorsNameTheArgumentAndChangeNothing) {
  const TableSet orig = InteropTables();
  TableSet set = orig;
  EXPECT_EQ(Apply({{'t', "22"}, {'t', "70000"}}, &set), "-t 70000: Invalid port specifier '70000'");
  EXPECT_EQ(set, orig);
  EXPECT_EQ(Apply({{'D', ""}, {'t', "9999"}}, &set),
            "-t 9999: rule TCP [*]:9999  =>  9999  is not in the HOST table");
  EXPECT_EQ(set, orig);
  // Deleting needs an exact match: same ports, other target.
  EXPECT_EQ(Apply({{'D', ""}, {'t', "127.0.0.1/8000-8010:9001-9011"}}, &set),
            "-t 127.0.0.1/8000-8010:9001-9011: rule TCP [127.0.0.1]:8000-8010  =>  9001-9011  is "
            "not in the HOST table");
  EXPECT_EQ(set, orig);
  EXPECT_EQ(Apply({{'C', "FOO"}}, &set), "-C FOO: unknown pif 'FOO'");
  EXPECT_EQ(Apply({{'C', "TAP"}}, &set), "-C TAP: the server has no TAP table");
  EXPECT_EQ(Apply({{'C', "0"}}, &set), "-C 0: unknown pif '0'");
  EXPECT_EQ(Apply({{'x', "1"}}, &set), "unknown edit option '-x'");
  EXPECT_EQ(set, orig);
}

TEST(ApplyEdits, RefusesOverlapsBlamingTheArgument) {
  const TableSet orig = InteropTables();
  TableSet set = orig;
  EXPECT_EQ(Apply({{'A', ""}, {'u', "10000-10010"}}, &set),
            "-u 10000-10010: HOST rule 7 (UDP [*]:10000-10010  =>  10000-10010 ) overlaps rule 5 "
            "(UDP [*]:10000-10049  =>  10000-10049 )");
  EXPECT_EQ(set, orig);
  EXPECT_EQ(Apply({{'t', "80"}, {'t', "22"}, {'t', "0.0.0.0/80:8080"}}, &set),
            "-t 0.0.0.0/80:8080: HOST rule 3 (TCP [0.0.0.0]:80  =>  8080 ) overlaps rule 1 (TCP "
            "[*]:80  =>  80 )");
  EXPECT_EQ(set, orig);
  // An overlap that a later edit removes is fine: tables are checked at the end.
  ASSERT_EQ(Apply({{'A', ""}, {'u', "10000-10010"}, {'D', ""}, {'u', "10000-10049"}}, &set), "");
  EXPECT_EQ(set.tables[0].rules.back(), R(kProtoUdp, nullptr, 10000, 10010, 10000, kAny));
}

TEST(ApplyEdits, RefusesWhatThePifCannotDo) {
  TableSet set = InteropTables();
  set.tables[0].caps &= ~kCapIfname;
  const TableSet orig = set;
  EXPECT_EQ(Apply({{'A', ""}, {'t', "%eth0/22"}}, &set),
            "-t %eth0/22: HOST rule 7 (TCP [*]%eth0:22  =>  22 ): binding to an interface is not "
            "supported by this pif");
  EXPECT_EQ(set, orig);
}

TEST(ApplyEdits, NeedsTheTableOfThePif) {
  TableSet set;
  set.tables.push_back(Table{PifId::kHost, "HOST", kCaps, InteropHost()});
  EXPECT_EQ(Apply({{'T', "80"}}, &set), "-T 80: the server has no SPLICE table");
  EXPECT_EQ(set.tables[0].rules, InteropHost());
}

TEST(EditsChangeTables, OnlySpecsAndClears) {
  EXPECT_FALSE(EditsChangeTables({}));
  EXPECT_FALSE(EditsChangeTables({{'A', ""}}));
  EXPECT_FALSE(EditsChangeTables({{'A', ""}, {'D', ""}}));
  EXPECT_TRUE(EditsChangeTables({{'C', "SPLICE"}}));
  EXPECT_TRUE(EditsChangeTables({{'t', "80"}}));
  EXPECT_TRUE(EditsChangeTables({{'A', ""}, {'u', "53"}}));
  EXPECT_TRUE(EditsChangeTables({{'T', "none"}}));
  EXPECT_TRUE(EditsChangeTables({{'U', "53"}}));
}

}  // namespace
}  // namespace ringfwd
