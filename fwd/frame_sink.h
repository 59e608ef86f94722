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

  // The largest frame CommitSegmented() takes; 0 if it cannot be used.
  virtual size_t MaxSegmentedFrame() const { return 0; }
  // CommitPartial() for a TCP frame longer than the MTU, which the receiver
  // takes as segments of `mss` payload bytes each (a tap with segmentation
  // offload: the guest's kernel receives it as one large segment, as from a
  // virtio-net device with guest TSO). `hdr_len` is the length of the
  // Ethernet, IP and TCP headers; the TCP checksum starts at `csum_start`.
  // Only where MaxSegmentedFrame() is at least `len`.
  virtual void CommitSegmented(size_t len, uint16_t csum_start, uint16_t hdr_len, uint16_t mss,
                               bool v6) {
    (void)csum_start;
    (void)hdr_len;
    (void)mss;
    (void)v6;
    Commit(len);
  }
};

}  // namespace ringfwd
