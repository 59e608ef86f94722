// Tap mode TCP with a namespace's kernel as the guest: the guest's
// connections become host sockets (to the outside, and to the host's
// loopback through the gateway's address), refused connects are refused in
// the guest, half-closes pass both ways, many connections run in parallel
// and in sequence without leaking flows or descriptors, and the guest's
// kernel never sees a bad checksum.
#include <arpa/inet.h>
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/load_util.h"
#include "tests/e2e/swap_util.h"
#include "tests/e2e/tap_util.h"

namespace ringfwd::e2e {
namespace {

void ExpectNoChecksumErrors(const TempNetns& ns) {
  auto counters = ChecksumErrorCounters(ns);
  ASSERT_FALSE(counters.empty()) << "nstat showed no checksum counters";
  for (const auto& [name, v] : counters) EXPECT_EQ(v, 0) << name << " in the guest";
}

// Uploads `len` bytes of Pattern(seed) from `guest` (the client side) to a TransferHandler
// server at `to`; the server's count and digest must match.
void Upload(const TempNetns& guest, const Addr& to, uint64_t seed, uint64_t len, int ms = 30000) {
  int err = 0;
  Fd c = TcpConnect(guest, to, &err);
  ASSERT_TRUE(c.valid()) << "connect " << to.ToString() << ": " << std::strerror(err);
  Deadline d = In(ms * Slowdown());
  ASSERT_EQ(SendAll(c.get(), TransferHeader('U', seed, len), d), 0);
  ExchangeResult r = Exchange(c.get(), seed, len, true, d);
  ASSERT_EQ(r.err, 0) << std::strerror(r.err);
  EXPECT_EQ(r.sent, len);
  ASSERT_EQ(r.received, 16u);
  EXPECT_EQ(r.head, TransferReply(len, PatternDigest(seed, len))) << "upload of " << len;
}

// Downloads `len` bytes of Pattern(seed) into the guest; digest compared.
void Download(const TempNetns& guest, const Addr& to, uint64_t seed, uint64_t len, int ms = 30000) {
  int err = 0;
  Fd c = TcpConnect(guest, to, &err);
  ASSERT_TRUE(c.valid()) << "connect " << to.ToString() << ": " << std::strerror(err);
  Deadline d = In(ms * Slowdown());
  ASSERT_EQ(SendAll(c.get(), TransferHeader('D', seed, len), d), 0);
  ExchangeResult r = Exchange(c.get(), 0, 0, true, d);
  ASSERT_EQ(r.err, 0) << std::strerror(r.err);
  EXPECT_EQ(r.received, len);
  EXPECT_EQ(r.recv_digest, PatternDigest(seed, len)) << "download of " << len;
}

size_t FdCount(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(path.c_str());
  if (!d) return 0;
  size_t n = 0;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

// The daemon's counters (SIGUSR1) contain `needle` within `ms`.
bool LogShows(Daemon& d, const std::string& needle, int ms) {
  for (Deadline dl = In(ms); MsLeft(dl) > 0;) {
    kill(d.pid(), SIGUSR1);
    poll(nullptr, 0, 100);  // bounded by the deadline
    if (d.Log().find(needle) != std::string::npos) return true;
  }
  return false;
}

// The last value the daemon's counters (SIGUSR1) show for `pattern`, whose
// first group is the number; -1 if they do not show within 3 s.
long LastCounter(Daemon& d, const std::string& needle, const std::regex& pattern) {
  if (!LogShows(d, needle, 3000)) return -1;
  std::string log = d.Log();
  long value = -1;
  for (std::sregex_iterator it(log.begin(), log.end(), pattern), end; it != end; ++it)
    value = std::atol((*it)[1].str().c_str());
  return value;
}

// Frames the daemon read longer than the MTU (the guest's kernel
// segmentation offload).
long OffloadedFramesIn(Daemon& d) {
  return LastCounter(d, " offloaded), ", std::regex(R"(frames in \((\d+) offloaded\))"));
}

// TCP frames the daemon wrote to the guest as many segments each (the tap's
// segmentation offload toward the guest).
long OffloadedFramesOut(Daemon& d) {
  return LastCounter(d, " offloaded), retransmits",
                     std::regex(R"(\((\d+) offloaded\), retransmits)"));
}

// The daemon exits cleanly (under the sanitizers: no leak, no error report).
void ExpectCleanExit(Daemon& d) {
  EXPECT_EQ(d.Stop(), 0) << d.Log();
  EXPECT_EQ(d.Log().find("runtime error"), std::string::npos);
  EXPECT_EQ(d.Log().find("Sanitizer"), std::string::npos);
}

TEST_F(TapTest, TcpGuestToOutsideBothFamilies) {
  TcpServer s4(TcpListen(*outside_, Addr::Of(kOutside4, 8080)), TransferHandler);
  TcpServer s6(TcpListen(*outside_, Addr::Of(kOutside6, 8080)), TransferHandler);
  auto d = StartTap();
  ASSERT_TRUE(d);
  Upload(*target_, Addr::Of(kOutside4, 8080), 1, 2048);
  Download(*target_, Addr::Of(kOutside4, 8080), 2, 2048);
  Upload(*target_, Addr::Of(kOutside6, 8080), 3, 2048);
  Download(*target_, Addr::Of(kOutside6, 8080), 4, 2048);
  Upload(*target_, Addr::Of(kOutside4, 8080), 5, 64 << 20);
  Download(*target_, Addr::Of(kOutside4, 8080), 6, 64 << 20);
  Upload(*target_, Addr::Of(kOutside6, 8080), 7, 8 << 20);
  Download(*target_, Addr::Of(kOutside6, 8080), 8, 8 << 20);
  ExpectNoChecksumErrors(*target_);
  EXPECT_TRUE(d->Running());
  ExpectCleanExit(*d);
}

TEST_F(TapTest, TcpAtMtu1500) {
  TcpServer s4(TcpListen(*outside_, Addr::Of(kOutside4, 8080)), TransferHandler);
  TcpServer s6(TcpListen(*outside_, Addr::Of(kOutside6, 8080)), TransferHandler);
  auto d = StartTap({"--mtu", "1500"});
  ASSERT_TRUE(d);
  Upload(*target_, Addr::Of(kOutside4, 8080), 11, 16 << 20);
  // The guest's kernel handed over segments longer than the MTU (TSO over
  // the tap's virtio-net header), and they arrived whole.
  EXPECT_GT(OffloadedFramesIn(*d), 0) << d->Log();
  // And the other way, the guest's kernel took frames of many segments
  // (GSO over the same header) as one large receive.
  Download(*target_, Addr::Of(kOutside4, 8080), 12, 16 << 20);
  long out4 = OffloadedFramesOut(*d);
  EXPECT_GT(out4, 0) << d->Log();
  Upload(*target_, Addr::Of(kOutside6, 8080), 13, 4 << 20);
  Download(*target_, Addr::Of(kOutside6, 8080), 14, 16 << 20);
  EXPECT_GT(OffloadedFramesOut(*d), out4) << d->Log();
  ExpectNoChecksumErrors(*target_);
}

TEST_F(TapTest, TcpGatewayAddressReachesHostLoopback) {
  TcpServer lo4(TcpListen(*host_, Addr::Of("127.0.0.1", 9090)), TransferHandler);
  TcpServer lo6(TcpListen(*host_, Addr::Of("::1", 9090)), TransferHandler);
  auto d = StartTap();
  ASSERT_TRUE(d);
  Upload(*target_, Addr::Of(kGateway4, 9090), 21, 2048);
  Download(*target_, Addr::Of(kGateway4, 9090), 22, 1 << 20);
  Upload(*target_, Addr::Of(kGateway6, 9090), 23, 2048);
  Download(*target_, Addr::Of(kGateway6, 9090), 24, 1 << 20);
  EXPECT_EQ(lo4.accepted(), 2);
  EXPECT_EQ(lo6.accepted(), 2);
}

TEST_F(TapTest, TcpOutsideToGuestThroughAHostRule) {
  // A HOST rule whose target is the guest's address goes over the link: the
  // guest sees the outside client's address, and answers through the tap.
  auto d = StartTap({"-t", std::string("0.0.0.0/8090:") + kGuest4 + "/80"});
  ASSERT_TRUE(d);
  // Before the guest listens, the guest's kernel refuses: the client sees a
  // reset (its connection was already accepted by our listener).
  {
    int err = 0;
    Fd c = TcpConnect(*outside_, Addr::Of("192.0.2.1", 8090), &err);
    if (c.valid()) {
      std::string in;
      EXPECT_EQ(RecvToEof(c.get(), &in, In(5000 * Slowdown())), ECONNRESET);
    } else {
      EXPECT_EQ(err, ECONNRESET) << "the reset can come before the connect is seen done";
    }
  }
  TcpServer guest(TcpListen(*target_, Addr::Of(kGuest4, 80)), TransferHandler);
  Addr rule = Addr::Of("192.0.2.1", 8090);
  Upload(*outside_, rule, 51, 2048);
  Download(*outside_, rule, 52, 2048);
  Upload(*outside_, rule, 53, 64 << 20);
  Download(*outside_, rule, 54, 64 << 20);
  EXPECT_EQ(guest.accepted(), 4);
  EXPECT_TRUE(LogShows(*d, "(0 open", 10000)) << "flows left open";
  ExpectNoChecksumErrors(*target_);
  ExpectCleanExit(*d);
}

TEST_F(TapTest, TcpClosedPortIsRefusedInTheGuest) {
  auto d = StartTap();
  ASSERT_TRUE(d);
  for (const char* to : {kOutside4, kGateway4, kOutside6}) {
    int err = 0;
    Fd c = TcpConnect(*target_, Addr::Of(to, 9), &err);
    EXPECT_FALSE(c.valid()) << to;
    EXPECT_EQ(err, ECONNREFUSED) << to << ": " << std::strerror(err);
  }
  ExpectNoChecksumErrors(*target_);
}

TEST_F(TapTest, TcpHalfCloseBothWays) {
  // The guest half-closes first: the echo server sees EOF, flushes what it
  // read and closes its side.
  EchoServer echo(TcpListen(*outside_, Addr::Of(kOutside4, 7070)), "hello ");
  // The outside half-closes first, then reads what the guest still sends.
  std::atomic<uint64_t> got{0};
  std::atomic<uint64_t> digest{0};
  TcpServer first(TcpListen(*outside_, Addr::Of(kOutside4, 7071)), [&](Fd conn) {
    Deadline dl = In(20000 * Slowdown());
    SendAll(conn.get(), std::string("bye"), dl);
    shutdown(conn.get(), SHUT_WR);
    ExchangeResult r = Exchange(conn.get(), 0, 0, false, dl);
    got = r.received;
    digest = r.recv_digest;
  });
  auto d = StartTap();
  ASSERT_TRUE(d);
  {
    int err = 0;
    Fd c = TcpConnect(*target_, Addr::Of(kOutside4, 7070), &err);
    ASSERT_TRUE(c.valid()) << std::strerror(err);
    ExchangeResult r = Exchange(c.get(), 31, 300000, true, In(20000 * Slowdown()));
    EXPECT_EQ(r.err, 0);
    EXPECT_EQ(r.received, 6u + 300000u);
  }
  {
    int err = 0;
    Fd c = TcpConnect(*target_, Addr::Of(kOutside4, 7071), &err);
    ASSERT_TRUE(c.valid()) << std::strerror(err);
    Deadline dl = In(20000 * Slowdown());
    std::string in;
    // EOF from the outside first, and the guest can still send afterwards.
    ASSERT_EQ(RecvToEof(c.get(), &in, dl), 0);
    EXPECT_EQ(in, "bye");
    ASSERT_EQ(SendAll(c.get(), Pattern(32).Bytes(0, 500000), dl), 0);
    shutdown(c.get(), SHUT_WR);
    for (Deadline w = In(10000 * Slowdown()); got.load() < 500000 && MsLeft(w) > 0;)
      poll(nullptr, 0, 20);  // bounded by the deadline
    EXPECT_EQ(got.load(), 500000u);
    EXPECT_EQ(digest.load(), PatternDigest(32, 500000));
  }
  ExpectNoChecksumErrors(*target_);
}

TEST_F(TapTest, TcpTwoHundredParallelConnections) {
  EchoServer echo(TcpListen(*outside_, Addr::Of(kOutside4, 7072)));
  auto d = StartTap();
  ASSERT_TRUE(d);
  constexpr int kConns = 200;
  std::vector<Fd> conns;
  for (int i = 0; i < kConns; i++) {
    int err = 0;
    Fd c = TcpConnect(*target_, Addr::Of(kOutside4, 7072), &err);
    ASSERT_TRUE(c.valid()) << "connection " << i << ": " << std::strerror(err);
    conns.push_back(std::move(c));
  }
  Deadline dl = In(30000 * Slowdown());
  for (int i = 0; i < kConns; i++)
    ASSERT_EQ(SendAll(conns[i].get(), Pattern(100 + i).Bytes(0, 4000 + i), dl), 0);
  for (int i = 0; i < kConns; i++) {
    std::string back;
    ASSERT_EQ(RecvExact(conns[i].get(), 4000 + i, &back, dl), 0) << "connection " << i;
    EXPECT_EQ(back, Pattern(100 + i).Bytes(0, 4000 + i));
  }
  conns.clear();
  EXPECT_TRUE(LogShows(*d, "(0 open", 10000)) << "flows left open";
  ExpectNoChecksumErrors(*target_);
}

TEST_F(TapTest, TcpTenThousandSequentialConnectionsLeakNothing) {
  EchoServer echo(TcpListen(*outside_, Addr::Of(kOutside4, 7073)));
  auto d = StartTap();
  ASSERT_TRUE(d);
  size_t fds_before = FdCount(d->pid());
  int64_t rss_warm = -1;  // after the first 200: the slots and buffers in use were touched
  int done = 0;
  auto start = std::chrono::steady_clock::now();
  // Bounded in count and in time (a slow machine does fewer).
  for (int i = 0; i < 10000 &&
                  std::chrono::steady_clock::now() - start < std::chrono::seconds(25 * Slowdown());
       i++) {
    int err = 0;
    Fd c = TcpConnect(*target_, Addr::Of(kOutside4, 7073), &err);
    ASSERT_TRUE(c.valid()) << "connection " << i << ": " << std::strerror(err);
    ExchangeResult r = Exchange(c.get(), i, 100, true, In(5000 * Slowdown()));
    ASSERT_EQ(r.err, 0) << "connection " << i;
    ASSERT_EQ(r.received, 100u) << "connection " << i;
    done++;
    if (done == 200) rss_warm = RssKiB(d->pid());
  }
  EXPECT_GE(done, 2000) << "too slow";
  std::printf("%d sequential connections\n", done);
  EXPECT_TRUE(LogShows(*d, "(0 open", 10000)) << "flows left open after " << done;
  EXPECT_LE(FdCount(d->pid()), fds_before) << "descriptors leaked";
  if (!SkipMemoryChecks()) {
    int64_t rss = RssKiB(d->pid());
    std::printf("VmRSS %lld KiB after 200, %lld KiB after %d\n", static_cast<long long>(rss_warm),
                static_cast<long long>(rss), done);
    EXPECT_LE(rss, rss_warm + 512) << "memory grew with the connections";
  }
  ExpectNoChecksumErrors(*target_);
}

// `conns` transfers of `len` bytes each between the guest and `to`, half
// each way, at once, through a link that drops and reorders frames (the
// daemon `d` runs with --tap-fault): every byte arrives, in order, within a
// minute; the faults hit both directions (more than `min_drops` frames each)
// and the translator recovered.
void TransfersThroughFaults(const TempNetns& guest, Daemon& d, const Addr& to, int conns,
                            uint64_t len, unsigned long min_drops) {
  std::vector<std::thread> threads;
  auto start = std::chrono::steady_clock::now();
  std::vector<int64_t> ms(conns);
  for (int i = 0; i < conns; i++) {
    threads.emplace_back([&, i] {
      auto t0 = std::chrono::steady_clock::now();
      if (i % 2)
        Upload(guest, to, 40 + i, len, 60000);
      else
        Download(guest, to, 40 + i, len, 60000);
      ms[i] = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - t0)
                  .count();
    });
  }
  for (std::thread& t : threads) t.join();
  int64_t up_ms = 0, down_ms = 0;
  for (int i = 0; i < conns; i++)
    (i % 2 ? up_ms : down_ms) = std::max(i % 2 ? up_ms : down_ms, ms[i]);
  std::printf("slowest upload %lld ms, slowest download %lld ms\n", static_cast<long long>(up_ms),
              static_cast<long long>(down_ms));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60 * Slowdown()));
  ASSERT_TRUE(LogShows(d, "faults: dropped", 5000));
  std::string log = d.Log();
  size_t at = log.rfind("faults: dropped ");
  unsigned long in_drop = 0, out_drop = 0, rtx = 0, fast = 0;
  ASSERT_EQ(std::sscanf(log.c_str() + at, "faults: dropped %lu+%lu", &in_drop, &out_drop), 2);
  size_t r = log.rfind("retransmits ");
  ASSERT_NE(r, std::string::npos);
  ASSERT_EQ(std::sscanf(log.c_str() + r, "retransmits %lu+%lu", &rtx, &fast), 2);
  EXPECT_GT(in_drop, min_drops);
  EXPECT_GT(out_drop, min_drops);
  EXPECT_GT(rtx + fast, 0u);
  std::printf(
      "faults: %lu dropped from the guest, %lu toward it; %lu timeouts, %lu fast "
      "retransmits\n",
      in_drop, out_drop, rtx, fast);
  ExpectNoChecksumErrors(guest);
}

