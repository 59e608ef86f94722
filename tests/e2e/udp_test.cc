// UDP through the forwarder: replies reach the right client and come from
// the right port, flows are per client, idle flows expire.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"

namespace ringfwd::e2e {
namespace {

class UdpTest : public E2eTest {
 protected:
  // `clients` sockets in the host namespace, each on its own thread, send
  // `rounds` datagrams to `to` one at a time; every reply must be the server's
  // tag plus exactly that client's datagram, from `to`.
  void ManyClients(const Addr& to, const std::string& tag, int clients, int rounds) {
    std::vector<Fd> socks = SocketsIn(*host_, to.family(), SOCK_DGRAM, clients);
    ASSERT_EQ(socks.size(), static_cast<size_t>(clients));
    std::atomic<int> good{0};
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&, c] {
        for (int i = 0; i < rounds; ++i) {
          std::string msg = "client " + std::to_string(c) + " datagram " + std::to_string(i) + " " +
                            Pattern(c * 1000 + i).Bytes(0, 50 + 37 * c);
          Addr from;
          std::string reply = UdpRoundTrip(socks[c].get(), to, msg, &from, 3000 * Slowdown());
          EXPECT_EQ(reply, tag + msg) << "client " << c << " datagram " << i;
          EXPECT_EQ(from, to) << "client " << c << " datagram " << i;
          if (reply == tag + msg && from == to) ++good;
        }
      });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(good.load(), clients * rounds);
  }

  static std::set<uint16_t> Ports(const std::vector<Addr>& peers) {
    std::set<uint16_t> ports;
    for (const Addr& a : peers) ports.insert(a.port());
    return ports;
  }
};

TEST_F(UdpTest, EchoFromSeveralClientsIpv4) {
  UdpEchoServer server(UdpBind(*target_, Addr::Of("127.0.0.1", 53)), "s:");
  auto d = StartForwarder({"-u", "5353:53"});
  ASSERT_TRUE(d);
  ManyClients(Addr::Of("127.0.0.1", 5353), "s:", 8, 20);
  // One flow, so one source port on the target side, per client.
  EXPECT_EQ(Ports(server.peers()).size(), 8u);
}

TEST_F(UdpTest, EchoFromSeveralClientsIpv6) {
  UdpEchoServer server(UdpBind(*target_, Addr::Of("::1", 53)), "s6:");
  auto d = StartForwarder({"-u", "5353:53"});
  ASSERT_TRUE(d);
  ManyClients(Addr::Of("::1", 5353), "s6:", 8, 20);
  EXPECT_EQ(Ports(server.peers()).size(), 8u);
}

// A dual-stack UDP listener serves both families, each to the target's
// loopback of the same family.
TEST_F(UdpTest, DualStackListener) {
  UdpEchoServer v4(UdpBind(*target_, Addr::Of("127.0.0.1", 53)), "v4:");
  UdpEchoServer v6(UdpBind(*target_, Addr::Of("::1", 53)), "v6:");
  auto d = StartForwarder({"-u", "5353:53"});
  ASSERT_TRUE(d);
  Fd c4 = SocketIn(*host_, AF_INET, SOCK_DGRAM);
  Fd c6 = SocketIn(*host_, AF_INET6, SOCK_DGRAM);
  Addr from;
  EXPECT_EQ(UdpRoundTrip(c4.get(), Addr::Of("127.0.0.1", 5353), "a", &from), "v4:a");
  EXPECT_EQ(from, Addr::Of("127.0.0.1", 5353));
  EXPECT_EQ(UdpRoundTrip(c6.get(), Addr::Of("::1", 5353), "b", &from), "v6:b");
  EXPECT_EQ(from, Addr::Of("::1", 5353));
}

