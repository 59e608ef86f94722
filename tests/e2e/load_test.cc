// Load end-to-end tests: thousands of connections held open at once (with
// the daemon's descriptors and memory per connection printed for README), a
// connection flood past the daemon's descriptor limit, and connection churn
// through table swaps with descriptors and memory coming back afterwards.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/load_util.h"
#include "tests/e2e/swap_util.h"

namespace ringfwd::e2e {
namespace {

constexpr int64_t kRssLimitKiB = 64 * 1024;

class LoadTest : public E2eTest {
 protected:
  Addr Front(uint16_t port = 8080) const { return Addr::Of("127.0.0.1", port); }
  Addr Back(uint16_t port = 80) const { return Addr::Of("127.0.0.1", port); }
};

std::string Describe(const ConnectStorm::Stats& s) {
  std::string out = "ok " + std::to_string(s.ok) + ", refused " + std::to_string(s.refused) +
                    ", reset " + std::to_string(s.reset) + ", failed " + std::to_string(s.failed);
  for (const std::string& f : s.samples) out += "\n  " + f;
  return out;
}

// 5000 connections open at once through a daemon with default options, then
// every one echoes its own message. Prints the daemon's descriptors and
// resident memory per connection (the "LOAD:" line).
TEST_F(LoadTest, FiveThousandConnectionsHeldOpen) {
  constexpr int kConns = 5000;
  size_t limit = RaiseNofile();
  // The clients and the echo server's ends both live in this process.
  if (limit < 2 * kConns + 200) GTEST_SKIP() << "RLIMIT_NOFILE hard limit " << limit;
  EchoServer echo(TcpListen(*target_, Back()));
  auto d = StartForwarder({"-t", "8080:80"});
  ASSERT_TRUE(d);
  // Baseline after one connection (pools filled, first pipes made).
  ASSERT_EQ(EchoByte(*host_, Front()), 0);
  const int fds0 = SettledFds(d->pid());
  const int64_t rss0 = RssKiB(d->pid());
  ASSERT_GT(fds0, 0);
  ASSERT_GT(rss0, 0);

  Clock::time_point t0 = Clock::now();
  std::string error;
  std::vector<Fd> socks = ConnectMany(*host_, Front(), kConns, 500, In(30000 * Slowdown()), &error);
  ASSERT_EQ(socks.size(), static_cast<size_t>(kConns)) << error;
  auto connect_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  ASSERT_TRUE(WaitUntil([&] { return echo.accepted() >= kConns + 1; }, 10000))
      << "the backend accepted " << echo.accepted() - 1 << " of " << kConns;
  auto message = [](int i) { return "connection " + std::to_string(i) + " of five thousand\n"; };
  int echoed = EchoEach(socks, message, In(30000 * Slowdown()), &error);
  EXPECT_EQ(echoed, kConns) << error;

  const int fds = CountFds(d->pid());
  const int64_t rss = RssKiB(d->pid());
  const double fds_per_conn = static_cast<double>(fds - fds0) / kConns;
  const double kib_per_conn = static_cast<double>(rss - rss0) / kConns;
  char line[512];
  std::snprintf(line, sizeof(line),
                "LOAD: %d connections: daemon fds %d (idle %d) = %.2f fds/connection; "
                "VmRSS %lld KiB (idle %lld KiB, flow slots preallocated) = %.2f KiB/connection; "
                "connected in %lld ms\n",
                kConns, fds, fds0, fds_per_conn, static_cast<long long>(rss),
                static_cast<long long>(rss0), kib_per_conn, static_cast<long long>(connect_ms));
  std::cout << line;
  RecordProperty("fds_per_connection", std::to_string(fds_per_conn));
  RecordProperty("rss_kib_per_connection", std::to_string(kib_per_conn));
  // Two sockets per connection and nothing else (pipes go back to the pool
  // once empty).
  EXPECT_LE(fds - fds0, 2 * kConns + 64);
  if (!SkipMemoryChecks()) {
    EXPECT_LT(rss, kRssLimitKiB) << "daemon VmRSS " << rss << " KiB with " << kConns
                                 << " connections";
  }

  socks.clear();
  // Every flow closes, and the daemon serves on.
  int after = fds;
  EXPECT_TRUE(WaitUntil(
      [&] {
        after = CountFds(d->pid());
        return after <= fds0 + 64;
      },
      10000))
      << "descriptors still " << after << " (idle " << fds0 << ") after the clients closed";
  EXPECT_EQ(EchoByte(*host_, Front()), 0);
  EXPECT_TRUE(d->Running());
}

// The daemon's CPU time over `ms` of wall time, as a fraction of it.
double CpuShare(pid_t pid, int ms) {
  const int64_t ticks0 = CpuTicks(pid);
  Clock::time_point t0 = Clock::now();
  usleep(static_cast<useconds_t>(ms) * 1000);
  const int64_t ticks1 = CpuTicks(pid);
  const double wall_s =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count() / 1e6;
  return static_cast<double>(ticks1 - ticks0) / TicksPerSecond() / wall_s;
}

// ringfwd -t 8080:80 with 256 descriptors.
std::unique_ptr<RingfwdChild> StartWith256Fds(const TempNetns& host, const TempNetns& target) {
  std::string error;
  auto d = RingfwdChild::Start(host, {"prlimit", "--nofile=256:256"},
                               {"--netns", target.name(), "-t", "8080:80"}, "", &error);
  EXPECT_TRUE(d) << error;
  if (d) {
    EXPECT_EQ(StatusField(d->pid(), "Name"), "ringfwd");
  }
  return d;
}

// The daemon runs with 256 descriptors. Established flows keep moving
// (slowly) while far more connections arrive than fit; the daemon does not
// die, and serves new connections once the flood has gone.
TEST_F(LoadTest, FloodPastTheDescriptorLimit) {
  constexpr int kFlood = 3000;
  constexpr int kSteady = 8;
  RaiseNofile();
  EchoServer echo(TcpListen(*target_, Back()));
  auto d = StartWith256Fds(*host_, *target_);
  ASSERT_TRUE(d);
  ASSERT_EQ(EchoByte(*host_, Front()), 0);

  SteadyFlows steady(*host_, Front(), kSteady, 1024, 20);
  ASSERT_TRUE(steady.AdvanceAll(3, 5000)) << steady.error();
  SettledFds(d->pid());
  const FdKinds base = CountFdKinds(d->pid());

  std::vector<Fd> flood = StartConnects(*host_, Front(), kFlood);
  ASSERT_EQ(flood.size(), static_cast<size_t>(kFlood));
  // Let the daemon take what it can and run out of descriptors.
  usleep(500000);
  EXPECT_TRUE(steady.AdvanceAll(5, 5000))
      << "established flows stalled in the flood: " << steady.error();
  const uint64_t bytes0 = steady.bytes();
  const double cpu = CpuShare(d->pid(), 1000);
  std::cout << "flood: daemon CPU " << static_cast<int>(cpu * 100) << "% with " << kFlood
            << " connections waiting, " << CountFds(d->pid()) << " descriptors; steady flows moved "
            << steady.bytes() - bytes0 << " bytes in 1 s\n";
  EXPECT_GT(steady.bytes(), bytes0) << "established flows stopped moving";
  EXPECT_TRUE(steady.AdvanceAll(3, 5000)) << steady.error();
  ASSERT_TRUE(d->Running()) << "the daemon died in the flood";

  flood.clear();
  // Once the flood has gone, new connections are accepted and forwarded.
  bool served = false;
  for (Deadline dl = In(10000 * Slowdown()); !served && Clock::now() < dl;) {
    served = EchoByte(*host_, Front(), 1000) == 0;
    if (!served) usleep(50000);
  }
  EXPECT_TRUE(served) << "no connection served after the flood";
  // Several at once, too.
  std::string error;
  std::vector<Fd> again = ConnectMany(*host_, Front(), 50, 50, In(5000 * Slowdown()), &error);
  ASSERT_EQ(again.size(), 50u) << error;
  EXPECT_EQ(
      EchoEach(
          again, [](int i) { return "after " + std::to_string(i); }, In(5000 * Slowdown()), &error),
      50)
      << error;
  EXPECT_TRUE(steady.AdvanceAll(3, 5000)) << steady.error();
  again.clear();
  // Nothing of the flood is left: what the daemon accepted it closed.
  SettledFds(d->pid());
  const FdKinds after = CountFdKinds(d->pid());
  EXPECT_LE(after.sockets, base.sockets + 40)
      << "sockets left by the flood: " << base.ToString() << " -> " << after.ToString();
  steady.Stop();
  EXPECT_EQ(steady.error(), "");
  EXPECT_TRUE(d->Running());
}

// Out of descriptors with connections waiting in the accept queue, the
// daemon must idle: less than 20% CPU over 2 s.
//
// DISABLED: daemon bug. On EMFILE the accept completion marks the listener
// paused, "retried on the tick" (fwd/forwarder.cc, Dispatch, kAccept), but
// Forwarder::Tick runs after every RunOnce, not once per kTickMs: the
// listener is re-armed at once, the multishot accept completes at once with
// EMFILE again, and the loop spins (measured: 60-90% CPU here, about 800000
// rate-limited "accept: Too many open files; pausing this listener" warnings
// suppressed per second). Established flows still move, and accepting
// resumes once the flood has gone (FloodPastTheDescriptorLimit).
TEST_F(LoadTest, FloodDoesNotSpin) {
  RaiseNofile();
  EchoServer echo(TcpListen(*target_, Back()));
  auto d = StartWith256Fds(*host_, *target_);
  ASSERT_TRUE(d);
  std::vector<Fd> flood = StartConnects(*host_, Front(), 1000);
  usleep(500000);
  ASSERT_TRUE(d->Running());
  const double cpu = CpuShare(d->pid(), 2000);
  EXPECT_LT(cpu, 0.2 * std::min(Slowdown(), 2))
      << "the daemon spins: " << static_cast<int>(cpu * 100) << "% CPU while out of descriptors";
}

// Connection churn while the HOST table changes every 250 ms (another port
// added, then removed). After the round the daemon's descriptors are back to
// where they were, and a second identical round leaves its memory where the
// first did.
TEST_F(LoadTest, ChurnWithSwapsLeavesNoResidue) {
  SocketDir dir;
  const std::string ctl = dir.Path("ctl.sock");
  auto echo = StartEcho(*target_, "127.0.0.1", 5000);
  ASSERT_TRUE(echo);
  auto d = StartForwarder({"-t", "5000", "-c", ctl});
  ASSERT_TRUE(d);
  const Addr front = Addr::Of("127.0.0.1", 5000);
  // Warm up the pools, then take the baseline.
  {
    ConnectStorm warm(*host_, {front}, 4, 25, 0);
    ASSERT_TRUE(WaitUntil([&] { return warm.ok() >= 100; }, 5000)) << Describe(warm.stats());
  }
  SettledFds(d->pid());
  const FdKinds fds0 = CountFdKinds(d->pid());

  auto round = [&](int r, int64_t* ok, int* swaps) {
    ConnectStorm storm(*host_, {front}, 4, 1000000, 200);
    Clock::time_point next = Clock::now();
    *swaps = 0;
    for (int i = 0; i < 8; ++i) {
      next += std::chrono::milliseconds(250);
      uint16_t port = static_cast<uint16_t>(6100 + r * 10 + i / 2);
      std::string spec = std::to_string(port);
      CmdResult p = RunPesto({i % 2 == 0 ? "-A" : "-D", "-t", spec}, ctl);
      EXPECT_EQ(p.exit_code, 0) << "swap " << i << ": " << p.output;
      if (p.exit_code == 0) ++*swaps;
      std::this_thread::sleep_until(next);
    }
    storm.Stop();
    ConnectStorm::Stats st = storm.stats();
    EXPECT_EQ(st.failures(), 0) << "round " << r << ": " << Describe(st);
    EXPECT_GT(st.ok, 100) << "round " << r << ": " << Describe(st);
    *ok = st.ok;
  };

  int64_t ok1 = 0, ok2 = 0;
  int swaps1 = 0, swaps2 = 0;
  round(1, &ok1, &swaps1);
  SettledFds(d->pid());
  const FdKinds fds1 = CountFdKinds(d->pid());
  const int64_t rss1 = RssKiB(d->pid());
  round(2, &ok2, &swaps2);
  SettledFds(d->pid());
  const FdKinds fds2 = CountFdKinds(d->pid());
  const int64_t rss2 = RssKiB(d->pid());
  std::cout << "churn: " << ok1 << " and " << ok2 << " connections over " << swaps1 << " and "
            << swaps2 << " swaps; fds " << fds0.ToString() << " -> " << fds1.ToString() << " -> "
            << fds2.ToString() << "; VmRSS " << rss1 << " -> " << rss2 << " KiB\n";
  // A small constant for pools: the namespace thread keeps 32 to 64
  // pre-opened sockets, and idle pipes stay pooled up to the peak number of
  // directions moving at once (a few here). A leaked flow holds 2 sockets; a
  // leak on any path shows over thousands of connections.
  for (const FdKinds* k : {&fds1, &fds2}) {
    EXPECT_LE(k->sockets, fds0.sockets + 40)
        << "sockets left over: " << fds0.ToString() << " -> " << k->ToString();
    EXPECT_LE(k->total(), fds0.total() + 64)
        << "descriptors left over: " << fds0.ToString() << " -> " << k->ToString();
  }
  EXPECT_LE(fds2.pipes, fds1.pipes + 16) << "idle pipes keep growing";
  EXPECT_EQ(CountListeners(*host_, 6100, 6199), 0) << "listeners of removed rules left";
  if (!SkipMemoryChecks()) {
    EXPECT_LE(rss2, rss1 + 1024) << "VmRSS grew by " << rss2 - rss1 << " KiB in the second round";
  }
  EXPECT_EQ(EchoByte(*host_, front), 0);
}

}  // namespace
}  // namespace ringfwd::e2e
