// DHCPv4 through LinkServices: one fixed lease.
#include <netinet/in.h>

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "fwd/link_services.h"
#include "gtest/gtest.h"
#include "tests/fwd/frame_test_util.h"

namespace ringfwd {
namespace {

using testing::Bytes;
using testing::ExpectChecksumsValid;
using testing::Get16;
using testing::Get32;
using testing::kGuestMac;

constexpr uint8_t kXid[4] = {0xde, 0xad, 0xbe, 0xef};

// The BOOTP message of a DHCPDISCOVER as a client like dhclient sends it:
// the fixed part written out field by field, then the options.
Bytes Discover(uint8_t type = 1, uint16_t flags = 0) {
  Bytes m;
  m.insert(m.end(), {0x01, 0x01, 0x06, 0x00});  // BOOTREQUEST, Ethernet, hlen 6, hops
  m.insert(m.end(), kXid, kXid + 4);            // xid
  m.insert(m.end(), {0x00, 0x03});              // secs
  m.insert(m.end(), {uint8_t(flags >> 8), uint8_t(flags)});
  m.insert(m.end(), 16, 0x00);  // ciaddr, yiaddr, siaddr, giaddr
  m.insert(m.end(), kGuestMac.begin(), kGuestMac.end());
  m.insert(m.end(), 10, 0x00);                                        // chaddr padding
  m.insert(m.end(), 64 + 128, 0x00);                                  // sname, file
  m.insert(m.end(), {0x63, 0x82, 0x53, 0x63});                        // magic cookie
  m.insert(m.end(), {53, 1, type});                                   // message type
  m.insert(m.end(), {55, 6, 1, 3, 6, 15, 26, 119});                   // parameter request list
  m.insert(m.end(), {57, 2, 0x05, 0xdc});                             // max message size 1500
  m.insert(m.end(), {61, 7, 1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56});  // client id
  return m;
}

// Adds options before the end; then the end option and padding to 300 bytes.
Bytes Finish(Bytes m, const Bytes& extra = {}) {
  m.insert(m.end(), extra.begin(), extra.end());
  m.push_back(255);
  if (m.size() < 300) m.resize(300, 0);
  return m;
}

Bytes DhcpFrame(const Bytes& msg, const char* src = "0.0.0.0") {
  Bytes f = testing::Ipv4Frame(kBroadcastMac, src, "255.255.255.255", IPPROTO_UDP,
                               testing::UdpHeader(68, 67, msg));
  testing::FixL4Checksum(f, 6);
  return f;
}

Bytes Request(const Bytes& requested, const Bytes& server) {
  Bytes opts = {50, 4};
  opts.insert(opts.end(), requested.begin(), requested.end());
  if (!server.empty()) {
    opts.insert(opts.end(), {54, 4});
    opts.insert(opts.end(), server.begin(), server.end());
  }
  return Finish(Discover(3), opts);
}

struct Reply {
  Bytes frame;
  Bytes msg;  // the BOOTP message
  std::multimap<uint8_t, Bytes> opts;
  Bytes search;  // option 119 parts, concatenated
};

Reply ParseReply(const Bytes& f) {
  Reply r;
  r.frame = f;
  ExpectChecksumsValid(f, "DHCP reply");
  EXPECT_EQ(Get16(f, 12), 0x0800);
  EXPECT_EQ(f[23], IPPROTO_UDP);
  EXPECT_EQ(Get16(f, 34), 67);
  EXPECT_EQ(Get16(f, 36), 68);
  r.msg.assign(f.begin() + 42, f.end());
  EXPECT_GE(r.msg.size(), 300u) << "BOOTP minimum";
  EXPECT_EQ(Get32(r.msg, 236), 0x63825363u);
  size_t i = 240;
  bool end = false;
  while (i < r.msg.size()) {
    uint8_t code = r.msg[i];
    if (code == 255) {
      end = true;
      break;
    }
    if (code == 0) {
      i++;
      continue;
    }
    size_t len = r.msg.at(i + 1);
    Bytes val(r.msg.begin() + i + 2, r.msg.begin() + i + 2 + len);
    if (code == 119) r.search.insert(r.search.end(), val.begin(), val.end());
    r.opts.emplace(code, val);
    i += 2 + len;
  }
  EXPECT_TRUE(end) << "end option";
  return r;
}

Bytes Opt(const Reply& r, uint8_t code) {
  auto it = r.opts.find(code);
  return it == r.opts.end() ? Bytes{} : it->second;
}

class LinkDhcpTest : public ::testing::Test {
 protected:
  bool Offer(const Bytes& f) {
    FrameView v = ParseFrame(f);
    EXPECT_TRUE(v.ok()) << DropReasonName(v.drop);
    return services_.Handle(v, f, sink_);
  }
  // Exactly one reply, parsed.
  Reply OnlyReply() {
    EXPECT_EQ(sink_.frames.size(), 1u);
    if (sink_.frames.size() != 1) return {};
    Reply r = ParseReply(sink_.frames[0]);
    sink_.frames.clear();
    return r;
  }

