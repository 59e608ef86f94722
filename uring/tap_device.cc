#include "uring/tap_device.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "uring/log.h"
#include "uring/status.h"

namespace ringfwd {

constexpr size_t kEthHeader = 14;

absl::StatusOr<Fd> TapDevice::OpenTap(const std::string& name, std::string* actual) {
  if (name.size() >= IFNAMSIZ)
    return absl::InvalidArgumentError(absl::StrCat("tap name '", name, "' is too long"));
  Fd fd(open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return ErrnoError(errno, "open /dev/net/tun");
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd.get(), TUNSETIFF, &ifr) < 0)
    return ErrnoError(errno, absl::StrCat("create tap ", name, " (TUNSETIFF)"));
  if (actual) *actual = ifr.ifr_name;
  return fd;
}

TapDevice::TapDevice(Ring* ring, Fd tap, FrameReceiver* rx, size_t mtu, FrameSourceKinds kinds,
                     unsigned reads, unsigned write_slots, unsigned ring_reads)
    : ring_(ring),
      tap_(std::move(tap)),
      rx_(rx),
      frame_size_(mtu + kEthHeader),
      kinds_(kinds),
      nreads_(reads),
      nwrites_(write_slots),
      ring_reads_(std::max(1u, std::min(ring_reads, reads))),
      rbufs_(new uint8_t[reads * frame_size_]),
      wbufs_(new uint8_t[write_slots * frame_size_]),
      ready_len_(reads),
      queued_len_(write_slots) {
  ready_.reserve(reads);
  failed_.reserve(reads);
  batch_.reserve(reads);
  queued_.reserve(write_slots);
  free_writes_.reserve(write_slots);
  for (unsigned i = write_slots; i-- > 0;) free_writes_.push_back(i);
}

TapDevice::~TapDevice() = default;

void TapDevice::Start() {
  for (uint32_t i = 0; i < ring_reads_; i++) SubmitRead(i);
}

void TapDevice::SubmitRead(uint32_t slot) {
  io_uring_sqe* sqe = ring_->GetSqe();
  io_uring_prep_read(sqe, tap_.get(), rbufs_.get() + size_t{slot} * frame_size_, frame_size_, 0);
  io_uring_sqe_set_data64(sqe, UserData{kinds_.read, 0, slot}.Pack());
  reads_in_flight_++;
}

void TapDevice::HandleCompletion(const io_uring_cqe& cqe, UserData ud) {
  if (ud.kind == kinds_.read) {
    if (ud.index >= nreads_) return;
    reads_in_flight_--;
    if (cqe.res > 0) {
      ready_len_[ud.index] = cqe.res;
      ready_.push_back(ud.index);
      stats_.frames_in++;
      stats_.bytes_in += cqe.res;
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
      stats_.bytes_out += cqe.res;
    }
    free_writes_.push_back(ud.index);
  }
}

void TapDevice::DeliverReceived() {
  if (ready_.empty()) return;
  // The ring's read found a frame: whatever else is queued is read now,
  // straight into the other buffers, until the tap is empty.
  for (uint32_t slot = ring_reads_; slot < nreads_; slot++) {
    ssize_t n = read(tap_.get(), rbufs_.get() + size_t{slot} * frame_size_, frame_size_);
    if (n <= 0) break;  // EAGAIN: drained
    ready_len_[slot] = n;
    ready_.push_back(slot);
    stats_.frames_in++;
    stats_.bytes_in += n;
  }
  batch_.clear();
  for (uint32_t slot : ready_)
    batch_.emplace_back(rbufs_.get() + size_t{slot} * frame_size_, ready_len_[slot]);
  rx_->OnFrames(batch_);
  for (uint32_t slot : ready_)
    if (slot < ring_reads_) SubmitRead(slot);
  ready_.clear();
}

void TapDevice::Tick() {
  for (uint32_t slot : failed_) SubmitRead(slot);
  failed_.clear();
}

std::span<uint8_t> TapDevice::Reserve(size_t max_len) {
  if (reserved_ != UINT32_MAX) {
    free_writes_.push_back(reserved_);  // an uncommitted reservation is abandoned
    reserved_ = UINT32_MAX;
  }
  if (max_len > frame_size_ || free_writes_.empty()) {
    stats_.out_dropped++;
    return {};
  }
  reserved_ = free_writes_.back();
  free_writes_.pop_back();
  return {wbufs_.get() + size_t{reserved_} * frame_size_, max_len};
}

void TapDevice::Commit(size_t len) {
  if (reserved_ == UINT32_MAX) return;
  uint32_t slot = reserved_;
  reserved_ = UINT32_MAX;
  if (len == 0) {
    free_writes_.push_back(slot);
    return;
  }
  queued_len_[slot] = len;
  queued_.push_back(slot);
}

void TapDevice::Flush() {
  for (uint32_t slot : queued_) {
    io_uring_sqe* sqe = ring_->GetSqe();
    io_uring_prep_write(sqe, tap_.get(), wbufs_.get() + size_t{slot} * frame_size_,
                        queued_len_[slot], 0);
    io_uring_sqe_set_data64(sqe, UserData{kinds_.write, 0, slot}.Pack());
  }
  queued_.clear();
}

}  // namespace ringfwd
