// The link services and the frame builders against a real kernel: a tap
// device in a fresh network namespace plays the guest. Its kernel asks ARP
// and NDP questions that LinkServices answers, takes our router
// advertisement (SLAAC address, default route, MTU), and accepts UDP frames
// we build (checksums), with no checksum errors in its counters.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fwd/link_services.h"
#include "fwd/packet.h"
#include "gtest/gtest.h"
#include "tests/fwd/frame_test_util.h"
#include "uring/fd.h"

namespace ringfwd {
namespace {

// Removes the files a test made in TempDir() when it ends, however it ends.
struct RemoveFiles {
  std::vector<std::string> paths;
  ~RemoveFiles() {
    for (const std::string& p : paths) std::remove(p.c_str());
  }
};

using testing::Bytes;
using testing::kGuestMac;

constexpr char kTap[] = "rftap0";

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteProc(const std::string& path, const char* value) {
  std::ofstream out(path);
  out << value;
  out.close();
  ASSERT_TRUE(out.good()) << path;
}

// Writes committed frames straight to the tap (the kernel receives them).
class TapSink : public FrameSink {
 public:
  explicit TapSink(int fd) : fd_(fd) {}
  std::span<uint8_t> Reserve(size_t max_len) override {
    buf_.resize(max_len);
    return std::span<uint8_t>(buf_);
  }
  void Commit(size_t len) override {
    if (len == 0) return;
    EXPECT_EQ(write(fd_, buf_.data(), len), static_cast<ssize_t>(len)) << std::strerror(errno);
    sent++;
  }
  int sent = 0;

 private:
  int fd_;
  Bytes buf_;
};

class KernelGuest {
 public:
  // Creates the tap with the guest's MAC, IPv4 address and IPv6 settings.
  // Returns a reason to skip, or "".
  std::string Setup() {
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return std::string("/dev/net/tun: ") + std::strerror(errno);
    tap_.Reset(fd);
    ifreq ifr{};
    std::strcpy(ifr.ifr_name, kTap);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (ioctl(tap_.get(), TUNSETIFF, &ifr) < 0)
      return std::string("TUNSETIFF: ") + std::strerror(errno);
    Fd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifr = {};
    std::strcpy(ifr.ifr_name, kTap);
    ifr.ifr_hwaddr.sa_family = 1;  // ARPHRD_ETHER
    std::memcpy(ifr.ifr_hwaddr.sa_data, kGuestMac.data(), 6);
    EXPECT_EQ(ioctl(s.get(), SIOCSIFHWADDR, &ifr), 0) << std::strerror(errno);
    ifr = {};
    std::strcpy(ifr.ifr_name, kTap);
    ifr.ifr_mtu = 65520;
    EXPECT_EQ(ioctl(s.get(), SIOCSIFMTU, &ifr), 0) << std::strerror(errno);
    std::string conf = std::string("/proc/sys/net/ipv6/conf/") + kTap + "/";
    WriteProc(conf + "accept_dad", "0");
    WriteProc(conf + "accept_ra", "1");
    WriteProc(conf + "router_solicitations", "0");  // our Tick sends the RA
    ifr = {};
    std::strcpy(ifr.ifr_name, kTap);
    auto* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
    sin->sin_family = AF_INET;
    sin->sin_addr = testing::V4("192.0.2.10");
    EXPECT_EQ(ioctl(s.get(), SIOCSIFADDR, &ifr), 0) << std::strerror(errno);
    sin->sin_addr = testing::V4("255.255.255.0");
    EXPECT_EQ(ioctl(s.get(), SIOCSIFNETMASK, &ifr), 0) << std::strerror(errno);
    ifr = {};
    std::strcpy(ifr.ifr_name, kTap);
    EXPECT_EQ(ioctl(s.get(), SIOCGIFFLAGS, &ifr), 0);
    ifr.ifr_flags |= IFF_UP;
    EXPECT_EQ(ioctl(s.get(), SIOCSIFFLAGS, &ifr), 0) << std::strerror(errno);
    sink_ = std::make_unique<TapSink>(tap_.get());
    return "";
  }

