// TapTcp against the kernel: a real ring and a TCP server on the loopback
// (the gateway's address maps to it), with frames from a pretend guest.
#include "fwd/tap_tcp.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "fwd/kinds.h"
#include "fwd/packet.h"
#include "fwd/tap_udp.h"
#include "gtest/gtest.h"

namespace ringfwd {
namespace {

constexpr int64_t kSec = 1'000'000'000;

struct VectorSink : FrameSink {
  std::vector<uint8_t> buf = std::vector<uint8_t>(70000);
  std::vector<std::vector<uint8_t>> frames;
  std::span<uint8_t> Reserve(size_t max_len) override {
    return max_len <= buf.size() ? std::span<uint8_t>(buf.data(), max_len) : std::span<uint8_t>();
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

// The TSecr of a frame's timestamp option; false if it has none.
bool Tsecr(const std::vector<uint8_t>& frame, uint32_t* ecr) {
  FrameView v = ParseFrame(frame);
  if (!v.ok()) return false;
  std::span<const uint8_t> o =
      std::span<const uint8_t>(frame).subspan(v.tcp_opt_off, v.tcp_opt_len);
  for (size_t i = 0; i + kTsOptLen - 2 <= o.size(); i++) {
    if (o[i] == 8 && o[i + 1] == 10) {
      *ecr = (uint32_t{o[i + 6]} << 24) | (uint32_t{o[i + 7]} << 16) | (uint32_t{o[i + 8]} << 8) |
             o[i + 9];
      return true;
    }
  }
  return false;
}

class TapTcpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = Ring::Create(256);
    ASSERT_TRUE(r.ok());
    ring_ = std::move(*r);
    config_.has_v4 = true;
    config_.addr4 = In4("192.0.2.2");
    config_.gw4 = In4("192.0.2.1");
    config_.mtu = 1500;
    state_.guest_mac = {0x02, 0, 0, 0, 0, 0x22};
    state_.guest_mac_known = true;
    listener_.Reset(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ASSERT_EQ(listen(listener_.get(), 4096), 0);
    socklen_t len = sizeof(a);
    getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    udp_ = std::make_unique<TapUdp>(ring_.get(), config_, state_, &host_, &sink_, 1514,
                                    TapUdpOptions{});
  }

  std::unique_ptr<TapTcp> Make(size_t max_flows) {
    TapTcpOptions o;
    o.max_flows = max_flows;
    o.sndbuf = 4 << 20;  // not this machine's tcp_wmem
    return std::make_unique<TapTcp>(ring_.get(), config_, state_, &host_, &sink_, 1514, *udp_, o);
  }

  // A segment from the guest's `gport` to the gateway's server; with `tsval`,
  // the timestamp option too (after MSS and window scale on a SYN).
  std::vector<uint8_t> Segment(uint16_t gport, uint32_t seq, uint32_t ack, uint8_t flags,
                               const std::string& data = "", bool syn_opts = false,
                               const uint32_t* tsval = nullptr) {
    FrameAddrs a;
    a.src_mac = state_.guest_mac;
    a.dst_mac = config_.our_mac;
    a.src = *Addr6::Parse("192.0.2.2");
    a.dst = *Addr6::Parse("192.0.2.1");
    static const uint8_t opts[8] = {2, 4, 0x05, 0xb4, 1, 3, 3, 7};
    TcpSegmentHeader h;
    h.sport = gport;
    h.dport = port_;
    h.seq = seq;
    h.ack = ack;
    h.flags = flags;
    h.window = window_;  // x128
    uint8_t all[20];
    size_t n = 0;
    if (syn_opts) {
      std::memcpy(all, opts, 8);
      n = 8;
    }
    if (tsval) {
      WriteTimestamp(all + n, *tsval, 0);
      n += kTsOptLen;
    }
    h.options = std::span<const uint8_t>(all, n);
    size_t off = TcpPayloadOffset(true, h.options.size());
    std::vector<uint8_t> f(off + data.size());
    std::memcpy(f.data() + off, data.data(), data.size());
    f.resize(FinishTcpFrame(f, a, h, data.size()));
    return f;
  }

  // The server's side of the flow's connection (invalid after 2 s without).
  Fd AcceptServer() {
    pollfd p{listener_.get(), POLLIN, 0};
    if (poll(&p, 1, 2000) != 1) return Fd();
    return Fd(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  }

  void Feed(TapTcp& tcp, const std::vector<std::vector<uint8_t>>& frames, int64_t now) {
    batch_.Clear();
    for (const auto& f : frames) {
      FrameView v = ParseFrame(f);
      ASSERT_TRUE(v.ok()) << DropReasonName(v.drop);
      ASSERT_TRUE(batch_.Add(v, f));
    }
    batch_.Group();
    for (size_t g = 0; g < batch_.group_count(); g++) tcp.HandleGroup(batch_, batch_.group(g), now);
  }

  void Pump(TapTcp& tcp, const std::function<bool()>& done, int64_t now) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    for (int i = 0; i < 300 && !done() && std::chrono::steady_clock::now() < deadline; i++) {
      ring_->RunOnce(10, [&](const io_uring_cqe& cqe) {
        UserData ud = UserData::Unpack(cqe.user_data);
        if (ud.kind >= kind::kTapTcp && ud.kind <= kind::kTapTcpConnect)
          tcp.HandleCompletion(cqe, ud, now);
      });
    }
  }

  std::unique_ptr<Ring> ring_;
  LinkConfig config_;
  LinkState state_;
  HostSockets host_;
  VectorSink sink_;
  FrameBatch batch_;
  Fd listener_;
  uint16_t port_ = 0;
  uint16_t window_ = 1000;  // of the guest's segments
  std::unique_ptr<TapUdp> udp_;
};

TEST_F(TapTcpTest, SynFloodPastTheTableIsDroppedAndCounted) {
  auto tcp = Make(8);
  for (int round = 0; round < 8; round++) {
    std::vector<std::vector<uint8_t>> frames;
    for (int i = 0; i < 128; i++)
      frames.push_back(Segment(static_cast<uint16_t>(10000 + round * 128 + i), 1000, 0, kTcpSyn));
    Feed(*tcp, frames, 0);
  }
  EXPECT_EQ(tcp->active(), 8u);
  EXPECT_EQ(tcp->stats().flows_created, 8u);
  EXPECT_EQ(tcp->stats().syn_dropped, 8u * 128 - 8);
  // The eight that got a slot connect and get their SYN-ACK.
  Pump(
      *tcp, [&] { return sink_.frames.size() >= 8; }, 0);
  size_t synacks = 0;
  for (const auto& f : sink_.frames) {
    FrameView v = ParseFrame(f);
    ASSERT_TRUE(v.ok());
    EXPECT_TRUE(VerifyL4Checksum(v, f));
    if (v.tcp_flags == (kTcpSyn | kTcpAck) && v.tcp_ack == 1001) synacks++;
  }
  EXPECT_EQ(synacks, 8u);
  tcp->CloseAll();
  EXPECT_EQ(tcp->active(), 0u);
}

TEST_F(TapTcpTest, OutboundFlowsTakePooledSocketsAndMakeTheirOwnWhenItRunsDry) {
  auto tcp = Make(32);  // a pool of 8 (the default), filled at start
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < 12; i++)
    frames.push_back(Segment(static_cast<uint16_t>(20000 + i), 1000, 0, kTcpSyn));
  Feed(*tcp, frames, 0);
  EXPECT_EQ(tcp->stats().flows_created, 12u);
  EXPECT_EQ(tcp->stats().pool_hits, 8u);
  // Pooled or not, every flow connects and answers.
  Pump(
      *tcp, [&] { return sink_.frames.size() >= 12; }, 0);
  size_t synacks = 0;
  for (const auto& f : sink_.frames) {
    FrameView v = ParseFrame(f);
    ASSERT_TRUE(v.ok());
    if (v.tcp_flags == (kTcpSyn | kTcpAck) && v.tcp_ack == 1001) synacks++;
  }
  EXPECT_EQ(synacks, 12u);
  // The timer refills the pool.
  tcp->Tick(kSec / 10);
  Feed(*tcp, {Segment(20100, 1000, 0, kTcpSyn)}, kSec / 10);
  EXPECT_EQ(tcp->stats().pool_hits, 9u);
  tcp->CloseAll();
}

TEST_F(TapTcpTest, BadSegmentsAreDroppedOrReset) {
  auto tcp = Make(8);
  // A bad checksum: dropped and counted, nothing sent.
  std::vector<uint8_t> bad = Segment(20000, 1, 0, kTcpSyn);
  bad[bad.size() - 1] ^= 0xff;
  Feed(*tcp, {bad}, 0);
  EXPECT_EQ(tcp->stats().bad_checksum, 1u);
  EXPECT_EQ(tcp->active(), 0u);
  // An ACK of no flow: RST with the ACK's number as its sequence.
  Feed(*tcp, {Segment(20001, 5, 777, kTcpAck, "data")}, 0);
  ASSERT_EQ(sink_.frames.size(), 1u);
  FrameView v = ParseFrame(sink_.frames[0]);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v.tcp_flags, kTcpRst);
  EXPECT_EQ(v.tcp_seq, 777u);
  EXPECT_EQ(v.dport, 20001);
  // A RST of no flow: silence. SYN+FIN, SYN+RST: not a SYN that opens.
  Feed(*tcp, {Segment(20002, 5, 0, kTcpRst)}, 0);
  EXPECT_EQ(sink_.frames.size(), 1u);
  Feed(*tcp, {Segment(20003, 5, 0, kTcpSyn | kTcpFin), Segment(20004, 5, 0, kTcpSyn | kTcpRst)}, 0);
  EXPECT_EQ(tcp->active(), 0u);
}

TEST_F(TapTcpTest, HandshakeDataAckAndRetransmission) {
  auto tcp = Make(8);
  const uint32_t gseq = 0xfffffff0u;  // wraps during the test
  Feed(*tcp,
       {Segment(30000, gseq, 0, kTcpSyn, "", true), Segment(30000, gseq, 0, kTcpSyn, "", true)}, 0);
  EXPECT_EQ(tcp->stats().syn_absorbed, 1u) << "the retry while connecting";
  Pump(
      *tcp, [&] { return !sink_.frames.empty(); }, 0);
  ASSERT_EQ(sink_.frames.size(), 1u);
  FrameView sa = ParseFrame(sink_.frames[0]);
  ASSERT_TRUE(sa.ok());
  ASSERT_EQ(sa.tcp_flags, kTcpSyn | kTcpAck);
  EXPECT_EQ(sa.tcp_ack, gseq + 1);
  SynOptions o = ParseSynOptions(
      std::span<const uint8_t>(sink_.frames[0]).subspan(sa.tcp_opt_off, sa.tcp_opt_len));
  EXPECT_EQ(o.mss, 1460);
  EXPECT_EQ(o.wscale, 7);
  EXPECT_FALSE(o.ts) << "the guest did not offer timestamps";
  uint32_t iss = sa.tcp_seq;
  // The server's side of the connection.
  Fd server = AcceptServer();
  ASSERT_TRUE(server.valid());
  // The guest's ACK with data, plus a duplicate and a segment ahead of a gap.
  sink_.frames.clear();
  Feed(*tcp,
       {Segment(30000, gseq + 1, iss + 1, kTcpAck, "hello "),
        Segment(30000, gseq + 1, iss + 1, kTcpAck, "hello "),
        Segment(30000, gseq + 100, iss + 1, kTcpAck, "later")},
       0);
  EXPECT_EQ(tcp->stats().duplicate, 1u);
  EXPECT_EQ(tcp->stats().out_of_order, 1u);
  char buf[64];
  pollfd sp{server.get(), POLLIN, 0};
  ASSERT_EQ(poll(&sp, 1, 2000), 1);
  ASSERT_EQ(recv(server.get(), buf, sizeof(buf), 0), 6);
  EXPECT_EQ(std::string(buf, 6), "hello ");
  ASSERT_FALSE(sink_.frames.empty());
  FrameView ack = ParseFrame(sink_.frames.back());
  EXPECT_EQ(ack.tcp_ack, gseq + 7) << "acknowledged up to the gap";
  // The server answers: a data segment to the guest.
  sink_.frames.clear();
  ASSERT_EQ(send(server.get(), "world", 5, 0), 5);
  Pump(
      *tcp, [&] { return !sink_.frames.empty(); }, 0);
  ASSERT_EQ(sink_.frames.size(), 1u);
  FrameView d = ParseFrame(sink_.frames[0]);
  EXPECT_EQ(d.tcp_seq, iss + 1);
  EXPECT_EQ(d.tcp_flags, kTcpAck | kTcpPsh);
  EXPECT_EQ(std::string(sink_.frames[0].begin() + d.payload_off, sink_.frames[0].end()), "world");
  EXPECT_TRUE(VerifyL4Checksum(d, sink_.frames[0]));
  // Not acknowledged: after the timeout the same bytes go again.
  sink_.frames.clear();
  tcp->Tick(2 * kSec);
  EXPECT_EQ(tcp->stats().retransmits, 1u);
  ASSERT_EQ(sink_.frames.size(), 1u);
  FrameView r = ParseFrame(sink_.frames[0]);
  EXPECT_EQ(r.tcp_seq, iss + 1);
  EXPECT_EQ(std::string(sink_.frames[0].begin() + r.payload_off, sink_.frames[0].end()), "world");
  // Acknowledged: the bytes leave the socket; nothing more is resent.
  sink_.frames.clear();
  Feed(*tcp, {Segment(30000, gseq + 7, iss + 6, kTcpAck)}, 2 * kSec);
  EXPECT_EQ(tcp->stats().bytes_out, 5u);
  tcp->Tick(10 * kSec);
  EXPECT_EQ(tcp->stats().retransmits, 1u);
  // The guest's RST closes the flow; the server sees a reset.
  Feed(*tcp, {Segment(30000, gseq + 7, 0, kTcpRst)}, 10 * kSec);
  EXPECT_EQ(tcp->active(), 0u);
  // The socket goes once the ring dropped its poll (the daemon's loop
  // submits the removal on its next wait).
  Pump(
      *tcp, [&] { return poll(&sp, 1, 0) == 1; }, 10 * kSec);
  ASSERT_EQ(poll(&sp, 1, 2000), 1);
  EXPECT_LT(recv(server.get(), buf, sizeof(buf), 0), 0);
  EXPECT_EQ(errno, ECONNRESET);
}

TEST_F(TapTcpTest, TimestampsAreEchoedAndDuplicateAcksHoldTheWindow) {
  auto tcp = Make(8);
  const uint32_t gseq = 1000;
  uint32_t ts = 5000;
  Feed(*tcp, {Segment(30001, gseq, 0, kTcpSyn, "", true, &ts)}, 0);
  Pump(
      *tcp, [&] { return !sink_.frames.empty(); }, 0);
  ASSERT_EQ(sink_.frames.size(), 1u);
  FrameView sa = ParseFrame(sink_.frames[0]);
  ASSERT_EQ(sa.tcp_flags, kTcpSyn | kTcpAck);
  SynOptions o = ParseSynOptions(
      std::span<const uint8_t>(sink_.frames[0]).subspan(sa.tcp_opt_off, sa.tcp_opt_len));
  EXPECT_TRUE(o.ts) << "the guest offered timestamps: accepted";
  uint32_t ecr = 0;
  ASSERT_TRUE(Tsecr(sink_.frames[0], &ecr));
  EXPECT_EQ(ecr, 5000u);
  uint32_t iss = sa.tcp_seq;
  Fd server = AcceptServer();
  ASSERT_TRUE(server.valid());
  // In-order data, then a segment ahead of a gap with a newer TSval.
  sink_.frames.clear();
  uint32_t ts1 = 5001, ts2 = 5002;
  Feed(*tcp,
       {Segment(30001, gseq + 1, iss + 1, kTcpAck, "abc", false, &ts1),
        Segment(30001, gseq + 100, iss + 1, kTcpAck, "later", false, &ts2)},
       0);
  ASSERT_GE(sink_.frames.size(), 2u) << "an ACK and at least one duplicate";
  uint16_t window = 0;
  for (size_t i = 0; i < sink_.frames.size(); i++) {
    FrameView a = ParseFrame(sink_.frames[i]);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a.tcp_ack, gseq + 4) << "frame " << i;
    EXPECT_EQ(a.payload_len, 0u);
    if (i == 0) window = a.tcp_window;
    EXPECT_EQ(a.tcp_window, window) << "frame " << i << ": a changed window is no duplicate";
    ASSERT_TRUE(Tsecr(sink_.frames[i], &ecr));
    EXPECT_EQ(ecr, 5001u) << "the TSval past the gap is not echoed";
  }
  // The window is the send buffer's room for unsent bytes (half of 4 MiB),
  // not what the kernel's default buffer would hold (tens of KiB).
  EXPECT_GE(uint64_t{window} << 7, uint64_t{1} << 20);
  // Data toward the guest carries the option and fits the MSS with it.
  sink_.frames.clear();
  std::string big(4000, 'x');
  ASSERT_EQ(send(server.get(), big.data(), big.size(), 0), static_cast<ssize_t>(big.size()));
  Pump(
      *tcp, [&] { return sink_.frames.size() >= 3; }, 0);
  ASSERT_GE(sink_.frames.size(), 3u);
  FrameView d = ParseFrame(sink_.frames[0]);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.tcp_opt_len, kTsOptLen);
  EXPECT_EQ(d.payload_len, 1460u - kTsOptLen) << "RFC 6691: the option comes out of the MSS";
  ASSERT_TRUE(Tsecr(sink_.frames[0], &ecr));
  EXPECT_EQ(ecr, 5001u);
  EXPECT_TRUE(VerifyL4Checksum(d, sink_.frames[0]));
}

