#include "uring/tap_device.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "uring/log.h"
#include "uring/status.h"

namespace ringfwd {

constexpr size_t kEthHeader = 14;
// The generation that tags the multishot read's completions (single-shot
// reads carry 0 and their buffer's index).
constexpr uint32_t kMultishotGen = 1;

namespace {

// The virtio-net header length of tap descriptor `fd`: 0 without
// IFF_VNET_HDR (or for a descriptor that is not a tun device).
size_t VnetHeaderOf(int fd) {
  ifreq ifr{};
  if (ioctl(fd, TUNGETIFF, &ifr) < 0 || !(ifr.ifr_flags & IFF_VNET_HDR)) return 0;
  int len = 0;
  if (ioctl(fd, TUNGETVNETHDRSZ, &len) < 0 || len < static_cast<int>(sizeof(VnetHeader)))
    return sizeof(VnetHeader);
  return static_cast<size_t>(len);
}

// Asks tap `fd` for checksum and TCP segmentation offload toward us; false
// (logged) if the kernel refuses.
bool EnableOffload(int fd) {
  if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) == 0) return true;
  LOG_INFO("tap: no checksum/segmentation offload (TUNSETOFFLOAD: %s); frames of MTU size",
           std::strerror(errno));
  return false;
}

}  // namespace

absl::StatusOr<Fd> TapDevice::OpenTap(const std::string& name, std::string* actual,
                                      bool vnet_header) {
  if (name.size() >= IFNAMSIZ)
    return absl::InvalidArgumentError(absl::StrCat("tap name '", name, "' is too long"));
  Fd fd(open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return ErrnoError(errno, "open /dev/net/tun");
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_header ? IFF_VNET_HDR : 0);
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd.get(), TUNSETIFF, &ifr) < 0)
    return ErrnoError(errno, absl::StrCat("create tap ", name, " (TUNSETIFF)"));
  if (actual) *actual = ifr.ifr_name;
  return fd;
}

TapDevice::TapDevice(Ring* ring, Fd tap, FrameReceiver* rx, size_t mtu, FrameSourceKinds kinds,
                     const TapDeviceOptions& opts)
    : ring_(ring),
      tap_(std::move(tap)),
      rx_(rx),
      frame_size_(mtu + kEthHeader),
      vnet_(VnetHeaderOf(tap_.get())),
      offload_(vnet_ && opts.offload && EnableOffload(tap_.get())),
      rslot_(vnet_ + (offload_ ? std::max(frame_size_, kMaxOffloadFrame) : frame_size_)),
      wslot_(rslot_),  // the largest frame either way
      kinds_(kinds),
      nreads_(std::max(1u, opts.buffers)),
      nwrites_(opts.write_slots),
      ring_reads_(std::max(1u, std::min(opts.ring_reads, nreads_))),
      rbufs_(new uint8_t[nreads_ * rslot_]),
      wbufs_(new uint8_t[nwrites_ * wslot_]),
      ready_len_(nreads_),
      ready_flags_(nreads_),
      queued_len_(nwrites_),
      want_multishot_(opts.multishot),
      multishot_opcode_(opts.multishot_opcode) {
  ready_.reserve(nreads_);
  failed_.reserve(nreads_);
  held_.reserve(nreads_);
  batch_.reserve(nreads_);
  batch_flags_.reserve(nreads_);
  queued_.reserve(nwrites_);
  free_writes_.reserve(nwrites_);
  for (unsigned i = nwrites_; i-- > 0;) free_writes_.push_back(i);
}

TapDevice::~TapDevice() {
  if (br_) munmap(br_, br_bytes_);
}

void TapDevice::Start() {
  if (want_multishot_ && SetupBufferRing()) {
    multishot_ = true;
    SubmitMultishot();
    return;
  }
  StartSingleShot();
}

void TapDevice::StartSingleShot() {
  multishot_ = false;
  for (uint32_t i = 0; i < ring_reads_; i++) SubmitRead(i);
}

