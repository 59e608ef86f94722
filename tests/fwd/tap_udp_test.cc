#include "fwd/tap_udp.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "fwd/kinds.h"
#include "fwd/packet.h"
#include "gtest/gtest.h"

namespace ringfwd {
namespace {

// `n` different UDP ports that nothing holds now (the kernel's ephemeral
// picks; all bound at once, so no two are the same), or fewer on error.
std::vector<uint16_t> FreeUdpPorts(int n) {
  std::vector<Fd> held;
  std::vector<uint16_t> ports;
  for (int i = 0; i < n; i++) {
    Fd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    socklen_t len = sizeof(a);
    if (!s || bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0 ||
        getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) < 0)
      break;
    ports.push_back(ntohs(a.sin_port));
    held.push_back(std::move(s));
  }
  return ports;  // `held` closes them
}

constexpr int64_t kSec = 1'000'000'000;

// Frames the translator sends to the guest, kept in order.
struct VectorSink : FrameSink {
  std::vector<uint8_t> buf = std::vector<uint8_t>(70000);
  std::vector<std::vector<uint8_t>> frames;
  bool full = false;  // a link whose send queue is full
  std::span<uint8_t> Reserve(size_t max_len) override {
    return !full && max_len <= buf.size() ? std::span<uint8_t>(buf.data(), max_len)
                                          : std::span<uint8_t>();
  }
  void Commit(size_t len) override {
    if (len) frames.emplace_back(buf.begin(), buf.begin() + len);
  }
};

in_addr In4(const char* s) {
  in_addr a{};
  inet_pton(AF_INET, s, &a);
  return a;
}

class TapUdpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = Ring::Create(64);
    ASSERT_TRUE(r.ok());
    ring_ = std::move(*r);
    config_.has_v4 = true;
    config_.addr4 = In4("192.0.2.2");
    config_.gw4 = In4("192.0.2.1");
    state_.guest_mac = {0x02, 0, 0, 0, 0, 0x22};
    state_.guest_mac_known = true;
    // A server on the loopback: the gateway's address maps to it.
    server_.Reset(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(server_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    socklen_t len = sizeof(a);
    getsockname(server_.get(), reinterpret_cast<sockaddr*>(&a), &len);
    server_port_ = ntohs(a.sin_port);
  }

  std::unique_ptr<TapUdp> Make(size_t max_flows) {
    TapUdpOptions o;
    o.max_flows = max_flows;
    return std::make_unique<TapUdp>(ring_.get(), config_, state_, &host_, &sink_, 65534, o);
  }

  // The guest sends `payload` from port `gport` to the gateway's server.
  void GuestSends(TapUdp& udp, uint16_t gport, const std::string& payload, int64_t now) {
    FrameAddrs a;
    a.src_mac = state_.guest_mac;
    a.dst_mac = config_.our_mac;
    a.src = *Addr6::Parse("192.0.2.2");
    a.dst = *Addr6::Parse("192.0.2.1");
    frame_.assign(2000, 0);
    size_t len = BuildUdpFrame(
        frame_, a, gport, server_port_,
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(payload.data()), payload.size()));
    frame_.resize(len);
    FrameView v = ParseFrame(frame_);
    ASSERT_TRUE(v.ok());
    batch_.Clear();
    ASSERT_TRUE(batch_.Add(v, frame_));
    batch_.Group();
    ASSERT_EQ(batch_.group_count(), 1u);
    udp.HandleGroup(batch_, batch_.group(0), now);
    ring_->Submit();  // the sends are on the ring, as the loop's next wait submits them
  }

  // The server answers the next datagram with `reply`.
  bool ServerReplies(const std::string& reply) {
    pollfd p{server_.get(), POLLIN, 0};
    if (poll(&p, 1, 2000) != 1) return false;
    char buf[2048];
    sockaddr_storage from{};
    socklen_t len = sizeof(from);
    if (recvfrom(server_.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &len) < 0)
      return false;
    return sendto(server_.get(), reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from),
                  len) == static_cast<ssize_t>(reply.size());
  }

  // Runs the ring until the sink holds `n` frames (bounded).
  void PumpUntil(TapUdp& udp, size_t n, int64_t now) {
    Pump(
        udp, [&] { return sink_.frames.size() >= n; }, now);
  }
  // Runs the ring until `done` (bounded).
  void Pump(TapUdp& udp, const std::function<bool()>& done, int64_t now) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    for (int i = 0; i < 300 && !done() && std::chrono::steady_clock::now() < deadline; i++) {
      ring_->RunOnce(10, [&](const io_uring_cqe& cqe) {
        UserData ud = UserData::Unpack(cqe.user_data);
        if (ud.kind == kind::kTapUdp || ud.kind == kind::kTapUdpSend)
          udp.HandleCompletion(cqe, ud, now);
      });
    }
  }

  std::unique_ptr<Ring> ring_;
  LinkConfig config_;
  LinkState state_;
  HostSockets host_;
  VectorSink sink_;
  FrameBatch batch_;
  std::vector<uint8_t> frame_;
  Fd server_;
  uint16_t server_port_ = 0;
};

