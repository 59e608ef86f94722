// FrameBatch: the frames of one read batch, grouped by flow, so that one
// handler call serves every frame of a flow.
//
// Theory of operation. The frame source parses the frames of a read, lets the
// link services take theirs, and Add()s the rest (views that parsed, IP
// frames). Group() then sorts them into groups of one flow key - L4
// protocol, source and destination address and port (the echo identifier for
// ICMP echo, see FrameView) - keeping the order of arrival within a group;
// groups come in the order of their first frame. Nothing is allocated: the
// batch holds up to kMaxFrames views in fixed arrays, and frame bytes are not
// copied (the caller keeps them alive until Clear()).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "fwd/packet.h"

namespace ringfwd {

class FrameBatch {
 public:
  static constexpr size_t kMaxFrames = 256;

  // Empties the batch (groups included).
  void Clear();

  // Appends a parsed frame; false (and nothing added) when the batch is
  // full. `frame` must stay valid until Clear().
  bool Add(const FrameView& v, std::span<const uint8_t> frame);

  size_t size() const { return count_; }
  bool full() const { return count_ == kMaxFrames; }
  const FrameView& view(size_t i) const { return views_[i]; }
  std::span<const uint8_t> frame(size_t i) const { return frames_[i]; }

  // Computes the groups of the frames added so far. O(frames).
  void Group();
  // After Group(): the number of groups, and the indexes (for view()/frame())
  // of group g's frames, in arrival order.
  size_t group_count() const { return group_count_; }
  std::span<const uint16_t> group(size_t g) const {
    return std::span<const uint16_t>(order_.data() + group_start_[g],
                                     group_start_[g + 1] - group_start_[g]);
  }

  // True if two views belong to one flow (the grouping key).
  static bool SameFlow(const FrameView& a, const FrameView& b);

 private:
  static constexpr size_t kTableSize = 2 * kMaxFrames;  // open addressing, power of 2

  std::array<FrameView, kMaxFrames> views_;
  std::array<std::span<const uint8_t>, kMaxFrames> frames_;
  size_t count_ = 0;
  // Group() results.
  std::array<uint16_t, kMaxFrames> group_of_;  // frame -> group
  std::array<uint16_t, kMaxFrames> order_;     // frames sorted by group
  std::array<uint16_t, kMaxFrames + 1> group_start_{};
  size_t group_count_ = 0;
  // Scratch hash table: group + 1 of a key, 0 for empty.
  std::array<uint16_t, kTableSize> table_;
  std::array<uint16_t, kMaxFrames> first_of_group_;  // a frame of each group
};

}  // namespace ringfwd
