// FrameSource: where Ethernet frames from and to the guest come and go.
//
// Two implementations: TapDevice (a tap interface, one frame per read and
// write) and QemuStream (a UNIX stream socket a VM connects to, frames with a
// 4-byte length prefix). Both are driven by the forwarder's ring: their reads
// and writes are io_uring submissions tagged with the tap kinds (fwd/kinds.h),
// whose completions the forwarder hands back through HandleCompletion().
// Frames read are collected there and given to the FrameReceiver in one batch
// per loop iteration by DeliverReceived(), as spans into buffers the source
// owns (valid for the duration of the call; not reused before the ring has
// taken what the receiver queued). Output goes through the
// FrameSink interface: frames are built in place in preallocated buffers and
// every frame committed since the last Flush() is submitted together.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <span>

#include "fwd/frame_sink.h"
#include "uring/user_data.h"

namespace ringfwd {

// What a source's link told it about a frame it read (a bit set, one per
// frame). kFrameChecksumTrusted: the sender's kernel left the frame's TCP or
// UDP checksum to be completed by the link, or verified it already
// (virtio-net NEEDS_CSUM or DATA_VALID): the checksum field is not to be
// checked.
inline constexpr uint8_t kFrameChecksumTrusted = 1;

// Who gets the frames a source reads.
class FrameReceiver {
 public:
  virtual ~FrameReceiver() = default;
  // A batch of frames (at least one), each a whole Ethernet frame, and
  // `flags` either empty (the source knows nothing more) or one entry per
  // frame. The spans are valid until the call returns, and their bytes stay
  // as they are until the ring has taken every submission queued during the
  // call (a receiver may queue sends that point into them).
  virtual void OnFrames(std::span<const std::span<const uint8_t>> frames,
                        std::span<const uint8_t> flags) = 0;
};

struct FrameSourceStats {
  uint64_t frames_in = 0;
  uint64_t bytes_in = 0;
  uint64_t offloaded_in = 0;  // frames longer than the MTU allows (segmentation offload)
  uint64_t frames_out = 0;
  uint64_t bytes_out = 0;
  uint64_t out_dropped = 0;  // no buffer free (Reserve() returned empty) or the write failed
  uint64_t read_errors = 0;
  uint64_t clients = 0;          // QEMU stream: accepted peers
  uint64_t clients_refused = 0;  // QEMU stream: a second peer while one is connected
  uint64_t clients_dropped = 0;  // QEMU stream: bad length, error or EOF
};

class FrameSource : public FrameSink {
 public:
  // Arms the first submissions (reads, or the accept of a stream listener).
  virtual void Start() = 0;
  // A completion of one of this source's submissions (kTapRead, kTapWrite,
  // kTapAccept).
  virtual void HandleCompletion(const io_uring_cqe& cqe, UserData ud) = 0;
  // Hands the frames read since the last call to the receiver, in batches,
  // and re-arms the reads that delivered them.
  virtual void DeliverReceived() = 0;
  // Submits every frame committed since the last call (queued on the ring;
  // the loop's next submit sends them together).
  virtual void Flush() = 0;
  // Whether frames can be sent now (a tap: always; a stream: a peer is
  // connected).
  virtual bool Connected() const = 0;
  // The link's MTU bound on frames: the largest frame Reserve() can give.
  virtual size_t MaxFrame() const = 0;
  virtual const FrameSourceStats& stats() const = 0;
};

}  // namespace ringfwd