TEST_F(TapTest, TcpTwentyParallelWithDropAndReorder) {
  TcpServer s4(TcpListen(*outside_, Addr::Of(kOutside4, 8081)), TransferHandler);
  // 1% of the frames dropped and 1% reordered, both ways on the link.
  auto d = StartTap({"--tap-fault", "drop=100,reorder=97"});
  ASSERT_TRUE(d);
  TransfersThroughFaults(*target_, *d, Addr::Of(kOutside4, 8081), 20, 8 << 20, 20);
  ExpectCleanExit(*d);
}

// The same at MTU 1500, where frames both ways carry many segments each
// (segmentation offload): a lost or late one costs dozens of segments. There
// are fewer frames (about 1200 each way for 64 MiB), so fewer are dropped.
TEST_F(TapTest, TcpAtMtu1500WithDropAndReorder) {
  TcpServer s4(TcpListen(*outside_, Addr::Of(kOutside4, 8081)), TransferHandler);
  auto d = StartTap({"--mtu", "1500", "--tap-fault", "drop=100,reorder=97"});
  ASSERT_TRUE(d);
  TransfersThroughFaults(*target_, *d, Addr::Of(kOutside4, 8081), 8, 8 << 20, 4);
  EXPECT_GT(OffloadedFramesOut(*d), 0) << d->Log();
  ExpectCleanExit(*d);
}

