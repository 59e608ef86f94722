// Ways to move bytes from one loopback TCP connection to another: the choice
// behind ringfwd's data path (DESIGN.md "The data path", fwd/tcp_flow.cc).
//
// Two connected pairs, A->B and C->D. A writer thread sends kBytes into A; the
// benchmark's own thread (the forwarding thread) moves them from B to C; a
// reader thread receives them from D. One iteration is kBytes end to end;
// bytes_per_second is the forwarding rate. Counters, per GiB forwarded:
//   thread_ms_per_GiB  CPU time (user+system, getrusage(RUSAGE_THREAD)) of the
//                      forwarding thread alone;
//   fwd_ms_per_GiB     CPU time of the whole process minus the writer's and
//                      the reader's threads: the forwarding thread plus any
//                      io_uring worker (iou-wrk) threads that ran its
//                      requests. IORING_OP_SPLICE always runs on io-wq, so
//                      only this counter shows its cost.
// On loopback, the kernel's receive processing for a segment runs in the
// sender's context, so the forwarding thread also pays for D's receive path
// (and the writer for B's): the same for every method.
//
// Methods:
//   BM_SplicePoll/pipe        splice(2) B->pipe->C, non-blocking, waiting with
//                             poll(2) on EAGAIN;
//   BM_SpliceUringPoll/pipe   the same splice(2) calls, but readiness comes
//                             from the ring (multishot POLLIN on B, one-shot
//                             POLLOUT on C): what ringfwd does;
//   BM_UringSplice/pipe/n     IORING_OP_SPLICE B->pipe and pipe->C with n
//                             pipes in a pipeline (n = 2: one pipe fills
//                             while the other drains);
//   BM_UringRecvSend/buf/n    IORING_OP_RECV into n plain buffers and
//                             IORING_OP_SEND out of them, pipelined the same
//                             way;
//   BM_UringProvided/buf/n    multishot recv with a provided-buffer ring of
//                             n buffers, one send in flight, buffers handed
//                             back after their send.
// Order is kept in every method: one fill and one drain in flight at most,
// drains in fill order.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "uring/fd.h"
#include "uring/ring.h"

namespace ringfwd {
namespace {

constexpr size_t kBytes = size_t{64} << 20;  // per iteration
constexpr size_t kIoChunk = 256 << 10;       // writer/reader syscall size
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr int kPollTimeoutMs = 10000;  // a stuck transfer fails, never hangs

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "datapath_benchmark: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

[[noreturn]] void DieErr(const char* what, int err) {
  errno = err;
  Die(what);
}

double CpuSeconds(int who) {
  rusage ru{};
  getrusage(who, &ru);
  auto s = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec * 1e-6; };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// A connected loopback TCP pair: `tx` is the connecting end, `rx` the
// accepted one.
struct TcpPair {
  Fd tx;
  Fd rx;
};

TcpPair MakePair() {
  Fd l(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sa);
  if (!l || bind(l.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0 ||
      listen(l.get(), 1) < 0 || getsockname(l.get(), reinterpret_cast<sockaddr*>(&sa), &len) < 0)
    Die("listen");
  TcpPair p;
  p.tx = Fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!p.tx || connect(p.tx.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0)
    Die("connect");
  p.rx = Fd(accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!p.rx) Die("accept");
  return p;
}

// The sockets of one benchmark run. The forwarding thread reads `b` and
// writes `c`: non-blocking for splice(2) driven by readiness (as in ringfwd),
// blocking for io_uring's own operations (a non-blocking socket makes
// IORING_OP_SPLICE fail with EAGAIN instead of waiting). The writer and
// reader use blocking `a` and `d`.
struct Setup {
  Fd a, b, c, d;
  explicit Setup(bool nonblock) {
    TcpPair in = MakePair();
    TcpPair out = MakePair();
    a = std::move(in.tx);
    b = std::move(in.rx);
    c = std::move(out.tx);
    d = std::move(out.rx);
    for (int fd : {b.get(), c.get()}) {
      SetNoDelay(fd);
      if (nonblock) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
  }
};

struct Pipe {
  Fd r, w;
  Pipe(size_t size, bool nonblock) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | (nonblock ? O_NONBLOCK : 0)) < 0) Die("pipe2");
    r = Fd(fds[0]);
    w = Fd(fds[1]);
    if (fcntl(w.get(), F_SETPIPE_SZ, static_cast<int>(size)) < 0) Die("F_SETPIPE_SZ");
  }
  size_t capacity() const { return static_cast<size_t>(fcntl(w.get(), F_GETPIPE_SZ)); }
};

std::unique_ptr<Ring> MakeRing() {
  auto ring = Ring::Create(256);
  if (!ring.ok()) {
    std::fprintf(stderr, "datapath_benchmark: %s\n", std::string(ring.status().message()).c_str());
    std::abort();
  }
  return std::move(*ring);
}

io_uring_sqe* Sqe(io_uring* ring) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (!sqe) {
    io_uring_submit(ring);
    sqe = io_uring_get_sqe(ring);
  }
  return sqe;
}