  // Reads what the kernel sent for up to `ms` (or until `done`), offering
  // each frame to the link services; frames they do not take are kept.
  template <typename Done>
  void Pump(int ms, Done done) {
    int64_t deadline = NowNs() + int64_t{ms} * 1'000'000;
    Bytes buf(70000);
    while (!done() && NowNs() < deadline) {
      pollfd p{tap_.get(), POLLIN, 0};
      poll(&p, 1, 20);
      for (;;) {
        ssize_t n = read(tap_.get(), buf.data(), buf.size());
        if (n <= 0) break;
        Bytes f(buf.begin(), buf.begin() + n);
        FrameView v = ParseFrame(f);
        if (v.ok() && services_.Handle(v, f, *sink_)) continue;
        others.push_back(std::move(f));
      }
    }
  }

  LinkConfig config = testing::TestConfig();
  LinkState state;
  LinkServices services_{config, state};
  Fd tap_;
  std::unique_ptr<TapSink> sink_;
  std::vector<Bytes> others;  // frames that were not link services
};

template <typename Body>
std::string InFreshNetns(Body body) {
  std::string skip;
  std::thread t([&] {
    if (unshare(CLONE_NEWNET) != 0) {
      skip = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
      return;
    }
    skip = body();
  });
  t.join();
  return skip;
}

// The value of counter `name` in the /proc/net/snmp-style table `proto`.
long SnmpCounter(const std::string& text, const std::string& proto, const std::string& name) {
  std::istringstream in(text);
  std::string header, values;
  while (std::getline(in, header) && std::getline(in, values)) {
    if (header.rfind(proto + ":", 0) != 0) continue;
    std::istringstream h(header), v(values);
    std::string key, val;
    while (h >> key && v >> val)
      if (key == name) return std::stol(val);
  }
  return -1;
}

// True if /proc/net/if_inet6 lists the address (32 hex digits) and it is
// not tentative.
bool AddrReady(const std::string& hex) {
  std::istringstream in(ReadText("/proc/thread-self/net/if_inet6"));
  std::string addr, ifindex, plen, scope, flags, name;
  while (in >> addr >> ifindex >> plen >> scope >> flags >> name)
    if (addr == hex) return (std::stoul(flags, nullptr, 16) & 0x40) == 0;  // IFA_F_TENTATIVE
  return false;
}

long Snmp6Counter(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string key;
  long val;
  while (in >> key >> val)
    if (key == name) return val;
  return -1;
}

TEST(LinkKernel, AGuestKernelGetsArpNdpAndRouterAdvertisementAnswersAndAcceptsOurFrames) {
  std::string skip = InFreshNetns([]() -> std::string {
    KernelGuest g;
    std::string why = g.Setup();
    if (!why.empty()) return why;

    // ARP: the kernel resolves the gateway before sending a datagram there.
    Fd u(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in gw{AF_INET, htons(9), testing::V4("192.0.2.1"), {}};
    EXPECT_EQ(sendto(u.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&gw), sizeof(gw)), 1);
    auto udp_to_us = [&] {
      for (const Bytes& f : g.others) {
        FrameView v = ParseFrame(f);
        if (v.ok() && v.l4_proto == IPPROTO_UDP && v.dport == 9) return true;
      }
      return false;
    };
    g.Pump(3000, udp_to_us);
    EXPECT_TRUE(udp_to_us()) << "the datagram came to our MAC after our ARP reply";
    EXPECT_EQ(g.services_.counters().arp_replies, 1u);
    EXPECT_TRUE(g.state.guest_mac_known);
    std::string arp = ReadText("/proc/thread-self/net/arp");
    EXPECT_NE(arp.find("192.0.2.1 "), std::string::npos) << arp;
    EXPECT_NE(arp.find("02:52:46:57:44:01"), std::string::npos) << arp;

    // Router advertisement: SLAAC address in our /64, default route via
    // fe80::1, the link's IPv6 MTU.
    g.services_.Tick(NowNs(), *g.sink_);
    // (Addresses stay tentative until the kernel's link watch saw the
    // carrier, even without DAD: wait for both to be usable.)
    auto slaac = [&] {
      return AddrReady("20010db800010000505400fffe123456") &&
             AddrReady("fe80000000000000505400fffe123456");
    };
    g.Pump(3000, slaac);
    EXPECT_TRUE(slaac()) << ReadText("/proc/thread-self/net/if_inet6");
    EXPECT_NE(ReadText("/proc/thread-self/net/ipv6_route").find("fe800000000000000000000000000001"),
              std::string::npos)
        << "default route via fe80::1";
    EXPECT_EQ(ReadText(std::string("/proc/sys/net/ipv6/conf/") + kTap + "/mtu"), "65520\n");

    // NDP: a datagram to another address of the on-link prefix needs our
    // NA (the gateway's MAC came with the RA).
    Fd u6(socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 gw6{};
    gw6.sin6_family = AF_INET6;
    gw6.sin6_port = htons(10);
    gw6.sin6_addr = testing::V6("2001:db8:1::99");
    EXPECT_EQ(sendto(u6.get(), "y", 1, 0, reinterpret_cast<sockaddr*>(&gw6), sizeof(gw6)), 1)
        << std::strerror(errno);
    auto udp6_to_us = [&] {
      for (const Bytes& f : g.others) {
        FrameView v = ParseFrame(f);
        if (v.ok() && v.l4_proto == IPPROTO_UDP && v.dport == 10)
          return v.eth_dst == g.config.our_mac;
      }
      return false;
    };
    g.Pump(3000, udp6_to_us);
    EXPECT_TRUE(udp6_to_us());
    EXPECT_GE(g.services_.counters().na_sent, 1u);

    // Frames we build are accepted: UDP to a bound socket, both families.
    Fd r4(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in b4{AF_INET, htons(7001), testing::V4("192.0.2.10"), {}};
    EXPECT_EQ(bind(r4.get(), reinterpret_cast<sockaddr*>(&b4), sizeof(b4)), 0);
    Fd r6(socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in6 b6{};
    b6.sin6_family = AF_INET6;
    b6.sin6_port = htons(7002);
    EXPECT_EQ(bind(r6.get(), reinterpret_cast<sockaddr*>(&b6), sizeof(b6)), 0);
    // The SLAAC address from the RA's prefix and the tap's MAC (EUI-64).
    const char* slaac_addr = "2001:db8:1::5054:ff:fe12:3456";
    Bytes payload(3000);
    for (size_t i = 0; i < payload.size(); i++) payload[i] = static_cast<uint8_t>(i * 13 + 1);
    Bytes frame(kMaxFrameLen);
    FrameAddrs a4{g.config.our_mac, kGuestMac, *Addr6::Parse("203.0.113.5"),
                  *Addr6::Parse("192.0.2.10")};
    size_t n = BuildUdpFrame(frame, a4, 5000, 7001, payload);
    EXPECT_EQ(write(g.tap_.get(), frame.data(), n), static_cast<ssize_t>(n));
    FrameAddrs a6{g.config.our_mac, kGuestMac, *Addr6::Parse("2001:db8:2::5"),
                  *Addr6::Parse(slaac_addr)};
    n = BuildUdpFrame(frame, a6, 5000, 7002, payload);
    EXPECT_EQ(write(g.tap_.get(), frame.data(), n), static_cast<ssize_t>(n));
    Bytes got(4000);
    for (int fd : {r4.get(), r6.get()}) {
      pollfd p{fd, POLLIN, 0};
      EXPECT_EQ(poll(&p, 1, 3000), 1);
      ssize_t m = recv(fd, got.data(), got.size(), 0);
      EXPECT_EQ(m, static_cast<ssize_t>(payload.size()));
      EXPECT_TRUE(std::equal(payload.begin(), payload.end(), got.begin()));
    }

    // The guest saw no checksum errors (the nstat counters of the namespace).
    std::string snmp = ReadText("/proc/thread-self/net/snmp");
    std::string snmp6 = ReadText("/proc/thread-self/net/snmp6");
    EXPECT_EQ(SnmpCounter(snmp, "Udp", "InCsumErrors"), 0);
    EXPECT_EQ(SnmpCounter(snmp, "Icmp", "InCsumErrors"), 0);
    EXPECT_EQ(SnmpCounter(snmp, "Ip", "InHdrErrors"), 0);
    EXPECT_EQ(Snmp6Counter(snmp6, "Udp6InCsumErrors"), 0);
    EXPECT_EQ(Snmp6Counter(snmp6, "Icmp6InCsumErrors"), 0);
    EXPECT_EQ(Snmp6Counter(snmp6, "Icmp6InErrors"), 0);
    EXPECT_GE(Snmp6Counter(snmp6, "Icmp6InRouterAdvertisements"), 1);
    EXPECT_GE(Snmp6Counter(snmp6, "Icmp6InNeighborAdvertisements"), 1);
    return "";
  });
  if (!skip.empty()) GTEST_SKIP() << skip;
}

// A real DHCP client (busybox udhcpc, when installed) on the guest's side
// gets the lease and every option from LinkServices.
TEST(LinkKernel, BusyboxUdhcpcGetsTheLeaseAndOptions) {
  const char* busybox = "/usr/bin/busybox";
  if (access(busybox, X_OK) != 0) GTEST_SKIP() << "busybox (udhcpc) is not installed";
  std::string dir = ::testing::TempDir();
  std::string out = dir + "udhcpc_env";
  std::string script = dir + "udhcpc_script.sh";
  std::remove((out + ".bound").c_str());
  RemoveFiles cleanup{{script, out + ".bound", out + ".deconfig", out + ".leasefail"}};
  {
    std::ofstream s(script);
    s << "#!/bin/sh\nenv > " << out << ".$1\n";
  }
  ASSERT_EQ(chmod(script.c_str(), 0755), 0);
  int status = -1;
  std::string skip = InFreshNetns([&]() -> std::string {
    KernelGuest g;
    std::string why = g.Setup();
    if (!why.empty()) return why;
    const char* argv[] = {busybox,        "udhcpc", "-f",     "-q", "-n",  "-i",
                          kTap,           "-t",     "5",      "-T", "1",   "-s",
                          script.c_str(), "-O",     "search", "-O", "mtu", nullptr};
    pid_t pid;
    EXPECT_EQ(posix_spawn(&pid, busybox, nullptr, nullptr, const_cast<char**>(argv), environ), 0);
    bool exited = false;
    g.Pump(10000, [&] {
      exited = waitpid(pid, &status, WNOHANG) == pid;
      return exited;
    });
    if (!exited) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
    EXPECT_TRUE(exited) << "udhcpc did not finish in 10 s";
    EXPECT_GE(g.services_.counters().dhcp_offers, 1u);
    EXPECT_GE(g.services_.counters().dhcp_acks, 1u);
    return "";
  });
  if (!skip.empty()) GTEST_SKIP() << skip;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "udhcpc status " << status;
  std::map<std::string, std::string> env;
  std::istringstream in(ReadText(out + ".bound"));
  for (std::string line; std::getline(in, line);) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  EXPECT_EQ(env["ip"], "192.0.2.10");
  EXPECT_EQ(env["subnet"], "255.255.255.0");
  EXPECT_EQ(env["router"], "192.0.2.1");
  EXPECT_EQ(env["serverid"], "192.0.2.1");
  EXPECT_EQ(env["dns"], "198.51.100.53");
  EXPECT_EQ(env["mtu"], "65520");
  EXPECT_EQ(env["lease"], "3600");
  EXPECT_EQ(env["search"], "example.org lab.example.net");
}

// A real DHCPv6 client (ISC dhclient -6, when installed) gets the guest's
// address, resolvers and search list: SOLICIT, ADVERTISE, REQUEST, REPLY.
TEST(LinkKernel, DhclientGetsTheIpv6AddressAndResolvers) {
  const char* dhclient = "/sbin/dhclient";
  if (access(dhclient, X_OK) != 0) GTEST_SKIP() << "dhclient (isc-dhcp-client) is not installed";
  std::string dir = ::testing::TempDir();
  std::string out = dir + "dhclient6_env";
  std::string script = dir + "dhclient6_script.sh";
  std::string leases = dir + "dhclient6.leases";
  std::string pidfile = dir + "dhclient6.pid";
  std::remove((out + ".BOUND6").c_str());
  RemoveFiles cleanup{{script, leases, pidfile, out + ".PREINIT6", out + ".BOUND6", out + ".STOP6",
                       out + ".RELEASE6", out + ".EXPIRE6", out + ".FAIL6"}};
  std::remove(leases.c_str());
  {
    std::ofstream s(script);
    s << "#!/bin/sh\nenv > " << out << ".$reason\n";
  }
  ASSERT_EQ(chmod(script.c_str(), 0755), 0);
  int status = -1;
  std::string skip = InFreshNetns([&]() -> std::string {
    KernelGuest g;
    std::string why = g.Setup();
    if (!why.empty()) return why;
    // dhclient binds to the link-local address: wait until it is usable.
    g.Pump(3000, [] { return AddrReady("fe80000000000000505400fffe123456"); });
    EXPECT_TRUE(AddrReady("fe80000000000000505400fffe123456"));
    // In the foreground (-d), one try (-1); bound once the script ran with
    // BOUND6, then stopped by us.
    const char* argv[] = {dhclient, "-6",           "-d",  "-1",
                          "-lf",    leases.c_str(), "-pf", pidfile.c_str(),
                          "-sf",    script.c_str(), kTap,  nullptr};
    pid_t pid;
    EXPECT_EQ(posix_spawn(&pid, dhclient, nullptr, nullptr, const_cast<char**>(argv), environ), 0);
    bool exited = false;
    auto bound = [&] { return access((out + ".BOUND6").c_str(), R_OK) == 0; };
    g.Pump(15000, [&] {
      exited = waitpid(pid, &status, WNOHANG) == pid;
      return exited || bound();
    });
    EXPECT_FALSE(exited) << "dhclient gave up, status " << status;
    EXPECT_TRUE(bound()) << "dhclient did not get a lease in 15 s";
    if (!exited) {
      kill(pid, SIGTERM);
      g.Pump(3000, [&] { return waitpid(pid, &status, WNOHANG) == pid; });
      if (kill(pid, 0) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
      }
    }
    EXPECT_GE(g.services_.counters().dhcpv6_advertise, 1u);
    EXPECT_GE(g.services_.counters().dhcpv6_replies, 1u);
    return "";
  });
  if (!skip.empty()) GTEST_SKIP() << skip;
  std::map<std::string, std::string> env;
  std::istringstream in(ReadText(out + ".BOUND6"));
  for (std::string line; std::getline(in, line);) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  EXPECT_EQ(env["new_ip6_address"], "2001:db8:1::10");
  EXPECT_EQ(env["new_max_life"], "3600");
  EXPECT_EQ(env["new_preferred_life"], "3600");
  EXPECT_EQ(env["new_dhcp6_name_servers"], "2001:db8:53::1");
  EXPECT_NE(env["new_dhcp6_domain_search"].find("example.org"), std::string::npos);
  EXPECT_NE(env["new_dhcp6_domain_search"].find("lab.example.net"), std::string::npos);
  EXPECT_EQ(env["new_dhcp6_server_id"], "0:3:0:1:2:52:46:57:44:1");
}

}  // namespace
}  // namespace ringfwd
