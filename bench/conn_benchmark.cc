// Short connections through an in-process Forwarder, beside the same
// connections made directly: the per-connection work of the data path
// (accept, connect, two 1-byte copies, the FINs, close), with no namespace
// and no other process in the way.
//
//   BM_ShortConnections/fwd:0  the client connects to the echo server itself
//   BM_ShortConnections/fwd:1  through a HOST rule 127.0.0.1:P -> 127.0.0.1:Q
//
// Each iteration runs kConnsPerIter connections, kConcurrency at once: each
// connects, writes 1 byte, reads the echo, reads the server's EOF (the
// server closes first, as echo_server's one-shot port) and closes; the
// pattern of bench/compare.sh's connection rate. The forwarder is created
// and run on its own thread with single_thread (DEFER_TASKRUN), as the
// daemon runs it; the echo server and the client have a thread each.
//
// Counters, per connection, from each thread's CPU clock:
//   fwd_cpu_us   the forwarder's loop thread (0 without the forwarder)
//   srv_cpu_us   the echo server's thread
//   cli_cpu_us   the client (this benchmark's thread)
// and conns/s, the rate over wall-clock time. The CPU figures are the steady
// ones on a shared machine; the rate swings with the load.
//
// As root, the benchmark moves into a network namespace of its own first
// (lo up, ephemeral ports 10000-60999): tens of thousands of connections a
// second leave as many TIME_WAIT entries, which the host's default range
// would run out of, and the host's own connections stay out of the way.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "fwd/forwarder.h"
#include "fwd/netns.h"
#include "fwd/rule.h"
#include "uring/log.h"

