#include "fwd/packet.h"
#include "fwd/checksum.h"

#include <netinet/in.h>

#include <random>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "tests/fwd/frame_test_util.h"

namespace ringfwd {
namespace {

using testing::Bytes;
using testing::ExpectChecksumsValid;
using testing::FixL4Checksum;
using testing::Get16;
using testing::Get32;
using testing::kGuestMac;
using testing::Put16;
using testing::RefFold;
using testing::RefSum;

std::span<const uint8_t> S(const Bytes& b) { return std::span<const uint8_t>(b); }

TEST(Checksum, Rfc1071Example) {
  const Bytes data = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(Checksum(S(data)), static_cast<uint16_t>(~0xddf2));
}

TEST(Checksum, MatchesTheObviousSumForEveryLengthAndChainsEvenSpans) {
  std::mt19937 rng(7);
  Bytes data(70000);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  for (size_t n = 0; n < 600; n++)
    ASSERT_EQ(Checksum(S(data).subspan(0, n)), RefFold(RefSum(data.data(), n))) << n;
  for (size_t n : {1499u, 1500u, 65535u, 70000u})
    ASSERT_EQ(Checksum(S(data).subspan(0, n)), RefFold(RefSum(data.data(), n))) << n;
  // All-0xff data makes the 64-bit accumulator carry as much as it can.
  Bytes ones(65536, 0xff);
  EXPECT_EQ(Checksum(S(ones)), RefFold(RefSum(ones.data(), ones.size())));
  // A sum split at even offsets equals the sum in one go.
  uint32_t s = ChecksumAdd(S(data).subspan(0, 1000));
  s = ChecksumAdd(S(data).subspan(1000, 2000), s);
  s = ChecksumAdd(S(data).subspan(3000, 1001), s);
  EXPECT_EQ(ChecksumFinish(s), RefFold(RefSum(data.data(), 4001)));
}

TEST(Checksum, VectorAndScalarSumsAgreeAtEveryOffsetAndLength) {
  if (!checksum_internal::HaveVector()) GTEST_SKIP() << "no AVX2 on this CPU";
  std::mt19937 rng(11);
  Bytes data(70000);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  for (size_t off = 0; off < 64; off++)
    for (size_t n : {0u, 1u, 63u, 64u, 65u, 127u, 128u, 129u, 1460u, 1461u, 9000u, 65480u}) {
      std::span<const uint8_t> sp = S(data).subspan(off, n);
      ASSERT_EQ(checksum_internal::AddVector(sp, 0x1234), checksum_internal::AddScalar(sp, 0x1234))
          << "offset " << off << " length " << n;
      ASSERT_EQ(Checksum(sp), RefFold(RefSum(sp.data(), n))) << "offset " << off << " length " << n;
    }
  Bytes ones(65536, 0xff);
  EXPECT_EQ(checksum_internal::AddVector(S(ones), 0), checksum_internal::AddScalar(S(ones), 0));
}

Bytes Udp4Frame(size_t payload_len = 5) {
  Bytes payload(payload_len, 'x');
  Bytes f = testing::Ipv4Frame(kDefaultOurMac, "192.0.2.10", "203.0.113.5", IPPROTO_UDP,
                               testing::UdpHeader(40000, 53, payload));
  FixL4Checksum(f, 6);
  return f;
}

Bytes Tcp4Frame() {
  Bytes tcp(24 + 3);  // header with 4 bytes of options, 3 bytes of data
  Put16(tcp, 0, 40001);
  Put16(tcp, 2, 443);
  Put16(tcp, 4, 0x1122);
  Put16(tcp, 6, 0x3344);  // seq 0x11223344
  Put16(tcp, 8, 0x5566);
  Put16(tcp, 10, 0x7788);  // ack
  tcp[12] = 6 << 4;
  tcp[13] = kTcpSyn | kTcpAck;
  Put16(tcp, 14, 29200);
  tcp[20] = 2;  // MSS option
  tcp[21] = 4;
  Put16(tcp, 22, 1460);
  tcp[24] = 'a';
  tcp[25] = 'b';
  tcp[26] = 'c';
  Bytes f = testing::Ipv4Frame(kDefaultOurMac, "192.0.2.10", "203.0.113.5", IPPROTO_TCP, tcp);
  FixL4Checksum(f, 16);
  return f;
}

Bytes Echo6Frame() {
  Bytes icmp = {kIcmp6EchoRequest, 0, 0, 0, 0x12, 0x34, 0x00, 0x07, 'p', 'i', 'n', 'g'};
  Bytes f =
      testing::Ipv6Frame(kDefaultOurMac, "2001:db8:1::10", "2001:db8:2::1", IPPROTO_ICMPV6, icmp);
  FixL4Checksum(f, 2);
  return f;
}

// IPv6 UDP behind a hop-by-hop and a destination options header.
Bytes Udp6ExtFrame() {
  Bytes ext = {IPPROTO_DSTOPTS,
               0,
               1,
               4,
               0,
               0,
               0,
               0,  // hop-by-hop: PadN
               IPPROTO_UDP,
               1,
               1,
               12,
               0,
               0,
               0,
               0,  // dest opts, 16 bytes
               0,
               0,
               0,
               0,
               0,
               0,
               0,
               0};
  Bytes udp = testing::UdpHeader(5353, 5353, Bytes{'m', 'd', 'n', 's'});
  Bytes l = ext;
  l.insert(l.end(), udp.begin(), udp.end());
  Bytes f =
      testing::Ipv6Frame(kDefaultOurMac, "2001:db8:1::10", "2001:db8:2::1", IPPROTO_HOPOPTS, l);
  // Checksum over the UDP segment only, pseudo-header with the final addresses.
  size_t u = 54 + ext.size();
  uint32_t pseudo = RefSum(&f[22], 32) + IPPROTO_UDP + udp.size();
  Put16(f, u + 6, RefFold(RefSum(&f[u], udp.size(), pseudo)));
  return f;
}

TEST(ParseFrame, Udp4) {
  Bytes f = Udp4Frame();
  FrameView v = ParseFrame(S(f));
  ASSERT_TRUE(v.ok()) << DropReasonName(v.drop);
  EXPECT_EQ(v.l3, L3Kind::kIpv4);
  EXPECT_EQ(v.eth_src, kGuestMac);
  EXPECT_EQ(v.eth_dst, kDefaultOurMac);
  EXPECT_EQ(v.src.ToString(), "192.0.2.10");
  EXPECT_EQ(v.dst.ToString(), "203.0.113.5");
  EXPECT_EQ(v.l4_proto, IPPROTO_UDP);
  EXPECT_EQ(v.sport, 40000);
  EXPECT_EQ(v.dport, 53);
  EXPECT_EQ(v.ttl, 64);
  EXPECT_EQ(v.l4_off, 34u);
  EXPECT_EQ(v.payload_off, 42u);
  EXPECT_EQ(v.payload_len, 5u);
  EXPECT_EQ(v.ip_len, 33u);
  EXPECT_TRUE(VerifyL4Checksum(v, S(f)));
  f.back() ^= 1;
  EXPECT_FALSE(VerifyL4Checksum(ParseFrame(S(f)), S(f)));
}

TEST(ParseFrame, EthernetPaddingIsIgnored) {
  Bytes f = Udp4Frame(0);  // 42 bytes
  f.resize(60, 0);         // padded to the Ethernet minimum
  FrameView v = ParseFrame(S(f));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v.payload_len, 0u);
  EXPECT_EQ(v.l4_len, 8u);
  EXPECT_TRUE(VerifyL4Checksum(v, S(f)));
}

TEST(ParseFrame, TcpFieldsAndOptionArea) {
  Bytes f = Tcp4Frame();
  FrameView v = ParseFrame(S(f));
  ASSERT_TRUE(v.ok()) << DropReasonName(v.drop);
  EXPECT_EQ(v.l4_proto, IPPROTO_TCP);
  EXPECT_EQ(v.sport, 40001);
  EXPECT_EQ(v.dport, 443);
  EXPECT_EQ(v.tcp_seq, 0x11223344u);
  EXPECT_EQ(v.tcp_ack, 0x55667788u);
  EXPECT_EQ(v.tcp_flags, kTcpSyn | kTcpAck);
  EXPECT_EQ(v.tcp_window, 29200);
  EXPECT_EQ(v.tcp_opt_off, 54u);
  EXPECT_EQ(v.tcp_opt_len, 4u);
  EXPECT_EQ(f[v.tcp_opt_off], 2);
  EXPECT_EQ(v.payload_off, 58u);
  EXPECT_EQ(v.payload_len, 3u);
  EXPECT_TRUE(VerifyL4Checksum(v, S(f)));
}

TEST(ParseFrame, Icmp6EchoGroupsByIdentifier) {
  Bytes f = Echo6Frame();
  FrameView v = ParseFrame(S(f));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v.l4_proto, IPPROTO_ICMPV6);
  EXPECT_EQ(v.icmp_type, kIcmp6EchoRequest);
  EXPECT_EQ(v.icmp_id, 0x1234);
  EXPECT_EQ(v.icmp_seq, 7);
  EXPECT_EQ(v.sport, 0x1234);
  EXPECT_EQ(v.dport, 0x1234);
  EXPECT_EQ(v.payload_len, 4u);
  EXPECT_TRUE(VerifyL4Checksum(v, S(f)));
}