// Replies on a wildcard listener come from the address the client wrote to
// (IP_PKTINFO), here a second address of the host namespace.
TEST_F(UdpTest, ReplyFromTheAddressWrittenTo) {
  std::string error;
  ASSERT_TRUE(host_->AddLink("d0", {"192.0.2.1/24", "192.0.2.2/24"}, &error)) << error;
  UdpEchoServer server(UdpBind(*target_, Addr::Of("127.0.0.1", 53)), "s:");
  auto d = StartForwarder({"-u", "5353:53"});
  ASSERT_TRUE(d);
  for (const char* ip : {"192.0.2.2", "192.0.2.1", "127.0.0.1"}) {
    Fd c = SocketIn(*host_, AF_INET, SOCK_DGRAM);
    Addr from;
    EXPECT_EQ(UdpRoundTrip(c.get(), Addr::Of(ip, 5353), "x", &from), "s:x") << ip;
    EXPECT_EQ(from, Addr::Of(ip, 5353));
  }
}

// The same for IPv6 (IPV6_RECVPKTINFO): replies come from the address the
// client wrote to.
TEST_F(UdpTest, ReplyFromTheAddressWrittenToIpv6) {
  std::string error;
  ASSERT_TRUE(host_->AddLink("d0", {"2001:db8::1/64", "2001:db8::2/64"}, &error)) << error;
  UdpEchoServer server(UdpBind(*target_, Addr::Of("::1", 53)), "s:");
  auto d = StartForwarder({"-u", "5353:53"});
  ASSERT_TRUE(d);
  for (const char* ip : {"2001:db8::2", "2001:db8::1", "::1"}) {
    Fd c = SocketIn(*host_, AF_INET6, SOCK_DGRAM);
    Addr from;
    EXPECT_EQ(UdpRoundTrip(c.get(), Addr::Of(ip, 5353), "x", &from), "s:x") << ip;
    EXPECT_EQ(from, Addr::Of(ip, 5353));
  }
}

// Nothing listens on the target port at first (the target answers with ICMP
// port unreachable); once a server is there, the same client is served.
TEST_F(UdpTest, BackendAppearsLater) {
  auto d = StartForwarder({"-u", "5353:53"});
  ASSERT_TRUE(d);
  Fd c = SocketIn(*host_, AF_INET, SOCK_DGRAM);
  Addr to = Addr::Of("127.0.0.1", 5353);
  for (int i = 0; i < 3; ++i) ASSERT_GE(sendto(c.get(), "lost", 4, 0, to.sa(), to.len), 0);
  EXPECT_FALSE(WaitReadable(c.get(), In(300))) << "a reply with no server";
  UdpEchoServer server(UdpBind(*target_, Addr::Of("127.0.0.1", 53)), "s:");
  Addr from;
  EXPECT_EQ(UdpRoundTrip(c.get(), to, "found", &from), "s:found");
  EXPECT_TRUE(d->Running());
}

// A backend that answers one request with several datagrams: all reach the
// client, in order.
TEST_F(UdpTest, SeveralRepliesPerRequest) {
  Fd backend = UdpBind(*target_, Addr::Of("127.0.0.1", 53));
  ASSERT_TRUE(backend);
  std::thread replier([&] {
    if (!WaitReadable(backend.get(), In(5000 * Slowdown()))) return;
    char buf[64];
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    if (recvfrom(backend.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&ss), &len) < 0)
      return;
    for (int i = 0; i < 10; ++i) {
      std::string r = "reply " + std::to_string(i);
      sendto(backend.get(), r.data(), r.size(), 0, reinterpret_cast<sockaddr*>(&ss), len);
    }
  });
  auto d = StartForwarder({"-u", "5353:53"});
  ASSERT_TRUE(d);
  Fd c = SocketIn(*host_, AF_INET, SOCK_DGRAM);
  Addr to = Addr::Of("127.0.0.1", 5353);
  Addr from;
  EXPECT_EQ(UdpRoundTrip(c.get(), to, "go", &from), "reply 0");
  for (int i = 1; i < 10; ++i) {
    ASSERT_TRUE(WaitReadable(c.get(), In(3000 * Slowdown()))) << "reply " << i << " missing";
    char buf[64];
    ssize_t n = recv(c.get(), buf, sizeof(buf), 0);
    ASSERT_GT(n, 0);
    EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "reply " + std::to_string(i));
  }
  replier.join();
}

