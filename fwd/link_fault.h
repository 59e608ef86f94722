// LinkFault: fault injection on the tap link, for tests (--tap-fault), since
// the test machines have no netem.
//
// Every Nth frame is dropped and every Mth swapped with the frame after it,
// in both directions: toward the guest by FaultSink, a FrameSink in front of
// the frame source (a frame to reorder is held, copied, until the next one
// is committed, then follows it; nothing is held across a flush); from the
// guest by TapLink, within a read batch (FaultFilter decides). Counting is
// per direction, so the pattern is deterministic for a given traffic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "fwd/frame_sink.h"

namespace ringfwd {

struct LinkFaultOptions {
  uint32_t drop_every = 0;     // 0: never
  uint32_t reorder_every = 0;  // 0: never
  bool enabled() const { return drop_every || reorder_every; }
};

// Parses "drop=N,reorder=M" (either part optional, N and M >= 2).
absl::StatusOr<LinkFaultOptions> ParseLinkFault(const std::string& text);

// What to do with the next frame of one direction.
class FaultFilter {
 public:
  enum class Verdict { kPass, kDrop, kReorder };
  explicit FaultFilter(const LinkFaultOptions& o) : o_(o) {}
  Verdict Next() {
    n_++;
    if (o_.drop_every && n_ % o_.drop_every == 0) return Verdict::kDrop;
    if (o_.reorder_every && n_ % o_.reorder_every == 0) return Verdict::kReorder;
    return Verdict::kPass;
  }
  uint64_t dropped = 0;
  uint64_t reordered = 0;

 private:
  LinkFaultOptions o_;
  uint64_t n_ = 0;
};

// Faults toward the guest, in front of `inner` (borrowed). Frames keep the
// kind they were committed as (whole, partial checksum, segmented), held
// ones too, so the faults hit the frames the link would carry without them.
class FaultSink : public FrameSink {
 public:
  FaultSink(FrameSink* inner, const LinkFaultOptions& o, size_t max_frame);

  std::span<uint8_t> Reserve(size_t max_len) override;
  void Commit(size_t len) override;
  bool PartialChecksums() const override { return inner_->PartialChecksums(); }
  void CommitPartial(size_t len, uint16_t csum_start, uint16_t csum_offset) override;
  size_t MaxSegmentedFrame() const override { return inner_->MaxSegmentedFrame(); }
  void CommitSegmented(size_t len, uint16_t csum_start, uint16_t hdr_len, uint16_t mss,
                       bool v6) override;
  // Sends a held frame now (before a flush: nothing is held across one).
  void Release();
  const FaultFilter& filter() const { return filter_; }

 private:
  // How a frame was committed, to commit it the same way to `inner_`.
  struct Kind {
    enum { kWhole, kPartial, kSegmented } how = kWhole;
    uint16_t csum_start = 0, csum_offset = 0, hdr_len = 0, mss = 0;
    bool v6 = false;
  };
  void Finish(size_t len, const Kind& k);
  void Pass(size_t len, const Kind& k);

  FrameSink* inner_;
  FaultFilter filter_;
  size_t max_frame_;  // the largest frame held
  std::unique_ptr<uint8_t[]> held_;
  size_t held_len_ = 0;
  Kind held_kind_;
  std::span<uint8_t> last_;
};

}  // namespace ringfwd
