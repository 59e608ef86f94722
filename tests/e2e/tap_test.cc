// Tap mode with a namespace's kernel as the guest: the tap is configured in
// the guest, UDP reaches the outside world and the host's loopback, ICMP
// errors come back, bad frames are dropped and counted, and the guest's
// kernel never sees a bad checksum.
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/load_util.h"
#include "tests/e2e/tap_util.h"

namespace ringfwd::e2e {
namespace {

std::string Ip(const TempNetns& ns, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"ip", "-n", ns.name()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCmd(argv).output;
}

uint16_t LocalPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return Addr::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len).port();
}

void ExpectNoChecksumErrors(const TempNetns& ns) {
  auto counters = ChecksumErrorCounters(ns);
  ASSERT_FALSE(counters.empty()) << "nstat showed no checksum counters";
  for (const auto& [name, v] : counters) EXPECT_EQ(v, 0) << name << " in the guest";
}

TEST_F(TapTest, ConfiguresTheTapInTheGuest) {
  auto d = StartTap();
  ASSERT_TRUE(d);
  // Named after the host's template interface (out0 has the default route).
  std::string link = Ip(*target_, {"-o", "link", "show", "out0"});
  EXPECT_NE(link.find("mtu 65520"), std::string::npos) << link;
  EXPECT_NE(link.find(",UP"), std::string::npos) << link;
  std::string addrs = Ip(*target_, {"-o", "addr", "show", "dev", "out0"});
  EXPECT_NE(addrs.find(std::string(kGuest4) + "/24"), std::string::npos) << addrs;
  EXPECT_NE(addrs.find(std::string(kGuest6) + "/64"), std::string::npos) << addrs;
  EXPECT_EQ(addrs.find("tentative"), std::string::npos) << "no DAD: " << addrs;
  std::string r4 = Ip(*target_, {"route", "show", "default"});
  EXPECT_NE(r4.find(std::string("via ") + kGateway4 + " dev out0"), std::string::npos) << r4;
  std::string r6 = Ip(*target_, {"-6", "route", "show", "default"});
  EXPECT_NE(r6.find("dev out0"), std::string::npos) << r6;
  std::string lo = Ip(*target_, {"-o", "link", "show", "lo"});
  EXPECT_NE(lo.find("UP"), std::string::npos) << lo;
  // The guest's router solicitation (sent as the link came up) or our first
  // unsolicited advertisement reaches its kernel.
  long ras = 0;
  for (Deadline dl = In(5000 * Slowdown()); ras == 0 && MsLeft(dl) > 0;) {
    CmdResult n = RunCmd(
        {"ip", "netns", "exec", target_->name(), "nstat", "-asz", "Icmp6InRouterAdvertisements"});
    std::sscanf(n.output.c_str(), "%*[^\n]\nIcmp6InRouterAdvertisements %ld", &ras);
    if (ras == 0) poll(nullptr, 0, 100);  // polled, bounded by the deadline
  }
  EXPECT_GT(ras, 0) << "no router advertisement reached the guest";
  // Our process stays in the host namespace: no tap there.
  EXPECT_EQ(Ip(*host_, {"-o", "link", "show"}).find("out0:"),
            Ip(*host_, {"-o", "link", "show"}).find("out0:"));
  EXPECT_EQ(Ip(*host_, {"-o", "addr", "show"}).find(kGuest4), std::string::npos);
}