namespace ringfwd {
namespace {

constexpr int kConnsPerIter = 2000;
constexpr int kConcurrency = 32;

// CPU time of the thread behind `clock`, in nanoseconds.
int64_t CpuNanos(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

clockid_t ClockOf(std::thread& t) {
  clockid_t c = CLOCK_THREAD_CPUTIME_ID;
  pthread_getcpuclockid(t.native_handle(), &c);
  return c;
}

sockaddr_in Loopback4(uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  return sa;
}

// A port on 127.0.0.1 that nothing listens on now (the kernel's pick).
uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa = Loopback4(0);
  socklen_t len = sizeof(sa);
  uint16_t port = 0;
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0)
    port = ntohs(sa.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

// Accepts, echoes the first bytes of each connection and closes it.
class OneShotEcho {
 public:
  ~OneShotEcho() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    if (ep_ >= 0) close(ep_);
    if (listen_ >= 0) close(listen_);
  }
  // Listens on an ephemeral port and starts the thread; returns the port,
  // 0 on failure.
  uint16_t Start() {
    listen_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in sa = Loopback4(0);
    socklen_t len = sizeof(sa);
    if (listen_ < 0 || bind(listen_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0 ||
        listen(listen_, 1024) < 0 ||
        getsockname(listen_, reinterpret_cast<sockaddr*>(&sa), &len) < 0)
      return 0;
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{EPOLLIN, {.fd = listen_}};
    if (ep_ < 0 || epoll_ctl(ep_, EPOLL_CTL_ADD, listen_, &ev) < 0) return 0;
    thread_ = std::thread([this] { Main(); });
    return ntohs(sa.sin_port);
  }
  clockid_t clock() { return ClockOf(thread_); }

 private:
  void Main() {
    epoll_event events[64];
    while (!stop_.load(std::memory_order_relaxed)) {
      int n = epoll_wait(ep_, events, 64, 50);
      for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd;
        if (fd == listen_) {
          int c;
          while ((c = accept4(listen_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
            epoll_event ev{EPOLLIN, {.fd = c}};
            if (epoll_ctl(ep_, EPOLL_CTL_ADD, c, &ev) < 0) close(c);
          }
          continue;
        }
        char buf[64];
        ssize_t got = recv(fd, buf, sizeof(buf), 0);
        if (got < 0 && errno == EAGAIN) continue;
        if (got > 0) send(fd, buf, got, MSG_NOSIGNAL);
        close(fd);  // the server closes first; close() leaves the epoll set too
      }
    }
  }

  int listen_ = -1, ep_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The forwarder on its own thread, created, run and destroyed there.
class FwdThread {
 public:
  ~FwdThread() {
    if (Forwarder* f = fwd_.load()) f->Stop();
    if (thread_.joinable()) thread_.join();
  }
  // One HOST rule: 127.0.0.1:`port` to 127.0.0.1:`target`.
  absl::Status Start(uint16_t port, uint16_t target) {
    std::promise<absl::Status> started;
    std::future<absl::Status> f = started.get_future();
    thread_ = std::thread([&, port, target] {
      ForwarderOptions o;
      o.single_thread = true;
      absl::StatusOr<std::unique_ptr<Forwarder>> fwd = Forwarder::Create(o);
      if (!fwd.ok()) {
        started.set_value(fwd.status());
        return;
      }
      Rule r;
      r.proto = kProtoTcp;
      r.addr = Addr6::Loopback4();
      r.target = Addr6::Loopback4();
      r.first = r.last = port;
      r.to = target;
      TableSet set = (*fwd)->EmptyTables();
      set.Find(PifId::kHost)->rules = {r};
      absl::Status st = (*fwd)->Start(set);
      if (!st.ok()) {
        started.set_value(st);
        return;
      }
      fwd_ = fwd->get();
      started.set_value(absl::OkStatus());
      st = (*fwd)->Run();
      if (!st.ok()) std::fprintf(stderr, "forwarder loop: %s\n", st.ToString().c_str());
      fwd_ = nullptr;
    });
    return f.get();
  }
  clockid_t clock() { return ClockOf(thread_); }

 private:
  std::atomic<Forwarder*> fwd_{nullptr};
  std::thread thread_;
};

// `total` connections to `port`, `concurrency` at once; returns how many
// failed, or -1 when the loop itself failed or took over 30 s.
long RunConnections(uint16_t port, int total, int concurrency) {
  struct Slot {
    int fd = -1;
    bool echoed = false;
  };
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return -1;
  std::vector<Slot> slots(concurrency);
  sockaddr_in sa = Loopback4(port);
  int started = 0, done = 0;
  long errors = 0;
  auto start_next = [&](int i) {
    Slot& s = slots[i];
    s = Slot{};
    if (started == total) return;
    started++;
    s.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    connect(s.fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));  // EINPROGRESS
    epoll_event ev{EPOLLOUT, {.u32 = static_cast<uint32_t>(i)}};
    epoll_ctl(ep, EPOLL_CTL_ADD, s.fd, &ev);
  };
  auto finish = [&](int i, bool ok) {
    close(slots[i].fd);
    if (!ok) errors++;
    done++;
    start_next(i);
  };
  for (int i = 0; i < concurrency; i++) start_next(i);
  timespec t0{};
  clock_gettime(CLOCK_MONOTONIC, &t0);
  epoll_event events[64];
  while (done < total) {
    int n = epoll_wait(ep, events, 64, 1000);
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (n < 0 && errno != EINTR) break;
    if (now.tv_sec - t0.tv_sec > 30) break;
    for (int k = 0; k < n; k++) {
      int i = static_cast<int>(events[k].data.u32);
      Slot& s = slots[i];
      if (events[k].events & EPOLLOUT) {
        char c = 'x';
        if (send(s.fd, &c, 1, MSG_NOSIGNAL) != 1) {
          finish(i, false);
          continue;
        }
        epoll_event ev{EPOLLIN, {.u32 = static_cast<uint32_t>(i)}};
        epoll_ctl(ep, EPOLL_CTL_MOD, s.fd, &ev);
        continue;
      }
      char buf[16];
      ssize_t got = recv(s.fd, buf, sizeof(buf), 0);
      if (got < 0 && errno == EAGAIN) continue;
      if (got > 0 && !s.echoed) {
        s.echoed = true;
        continue;  // the EOF follows
      }
      finish(i, got == 0 && s.echoed);
    }
  }
  for (Slot& s : slots)
    if (s.fd >= 0 && done < total) close(s.fd);
  close(ep);
  return done == total ? errors : -1;
}

// Moves this thread (and the threads it starts later) into a fresh network
// namespace with lo up and a wide ephemeral port range. Returns an error
// when that is not possible (not root): the benchmark then runs where it is.
absl::Status OwnNamespace() {
  if (unshare(CLONE_NEWNET) < 0) return absl::UnavailableError("unshare(CLONE_NEWNET)");
  absl::Status st = BringLoopbackUp();
  if (!st.ok()) return st;
  int fd = open("/proc/sys/net/ipv4/ip_local_port_range", O_WRONLY | O_CLOEXEC);
  const char range[] = "10000 60999";
  bool ok = fd >= 0 && write(fd, range, sizeof(range) - 1) == sizeof(range) - 1;
  if (fd >= 0) close(fd);
  return ok ? absl::OkStatus() : absl::UnavailableError("ip_local_port_range");
}

void BM_ShortConnections(benchmark::State& state) {
  log::SetLevel(log::Level::kWarn);
  static const absl::Status ns = OwnNamespace();
  if (!ns.ok())
    std::fprintf(stderr, "conn_benchmark: %s; running in the current namespace\n",
                 std::string(ns.message()).c_str());
  const bool through = state.range(0) != 0;
  OneShotEcho echo;
  uint16_t server_port = echo.Start();
  if (!server_port) return state.SkipWithError("echo server");
  FwdThread fwd;
  uint16_t port = server_port;
  if (through) {
    port = FreePort();
    absl::Status st = fwd.Start(port, server_port);
    if (!st.ok()) return state.SkipWithError(std::string(st.message()).c_str());
  }
  clockid_t fwd_clock = through ? fwd.clock() : CLOCK_THREAD_CPUTIME_ID;
  clockid_t srv_clock = echo.clock();
  // One unmeasured round: the forwarder's flow slots and the ports warm up.
  if (RunConnections(port, kConcurrency * 4, kConcurrency) != 0)
    return state.SkipWithError("connections failed in the warm-up");
  int64_t fwd_ns = 0, srv_ns = 0, cli_ns = 0;
  long errors = 0;
  for (auto _ : state) {
    int64_t f0 = through ? CpuNanos(fwd_clock) : 0;
    int64_t s0 = CpuNanos(srv_clock);
    int64_t c0 = CpuNanos(CLOCK_THREAD_CPUTIME_ID);
    long e = RunConnections(port, kConnsPerIter, kConcurrency);
    cli_ns += CpuNanos(CLOCK_THREAD_CPUTIME_ID) - c0;
    srv_ns += CpuNanos(srv_clock) - s0;
    if (through) fwd_ns += CpuNanos(fwd_clock) - f0;
    if (e < 0) return state.SkipWithError("the connection loop failed or stalled");
    errors += e;
  }
  if (errors) return state.SkipWithError(absl::StrCat(errors, " connections failed").c_str());
  const double conns = static_cast<double>(state.iterations()) * kConnsPerIter;
  state.counters["conns/s"] = benchmark::Counter(conns, benchmark::Counter::kIsRate);
  state.counters["fwd_cpu_us"] = fwd_ns / conns / 1000;
  state.counters["srv_cpu_us"] = srv_ns / conns / 1000;
  state.counters["cli_cpu_us"] = cli_ns / conns / 1000;
}
BENCHMARK(BM_ShortConnections)->ArgName("fwd")->Arg(0)->Arg(1)->UseRealTime()->MinTime(2.0);

}  // namespace
}  // namespace ringfwd
