// TapDevice: frames read from and written to a tap interface (IFF_TAP |
// IFF_NO_PI: Ethernet frames, no packet information; with IFF_VNET_HDR, a
// virtio-net header before each, which this class adds and strips).
//
// Theory of operation. The tap's descriptor is opened in the target
// namespace (a tun device belongs to the namespace of the thread that
// creates it: OpenTap() runs on the namespace thread) and then used from the
// data-plane thread. Frames land in `buffers` preallocated buffers of one
// frame each (MTU + Ethernet header).
//
// Reading, by default: one multishot read (IORING_OP_READ_MULTISHOT, Linux
// 6.7+) whose buffers come from a provided-buffer ring holding every
// receive buffer. The kernel reads the tap whenever it has frames, one
// completion per frame, until it is empty (the read that finds it empty is
// the kernel's, not a system call of ours); a completion parks its buffer as
// ready until the loop calls DeliverReceived(), which hands every frame to
// the receiver in one batch and gives the buffers back to the ring. When the
// buffers run out (more frames in one loop iteration than buffers) or the
// kernel ends the read for another reason, it is re-armed once the buffers
// are back. A kernel that refuses the multishot read (EINVAL: it does not
// know the opcode) or the buffer ring gets the single-shot path:
//
// `ring_reads` of the buffers have a plain read in flight on the ring (one
// by default: every read parked on the tap is woken by every frame, so more
// would only add wakeups); a completed read parks its buffer as ready until
// DeliverReceived(), which takes what else the tap holds with plain
// non-blocking reads into the other buffers (until EAGAIN, or all are full),
// hands every frame to the receiver in one batch and re-submits the ring's
// reads.
//
// Output frames are built in place in `write_slots` preallocated buffers;
// Flush() queues one write per committed frame, and a slot is free again
// when its write completes. A tap write completes as it is submitted, so
// Flush() tells the ring to expect those completions (the loop's wait then
// still sleeps until something else happens, in one io_uring_enter). A read
// that fails (the interface went away) is re-armed on the next Tick(), never
// in a tight loop.
//
// The virtio-net header (a tap opened with `vnet_header`, the daemon's own)
// lets a frame to the guest carry a partial TCP checksum (CommitPartial:
// VIRTIO_NET_HDR_F_NEEDS_CSUM). The guest's kernel takes it as
// CHECKSUM_PARTIAL, as it would a frame from its own loopback: it neither
// verifies the sum nor needs it computed, so the payload is not summed
// twice (once here, once there).
//
// Offloads toward us (`offload`, on by default with a virtio-net header):
// TUNSETOFFLOAD tells the tap interface that we take checksum and TCP
// segmentation offload (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6), as a
// virtio-net device would. The guest's kernel then hands us TCP segments of
// up to 64 KiB whatever the MTU (one frame where it would have cut many,
// the virtio-net header saying how it would have cut them, which we do not
// need: the payload goes to a host socket whole), with the checksum left
// partial. A frame whose header says NEEDS_CSUM or DATA_VALID is delivered
// with kFrameChecksumTrusted: it came from the guest's own stack, so its
// checksum is not ours to check (and a partial one would fail the check).
// The other way, CommitSegmented() sends the guest one TCP frame of up to
// 64 KiB with the header's GSO fields set, which its kernel takes whole, as
// a virtio-net driver would a large receive: one frame, one write and one
// pass through its stack where there would be dozens at MTU 1500. Buffers
// are then sized for the largest such frame.
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

// IORING_OP_READ_MULTISHOT (Linux 6.7; liburing 2.3 predates it).
inline constexpr uint8_t kOpReadMultishot = 49;

struct TapDeviceOptions {
  // Receive buffers of one frame each: a batch's are held until the ring
  // has taken the sends queued for it, while the next batch is read.
  unsigned buffers = 64;
  unsigned write_slots = 128;
  unsigned ring_reads = 1;  // single-shot path: plain reads in flight on the ring
  bool multishot = true;    // a multishot read into a provided-buffer ring, if the kernel has it
  // The opcode of the multishot read; tests give one the kernel refuses, to
  // take the fallback as a kernel before 6.7 would.
  uint8_t multishot_opcode = kOpReadMultishot;
  // With a virtio-net header: take checksum and segmentation offloads from
  // the guest (TUNSETOFFLOAD; without them if the kernel refuses).
  bool offload = true;
};

// The largest frame a tap with segmentation offload hands over: an IPv6
// packet of the largest payload length (64 KiB - 1 after its 40-byte
// header) in an Ethernet frame.
inline constexpr size_t kMaxOffloadFrame = 14 + 40 + 65535;

// The header before each frame on a tap opened with IFF_VNET_HDR: struct
// virtio_net_hdr of <linux/virtio_net.h> (which C++ cannot include: a field
// there is named `class`), in the tap's default native byte order.
struct VnetHeader {
  uint8_t flags = 0;  // kVnetNeedsCsum
  uint8_t gso_type = 0;
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
};
static_assert(sizeof(VnetHeader) == 10);
inline constexpr uint8_t kVnetNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
inline constexpr uint8_t kVnetDataValid = 2;  // VIRTIO_NET_HDR_F_DATA_VALID
inline constexpr uint8_t kVnetGsoTcpV4 = 1;   // VIRTIO_NET_HDR_GSO_TCPV4
inline constexpr uint8_t kVnetGsoTcpV6 = 4;   // VIRTIO_NET_HDR_GSO_TCPV6