TEST_F(TapTest, TcpSwapCarriesTapRulesOverAndLeavesTheirConnections) {
  // Rules whose target is the guest swap like any other: an unchanged one
  // keeps its listening socket, and a translated connection through it goes
  // on across the swap, every byte in order.
  SocketDir dir;
  const std::string ctl = dir.Path("ctl.sock");
  const std::string kept = std::string("0.0.0.0/8091:") + kGuest4 + "/80";
  const std::string added = std::string("0.0.0.0/8092:") + kGuest4 + "/81";
  auto d = StartTap({"-c", ctl, "-t", kept});
  ASSERT_TRUE(d);
  TcpServer g80(TcpListen(*target_, Addr::Of(kGuest4, 80)), TransferHandler);
  TcpServer g81(TcpListen(*target_, Addr::Of(kGuest4, 81)), TransferHandler);
  const uint64_t inode = ListenerInode(*host_, AF_INET, 8091);
  ASSERT_NE(inode, 0u);
  EXPECT_EQ(ListenerInode(*host_, AF_INET, 8092), 0u);

  // A download through the kept rule, held mid-way by the client's reads
  // (16 MiB is more than the sockets and windows on the way hold).
  int err = 0;
  Fd c = TcpConnect(*outside_, Addr::Of("192.0.2.1", 8091), &err);
  ASSERT_TRUE(c.valid()) << std::strerror(err);
  constexpr uint64_t kLen = 16 << 20;
  ASSERT_EQ(SendAll(c.get(), TransferHeader('D', 77, kLen), In(5000 * Slowdown())), 0);
  std::string first;
  ASSERT_EQ(RecvExact(c.get(), 1 << 20, &first, In(10000 * Slowdown())), 0);

  CmdResult r = RunPesto({"-t", kept, "-t", added}, ctl);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(ListenerInode(*host_, AF_INET, 8091), inode) << "the listener was not carried over";
  EXPECT_NE(ListenerInode(*host_, AF_INET, 8092), 0u);

  std::string rest;
  ASSERT_EQ(RecvExact(c.get(), kLen - first.size(), &rest, In(30000 * Slowdown())), 0);
  Digest dg;
  dg.Update(first.data(), first.size());
  dg.Update(rest.data(), rest.size());
  EXPECT_EQ(dg.Value(), PatternDigest(77, kLen)) << "the connection lost or reordered bytes";
  std::string tail;
  EXPECT_EQ(RecvToEof(c.get(), &tail, In(5000 * Slowdown())), 0);
  EXPECT_TRUE(tail.empty());
  c = Fd();  // our FIN ends the guest's side too
  // The added rule reaches the guest too.
  Upload(*outside_, Addr::Of("192.0.2.1", 8092), 78, 2048);
  EXPECT_EQ(g80.accepted(), 1);
  EXPECT_EQ(g81.accepted(), 1);
  EXPECT_TRUE(LogShows(*d, "(0 open", 10000)) << "flows left open";
  ExpectCleanExit(*d);
}

