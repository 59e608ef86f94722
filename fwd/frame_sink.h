// FrameSink: where frames for the guest go.
//
// The link services and the translators write Ethernet frames (no length
// prefix, no virtio-net header) straight into buffers the frame source owns,
// so nothing is copied or allocated per frame. The source sends everything
// committed in one batch when the loop flushes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace ringfwd {

class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // A buffer of at least `max_len` bytes for one outgoing frame, valid until
  // Commit() or the next Reserve(); an empty span if the send queue is full
  // (the caller drops the frame and counts it).
  virtual std::span<uint8_t> Reserve(size_t max_len) = 0;
  // Queues the first `len` bytes of the buffer last reserved (len <=
  // max_len; 0 abandons it).
  virtual void Commit(size_t len) = 0;

  // Whether CommitPartial() can be used: the receiver completes an L4
  // checksum (a tap with virtio-net headers: the guest's kernel takes the
  // frame as CHECKSUM_PARTIAL, so neither side sums the payload).
  virtual bool PartialChecksums() const { return false; }
  // Commit() for a frame whose checksum field, at `csum_offset` from
  // `csum_start` (offsets in the frame), holds only the folded pseudo-header
  // sum. Only where PartialChecksums().
  virtual void CommitPartial(size_t len, uint16_t csum_start, uint16_t csum_offset) {
    (void)csum_start;
    (void)csum_offset;
    Commit(len);
  }
};

}  // namespace ringfwd
