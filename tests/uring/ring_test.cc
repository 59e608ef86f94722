#include "uring/ring.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

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

// A connected TCP pair on loopback: {accepted, client}.
std::pair<Fd, Fd> TcpPair() {
  Fd l(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (!l || bind(l.get(), reinterpret_cast<sockaddr*>(&a), len) != 0 || listen(l.get(), 1) != 0 ||
      getsockname(l.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return {};
  Fd c(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!c || connect(c.get(), reinterpret_cast<sockaddr*>(&a), len) != 0) return {};
  return {Fd(accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC)), std::move(c)};
}

// What `peer` sees within `ms`: 0 (a clean EOF), an errno (ECONNRESET), or
// -1 when nothing came (the other end still open).
int PeerSees(int peer, int ms) {
  pollfd p{peer, POLLIN, 0};
  if (poll(&p, 1, ms) <= 0) return -1;
  char b[16];
  ssize_t n;
  while ((n = recv(peer, b, sizeof(b), MSG_DONTWAIT)) > 0) {
  }
  return n == 0 ? 0 : errno == EAGAIN ? -1 : errno;
}

void LingerZero(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

// A multishot poll armed on a socket that is already readable, and
// cancelled in the same submission (a flow that is closed in the batch that
// re-armed its poll), is gone: closing the socket resets the peer. (With
// IORING_OP_POLL_REMOVE the removal fails with EALREADY, the poll stays
// armed and holds the socket open: the peer never heard of the reset.)
TEST(Ring, CancelEndsAPollArmedOnAReadySocketInTheSameSubmission) {
  absl::StatusOr<std::unique_ptr<Ring>> ring = Ring::Create(8);
  ASSERT_TRUE(ring.ok()) << ring.status();
  auto [s, peer] = TcpPair();
  ASSERT_TRUE(s && peer);
  ASSERT_EQ(send(peer.get(), "x", 1, 0), 1);
  pollfd p{s.get(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 2000), 1);  // readable before the poll is armed
  constexpr uint64_t kUd = 77;
  (*ring)->PrepPollMultishot(s.get(), POLLIN, kUd);
  (*ring)->PrepCancel(kUd);
  ASSERT_EQ((*ring)->Submit(), 2);
  LingerZero(s.get());
  s.Reset();
  bool ended = false;
  for (int i = 0; i < 20 && !ended; i++)
    (*ring)->RunOnce(50, [&](const io_uring_cqe& cqe) {
      if (cqe.user_data == kUd && !(cqe.flags & IORING_CQE_F_MORE)) ended = true;
    });
  EXPECT_TRUE(ended) << "the multishot poll was not ended";
  EXPECT_EQ(PeerSees(peer.get(), 2000), ECONNRESET);
}

// Ring::Close of a socket named by a submission still queued closes it only
// after the kernel took that submission: the poll reports on that socket,
// not EBADF, and not on a socket that got its number meanwhile.
TEST(Ring, CloseComesAfterTheQueuedSubmissionsThatNameTheSocket) {
  absl::StatusOr<std::unique_ptr<Ring>> ring = Ring::Create(8);
  ASSERT_TRUE(ring.ok()) << ring.status();
  auto [s, peer] = TcpPair();
  ASSERT_TRUE(s && peer);
  ASSERT_EQ(send(peer.get(), "x", 1, 0), 1);
  int number = s.get();
  constexpr uint64_t kUd = 78;
  (*ring)->PrepPoll(number, POLLIN, kUd);
  LingerZero(s.get());
  (*ring)->Close(std::move(s));
  EXPECT_FALSE(s);
  // An unconnected socket takes the lowest free number: it would take
  // `number` had the close happened already (and then report POLLHUP).
  Fd other(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(other);
  EXPECT_NE(other.get(), number);
  int res = 0;
  for (int i = 0; i < 20 && res == 0; i++)
    (*ring)->RunOnce(50, [&](const io_uring_cqe& cqe) {
      if (cqe.user_data == kUd) res = cqe.res;
    });
  EXPECT_EQ(res, POLLIN) << (res < 0 ? std::strerror(-res) : "other events");
  EXPECT_EQ(PeerSees(peer.get(), 2000), ECONNRESET);
  // With nothing queued, Close closes at once.
  Fd lone(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int lone_number = lone.get();
  (*ring)->Close(std::move(lone));
  EXPECT_EQ(fcntl(lone_number, F_GETFD), -1);
}

// Listening TCP sockets on 127.0.0.1, each with a multishot accept armed on
// `ring` tagged `first_tag + i`; their addresses in `*addrs`.
std::vector<Fd> ArmedListeners(Ring* ring, int count, uint64_t first_tag,
                               std::vector<sockaddr_in>* addrs) {
  std::vector<Fd> out;
  addrs->assign(count, sockaddr_in{});
  for (int i = 0; i < count; i++) {
    Fd l(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in& a = (*addrs)[i];
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (!l || bind(l.get(), reinterpret_cast<sockaddr*>(&a), len) < 0 || listen(l.get(), 16) < 0 ||
        getsockname(l.get(), reinterpret_cast<sockaddr*>(&a), &len) < 0) {
      ADD_FAILURE() << "listener " << i << ": " << std::strerror(errno);
      return out;
    }
    ring->PrepMultishotAccept(l.get(), first_tag + i);
    out.push_back(std::move(l));
  }
  return out;
}

// Closes `listeners` and expects each port to be free at once.
void ExpectPortsFreeAfterClose(std::vector<Fd>* listeners, const std::vector<sockaddr_in>& addrs) {
  for (size_t i = 0; i < listeners->size(); i++) {
    (*listeners)[i].Reset();
    Fd again(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(again);
    EXPECT_EQ(bind(again.get(), reinterpret_cast<const sockaddr*>(&addrs[i]), sizeof(addrs[i])), 0)
        << "port " << ntohs(addrs[i].sin_port) << ": " << std::strerror(errno);
  }
}

// Teardown frees the ports at once, on either kind of ring: after
// CancelEverything, closing a listener whose multishot accept was armed
// lets the same port be bound again. (On a single-thread ring a cancelled
// accept lets go of its socket only in completion work that runs in a
// wait, after the cancellation itself has completed.)
TEST(Ring, CancelEverythingLetsGoOfListeners) {
  for (bool single_thread : {false, true}) {
    SCOPED_TRACE(single_thread ? "single-thread ring" : "shared ring");
    absl::StatusOr<std::unique_ptr<Ring>> ring = Ring::Create(64, single_thread);
    ASSERT_TRUE(ring.ok()) << ring.status();
    constexpr int kListeners = 3;
    std::vector<sockaddr_in> addrs;
    std::vector<Fd> listeners = ArmedListeners(ring->get(), kListeners, 100, &addrs);
    ASSERT_EQ(listeners.size(), size_t{kListeners});
    // A completion not reaped yet (in the daemon, the wake-up that stopped
    // its loop): the next wait then only submits, and runs no completion work.
    io_uring_prep_nop((*ring)->GetSqe());
    ASSERT_EQ((*ring)->Submit(), kListeners + 1);
    int other = 0;
    EXPECT_TRUE((*ring)->CancelEverything(2000, [&](const io_uring_cqe& cqe) {
      if (cqe.res != -ECANCELED) other++;
    }));
    EXPECT_EQ(other, 1);  // the NOP
    ExpectPortsFreeAfterClose(&listeners, addrs);
  }
}

// Many listeners, named as targets on a small ring (their answers and
// cancelled accepts far outnumber its completion queue), while a socket
// keeps completing (a datagram every 0.2 ms, as a busy flow would):
// the call still ends, and every port is free afterwards.
TEST(Ring, CancelEverythingWithManyTargetsAndTraffic) {
  absl::StatusOr<std::unique_ptr<Ring>> ring = Ring::Create(64, true);
  ASSERT_TRUE(ring.ok()) << ring.status();
  constexpr int kListeners = 300;
  std::vector<sockaddr_in> addrs;
  std::vector<Fd> listeners = ArmedListeners(ring->get(), kListeners, 1000, &addrs);
  ASSERT_EQ(listeners.size(), size_t{kListeners});
  std::vector<uint64_t> targets;
  for (int i = 0; i < kListeners; i++) targets.push_back(1000 + i);
  Fd busy(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_in ba{};
  ba.sin_family = AF_INET;
  ba.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t blen = sizeof(ba);
  ASSERT_EQ(bind(busy.get(), reinterpret_cast<sockaddr*>(&ba), blen), 0);
  ASSERT_EQ(getsockname(busy.get(), reinterpret_cast<sockaddr*>(&ba), &blen), 0);
  (*ring)->PrepPollMultishot(busy.get(), POLLIN, 5);
  (*ring)->Submit();
  std::atomic<bool> stop{false};
  std::thread sender([&] {
    Fd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    for (int i = 0; i < 25000 && !stop; i++) {  // 5 s at most
      sendto(s.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&ba), sizeof(ba));
      usleep(200);
    }
  });
  usleep(20000);  // traffic first
  bool done = (*ring)->CancelEverything(3000, targets, [](const io_uring_cqe&) {});
  stop = true;
  sender.join();
  EXPECT_TRUE(done);
  ExpectPortsFreeAfterClose(&listeners, addrs);
}

}  // namespace
}  // namespace ringfwd
