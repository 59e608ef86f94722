#include "fwd/lru_list.h"

#include <vector>

#include "gtest/gtest.h"

namespace ringfwd {
namespace {

struct Slot {
  uint32_t prev = 0, next = 0;
};
using List = LruList<Slot>;

// The slots from the tail (oldest) to the head, walking newer().
std::vector<uint32_t> OldestFirst(const List& l) {
  std::vector<uint32_t> out;
  for (uint32_t i = l.tail(); i != List::kNil && out.size() < 100; i = l.newer(i)) out.push_back(i);
  return out;
}

TEST(LruListTest, OrderFollowsUse) {
  std::vector<Slot> slots(5);
  List l(&slots);
  EXPECT_TRUE(l.empty());
  EXPECT_EQ(l.head(), List::kNil);
  for (uint32_t i : {0u, 1u, 2u, 3u}) l.PushFront(i);
  EXPECT_EQ(OldestFirst(l), (std::vector<uint32_t>{0, 1, 2, 3}));
  EXPECT_EQ(l.head(), 3u);
  l.MoveToFront(0);  // the oldest used again
  EXPECT_EQ(OldestFirst(l), (std::vector<uint32_t>{1, 2, 3, 0}));
  l.MoveToFront(0);  // already the newest: nothing moves
  EXPECT_EQ(OldestFirst(l), (std::vector<uint32_t>{1, 2, 3, 0}));
  l.MoveToFront(2);  // from the middle
  EXPECT_EQ(OldestFirst(l), (std::vector<uint32_t>{1, 3, 0, 2}));
}

TEST(LruListTest, UnlinkAnywhereKeepsTheRestLinked) {
  std::vector<Slot> slots(4);
  List l(&slots);
  for (uint32_t i : {0u, 1u, 2u, 3u}) l.PushFront(i);
  l.Unlink(0);  // the tail
  EXPECT_EQ(OldestFirst(l), (std::vector<uint32_t>{1, 2, 3}));
  l.Unlink(3);  // the head
  EXPECT_EQ(OldestFirst(l), (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(l.head(), 2u);
  l.Unlink(1);
  l.Unlink(2);
  EXPECT_TRUE(l.empty());
  EXPECT_EQ(l.head(), List::kNil);
  l.PushFront(3);  // a slot can come back
  EXPECT_EQ(OldestFirst(l), (std::vector<uint32_t>{3}));
  EXPECT_EQ(slots[3].next, List::kNil);
}

}  // namespace
}  // namespace ringfwd
