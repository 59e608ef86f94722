#include "fwd/frame_batch.h"

#include <netinet/in.h>

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fwd/frame_test_util.h"

namespace ringfwd {
namespace {

using testing::Bytes;

Bytes Udp(const char* src, const char* dst, uint16_t sport, uint16_t dport, uint8_t tag) {
  bool v6 = std::string(src).find(':') != std::string::npos;
  Bytes l4 = testing::UdpHeader(sport, dport, Bytes{tag});
  Bytes f = v6 ? testing::Ipv6Frame(kDefaultOurMac, src, dst, IPPROTO_UDP, l4)
               : testing::Ipv4Frame(kDefaultOurMac, src, dst, IPPROTO_UDP, l4);
  testing::FixL4Checksum(f, 6);
  return f;
}

// The tag byte (the first payload byte) of each frame of group g.
std::vector<int> Tags(const FrameBatch& b, size_t g) {
  std::vector<int> tags;
  for (uint16_t i : b.group(g)) tags.push_back(b.frame(i)[b.view(i).payload_off]);
  return tags;
}

TEST(FrameBatch, GroupsByFlowKeepingArrivalOrder) {
  std::vector<Bytes> frames = {
      Udp("192.0.2.10", "203.0.113.5", 1000, 53, 0),
      Udp("192.0.2.10", "203.0.113.5", 1001, 53, 1),
      Udp("192.0.2.10", "203.0.113.5", 1000, 53, 2),
      Udp("192.0.2.10", "203.0.113.6", 1000, 53, 3),
      Udp("2001:db8:1::10", "2001:db8:2::1", 1000, 53, 4),
      Udp("192.0.2.10", "203.0.113.5", 1000, 53, 5),
      Udp("192.0.2.10", "203.0.113.5", 1000, 54, 6),
      Udp("2001:db8:1::10", "2001:db8:2::1", 1000, 53, 7),
  };
  auto batch = std::make_unique<FrameBatch>();
  for (const Bytes& f : frames) {
    FrameView v = ParseFrame(f);
    ASSERT_TRUE(v.ok());
    ASSERT_TRUE(batch->Add(v, f));
  }
  batch->Group();
  ASSERT_EQ(batch->group_count(), 5u);
  EXPECT_EQ(Tags(*batch, 0), (std::vector<int>{0, 2, 5}));
  EXPECT_EQ(Tags(*batch, 1), (std::vector<int>{1}));
  EXPECT_EQ(Tags(*batch, 2), (std::vector<int>{3}));
  EXPECT_EQ(Tags(*batch, 3), (std::vector<int>{4, 7}));
  EXPECT_EQ(Tags(*batch, 4), (std::vector<int>{6}));
  // A TCP segment with the same addresses and ports is another flow.
  FrameView tcp = batch->view(0);
  tcp.l4_proto = IPPROTO_TCP;
  EXPECT_FALSE(FrameBatch::SameFlow(tcp, batch->view(0)));
  EXPECT_TRUE(FrameBatch::SameFlow(batch->view(0), batch->view(2)));
}

TEST(FrameBatch, FullBatchOfDistinctAndOfOneFlow) {
  auto batch = std::make_unique<FrameBatch>();
  std::vector<Bytes> frames;
  for (size_t i = 0; i < FrameBatch::kMaxFrames; i++)
    frames.push_back(Udp("192.0.2.10", "203.0.113.5", static_cast<uint16_t>(1000 + i), 53,
                         static_cast<uint8_t>(i)));
  for (const Bytes& f : frames) ASSERT_TRUE(batch->Add(ParseFrame(f), f));
  EXPECT_TRUE(batch->full());
  EXPECT_FALSE(batch->Add(ParseFrame(frames[0]), frames[0]));
  batch->Group();
  ASSERT_EQ(batch->group_count(), FrameBatch::kMaxFrames);
  for (size_t g = 0; g < batch->group_count(); g++)
    ASSERT_EQ(Tags(*batch, g), (std::vector<int>{static_cast<int>(g & 0xff)}));

  batch->Clear();
  EXPECT_EQ(batch->size(), 0u);
  for (size_t i = 0; i < FrameBatch::kMaxFrames; i++) {
    frames[i] = Udp("192.0.2.10", "203.0.113.5", 1000, 53, static_cast<uint8_t>(i));
    ASSERT_TRUE(batch->Add(ParseFrame(frames[i]), frames[i]));
  }
  batch->Group();
  ASSERT_EQ(batch->group_count(), 1u);
  std::vector<int> all = Tags(*batch, 0);
  ASSERT_EQ(all.size(), FrameBatch::kMaxFrames);
  for (size_t i = 0; i < all.size(); i++) EXPECT_EQ(all[i], static_cast<int>(i));

  batch->Clear();
  batch->Group();
  EXPECT_EQ(batch->group_count(), 0u);
}

}  // namespace
}  // namespace ringfwd