TEST(ParseFrame, WalksIpv6ExtensionHeaders) {
  Bytes f = Udp6ExtFrame();
  FrameView v = ParseFrame(S(f));
  ASSERT_TRUE(v.ok()) << DropReasonName(v.drop);
  EXPECT_EQ(v.l4_proto, IPPROTO_UDP);
  EXPECT_EQ(v.l4_off, 54u + 24u);
  EXPECT_EQ(v.sport, 5353);
  EXPECT_EQ(v.payload_len, 4u);
  EXPECT_TRUE(VerifyL4Checksum(v, S(f)));
  // The extension header claims more than the packet holds.
  Bytes bad = f;
  bad[54 + 8 + 1] = 9;
  EXPECT_EQ(ParseFrame(S(bad)).drop, DropReason::kBadExtHeader);
  // Hop-by-hop anywhere but first.
  bad = f;
  bad[54] = IPPROTO_HOPOPTS;
  EXPECT_EQ(ParseFrame(S(bad)).drop, DropReason::kBadExtHeader);
}

// Every proper prefix of a valid frame is refused with a reason (and read
// within bounds: ASan checks), never parsed as something else.
TEST(ParseFrame, EveryTruncationIsDropped) {
  Bytes arp = testing::EthHeader(kBroadcastMac, kGuestMac, kEtherTypeArp);
  arp.resize(42);
  arp[15] = 1;
  arp[16] = 8;
  arp[18] = 6;
  arp[19] = 4;
  for (const Bytes& f : {Udp4Frame(), Tcp4Frame(), Echo6Frame(), Udp6ExtFrame(), arp}) {
    ASSERT_TRUE(ParseFrame(S(f)).ok());
    for (size_t n = 0; n < f.size(); n++) {
      Bytes cut(f.begin(), f.begin() + n);
      FrameView v = ParseFrame(S(cut));
      ASSERT_FALSE(v.ok()) << "prefix " << n << " of " << f.size();
      if (n < 14) {
        EXPECT_EQ(v.drop, DropReason::kTruncatedEth);
      }
      if (n >= 14 && Get16(f, 12) == kEtherTypeArp) {
        EXPECT_EQ(v.drop, DropReason::kTruncatedArp);
      }
      if (n >= 14 && n < 34 && Get16(f, 12) == kEtherTypeIpv4) {
        EXPECT_EQ(v.drop, DropReason::kTruncatedIp);
      }
      if (n >= 34 && Get16(f, 12) == kEtherTypeIpv4) {
        EXPECT_EQ(v.drop, DropReason::kBadIpLen);
      }
      if (n >= 54 && Get16(f, 12) == kEtherTypeIpv6) {
        EXPECT_EQ(v.drop, DropReason::kBadIpLen);
      }
      EXPECT_FALSE(VerifyL4Checksum(v, S(cut)));
    }
  }
}

