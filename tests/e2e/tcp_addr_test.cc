// Which addresses and ports the forwarder listens on and connects to: IPv4,
// IPv6 and dual-stack listeners, port ranges with remapping, target
// addresses, interface-bound listeners, and the SPLICE direction.
#include <sys/socket.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"

namespace ringfwd::e2e {
namespace {

class TcpAddrTest : public E2eTest {
 protected:
  // Connects from `ns` to `a` and reads the server's greeting of `n` bytes,
  // then checks one echo round trip. "" and `*err` set on failure.
  static std::string Greeting(const TempNetns& ns, const Addr& a, size_t n, int* err) {
    Fd fd = TcpConnect(ns, a, err, 3000 * Slowdown());
    if (!fd) return "";
    Deadline deadline = In(3000 * Slowdown());
    std::string greeting;
    *err = RecvExact(fd.get(), n, &greeting, deadline);
    if (*err) return "";
    std::string echo;
    *err = SendAll(fd.get(), "ping", deadline);
    if (!*err) *err = RecvExact(fd.get(), 4, &echo, deadline);
    if (!*err && echo != "ping") *err = EBADMSG;
    return *err ? "" : greeting;
  }

  // The greeting through `a`, failing the test if there is none.
  std::string Via(const TempNetns& ns, const Addr& a, size_t n) {
    int err = 0;
    std::string g = Greeting(ns, a, n, &err);
    EXPECT_EQ(err, 0) << "through " << a.ToString() << " from " << ns.name() << ": "
                      << std::strerror(err);
    return g;
  }

  // The errno of connecting from `ns` to `a` (0 if it connected).
  static int ConnectErr(const TempNetns& ns, const Addr& a) {
    int err = 0;
    Fd fd = TcpConnect(ns, a, &err, 3000 * Slowdown());
    return err;
  }

  // Echo servers in the target namespace on 127.0.0.1:80 and [::1]:80,
  // greeting "v4" and "v6".
  void ServeBothFamilies() {
    v4_ = std::make_unique<EchoServer>(TcpListen(*target_, Addr::Of("127.0.0.1", 80)), "v4");
    v6_ = std::make_unique<EchoServer>(TcpListen(*target_, Addr::Of("::1", 80)), "v6");
  }

