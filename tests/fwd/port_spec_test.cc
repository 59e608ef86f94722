#include "fwd/port_spec.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ringfwd {
namespace {

using ::testing::HasSubstr;

constexpr uint8_t kAny = kFlagDualStackAny;

// A rule; addr nullptr means dual-stack any (the flag is then in `flags`).
Rule R(uint8_t proto, const char* addr, uint16_t first, uint16_t last, uint16_t to, uint8_t flags,
       const char* ifname = "", const char* target = nullptr) {
  Rule r;
  r.proto = proto;
  if (addr) r.addr = *Addr6::Parse(addr);
  r.first = first;
  r.last = last;
  r.to = to;
  r.flags = flags;
  EXPECT_TRUE(r.SetIfname(ifname));
  if (target) r.target = *Addr6::Parse(target);
  return r;
}

std::vector<Rule> Parse(std::string_view spec, PifId pif = PifId::kHost,
                        uint8_t proto = kProtoTcp) {
  PortSpecOptions opts;
  opts.pif = pif;
  opts.proto = proto;
  absl::StatusOr<std::vector<Rule>> rules = ParsePortSpec(spec, opts);
  EXPECT_TRUE(rules.ok()) << spec << ": " << rules.status();
  return rules.ok() ? *rules : std::vector<Rule>{};
}

std::string Error(std::string_view spec, PifId pif = PifId::kHost) {
  PortSpecOptions opts;
  opts.pif = pif;
  absl::StatusOr<std::vector<Rule>> rules = ParsePortSpec(spec, opts);
  EXPECT_FALSE(rules.ok()) << spec;
  if (rules.ok()) return "";
  EXPECT_EQ(rules.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(rules.status().message());
}

// Every example of PROTOCOL.md, "Port specifications".
TEST(ParsePortSpec, SinglePortsAndRanges) {
  EXPECT_EQ(Parse("22"), std::vector<Rule>{R(kProtoTcp, nullptr, 22, 22, 22, kAny)});
  EXPECT_EQ(Parse("22:23"), std::vector<Rule>{R(kProtoTcp, nullptr, 22, 22, 23, kAny)});
  EXPECT_EQ(Parse("22-80:32-90"), std::vector<Rule>{R(kProtoTcp, nullptr, 22, 80, 32, kAny)});
  EXPECT_EQ(Parse("1-65535"), std::vector<Rule>{R(kProtoTcp, nullptr, 1, 65535, 1, kAny)});
  EXPECT_EQ(Parse("65535"), std::vector<Rule>{R(kProtoTcp, nullptr, 65535, 65535, 65535, kAny)});
  // A single target port for a range shifts the whole range.
  EXPECT_EQ(Parse("8000-8010:9000"),
            std::vector<Rule>{R(kProtoTcp, nullptr, 8000, 8010, 9000, kAny)});
}

TEST(ParsePortSpec, ListenAddressesAndInterfaces) {
  EXPECT_EQ(Parse("192.0.2.1%eth0/443:8443"),
            std::vector<Rule>{R(kProtoTcp, "192.0.2.1", 443, 443, 8443, 0, "eth0")});
  EXPECT_EQ(Parse("::1/2222:22"), std::vector<Rule>{R(kProtoTcp, "::1", 2222, 2222, 22, 0)});
  EXPECT_EQ(Parse("127.0.0.1/8000-8010:9000-9010"),
            std::vector<Rule>{R(kProtoTcp, "127.0.0.1", 8000, 8010, 9000, 0)});
  EXPECT_EQ(Parse("%eth0/22"), std::vector<Rule>{R(kProtoTcp, nullptr, 22, 22, 22, kAny, "eth0")});
  EXPECT_EQ(Parse("fe80::1%eth1/22"),
            std::vector<Rule>{R(kProtoTcp, "fe80::1", 22, 22, 22, 0, "eth1")});
}

TEST(ParsePortSpec, TargetAddresses) {
  EXPECT_EQ(Parse("127.0.0.1/443:192.0.2.9/8443"),
            std::vector<Rule>{R(kProtoTcp, "127.0.0.1", 443, 443, 8443, 0, "", "192.0.2.9")});
  EXPECT_EQ(Parse("::/8443:2001:db8::5"),
            std::vector<Rule>{R(kProtoTcp, "::", 8443, 8443, 8443, 0, "", "2001:db8::5")});
  EXPECT_EQ(Parse("::1/80-81:2001:db8::5/8080-8081"),
            std::vector<Rule>{R(kProtoTcp, "::1", 80, 81, 8080, 0, "", "2001:db8::5")});
  EXPECT_EQ(Parse("0.0.0.0/80-81:192.0.2.9"),
            std::vector<Rule>{R(kProtoTcp, "0.0.0.0", 80, 81, 80, 0, "", "192.0.2.9")});
  // A '/' only in the target: no address prefix, so a dual-stack rule, and
  // that cannot have a target address.
  EXPECT_EQ(Error("443:192.0.2.9/8443"),
            "Invalid port specifier '443:192.0.2.9/8443': TCP [*]:443  =>  192.0.2.9:8443 : Dual "
            "stack forward to IPv4 address 192.0.2.9 unsupported");
}

TEST(ParsePortSpec, ExclusionsSplitRanges) {
  EXPECT_EQ(Parse("5-25,~10-20"), (std::vector<Rule>{R(kProtoTcp, nullptr, 5, 9, 5, kAny),
                                                     R(kProtoTcp, nullptr, 21, 25, 21, kAny)}));
  // Mapped ranges keep their mapping across the cut.
  EXPECT_EQ(Parse("~10-20,5-25:105-125"),
            (std::vector<Rule>{R(kProtoTcp, nullptr, 5, 9, 105, kAny),
                               R(kProtoTcp, nullptr, 21, 25, 121, kAny)}));
  EXPECT_EQ(Parse("1-65535,~1000-2000"),
            (std::vector<Rule>{R(kProtoTcp, nullptr, 1, 999, 1, kAny),
                               R(kProtoTcp, nullptr, 2001, 65535, 2001, kAny)}));
  EXPECT_EQ(Parse("~20000-20010"),
            (std::vector<Rule>{R(kProtoTcp, nullptr, 1, 19999, 1, kAny | kFlagWeak),
                               R(kProtoTcp, nullptr, 20011, 32767, 20011, kAny | kFlagWeak),
                               R(kProtoTcp, nullptr, 61000, 65535, 61000, kAny | kFlagWeak)}));
  EXPECT_EQ(Error("~1-65535"), "No ports left in '~1-65535'");
  EXPECT_EQ(Error("22,~22"), "No ports left in '22,~22'");
}

TEST(ParsePortSpec, AllAutoAndNone) {
  EXPECT_EQ(Parse("all"),
            (std::vector<Rule>{R(kProtoTcp, nullptr, 1, 32767, 1, kAny | kFlagWeak),
                               R(kProtoTcp, nullptr, 61000, 65535, 61000, kAny | kFlagWeak)}));
  EXPECT_EQ(Parse("auto"),
            (std::vector<Rule>{
                R(kProtoTcp, nullptr, 1, 32767, 1, kAny | kFlagWeak | kFlagScan),
                R(kProtoTcp, nullptr, 61000, 65535, 61000, kAny | kFlagWeak | kFlagScan)}));
  EXPECT_EQ(Parse("8000-8010,auto"),
            std::vector<Rule>{R(kProtoTcp, nullptr, 8000, 8010, 8000, kAny | kFlagScan)});
  EXPECT_EQ(Parse("all,~22"),
            (std::vector<Rule>{R(kProtoTcp, nullptr, 1, 21, 1, kAny | kFlagWeak),
                               R(kProtoTcp, nullptr, 23, 32767, 23, kAny | kFlagWeak),
                               R(kProtoTcp, nullptr, 61000, 65535, 61000, kAny | kFlagWeak)}));
  EXPECT_EQ(Parse("127.0.0.1/all"),
            (std::vector<Rule>{R(kProtoTcp, "127.0.0.1", 1, 32767, 1, kFlagWeak),
                               R(kProtoTcp, "127.0.0.1", 61000, 65535, 61000, kFlagWeak)}));
  EXPECT_EQ(Parse("none"), std::vector<Rule>{});
  // The ephemeral range comes from the options.
  PortSpecOptions opts;
  opts.ephemeral = {1024, 65535};
  absl::StatusOr<std::vector<Rule>> rules = ParsePortSpec("all", opts);
  ASSERT_TRUE(rules.ok());
  EXPECT_EQ(*rules, std::vector<Rule>{R(kProtoTcp, nullptr, 1, 1023, 1, kAny | kFlagWeak)});
}

TEST(ParsePortSpec, SpliceRulesBindToLoopbackInterface) {
  EXPECT_EQ(Parse("3000", PifId::kSplice),
            std::vector<Rule>{R(kProtoTcp, nullptr, 3000, 3000, 3000, kAny, "lo")});
  EXPECT_EQ(Parse("53", PifId::kSplice, kProtoUdp),
            std::vector<Rule>{R(kProtoUdp, nullptr, 53, 53, 53, kAny, "lo")});
  EXPECT_EQ(Parse("%eth0/22", PifId::kSplice),
            std::vector<Rule>{R(kProtoTcp, nullptr, 22, 22, 22, kAny, "eth0")});
  EXPECT_EQ(Parse("::1/22", PifId::kSplice),
            std::vector<Rule>{R(kProtoTcp, "::1", 22, 22, 22, 0, "lo")});
}

// The command lines of interop/README.md, decoded there.
TEST(ParsePortSpec, MatchesInteropClient) {
  EXPECT_EQ(Parse("80"), std::vector<Rule>{R(kProtoTcp, nullptr, 80, 80, 80, kAny)});
  EXPECT_EQ(Parse("0.0.0.0/8080-8081:80-81"),
            std::vector<Rule>{R(kProtoTcp, "0.0.0.0", 8080, 8081, 80, 0)});
  EXPECT_EQ(Parse("::/53", PifId::kHost, kProtoUdp),
            std::vector<Rule>{R(kProtoUdp, "::", 53, 53, 53, 0)});
  EXPECT_EQ(Parse("7000-7002", PifId::kHost, kProtoUdp),
            std::vector<Rule>{R(kProtoUdp, nullptr, 7000, 7002, 7000, kAny)});
  EXPECT_EQ(Parse("127.0.0.1/8000-8010:9000-9010")[0],
            R(kProtoTcp, "127.0.0.1", 8000, 8010, 9000, 0));
}

TEST(ParsePortSpec, ListsAreSortedByPort) {
  EXPECT_EQ(Parse("443,22,80-81:8080-8081"),
            (std::vector<Rule>{R(kProtoTcp, nullptr, 22, 22, 22, kAny),
                               R(kProtoTcp, nullptr, 80, 81, 8080, kAny),
                               R(kProtoTcp, nullptr, 443, 443, 443, kAny)}));
}

TEST(ParsePortSpec, RefusesBadPortsNamingTheChunk) {
  EXPECT_EQ(Error("70000"), "Invalid port specifier '70000'");
  EXPECT_EQ(Error("22,70000"), "Invalid port specifier '70000'");
  EXPECT_EQ(Error("abc"), "Invalid port specifier 'abc'");
  EXPECT_EQ(Error("22-"), "Invalid port specifier '22-'");
  EXPECT_EQ(Error("-22"), "Invalid port specifier '-22'");
  EXPECT_EQ(Error("+22"), "Invalid port specifier '+22'");
  EXPECT_EQ(Error("22,,23"), "Invalid port specifier ''");
  EXPECT_EQ(Error("none,22"), "Invalid port specifier 'none'");
  EXPECT_EQ(Error("0"), "Invalid port specifier '0': port 0 cannot be forwarded");
  EXPECT_EQ(Error("90-80"), "Invalid port specifier '90-80': first port 90 is above last port 80");
  EXPECT_EQ(Error("~"), "Invalid port specifier '~'");
  EXPECT_EQ(Error("~30-20"),
            "Invalid port specifier '~30-20': first port 30 is above last port 20");
}

TEST(ParsePortSpec, RefusesBadTargets) {
  EXPECT_EQ(Error("22:0"), "Invalid port specifier '22:0': maps to port 0");
  EXPECT_EQ(Error("22-23:0-1"), "Invalid port specifier '22-23:0-1': maps to port 0");
  EXPECT_EQ(Error("22:70000"), "Invalid port specifier '22:70000'");
  EXPECT_EQ(Error("22:"), "Invalid port specifier '22:'");
  EXPECT_EQ(Error("65530-65535:65532"),
            "Invalid port specifier '65530-65535:65532': target range passes port 65535");
  EXPECT_EQ(Error("22-80:32-89"),
            "Invalid port specifier '22-80:32-89': target range 32-89 is not the size of 22-80");
  EXPECT_EQ(Error("127.0.0.1/80:300.1.1.1/80"),
            "Invalid port specifier '80:300.1.1.1/80': invalid target address '300.1.1.1'");
  EXPECT_EQ(Error("127.0.0.1/80:2001:db8::1"),
            "Invalid port specifier '80:2001:db8::1': TCP [127.0.0.1]:80  =>  2001:db8::1:80 : "
            "listen address 127.0.0.1 is IPv4 but target address 2001:db8::1 is IPv6");
  EXPECT_THAT(Error("::1/80:192.0.2.1"),
              HasSubstr("listen address ::1 is IPv6 but target address 192.0.2.1 is IPv4"));
  EXPECT_THAT(Error("0.0.0.0/80:224.0.0.1"), HasSubstr("target address 224.0.0.1 is multicast"));
  EXPECT_THAT(Error("80:192.0.2.7"),
              HasSubstr("Dual stack forward to IPv4 address 192.0.2.7 unsupported"));
}

TEST(ParsePortSpec, RefusesBadAddressesAndInterfaces) {
  EXPECT_EQ(Error("1.2.3/22"), "Invalid address '1.2.3'");
  EXPECT_EQ(Error("/22"), "Invalid address ''");
  EXPECT_EQ(Error("%/22"), "Invalid interface name ''");
  EXPECT_EQ(Error("%sixteen-chars-xx/22"), "Invalid interface name 'sixteen-chars-xx'");
  EXPECT_EQ(Error("127.0.0.1/"), "No ports in port specification");
  EXPECT_EQ(Error(""), "Empty port specification");
  EXPECT_EQ(Error("all,22"), "'all' cannot be combined with port ranges ('22')");
}

TEST(ParsePortSpec, RefusesOverlapsPrintingBothRules) {
  EXPECT_EQ(Error("20-30,25"),
            "Overlapping port specifiers '20-30' and '25': (TCP [*]:20-30  =>  20-30 ) and (TCP "
            "[*]:25  =>  25 )");
  EXPECT_EQ(Error("22,22:23"),
            "Overlapping port specifiers '22' and '22:23': (TCP [*]:22  =>  22 ) and (TCP [*]:22  "
            "=>  23 )");
  // The widest earlier range is the one found, not only the previous one.
  EXPECT_EQ(Error("1-100,50,99-120"),
            "Overlapping port specifiers '1-100' and '50': (TCP [*]:1-100  =>  1-100 ) and (TCP "
            "[*]:50  =>  50 )");
  EXPECT_THAT(Error("1-100,~50,60,101"), HasSubstr("'1-100' and '60'"));
}

TEST(ReadEphemeralRange, ReadsTheFileOrFallsBack) {
  char path[] = "/tmp/ringfwd_ephemeral_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  { std::ofstream(path) << "1024\t4999\n"; }
  PortRange r = ReadEphemeralRange(path);
  EXPECT_EQ(r.first, 1024);
  EXPECT_EQ(r.last, 4999);
  { std::ofstream(path) << "garbage\n"; }
  r = ReadEphemeralRange(path);
  EXPECT_EQ(r.first, 32768);
  EXPECT_EQ(r.last, 60999);
  { std::ofstream(path) << "5000 4000\n"; }
  EXPECT_EQ(ReadEphemeralRange(path).first, 32768);
  std::remove(path);
  r = ReadEphemeralRange("/nonexistent/ip_local_port_range");
  EXPECT_EQ(r.first, 32768);
  EXPECT_EQ(r.last, 60999);
  r = ReadEphemeralRange();  // the system's: whatever it is, a sane range
  EXPECT_GE(r.first, 1);
  EXPECT_LE(r.first, r.last);
}

}  // namespace
}  // namespace ringfwd