// Waits for one completion and copies it out.
io_uring_cqe WaitCqe(io_uring* ring) {
  io_uring_cqe* cqe = nullptr;
  __kernel_timespec ts{kPollTimeoutMs / 1000, 0};
  int ret = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, nullptr);
  if (ret < 0 && ret != -ETIME) DieErr("io_uring wait", -ret);
  if (!cqe) DieErr("io_uring wait (timed out)", ETIMEDOUT);
  io_uring_cqe copy = *cqe;
  io_uring_cqe_seen(ring, cqe);
  return copy;
}

void WaitFd(int fd, short events) {
  pollfd p{fd, events, 0};
  int n = poll(&p, 1, kPollTimeoutMs);
  if (n == 0) DieErr("poll (timed out)", ETIMEDOUT);
  if (n < 0 && errno != EINTR) Die("poll");
}

// Runs one benchmark: `forward()` must move exactly kBytes from s.b to s.c.
template <typename Forward>
void RunTransfer(benchmark::State& state, Setup& s, Forward&& forward) {
  std::vector<char> wbuf(kIoChunk, 'r');
  std::vector<char> rbuf(kIoChunk);
  double thread_cpu = 0;
  double fwd_cpu = 0;
  for (auto _ : state) {
    double writer_cpu = 0, reader_cpu = 0;
    double self0 = CpuSeconds(RUSAGE_SELF);
    std::thread writer([&] {
      double t0 = CpuSeconds(RUSAGE_THREAD);
      for (size_t left = kBytes; left > 0;) {
        ssize_t n = send(s.a.get(), wbuf.data(), std::min(left, wbuf.size()), 0);
        if (n <= 0) Die("writer send");
        left -= static_cast<size_t>(n);
      }
      writer_cpu = CpuSeconds(RUSAGE_THREAD) - t0;
    });
    std::thread reader([&] {
      double t0 = CpuSeconds(RUSAGE_THREAD);
      for (size_t left = kBytes; left > 0;) {
        ssize_t n = recv(s.d.get(), rbuf.data(), std::min(left, rbuf.size()), 0);
        if (n <= 0) Die("reader recv");
        left -= static_cast<size_t>(n);
      }
      reader_cpu = CpuSeconds(RUSAGE_THREAD) - t0;
    });
    double t0 = CpuSeconds(RUSAGE_THREAD);
    forward();
    double t1 = CpuSeconds(RUSAGE_THREAD);
    writer.join();
    reader.join();
    thread_cpu += t1 - t0;
    fwd_cpu += CpuSeconds(RUSAGE_SELF) - self0 - writer_cpu - reader_cpu;
  }
  double gib = static_cast<double>(state.iterations()) * static_cast<double>(kBytes) / kGiB;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kBytes));
  state.counters["thread_ms_per_GiB"] = benchmark::Counter(thread_cpu * 1e3 / gib);
  state.counters["fwd_ms_per_GiB"] = benchmark::Counter(fwd_cpu * 1e3 / gib);
}

// ---- (a) splice(2) on the calling thread ----------------------------------

// The core of TcpFlows::Move(): fill the pipe from the source only when it is
// empty, drain it into the destination, and call `wait_in` / `wait_out` on
// EAGAIN.
template <typename WaitIn, typename WaitOut>
void SpliceLoop(const Setup& s, const Pipe& pipe, WaitIn&& wait_in, WaitOut&& wait_out) {
  const size_t cap = pipe.capacity();
  size_t out = 0;
  size_t pending = 0;
  while (out < kBytes) {
    if (pending == 0) {
      ssize_t n =
          splice(s.b.get(), nullptr, pipe.w.get(), nullptr, cap, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n == 0) DieErr("splice in: early EOF", EPIPE);
      if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) Die("splice in");
        wait_in();
        continue;
      }
      pending = static_cast<size_t>(n);
    }
    ssize_t m = splice(pipe.r.get(), nullptr, s.c.get(), nullptr, pending,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (m < 0) {
      if (errno != EAGAIN && errno != EINTR) Die("splice out");
      wait_out();
      continue;
    }
    pending -= static_cast<size_t>(m);
    out += static_cast<size_t>(m);
  }
}

