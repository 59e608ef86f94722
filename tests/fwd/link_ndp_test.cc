// NDP through LinkServices: neighbour and router advertisements.
#include <netinet/in.h>

#include <map>
#include <string>

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

// A neighbour solicitation as the guest's kernel sends it: who has fe80::1?
// From fe80::5054:ff:fe12:3456 to the solicited-node group ff02::1:ff00:1.
Bytes NeighborSolicit() {
  Bytes f = {
      0x33, 0x33, 0xff, 0x00, 0x00, 0x01,  // solicited-node multicast MAC
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // the guest
      0x86, 0xdd,                          // IPv6
      0x60, 0x00, 0x00, 0x00,              // version, class, flow
      0x00, 0x20, 0x3a, 0xff,              // payload 32, ICMPv6, hop limit 255
      0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x34, 0x56, 0xff, 0x02, 0,
      0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0x00, 0x00, 0x01, 0x87, 0x00, 0x00,
      0x00,                                                     // neighbour solicitation,
                                                                // checksum below
      0x00, 0x00, 0x00, 0x00,                                   // reserved
      0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,  // target fe80::1
      0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,           // source link-layer
  };
  testing::FixL4Checksum(f, 2);
  return f;
}

// A router solicitation from the guest's link-local address to ff02::2.
Bytes RouterSolicit() {
  Bytes f = {
      0x33, 0x33, 0x00, 0x00, 0x00, 0x02, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x86, 0xdd, 0x60,
      0x00, 0x00, 0x00, 0x00, 0x10, 0x3a, 0xff,  // payload 16, ICMPv6, 255
      0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x34, 0x56, 0xff, 0x02, 0,
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x85, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00,                                            // router
                                                       // solicitation
      0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // source link-layer
  };
  testing::FixL4Checksum(f, 2);
  return f;
}

Bytes SetTarget(Bytes ns, const char* target) {
  in6_addr t = testing::V6(target);
  std::memcpy(&ns[62], &t, 16);
  testing::FixL4Checksum(ns, 2);
  return ns;
}

Bytes Addr(const Bytes& f, size_t off) { return Bytes(f.begin() + off, f.begin() + off + 16); }
Bytes Addr(const char* s) {
  in6_addr a = testing::V6(s);
  const uint8_t* p = reinterpret_cast<const uint8_t*>(&a);
  return Bytes(p, p + 16);
}

// The options of an RA (from offset 70 of the frame), by type.
std::multimap<uint8_t, Bytes> RaOptions(const Bytes& f) {
  std::multimap<uint8_t, Bytes> opts;
  size_t i = 14 + 40 + 16;
  while (i + 2 <= f.size()) {
    size_t len = f[i + 1] * 8;
    EXPECT_GT(len, 0u);
    if (len == 0 || i + len > f.size()) break;
    opts.emplace(f[i], Bytes(f.begin() + i, f.begin() + i + len));
    i += len;
  }
  EXPECT_EQ(i, f.size()) << "options fill the RA";
  return opts;
}

class LinkNdpTest : public ::testing::Test {
 protected:
  bool Offer(const Bytes& f) {
    FrameView v = ParseFrame(f);
    EXPECT_TRUE(v.ok()) << DropReasonName(v.drop);
    return services_.Handle(v, f, sink_);
  }

  // Checks an RA frame to (dst_mac, dst) and its options.
  void ExpectRouterAdvert(const Bytes& r, const MacAddr& dst_mac, const Bytes& dst) {
    ExpectChecksumsValid(r, "RA");
    EXPECT_EQ(Bytes(r.begin(), r.begin() + 6), Bytes(dst_mac.begin(), dst_mac.end()));
    EXPECT_EQ(Bytes(r.begin() + 6, r.begin() + 12),
              Bytes(config_.our_mac.begin(), config_.our_mac.end()));
    EXPECT_EQ(r[21], 255) << "hop limit";
    EXPECT_EQ(Addr(r, 22), Addr("fe80::1"));
    EXPECT_EQ(Addr(r, 38), dst);
    EXPECT_EQ(r[54], 134);
    EXPECT_EQ(r[55], 0);
    EXPECT_EQ(r[59] & 0x80, 0x80) << "managed flag";
    EXPECT_GT(Get16(r, 60), 0) << "router lifetime";
    auto opts = RaOptions(r);
    ASSERT_EQ(opts.count(1), 1u);
    EXPECT_EQ(Bytes(opts.find(1)->second.begin() + 2, opts.find(1)->second.end()),
              Bytes(config_.our_mac.begin(), config_.our_mac.end()));
    ASSERT_EQ(opts.count(5), 1u);
    EXPECT_EQ(Get32(opts.find(5)->second, 4), 65520u);
    ASSERT_EQ(opts.count(3), 1u);
    const Bytes& p = opts.find(3)->second;
    EXPECT_EQ(p[2], 64) << "a /64";
    EXPECT_EQ(p[3], 0xc0) << "on-link, autonomous";
    EXPECT_GT(Get32(p, 4), 0u);
    EXPECT_GE(Get32(p, 4), Get32(p, 8)) << "valid >= preferred";
    EXPECT_EQ(Addr(p, 16), Addr("2001:db8:1::"));
    ASSERT_EQ(opts.count(25), 1u);
    const Bytes& rdnss = opts.find(25)->second;
    ASSERT_EQ(rdnss.size(), 24u);
    EXPECT_EQ(Addr(rdnss, 8), Addr("2001:db8:53::1"));
    ASSERT_EQ(opts.count(31), 1u);
    const Bytes& dnssl = opts.find(31)->second;
    const char kNames[] = "\7example\3org\0\3lab\7example\3net\0";
    Bytes names(kNames, kNames + sizeof(kNames) - 1);
    EXPECT_EQ(Bytes(dnssl.begin() + 8, dnssl.begin() + 8 + names.size()), names);
    EXPECT_EQ(Bytes(dnssl.begin() + 8 + names.size(), dnssl.end()),
              Bytes(dnssl.size() - 8 - names.size(), 0))
        << "zero padding";
  }