TEST(ParseFrame, BadLengthsAndHeaders) {
  Bytes good = Udp4Frame();
  auto drop = [](Bytes f) { return ParseFrame(S(f)).drop; };
  auto refix_ip = [](Bytes& f) {
    Put16(f, 24, 0);
    Put16(f, 24, RefFold(RefSum(&f[14], 20)));
  };
  Bytes f = good;
  f[14] = 0x44;  // IHL 4
  EXPECT_EQ(drop(f), DropReason::kBadIpHeaderLen);
  f = good;
  f[14] = 0x65;  // version 6 under the IPv4 ethertype
  EXPECT_EQ(drop(f), DropReason::kBadIpVersion);
  f = good;
  Put16(f, 16, 19);  // total length under the header
  refix_ip(f);
  EXPECT_EQ(drop(f), DropReason::kBadIpLen);
  f = good;
  f[22] ^= 0x10;  // TTL changed, header checksum not
  EXPECT_EQ(drop(f), DropReason::kBadIpChecksum);
  f = good;
  Put16(f, 38, 9);  // UDP length shorter than the IP payload
  EXPECT_EQ(drop(f), DropReason::kBadUdpLen);
  f = good;
  Put16(f, 38, 7);
  EXPECT_EQ(drop(f), DropReason::kBadUdpLen);
  f = good;
  Put16(f, 20, 0x2000);  // more fragments
  refix_ip(f);
  EXPECT_EQ(drop(f), DropReason::kFragment);
  f = good;
  Put16(f, 20, 0x0001);  // offset 8
  refix_ip(f);
  EXPECT_EQ(drop(f), DropReason::kFragment);
  f = good;
  Put16(f, 20, 0x4000);  // DF alone is fine
  refix_ip(f);
  EXPECT_EQ(drop(f), DropReason::kNone);
  f = good;
  Put16(f, 12, 0x88cc);  // LLDP
  EXPECT_EQ(drop(f), DropReason::kUnknownEthertype);
  f = good;
  Put16(f, 12, kEtherTypeVlan);
  EXPECT_EQ(drop(f), DropReason::kVlan);

  Bytes t = Tcp4Frame();
  t[34 + 12] = 4 << 4;  // data offset 4
  EXPECT_EQ(drop(t), DropReason::kBadTcpHeaderLen);
  t[34 + 12] = 15 << 4;  // 60 bytes, beyond the segment
  EXPECT_EQ(drop(t), DropReason::kBadTcpHeaderLen);

  Bytes e = Echo6Frame();
  Put16(e, 18, static_cast<uint16_t>(e.size() - 54 + 1));  // payload length beyond the frame
  EXPECT_EQ(drop(e), DropReason::kBadIpLen);
  e = Echo6Frame();
  e[14] = 0x40;  // version 4 under the IPv6 ethertype
  EXPECT_EQ(drop(e), DropReason::kBadIpVersion);
  // IPv4-mapped addresses are not valid in an IPv6 header (and would read
  // as IPv4 in Addr6); a multicast source neither.
  e = testing::Ipv6Frame(kDefaultOurMac, "::ffff:192.0.2.10", "2001:db8:2::1", IPPROTO_ICMPV6,
                         Bytes(8, 0));
  EXPECT_EQ(drop(e), DropReason::kBadAddress);
  e = testing::Ipv6Frame(kDefaultOurMac, "2001:db8:1::10", "::ffff:203.0.113.1", IPPROTO_ICMPV6,
                         Bytes(8, 0));
  EXPECT_EQ(drop(e), DropReason::kBadAddress);
  e = testing::Ipv6Frame(kDefaultOurMac, "ff02::1", "2001:db8:2::1", IPPROTO_ICMPV6, Bytes(8, 0));
  EXPECT_EQ(drop(e), DropReason::kBadAddress);
  e = Echo6Frame();
  e[20] = IPPROTO_FRAGMENT;
  EXPECT_EQ(drop(e), DropReason::kFragment);
  // ICMPv6 under IPv4 is not parsed as ICMP; ICMP under IPv6 neither.
  e = Echo6Frame();
  e[20] = IPPROTO_ICMP;
  FrameView v = ParseFrame(S(e));
  EXPECT_TRUE(v.ok());
  EXPECT_EQ(v.icmp_type, 0);
  EXPECT_FALSE(VerifyL4Checksum(v, S(e)));

  Bytes arp = testing::EthHeader(kBroadcastMac, kGuestMac, kEtherTypeArp);
  arp.resize(42);
  arp[15] = 6;  // IEEE 802 hardware
  EXPECT_EQ(drop(arp), DropReason::kBadArp);
}

