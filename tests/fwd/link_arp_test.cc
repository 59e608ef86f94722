// ARP through LinkServices, and the dispatcher's learning and routing.
#include <netinet/in.h>

#include "fwd/link_services.h"
#include "gtest/gtest.h"
#include "tests/fwd/frame_test_util.h"

namespace ringfwd {
namespace {

using testing::Bytes;
using testing::kGuestMac;

// An ARP request as the guest's kernel sends it: who has 192.0.2.1? Tell
// 192.0.2.10 (52:54:00:12:34:56).
const Bytes kArpRequest = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // destination: broadcast
    0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // source: the guest
    0x08, 0x06,                          // ARP
    0x00, 0x01,                          // hardware: Ethernet
    0x08, 0x00,                          // protocol: IPv4
    0x06, 0x04,                          // sizes
    0x00, 0x01,                          // request
    0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // sender MAC
    0xc0, 0x00, 0x02, 0x0a,              // sender IP 192.0.2.10
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // target MAC: unknown
    0xc0, 0x00, 0x02, 0x01,              // target IP 192.0.2.1
};

Bytes WithTarget(Bytes f, uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  f[38] = a;
  f[39] = b;
  f[40] = c;
  f[41] = d;
  return f;
}

class LinkArpTest : public ::testing::Test {
 protected:
  // Runs `f` through ParseFrame and Handle; returns what Handle said.
  bool Offer(const Bytes& f) {
    FrameView v = ParseFrame(f);
    EXPECT_TRUE(v.ok()) << DropReasonName(v.drop);
    return services_.Handle(v, f, sink_);
  }

  LinkConfig config_ = testing::TestConfig();
  LinkState state_;
  LinkServices services_{config_, state_};
  testing::VecSink sink_;
};

TEST_F(LinkArpTest, AnswersForTheGatewayWithOurMacAndLearnsTheGuest) {
  EXPECT_FALSE(state_.guest_mac_known);
  ASSERT_TRUE(Offer(kArpRequest));
  EXPECT_TRUE(state_.guest_mac_known);
  EXPECT_EQ(state_.guest_mac, kGuestMac);
  ASSERT_EQ(sink_.frames.size(), 1u);
  const Bytes& r = sink_.frames[0];
  ASSERT_EQ(r.size(), 60u);  // padded to the Ethernet minimum
  const Bytes expected = {
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,                          // to the guest
      0x02, 0x52, 0x46, 0x57, 0x44, 0x01,                          // from us
      0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02,  // reply
      0x02, 0x52, 0x46, 0x57, 0x44, 0x01,                          // 192.0.2.1 is at our MAC
      0xc0, 0x00, 0x02, 0x01,                                      //
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,                          // to the asker
      0xc0, 0x00, 0x02, 0x0a,
  };
  EXPECT_EQ(Bytes(r.begin(), r.begin() + 42), expected);
  EXPECT_EQ(Bytes(r.begin() + 42, r.end()), Bytes(18, 0));
  EXPECT_EQ(services_.counters().arp_replies, 1u);
}

TEST_F(LinkArpTest, AnswersForAnyOtherAddress) {
  ASSERT_TRUE(Offer(WithTarget(kArpRequest, 203, 0, 113, 7)));
  ASSERT_EQ(sink_.frames.size(), 1u);
  EXPECT_EQ(Bytes(sink_.frames[0].begin() + 28, sink_.frames[0].begin() + 32),
            (Bytes{203, 0, 113, 7}));
}

TEST_F(LinkArpTest, IgnoresTheGuestsOwnAddressGratuitousArpAndReplies) {
  EXPECT_TRUE(Offer(WithTarget(kArpRequest, 192, 0, 2, 10)));  // its own address (DAD)
  Bytes probe = WithTarget(kArpRequest, 192, 0, 2, 10);
  probe[28] = probe[29] = probe[30] = probe[31] = 0;  // RFC 5227 probe for its own address
  EXPECT_TRUE(Offer(probe));
  Bytes reply = kArpRequest;
  reply[21] = 2;
  EXPECT_TRUE(Offer(reply));
  EXPECT_TRUE(sink_.frames.empty());
  EXPECT_EQ(services_.counters().arp_ignored, 3u);
  EXPECT_EQ(services_.counters().arp_replies, 0u);
}

TEST_F(LinkArpTest, NoAnswersWithoutIpv4OrWithAFullSink) {
  sink_.refuse = true;
  EXPECT_TRUE(Offer(kArpRequest));
  EXPECT_EQ(services_.counters().sink_full, 1u);
  sink_.refuse = false;
  config_.has_v4 = false;
  EXPECT_TRUE(Offer(kArpRequest));
  EXPECT_TRUE(sink_.frames.empty());
}

TEST_F(LinkArpTest, GuestTrafficElsewhereIsNotALinkService) {
  Bytes udp = testing::Ipv4Frame(kDefaultOurMac, "192.0.2.10", "203.0.113.5", IPPROTO_UDP,
                                 testing::UdpHeader(40000, 53, Bytes{1, 2, 3}));
  testing::FixL4Checksum(udp, 6);
  EXPECT_FALSE(Offer(udp));
  EXPECT_TRUE(state_.guest_mac_known);  // learned all the same
  Bytes echo = testing::Ipv6Frame(kDefaultOurMac, "2001:db8:1::10", "2001:db8:2::1", IPPROTO_ICMPV6,
                                  Bytes{128, 0, 0, 0, 0, 1, 0, 1});
  testing::FixL4Checksum(echo, 2);
  EXPECT_FALSE(Offer(echo));
  EXPECT_TRUE(sink_.frames.empty());
  // A view that did not parse is never consumed.
  Bytes cut(kArpRequest.begin(), kArpRequest.begin() + 20);
  EXPECT_FALSE(services_.Handle(ParseFrame(cut), cut, sink_));
}

TEST_F(LinkArpTest, DoesNotLearnMulticastOrOurOwnSource) {
  Bytes f = kArpRequest;
  f[6] = 0x03;  // multicast source bit
  Offer(f);
  EXPECT_FALSE(state_.guest_mac_known);
  std::copy(config_.our_mac.begin(), config_.our_mac.end(), f.begin() + 6);
  Offer(f);
  EXPECT_FALSE(state_.guest_mac_known);
}

}  // namespace
}  // namespace ringfwd