  LinkConfig config_ = testing::TestConfig();
  LinkState state_;
  LinkServices services_{config_, state_};
  testing::VecSink sink_;
};

TEST_F(LinkNdpTest, NeighborSolicitGetsASolicitedOverrideAdvertisement) {
  ASSERT_TRUE(Offer(NeighborSolicit()));
  EXPECT_TRUE(state_.guest_ll6_known);
  ASSERT_EQ(sink_.frames.size(), 1u);
  const Bytes& r = sink_.frames[0];
  ASSERT_EQ(r.size(), 14u + 40u + 32u);
  ExpectChecksumsValid(r, "NA");
  EXPECT_EQ(Bytes(r.begin(), r.begin() + 6), Bytes(kGuestMac.begin(), kGuestMac.end()));
  EXPECT_EQ(r[20], IPPROTO_ICMPV6);
  EXPECT_EQ(r[21], 255);
  EXPECT_EQ(Addr(r, 22), Addr("fe80::1"));
  EXPECT_EQ(Addr(r, 38), Addr("fe80::5054:ff:fe12:3456"));
  EXPECT_EQ(r[54], 136);
  EXPECT_EQ(r[58], 0xe0) << "router, solicited, override";
  EXPECT_EQ(Addr(r, 62), Addr("fe80::1"));
  const Bytes tlla = {2, 1, 0x02, 0x52, 0x46, 0x57, 0x44, 0x01};
  EXPECT_EQ(Bytes(r.begin() + 78, r.end()), tlla);
  EXPECT_EQ(services_.counters().na_sent, 1u);
}

TEST_F(LinkNdpTest, AnswersForAnyAddressButTheGuests) {
  ASSERT_TRUE(Offer(SetTarget(NeighborSolicit(), "2001:db8:2::99")));
  ASSERT_EQ(sink_.frames.size(), 1u);
  EXPECT_EQ(Addr(sink_.frames[0], 22), Addr("2001:db8:2::99"));
  EXPECT_EQ(Addr(sink_.frames[0], 62), Addr("2001:db8:2::99"));
  sink_.frames.clear();
  EXPECT_TRUE(Offer(SetTarget(NeighborSolicit(), "2001:db8:1::10")));           // its global
  EXPECT_TRUE(Offer(SetTarget(NeighborSolicit(), "fe80::5054:ff:fe12:3456")));  // its own LL
  Bytes dad = NeighborSolicit();
  std::fill(dad.begin() + 22, dad.begin() + 38, 0);  // from :: : duplicate address detection
  dad.resize(dad.size() - 8);                        // no source link-layer option then
  testing::Put16(dad, 18, 24);
  testing::FixL4Checksum(dad, 2);
  EXPECT_TRUE(Offer(dad));
  EXPECT_TRUE(sink_.frames.empty());
  EXPECT_EQ(services_.counters().ns_ignored, 3u);
}

TEST_F(LinkNdpTest, InvalidSolicitationsAreCountedNotAnswered) {
  Bytes hop = NeighborSolicit();
  hop[21] = 64;  // forwarded: not from the link
  EXPECT_TRUE(Offer(hop));
  Bytes csum = NeighborSolicit();
  csum[60] ^= 1;
  EXPECT_TRUE(Offer(csum));
  Bytes code = NeighborSolicit();
  code[55] = 1;
  testing::FixL4Checksum(code, 2);
  EXPECT_TRUE(Offer(code));
  EXPECT_TRUE(Offer(SetTarget(NeighborSolicit(), "ff02::1")));
  EXPECT_TRUE(Offer(SetTarget(NeighborSolicit(), "::ffff:192.0.2.1")));  // IPv4-mapped
  Bytes rs = RouterSolicit();
  rs[21] = 1;
  EXPECT_TRUE(Offer(rs));
  EXPECT_TRUE(sink_.frames.empty());
  EXPECT_EQ(services_.counters().bad, 6u);
}

