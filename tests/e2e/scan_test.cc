// SCAN rules (`auto`): a port is forwarded only while the target side listens
// on it; the daemon rescans about once a second.
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"

namespace ringfwd::e2e {
namespace {

// How long a listener may take to appear or go away: a scan interval (1 s),
// plus margin.
int ScanWaitMs() { return Slowdown() > 1 ? 6000 : 3500; }

class ScanTest : public E2eTest {
 protected:
  // Connects from `ns` to `a`; on success checks the greeting `g` and an echo.
  // Returns 0 or the errno.
  static int Try(const TempNetns& ns, const Addr& a, const std::string& g) {
    int err = 0;
    Fd fd = TcpConnect(ns, a, &err, 1000 * Slowdown());
    if (!fd) return err;
    Deadline deadline = In(2000 * Slowdown());
    std::string got;
    err = RecvExact(fd.get(), g.size(), &got, deadline);
    if (!err && got != g) err = EBADMSG;
    if (!err) err = SendAll(fd.get(), "ping", deadline);
    got.clear();
    if (!err) err = RecvExact(fd.get(), 4, &got, deadline);
    if (!err && got != "ping") err = EBADMSG;
    return err;
  }

  // Polls Try() until it returns 0 (`want_open`) or ECONNREFUSED (not);
  // returns the milliseconds it took, or -1 if it never did.
  static int WaitFor(const TempNetns& ns, const Addr& a, const std::string& g, bool want_open) {
    Clock::time_point t0 = Clock::now();
    Deadline deadline = In(ScanWaitMs());
    for (;;) {
      int err = Try(ns, a, g);
      if (want_open ? err == 0 : err == ECONNREFUSED)
        return static_cast<int>(
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
      if (Clock::now() >= deadline) return -1;
      usleep(50000);
    }
  }
};

TEST_F(ScanTest, ForwardsOnlyWhileTargetListens) {
  auto d = StartForwarder({"-t", "20000-20010,auto"});
  ASSERT_TRUE(d);
  Addr front = Addr::Of("127.0.0.1", 20005);
  EXPECT_EQ(Try(*host_, front, ""), ECONNREFUSED) << "listening before the target does";

  auto server =
      std::make_unique<EchoServer>(TcpListen(*target_, Addr::Of("127.0.0.1", 20005)), "scn");
  int opened = WaitFor(*host_, front, "scn", true);
  EXPECT_GE(opened, 0) << "20005 not forwarded within " << ScanWaitMs() << " ms";
  // Only the port the target listens on.
  EXPECT_EQ(Try(*host_, Addr::Of("127.0.0.1", 20004), ""), ECONNREFUSED);
  EXPECT_EQ(Try(*host_, Addr::Of("127.0.0.1", 20006), ""), ECONNREFUSED);

  server.reset();
  int closed = WaitFor(*host_, front, "", false);
  EXPECT_GE(closed, 0) << "20005 still open " << ScanWaitMs() << " ms after the target closed";

  // And again: a port comes back.
  server = std::make_unique<EchoServer>(TcpListen(*target_, Addr::Of("127.0.0.1", 20005)), "sc2");
  EXPECT_GE(WaitFor(*host_, front, "sc2", true), 0) << "20005 not forwarded again";
}

// A connection made through a scanned port outlives the listener: when the
// target stops listening, the port closes, but the established connection
// keeps working.
TEST_F(ScanTest, EstablishedConnectionSurvivesUnscan) {
  auto d = StartForwarder({"-t", "20000-20010,auto"});
  ASSERT_TRUE(d);
  TcpServer server(TcpListen(*target_, Addr::Of("127.0.0.1", 20002)), [](Fd conn) {
    // Echo until EOF.
    Deadline deadline = In(15000 * Slowdown());
    for (;;) {
      std::string got;
      if (!WaitReadable(conn.get(), deadline)) return;
      int err = RecvExact(conn.get(), 1, &got, deadline);
      if (err || SendAll(conn.get(), got, deadline)) return;
    }
  });
  Addr front = Addr::Of("127.0.0.1", 20002);
  Fd c;
  for (Deadline dl = In(ScanWaitMs()); !c && Clock::now() < dl; usleep(50000)) {
    int err = 0;
    c = TcpConnect(*host_, front, &err, 1000 * Slowdown());
    std::string back;
    if (c && (SendAll(c.get(), "x", In(1000)) != 0 ||
              RecvExact(c.get(), 1, &back, In(2000 * Slowdown())) != 0))
      c.Reset();
  }
  ASSERT_TRUE(c) << "20002 never forwarded";
  server.CloseListener();
  EXPECT_GE(WaitFor(*host_, front, "", false), 0) << "20002 still open";
  std::string back;
  ASSERT_EQ(SendAll(c.get(), "y", In(1000)), 0);
  EXPECT_EQ(RecvExact(c.get(), 1, &back, In(3000 * Slowdown())), 0)
      << "the established connection died with the listener";
  EXPECT_EQ(back, "y");
}

// UDP SCAN: a port is forwarded while the target has a socket bound to it.
TEST_F(ScanTest, UdpScan) {
  auto d = StartForwarder({"-u", "20000-20010,auto"});
  ASSERT_TRUE(d);
  UdpEchoServer server(UdpBind(*target_, Addr::Of("127.0.0.1", 20008)), "u:");
  Fd c = SocketIn(*host_, AF_INET, SOCK_DGRAM);
  Addr to = Addr::Of("127.0.0.1", 20008);
  bool served = false;
  for (Deadline dl = In(ScanWaitMs()); !served && Clock::now() < dl;) {
    ASSERT_GE(sendto(c.get(), "q", 1, 0, to.sa(), to.len), 0);
    char buf[16];
    served = WaitReadable(c.get(), In(200)) && recv(c.get(), buf, sizeof(buf), 0) == 3 &&
             std::string(buf, 3) == "u:q";
  }
  EXPECT_TRUE(served) << "UDP 20008 not forwarded within " << ScanWaitMs() << " ms";
}

// The daemon's own SPLICE listener in the namespace is not "the target
// listening": a HOST SCAN rule over that port leaves it closed on the host.
TEST_F(ScanTest, IgnoresOwnListeners) {
  EchoServer host_server(TcpListen(*host_, Addr::Of("127.0.0.1", 30000)), "hst");
  auto d = StartForwarder({"-t", "20000-20010,auto", "-T", "20005:30000"});
  ASSERT_TRUE(d);
  // The SPLICE rule works...
  EXPECT_GE(WaitFor(*target_, Addr::Of("127.0.0.1", 20005), "hst", true), 0);
  // ...and after two scans the HOST side still has nothing on 20005.
  usleep(2500 * 1000);
  EXPECT_EQ(Try(*host_, Addr::Of("127.0.0.1", 20005), ""), ECONNREFUSED);
}

// A port outside the rule's range is never forwarded, even if the target
// listens on it.
TEST_F(ScanTest, IgnoresPortsOutsideTheRange) {
  EchoServer inside(TcpListen(*target_, Addr::Of("127.0.0.1", 20010)), "in");
  EchoServer outside(TcpListen(*target_, Addr::Of("127.0.0.1", 20011)), "out");
  auto d = StartForwarder({"-t", "20000-20010,auto"});
  ASSERT_TRUE(d);
  EXPECT_GE(WaitFor(*host_, Addr::Of("127.0.0.1", 20010), "in", true), 0);
  EXPECT_EQ(Try(*host_, Addr::Of("127.0.0.1", 20011), ""), ECONNREFUSED);
}

// A target listening on IPv6 only is found too, and reached by an IPv6
// client.
TEST_F(ScanTest, FindsIpv6Listeners) {
  auto d = StartForwarder({"-t", "20000-20010,auto"});
  ASSERT_TRUE(d);
  EchoServer server(TcpListen(*target_, Addr::Of("::1", 20003)), "v6");
  EXPECT_GE(WaitFor(*host_, Addr::Of("::1", 20003), "v6", true), 0);
}

// SPLICE SCAN: -T ...,auto follows what the daemon's side listens on.
TEST_F(ScanTest, SpliceScan) {
  auto d = StartForwarder({"-T", "20000-20010,auto"});
  ASSERT_TRUE(d);
  Addr inner = Addr::Of("127.0.0.1", 20007);
  EXPECT_EQ(Try(*target_, inner, ""), ECONNREFUSED);
  auto server =
      std::make_unique<EchoServer>(TcpListen(*host_, Addr::Of("127.0.0.1", 20007)), "hst");
  EXPECT_GE(WaitFor(*target_, inner, "hst", true), 0);
  server.reset();
  EXPECT_GE(WaitFor(*target_, inner, "", false), 0);
}

}  // namespace
}  // namespace ringfwd::e2e