// An interface-bound UDP listener (%vh) serves what arrives on that
// interface only.
TEST_F(UdpTest, InterfaceBoundListener) {
  std::string error;
  std::unique_ptr<TempNetns> client = TempNetns::Create(&error);
  ASSERT_TRUE(client) << error;
  ASSERT_TRUE(AddVeth(*host_, "vh", {"192.0.2.1/24"}, *client, "vc", {"192.0.2.2/24"}, &error))
      << error;
  UdpEchoServer server(UdpBind(*target_, Addr::Of("127.0.0.1", 53)), "s:");
  auto d = StartForwarder({"-u", "%vh/5353:53"});
  ASSERT_TRUE(d);
  Fd outside = SocketIn(*client, AF_INET, SOCK_DGRAM);
  Addr from;
  EXPECT_EQ(UdpRoundTrip(outside.get(), Addr::Of("192.0.2.1", 5353), "in", &from), "s:in");
  EXPECT_EQ(from, Addr::Of("192.0.2.1", 5353));
  Fd local = SocketIn(*host_, AF_INET, SOCK_DGRAM);
  Addr lo = Addr::Of("127.0.0.1", 5353);
  ASSERT_GE(sendto(local.get(), "no", 2, 0, lo.sa(), lo.len), 0);
  EXPECT_FALSE(WaitReadable(local.get(), In(300))) << "served on lo";
  EXPECT_EQ(server.peers().size(), 1u);
}

// One client socket talks to two forwarded ports; each reply comes from the
// port its request went to, with that port's server's tag, also when the two
// requests are in flight at once.
TEST_F(UdpTest, OneClientTwoPorts) {
  UdpEchoServer a(UdpBind(*target_, Addr::Of("127.0.0.1", 6000)), "A:");
  UdpEchoServer b(UdpBind(*target_, Addr::Of("127.0.0.1", 6001)), "B:");
  auto d = StartForwarder({"-u", "5000-5001:6000-6001"});
  ASSERT_TRUE(d);
  Fd c = SocketIn(*host_, AF_INET, SOCK_DGRAM);
  Addr pa = Addr::Of("127.0.0.1", 5000), pb = Addr::Of("127.0.0.1", 5001);
  for (int i = 0; i < 5; ++i) {
    Addr from;
    std::string m = "m" + std::to_string(i);
    EXPECT_EQ(UdpRoundTrip(c.get(), pa, m, &from), "A:" + m);
    EXPECT_EQ(from, pa);
    EXPECT_EQ(UdpRoundTrip(c.get(), pb, m, &from), "B:" + m);
    EXPECT_EQ(from, pb);
  }
  // Both in flight.
  ASSERT_GE(sendto(c.get(), "x", 1, 0, pa.sa(), pa.len), 0);
  ASSERT_GE(sendto(c.get(), "y", 1, 0, pb.sa(), pb.len), 0);
  std::set<std::string> got;
  Deadline deadline = In(3000 * Slowdown());
  while (got.size() < 2 && WaitReadable(c.get(), deadline)) {
    char buf[64];
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    ssize_t n = recvfrom(c.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&ss), &len);
    if (n < 0) continue;
    Addr from = Addr::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    got.insert(std::to_string(from.port()) + "=" + std::string(buf, static_cast<size_t>(n)));
  }
  EXPECT_EQ(got, (std::set<std::string>{"5000=A:x", "5001=B:y"}));
}

// Datagram boundaries survive, from 1 byte to the largest IPv4 datagram.
TEST_F(UdpTest, DatagramSizes) {
  UdpEchoServer server(UdpBind(*target_, Addr::Of("127.0.0.1", 53)), "");
  auto d = StartForwarder({"-u", "5353:53"});
  ASSERT_TRUE(d);
  Fd c = SocketIn(*host_, AF_INET, SOCK_DGRAM);
  for (size_t size : {1, 1400, 1500, 9000, 60000, 65507}) {
    std::string msg = Pattern(size).Bytes(0, size);
    Addr from;
    EXPECT_EQ(DigestOf(UdpRoundTrip(c.get(), Addr::Of("127.0.0.1", 5353), msg, &from)),
              DigestOf(msg))
        << size << " bytes";
  }
}