void BM_SplicePoll(benchmark::State& state) {
  Setup s(true);
  Pipe pipe(static_cast<size_t>(state.range(0)), true);
  RunTransfer(state, s, [&] {
    SpliceLoop(
        s, pipe, [&] { WaitFd(s.b.get(), POLLIN); }, [&] { WaitFd(s.c.get(), POLLOUT); });
  });
}
BENCHMARK(BM_SplicePoll)
    ->ArgName("pipe")
    ->Arg(64 << 10)
    ->Arg(256 << 10)
    ->Arg(1 << 20)
    ->UseRealTime();

// The same with 1 MiB pipes, the forwarder's sending socket under a given
// congestion control: 0 the system's default (bbr here, which paces each
// segment with a timer), 1 cubic, 2 reno (ringfwd's --loopback-cc).
void BM_SplicePollCc(benchmark::State& state) {
  static const char* const kNames[] = {"system", "cubic", "reno"};
  const char* cc = kNames[state.range(0)];
  Setup s(true);
  if (state.range(0) &&
      setsockopt(s.c.get(), IPPROTO_TCP, TCP_CONGESTION, cc, std::strlen(cc)) < 0) {
    state.SkipWithError((std::string(cc) + " is not available").c_str());
    return;
  }
  state.SetLabel(cc);
  Pipe pipe(1 << 20, true);
  RunTransfer(state, s, [&] {
    SpliceLoop(
        s, pipe, [&] { WaitFd(s.b.get(), POLLIN); }, [&] { WaitFd(s.c.get(), POLLOUT); });
  });
}
BENCHMARK(BM_SplicePollCc)->ArgName("cc")->DenseRange(0, 2)->UseRealTime();

void BM_SpliceUringPoll(benchmark::State& state) {
  Setup s(true);
  Pipe pipe(static_cast<size_t>(state.range(0)), true);
  std::unique_ptr<Ring> ring = MakeRing();
  io_uring* r = ring->raw();
  constexpr uint64_t kIn = 1, kOut = 2;
  bool in_armed = false;
  // Consumes completions until one for `want` (a readiness event) arrives;
  // the multishot POLLIN is re-armed when it ends.
  auto wait = [&](uint64_t want) {
    for (int i = 0; i < 1000000; i++) {
      io_uring_cqe cqe = WaitCqe(r);
      if (cqe.user_data == kIn && !(cqe.flags & IORING_CQE_F_MORE)) in_armed = false;
      if (cqe.user_data == want) return;
    }
    DieErr("no readiness", ETIMEDOUT);
  };
  auto arm_in = [&] {
    if (in_armed) return;
    io_uring_sqe* sqe = Sqe(r);
    io_uring_prep_poll_multishot(sqe, s.b.get(), POLLIN | POLLRDHUP);
    io_uring_sqe_set_data64(sqe, kIn);
    in_armed = true;
  };
  RunTransfer(state, s, [&] {
    SpliceLoop(
        s, pipe,
        [&] {
          arm_in();
          wait(kIn);
        },
        [&] {
          io_uring_sqe* sqe = Sqe(r);
          io_uring_prep_poll_add(sqe, s.c.get(), POLLOUT);
          io_uring_sqe_set_data64(sqe, kOut);
          wait(kOut);
        });
  });
  if (in_armed) {
    io_uring_prep_poll_remove(Sqe(r), kIn);
    io_uring_submit(r);
  }
}
BENCHMARK(BM_SpliceUringPoll)->ArgName("pipe")->Arg(64 << 10)->Arg(1 << 20)->UseRealTime();

// ---- (b), (c) pipelined io_uring fills and drains --------------------------

