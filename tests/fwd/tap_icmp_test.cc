// TapIcmp in a fresh network namespace: echo requests from the guest go out
// through ping sockets and the replies come back as frames with the guest's
// identifier; without permission, one clear log line and drops.
#include "fwd/tap_icmp.h"

#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "fwd/kinds.h"
#include "gtest/gtest.h"
#include "tests/fwd/frame_test_util.h"
#include "uring/log.h"

namespace ringfwd {
namespace {

using testing::Bytes;
using testing::Get16;
using testing::kGuestMac;

// Runs `body(skip)` on a thread of its own inside a new network namespace
// (the namespace is the thread's alone). Returns an empty string, or why the
// namespace could not be made or what the body set in `skip` (the test then
// skips).
template <typename Body>
std::string InFreshNetns(Body body) {
  std::string skip;
  std::thread t([&] {
    if (unshare(CLONE_NEWNET) != 0) {
      skip = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
      return;
    }
    body(skip);
  });
  t.join();
  return skip;
}

void WriteProc(const char* path, const char* value) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  ASSERT_EQ(write(fd, value, strlen(value)), static_cast<ssize_t>(strlen(value))) << path;
  close(fd);
}

void BringLoopbackUp() {
  Fd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(s.valid());
  ifreq ifr{};
  std::strcpy(ifr.ifr_name, "lo");
  ASSERT_EQ(ioctl(s.get(), SIOCGIFFLAGS, &ifr), 0);
  ifr.ifr_flags |= IFF_UP;
  ASSERT_EQ(ioctl(s.get(), SIOCSIFFLAGS, &ifr), 0) << std::strerror(errno);
}

Bytes EchoRequest(const char* src, const char* dst, uint16_t id, uint16_t seq, const Bytes& data) {
  bool v6 = std::string(src).find(':') != std::string::npos;
  Bytes icmp = {static_cast<uint8_t>(v6 ? 128 : 8), 0, 0, 0, 0, 0, 0, 0};
  testing::Put16(icmp, 4, id);
  testing::Put16(icmp, 6, seq);
  icmp.insert(icmp.end(), data.begin(), data.end());
  Bytes f = v6 ? testing::Ipv6Frame(kDefaultOurMac, src, dst, IPPROTO_ICMPV6, icmp)
               : testing::Ipv4Frame(kDefaultOurMac, src, dst, IPPROTO_ICMP, icmp);
  testing::FixL4Checksum(f, 2);
  return f;
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class TapIcmpHarness {
 public:
  TapIcmpHarness() {
    state_.guest_mac = kGuestMac;
    state_.guest_mac_known = true;
  }
  // Empty, or why there is no io_uring here (the test skips).
  std::string Init() {
    auto ring = Ring::Create(64);
    if (!ring.ok()) return std::string(ring.status().message());
    ring_ = std::move(*ring);
    icmp_ = std::make_unique<TapIcmp>(ring_.get(), config_, state_, 4);
    return "";
  }
  // Runs the ring until `n` frames reached the sink or 5 s passed.
  void RunUntilFrames(size_t n) {
    int64_t deadline = NowNs() + 5'000'000'000;
    while (sink_.frames.size() < n && NowNs() < deadline) {
      ring_->RunOnce(100, [&](const io_uring_cqe& cqe) {
        UserData ud = UserData::Unpack(cqe.user_data);
        if (ud.kind == kind::kTapPing) icmp_->HandleCompletion(cqe, ud, NowNs(), sink_);
      });
    }
  }
  bool Send(const Bytes& f) {
    FrameView v = ParseFrame(f);
    EXPECT_TRUE(v.ok()) << DropReasonName(v.drop);
    return icmp_->HandleGuestEcho(v, f, NowNs());
  }

  LinkConfig config_ = testing::TestConfig();
  LinkState state_;
  std::unique_ptr<Ring> ring_;
  std::unique_ptr<TapIcmp> icmp_;
  testing::VecSink sink_;
};

// Checks an echo reply frame to the guest from `from` with id, seq, data.
void ExpectEchoReply(const Bytes& r, const char* from, const char* to, uint16_t id, uint16_t seq,
                     const Bytes& data) {
  testing::ExpectChecksumsValid(r, "echo reply");
  FrameView v = ParseFrame(r);
  ASSERT_TRUE(v.ok()) << DropReasonName(v.drop);
  EXPECT_EQ(v.eth_dst, kGuestMac);
  EXPECT_EQ(v.eth_src, kDefaultOurMac);
  EXPECT_EQ(v.src, *Addr6::Parse(from));
  EXPECT_EQ(v.dst, *Addr6::Parse(to));
  EXPECT_EQ(v.icmp_type, v.is_v4() ? kIcmpEchoReply : kIcmp6EchoReply);
  EXPECT_EQ(v.icmp_id, id);
  EXPECT_EQ(v.icmp_seq, seq);
  EXPECT_EQ(Bytes(r.begin() + v.payload_off, r.end()), data);
}

TEST(TapIcmp, EchoThroughPingSocketsComesBackWithTheGuestsIdentifier) {
  std::string skip = InFreshNetns([](std::string& skip) {
    WriteProc("/proc/sys/net/ipv4/ping_group_range", "0 0");
    BringLoopbackUp();
    TapIcmpHarness h;
    if (!(skip = h.Init()).empty()) return;
    const Bytes data = {'r', 'i', 'n', 'g', 'f', 'w', 'd', 0, 1, 2, 3};

    ASSERT_TRUE(h.Send(EchoRequest("192.0.2.10", "127.0.0.1", 0x1234, 5, data)));
    h.RunUntilFrames(1);
    ASSERT_EQ(h.sink_.frames.size(), 1u);
    ExpectEchoReply(h.sink_.frames[0], "127.0.0.1", "192.0.2.10", 0x1234, 5, data);

    // The same identifier and destination: the same flow.
    ASSERT_TRUE(h.Send(EchoRequest("192.0.2.10", "127.0.0.1", 0x1234, 6, data)));
    h.RunUntilFrames(2);
    ASSERT_EQ(h.sink_.frames.size(), 2u);
    ExpectEchoReply(h.sink_.frames[1], "127.0.0.1", "192.0.2.10", 0x1234, 6, data);
    EXPECT_EQ(h.icmp_->stats().flows_created, 1u);

    // The gateway's address is the host's loopback; the reply comes from it.
    ASSERT_TRUE(h.Send(EchoRequest("192.0.2.10", "192.0.2.1", 7, 1, data)));
    h.RunUntilFrames(3);
    ASSERT_EQ(h.sink_.frames.size(), 3u);
    ExpectEchoReply(h.sink_.frames[2], "192.0.2.1", "192.0.2.10", 7, 1, data);

    // ICMPv6 to ::1.
    ASSERT_TRUE(h.Send(EchoRequest("2001:db8:1::10", "::1", 0xabcd, 9, data)));
    h.RunUntilFrames(4);
    ASSERT_EQ(h.sink_.frames.size(), 4u);
    ExpectEchoReply(h.sink_.frames[3], "::1", "2001:db8:1::10", 0xabcd, 9, data);
    EXPECT_EQ(h.icmp_->stats().replies, 4u);
    EXPECT_EQ(h.icmp_->active(), 3u);

    // A bad checksum is dropped; other ICMP is not ours.
    Bytes bad = EchoRequest("192.0.2.10", "127.0.0.1", 0x1234, 10, data);
    bad.back() ^= 1;
    EXPECT_TRUE(h.Send(bad));
    EXPECT_EQ(h.icmp_->stats().dropped, 1u);
    Bytes reply = EchoRequest("192.0.2.10", "127.0.0.1", 0x1234, 10, data);
    reply[34] = 0;  // an echo reply from the guest
    testing::FixL4Checksum(reply, 2);
    EXPECT_FALSE(h.Send(reply));

    // Idle flows expire; a stale completion of a closed slot is ignored.
    h.icmp_->Expire(NowNs() + TapIcmp::kDefaultIdleNs + 1'000'000'000);
    EXPECT_EQ(h.icmp_->active(), 0u);
    EXPECT_EQ(h.icmp_->stats().flows_expired, 3u);
    io_uring_cqe stale{};
    stale.res = POLLIN;
    h.icmp_->HandleCompletion(stale, UserData{kind::kTapPing, 0, 0}, NowNs(), h.sink_);
    EXPECT_EQ(h.sink_.frames.size(), 4u);
  });
  if (!skip.empty()) GTEST_SKIP() << skip;
}

TEST(TapIcmp, MoreFlowsThanSlotsEvictsTheLeastRecentlyUsed) {
  std::string skip = InFreshNetns([](std::string& skip) {
    WriteProc("/proc/sys/net/ipv4/ping_group_range", "0 0");
    BringLoopbackUp();
    TapIcmpHarness h;
    if (!(skip = h.Init()).empty()) return;  // 4 slots
    for (uint16_t id = 1; id <= 6; id++)
      ASSERT_TRUE(h.Send(EchoRequest("192.0.2.10", "127.0.0.1", id, 1, {})));
    EXPECT_EQ(h.icmp_->active(), 4u);
    EXPECT_EQ(h.icmp_->stats().flows_evicted, 2u);
    h.RunUntilFrames(4);
    // The evicted flows' replies are lost with their sockets; the others
    // come back with their own identifiers.
    ASSERT_EQ(h.sink_.frames.size(), 4u);
    for (const Bytes& f : h.sink_.frames) {
      FrameView v = ParseFrame(f);
      EXPECT_GE(v.icmp_id, 3);
    }
  });
  if (!skip.empty()) GTEST_SKIP() << skip;
}

TEST(TapIcmp, WithoutPermissionOneClearLogLineAndDrops) {
  std::string log_path = ::testing::TempDir() + "tap_icmp_eacces.log";
  std::remove(log_path.c_str());
  ASSERT_TRUE(log::SetFile(log_path).ok());
  std::string skip = InFreshNetns([](std::string& skip) {
    // A new namespace has the kernel's default range "1 0": nobody.
    BringLoopbackUp();
    TapIcmpHarness h;
    if (!(skip = h.Init()).empty()) return;
    for (uint16_t seq = 1; seq <= 3; seq++) {
      EXPECT_TRUE(h.Send(EchoRequest("192.0.2.10", "127.0.0.1", 1, seq, {})));
      EXPECT_TRUE(h.Send(EchoRequest("2001:db8:1::10", "::1", 1, seq, {})));
    }
    EXPECT_EQ(h.icmp_->stats().not_permitted, 6u);
    EXPECT_EQ(h.icmp_->active(), 0u);
    EXPECT_TRUE(h.sink_.frames.empty());
  });
  ASSERT_TRUE(log::SetFile("").ok());
  if (!skip.empty()) GTEST_SKIP() << skip;
  std::ifstream in(log_path);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    if (line.find("ping_group_range") == std::string::npos) continue;
    lines++;
    EXPECT_NE(line.find("net.ipv4.ping_group_range (\"1 0\")"), std::string::npos) << line;
    EXPECT_NE(line.find("group 0"), std::string::npos) << line;
  }
  EXPECT_EQ(lines, 1);
  std::remove(log_path.c_str());
}

}  // namespace
}  // namespace ringfwd