// With --udp-timeout 1, a flow idle for 3 s is gone: the backend sees a new
// source port for the same client, and replies still reach it. Traffic
// within the timeout keeps the same flow.
TEST_F(UdpTest, IdleFlowsExpire) {
  UdpEchoServer server(UdpBind(*target_, Addr::Of("127.0.0.1", 53)), "s:");
  auto d = StartForwarder({"--udp-timeout", "1", "-u", "5353:53"});
  ASSERT_TRUE(d);
  Fd c = SocketIn(*host_, AF_INET, SOCK_DGRAM);
  Addr to = Addr::Of("127.0.0.1", 5353);
  Addr from;
  EXPECT_EQ(UdpRoundTrip(c.get(), to, "1", &from), "s:1");
  EXPECT_EQ(UdpRoundTrip(c.get(), to, "2", &from), "s:2");
  std::vector<Addr> peers = server.peers();
  ASSERT_EQ(peers.size(), 2u);
  EXPECT_EQ(peers[0].port(), peers[1].port()) << "a busy flow must keep its socket";
  // Idleness is the point here: wait past the timeout (and a tick or two).
  sleep(3);
  EXPECT_EQ(UdpRoundTrip(c.get(), to, "3", &from), "s:3");
  EXPECT_EQ(from, to);
  peers = server.peers();
  ASSERT_EQ(peers.size(), 3u);
  EXPECT_NE(peers[2].port(), peers[0].port()) << "the idle flow was not expired";
}

// SPLICE UDP: -U 7000:7001 from the target namespace to the daemon's side.
TEST_F(UdpTest, SpliceDirection) {
  UdpEchoServer server(UdpBind(*host_, Addr::Of("127.0.0.1", 7001)), "h:");
  auto d = StartForwarder({"-U", "7000:7001"});
  ASSERT_TRUE(d);
  Fd c = SocketIn(*target_, AF_INET, SOCK_DGRAM);
  Addr from;
  EXPECT_EQ(UdpRoundTrip(c.get(), Addr::Of("127.0.0.1", 7000), "hi", &from), "h:hi");
  EXPECT_EQ(from, Addr::Of("127.0.0.1", 7000));
}

// Without --netns the target side is the host itself.
TEST_F(UdpTest, HostTargetWithoutNetns) {
  UdpEchoServer server(UdpBind(*host_, Addr::Of("127.0.0.1", 53)), "h:");
  auto d = StartDaemon({"-u", "5353:53"});
  ASSERT_TRUE(d);
  Fd c = SocketIn(*host_, AF_INET, SOCK_DGRAM);
  Addr from;
  EXPECT_EQ(UdpRoundTrip(c.get(), Addr::Of("127.0.0.1", 5353), "x", &from), "h:x");
  EXPECT_EQ(from, Addr::Of("127.0.0.1", 5353));
}

// More clients than --max-udp-flows: the least recently used flows are
// evicted, and every client still gets its replies.
TEST_F(UdpTest, FlowCapEvictsButServes) {
  UdpEchoServer server(UdpBind(*target_, Addr::Of("127.0.0.1", 53)), "s:");
  auto d = StartForwarder({"--max-udp-flows", "4", "-u", "5353:53"});
  ASSERT_TRUE(d);
  std::vector<Fd> socks = SocketsIn(*host_, AF_INET, SOCK_DGRAM, 10);
  Addr to = Addr::Of("127.0.0.1", 5353);
  for (int round = 0; round < 3; ++round) {
    for (size_t i = 0; i < socks.size(); ++i) {
      std::string msg = std::to_string(round) + "/" + std::to_string(i);
      Addr from;
      EXPECT_EQ(UdpRoundTrip(socks[i].get(), to, msg, &from), "s:" + msg);
    }
  }
  EXPECT_TRUE(d->Running());
}

}  // namespace
}  // namespace ringfwd::e2e