TEST(DropReason, EveryReasonHasItsOwnName) {
  std::set<std::string> names;
  for (int i = 0; i < static_cast<int>(DropReason::kCount); i++) {
    std::string n = DropReasonName(static_cast<DropReason>(i));
    EXPECT_NE(n, "unknown");
    names.insert(n);
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(DropReason::kCount));
}

FrameAddrs Addrs4() {
  return {kDefaultOurMac, kGuestMac, *Addr6::Parse("203.0.113.5"), *Addr6::Parse("192.0.2.10")};
}
FrameAddrs Addrs6() {
  return {kDefaultOurMac, kGuestMac, *Addr6::Parse("2001:db8:2::1"),
          *Addr6::Parse("2001:db8:1::10")};
}

TEST(BuildFrame, UdpBothFamiliesParseBackWithValidChecksums) {
  Bytes payload(1000);
  for (size_t i = 0; i < payload.size(); i++) payload[i] = static_cast<uint8_t>(i * 7);
  for (const FrameAddrs& a : {Addrs4(), Addrs6()}) {
    Bytes out(2000);
    size_t n = BuildUdpFrame(out, a, 53, 40000, payload);
    ASSERT_EQ(n, (a.src.IsV4() ? kUdp4FrameHeadersLen : kUdp6FrameHeadersLen) + 1000);
    out.resize(n);
    ExpectChecksumsValid(out, "udp");
    FrameView v = ParseFrame(S(out));
    ASSERT_TRUE(v.ok()) << DropReasonName(v.drop);
    EXPECT_EQ(v.src, a.src);
    EXPECT_EQ(v.dst, a.dst);
    EXPECT_EQ(v.eth_dst, kGuestMac);
    EXPECT_EQ(v.sport, 53);
    EXPECT_EQ(v.dport, 40000);
    EXPECT_EQ(Bytes(out.begin() + v.payload_off, out.end()), payload);
    EXPECT_TRUE(VerifyL4Checksum(v, S(out)));
    // Too small a buffer: nothing built.
    Bytes small(n - 1);
    EXPECT_EQ(BuildUdpFrame(small, a, 53, 40000, payload), 0u);
  }
}