// n slots (pipes or buffers) used in a ring: slot i fills from b, then drains
// to c; at most one fill and one drain in flight, drains in fill order.
// `prep_fill(sqe, slot)` and `prep_drain(sqe, slot, offset, len)` prepare the
// operations.
template <typename PrepFill, typename PrepDrain>
void Pipeline(io_uring* r, size_t nslots, PrepFill&& prep_fill, PrepDrain&& prep_drain) {
  constexpr uint64_t kFill = 1ull << 32, kDrain = 2ull << 32;
  struct Slot {
    size_t len = 0;  // bytes held
    size_t off = 0;  // bytes already drained
  };
  std::vector<Slot> slots(nslots);
  size_t fill_next = 0, drain_next = 0;  // slot counters (mod nslots)
  size_t filled = 0;                     // slots holding data, in order
  bool fill_busy = false, drain_busy = false;
  size_t in = 0, out = 0;
  auto submit_fill = [&] {
    if (fill_busy || in >= kBytes || filled >= nslots) return;
    size_t slot = fill_next % nslots;
    io_uring_sqe* sqe = Sqe(r);
    prep_fill(sqe, slot);
    io_uring_sqe_set_data64(sqe, kFill | slot);
    fill_busy = true;
  };
  auto submit_drain = [&] {
    if (drain_busy || filled == 0) return;
    size_t slot = drain_next % nslots;
    Slot& sl = slots[slot];
    io_uring_sqe* sqe = Sqe(r);
    prep_drain(sqe, slot, sl.off, sl.len - sl.off);
    io_uring_sqe_set_data64(sqe, kDrain | slot);
    drain_busy = true;
  };
  while (out < kBytes) {
    submit_fill();
    submit_drain();
    io_uring_cqe cqe = WaitCqe(r);
    size_t slot = cqe.user_data & 0xffffffffu;
    if ((cqe.user_data & ~0xffffffffull) == kFill) {
      fill_busy = false;
      if (cqe.res == -EAGAIN || cqe.res == -EINTR) continue;
      if (cqe.res <= 0) DieErr("fill", cqe.res == 0 ? EPIPE : -cqe.res);
      slots[slot] = Slot{static_cast<size_t>(cqe.res), 0};
      in += static_cast<size_t>(cqe.res);
      fill_next++;
      filled++;
    } else {
      drain_busy = false;
      if (cqe.res == -EAGAIN || cqe.res == -EINTR) continue;
      if (cqe.res <= 0) DieErr("drain", cqe.res == 0 ? EPIPE : -cqe.res);
      Slot& sl = slots[slot];
      sl.off += static_cast<size_t>(cqe.res);
      out += static_cast<size_t>(cqe.res);
      if (sl.off == sl.len) {
        drain_next++;
        filled--;
      }
    }
  }
}

void BM_UringSplice(benchmark::State& state) {
  Setup s(false);
  size_t n = static_cast<size_t>(state.range(1));
  std::vector<Pipe> pipes;
  for (size_t i = 0; i < n; i++) pipes.emplace_back(static_cast<size_t>(state.range(0)), false);
  const unsigned cap = static_cast<unsigned>(pipes[0].capacity());
  std::unique_ptr<Ring> ring = MakeRing();
  io_uring* r = ring->raw();
  RunTransfer(state, s, [&] {
    Pipeline(
        r, n,
        [&](io_uring_sqe* sqe, size_t slot) {
          io_uring_prep_splice(sqe, s.b.get(), -1, pipes[slot].w.get(), -1, cap, SPLICE_F_MOVE);
        },
        [&](io_uring_sqe* sqe, size_t slot, size_t, size_t len) {
          io_uring_prep_splice(sqe, pipes[slot].r.get(), -1, s.c.get(), -1,
                               static_cast<unsigned>(len), SPLICE_F_MOVE);
        });
  });
}
BENCHMARK(BM_UringSplice)
    ->ArgNames({"pipe", "n"})
    ->Args({64 << 10, 1})
    ->Args({64 << 10, 2})
    ->Args({1 << 20, 2})
    ->UseRealTime();

void BM_UringRecvSend(benchmark::State& state) {
  Setup s(false);
  const size_t size = static_cast<size_t>(state.range(0));
  const size_t n = static_cast<size_t>(state.range(1));
  std::vector<char> mem(size * n);
  std::unique_ptr<Ring> ring = MakeRing();
  io_uring* r = ring->raw();
  RunTransfer(state, s, [&] {
    Pipeline(
        r, n,
        [&](io_uring_sqe* sqe, size_t slot) {
          io_uring_prep_recv(sqe, s.b.get(), mem.data() + slot * size, size, 0);
        },
        [&](io_uring_sqe* sqe, size_t slot, size_t off, size_t len) {
          io_uring_prep_send(sqe, s.c.get(), mem.data() + slot * size + off, len, 0);
        });
  });
}
BENCHMARK(BM_UringRecvSend)
    ->ArgNames({"buf", "n"})
    ->Args({64 << 10, 1})
    ->Args({64 << 10, 4})
    ->Args({256 << 10, 4})
    ->UseRealTime();

