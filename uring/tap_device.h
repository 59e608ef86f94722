// TapDevice: frames read from and written to a tap interface (IFF_TAP |
// IFF_NO_PI: plain Ethernet frames, no packet information, no vnet header).
//
// Theory of operation. The tap's descriptor is opened in the target
// namespace (a tun device belongs to the namespace of the thread that
// creates it: OpenTap() runs on the namespace thread) and then used from the
// data-plane thread. Frames land in `buffers` preallocated buffers of one
// frame each (MTU + Ethernet header). `ring_reads` of them have a read in
// flight on the ring (one by default: every read parked on the tap is woken
// by every frame, so more would only add wakeups); a completed read parks its
// buffer as ready until the loop calls DeliverReceived(), which takes what
// else the tap holds with plain non-blocking reads into the other buffers
// (until EAGAIN, or all are full), hands every frame to the receiver in one
// batch and re-submits the ring's reads. Output frames are built in place in
// `write_slots` preallocated buffers; Flush() queues one write per committed
// frame, and a slot is free again when its write completes. A read that
// fails (the interface went away) is re-armed on the next Tick(), never in a
// tight loop.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "uring/fd.h"
#include "uring/frame_source.h"
#include "uring/ring.h"

namespace ringfwd {

// The submission kinds a frame source tags its requests with.
struct FrameSourceKinds {
  uint8_t read = 0;
  uint8_t write = 0;
  uint8_t accept = 0;
};

class TapDevice : public FrameSource {
 public:
  // Creates (or attaches to) tap interface `name` in the calling thread's
  // network namespace; `*actual` receives the name the kernel used. The
  // descriptor is blocking-free for the ring: io_uring polls it.
  static absl::StatusOr<Fd> OpenTap(const std::string& name, std::string* actual);

  // Takes the tap descriptor; frames up to `mtu` + 14 bytes. Nothing is
  // submitted before Start().
  TapDevice(Ring* ring, Fd tap, FrameReceiver* rx, size_t mtu, FrameSourceKinds kinds,
            unsigned buffers = 32, unsigned write_slots = 128, unsigned ring_reads = 1);
  ~TapDevice() override;

  void Start() override;
  void HandleCompletion(const io_uring_cqe& cqe, UserData ud) override;
  void DeliverReceived() override;
  void Flush() override;
  bool Connected() const override { return true; }
  size_t MaxFrame() const override { return frame_size_; }
  const FrameSourceStats& stats() const override { return stats_; }
  // Re-arms reads that stopped on an error.
  void Tick();

  std::span<uint8_t> Reserve(size_t max_len) override;
  void Commit(size_t len) override;

  int fd() const { return tap_.get(); }

 private:
  void SubmitRead(uint32_t slot);

  Ring* ring_;
  Fd tap_;
  FrameReceiver* rx_;
  size_t frame_size_;
  FrameSourceKinds kinds_;
  unsigned nreads_;  // receive buffers
  unsigned nwrites_;
  unsigned ring_reads_;  // buffers [0, ring_reads_) are read by the ring
  std::unique_ptr<uint8_t[]> rbufs_;
  std::unique_ptr<uint8_t[]> wbufs_;
  std::vector<uint32_t> ready_;      // read slots holding a frame
  std::vector<uint32_t> ready_len_;  // by read slot
  std::vector<uint32_t> failed_;     // read slots to re-arm on the tick
  std::vector<std::span<const uint8_t>> batch_;
  std::vector<uint32_t> free_writes_;
  std::vector<uint32_t> queued_;      // write slots committed, not yet submitted
  std::vector<uint32_t> queued_len_;  // by write slot
  uint32_t reserved_ = UINT32_MAX;    // the write slot last reserved
  unsigned reads_in_flight_ = 0;
  FrameSourceStats stats_;
};

}  // namespace ringfwd