TEST(BuildFrame, TcpBothFamiliesWithOptionsParseBackWithValidChecksums) {
  const uint8_t opts[8] = {2, 4, 5, 0xb4, 1, 3, 3, 7};
  for (const FrameAddrs& a : {Addrs4(), Addrs6()}) {
    for (size_t opt_len : {size_t{0}, size_t{8}}) {
      for (size_t len : {size_t{0}, size_t{1}, size_t{1460}}) {
        size_t off = TcpPayloadOffset(a.src.IsV4(), opt_len);
        Bytes out(off + len);
        for (size_t i = 0; i < len; i++) out[off + i] = static_cast<uint8_t>(i * 13);
        TcpSegmentHeader h;
        h.sport = 80;
        h.dport = 40000;
        h.seq = 0xfffffff0u;
        h.ack = 12345;
        h.flags = kTcpAck | kTcpPsh;
        h.window = 512;
        h.options = std::span<const uint8_t>(opts, opt_len);
        ASSERT_EQ(FinishTcpFrame(out, a, h, len), off + len);
        ExpectChecksumsValid(out, "tcp");
        FrameView v = ParseFrame(S(out));
        ASSERT_TRUE(v.ok()) << DropReasonName(v.drop);
        EXPECT_EQ(v.l4_proto, IPPROTO_TCP);
        EXPECT_EQ(v.sport, 80);
        EXPECT_EQ(v.dport, 40000);
        EXPECT_EQ(v.tcp_seq, 0xfffffff0u);
        EXPECT_EQ(v.tcp_ack, 12345u);
        EXPECT_EQ(v.tcp_flags, kTcpAck | kTcpPsh);
        EXPECT_EQ(v.tcp_window, 512);
        EXPECT_EQ(v.tcp_opt_len, opt_len);
        EXPECT_EQ(v.payload_off, off);
        EXPECT_EQ(v.payload_len, len);
        EXPECT_TRUE(VerifyL4Checksum(v, S(out)));
        Bytes small(off + len - 1);
        EXPECT_EQ(FinishTcpFrame(small, a, h, len), 0u);
      }
    }
    // Options not a multiple of 4: refused.
    Bytes out(200);
    TcpSegmentHeader h;
    h.options = std::span<const uint8_t>(opts, 3);
    EXPECT_EQ(FinishTcpFrame(out, a, h, 0), 0u);
  }
}