// Multishot recv into a provided-buffer ring (mapped by hand: liburing 2.3
// has no io_uring_setup_buf_ring), one send in flight.
void BM_UringProvided(benchmark::State& state) {
  Setup s(false);
  const unsigned size = static_cast<unsigned>(state.range(0));
  const unsigned n = static_cast<unsigned>(state.range(1));  // a power of two
  constexpr int kGroup = 7;
  std::vector<char> mem(static_cast<size_t>(size) * n);
  std::unique_ptr<Ring> ring = MakeRing();
  io_uring* r = ring->raw();
  size_t ring_bytes = sizeof(io_uring_buf) * n;
  void* map = mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (map == MAP_FAILED) Die("mmap");
  auto* br = static_cast<io_uring_buf_ring*>(map);
  io_uring_buf_ring_init(br);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br);
  reg.ring_entries = n;
  reg.bgid = kGroup;
  int ret = io_uring_register_buf_ring(r, &reg, 0);
  if (ret < 0) DieErr("io_uring_register_buf_ring", -ret);
  const int mask = io_uring_buf_ring_mask(n);
  auto give = [&](unsigned bid) {
    io_uring_buf_ring_add(br, mem.data() + static_cast<size_t>(bid) * size, size,
                          static_cast<unsigned short>(bid), mask, 0);
    io_uring_buf_ring_advance(br, 1);
  };
  for (unsigned i = 0; i < n; i++) give(i);
  constexpr uint64_t kRecv = 1, kSend = 2;
  bool recv_armed = false;
  RunTransfer(state, s, [&] {
    struct Chunk {
      unsigned bid;
      size_t len;
      size_t off;
    };
    std::deque<Chunk> queue;  // received, not yet sent, in order
    bool send_busy = false;
    size_t in = 0, out = 0;
    unsigned held = 0;  // buffers taken by the kernel's recvs, not yet given back
    while (out < kBytes) {
      if (!recv_armed && in < kBytes && held < n) {
        io_uring_sqe* sqe = Sqe(r);
        io_uring_prep_recv_multishot(sqe, s.b.get(), nullptr, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = kGroup;
        io_uring_sqe_set_data64(sqe, kRecv);
        recv_armed = true;
      }
      if (!send_busy && !queue.empty()) {
        Chunk& c = queue.front();
        io_uring_sqe* sqe = Sqe(r);
        io_uring_prep_send(sqe, s.c.get(), mem.data() + static_cast<size_t>(c.bid) * size + c.off,
                           c.len - c.off, 0);
        io_uring_sqe_set_data64(sqe, kSend);
        send_busy = true;
      }
      io_uring_cqe cqe = WaitCqe(r);
      if (cqe.user_data == kRecv) {
        if (!(cqe.flags & IORING_CQE_F_MORE)) recv_armed = false;
        if (cqe.res == -ENOBUFS || cqe.res == -EAGAIN || cqe.res == -EINTR) continue;
        if (cqe.res <= 0) DieErr("recv", cqe.res == 0 ? EPIPE : -cqe.res);
        if (!(cqe.flags & IORING_CQE_F_BUFFER)) DieErr("recv without a buffer", EINVAL);
        unsigned bid = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
        queue.push_back(Chunk{bid, static_cast<size_t>(cqe.res), 0});
        in += static_cast<size_t>(cqe.res);
        held++;
      } else {
        send_busy = false;
        if (cqe.res == -EAGAIN || cqe.res == -EINTR) continue;
        if (cqe.res <= 0) DieErr("send", cqe.res == 0 ? EPIPE : -cqe.res);
        Chunk& c = queue.front();
        c.off += static_cast<size_t>(cqe.res);
        out += static_cast<size_t>(cqe.res);
        if (c.off == c.len) {
          give(c.bid);
          held--;
          queue.pop_front();
        }
      }
    }
  });
  if (recv_armed) {
    io_uring_prep_cancel64(Sqe(r), kRecv, 0);
    io_uring_submit(r);
    WaitCqe(r);  // the cancel or the recv's last completion
    WaitCqe(r);
  }
  io_uring_unregister_buf_ring(r, kGroup);
  munmap(map, ring_bytes);
}
BENCHMARK(BM_UringProvided)
    ->ArgNames({"buf", "n"})
    ->Args({64 << 10, 4})
    ->Args({64 << 10, 16})
    ->UseRealTime();

}  // namespace
}  // namespace ringfwd
