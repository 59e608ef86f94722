#include "fwd/pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

namespace ringfwd {

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
  if (pipe_size_) {
    int got = fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(pipe_size_));
    if (got > 0) capacity_ = got;
  }
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