// A partial checksum (for a tap with virtio-net headers) is what a device
// completing CHECKSUM_PARTIAL turns into the full one: summing from
// TcpChecksumStart() to the end, the field included, and storing the
// complement at offset 16 gives the frame FinishTcpFrame builds in full.
TEST(BuildFrame, TcpPartialChecksumCompletesToTheFullOne) {
  const uint8_t opts[12] = {1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9};
  for (const FrameAddrs& a : {Addrs4(), Addrs6()}) {
    bool v4 = a.src.IsV4();
    for (size_t len : {size_t{0}, size_t{1}, size_t{1448}, size_t{65000 - 40}}) {
      size_t off = TcpPayloadOffset(v4, sizeof(opts));
      Bytes full(off + len), partial(off + len);
      for (size_t i = 0; i < len; i++)
        full[off + i] = partial[off + i] = static_cast<uint8_t>(i * 7);
      TcpSegmentHeader h;
      h.sport = 5201;
      h.dport = 40000;
      h.seq = 0x80000001u;
      h.ack = 99;
      h.flags = kTcpAck;
      h.window = 1024;
      h.options = std::span<const uint8_t>(opts, sizeof(opts));
      ASSERT_EQ(FinishTcpFrame(full, a, h, len), off + len);
      ASSERT_EQ(FinishTcpFrame(partial, a, h, len, /*partial_checksum=*/true), off + len);
      size_t start = TcpChecksumStart(v4);
      EXPECT_NE(Bytes(partial.begin() + start + 16, partial.begin() + start + 18),
                Bytes(full.begin() + start + 16, full.begin() + start + 18));
      // What the device does.
      uint16_t c = ChecksumFinish(ChecksumAdd(std::span<const uint8_t>(partial).subspan(start)));
      partial[start + 16] = static_cast<uint8_t>(c >> 8);
      partial[start + 17] = static_cast<uint8_t>(c);
      EXPECT_EQ(partial, full) << (v4 ? "v4 " : "v6 ") << len;
    }
  }
}