// Many guest flows, each a socket on its own thread, to an echo server
// outside; every reply is checked by digest, and the outside sees the
// guest's own source ports.
void ManyFlows(const TempNetns& guest, const Addr& to, int clients, int rounds,
               const UdpEchoServer& server) {
  std::vector<Fd> socks = SocketsIn(guest, to.family(), SOCK_DGRAM, clients);
  ASSERT_EQ(socks.size(), static_cast<size_t>(clients));
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      for (int i = 0; i < rounds; ++i) {
        size_t len = 1 + (c * 977 + i * 131) % 9000;
        if (c == 0 && i == 0) len = 60000;  // one beyond a 1500 MTU on the way out
        std::string msg = Pattern(c * 1000 + i).Bytes(0, len);
        std::string expect = "o:" + msg;
        Addr from;
        if (!UdpExchange(socks[c].get(), to, msg, expect, &from)) {
          ADD_FAILURE() << "flow " << c << " datagram " << i << " (" << len << " bytes): no reply";
          return;
        }
        EXPECT_EQ(DigestOf(expect), DigestOf("o:" + msg));
        EXPECT_EQ(from, to);
        ++good;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(good.load(), clients * rounds);
  std::set<uint16_t> seen;
  for (const Addr& a : server.peers()) seen.insert(a.port());
  for (const Fd& s : socks)
    EXPECT_TRUE(seen.count(LocalPort(s.get()))) << "the guest's source port is kept";
}

TEST_F(TapTest, UdpFlowsToTheOutsideBothFamilies) {
  UdpEchoServer s4(UdpBind(*outside_, Addr::Of(kOutside4, 7777)), "o:");
  UdpEchoServer s6(UdpBind(*outside_, Addr::Of(kOutside6, 7777)), "o:");
  auto d = StartTap();
  ASSERT_TRUE(d);
  ManyFlows(*target_, Addr::Of(kOutside4, 7777), 12, 10, s4);
  ManyFlows(*target_, Addr::Of(kOutside6, 7777), 12, 10, s6);
  // The guest resolved the gateway to our MAC.
  std::string neigh = Ip(*target_, {"neigh", "show", kGateway4});
  EXPECT_NE(neigh.find(kOurMac), std::string::npos) << neigh;
  ExpectNoChecksumErrors(*target_);
  EXPECT_TRUE(d->Running());
}

TEST_F(TapTest, GatewayAddressReachesHostLoopbackAndDnsTheResolver) {
  UdpEchoServer lo4(UdpBind(*host_, Addr::Of("127.0.0.1", 5353)), "h4:");
  UdpEchoServer lo6(UdpBind(*host_, Addr::Of("::1", 5353)), "h6:");
  UdpEchoServer dns(UdpBind(*host_, Addr::Of("127.0.0.1", 53)), "dns:");
  auto d = StartTap();
  ASSERT_TRUE(d);
  struct Case {
    Addr to;
    std::string tag;
  } cases[] = {{Addr::Of(kGateway4, 5353), "h4:"},
               {Addr::Of(kGateway6, 5353), "h6:"},
               {Addr::Of(kDns4, 53), "dns:"}};
  for (const Case& c : cases) {
    Fd s = SocketIn(*target_, c.to.family(), SOCK_DGRAM);
    Addr from;
    std::string msg = "query to " + c.to.ToString();
    EXPECT_TRUE(UdpExchange(s.get(), c.to, msg, c.tag + msg, &from)) << c.to.ToString();
    EXPECT_EQ(from, c.to) << "the reply comes from the address the guest wrote to";
  }
  EXPECT_EQ(lo4.peers().size(), 1u);
  EXPECT_EQ(dns.peers().size(), 1u);
  ExpectNoChecksumErrors(*target_);
}

TEST_F(TapTest, IcmpErrorsReachTheGuestAsConnectionRefused) {
  auto d = StartTap();
  ASSERT_TRUE(d);
  for (const Addr& to :
       {Addr::Of(kOutside4, 7778), Addr::Of(kOutside6, 7778), Addr::Of(kGateway4, 7778)}) {
    Fd s = SocketIn(*target_, to.family(), SOCK_DGRAM);
    ASSERT_EQ(connect(s.get(), to.sa(), to.len), 0);
    int err = 0;
    // The first datagram may wait for neighbour resolution; resend a few times.
    for (int i = 0; i < 5 && err != ECONNREFUSED; i++) {
      send(s.get(), "x", 1, 0);
      if (!WaitReadable(s.get(), In(1000 * Slowdown()))) continue;
      char b;
      if (recv(s.get(), &b, 1, MSG_DONTWAIT) < 0) err = errno;
    }
    EXPECT_EQ(err, ECONNREFUSED) << to.ToString() << ": " << std::strerror(err);
  }
  ExpectNoChecksumErrors(*target_);
}

// An echo request from the guest's kernel (a ping socket there) to `to`;
// true if the reply came back with the same sequence and data.
bool Ping(const TempNetns& guest, const std::string& to, uint16_t seq, int timeout_ms = 1000) {
  bool v6 = to.find(':') != std::string::npos;
  Fd s;
  RunInNs(guest, [&] {
    std::ofstream("/proc/sys/net/ipv4/ping_group_range") << "0 2147483647\n";
    s.Reset(socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                   v6 ? int{IPPROTO_ICMPV6} : int{IPPROTO_ICMP}));
  });
  if (!s) return false;
  Addr a = Addr::Of(to, 0);
  uint8_t req[64] = {};
  req[0] = v6 ? 128 : 8;
  req[6] = seq >> 8;
  req[7] = seq & 0xff;
  for (int i = 8; i < 64; i++) req[i] = static_cast<uint8_t>(i * 7 + seq);
  if (sendto(s.get(), req, sizeof(req), 0, a.sa(), a.len) != sizeof(req)) return false;
  Deadline d = In(timeout_ms * Slowdown());
  while (WaitReadable(s.get(), d)) {
    uint8_t rep[128];
    ssize_t n = recv(s.get(), rep, sizeof(rep), MSG_DONTWAIT);
    if (n < 0) continue;
    if (n == sizeof(req) && rep[0] == (v6 ? 129 : 0) && rep[6] == req[6] && rep[7] == req[7] &&
        std::memcmp(rep + 8, req + 8, sizeof(req) - 8) == 0)
      return true;
  }
  return false;
}