bool TapDevice::SetupBufferRing() {
  if (nreads_ > 32768) return false;  // buffer ids are 16 bits, the ring at most 32768 entries
  br_entries_ = std::bit_ceil(nreads_);
  br_bytes_ = sizeof(io_uring_buf) * br_entries_;
  void* map = mmap(nullptr, br_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (map == MAP_FAILED) return false;
  br_ = static_cast<io_uring_buf_ring*>(map);
  io_uring_buf_ring_init(br_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br_);
  reg.ring_entries = br_entries_;
  reg.bgid = kinds_.read;
  if (int ret = io_uring_register_buf_ring(ring_->raw(), &reg, 0); ret < 0) {
    LOG_INFO("tap: no provided-buffer ring (%s); reading with single-shot reads",
             std::strerror(-ret));
    munmap(br_, br_bytes_);
    br_ = nullptr;
    return false;
  }
  const int mask = io_uring_buf_ring_mask(br_entries_);
  for (uint32_t slot = 0; slot < nreads_; slot++)
    io_uring_buf_ring_add(br_, rbufs_.get() + size_t{slot} * rslot_, rslot_,
                          static_cast<uint16_t>(slot), mask, static_cast<int>(slot));
  io_uring_buf_ring_advance(br_, static_cast<int>(nreads_));
  return true;
}

void TapDevice::SubmitMultishot() {
  io_uring_sqe* sqe = ring_->GetSqe();
  // No address and no length: each read takes a whole buffer of the group.
  io_uring_prep_rw(multishot_opcode_, sqe, tap_.get(), nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kinds_.read;
  io_uring_sqe_set_data64(sqe, UserData{kinds_.read, kMultishotGen, 0}.Pack());
}

void TapDevice::HandleMultishot(const io_uring_cqe& cqe) {
  if (cqe.res > 0 && (cqe.flags & IORING_CQE_F_BUFFER)) {
    uint32_t slot = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
    if (slot < nreads_) {
      NoteRead(slot, static_cast<size_t>(cqe.res));
      ms_frames_++;
    }
  }
  if (cqe.flags & IORING_CQE_F_MORE) return;
  // The read ended. Out of buffers (more frames in one loop iteration than
  // buffers), or the kernel's own reasons: re-armed once the buffers are
  // back.
  if (cqe.res > 0 || cqe.res == -ENOBUFS || cqe.res == -EAGAIN || cqe.res == -EINTR) {
    ms_rearm_ = true;
    rearms_++;
    return;
  }
  if (cqe.res == -ECANCELED) return;
  if (cqe.res == -EINVAL && ms_frames_ == 0) {
    // A kernel before 6.7 does not know the opcode: single-shot reads.
    LOG_INFO("tap: no multishot read (%s); reading with single-shot reads",
             std::strerror(-cqe.res));
    io_uring_unregister_buf_ring(ring_->raw(), kinds_.read);
    munmap(br_, br_bytes_);
    br_ = nullptr;
    StartSingleShot();
    return;
  }
  stats_.read_errors++;
  LOG_RATELIMITED(log::Level::kWarn, "tap: read: %s", std::strerror(cqe.res < 0 ? -cqe.res : EIO));
  ms_failed_ = true;
}

void TapDevice::DeliverMultishot() {
  // The buffers of earlier batches go back once the ring has taken what the
  // receiver queued for them (the loop's wait submits it).
  if (!held_.empty() && ring_->Submitted(held_tail_)) {
    const int mask = io_uring_buf_ring_mask(br_entries_);
    for (size_t i = 0; i < held_.size(); i++)
      io_uring_buf_ring_add(br_, rbufs_.get() + size_t{held_[i]} * rslot_, rslot_,
                            static_cast<uint16_t>(held_[i]), mask, static_cast<int>(i));
    io_uring_buf_ring_advance(br_, static_cast<int>(held_.size()));
    held_.clear();
  }
  if (!ready_.empty()) {
    CollectBatch();
    rx_->OnFrames(batch_, batch_flags_);
    held_.insert(held_.end(), ready_.begin(), ready_.end());
    held_tail_ = ring_->QueuedTail();
    ready_.clear();
  }
  if (ms_rearm_) {
    ms_rearm_ = false;
    SubmitMultishot();
  }
}

void TapDevice::NoteRead(uint32_t slot, size_t n) {
  // The frame follows the virtio-net header; a read without one is dropped
  // (its buffer still goes back with the others).
  ready_len_[slot] = n > vnet_ ? static_cast<uint32_t>(n - vnet_) : 0;
  ready_.push_back(slot);
  if (!ready_len_[slot]) return;
  uint8_t vnet_flags = vnet_ ? rbufs_[size_t{slot} * rslot_] : 0;  // VnetHeader::flags
  ready_flags_[slot] = vnet_flags & (kVnetNeedsCsum | kVnetDataValid) ? kFrameChecksumTrusted : 0;
  stats_.frames_in++;
  stats_.bytes_in += ready_len_[slot];
  if (ready_len_[slot] > frame_size_) stats_.offloaded_in++;
}

void TapDevice::CollectBatch() {
  batch_.clear();
  batch_flags_.clear();
  for (uint32_t slot : ready_) {
    if (!ready_len_[slot]) continue;
    batch_.emplace_back(rbufs_.get() + size_t{slot} * rslot_ + vnet_, ready_len_[slot]);
    batch_flags_.push_back(ready_flags_[slot]);
  }
}

void TapDevice::SubmitRead(uint32_t slot) {
  io_uring_sqe* sqe = ring_->GetSqe();
  io_uring_prep_read(sqe, tap_.get(), rbufs_.get() + size_t{slot} * rslot_, rslot_, 0);
  io_uring_sqe_set_data64(sqe, UserData{kinds_.read, 0, slot}.Pack());
  reads_in_flight_++;
}

void TapDevice::HandleCompletion(const io_uring_cqe& cqe, UserData ud) {
  if (ud.kind == kinds_.read) {
    if (ud.gen == kMultishotGen) {
      if (multishot_) HandleMultishot(cqe);
      return;
    }
    if (ud.index >= nreads_ || multishot_) return;
    reads_in_flight_--;
    if (cqe.res > 0) {
      NoteRead(ud.index, static_cast<size_t>(cqe.res));
    } else if (cqe.res == -EAGAIN || cqe.res == -EINTR) {
      SubmitRead(ud.index);
    } else if (cqe.res != -ECANCELED) {
      stats_.read_errors++;
      LOG_RATELIMITED(log::Level::kWarn, "tap: read: %s", std::strerror(-cqe.res));
      failed_.push_back(ud.index);
    }
    return;
  }
  if (ud.kind == kinds_.write) {
    if (ud.index >= nwrites_) return;
    if (cqe.res < 0 || static_cast<uint32_t>(cqe.res) < queued_len_[ud.index]) {
      // A tap takes a frame whole or not at all; a failure loses the frame.
      stats_.out_dropped++;
      if (cqe.res < 0)
        LOG_RATELIMITED(log::Level::kWarn, "tap: write: %s", std::strerror(-cqe.res));
    } else {
      stats_.frames_out++;
      stats_.bytes_out += cqe.res - vnet_;
    }
    free_writes_.push_back(ud.index);
  }
}

void TapDevice::DeliverReceived() {
  if (multishot_) {
    DeliverMultishot();
    return;
  }
  if (ready_.empty()) return;
  // The ring's read found a frame: whatever else is queued is read now,
  // straight into the other buffers, until the tap is empty; not while the
  // ring has yet to take what the receiver queued for the last batch in
  // them (then the next wake-up reads those frames).
  bool reuse = ring_->Submitted(held_tail_);
  for (uint32_t slot = ring_reads_; reuse && slot < nreads_; slot++) {
    ssize_t n = read(tap_.get(), rbufs_.get() + size_t{slot} * rslot_, rslot_);
    if (n <= 0) break;  // EAGAIN: drained
    NoteRead(slot, static_cast<size_t>(n));
  }
  CollectBatch();
  rx_->OnFrames(batch_, batch_flags_);
  held_tail_ = ring_->QueuedTail();
  // Re-submitted after what the receiver queued: the ring issues in order,
  // so its sends have read these buffers before the reads fill them.
  for (uint32_t slot : ready_)
    if (slot < ring_reads_) SubmitRead(slot);
  ready_.clear();
}

void TapDevice::Tick() {
  if (ms_failed_) {
    ms_failed_ = false;
    if (multishot_) SubmitMultishot();
  }
  for (uint32_t slot : failed_) SubmitRead(slot);
  failed_.clear();
}

std::span<uint8_t> TapDevice::Reserve(size_t max_len) {
  if (reserved_ != UINT32_MAX) {
    free_writes_.push_back(reserved_);  // an uncommitted reservation is abandoned
    reserved_ = UINT32_MAX;
  }
  if (max_len > wslot_ - vnet_ || free_writes_.empty()) {
    stats_.out_dropped++;
    return {};
  }
  reserved_ = free_writes_.back();
  free_writes_.pop_back();
  return {wbufs_.get() + size_t{reserved_} * wslot_ + vnet_, max_len};
}

void TapDevice::Commit(size_t len) { CommitWith(len, VnetHeader{}); }

void TapDevice::CommitPartial(size_t len, uint16_t csum_start, uint16_t csum_offset) {
  VnetHeader h;
  if (vnet_) {  // else the caller did not ask PartialChecksums(): sent as is
    h.flags = kVnetNeedsCsum;
    h.csum_start = csum_start;  // the tap's default: native byte order
    h.csum_offset = csum_offset;
  }
  CommitWith(len, h);
}

void TapDevice::CommitSegmented(size_t len, uint16_t csum_start, uint16_t hdr_len, uint16_t mss,
                                bool v6) {
  VnetHeader h;
  h.flags = kVnetNeedsCsum;
  h.gso_type = v6 ? kVnetGsoTcpV6 : kVnetGsoTcpV4;
  h.hdr_len = hdr_len;
  h.gso_size = mss;
  h.csum_start = csum_start;
  h.csum_offset = 16;  // the TCP checksum field
  CommitWith(len, h);
}

void TapDevice::CommitWith(size_t len, const VnetHeader& h) {
  if (reserved_ == UINT32_MAX) return;
  uint32_t slot = reserved_;
  reserved_ = UINT32_MAX;
  if (len == 0) {
    free_writes_.push_back(slot);
    return;
  }
  if (vnet_) {
    uint8_t* base = wbufs_.get() + size_t{slot} * wslot_;
    std::memset(base, 0, vnet_);
    std::memcpy(base, &h, sizeof(h));
  }
  queued_len_[slot] = static_cast<uint32_t>(vnet_ + len);
  queued_.push_back(slot);
}

void TapDevice::Flush() {
  if (queued_.empty()) return;
  // Writes to a tap complete as they are submitted: the wait that submits
  // them must not end on their completions alone.
  ring_->ExpectPromptCompletions(static_cast<unsigned>(queued_.size()));
  for (uint32_t slot : queued_) {
    io_uring_sqe* sqe = ring_->GetSqe();
    io_uring_prep_write(sqe, tap_.get(), wbufs_.get() + size_t{slot} * wslot_, queued_len_[slot],
                        0);
    io_uring_sqe_set_data64(sqe, UserData{kinds_.write, 0, slot}.Pack());
  }
  queued_.clear();
}

}  // namespace ringfwd
