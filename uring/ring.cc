#include "uring/ring.h"

#include <sys/socket.h>

#include <time.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "uring/user_data.h"

#ifndef IORING_ACCEPT_POLL_FIRST
#define IORING_ACCEPT_POLL_FIRST (1U << 2)  // Linux 6.10; liburing 2.3 predates it
#endif

namespace ringfwd {
namespace {

std::string ReadSysctl(const char* path) {
  std::ifstream in(path);
  std::string v;
  in >> v;
  return v;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Ring>> Ring::Create(unsigned entries, bool single_thread) {
  std::unique_ptr<Ring> r(new Ring());
  // The setups to try, best first: older kernels refuse flags they lack
  // (EINVAL), and the next one goes without them.
  constexpr unsigned kBase = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
  const unsigned setups[] = {
      single_thread ? kBase | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN : 0,
      kBase | IORING_SETUP_COOP_TASKRUN,
      IORING_SETUP_CQSIZE,
  };
  io_uring_params p{};
  int ret = -EINVAL;
  for (unsigned flags : setups) {
    if (!flags) continue;
    p = io_uring_params{};
    p.flags = flags;
    p.cq_entries = entries * 4;
    ret = io_uring_queue_init_params(entries, &r->ring_, &p);
    if (ret != -EINVAL) break;
  }
  if (ret < 0) {
    int err = -ret;
    std::string cause;
    std::string disabled = ReadSysctl("/proc/sys/kernel/io_uring_disabled");
    if (err == EPERM || err == ENOSYS || err == EACCES) {
      if (!disabled.empty() && disabled != "0")
        cause = absl::StrCat("io_uring is disabled by sysctl kernel.io_uring_disabled=", disabled);
      else if (err == ENOSYS)
        cause = "io_uring_setup is not available (kernel without io_uring, or blocked by seccomp)";
      else
        cause = "io_uring_setup was refused (blocked by a seccomp filter or container policy?)";
    } else if (err == ENOMEM) {
      cause = "not enough locked memory for the ring (raise RLIMIT_MEMLOCK)";
    } else {
      cause = "io_uring_setup failed";
    }
    return absl::UnavailableError(absl::StrCat(cause, ": ", std::strerror(err)));
  }
  if (!(p.features & IORING_FEAT_FAST_POLL))
    return absl::UnavailableError("io_uring on this kernel lacks fast poll (need Linux 5.19+)");
  r->initialized_ = true;
  return r;
}

Ring::~Ring() {
  if (initialized_) io_uring_queue_exit(&ring_);
}

io_uring_sqe* Ring::GetSqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (!sqe) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

int Ring::Submit() { return io_uring_submit(&ring_); }

int Ring::SubmitAndWait(int timeout_ms) {
  // The wait counts every completion in the queue, the prompt ones included.
  unsigned want = 1 + prompt_;
  prompt_ = 0;
  if (io_uring_cq_ready(&ring_)) {
    if (!(ring_.flags & IORING_SETUP_DEFER_TASKRUN)) return io_uring_submit(&ring_);
    // A single-thread ring runs completion work (ready sockets) only in a
    // wait: a zero one, so that a run of prompt completions (a long queue
    // of cancellations) does not hold it back.
    timeout_ms = 0;
  }
  if (timeout_ms < 0) return io_uring_submit_and_wait(&ring_, want);
  __kernel_timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000LL};
  io_uring_cqe* cqe = nullptr;
  return io_uring_submit_and_wait_timeout(&ring_, &cqe, want, &ts, nullptr);
}

void Ring::PrepPoll(int fd, unsigned mask, uint64_t user_data) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_poll_add(sqe, fd, mask);
  io_uring_sqe_set_data64(sqe, user_data);
}

void Ring::PrepPollMultishot(int fd, unsigned mask, uint64_t user_data) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_poll_multishot(sqe, fd, mask);
  io_uring_sqe_set_data64(sqe, user_data);
}

void Ring::Close(Fd fd) {
  if (!fd) return;
  if (io_uring_sq_ready(&ring_) == 0) return;  // nothing queued names it: closed here
  io_uring_sqe* sqe = GetSqe();
  // GetSqe() may have flushed the queue to make room; ordering holds either way.
  io_uring_prep_close(sqe, fd.Release());
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(sqe, UserData{kKindIgnore, 0, 0}.Pack());
}

void Ring::PrepCancel(uint64_t target_user_data) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_cancel64(sqe, target_user_data, 0);
  io_uring_sqe_set_data64(sqe, UserData{kKindIgnore, 0, 0}.Pack());
}

void Ring::PrepCancelTagged(uint64_t target_user_data) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_cancel64(sqe, target_user_data, 0);
  io_uring_sqe_set_data64(sqe, kTeardownCancelUserData);
}

void Ring::PrepCancelAll() {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
  io_uring_sqe_set_data64(sqe, kTeardownCancelUserData);
}

int64_t Ring::NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

void Ring::PrepMultishotAccept(int fd, uint64_t user_data) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_multishot_accept(sqe, fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (accept_poll_first_) sqe->ioprio |= IORING_ACCEPT_POLL_FIRST;
  io_uring_sqe_set_data64(sqe, user_data);
}

void Ring::PrepConnect(int fd, const sockaddr* addr, socklen_t len, uint64_t user_data) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_connect(sqe, fd, addr, len);
  io_uring_sqe_set_data64(sqe, user_data);
}

}  // namespace ringfwd