TEST_F(TapTest, EchoRequestsGoThroughPingSockets) {
  auto d = StartTap();
  ASSERT_TRUE(d);
  for (const char* to : {kOutside4, kOutside6, kGateway4}) {
    int ok = 0;
    for (uint16_t seq = 1; seq <= 5; seq++) ok += Ping(*target_, to, seq);
    EXPECT_GE(ok, 4) << to << ": " << ok << " of 5 echo replies";  // the first may wait for ARP
  }
  ExpectNoChecksumErrors(*target_);
  // Without ping sockets allowed on the host, echo is dropped with a log
  // line naming the sysctl (never changed by us).
  RunInNs(*host_, [] { std::ofstream("/proc/sys/net/ipv4/ping_group_range") << "1 0\n"; });
  EXPECT_FALSE(Ping(*target_, "192.0.2.1", 9, 500));
  EXPECT_EQ(d->Stop(), 0);
  EXPECT_NE(d->Log().find("ping_group_range"), std::string::npos) << d->Log();
}

// Raw frames written into the tap from the guest's side (a packet socket on
// the tap interface): ringfwd reads them as the guest's.
class Injector {
 public:
  explicit Injector(const TempNetns& guest) {
    RunInNs(guest, [&] {
      fd_.Reset(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
      ifindex_ = if_nametoindex("out0");
    });
  }
  bool Send(const Bytes& frame) {
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = ifindex_;
    sll.sll_halen = 6;
    return sendto(fd_.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&sll),
                  sizeof(sll)) == static_cast<ssize_t>(frame.size());
  }
  bool ok() const { return fd_.valid() && ifindex_ > 0; }

 private:
  Fd fd_;
  int ifindex_ = 0;
};

TEST_F(TapTest, BadFramesAreDroppedAndCounted) {
  UdpEchoServer s4(UdpBind(*outside_, Addr::Of(kOutside4, 7777)), "o:");
  auto d = StartTap();
  ASSERT_TRUE(d);
  Injector inj(*target_);
  ASSERT_TRUE(inj.ok());
  Mac ours = {0x02, 0x52, 0x46, 0x57, 0x44, 0x01};
  Mac guest = {0x02, 0, 0, 0, 0, 0x99};
  Bytes good = UdpFrame4(guest, ours, Ip4(kGuest4), Ip4(kOutside4), 4000, 7777, Bytes(100, 'g'));
  struct Bad {
    const char* reason;
    Bytes frame;
  };
  std::vector<Bad> bad;
  bad.push_back({"truncated_eth", Bytes(good.begin(), good.begin() + 13)});
  Bytes unknown = good;
  unknown[12] = 0x88;
  unknown[13] = 0xb5;
  bad.push_back({"unknown_ethertype", unknown});
  Bytes frag = good;
  frag[20] = 0x20;  // more fragments
  frag[24] = frag[25] = 0;
  uint16_t c = InetChecksum(frag.data() + 14, 20);
  frag[24] = c >> 8;
  frag[25] = c & 0xff;
  bad.push_back({"fragment", frag});
  Bytes csum = good;
  csum[24] ^= 0x55;
  bad.push_back({"bad_ip_checksum", csum});
  Bytes longer = good;
  longer[16] = 0x40;  // total length beyond the frame (checksum fixed)
  longer[24] = longer[25] = 0;
  c = InetChecksum(longer.data() + 14, 20);
  longer[24] = c >> 8;
  longer[25] = c & 0xff;
  bad.push_back({"bad_ip_len", longer});
  Bytes trunc_ip(good.begin(), good.begin() + 14 + 12);
  bad.push_back({"truncated_ip", trunc_ip});
  int sent = 0;
  for (int round = 0; round < 20; round++)
    for (const Bad& b : bad) sent += inj.Send(b.frame);
  ASSERT_GT(sent, 0);
  // The link still works after them.
  Fd s = SocketIn(*target_, AF_INET, SOCK_DGRAM);
  Addr from;
  EXPECT_TRUE(UdpExchange(s.get(), Addr::Of(kOutside4, 7777), "still here", "o:still here", &from));
  ExpectNoChecksumErrors(*target_);
  EXPECT_EQ(d->Stop(), 0);
  std::string log = d->Log();
  for (const Bad& b : bad) {
    if (b.frame.size() < 14) continue;  // the kernel may refuse a runt
    EXPECT_NE(log.find(std::string(b.reason) + "=20"), std::string::npos)
        << b.reason << " not counted 20 times:\n"
        << log;
  }
}

}  // namespace
}  // namespace ringfwd::e2e

