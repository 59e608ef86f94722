#include "fwd/link_fault.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ringfwd {

absl::StatusOr<LinkFaultOptions> ParseLinkFault(const std::string& text) {
  LinkFaultOptions o;
  for (const std::string& part : std::vector<std::string>(absl::StrSplit(text, ','))) {
    std::vector<std::string> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    uint32_t v = 0;
    if (kv.size() != 2 || !absl::SimpleAtoi(kv[1], &v) || v < 2)
      return absl::InvalidArgumentError(
          absl::StrCat("--tap-fault ", text, ": expected drop=N,reorder=M with N, M >= 2"));
    if (kv[0] == "drop")
      o.drop_every = v;
    else if (kv[0] == "reorder")
      o.reorder_every = v;
    else
      return absl::InvalidArgumentError(
          absl::StrCat("--tap-fault ", text, ": unknown fault \"", kv[0], "\""));
  }
  return o;
}

FaultSink::FaultSink(FrameSink* inner, const LinkFaultOptions& o, size_t max_frame)
    : inner_(inner),
      filter_(o),
      max_frame_(std::max(max_frame, inner->MaxSegmentedFrame())),
      held_(new uint8_t[max_frame_]) {}

std::span<uint8_t> FaultSink::Reserve(size_t max_len) {
  last_ = inner_->Reserve(max_len);
  return last_;
}

void FaultSink::Commit(size_t len) { Finish(len, Kind{}); }

void FaultSink::CommitPartial(size_t len, uint16_t csum_start, uint16_t csum_offset) {
  Kind k;
  k.how = Kind::kPartial;
  k.csum_start = csum_start;
  k.csum_offset = csum_offset;
  Finish(len, k);
}

void FaultSink::CommitSegmented(size_t len, uint16_t csum_start, uint16_t hdr_len, uint16_t mss,
                                bool v6) {
  Kind k;
  k.how = Kind::kSegmented;
  k.csum_start = csum_start;
  k.hdr_len = hdr_len;
  k.mss = mss;
  k.v6 = v6;
  Finish(len, k);
}

void FaultSink::Pass(size_t len, const Kind& k) {
  switch (k.how) {
    case Kind::kWhole:
      inner_->Commit(len);
      return;
    case Kind::kPartial:
      inner_->CommitPartial(len, k.csum_start, k.csum_offset);
      return;
    case Kind::kSegmented:
      inner_->CommitSegmented(len, k.csum_start, k.hdr_len, k.mss, k.v6);
      return;
  }
}

void FaultSink::Finish(size_t len, const Kind& k) {
  if (!len) {
    inner_->Commit(0);
    return;
  }
  FaultFilter::Verdict v = filter_.Next();
  if (v == FaultFilter::Verdict::kDrop) {
    filter_.dropped++;
    inner_->Commit(0);
    return;
  }
  if (v == FaultFilter::Verdict::kReorder && !held_len_ && len <= max_frame_) {
    filter_.reordered++;
    std::memcpy(held_.get(), last_.data(), len);
    held_len_ = len;
    held_kind_ = k;
    inner_->Commit(0);
    return;
  }
  Pass(len, k);
  Release();
}

void FaultSink::Release() {
  if (!held_len_) return;
  std::span<uint8_t> buf = inner_->Reserve(held_len_);
  if (buf.empty()) {
    inner_->Commit(0);
  } else {
    std::memcpy(buf.data(), held_.get(), held_len_);
    Pass(held_len_, held_kind_);
  }
  held_len_ = 0;
}

}  // namespace ringfwd
