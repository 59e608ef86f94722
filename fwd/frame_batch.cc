#include "fwd/frame_batch.h"

#include <cstring>

namespace ringfwd {
namespace {

uint64_t KeyHash(const FrameView& v) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ v.l4_proto;
  auto mix = [&h](uint64_t x) {
    h ^= x;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
  };
  uint64_t w[4];
  std::memcpy(w, v.src.b.data(), 16);
  std::memcpy(w + 2, v.dst.b.data(), 16);
  mix(w[0]);
  mix(w[1]);
  mix(w[2]);
  mix(w[3]);
  mix((uint64_t{v.sport} << 16) | v.dport);
  return h;
}

}  // namespace

bool FrameBatch::SameFlow(const FrameView& a, const FrameView& b) {
  return a.l4_proto == b.l4_proto && a.sport == b.sport && a.dport == b.dport && a.src == b.src &&
         a.dst == b.dst;
}

void FrameBatch::Clear() {
  count_ = 0;
  group_count_ = 0;
}

bool FrameBatch::Add(const FrameView& v, std::span<const uint8_t> frame) {
  if (count_ == kMaxFrames) return false;
  views_[count_] = v;
  frames_[count_] = frame;
  count_++;
  return true;
}

void FrameBatch::Group() {
  table_.fill(0);
  group_count_ = 0;
  std::array<uint16_t, kMaxFrames + 1> sizes;  // frames per group
  for (size_t i = 0; i < count_; i++) {
    size_t slot = KeyHash(views_[i]) & (kTableSize - 1);
    for (;;) {
      uint16_t g1 = table_[slot];
      if (g1 == 0) {
        uint16_t g = static_cast<uint16_t>(group_count_++);
        table_[slot] = static_cast<uint16_t>(g + 1);
        first_of_group_[g] = static_cast<uint16_t>(i);
        sizes[g] = 0;
        group_of_[i] = g;
        break;
      }
      if (SameFlow(views_[first_of_group_[g1 - 1]], views_[i])) {
        group_of_[i] = static_cast<uint16_t>(g1 - 1);
        break;
      }
      slot = (slot + 1) & (kTableSize - 1);  // at most half full: terminates
    }
    sizes[group_of_[i]]++;
  }
  // Counting sort by group, stable: arrival order within each group.
  group_start_[0] = 0;
  for (size_t g = 0; g < group_count_; g++)
    group_start_[g + 1] = static_cast<uint16_t>(group_start_[g] + sizes[g]);
  std::array<uint16_t, kMaxFrames> fill;
  for (size_t g = 0; g < group_count_; g++) fill[g] = group_start_[g];
  for (size_t i = 0; i < count_; i++) order_[fill[group_of_[i]]++] = static_cast<uint16_t>(i);
}

}  // namespace ringfwd
