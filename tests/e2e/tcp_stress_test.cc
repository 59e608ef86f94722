// TCP under load and abuse: a thousand connections at once, bytes of a
// connection that died mid-transfer never reaching the next one, and no
// descriptor leaks over many connections.
#include <dirent.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"

namespace ringfwd::e2e {
namespace {

int CountFds(pid_t pid) {
  DIR* dir = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (!dir) return -1;
  int n = 0;
  while (dirent* e = readdir(dir))
    if (e->d_name[0] != '.') ++n;
  closedir(dir);
  return n;
}

class TcpStressTest : public E2eTest {
 protected:
  Addr Front() const { return Addr::Of("127.0.0.1", 8080); }
  Addr Back() const { return Addr::Of("127.0.0.1", 80); }
};

// Open 1000 connections, then echo on each, then close them all.
TEST_F(TcpStressTest, ThousandConcurrentConnections) {
  constexpr int kConns = 1000;
  size_t limit = RaiseNofile();
  if (limit < 2 * kConns + 100) GTEST_SKIP() << "RLIMIT_NOFILE hard limit " << limit;
  EchoServer echo(TcpListen(*target_, Back()));
  auto d = StartForwarder({"-t", "8080:80"});
  ASSERT_TRUE(d);
  std::vector<Fd> socks = SocketsIn(*host_, AF_INET, SOCK_STREAM, kConns);
  ASSERT_EQ(socks.size(), static_cast<size_t>(kConns));
  Addr front = Front();
  for (Fd& s : socks) {
    int r = connect(s.get(), front.sa(), front.len);
    ASSERT_TRUE(r == 0 || errno == EINPROGRESS) << std::strerror(errno);
  }
  // Wait until every connect completed.
  Deadline deadline = In(20000 * Slowdown());
  std::vector<bool> connected(kConns, false);
  int n_connected = 0;
  while (n_connected < kConns && Clock::now() < deadline) {
    std::vector<pollfd> pfds;
    std::vector<int> idx;
    for (int i = 0; i < kConns; ++i) {
      if (connected[i]) continue;
      pfds.push_back({socks[i].get(), POLLOUT, 0});
      idx.push_back(i);
    }
    if (poll(pfds.data(), pfds.size(), MsLeft(deadline)) <= 0) continue;
    for (size_t k = 0; k < pfds.size(); ++k) {
      if (!pfds[k].revents) continue;
      int soerr = 0;
      socklen_t len = sizeof(soerr);
      getsockopt(pfds[k].fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
      ASSERT_EQ(soerr, 0) << "connection " << idx[k] << ": " << std::strerror(soerr);
      connected[idx[k]] = true;
      ++n_connected;
    }
  }
  ASSERT_EQ(n_connected, kConns);
  // Every connection sends its own message; every one gets it back.
  auto message = [](int i) { return "connection " + std::to_string(i) + " of many\n"; };
  for (int i = 0; i < kConns; ++i) ASSERT_EQ(SendAll(socks[i].get(), message(i), deadline), 0);
  std::vector<std::string> got(kConns);
  int complete = 0;
  std::vector<bool> done(kConns, false);
  while (complete < kConns && Clock::now() < deadline) {
    std::vector<pollfd> pfds;
    std::vector<int> idx;
    for (int i = 0; i < kConns; ++i) {
      if (done[i]) continue;
      pfds.push_back({socks[i].get(), POLLIN, 0});
      idx.push_back(i);
    }
    if (poll(pfds.data(), pfds.size(), MsLeft(deadline)) <= 0) continue;
    for (size_t k = 0; k < pfds.size(); ++k) {
      if (!pfds[k].revents) continue;
      int i = idx[k];
      char buf[256];
      ssize_t n = recv(pfds[k].fd, buf, sizeof(buf), 0);
      ASSERT_GT(n, 0) << "connection " << i << " ended early: " << std::strerror(errno);
      got[i].append(buf, static_cast<size_t>(n));
      if (got[i].size() >= message(i).size()) {
        EXPECT_EQ(got[i], message(i));
        done[i] = true;
        ++complete;
      }
    }
  }
  EXPECT_EQ(complete, kConns);
  EXPECT_EQ(echo.accepted(), kConns);
  socks.clear();
  // Still serving afterwards.
  int err = 0;
  Fd c = TcpConnect(*host_, front, &err);
  ASSERT_TRUE(c) << std::strerror(err);
  ExchangeResult r = Exchange(c.get(), 3, 1000, true, In(5000 * Slowdown()));
  EXPECT_EQ(r.recv_digest, PatternDigest(3, 1000));
}

// Client to server: the server stops reading, the client fills every buffer
// on the way, then the server resets. The bytes stuck in the forwarder belong
// to the dead connection: the next connections on the port carry exactly
// their own bytes.
TEST_F(TcpStressTest, ResetMidTransferNeverLeaksUpstream) {
  std::atomic<bool> reset_now{false};
  std::mutex mu;
  std::vector<std::string> problems;
  std::atomic<int> good{0};
  TcpServer server(TcpListen(*target_, Back()), [&](Fd conn) {
    Deadline deadline = In(15000 * Slowdown());
    std::string kind;
    if (RecvExact(conn.get(), 1, &kind, deadline) != 0) return;
    if (kind == "A") {
      while (!reset_now && Clock::now() < deadline) usleep(2000);
      linger lg{1, 0};
      setsockopt(conn.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      return;  // closes with RST
    }
    std::string rest;
    int err = RecvToEof(conn.get(), &rest, deadline);
    std::string expect = Pattern(kind[0]).Bytes(0, 200000);
    std::lock_guard<std::mutex> lock(mu);
    if (kind[0] < 'B' || kind[0] > 'Z')
      problems.push_back("connection started with foreign byte " +
                         std::to_string(static_cast<uint8_t>(kind[0])));
    else if (err || rest != expect)
      problems.push_back("connection " + kind + " got " + std::to_string(rest.size()) +
                         " bytes, not its own 200000 (" + std::strerror(err) + ")");
    else
      ++good;
  });
  auto d = StartForwarder({"-t", "8080:80"});
  ASSERT_TRUE(d);
  int expected_good = 0;
  for (int cycle = 0; cycle < 3; ++cycle) {
    reset_now = false;
    int err = 0;
    Fd a = TcpConnect(*host_, Front(), &err);
    ASSERT_TRUE(a) << std::strerror(err);
    ASSERT_EQ(SendAll(a.get(), "A", In(2000)), 0);
    // Push until nothing moves for a while: every buffer on the way is full.
    std::string chunk = Pattern(99).Bytes(0, 1 << 16);
    uint64_t pushed = 0;
    while (pushed < (uint64_t{64} << 20) && SendAll(a.get(), chunk, In(300 * Slowdown())) == 0)
      pushed += chunk.size();
    EXPECT_GT(pushed, uint64_t{1} << 20) << "buffers unexpectedly small";
    reset_now = true;
    std::string junk;
    err = RecvToEof(a.get(), &junk, In(5000 * Slowdown()));
    EXPECT_EQ(err, ECONNRESET) << std::strerror(err) << " junk " << junk.size();
    a.Reset();
    for (char kind = 'B'; kind <= 'D'; ++kind) {
      Fd b = TcpConnect(*host_, Front(), &err);
      ASSERT_TRUE(b) << std::strerror(err);
      std::string data = std::string(1, kind) + Pattern(kind).Bytes(0, 200000);
      ASSERT_EQ(SendAll(b.get(), data, In(5000 * Slowdown())), 0);
      shutdown(b.get(), SHUT_WR);
      std::string back;
      EXPECT_EQ(RecvToEof(b.get(), &back, In(5000 * Slowdown())), 0);
      ++expected_good;
    }
  }
  server.CloseListener();
  for (Deadline dl = In(5000 * Slowdown()); Clock::now() < dl;) {
    std::lock_guard<std::mutex> lock(mu);
    if (good.load() + static_cast<int>(problems.size()) >= expected_good) break;
  }
  std::lock_guard<std::mutex> lock(mu);
  for (const std::string& p : problems) ADD_FAILURE() << p;
  EXPECT_EQ(good.load(), expected_good);
}

// Server to client: the client stops reading while the server floods it,
// then the client resets. The next connections download exactly their own
// bytes.
TEST_F(TcpStressTest, ResetMidTransferNeverLeaksDownstream) {
  std::atomic<bool> stalled{false};
  std::atomic<int> flood_end{-1};
  TcpServer server(TcpListen(*target_, Back()), [&](Fd conn) {
    Deadline deadline = In(15000 * Slowdown());
    std::string kind;
    if (RecvExact(conn.get(), 1, &kind, deadline) != 0) return;
    if (kind == "F") {
      std::string chunk = Pattern(98).Bytes(0, 1 << 16);
      uint64_t pushed = 0;
      while (pushed < (uint64_t{64} << 20) && SendAll(conn.get(), chunk, In(300 * Slowdown())) == 0)
        pushed += chunk.size();
      stalled = true;
      // Wait for the client's reset to arrive (bounded).
      std::string junk;
      flood_end = RecvToEof(conn.get(), &junk, deadline);
      return;
    }
    SendAll(conn.get(), Pattern(kind[0]).Bytes(0, 200000), deadline);
  });
  auto d = StartForwarder({"-t", "8080:80"});
  ASSERT_TRUE(d);
  for (int cycle = 0; cycle < 3; ++cycle) {
    stalled = false;
    flood_end = -1;
    int err = 0;
    Fd f = TcpConnect(*host_, Front(), &err);
    ASSERT_TRUE(f) << std::strerror(err);
    ASSERT_EQ(SendAll(f.get(), "F", In(2000)), 0);
    for (Deadline dl = In(10000 * Slowdown()); !stalled && Clock::now() < dl;) usleep(2000);
    ASSERT_TRUE(stalled.load()) << "the server's flood never stalled";
    linger lg{1, 0};
    setsockopt(f.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    f.Reset();
    for (Deadline dl = In(5000 * Slowdown()); flood_end.load() == -1 && Clock::now() < dl;)
      usleep(2000);
    EXPECT_EQ(flood_end.load(), ECONNRESET) << "the client's reset did not reach the server";
    for (char kind = 'B'; kind <= 'D'; ++kind) {
      Fd c = TcpConnect(*host_, Front(), &err);
      ASSERT_TRUE(c) << std::strerror(err);
      ASSERT_EQ(SendAll(c.get(), std::string(1, kind), In(2000)), 0);
      std::string got;
      EXPECT_EQ(RecvToEof(c.get(), &got, In(5000 * Slowdown())), 0);
      EXPECT_EQ(got.size(), 200000u) << "cycle " << cycle << " connection " << kind;
      EXPECT_TRUE(got == Pattern(kind).Bytes(0, 200000))
          << "cycle " << cycle << " connection " << kind << " got foreign bytes";
    }
  }
}

// Many short connections, some ending in resets: the daemon's descriptor
// count settles instead of growing with every connection.
TEST_F(TcpStressTest, NoDescriptorLeakOverManyConnections) {
  TcpServer server(TcpListen(*target_, Back()), [](Fd conn) {
    std::string req;
    if (RecvExact(conn.get(), 1, &req, In(5000 * Slowdown())) != 0) return;
    if (req == "r") {
      linger lg{1, 0};
      setsockopt(conn.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      return;
    }
    SendAll(conn.get(), std::string(100000, 'x'), In(5000 * Slowdown()));
  });
  auto d = StartForwarder({"-t", "8080:80", "-t", "8081:81"});
  ASSERT_TRUE(d);
  auto batch = [&](int n) {
    for (int i = 0; i < n; ++i) {
      int err = 0;
      // Every fourth connection goes to a port nothing listens on.
      bool dead_port = i % 4 == 3;
      Fd c = TcpConnect(*host_, Addr::Of("127.0.0.1", dead_port ? 8081 : 8080), &err);
      if (dead_port) continue;
      ASSERT_TRUE(c) << std::strerror(err);
      std::string req = i % 4 == 1 ? "r" : "n";
      ASSERT_EQ(SendAll(c.get(), req, In(2000)), 0);
      std::string got;
      err = RecvToEof(c.get(), &got, In(5000 * Slowdown()));
      if (req == "n") {
        ASSERT_EQ(err, 0) << std::strerror(err);
        ASSERT_EQ(got.size(), 100000u);
      }
    }
  };
  batch(100);
  // Flows close asynchronously: take the count once it stops moving.
  auto settled = [&] {
    int last = CountFds(d->pid());
    for (Deadline dl = In(2000 * Slowdown()); Clock::now() < dl;) {
      usleep(100000);
      int now = CountFds(d->pid());
      if (now == last) return now;
      last = now;
    }
    return last;
  };
  int after_first = settled();
  batch(400);
  int after_second = settled();
  // Pools of pre-opened sockets and idle pipes make the count wander by a few
  // dozen; a leak on any path (100 connections each) shows above that.
  EXPECT_LE(after_second, after_first + 64)
      << "descriptors grew from " << after_first << " to " << after_second;
}

}  // namespace
}  // namespace ringfwd::e2e
