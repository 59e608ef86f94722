// Ring: an RAII io_uring with completion dispatch.
//
// One Ring is owned by one thread (the data-plane thread). Submissions are
// queued with GetSqe() and handed to the kernel in batches by Submit() or
// implicitly by the wait in RunOnce(); a full submission queue is a state,
// not an error: GetSqe() flushes it and tries again.
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "uring/fd.h"

namespace ringfwd {

class Ring {
 public:
  // Sets up a ring of `entries` submission slots (completion queue twice
  // that). Fails with a message naming the cause when io_uring is not
  // available: disabled by sysctl kernel.io_uring_disabled, blocked by a
  // seccomp filter or a container (EPERM/ENOSYS), or out of memory.
  //
  // `single_thread`: the calling thread is the only one that will ever
  // submit to or wait on the ring (creation, the loop and teardown all run
  // on it). The kernel then keeps completion work (a ready socket's poll, a
  // tap read) for the next wait instead of running it at the end of any
  // system call (IORING_SETUP_DEFER_TASKRUN|SINGLE_ISSUER, Linux 6.1+): it
  // is done in one batch, not between a send and the next. On older kernels
  // the ring is set up as without it.
  static absl::StatusOr<std::unique_ptr<Ring>> Create(unsigned entries, bool single_thread = false);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // A free submission entry, with user_data cleared. Flushes the queue to the
  // kernel when it is full. Never returns nullptr.
  io_uring_sqe* GetSqe();

  // Hands every queued submission to the kernel; returns how many, or -errno.
  int Submit();

  // `n` submissions queued since the last wait complete as they are
  // submitted, without waiting on anything outside the process (writes to a
  // tap). The next wait that submits them asks for `n` completions more
  // than one, so that theirs alone do not end it and the loop does not pay
  // a second io_uring_enter to go back to sleep. Only a hint: a completion
  // that comes later delays the wait's return to it, never past the wait's
  // timeout.
  void ExpectPromptCompletions(unsigned n) { prompt_ += n; }

  // The position after the last submission queued so far.
  unsigned QueuedTail() const { return ring_.sq.sqe_tail; }
  // Whether the kernel has taken every submission queued up to `tail` (a
  // QueuedTail()): memory they point to (a send's data) may be reused then.
  bool Submitted(unsigned tail) const {
    return static_cast<int>(__atomic_load_n(ring_.sq.khead, __ATOMIC_ACQUIRE) - tail) >= 0;
  }

  // Submits, waits until at least one completion is ready (one more than
  // the prompt completions expected, see ExpectPromptCompletions) or
  // `timeout_ms` passes (-1: no timeout), then calls handler(const io_uring_cqe&) for every
  // ready completion. Returns the number handled, or -errno (-EINTR when a
  // signal arrived, -ETIME on timeout with nothing handled).
  template <typename Handler>
  int RunOnce(int timeout_ms, Handler&& handler) {
    int ret = SubmitAndWait(timeout_ms);
    if (ret < 0 && ret != -ETIME) return ret;
    int n = 0;
    unsigned head;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      handler(*cqe);
      n++;
    }
    io_uring_cq_advance(&ring_, n);
    return n > 0 ? n : ret;
  }

  // Queues a single-shot poll / multishot poll.
  void PrepPoll(int fd, unsigned mask, uint64_t user_data);
  void PrepPollMultishot(int fd, unsigned mask, uint64_t user_data);
  // Queues the cancellation of the request tagged `target_user_data` (a
  // poll, an accept, a connect...). Polls are cancelled this way, never by
  // IORING_OP_POLL_REMOVE: a removal that meets a poll whose wake-up is
  // being handled (always the case for a poll armed on a ready socket in
  // the same submission) fails with EALREADY and leaves a multishot poll
  // armed, holding its socket open for good (no FIN or reset to the peer).
  // A cancellation marks the poll and its wake-up handler ends it.
  void PrepCancel(uint64_t target_user_data);
  // Closes `fd` after every submission queued so far has been handed to
  // the kernel: at once if none is queued, else by a queued close
  // (IORING_OP_CLOSE, no completion on success). A submission names its
  // socket by number and the kernel looks the number up when it is handed
  // over, so closing before then would leave it EBADF, or worse, aimed at
  // whichever socket reused the number (another thread's, say).
  void Close(Fd fd);
  void PrepMultishotAccept(int fd, uint64_t user_data);
  // Queues a connect of `fd` to `addr`; the kernel reads `addr` when the
  // submission is handed over (Submit or the wait), so it must live until then.
  void PrepConnect(int fd, const sockaddr* addr, socklen_t len, uint64_t user_data);

