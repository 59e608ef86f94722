// Network-side torture: clients and backends that misbehave (reset
// mid-transfer, never read, vanish, refuse, reset at once, never accept).
// Through all of it the daemon stays alive and responsive, its memory stays
// bounded, other flows are unaffected, and no descriptor is left behind.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/load_util.h"
#include "tests/e2e/swap_util.h"

namespace ringfwd::e2e {
namespace {

constexpr int64_t kRssLimitKiB = 64 * 1024;

class TortureTest : public E2eTest {
 protected:
  Addr Front(uint16_t port = 8080) const { return Addr::Of("127.0.0.1", port); }
  Addr Back(uint16_t port = 80) const { return Addr::Of("127.0.0.1", port); }

  // Descriptor count once settled, after one connection through `front` has
  // warmed the pools.
  FdKinds Baseline(const Daemon& d, const Addr& front) {
    EXPECT_EQ(EchoByte(*host_, front), 0);
    SettledFds(d.pid());
    return CountFdKinds(d.pid());
  }

  // No more sockets than at `base` (give or take the namespace socket pool,
  // which holds 32 to 64), once flows have closed.
  void ExpectNoLeak(const Daemon& d, const FdKinds& base) {
    SettledFds(d.pid());
    FdKinds now = CountFdKinds(d.pid());
    EXPECT_LE(now.sockets, base.sockets + 40)
        << "sockets left behind: " << base.ToString() << " -> " << now.ToString();
    EXPECT_LE(now.total(), base.total() + 64)
        << "descriptors left behind: " << base.ToString() << " -> " << now.ToString();
  }
};

// Clients reset in the middle of uploads and of downloads, 16 at a time,
// while steady flows on the same port carry on undisturbed.
TEST_F(TortureTest, ClientsResetMidTransferBothWays) {
  EchoServer echo(TcpListen(*target_, Back()));
  TcpServer transfers(TcpListen(*target_, Back(81)), TransferHandler);
  auto d = StartForwarder({"-t", "8080:80", "-t", "8081:81"});
  ASSERT_TRUE(d);
  const FdKinds base = Baseline(*d, Front());
  SteadyFlows steady(*host_, Front(), 4, 4096, 5);
  ASSERT_TRUE(steady.AdvanceAll(2, 5000)) << steady.error();

  std::atomic<int> problems{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 16; ++i) {
    clients.emplace_back([&, i] {
      bool upload = i % 2 == 0;
      int err = 0;
      Fd c = TcpConnect(*host_, Front(8081), &err);
      if (!c) {
        ++problems;
        ADD_FAILURE() << "connect: " << std::strerror(err);
        return;
      }
      Deadline dl = In(5000 * Slowdown());
      std::string header = TransferHeader(upload ? 'U' : 'D', 7 + i, uint64_t{1} << 30);
      if (SendAll(c.get(), header, dl) != 0) return;
      // Move a few MiB (more than the buffers on the way hold), then reset.
      const size_t want = (2 + i % 4) << 20;
      if (upload) {
        std::string chunk = Pattern(7 + i).Bytes(0, 1 << 16);
        for (size_t sent = 0; sent < want; sent += chunk.size())
          if (SendAll(c.get(), chunk, dl) != 0) break;
      } else {
        std::string got;
        if (RecvExact(c.get(), want, &got, dl) != 0) {
          ++problems;
          ADD_FAILURE() << "download " << i << " stalled before its reset";
        } else if (got != Pattern(7 + i).Bytes(0, want)) {
          ++problems;
          ADD_FAILURE() << "download " << i << " got foreign bytes";
        }
      }
      CloseWithReset(std::move(c));
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(problems.load(), 0);
  EXPECT_TRUE(steady.AdvanceAll(5, 5000)) << steady.error();
  steady.Stop();
  EXPECT_EQ(steady.error(), "");
  ASSERT_TRUE(d->Running());
  // The resets reached the backends: their handlers end, and so do the flows.
  transfers.CloseListener();
  ExpectNoLeak(*d, base);
  EXPECT_EQ(EchoByte(*host_, Front()), 0);
}

// A client that never reads while its backend tries to send 256 MiB: the
// backend is held back after a bounded amount (socket buffers and one pipe),
// the daemon's memory stays bounded, and another client is served normally
// meanwhile.
TEST_F(TortureTest, NonReadingClientGetsBackpressure) {
  constexpr uint64_t kAttempt = uint64_t{256} << 20;
  std::atomic<uint64_t> pushed{0};
  std::atomic<bool> stalled{false};
  std::atomic<bool> release{false};
  std::atomic<int> end_err{-1};
  TcpServer flood(TcpListen(*target_, Back(81)), [&](Fd conn) {
    std::string chunk = Pattern(5).Bytes(0, 1 << 16);
    Deadline dl = In(20000 * Slowdown());
    // Push until nothing moves for 500 ms.
    while (pushed < kAttempt && Clock::now() < dl) {
      if (SendAll(conn.get(), chunk, In(500 * Slowdown())) != 0) break;
      pushed += chunk.size();
    }
    stalled = true;
    while (!release && Clock::now() < dl) usleep(5000);
    // Then see the client's reset (through the daemon) end the connection.
    std::string junk;
    end_err = RecvToEof(conn.get(), &junk, In(5000 * Slowdown()));
  });
  EchoServer echo(TcpListen(*target_, Back()));
  auto d = StartForwarder({"-t", "8080:80", "-t", "8081:81"});
  ASSERT_TRUE(d);
  const FdKinds base = Baseline(*d, Front());
  int err = 0;
  Fd sleeper = TcpConnect(*host_, Front(8081), &err);
  ASSERT_TRUE(sleeper) << std::strerror(err);
  ASSERT_TRUE(WaitUntil([&] { return stalled.load(); }, 15000))
      << "the backend pushed " << pushed.load() << " bytes without ever being held back";
  const uint64_t held = pushed.load();
  const int64_t rss = RssKiB(d->pid());
  std::cout << "backpressure: the backend got " << (held >> 10) << " KiB out of "
            << (kAttempt >> 20) << " MiB before it was held back; daemon VmRSS " << rss << " KiB\n";
  // Here about 12 MiB: the socket buffers on the way (tcp_wmem, tcp_rmem as
  // autotuned) and one 1 MiB pipe; nothing near what was attempted.
  EXPECT_LT(held, uint64_t{48} << 20) << "the daemon buffers on its own";
  if (!SkipMemoryChecks()) {
    EXPECT_LT(rss, kRssLimitKiB);
  }

  // Meanwhile another client gets normal service: an 8 MiB echo.
  Fd other = TcpConnect(*host_, Front(), &err);
  ASSERT_TRUE(other) << std::strerror(err);
  ExchangeResult r = Exchange(other.get(), 11, 8 << 20, true, In(10000 * Slowdown()));
  EXPECT_EQ(r.err, 0) << std::strerror(r.err);
  EXPECT_EQ(r.received, uint64_t{8} << 20);
  EXPECT_EQ(r.recv_digest, PatternDigest(11, 8 << 20));

  // The stalled client reads a little: what it gets is the backend's stream.
  std::string head;
  EXPECT_EQ(RecvExact(sleeper.get(), 4096, &head, In(3000 * Slowdown())), 0);
  EXPECT_TRUE(head == Pattern(5).Bytes(0, 4096)) << "foreign bytes";
  release = true;
  CloseWithReset(std::move(sleeper));
  EXPECT_TRUE(WaitUntil([&] { return end_err.load() != -1; }, 6000));
  EXPECT_EQ(end_err.load(), ECONNRESET) << "the client's reset did not reach the backend";
  ASSERT_TRUE(d->Running());
  ExpectNoLeak(*d, base);
}

// Clients that vanish: 1000 connect-and-close (plain close, reset, or a few
// bytes sent first), as fast as they come. The daemon serves on and keeps no
// descriptor of them.
TEST_F(TortureTest, ThousandClientsConnectAndVanish) {
  EchoServer echo(TcpListen(*target_, Back()));
  auto d = StartForwarder({"-t", "8080:80"});
  ASSERT_TRUE(d);
  const FdKinds base = Baseline(*d, Front());
  SteadyFlows steady(*host_, Front(), 2, 512, 5);
  ASSERT_TRUE(steady.AdvanceAll(2, 5000)) << steady.error();
  int refused = 0;
  RunInNs(*host_, [&] {
    const Addr a = Front();
    for (int i = 0; i < 1000; ++i) {
      Fd c(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (!c) continue;
      int r = connect(c.get(), a.sa(), a.len);
      if (r < 0 && errno != EINPROGRESS) ++refused;
      switch (i % 4) {
        case 0:  // close before the handshake is even done
          break;
        case 1:  // connected, then closed
          ConnectFd(c.get(), a, In(2000 * Slowdown()));
          break;
        case 2:  // sends and vanishes
          if (ConnectFd(c.get(), a, In(2000 * Slowdown())) == 0) {
            ssize_t n = send(c.get(), "hello, then gone", 16, MSG_NOSIGNAL);
            (void)n;
          }
          break;
        case 3:  // sends and resets
          if (ConnectFd(c.get(), a, In(2000 * Slowdown())) == 0) {
            ssize_t n = send(c.get(), "and reset", 9, MSG_NOSIGNAL);
            (void)n;
          }
          CloseWithReset(std::move(c));
          break;
      }
    }
  });
  EXPECT_EQ(refused, 0);
  EXPECT_TRUE(steady.AdvanceAll(3, 5000)) << steady.error();
  steady.Stop();
  EXPECT_EQ(steady.error(), "");
  ASSERT_TRUE(d->Running());
  EXPECT_EQ(EchoByte(*host_, Front()), 0);
  ExpectNoLeak(*d, base);
}

// Backends that refuse (nothing listens), reset right after accept, or never
// accept (a full backlog): their clients are reset or wait; a good port
// keeps working throughout; nothing is left behind once the backends are
// gone.
TEST_F(TortureTest, BadBackends) {
  EchoServer echo(TcpListen(*target_, Back()));
  TcpServer resetter(TcpListen(*target_, Back(82)),
                     [](Fd conn) { CloseWithReset(std::move(conn)); });
  // Never accepts; backlog 0 holds one connection, later SYNs are dropped.
  Fd deaf = TcpListen(*target_, Back(83));
  ASSERT_TRUE(deaf);
  ASSERT_EQ(listen(deaf.get(), 0), 0);
  auto d = StartForwarder({"-t", "8080:80", "-t", "8081:81", "-t", "8082:82", "-t", "8083:83"});
  ASSERT_TRUE(d);
  const FdKinds base = Baseline(*d, Front());
  SteadyFlows steady(*host_, Front(), 2, 512, 5);
  ASSERT_TRUE(steady.AdvanceAll(2, 5000)) << steady.error();

  // Never accepted: connected to the daemon, but nothing comes back.
  std::vector<Fd> waiting;
  for (int i = 0; i < 4; ++i) {
    int err = 0;
    waiting.push_back(TcpConnect(*host_, Front(8083), &err));
    ASSERT_TRUE(waiting.back()) << std::strerror(err);
    ASSERT_EQ(SendAll(waiting.back().get(), "anyone?", In(1000)), 0);
  }
  // Refused and reset-at-once: the client's connection ends, empty.
  for (uint16_t port : {8081, 8082}) {
    for (int i = 0; i < 20; ++i) {
      // The reset may come before the connect is even seen complete.
      Fd c = SocketIn(*host_, AF_INET, SOCK_STREAM);
      ASSERT_TRUE(c);
      std::string got;
      int err = ConnectFd(c.get(), Front(port), In(3000 * Slowdown()));
      if (err == 0) {
        SendAll(c.get(), "x", In(1000));
        err = RecvToEof(c.get(), &got, In(3000 * Slowdown()));
      }
      EXPECT_TRUE(err == ECONNRESET || err == 0) << "port " << port << ": " << std::strerror(err);
      EXPECT_EQ(got, "") << "port " << port;
    }
    EXPECT_EQ(EchoByte(*host_, Front()), 0);
  }
  for (Fd& w : waiting) {
    std::string got;
    EXPECT_EQ(RecvToEof(w.get(), &got, In(100)), ETIMEDOUT) << "a never-accepted client ended";
  }
  EXPECT_TRUE(steady.AdvanceAll(3, 5000)) << steady.error();
  ASSERT_TRUE(d->Running());

  // The deaf backend goes away: the queued connection is reset at once, the
  // dropped SYNs at their next retry (1 s, 3 s); every waiting client ends.
  deaf.Reset();
  for (size_t i = 0; i < waiting.size(); ++i) {
    std::string got;
    int err = RecvToEof(waiting[i].get(), &got, In(8000 * Slowdown()));
    EXPECT_TRUE(err == ECONNRESET || err == 0)
        << "waiting client " << i << ": " << std::strerror(err);
  }
  waiting.clear();
  steady.Stop();
  EXPECT_EQ(steady.error(), "");
  ExpectNoLeak(*d, base);
  EXPECT_EQ(EchoByte(*host_, Front()), 0);
}

}  // namespace
}  // namespace ringfwd::e2e