TEST_F(TapTest, TcpUnderSeccomp) {
  TcpServer s4(TcpListen(*outside_, Addr::Of(kOutside4, 8082)), TransferHandler);
  // LeakSanitizer's exit check uses ptrace, which the filter refuses.
  std::string saved_asan = getenv("ASAN_OPTIONS") ? getenv("ASAN_OPTIONS") : "";
  setenv("ASAN_OPTIONS", (saved_asan + (saved_asan.empty() ? "" : ":") + "detect_leaks=0").c_str(),
         1);
  auto d = StartTap({"--seccomp"});
  saved_asan.empty() ? unsetenv("ASAN_OPTIONS") : setenv("ASAN_OPTIONS", saved_asan.c_str(), 1);
  ASSERT_TRUE(d);
  Upload(*target_, Addr::Of(kOutside4, 8082), 61, 1 << 20);
  Download(*target_, Addr::Of(kOutside4, 8082), 62, 1 << 20);
  int err = 0;
  Fd c = TcpConnect(*target_, Addr::Of(kOutside4, 9), &err);
  EXPECT_EQ(err, ECONNREFUSED);
  EXPECT_TRUE(d->Running()) << d->Log();
  EXPECT_EQ(d->Stop(), 0) << d->Log();
}

TEST_F(TapTest, TcpRejectsABadFaultOption) {
  CmdResult r = RunRingfwd(*host_, {"--netns", target_->name(), "--tap", "--tap-fault", "drop=1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--tap-fault"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace ringfwd::e2e
