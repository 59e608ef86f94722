// DHCPv6 through LinkServices: the guest's address, resolvers, search list.
#include <netinet/in.h>

#include <map>

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

const Bytes kClientId = {0x00, 0x01, 0x00, 0x01, 0x2a, 0x3b, 0x4c, 0x5d,  // DUID-LLT
                         0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
const Bytes kServerId = {0x00, 0x03, 0x00, 0x01, 0x02, 0x52, 0x46, 0x57, 0x44, 0x01};

// A SOLICIT as a client like dhclient -6 sends it, written out by hand.
Bytes Solicit() {
  return {
      0x01, 0x12, 0x34, 0x56,              // SOLICIT, transaction id
      0x00, 0x08, 0x00, 0x02, 0x00, 0x00,  // elapsed time
      0x00, 0x01, 0x00, 0x0e,              // client id, 14 bytes
      0x00, 0x01, 0x00, 0x01, 0x2a, 0x3b, 0x4c, 0x5d, 0x52,
      0x54, 0x00, 0x12, 0x34, 0x56, 0x00, 0x03, 0x00, 0x0c,  // IA_NA, 12 bytes
      0x0a, 0x0b, 0x0c, 0x0d,                                // IAID
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,        // T1, T2
      0x00, 0x06, 0x00, 0x04, 0x00, 0x17, 0x00, 0x18,        // ORO: DNS, domain list
  };
}

Bytes With(Bytes m, uint8_t type, const Bytes& extra = {}) {
  m[0] = type;
  m.insert(m.end(), extra.begin(), extra.end());
  return m;
}

Bytes ServerIdOption(const Bytes& id) {
  Bytes o = {0x00, 0x02, 0x00, static_cast<uint8_t>(id.size())};
  o.insert(o.end(), id.begin(), id.end());
  return o;
}

Bytes Dhcpv6Frame(const Bytes& msg, const char* dst = "ff02::1:2") {
  Bytes f = testing::Ipv6Frame({0x33, 0x33, 0, 1, 0, 2}, "fe80::5054:ff:fe12:3456", dst,
                               IPPROTO_UDP, testing::UdpHeader(546, 547, msg), 1);
  testing::FixL4Checksum(f, 6);
  return f;
}

struct Reply {
  Bytes frame;
  uint8_t type = 0;
  Bytes xid;
  std::map<uint16_t, Bytes> opts;
};

Reply ParseReply(const Bytes& f) {
  Reply r;
  r.frame = f;
  ExpectChecksumsValid(f, "DHCPv6 reply");
  EXPECT_EQ(f[20], IPPROTO_UDP);
  EXPECT_EQ(Get16(f, 54), 547);
  EXPECT_EQ(Get16(f, 56), 546);
  Bytes m(f.begin() + 62, f.end());
  if (m.size() < 4) return r;
  r.type = m[0];
  r.xid.assign(m.begin() + 1, m.begin() + 4);
  size_t i = 4;
  while (i + 4 <= m.size()) {
    size_t len = Get16(m, i + 2);
    EXPECT_LE(i + 4 + len, m.size());
    r.opts[Get16(m, i)] = Bytes(m.begin() + i + 4, m.begin() + i + 4 + len);
    i += 4 + len;
  }
  EXPECT_EQ(i, m.size());
  return r;
}

Bytes Addr(const char* s) {
  in6_addr a = testing::V6(s);
  const uint8_t* p = reinterpret_cast<const uint8_t*>(&a);
  return Bytes(p, p + 16);
}

class LinkDhcpv6Test : public ::testing::Test {
 protected:
  bool Offer(const Bytes& f) {
    FrameView v = ParseFrame(f);
    EXPECT_TRUE(v.ok()) << DropReasonName(v.drop);
    return services_.Handle(v, f, sink_);
  }
  Reply OnlyReply() {
    EXPECT_EQ(sink_.frames.size(), 1u);
    if (sink_.frames.size() != 1) return {};
    Reply r = ParseReply(sink_.frames[0]);
    sink_.frames.clear();
    return r;
  }
  void ExpectAddress(const Reply& r) {
    ASSERT_EQ(r.opts.count(3), 1u) << "IA_NA";
    const Bytes& ia = r.opts.at(3);
    ASSERT_EQ(ia.size(), 40u);
    EXPECT_EQ(Bytes(ia.begin(), ia.begin() + 4), (Bytes{0x0a, 0x0b, 0x0c, 0x0d})) << "IAID";
    EXPECT_EQ(Get32(ia, 4), 1800u) << "T1";
    EXPECT_EQ(Get32(ia, 8), 2880u) << "T2";
    EXPECT_EQ(Get16(ia, 12), 5) << "IAADDR";
    EXPECT_EQ(Get16(ia, 14), 24);
    EXPECT_EQ(Bytes(ia.begin() + 16, ia.begin() + 32), Addr("2001:db8:1::10"));
    EXPECT_EQ(Get32(ia, 32), 3600u);
    EXPECT_EQ(Get32(ia, 36), 3600u);
  }
  void ExpectCommon(const Reply& r) {
    EXPECT_EQ(r.xid, (Bytes{0x12, 0x34, 0x56}));
    EXPECT_EQ(Bytes(r.frame.begin(), r.frame.begin() + 6),
              Bytes(kGuestMac.begin(), kGuestMac.end()));
    EXPECT_EQ(Bytes(r.frame.begin() + 22, r.frame.begin() + 38), Addr("fe80::1"));
    EXPECT_EQ(Bytes(r.frame.begin() + 38, r.frame.begin() + 54), Addr("fe80::5054:ff:fe12:3456"));
    EXPECT_EQ(r.opts.count(2) ? r.opts.at(2) : Bytes{}, kServerId);
    EXPECT_EQ(r.opts.count(1) ? r.opts.at(1) : Bytes{}, kClientId);
    EXPECT_EQ(r.opts.count(23) ? r.opts.at(23) : Bytes{}, Addr("2001:db8:53::1"));
    const char kNames[] = "\7example\3org\0\3lab\7example\3net\0";
    EXPECT_EQ(r.opts.count(24) ? r.opts.at(24) : Bytes{},
              Bytes(kNames, kNames + sizeof(kNames) - 1));
  }

  LinkConfig config_ = testing::TestConfig();
  LinkState state_;
  LinkServices services_{config_, state_};
  testing::VecSink sink_;
};

TEST_F(LinkDhcpv6Test, SolicitGetsAnAdvertiseWithTheAddress) {
  ASSERT_TRUE(Offer(Dhcpv6Frame(Solicit())));
  Reply r = OnlyReply();
  EXPECT_EQ(r.type, 2) << "ADVERTISE";
  ExpectCommon(r);
  ExpectAddress(r);
  EXPECT_EQ(r.opts.count(14), 0u);
  EXPECT_EQ(services_.counters().dhcpv6_advertise, 1u);
}

TEST_F(LinkDhcpv6Test, RapidCommitSolicitGetsAReply) {
  ASSERT_TRUE(Offer(Dhcpv6Frame(With(Solicit(), 1, {0x00, 0x0e, 0x00, 0x00}))));
  Reply r = OnlyReply();
  EXPECT_EQ(r.type, 7);
  ExpectCommon(r);
  ExpectAddress(r);
  EXPECT_EQ(r.opts.count(14), 1u) << "rapid commit";
}

TEST_F(LinkDhcpv6Test, RequestRenewRebindGetReplies) {
  for (uint8_t type : {3, 5}) {
    ASSERT_TRUE(Offer(Dhcpv6Frame(With(Solicit(), type, ServerIdOption(kServerId)))));
    Reply r = OnlyReply();
    EXPECT_EQ(r.type, 7) << int(type);
    ExpectCommon(r);
    ExpectAddress(r);
  }
  ASSERT_TRUE(Offer(Dhcpv6Frame(With(Solicit(), 6))));  // REBIND: no server id
  Reply r = OnlyReply();
  EXPECT_EQ(r.type, 7);
  ExpectAddress(r);
  EXPECT_EQ(services_.counters().dhcpv6_replies, 3u);
}

TEST_F(LinkDhcpv6Test, MessagesForAnotherServerOrWithoutClientAreIgnored) {
  Bytes other = kServerId;
  other.back() ^= 1;
  EXPECT_TRUE(Offer(Dhcpv6Frame(With(Solicit(), 3, ServerIdOption(other)))));
  EXPECT_TRUE(Offer(Dhcpv6Frame(With(Solicit(), 3))));  // REQUEST without server id
  EXPECT_TRUE(Offer(Dhcpv6Frame(With(Solicit(), 1, ServerIdOption(kServerId)))));
  Bytes no_client = Solicit();
  no_client.erase(no_client.begin() + 10, no_client.begin() + 28);
  EXPECT_TRUE(Offer(Dhcpv6Frame(no_client)));
  EXPECT_TRUE(Offer(Dhcpv6Frame(With(Solicit(), 8, ServerIdOption(kServerId)))));  // RELEASE
  EXPECT_TRUE(sink_.frames.empty());
  EXPECT_EQ(services_.counters().dhcpv6_ignored, 5u);
}

TEST_F(LinkDhcpv6Test, InformationRequestGetsResolversButNoAddress) {
  Bytes info = Solicit();
  info.erase(info.begin() + 28, info.begin() + 44);  // no IA_NA
  ASSERT_TRUE(Offer(Dhcpv6Frame(With(info, 11))));
  Reply r = OnlyReply();
  EXPECT_EQ(r.type, 7);
  ExpectCommon(r);
  EXPECT_EQ(r.opts.count(3), 0u);
}

TEST_F(LinkDhcpv6Test, ConfirmSaysWhetherTheAddressIsOnLink) {
  auto confirm = [](const char* addr) {
    Bytes m = Solicit();
    m.erase(m.begin() + 28, m.begin() + 44);
    Bytes ia = {0x00, 0x03, 0x00, 0x28, 0x0a, 0x0b, 0x0c, 0x0d, 0,    0,
                0,    0,    0,    0,    0,    0,    0x00, 0x05, 0x00, 0x18};
    Bytes a = Addr(addr);
    ia.insert(ia.end(), a.begin(), a.end());
    ia.insert(ia.end(), 8, 0);
    return With(m, 4, ia);
  };
  ASSERT_TRUE(Offer(Dhcpv6Frame(confirm("2001:db8:1::10"))));
  Reply ok = OnlyReply();
  EXPECT_EQ(ok.type, 7);
  EXPECT_EQ(ok.opts.count(13) ? ok.opts.at(13) : Bytes{9}, (Bytes{0, 0})) << "Success";
  ASSERT_TRUE(Offer(Dhcpv6Frame(confirm("2001:db8:9::10"))));
  Reply moved = OnlyReply();
  EXPECT_EQ(moved.opts.count(13) ? moved.opts.at(13) : Bytes{9}, (Bytes{0, 4})) << "NotOnLink";
}

TEST_F(LinkDhcpv6Test, UnicastToOurAddressIsServedOtherDestinationsAreNot) {
  ASSERT_TRUE(Offer(Dhcpv6Frame(Solicit(), "fe80::1")));
  EXPECT_EQ(OnlyReply().type, 2);
  EXPECT_FALSE(Offer(Dhcpv6Frame(Solicit(), "2001:db8:2::547")));  // a server elsewhere
  EXPECT_TRUE(sink_.frames.empty());
}

// The answers reserve exactly their size, so they fit a link with the
// IPv6 minimum MTU.
TEST_F(LinkDhcpv6Test, RepliesFitAMinimumMtuLink) {
  config_.mtu = 1280;
  sink_.max_frame = 1280 + 14;
  config_.search.clear();
  for (int i = 0; i < 20; i++)
    config_.search.push_back("host" + std::to_string(i) + ".example.org");
  ASSERT_TRUE(Offer(Dhcpv6Frame(Solicit())));
  ASSERT_TRUE(Offer(Dhcpv6Frame(With(Solicit(), 1, {0x00, 0x0e, 0x00, 0x00}))));
  ASSERT_TRUE(Offer(Dhcpv6Frame(With(Solicit(), 3, ServerIdOption(kServerId)))));
  Bytes info = Solicit();
  info.erase(info.begin() + 28, info.begin() + 44);
  ASSERT_TRUE(Offer(Dhcpv6Frame(With(info, 11))));
  ASSERT_EQ(sink_.frames.size(), 4u);
  for (size_t i = 0; i < 4; i++) {
    EXPECT_EQ(sink_.frames[i].size(), sink_.reserved[i]);
    Reply r = ParseReply(sink_.frames[i]);
    EXPECT_EQ(r.opts.count(24), 1u);
  }
  EXPECT_EQ(services_.counters().sink_full, 0u);
}

TEST_F(LinkDhcpv6Test, MalformedAndTruncatedMessagesAreHandledSafely) {
  Bytes csum = Dhcpv6Frame(Solicit());
  csum[70] ^= 1;
  EXPECT_TRUE(Offer(csum));
  EXPECT_TRUE(sink_.frames.empty());
  EXPECT_EQ(services_.counters().bad, 1u);
  Bytes full = Solicit();
  for (size_t n = 0; n <= full.size(); n++) {
    EXPECT_TRUE(Offer(Dhcpv6Frame(Bytes(full.begin(), full.begin() + n))));
    for (const Bytes& r : sink_.frames) ParseReply(r);
    sink_.frames.clear();
  }
  config_.has_v6 = false;
  EXPECT_TRUE(Offer(Dhcpv6Frame(Solicit())));
  EXPECT_TRUE(sink_.frames.empty());
}

}  // namespace
}  // namespace ringfwd