  LinkConfig config_ = testing::TestConfig();
  LinkState state_;
  LinkServices services_{config_, state_};
  testing::VecSink sink_;
};

const Bytes kLease = {192, 0, 2, 10};
const Bytes kGateway = {192, 0, 2, 1};
const char kSearch[] = "\7example\3org\0\3lab\7example\3net\0";

TEST_F(LinkDhcpTest, DiscoverGetsAnOfferWithEveryOption) {
  ASSERT_TRUE(Offer(DhcpFrame(Finish(Discover()))));
  Reply r = OnlyReply();
  ASSERT_FALSE(r.msg.empty());
  // Unicast to the offered address and the client's MAC (no broadcast flag).
  EXPECT_EQ(Bytes(r.frame.begin(), r.frame.begin() + 6), Bytes(kGuestMac.begin(), kGuestMac.end()));
  EXPECT_EQ(Bytes(r.frame.begin() + 26, r.frame.begin() + 30), kGateway);
  EXPECT_EQ(Bytes(r.frame.begin() + 30, r.frame.begin() + 34), kLease);
  EXPECT_EQ(r.msg[0], 2);
  EXPECT_EQ(Bytes(r.msg.begin() + 4, r.msg.begin() + 8), Bytes(kXid, kXid + 4));
  EXPECT_EQ(Bytes(r.msg.begin() + 16, r.msg.begin() + 20), kLease) << "yiaddr";
  EXPECT_EQ(Bytes(r.msg.begin() + 28, r.msg.begin() + 34),
            Bytes(kGuestMac.begin(), kGuestMac.end()));
  EXPECT_EQ(Opt(r, 53), Bytes{2}) << "OFFER";
  EXPECT_EQ(Opt(r, 54), kGateway);
  EXPECT_EQ(Opt(r, 51), (Bytes{0, 0, 0x0e, 0x10})) << "3600 s";
  EXPECT_EQ(Opt(r, 1), (Bytes{255, 255, 255, 0}));
  EXPECT_EQ(Opt(r, 3), kGateway);
  EXPECT_EQ(Opt(r, 6), (Bytes{198, 51, 100, 53}));
  EXPECT_EQ(Opt(r, 26), (Bytes{0xff, 0xf0})) << "MTU 65520";
  EXPECT_EQ(r.search, Bytes(kSearch, kSearch + sizeof(kSearch) - 1));
  EXPECT_EQ(services_.counters().dhcp_offers, 1u);
}

TEST_F(LinkDhcpTest, RequestForTheLeaseIsAckedAnyOtherNakedOtherServersIgnored) {
  ASSERT_TRUE(Offer(DhcpFrame(Request(kLease, kGateway))));
  Reply ack = OnlyReply();
  EXPECT_EQ(Opt(ack, 53), Bytes{5});
  EXPECT_EQ(Bytes(ack.msg.begin() + 16, ack.msg.begin() + 20), kLease);
  EXPECT_EQ(Opt(ack, 26), (Bytes{0xff, 0xf0}));

  ASSERT_TRUE(Offer(DhcpFrame(Request({192, 0, 2, 99}, kGateway))));
  Reply nak = OnlyReply();
  EXPECT_EQ(Opt(nak, 53), Bytes{6});
  EXPECT_EQ(Bytes(nak.msg.begin() + 16, nak.msg.begin() + 20), Bytes(4, 0));
  EXPECT_EQ(Opt(nak, 51), Bytes{}) << "no lease in a NAK";
  EXPECT_EQ(Bytes(nak.frame.begin(), nak.frame.begin() + 6), Bytes(6, 0xff)) << "broadcast";
  EXPECT_EQ(Bytes(nak.frame.begin() + 30, nak.frame.begin() + 34), Bytes(4, 0xff));

  ASSERT_TRUE(Offer(DhcpFrame(Request(kLease, {198, 51, 100, 1}))));
  EXPECT_TRUE(sink_.frames.empty());
  EXPECT_EQ(services_.counters().dhcp_acks, 1u);
  EXPECT_EQ(services_.counters().dhcp_naks, 1u);
  EXPECT_EQ(services_.counters().dhcp_ignored, 1u);
}

TEST_F(LinkDhcpTest, RenewingClientGetsUnicastAtItsAddressBroadcastFlagHonoured) {
  Bytes renew = Finish(Discover(3));
  std::copy(kLease.begin(), kLease.end(), renew.begin() + 12);  // ciaddr
  ASSERT_TRUE(Offer(DhcpFrame(renew, "192.0.2.10")));
  Reply r = OnlyReply();
  EXPECT_EQ(Opt(r, 53), Bytes{5});
  EXPECT_EQ(Bytes(r.frame.begin() + 30, r.frame.begin() + 34), kLease);

  ASSERT_TRUE(Offer(DhcpFrame(Finish(Discover(1, 0x8000)))));
  Reply b = OnlyReply();
  EXPECT_EQ(Bytes(b.frame.begin(), b.frame.begin() + 6), Bytes(6, 0xff));
  EXPECT_EQ(Bytes(b.frame.begin() + 30, b.frame.begin() + 34), Bytes(4, 0xff));
  EXPECT_EQ(Get16(b.msg, 10), 0x8000) << "flags echoed";
}

TEST_F(LinkDhcpTest, InformGetsOptionsWithoutALease) {
  Bytes inform = Finish(Discover(8));
  std::copy(kLease.begin(), kLease.end(), inform.begin() + 12);
  ASSERT_TRUE(Offer(DhcpFrame(inform, "192.0.2.10")));
  Reply r = OnlyReply();
  EXPECT_EQ(Opt(r, 53), Bytes{5});
  EXPECT_EQ(Opt(r, 51), Bytes{});
  EXPECT_EQ(Bytes(r.msg.begin() + 16, r.msg.begin() + 20), Bytes(4, 0));
  EXPECT_EQ(Opt(r, 6), (Bytes{198, 51, 100, 53}));
}

TEST_F(LinkDhcpTest, LongSearchListIsSplitIntoConcatenatedOptions) {
  config_.search.clear();
  Bytes expected;
  for (int i = 0; i < 12; i++) {
    std::string label(40, static_cast<char>('a' + i));
    config_.search.push_back(absl::StrCat(label, ".example"));
    expected.push_back(40);
    expected.insert(expected.end(), label.begin(), label.end());
    const char kTail[] = "\7example";
    expected.insert(expected.end(), kTail, kTail + 8);
    expected.push_back(0);
  }
  // A label too long: left out. (StrCat, not operator+, here and above: with
  // the precompiled headers gcc 12 warns falsely on string's operator+.)
  config_.search.push_back(absl::StrCat(std::string(64, 'x'), ".example"));
  ASSERT_TRUE(Offer(DhcpFrame(Finish(Discover()))));
  Reply r = OnlyReply();
  EXPECT_EQ(r.opts.count(119), 3u);  // 600 bytes: 255 + 255 + 90
  EXPECT_EQ(r.search, expected);
}

TEST_F(LinkDhcpTest, MalformedMessagesAreCountedNotAnswered) {
  Bytes csum = DhcpFrame(Finish(Discover()));
  csum[60] ^= 1;
  EXPECT_TRUE(Offer(csum));
  Bytes magic = Finish(Discover());
  magic[236] = 0;
  EXPECT_TRUE(Offer(DhcpFrame(magic)));
  Bytes overrun = Discover();
  overrun.insert(overrun.end(), {12, 200, 'h'});  // host name option longer than the message
  EXPECT_TRUE(Offer(DhcpFrame(overrun)));
  Bytes no_type = Finish(Discover());
  no_type[240] = 0;  // the type option's code becomes padding...
  no_type[241] = 0;
  no_type[242] = 0;
  EXPECT_TRUE(Offer(DhcpFrame(no_type)));
  Bytes reply_op = Finish(Discover());
  reply_op[0] = 2;
  EXPECT_TRUE(Offer(DhcpFrame(reply_op)));
  EXPECT_TRUE(sink_.frames.empty());
  EXPECT_EQ(services_.counters().bad, 5u);
}

// Every cut of the message (the UDP and IP lengths adjusted, so the frame
// itself is valid) is handled without reading outside it, and whatever is
// answered is a valid frame.
TEST_F(LinkDhcpTest, EveryTruncatedMessageIsHandledSafely) {
  Bytes full = Finish(Discover());
  for (size_t n = 0; n <= full.size(); n++) {
    Bytes cut(full.begin(), full.begin() + n);
    Bytes f = DhcpFrame(cut);
    EXPECT_TRUE(Offer(f));
    for (const Bytes& r : sink_.frames) ParseReply(r);
    if (n < 243) {
      EXPECT_TRUE(sink_.frames.empty()) << n;
    }
    sink_.frames.clear();
  }
}

// The answers reserve exactly their size, so they fit a link with a small
// MTU (576, the IPv4 minimum).
TEST_F(LinkDhcpTest, RepliesFitASmallMtuLink) {
  config_.mtu = 576;
  sink_.max_frame = 576 + 14;
  ASSERT_TRUE(Offer(DhcpFrame(Finish(Discover()))));
  ASSERT_TRUE(Offer(DhcpFrame(Request(kLease, kGateway))));
  ASSERT_TRUE(Offer(DhcpFrame(Request({192, 0, 2, 99}, kGateway))));
  ASSERT_EQ(sink_.frames.size(), 3u);
  for (size_t i = 0; i < 3; i++) {
    EXPECT_EQ(sink_.frames[i].size(), sink_.reserved[i]);
    ParseReply(sink_.frames[i]);
  }
  EXPECT_EQ(Opt(ParseReply(sink_.frames[0]), 26), (Bytes{0x02, 0x40}));
  EXPECT_EQ(services_.counters().sink_full, 0u);
}

TEST_F(LinkDhcpTest, NoIpv4NoAnswer) {
  config_.has_v4 = false;
  EXPECT_TRUE(Offer(DhcpFrame(Finish(Discover()))));
  EXPECT_TRUE(sink_.frames.empty());
}

}  // namespace
}  // namespace ringfwd
