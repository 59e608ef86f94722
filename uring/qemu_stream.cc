#include "uring/qemu_stream.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "uring/log.h"
#include "uring/status.h"

namespace ringfwd {

absl::StatusOr<Fd> QemuStream::Listen(const std::string& path) {
  sockaddr_un sun{};
  if (path.empty() || path.size() >= sizeof(sun.sun_path))
    return absl::InvalidArgumentError(absl::StrCat("qemu socket path '", path, "' is too long"));
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, path.data(), path.size());
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return absl::AlreadyExistsError(absl::StrCat("qemu socket ", path, ": exists, not a socket"));
    unlink(path.c_str());
  }
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoError(errno, "qemu socket: socket");
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) < 0)
    return ErrnoError(errno, absl::StrCat("qemu socket: bind ", path));
  if (listen(fd.get(), 4) < 0) return ErrnoError(errno, absl::StrCat("qemu socket: listen ", path));
  return fd;
}

QemuStream::QemuStream(Ring* ring, Fd listener, std::string path, FrameReceiver* rx, size_t mtu,
                       FrameSourceKinds kinds)
    : ring_(ring),
      listener_(std::move(listener)),
      path_(std::move(path)),
      rx_(rx),
      max_frame_(std::min<size_t>(mtu + 14, kMaxFrame)),
      kinds_(kinds),
      rbuf_(new uint8_t[kRecvBuf]) {
  sbuf_[0].reset(new uint8_t[kSendBuf]);
  sbuf_[1].reset(new uint8_t[kSendBuf]);
  batch_.reserve(kBatch);
}

QemuStream::~QemuStream() {
  if (!path_.empty()) unlink(path_.c_str());
}

void QemuStream::Start() { ArmAccept(); }

void QemuStream::ArmAccept() {
  ring_->PrepMultishotAccept(listener_.get(), UserData{kinds_.accept, 0, 0}.Pack());
  accept_armed_ = true;
}

void QemuStream::SubmitRecv() {
  io_uring_sqe* sqe = ring_->GetSqe();
  io_uring_prep_recv(sqe, client_.get(), rbuf_.get(), kRecvBuf, 0);
  io_uring_sqe_set_data64(sqe, UserData{kinds_.read, gen_, 0}.Pack());
  recv_busy_ = true;
}

void QemuStream::SubmitSend() {
  io_uring_sqe* sqe = ring_->GetSqe();
  io_uring_prep_send(sqe, client_.get(), sbuf_[fill_ ^ 1].get() + send_off_, send_len_ - send_off_,
                     MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, UserData{kinds_.write, gen_, 0}.Pack());
  send_busy_ = true;
}

void QemuStream::DropClient(const char* why) {
  LOG_WARN("qemu socket %s: %s; dropping the client", path_, why);
  stats_.clients_dropped++;
  // Shut down first: the requests still in flight complete at once.
  shutdown(client_.get(), SHUT_RDWR);
  if (recv_busy_) ring_->PrepCancel(UserData{kinds_.read, gen_, 0}.Pack());
  if (send_busy_) ring_->PrepCancel(UserData{kinds_.write, gen_, 0}.Pack());
  ring_->Close(std::move(client_));  // after the submissions that name it
  gen_ = (gen_ + 1) & UserData::kGenMask;
  decoder_.Reset();
  rlen_ = 0;
  fill_len_ = 0;
  send_len_ = send_off_ = 0;
  reserved_ = 0;
}