TEST_F(TapUdpTest, RepliesComeBackAsFramesFromTheAddressTheGuestWroteTo) {
  auto udp = Make(16);
  GuestSends(*udp, 40001, "ping", 1000 * kSec);
  ASSERT_TRUE(ServerReplies("pong"));
  PumpUntil(*udp, 1, 1000 * kSec);
  ASSERT_EQ(sink_.frames.size(), 1u);
  FrameView v = ParseFrame(sink_.frames[0]);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(VerifyL4Checksum(v, sink_.frames[0]));
  EXPECT_EQ(v.src.ToString(), "192.0.2.1");
  EXPECT_EQ(v.dst.ToString(), "192.0.2.2");
  EXPECT_EQ(v.sport, server_port_);
  EXPECT_EQ(v.dport, 40001);
  EXPECT_EQ(v.eth_dst, state_.guest_mac);
  EXPECT_EQ(v.eth_src, config_.our_mac);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(sink_.frames[0].data()) + v.payload_off,
                        v.payload_len),
            "pong");
  EXPECT_EQ(udp->stats().datagrams_in, 1u);
  EXPECT_EQ(udp->stats().datagrams_out, 1u);
}

TEST_F(TapUdpTest, AFullLinkLeavesRepliesInTheSocketUntilThereIsRoom) {
  auto udp = Make(16);
  GuestSends(*udp, 40005, "ping", 1000 * kSec);
  sink_.full = true;
  ASSERT_TRUE(ServerReplies("pong"));
  // The reply's poll completes; nothing fits.
  Pump(
      *udp, [&] { return udp->HasBlocked(); }, 1000 * kSec);
  EXPECT_TRUE(sink_.frames.empty());
  EXPECT_TRUE(udp->HasBlocked());
  EXPECT_FALSE(udp->HasReady()) << "a blocked flow must not keep the loop busy";
  udp->RunBlocked(1000 * kSec);
  EXPECT_TRUE(udp->HasBlocked()) << "still no room";
  sink_.full = false;
  udp->RunBlocked(1000 * kSec);
  EXPECT_FALSE(udp->HasBlocked());
  ASSERT_EQ(sink_.frames.size(), 1u);
  EXPECT_EQ(udp->stats().dropped, 0u) << "nothing lost, only delayed";
  EXPECT_EQ(udp->stats().datagrams_in, 1u);
}

TEST_F(TapUdpTest, OneWayFlowsExpireAfter30sAnsweredOnesAfter120s) {
  auto udp = Make(16);
  int64_t t0 = 1000 * kSec;
  GuestSends(*udp, 40002, "one way", t0);
  GuestSends(*udp, 40003, "answered", t0);
  ASSERT_TRUE(ServerReplies("x"));  // answers the first datagram it got
  ASSERT_TRUE(ServerReplies("y"));
  PumpUntil(*udp, 2, t0);
  ASSERT_EQ(sink_.frames.size(), 2u);
  EXPECT_EQ(udp->active(), 2u);
  udp->Expire(t0 + 29 * kSec);
  EXPECT_EQ(udp->active(), 2u);
  // Both flows got replies; a third, one-way flow shows the 30 s rule.
  GuestSends(*udp, 40004, "no answer", t0);
  udp->Expire(t0 + 31 * kSec);
  EXPECT_EQ(udp->active(), 2u) << "the unanswered flow expired at 30 s";
  udp->Expire(t0 + 119 * kSec);
  EXPECT_EQ(udp->active(), 2u);
  udp->Expire(t0 + 121 * kSec);
  EXPECT_EQ(udp->active(), 0u);
  EXPECT_EQ(udp->stats().flows_expired, 3u);
}

