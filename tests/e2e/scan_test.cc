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