TEST(BuildFrame, FinishUdpFrameAroundAPayloadInPlace) {
  Bytes out(kUdp6FrameHeadersLen + 3);
  out[kUdp6FrameHeadersLen] = 'a';
  out[kUdp6FrameHeadersLen + 1] = 'b';
  out[kUdp6FrameHeadersLen + 2] = 'c';
  ASSERT_EQ(FinishUdpFrame(out, Addrs6(), 1, 2, 3), out.size());
  ExpectChecksumsValid(out, "in place");
  EXPECT_EQ(out.back(), 'c');
  // A payload that would make the IPv4 packet exceed 65535 bytes.
  Bytes big(kMaxFrameLen + 100);
  EXPECT_EQ(FinishUdpFrame(big, Addrs4(), 1, 2, 65535 - 28 + 1), 0u);
  EXPECT_EQ(FinishUdpFrame(big, Addrs4(), 1, 2, 65535 - 28), kMaxFrameLen);
}

TEST(BuildFrame, EchoReplies) {
  Bytes data = {1, 2, 3, 4, 5};
  for (const FrameAddrs& a : {Addrs4(), Addrs6()}) {
    Bytes out(200);
    size_t n = BuildEchoFrame(out, a, true, 0xbeef, 9, data);
    ASSERT_GT(n, 0u);
    out.resize(n);
    ExpectChecksumsValid(out, "echo");
    FrameView v = ParseFrame(S(out));
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v.icmp_type, a.src.IsV4() ? kIcmpEchoReply : kIcmp6EchoReply);
    EXPECT_EQ(v.icmp_id, 0xbeef);
    EXPECT_EQ(v.icmp_seq, 9);
    EXPECT_EQ(v.payload_len, 5u);
    EXPECT_TRUE(VerifyL4Checksum(v, S(out)));
  }
}

TEST(BuildFrame, IcmpErrorsQuoteWithinTheRfcLimits) {
  // A large original: the quote is cut so the error fits 576 / 1280 bytes.
  Bytes orig4 = Udp4Frame(3000);
  Bytes ip4(orig4.begin() + 14, orig4.end());
  Bytes out(4000);
  size_t n = BuildIcmpErrorFrame(out, Addrs4(), kIcmpDestUnreach, 3, 0, ip4);
  ASSERT_EQ(n, 14u + 576u);
  Bytes f(out.begin(), out.begin() + n);
  ExpectChecksumsValid(f, "icmp4 error");
  FrameView v = ParseFrame(S(f));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v.icmp_type, kIcmpDestUnreach);
  EXPECT_EQ(v.icmp_code, 3);
  EXPECT_TRUE(std::equal(ip4.begin(), ip4.begin() + 548, f.begin() + 42));

  Bytes orig6 = Udp6ExtFrame();
  Bytes ip6(orig6.begin() + 14, orig6.end());
  ip6.resize(2000, 0x5a);
  n = BuildIcmpErrorFrame(out, Addrs6(), kIcmp6PacketTooBig, 0, 1400, ip6);
  ASSERT_EQ(n, 14u + 1280u);
  f.assign(out.begin(), out.begin() + n);
  ExpectChecksumsValid(f, "icmp6 error");
  EXPECT_EQ(Get32(f, 58), 1400u);
  EXPECT_TRUE(std::equal(ip6.begin(), ip6.begin() + 1232, f.begin() + 62));

  // A short original is quoted whole; fragmentation needed carries the MTU.
  Bytes small = Udp4Frame(4);
  Bytes ip_small(small.begin() + 14, small.end());
  n = BuildIcmpErrorFrame(out, Addrs4(), kIcmpDestUnreach, 4, 1280, ip_small);
  ASSERT_EQ(n, 14u + 20u + 8u + ip_small.size());
  f.assign(out.begin(), out.begin() + n);
  ExpectChecksumsValid(f, "frag needed");
  EXPECT_EQ(Get16(f, 40), 1280);
  EXPECT_EQ(BuildIcmpErrorFrame(out, Addrs4(), 3, 3, 0, {}), 0u);
  Bytes tiny(40);
  EXPECT_EQ(BuildIcmpErrorFrame(tiny, Addrs4(), 3, 3, 0, ip_small), 0u);
}

}  // namespace
}  // namespace ringfwd