void QemuStream::HandleCompletion(const io_uring_cqe& cqe, UserData ud) {
  if (ud.kind == kinds_.accept) {
    if (!(cqe.flags & IORING_CQE_F_MORE)) accept_armed_ = false;
    if (cqe.res >= 0) {
      Fd peer(cqe.res);
      if (client_) {
        stats_.clients_refused++;
        LOG_RATELIMITED(log::Level::kWarn,
                        "qemu socket %s: a client is already connected; refusing another", path_);
      } else {
        client_ = std::move(peer);
        stats_.clients++;
        LOG_INFO("qemu socket %s: client connected", path_);
        // A dropped client's receive may still hold the buffer: then its
        // completion starts this client's first receive.
        if (!recv_busy_) SubmitRecv();
      }
    } else if (cqe.res != -ECANCELED) {
      LOG_RATELIMITED(log::Level::kWarn, "qemu socket %s: accept: %s", path_,
                      std::strerror(-cqe.res));
    }
    if (!accept_armed_ && cqe.res != -ECANCELED) ArmAccept();
    return;
  }
  if (ud.kind == kinds_.read) {
    recv_busy_ = false;
    if (ud.gen != gen_) {  // a dropped client's receive: the buffer is free
      if (client_) SubmitRecv();
      return;
    }
    if (!client_) return;
    if (cqe.res > 0) {
      rlen_ = cqe.res;
      stats_.bytes_in += cqe.res;
    } else if (cqe.res == 0) {
      LOG_INFO("qemu socket %s: client disconnected", path_);
      DropClient("end of stream");
    } else if (cqe.res == -EAGAIN || cqe.res == -EINTR) {
      SubmitRecv();
    } else {
      stats_.read_errors++;
      DropClient(std::strerror(-cqe.res));
    }
    return;
  }
  if (ud.kind == kinds_.write) {
    send_busy_ = false;
    if (ud.gen != gen_) {  // a dropped client's send: its buffer is free
      Flush();
      return;
    }
    if (!client_) return;
    if (cqe.res < 0 && cqe.res != -EAGAIN && cqe.res != -EINTR) {
      DropClient(std::strerror(-cqe.res));
      return;
    }
    if (cqe.res > 0) {
      send_off_ += cqe.res;
      stats_.bytes_out += cqe.res;
    }
    if (send_off_ < send_len_) {
      SubmitSend();  // the rest of the buffer first: the stream stays aligned
      return;
    }
    send_len_ = send_off_ = 0;
    Flush();
  }
}

void QemuStream::Deliver(std::span<const uint8_t> frame) {
  stats_.frames_in++;
  batch_.push_back(frame);
  if (batch_.size() == kBatch) {
    rx_->OnFrames(batch_, {});
    batch_.clear();
  }
}

void QemuStream::DeliverReceived() {
  if (!rlen_ || !client_) return;
  size_t n = rlen_;
  rlen_ = 0;
  batch_.clear();
  bool ok = decoder_.Feed(std::span<const uint8_t>(rbuf_.get(), n),
                          [this](std::span<const uint8_t> f) { Deliver(f); });
  if (!batch_.empty()) rx_->OnFrames(batch_, {});
  batch_.clear();
  if (!client_) return;  // the receiver may not drop us, but be safe
  if (!ok) {
    std::string why = absl::StrCat("frame length ", decoder_.bad_length(), " out of range (",
                                   kMinFrame, "-", kMaxFrame, ")");
    DropClient(why.c_str());
    return;
  }
  SubmitRecv();
}

std::span<uint8_t> QemuStream::Reserve(size_t max_len) {
  reserved_ = 0;
  if (!client_ || max_len > max_frame_ || fill_len_ + kStreamPrefix + max_len > kSendBuf) {
    stats_.out_dropped++;
    return {};
  }
  reserved_ = max_len;
  return {sbuf_[fill_].get() + fill_len_ + kStreamPrefix, max_len};
}

void QemuStream::Commit(size_t len) {
  if (!reserved_ || len == 0 || len > reserved_) {
    reserved_ = 0;
    return;
  }
  reserved_ = 0;
  EncodeFramePrefix(len, sbuf_[fill_].get() + fill_len_);
  fill_len_ += kStreamPrefix + len;
  stats_.frames_out++;
}

void QemuStream::Flush() {
  if (!client_ || send_busy_ || send_len_ || fill_len_ == 0) return;
  send_len_ = fill_len_;
  send_off_ = 0;
  fill_len_ = 0;
  fill_ ^= 1;  // the filled buffer goes to the kernel, the other takes frames
  SubmitSend();
}

}  // namespace ringfwd
