#include "uring/ring.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include "gtest/gtest.h"
#include "uring/fd.h"

namespace ringfwd {
namespace {

using Clock = std::chrono::steady_clock;

// A prompt completion (a NOP here, a tap write in the daemon) does not end
// the wait that submits it: the wait goes on until something else happens,
// and returns both in one call.
TEST(Ring, WaitDoesNotEndOnExpectedPromptCompletions) {
  absl::StatusOr<std::unique_ptr<Ring>> ring = Ring::Create(8);
  ASSERT_TRUE(ring.ok()) << ring.status();
  Fd ev(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  ASSERT_TRUE(ev);
  (*ring)->PrepPoll(ev.get(), POLLIN, 2);
  io_uring_prep_nop((*ring)->GetSqe());  // user_data 0
  (*ring)->ExpectPromptCompletions(1);
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    uint64_t one = 1;
    (void)!write(ev.get(), &one, sizeof(one));
  });
  Clock::time_point t0 = Clock::now();
  int nop = 0, poll = 0;
  int n = (*ring)->RunOnce(5000, [&](const io_uring_cqe& cqe) {
    if (cqe.user_data == 0) nop++;
    if (cqe.user_data == 2) poll++;
  });
  auto waited = Clock::now() - t0;
  writer.join();
  EXPECT_EQ(n, 2);
  EXPECT_EQ(nop, 1);
  EXPECT_EQ(poll, 1);
  EXPECT_GE(waited, std::chrono::milliseconds(90));

  // The expectation holds for one wait only: the next returns on the NOP.
  io_uring_prep_nop((*ring)->GetSqe());
  t0 = Clock::now();
  n = (*ring)->RunOnce(5000, [](const io_uring_cqe&) {});
  EXPECT_EQ(n, 1);
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(1000));
}

// A completion expected but late never holds the wait past its timeout.
TEST(Ring, ExpectedCompletionsNeverOutlastTheTimeout) {
  absl::StatusOr<std::unique_ptr<Ring>> ring = Ring::Create(8);
  ASSERT_TRUE(ring.ok()) << ring.status();
  io_uring_prep_nop((*ring)->GetSqe());
  (*ring)->ExpectPromptCompletions(5);  // more than will come
  Clock::time_point t0 = Clock::now();
  int nop = 0;
  (*ring)->RunOnce(50, [&](const io_uring_cqe&) { nop++; });
  EXPECT_EQ(nop, 1);
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(2000));
}

// What the tap's UDP sends rely on (fwd/tap_udp.cc): a send with
// MSG_DONTWAIT that would block completes with EAGAIN as it is submitted,
// instead of waiting on a poll that would read its buffer later.
TEST(Ring, DontWaitSendFailsAtOnceInsteadOfParking) {
  absl::StatusOr<std::unique_ptr<Ring>> ring = Ring::Create(8);
  ASSERT_TRUE(ring.ok()) << ring.status();
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  Fd a(sv[0]), b(sv[1]);
  char data[256] = {};
  while (send(a.get(), data, sizeof(data), MSG_DONTWAIT) > 0) {
  }
  ASSERT_EQ(errno, EAGAIN);
  io_uring_sqe* sqe = (*ring)->GetSqe();
  io_uring_prep_send(sqe, a.get(), data, sizeof(data), MSG_DONTWAIT);
  io_uring_sqe_set_data64(sqe, 7);
  ASSERT_EQ((*ring)->Submit(), 1);
  io_uring_cqe* cqe = nullptr;
  ASSERT_EQ(io_uring_peek_cqe((*ring)->raw(), &cqe), 0) << "the send was parked";
  EXPECT_EQ(cqe->user_data, 7u);
  EXPECT_EQ(cqe->res, -EAGAIN);
  io_uring_cqe_seen((*ring)->raw(), cqe);
}

}  // namespace
}  // namespace ringfwd