TEST_F(LinkNdpTest, RouterSolicitGetsAManagedAdvertisementWithPrefixMtuAndDns) {
  ASSERT_TRUE(Offer(RouterSolicit()));
  ASSERT_EQ(sink_.frames.size(), 1u);
  ExpectRouterAdvert(sink_.frames[0], kGuestMac, Addr("fe80::5054:ff:fe12:3456"));
  EXPECT_EQ(services_.counters().rs_received, 1u);
  EXPECT_EQ(services_.counters().ra_sent, 1u);
}

TEST_F(LinkNdpTest, UnsolicitedAdvertisementsOnceTheGuestIsKnownThenEveryTenMinutes) {
  EXPECT_EQ(services_.NextTickNs(), INT64_MAX);
  services_.Tick(1'000'000'000, sink_);
  EXPECT_TRUE(sink_.frames.empty()) << "no guest yet";
  Bytes mld = {143, 0, 0, 0, 0, 0, 0, 0};  // an MLDv2 report: consumed, no answer
  Bytes f = testing::Ipv6Frame({0x33, 0x33, 0, 0, 0, 0x16}, "fe80::5054:ff:fe12:3456", "ff02::16",
                               IPPROTO_ICMPV6, mld, 1);
  testing::FixL4Checksum(f, 2);
  EXPECT_TRUE(Offer(f));
  EXPECT_TRUE(sink_.frames.empty());
  EXPECT_EQ(services_.NextTickNs(), 0);
  int64_t now = 2'000'000'000;
  services_.Tick(now, sink_);
  ASSERT_EQ(sink_.frames.size(), 1u);
  ExpectRouterAdvert(sink_.frames[0], {0x33, 0x33, 0, 0, 0, 1}, Addr("ff02::1"));
  int64_t next = services_.NextTickNs();
  EXPECT_GE(next, now + kRaIntervalNs - kRaJitterNs);
  EXPECT_LE(next, now + kRaIntervalNs + kRaJitterNs);
  services_.Tick(next - 1, sink_);
  EXPECT_EQ(sink_.frames.size(), 1u);
  services_.Tick(next, sink_);
  EXPECT_EQ(sink_.frames.size(), 2u);
  EXPECT_GT(services_.NextTickNs(), next);
}

TEST_F(LinkNdpTest, NothingWithoutIpv6) {
  config_.has_v6 = false;
  EXPECT_TRUE(Offer(NeighborSolicit()));
  EXPECT_TRUE(Offer(RouterSolicit()));
  services_.Tick(1, sink_);
  EXPECT_TRUE(sink_.frames.empty());
  EXPECT_EQ(services_.NextTickNs(), INT64_MAX);
}

TEST_F(LinkNdpTest, NoDnsOptionsWhenThereAreNoResolversOrSearchList) {
  config_.dns6.clear();
  config_.search.clear();
  ASSERT_TRUE(Offer(RouterSolicit()));
  ASSERT_EQ(sink_.frames.size(), 1u);
  ExpectChecksumsValid(sink_.frames[0], "RA");
  auto opts = RaOptions(sink_.frames[0]);
  EXPECT_EQ(opts.count(25), 0u);
  EXPECT_EQ(opts.count(31), 0u);
  EXPECT_EQ(opts.count(3), 1u);
}

TEST_F(LinkNdpTest, AdvertisementFitsAMinimumMtuLinkWithoutAnOversizedSearchList) {
  config_.mtu = 1280;
  sink_.max_frame = 1280 + 14;
  ASSERT_TRUE(Offer(RouterSolicit()));
  ASSERT_EQ(sink_.frames.size(), 1u);
  EXPECT_EQ(RaOptions(sink_.frames[0]).count(31), 1u);  // a short list fits
  config_.search.clear();
  for (int i = 0; i < 60; i++)
    config_.search.push_back("host" + std::to_string(i) + ".example.org");
  ASSERT_TRUE(Offer(RouterSolicit()));
  ASSERT_EQ(sink_.frames.size(), 2u);
  ExpectChecksumsValid(sink_.frames[1], "RA");
  auto opts = RaOptions(sink_.frames[1]);
  EXPECT_EQ(opts.count(31), 0u) << "no DNSSL rather than no RA";
  EXPECT_EQ(opts.count(3), 1u);
  EXPECT_EQ(opts.count(25), 1u);
  EXPECT_EQ(services_.counters().sink_full, 0u);
}

}  // namespace
}  // namespace ringfwd