namespace ringfwd::e2e {
namespace {

TEST_F(TapTest, OptionErrorsAreOneClearLine) {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  } cases[] = {
      {{"--tap"}, "--tap needs --netns"},
      {{"--mtu", "1500"}, "need --tap or --qemu-socket"},
      {{"--netns", target_->name(), "--tap", "--qemu-socket", "/tmp/x.sock"}, "exclusive"},
      {{"--netns", target_->name(), "--tap", "--mtu", "100"}, "--mtu 100"},
      {{"--netns", target_->name(), "--tap", "--address", "198.51.100.2/33"}, "--address"},
      {{"--netns", target_->name(), "--tap", "--mac", "zz:00:00:00:00:01"}, "--mac"},
  };
  for (const Case& c : cases) {
    CmdResult r = RunRingfwd(*host_, c.args);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("ringfwd: "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(c.says), std::string::npos) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  }
  CmdResult help = RunRingfwd(*host_, {"--help"});
  for (const char* opt : {"--tap", "--qemu-socket", "--mtu", "--address", "--gateway", "--dns",
                          "--dns-forward", "--mac", "--no-map-host-loopback"})
    EXPECT_NE(help.output.find(opt), std::string::npos) << opt;
  // The link's configuration is logged at start.
  auto d = StartTap();
  ASSERT_TRUE(d);
  // (written right after the ready line: polled with a deadline)
  bool logged = false;
  for (Deadline dl = In(3000 * Slowdown()); !logged && MsLeft(dl) > 0;) {
    logged = d->Log().find("tap link: tap out0 in namespace") != std::string::npos;
    if (!logged) poll(nullptr, 0, 20);
  }
  EXPECT_TRUE(logged) << d->Log();
}

// --seccomp in tap mode: every system call of the link (tap reads and
// writes, ping sockets, UDP translation in both families, timers) is in the
// filter; a missing one would kill the daemon with SIGSYS on first use.
TEST_F(TapTest, LinkWorksUnderSeccomp) {
  UdpEchoServer s4(UdpBind(*outside_, Addr::Of(kOutside4, 7777)), "o:");
  UdpEchoServer s6(UdpBind(*outside_, Addr::Of(kOutside6, 7777)), "o:");
  // LeakSanitizer's exit check uses ptrace, which the filter refuses: under
  // the sanitizer this daemon runs without it (as in lifecycle_test).
  std::string saved_asan = getenv("ASAN_OPTIONS") ? getenv("ASAN_OPTIONS") : "";
  setenv("ASAN_OPTIONS", (saved_asan + (saved_asan.empty() ? "" : ":") + "detect_leaks=0").c_str(),
         1);
  auto d = StartTap({"--seccomp"});
  saved_asan.empty() ? unsetenv("ASAN_OPTIONS") : setenv("ASAN_OPTIONS", saved_asan.c_str(), 1);
  ASSERT_TRUE(d);
  EXPECT_EQ(StatusField(d->pid(), "Seccomp"), "2") << "the filter is not on";
  ManyFlows(*target_, Addr::Of(kOutside4, 7777), 4, 5, s4);
  ManyFlows(*target_, Addr::Of(kOutside6, 7777), 4, 5, s6);
  int ok = 0;
  for (uint16_t seq = 1; seq <= 5; seq++) ok += Ping(*target_, kOutside4, seq);
  EXPECT_GE(ok, 4) << ok << " of 5 echo replies under seccomp";
  ExpectNoChecksumErrors(*target_);
  EXPECT_TRUE(d->Running()) << d->Log();
  EXPECT_EQ(d->Stop(), 0) << d->Log();
}

}  // namespace
}  // namespace ringfwd::e2e