TEST_F(TapUdpTest, AFullTableEvictsTheLeastRecentlyUsedFlow) {
  auto udp = Make(2);
  GuestSends(*udp, 40010, "a", 1 * kSec);
  GuestSends(*udp, 40011, "b", 2 * kSec);
  GuestSends(*udp, 40010, "a again", 3 * kSec);  // 40011 is now the oldest
  GuestSends(*udp, 40012, "c", 4 * kSec);
  EXPECT_EQ(udp->active(), 2u);
  EXPECT_EQ(udp->stats().flows_evicted, 1u);
  EXPECT_EQ(udp->stats().flows_created, 3u);
  // 40010 survived: its next datagram reuses the flow.
  GuestSends(*udp, 40010, "a third time", 5 * kSec);
  EXPECT_EQ(udp->stats().flows_created, 3u);
}

// Sends are queued on the ring naming their socket by number: a flow
// evicted before the ring took its sends must not close its socket first
// (the number would go to the next flow's socket, and the datagram with
// it, from the wrong port).
TEST_F(TapUdpTest, AFlowEvictedWithSendsQueuedSendsThemFromItsOwnSocket) {
  auto udp = Make(1);
  auto frame = [&](uint16_t gport, const std::string& payload) {
    FrameAddrs a;
    a.src_mac = state_.guest_mac;
    a.dst_mac = config_.our_mac;
    a.src = *Addr6::Parse("192.0.2.2");
    a.dst = *Addr6::Parse("192.0.2.1");
    std::vector<uint8_t> f(2000, 0);
    f.resize(BuildUdpFrame(f, a, gport, server_port_,
                           std::span<const uint8_t>(
                               reinterpret_cast<const uint8_t*>(payload.data()), payload.size())));
    return f;
  };
  // Ports nothing holds now: fixed ones may still be bound by the ring of
  // a test process that just exited (its teardown runs after the exit).
  std::vector<uint16_t> ports = FreeUdpPorts(2);
  ASSERT_EQ(ports.size(), 2u);
  const uint16_t pa = ports[0], pb = ports[1];
  std::vector<uint8_t> fa = frame(pa, "from-a"), fb = frame(pb, "from-b");
  FrameBatch batch;
  ASSERT_TRUE(batch.Add(ParseFrame(fa), fa));
  ASSERT_TRUE(batch.Add(ParseFrame(fb), fb));
  batch.Group();
  ASSERT_EQ(batch.group_count(), 2u);
  // One batch, nothing submitted in between: b's flow evicts a's.
  for (size_t g = 0; g < batch.group_count(); g++)
    udp->HandleGroup(batch, batch.group(g), 1000 * kSec);
  ring_->Submit();
  EXPECT_EQ(udp->stats().flows_evicted, 1u);
  std::map<std::string, uint16_t> from;
  for (int i = 0; i < 2; i++) {
    pollfd p{server_.get(), POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 2000), 1);
    char buf[64];
    sockaddr_in src{};
    socklen_t len = sizeof(src);
    ssize_t n =
        recvfrom(server_.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&src), &len);
    ASSERT_GT(n, 0);
    from[std::string(buf, n)] = ntohs(src.sin_port);
  }
  EXPECT_EQ(from["from-a"], pa);
  EXPECT_EQ(from["from-b"], pb);
}

TEST_F(TapUdpTest, MapsTheGatewayAndDnsAndLeavesTheRest) {
  config_.dns4 = {In4("198.51.100.53")};
  TapUdpOptions o;
  o.dns4_target = *Addr6::Parse("203.0.113.53");
  TapUdp udp(ring_.get(), config_, state_, &host_, &sink_, 1514, o);
  EXPECT_EQ(udp.MapTarget(*Addr6::Parse("192.0.2.1"), 80).ToString(), "127.0.0.1");
  EXPECT_EQ(udp.MapTarget(*Addr6::Parse("198.51.100.53"), 53).ToString(), "203.0.113.53");
  EXPECT_EQ(udp.MapTarget(*Addr6::Parse("198.51.100.53"), 54).ToString(), "198.51.100.53");
  EXPECT_EQ(udp.MapTarget(*Addr6::Parse("198.51.100.9"), 53).ToString(), "198.51.100.9");
  config_.map_host_loopback = false;
  EXPECT_EQ(udp.MapTarget(*Addr6::Parse("192.0.2.1"), 80).ToString(), "192.0.2.1");
}

}  // namespace
}  // namespace ringfwd
