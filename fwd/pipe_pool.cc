#include "fwd/pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "uring/log.h"

namespace ringfwd {

size_t PipeMaxSize() {
  FILE* f = std::fopen("/proc/sys/fs/pipe-max-size", "re");
  if (!f) return 0;
  unsigned long v = 0;
  if (std::fscanf(f, "%lu", &v) != 1) v = 0;
  std::fclose(f);
  return v;
}

void PipePool::Prime() {
  Pipe p;
  if (Get(&p)) Put(std::move(p));
}

void PipePool::Enlarge(int fd) {
  int got = fcntl(fd, F_SETPIPE_SZ, static_cast<int>(pipe_size_));
  int err = errno;
  if (got < 0 && err == EPERM && !fell_back_) {
    fell_back_ = true;
    size_t max = PipeMaxSize();
    if (max > 0 && max < pipe_size_) {
      LOG_WARN(
          "pipe size %d refused: above fs.pipe-max-size (%d), which needs CAP_SYS_RESOURCE; "
          "using %d",
          pipe_size_, max, max);
      pipe_size_ = max;
      got = fcntl(fd, F_SETPIPE_SZ, static_cast<int>(pipe_size_));
      err = errno;
    }
  }
  if (got > 0) {
    capacity_ = static_cast<size_t>(got);
    return;
  }
  // Past fs.pipe-user-pages-soft (the user's pipes hold that many pages) an
  // unprivileged process gets no larger pipes; this one keeps its size.
  LOG_RATELIMITED(log::Level::kWarn,
                  "cannot set a splice pipe to %d bytes: %s (fs.pipe-user-pages-soft "
                  "reached?); it keeps the kernel's size",
                  pipe_size_, std::strerror(err));
}

bool PipePool::Get(Pipe* out) {
  if (!idle_.empty()) {
    *out = std::move(idle_.back());
    idle_.pop_back();
    return true;
  }
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) return false;
  out->r.Reset(fds[0]);
  out->w.Reset(fds[1]);
  if (pipe_size_) Enlarge(fds[1]);
  live_++;
  return true;
}

void PipePool::Put(Pipe&& p) {
  if (!p) return;
  if (idle_.size() < keep_) {
    idle_.push_back(std::move(p));
  } else {
    Discard(std::move(p));
  }
}

void PipePool::Discard(Pipe&& p) {
  if (!p) return;
  Pipe dead = std::move(p);
  live_--;
}

}  // namespace ringfwd
