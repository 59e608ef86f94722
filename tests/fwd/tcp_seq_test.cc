#include "fwd/tcp_seq.h"

#include <cstring>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace ringfwd {
namespace {

TEST(TcpSeq, ComparesAcrossTheWrap) {
  EXPECT_TRUE(SeqLt(1, 2));
  EXPECT_FALSE(SeqLt(2, 2));
  EXPECT_TRUE(SeqLe(2, 2));
  EXPECT_TRUE(SeqLt(0xfffffff0u, 0x10u));  // wrapped: 0x10 is later
  EXPECT_TRUE(SeqGt(0x10u, 0xfffffff0u));
  EXPECT_FALSE(SeqGe(0xfffffff0u, 0x10u));
  EXPECT_TRUE(SeqLt(0, 0x7fffffffu));
  EXPECT_FALSE(SeqLt(0, 0x80000001u));  // more than half the space ahead is behind
}

TEST(TcpSeq, SipHashMatchesTheReferenceVector) {
  // The SipHash-2-4 paper's vector: key 00..0f, message 00..0e.
  uint8_t msg[15];
  for (int i = 0; i < 15; i++) msg[i] = static_cast<uint8_t>(i);
  uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
  EXPECT_EQ(SipHash24(k0, k1, msg), 0xa129ca6149be45e5ull);
}

TEST(TcpSeq, IsnDependsOnTupleKeyAndClock) {
  IsnGenerator g(1, 2), h(3, 4);
  Addr6 a = Addr6::FromV4(0xc6336402), b = Addr6::FromV4(0xc0000202);
  uint32_t base = g.Isn(a, 80, b, 40000, 0);
  EXPECT_EQ(base, g.Isn(a, 80, b, 40000, 0)) << "deterministic for one key";
  EXPECT_NE(base, g.Isn(a, 80, b, 40001, 0));
  EXPECT_NE(base, g.Isn(b, 80, a, 40000, 0));
  EXPECT_NE(base, h.Isn(a, 80, b, 40000, 0)) << "the key matters";
  // M ticks every 4 us.
  EXPECT_EQ(g.Isn(a, 80, b, 40000, 4000) - base, 1u);
  EXPECT_EQ(g.Isn(a, 80, b, 40000, 4'000'000) - base, 1000u);
  // Random keys differ between generators.
  IsnGenerator r1, r2;
  EXPECT_NE(r1.Isn(a, 80, b, 40000, 0), r2.Isn(a, 80, b, 40000, 0));
  // Spread: ports in sequence give distinct ISNs.
  std::set<uint32_t> seen;
  for (uint16_t p = 1000; p < 2000; p++) seen.insert(g.Isn(a, 80, b, p, 0));
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(TcpSeq, MssFromMtu) {
  EXPECT_EQ(MssForMtu(1500, true), 1460);
  EXPECT_EQ(MssForMtu(1500, false), 1440);
  EXPECT_EQ(MssForMtu(65520, true), 65480);
  EXPECT_EQ(MssForMtu(65520, false), 65460);
  EXPECT_EQ(MssForMtu(100000, true), 65495);
  EXPECT_EQ(MssForMtu(10, true), 8);
}

TEST(TcpSeq, ParsesSynOptions) {
  const uint8_t linux_syn[] = {2, 4, 0xff, 0xd7, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7};
  SynOptions o = ParseSynOptions(linux_syn);
  EXPECT_EQ(o.mss, 65495);
  EXPECT_EQ(o.wscale, 7);
  EXPECT_TRUE(o.ts);
  EXPECT_EQ(o.tsval, 1u);
  EXPECT_FALSE(ParseSynOptions({}).ts);
  EXPECT_EQ(ParseSynOptions({}).mss, 0);
  EXPECT_EQ(ParseSynOptions({}).wscale, -1);
  const uint8_t big_ws[] = {3, 3, 20, 0};
  EXPECT_EQ(ParseSynOptions(big_ws).wscale, 14) << "clamped (RFC 7323)";
  // Malformed: a length running past the area, a zero length, truncation.
  const uint8_t past[] = {2, 4, 5, 0xb4, 3, 9, 7};
  o = ParseSynOptions(past);
  EXPECT_EQ(o.mss, 1460);
  EXPECT_EQ(o.wscale, -1);
  const uint8_t zero_len[] = {8, 0, 2, 4, 1, 1};
  EXPECT_EQ(ParseSynOptions(zero_len).mss, 0);
  const uint8_t trunc[] = {1, 1, 2};
  EXPECT_EQ(ParseSynOptions(trunc).mss, 0);
  const uint8_t end[] = {0, 2, 4, 1, 1};
  EXPECT_EQ(ParseSynOptions(end).mss, 0) << "nothing after end-of-options";
}

TEST(TcpSeq, WritesSynOptionsThatParseBack) {
  uint8_t buf[8];
  ASSERT_EQ(WriteSynOptions(buf, 1460, 7), 8u);
  SynOptions o = ParseSynOptions(buf);
  EXPECT_EQ(o.mss, 1460);
  EXPECT_EQ(o.wscale, 7);
  ASSERT_EQ(WriteSynOptions(buf, 65480, -1), 4u);
  o = ParseSynOptions(std::span<const uint8_t>(buf, 4));
  EXPECT_EQ(o.mss, 65480);
  EXPECT_EQ(o.wscale, -1);
}

TEST(TcpSeq, WritesSynOptionsWithTimestamps) {
  uint8_t buf[20];
  const uint32_t ts[2] = {0x01020304, 0xa0b0c0d0};
  ASSERT_EQ(WriteSynOptions(buf, 1460, 7, ts), 20u);
  SynOptions o = ParseSynOptions(buf);
  EXPECT_EQ(o.mss, 1460);
  EXPECT_EQ(o.wscale, 7);
  EXPECT_TRUE(o.ts);
  EXPECT_EQ(o.tsval, 0x01020304u);
  ASSERT_EQ(WriteSynOptions(buf, 1460, -1, ts), 16u);
  o = ParseSynOptions(std::span<const uint8_t>(buf, 16));
  EXPECT_EQ(o.wscale, -1);
  EXPECT_TRUE(o.ts);
}

TEST(TcpSeq, ParsesTimestampsOfAnySegment) {
  uint8_t buf[kTsOptLen];
  WriteTimestamp(buf, 0xdeadbeef, 7);
  uint32_t v = 0;
  ASSERT_TRUE(ParseTimestamp(buf, &v));
  EXPECT_EQ(v, 0xdeadbeefu);
  // Another layout: the option first, then padding.
  const uint8_t other[] = {8, 10, 0, 0, 0, 9, 0, 0, 0, 0, 1, 1};
  ASSERT_TRUE(ParseTimestamp(other, &v));
  EXPECT_EQ(v, 9u);
  // None, truncated, malformed length: no timestamp.
  const uint8_t sack_only[] = {1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2};
  EXPECT_FALSE(ParseTimestamp(sack_only, &v));
  const uint8_t trunc[] = {1, 1, 8, 10, 0, 0, 0};
  EXPECT_FALSE(ParseTimestamp(trunc, &v));
  const uint8_t bad_len[] = {8, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0};
  EXPECT_FALSE(ParseTimestamp(bad_len, &v));
  EXPECT_FALSE(ParseTimestamp({}, &v));
}

TEST(TcpSeq, SegmentsAndWindows) {
  EXPECT_EQ(SegmentCount(0, 1460), 0u);
  EXPECT_EQ(SegmentCount(1, 1460), 1u);
  EXPECT_EQ(SegmentCount(1460, 1460), 1u);
  EXPECT_EQ(SegmentCount(1461, 1460), 2u);
  EXPECT_EQ(SegmentCount(64 << 20, 65480), 1025u);
  EXPECT_EQ(ScaledWindow(65535, 0), 65535);
  EXPECT_EQ(ScaledWindow(100000, 0), 65535);
  EXPECT_EQ(ScaledWindow(1 << 20, 7), 8192);
  EXPECT_EQ(ScaledWindow(127, 7), 0) << "rounded down";
  EXPECT_EQ(ScaledWindow(uint64_t{1} << 40, 14), 65535);
}

}  // namespace
}  // namespace ringfwd