  // Teardown, stage one: cancels every request in flight and waits (at most
  // `timeout_ms`) until the kernel has completed them all, calling
  // handler(const io_uring_cqe&) for each completion on the way (an accept
  // that completed meanwhile hands over a socket to close). Afterwards the
  // kernel holds no reference to any of our sockets, so closing one frees
  // its port at once. Returns false on timeout.
  //
  // `targets`: the user_data of requests the caller knows to be armed (its
  // listeners' accepts). Each is cancelled by its tag, a hash lookup; one
  // cancellation of "any" then takes what is left, once the targets have
  // completed. A cancellation of "any" costs O(n^2) on its own: each search
  // walks past every request cancelled but not yet completed (Linux 6.x),
  // so 12000 listeners took 2 s of CPU.
  //
  // A cancelled poll or accept completes in completion work that, on a
  // single-thread ring, runs only in a wait (a bounded number per wait).
  // So the targets go in batches (a quarter of the completion queue at
  // most: each brings an answer and the request's last completion), the
  // next once the last one's requests have all ended or a 10 ms wait finds
  // nothing to do; the catch-all then goes at once, and the call returns
  // when its answer is in and a 10 ms wait finds nothing left. Data-path
  // traffic still completing meanwhile does not hold the first stage up.
  template <typename Handler>
  bool CancelEverything(int timeout_ms, std::span<const uint64_t> targets, Handler&& handler) {
    const size_t batch_max =
        std::max<size_t>(1, std::min<size_t>(kCancelBatch, ring_.cq.ring_entries / 4));
    std::vector<uint64_t> batch;  // the current batch's targets, sorted
    size_t queued = 0;            // of targets
    bool last_stage = false;      // the catch-all is queued
    int64_t asked = 0;            // cancellations queued
    int64_t answers = 0;          // cancellations answered
    int64_t found = 0;            // the batch's requests found (answer 0, or -EALREADY: running)
    int64_t ended = 0;            // the batch's requests' last completions
    bool settled = true;          // the stage is over: on to the next
    const int64_t deadline = NowMs() + timeout_ms;
    while (NowMs() < deadline) {
      if (settled && last_stage) return true;
      if (settled && queued < targets.size()) {
        size_t n = std::min(batch_max, targets.size() - queued);
        batch.assign(targets.begin() + queued, targets.begin() + queued + n);
        std::sort(batch.begin(), batch.end());
        for (uint64_t ud : batch) PrepCancelTagged(ud);
        queued += n;
        asked += n;
        found = ended = 0;
      } else if (settled) {
        batch.clear();
        PrepCancelAll();
        asked++;
        last_stage = true;
      }
      int ret = RunOnce(10, [&](const io_uring_cqe& cqe) {
        if (cqe.user_data == kTeardownCancelUserData) {
          answers++;
          if (cqe.res == 0 || cqe.res == -EALREADY) found++;
          return;
        }
        if (!(cqe.flags & IORING_CQE_F_MORE) &&
            std::binary_search(batch.begin(), batch.end(), cqe.user_data))
          ended++;
        handler(cqe);
      });
      if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) break;
      // A batch is over when its requests have ended (or nothing came for
      // 10 ms); the catch-all only when nothing came for 10 ms.
      settled = answers == asked && (ret == -ETIME || (!last_stage && ended >= found));
    }
    return false;
  }
  template <typename Handler>
  bool CancelEverything(int timeout_ms, Handler&& handler) {
    return CancelEverything(timeout_ms, std::span<const uint64_t>(),
                            std::forward<Handler>(handler));
  }

  // Whether multishot accepts wait for readiness before trying accept(2)
  // (IORING_ACCEPT_POLL_FIRST, Linux 6.10+): arming many listeners then
  // costs no accept attempt each. Turned off when the kernel refuses it.
  bool accept_poll_first() const { return accept_poll_first_; }
  void DisableAcceptPollFirst() { accept_poll_first_ = false; }

  io_uring* raw() { return &ring_; }

 private:
  Ring() = default;
  int SubmitAndWait(int timeout_ms);
  void PrepCancelAll();
  void PrepCancelTagged(uint64_t target_user_data);
  static int64_t NowMs();
  static constexpr uint64_t kTeardownCancelUserData = ~uint64_t{0};
  static constexpr size_t kCancelBatch = 256;

  io_uring ring_{};
  bool initialized_ = false;
  bool accept_poll_first_ = true;
  unsigned prompt_ = 0;  // ExpectPromptCompletions() since the last wait
};

}  // namespace ringfwd