class TapDevice : public FrameSource {
 public:
  // Creates (or attaches to) tap interface `name` in the calling thread's
  // network namespace; `*actual` receives the name the kernel used. The
  // descriptor is blocking-free for the ring: io_uring polls it.
  // With `vnet_header`, frames carry a virtio-net header (IFF_VNET_HDR); a
  // TapDevice finds out from the descriptor (TUNGETIFF).
  static absl::StatusOr<Fd> OpenTap(const std::string& name, std::string* actual,
                                    bool vnet_header = false);

  // Takes the tap descriptor; frames up to `mtu` + 14 bytes. Nothing is
  // submitted before Start(). The buffer group of the multishot path is
  // numbered `kinds.read` (unique per ring among the users of provided
  // buffers).
  TapDevice(Ring* ring, Fd tap, FrameReceiver* rx, size_t mtu, FrameSourceKinds kinds,
            const TapDeviceOptions& opts = {});
  // The ring must be torn down (or its requests cancelled) first or after:
  // the buffer ring's memory is unmapped here but not unregistered (the ring
  // may be gone already).
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
  bool PartialChecksums() const override { return vnet_ != 0; }
  void CommitPartial(size_t len, uint16_t csum_start, uint16_t csum_offset) override;
  size_t MaxSegmentedFrame() const override { return offload_ ? kMaxOffloadFrame : 0; }
  void CommitSegmented(size_t len, uint16_t csum_start, uint16_t hdr_len, uint16_t mss,
                       bool v6) override;
  // The virtio-net header before each frame on this tap (0: none).
  size_t vnet_header() const { return vnet_; }
  // Whether the guest's kernel may send us offloaded frames (TUNSETOFFLOAD
  // took effect).
  bool offload() const { return offload_; }

  int fd() const { return tap_.get(); }
  // Whether frames are read by the multishot read (false: the single-shot
  // path, asked for or fallen back to).
  bool multishot() const { return multishot_; }
  // How often the multishot read was re-armed after it ended (out of
  // buffers, mostly).
  uint64_t multishot_rearms() const { return rearms_; }
  // Multishot: buffers delivered but not yet given back (the ring has not
  // taken every submission queued while they were delivered).
  size_t held_buffers() const { return held_.size(); }

 private:
  // Records a read of `n` bytes (virtio-net header included) into `slot`.
  void NoteRead(uint32_t slot, size_t n);
  // Fills batch_ and batch_flags_ with the frames of the ready slots.
  void CollectBatch();
  // Queues the reserved slot's `len` frame bytes after header `h`.
  void CommitWith(size_t len, const VnetHeader& h);
  void SubmitRead(uint32_t slot);
  void StartSingleShot();
  bool SetupBufferRing();
  void SubmitMultishot();
  void HandleMultishot(const io_uring_cqe& cqe);
  void DeliverMultishot();

  Ring* ring_;
  Fd tap_;
  FrameReceiver* rx_;
  size_t frame_size_;
  size_t vnet_;   // virtio-net header length (IFF_VNET_HDR), else 0
  bool offload_;  // TUNSETOFFLOAD took checksum and segmentation offload
  size_t rslot_;  // receive buffer size: vnet_ + the largest frame read
  size_t wslot_;  // send buffer size: vnet_ + the largest frame written
  FrameSourceKinds kinds_;
  unsigned nreads_;  // receive buffers
  unsigned nwrites_;
  unsigned ring_reads_;  // buffers [0, ring_reads_) are read by the ring
  std::unique_ptr<uint8_t[]> rbufs_;
  std::unique_ptr<uint8_t[]> wbufs_;
  std::vector<uint32_t> ready_;       // read slots holding a frame
  std::vector<uint32_t> ready_len_;   // by read slot
  std::vector<uint8_t> ready_flags_;  // by read slot: kFrameChecksumTrusted
  std::vector<uint32_t> failed_;      // read slots to re-arm on the tick
  std::vector<uint32_t> held_;        // multishot: delivered, not yet given back
  unsigned held_tail_ = 0;            // the ring's queued tail after the last delivery
  std::vector<std::span<const uint8_t>> batch_;
  std::vector<uint8_t> batch_flags_;
  std::vector<uint32_t> free_writes_;
  std::vector<uint32_t> queued_;      // write slots committed, not yet submitted
  std::vector<uint32_t> queued_len_;  // by write slot
  uint32_t reserved_ = UINT32_MAX;    // the write slot last reserved
  unsigned reads_in_flight_ = 0;
  FrameSourceStats stats_;
  // The multishot path.
  bool want_multishot_;
  uint8_t multishot_opcode_;
  bool multishot_ = false;
  bool ms_rearm_ = false;   // re-arm after the buffers are back (DeliverReceived)
  bool ms_failed_ = false;  // re-arm on the tick
  uint64_t ms_frames_ = 0;  // frames the multishot read delivered
  uint64_t rearms_ = 0;
  io_uring_buf_ring* br_ = nullptr;  // mapped by hand: liburing 2.3 has no io_uring_setup_buf_ring
  size_t br_bytes_ = 0;
  unsigned br_entries_ = 0;
};

}  // namespace ringfwd