TEST_F(TapTcpTest, ADuplicateAckWithTheSameWindowResendsAtOnce) {
  auto tcp = Make(8);
  const uint32_t gseq = 2000;
  Feed(*tcp, {Segment(30002, gseq, 0, kTcpSyn, "", true)}, 0);
  Pump(
      *tcp, [&] { return !sink_.frames.empty(); }, 0);
  ASSERT_EQ(sink_.frames.size(), 1u);
  uint32_t iss = ParseFrame(sink_.frames[0]).tcp_seq;
  Fd server = AcceptServer();
  ASSERT_TRUE(server.valid());
  Feed(*tcp, {Segment(30002, gseq + 1, iss + 1, kTcpAck)}, 0);  // established
  // Two segments toward the guest.
  sink_.frames.clear();
  std::string data(2000, 'y');
  ASSERT_EQ(send(server.get(), data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
  Pump(
      *tcp, [&] { return sink_.frames.size() >= 2; }, 0);
  ASSERT_EQ(sink_.frames.size(), 2u);
  // The guest acknowledges nothing new, with a new window: a window update,
  // not a loss.
  sink_.frames.clear();
  window_ = 1001;
  std::vector<uint8_t> update = Segment(30002, gseq + 1, iss + 1, kTcpAck);
  Feed(*tcp, {update}, 0);
  EXPECT_EQ(tcp->stats().fast_retransmits, 0u);
  EXPECT_TRUE(sink_.frames.empty());
  // Then the same ACK and window again: a loss, the head goes again at once.
  Feed(*tcp, {update}, 0);
  EXPECT_EQ(tcp->stats().fast_retransmits, 1u);
  ASSERT_EQ(sink_.frames.size(), 1u);
  FrameView r = ParseFrame(sink_.frames[0]);
  EXPECT_EQ(r.tcp_seq, iss + 1);
  EXPECT_GT(r.payload_len, 0u);
  EXPECT_EQ(tcp->stats().retransmits, 0u) << "no timeout involved";
}

}  // namespace
}  // namespace ringfwd