  std::unique_ptr<EchoServer> v4_, v6_;
};

// No address: one dual-stack listener; each client reaches the target's
// loopback in its own family.
TEST_F(TcpAddrTest, DualStackListener) {
  ServeBothFamilies();
  auto d = StartForwarder({"-t", "8080:80"});
  ASSERT_TRUE(d);
  EXPECT_EQ(Via(*host_, Addr::Of("127.0.0.1", 8080), 2), "v4");
  EXPECT_EQ(Via(*host_, Addr::Of("::1", 8080), 2), "v6");
}

TEST_F(TcpAddrTest, Ipv4OnlyListener) {
  ServeBothFamilies();
  auto d = StartForwarder({"-t", "127.0.0.1/8080:80"});
  ASSERT_TRUE(d);
  EXPECT_EQ(Via(*host_, Addr::Of("127.0.0.1", 8080), 2), "v4");
  EXPECT_EQ(ConnectErr(*host_, Addr::Of("::1", 8080)), ECONNREFUSED);
}

TEST_F(TcpAddrTest, Ipv6OnlyListener) {
  ServeBothFamilies();
  auto d = StartForwarder({"-t", "::1/8080:80"});
  ASSERT_TRUE(d);
  EXPECT_EQ(Via(*host_, Addr::Of("::1", 8080), 2), "v6");
  EXPECT_EQ(ConnectErr(*host_, Addr::Of("127.0.0.1", 8080)), ECONNREFUSED);
}

// 8000-8002:9000-9002: each port goes to its own target port, and nothing
// around the range listens.
TEST_F(TcpAddrTest, PortRangeRemapped) {
  std::vector<std::unique_ptr<EchoServer>> servers;
  for (uint16_t p = 9000; p <= 9002; ++p)
    servers.push_back(std::make_unique<EchoServer>(TcpListen(*target_, Addr::Of("127.0.0.1", p)),
                                                   std::to_string(p)));
  auto d = StartForwarder({"-t", "8000-8002:9000-9002"});
  ASSERT_TRUE(d);
  for (uint16_t p = 8000; p <= 8002; ++p)
    EXPECT_EQ(Via(*host_, Addr::Of("127.0.0.1", p), 4), std::to_string(p + 1000));
  EXPECT_EQ(ConnectErr(*host_, Addr::Of("127.0.0.1", 7999)), ECONNREFUSED);
  EXPECT_EQ(ConnectErr(*host_, Addr::Of("127.0.0.1", 8003)), ECONNREFUSED);
}

// A comma list with a mix of plain and remapped chunks.
TEST_F(TcpAddrTest, PortListMixedChunks) {
  std::vector<std::unique_ptr<EchoServer>> servers;
  for (uint16_t p : {5000, 6001})
    servers.push_back(std::make_unique<EchoServer>(TcpListen(*target_, Addr::Of("127.0.0.1", p)),
                                                   std::to_string(p)));
  auto d = StartForwarder({"-t", "5000,6000:6001"});
  ASSERT_TRUE(d);
  EXPECT_EQ(Via(*host_, Addr::Of("127.0.0.1", 5000), 4), "5000");
  EXPECT_EQ(Via(*host_, Addr::Of("127.0.0.1", 6000), 4), "6001");
}

// -t 127.0.0.1/8080:198.51.100.1/80 connects to that address, not to
// loopback. (A dual-stack listener with an IPv4 target address is refused by
// the rule validation, see CliTest.DualStackWithIpv4TargetRefused.)
TEST_F(TcpAddrTest, TargetAddress) {
  std::string error;
  ASSERT_TRUE(target_->AddLink("d0", {"198.51.100.1/24"}, &error)) << error;
  EchoServer doc(TcpListen(*target_, Addr::Of("198.51.100.1", 80)), "doc");
  EchoServer lo(TcpListen(*target_, Addr::Of("127.0.0.1", 80)), "lo_");
  auto d = StartForwarder({"-t", "127.0.0.1/8080:198.51.100.1/80"});
  ASSERT_TRUE(d);
  EXPECT_EQ(Via(*host_, Addr::Of("127.0.0.1", 8080), 3), "doc");
  EXPECT_EQ(lo.accepted(), 0);
}

// A target address with the same port: 127.0.0.1/8081:198.51.100.1.
TEST_F(TcpAddrTest, TargetAddressSamePort) {
  std::string error;
  ASSERT_TRUE(target_->AddLink("d0", {"198.51.100.1/24"}, &error)) << error;
  EchoServer doc(TcpListen(*target_, Addr::Of("198.51.100.1", 8081)), "doc");
  auto d = StartForwarder({"-t", "127.0.0.1/8081:198.51.100.1"});
  ASSERT_TRUE(d);
  EXPECT_EQ(Via(*host_, Addr::Of("127.0.0.1", 8081), 3), "doc");
}

// An IPv6 target address.
TEST_F(TcpAddrTest, Ipv6TargetAddress) {
  std::string error;
  ASSERT_TRUE(target_->AddLink("d0", {"2001:db8::5/64"}, &error)) << error;
  EchoServer doc(TcpListen(*target_, Addr::Of("2001:db8::5", 8443)), "doc");
  auto d = StartForwarder({"-t", "::/8443:2001:db8::5"});
  ASSERT_TRUE(d);
  EXPECT_EQ(Via(*host_, Addr::Of("::1", 8443), 3), "doc");
}

// Without --netns the target side is the host itself: -t 8080:80 forwards
// to the host's own port 80.
TEST_F(TcpAddrTest, HostTargetWithoutNetns) {
  EchoServer server(TcpListen(*host_, Addr::Of("127.0.0.1", 80)), "hst");
  auto d = StartDaemon({"-t", "8080:80"});
  ASSERT_TRUE(d);
  EXPECT_EQ(Via(*host_, Addr::Of("127.0.0.1", 8080), 3), "hst");
}

// Listeners bound to an interface accept only what arrives on it. A third
// namespace reaches the host namespace over a veth pair (192.0.2.1 on the
// host's end vh, 192.0.2.2 on the client's); -t %vh/8080:80 serves it but
// not the host's loopback, -t %lo/8081:80 the other way round.
TEST_F(TcpAddrTest, InterfaceBoundListeners) {
  std::string error;
  std::unique_ptr<TempNetns> client = TempNetns::Create(&error);
  ASSERT_TRUE(client) << error;
  ASSERT_TRUE(AddVeth(*host_, "vh", {"192.0.2.1/24"}, *client, "vc", {"192.0.2.2/24"}, &error))
      << error;
  EchoServer server(TcpListen(*target_, Addr::Of("127.0.0.1", 80)), "v4");
  auto d = StartForwarder({"-t", "%vh/8080:80", "-t", "%lo/8081:80"});
  ASSERT_TRUE(d);
  EXPECT_EQ(Via(*client, Addr::Of("192.0.2.1", 8080), 2), "v4");
  EXPECT_EQ(Via(*host_, Addr::Of("127.0.0.1", 8081), 2), "v4");
  EXPECT_NE(ConnectErr(*host_, Addr::Of("127.0.0.1", 8080)), 0);
  EXPECT_NE(ConnectErr(*client, Addr::Of("192.0.2.1", 8081)), 0);
  d.reset();
}

// An address and an interface together: 192.0.2.1%vh/8080.
TEST_F(TcpAddrTest, AddressAndInterface) {
  std::string error;
  std::unique_ptr<TempNetns> client = TempNetns::Create(&error);
  ASSERT_TRUE(client) << error;
  ASSERT_TRUE(AddVeth(*host_, "vh", {"192.0.2.1/24"}, *client, "vc", {"192.0.2.2/24"}, &error))
      << error;
  EchoServer server(TcpListen(*target_, Addr::Of("127.0.0.1", 80)), "v4");
  auto d = StartForwarder({"-t", "192.0.2.1%vh/8080:80"});
  ASSERT_TRUE(d);
  EXPECT_EQ(Via(*client, Addr::Of("192.0.2.1", 8080), 2), "v4");
  EXPECT_NE(ConnectErr(*host_, Addr::Of("127.0.0.1", 8080)), 0);
}

// SPLICE: -T 7000:7001 listens on the target namespace's loopback and
// connects to the daemon namespace's loopback.
TEST_F(TcpAddrTest, SpliceDirection) {
  EchoServer v4(TcpListen(*host_, Addr::Of("127.0.0.1", 7001)), "hst4");
  EchoServer v6(TcpListen(*host_, Addr::Of("::1", 7001)), "hst6");
  auto d = StartForwarder({"-T", "7000:7001"});
  ASSERT_TRUE(d);
  EXPECT_EQ(Via(*target_, Addr::Of("127.0.0.1", 7000), 4), "hst4");
  EXPECT_EQ(Via(*target_, Addr::Of("::1", 7000), 4), "hst6");
  // Nothing listens on the host side for a SPLICE rule.
  EXPECT_EQ(ConnectErr(*host_, Addr::Of("127.0.0.1", 7000)), ECONNREFUSED);
}

// SPLICE listeners are bound to lo: a peer reaching the namespace over
// another interface (a veth from a third namespace) is refused, while a
// client inside the namespace still gets through.
TEST_F(TcpAddrTest, SpliceListenerOnlyOnLoopback) {
  std::string error;
  std::unique_ptr<TempNetns> outside = TempNetns::Create(&error);
  ASSERT_TRUE(outside) << error;
  ASSERT_TRUE(
      AddVeth(*target_, "vt", {"198.51.100.1/24"}, *outside, "vo", {"198.51.100.2/24"}, &error))
      << error;
  EchoServer server(TcpListen(*host_, Addr::Of("127.0.0.1", 7001)), "hst");
  auto d = StartForwarder({"-T", "7000:7001"});
  ASSERT_TRUE(d);
  EXPECT_EQ(Via(*target_, Addr::Of("127.0.0.1", 7000), 3), "hst");
  EXPECT_EQ(ConnectErr(*outside, Addr::Of("198.51.100.1", 7000)), ECONNREFUSED);
  EXPECT_EQ(server.accepted(), 1);
}

// SPLICE bytes intact both ways at 1 MiB.
TEST_F(TcpAddrTest, SpliceTransfer) {
  EchoServer echo(TcpListen(*host_, Addr::Of("127.0.0.1", 7001)));
  auto d = StartForwarder({"-T", "7000:7001"});
  ASSERT_TRUE(d);
  int err = 0;
  Fd c = TcpConnect(*target_, Addr::Of("127.0.0.1", 7000), &err);
  ASSERT_TRUE(c) << std::strerror(err);
  ExchangeResult r = Exchange(c.get(), 9, 1 << 20, true, In(10000 * Slowdown()));
  EXPECT_EQ(r.err, 0) << std::strerror(r.err);
  EXPECT_EQ(r.received, 1u << 20);
  EXPECT_EQ(r.recv_digest, PatternDigest(9, 1 << 20));
}

// HOST and SPLICE rules at once, each in its own direction.
TEST_F(TcpAddrTest, HostAndSpliceTogether) {
  EchoServer in_target(TcpListen(*target_, Addr::Of("127.0.0.1", 80)), "tgt");
  EchoServer in_host(TcpListen(*host_, Addr::Of("127.0.0.1", 7001)), "hst");
  auto d = StartForwarder({"-t", "8080:80", "-T", "7000:7001"});
  ASSERT_TRUE(d);
  EXPECT_EQ(Via(*host_, Addr::Of("127.0.0.1", 8080), 3), "tgt");
  EXPECT_EQ(Via(*target_, Addr::Of("127.0.0.1", 7000), 3), "hst");
}

}  // namespace
}  // namespace ringfwd::e2e
