// connload: the load tool of bench/compare.sh, the client side of
// bench/echo_server.cc.
//
//   connload rate    [--addr A] --port P [--conns N] [--concurrency C] [--seconds S]
//   connload latency [--addr A] --port P [--count N] [--seconds S]
//
// rate: N connections (default 20000), C at once (default 32), each one
// connect, write 1 byte, read the 1-byte echo, read until the server's EOF
// (echo_server's one-shot port closes first), close. One thread, epoll,
// non-blocking sockets. Prints one line:
//   conns=N ok=K errors=E seconds=T rate=R cpu_us=U
// U: this client's own CPU time over the run (user + system, microseconds),
// the client endpoint's cost that compare.sh sets beside the forwarder's.
// latency: one persistent connection with TCP_NODELAY, N round trips
// (default 20000) of 1 byte each after 200 unmeasured warm-up round trips;
// prints one line with microseconds:
//   count=N p50_us=X p99_us=Y mean_us=M min_us=A max_us=B
// Both stop after S seconds (default 120) whatever happened, and exit with
// status 1 when they did not finish or when a connection failed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string mode;
  std::string addr = "127.0.0.1";
  int port = 0;
  long conns = 20000;
  long concurrency = 32;
  long count = 20000;
  long seconds = 120;
};

[[noreturn]] void Usage() {
  std::fprintf(stderr,
               "usage: connload rate [--addr A] --port P [--conns N] [--concurrency C] "
               "[--seconds S]\n"
               "       connload latency [--addr A] --port P [--count N] [--seconds S]\n");
  std::exit(2);
}

long ParseLong(const char* s, long lo, long hi) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (!*s || *end || v < lo || v > hi) Usage();
  return v;
}

Options Parse(int argc, char** argv) {
  if (argc < 2) Usage();
  Options o;
  o.mode = argv[1];
  if (o.mode != "rate" && o.mode != "latency") Usage();
  for (int i = 2; i < argc; i++) {
    std::string a = argv[i];
    if (i + 1 >= argc) Usage();
    const char* v = argv[++i];
    if (a == "--addr") {
      o.addr = v;
    } else if (a == "--port") {
      o.port = static_cast<int>(ParseLong(v, 1, 65535));
    } else if (a == "--conns") {
      o.conns = ParseLong(v, 1, 100000000);
    } else if (a == "--concurrency") {
      o.concurrency = ParseLong(v, 1, 4096);
    } else if (a == "--count") {
      o.count = ParseLong(v, 1, 100000000);
    } else if (a == "--seconds") {
      o.seconds = ParseLong(v, 1, 86400);
    } else {
      Usage();
    }
  }
  if (o.port == 0) Usage();
  return o;
}

sockaddr_in Target(const Options& o) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(o.port));
  if (inet_pton(AF_INET, o.addr.c_str(), &sa.sin_addr) != 1) {
    std::fprintf(stderr, "connload: bad IPv4 address '%s'\n", o.addr.c_str());
    std::exit(2);
  }
  return sa;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// User + system CPU time of this process so far, in microseconds.
long CpuMicros() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000L + ru.ru_utime.tv_usec +
         ru.ru_stime.tv_usec;
}

// ---- rate -----------------------------------------------------------------

class RateRun {
 public:
  RateRun(const Options& o, int epfd) : o_(o), epfd_(epfd), target_(Target(o)) {
    slots_.resize(static_cast<size_t>(std::min(o.concurrency, o.conns)));
  }

  int Run() {
    Clock::time_point start = Clock::now();
    long cpu0 = CpuMicros();
    Clock::time_point deadline = start + std::chrono::seconds(o_.seconds);
    for (size_t i = 0; i < slots_.size(); i++) StartNext(i);
    std::vector<epoll_event> events(slots_.size());
    while (done_ < o_.conns && Clock::now() < deadline) {
      int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), 200);
      if (n < 0 && errno != EINTR) {
        std::perror("connload: epoll_wait");
        return 1;
      }
      for (int i = 0; i < n; i++) Step(static_cast<size_t>(events[i].data.u64), events[i].events);
    }
    double t = Seconds(Clock::now() - start);
    long ok = done_ - errors_;
    std::printf("conns=%ld ok=%ld errors=%ld seconds=%.4f rate=%.1f cpu_us=%ld\n", o_.conns, ok,
                errors_, t, t > 0 ? static_cast<double>(ok) / t : 0.0, CpuMicros() - cpu0);
    if (done_ < o_.conns) std::fprintf(stderr, "connload: time limit of %lds hit\n", o_.seconds);
    for (Slot& s : slots_)
      if (s.fd >= 0) close(s.fd);
    return (done_ == o_.conns && errors_ == 0) ? 0 : 1;
  }

 private:
  enum class State { kIdle, kConnecting, kReading };
  struct Slot {
    int fd = -1;
    State state = State::kIdle;
    bool got_byte = false;
  };

  void StartNext(size_t i) {
    Slot& s = slots_[i];
    s = Slot{};
    if (started_ >= o_.conns) return;
    started_++;
    s.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s.fd < 0) {
      Fail(i, "socket");
      return;
    }
    int one = 1;
    setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int ret = connect(s.fd, reinterpret_cast<const sockaddr*>(&target_), sizeof(target_));
    if (ret < 0 && errno != EINPROGRESS) {
      Fail(i, "connect");
      return;
    }
    s.state = State::kConnecting;
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = i;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, s.fd, &ev);
  }

  void Fail(size_t i, const char* what) {
    if (errors_ < 5) std::fprintf(stderr, "connload: %s: %s\n", what, std::strerror(errno));
    errors_++;
    Finish(i);
  }

  void Finish(size_t i) {
    Slot& s = slots_[i];
    if (s.fd >= 0) close(s.fd);
    s.fd = -1;
    done_++;
    StartNext(i);
  }

  void Step(size_t i, uint32_t events) {
    Slot& s = slots_[i];
    if (s.fd < 0) return;
    if (s.state == State::kConnecting) {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err) {
        errno = err;
        Fail(i, "connect");
        return;
      }
      char b = 'x';
      if (write(s.fd, &b, 1) != 1) {
        Fail(i, "write");
        return;
      }
      s.state = State::kReading;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = i;
      epoll_ctl(epfd_, EPOLL_CTL_MOD, s.fd, &ev);
      return;
    }
    (void)events;
    char buf[64];
    // Bounded: the server sends 1 byte then FIN.
    for (int k = 0; k < 8; k++) {
      ssize_t n = read(s.fd, buf, sizeof(buf));
      if (n > 0) {
        s.got_byte = true;
        continue;
      }
      if (n == 0) {
        if (!s.got_byte) {
          errno = ECONNABORTED;
          Fail(i, "read (EOF before the echo)");
          return;
        }
        Finish(i);
        return;
      }
      if (errno == EAGAIN || errno == EINTR) return;
      Fail(i, "read");
      return;
    }
  }

  const Options& o_;
  int epfd_;
  sockaddr_in target_;
  std::vector<Slot> slots_;
  long started_ = 0;
  long done_ = 0;
  long errors_ = 0;
};

// ---- latency --------------------------------------------------------------

int RunLatency(const Options& o) {
  sockaddr_in target = Target(o);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<const sockaddr*>(&target), sizeof(target)) < 0) {
    std::perror("connload: connect");
    return 1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  timeval tv{5, 0};  // one lost round trip must not hang the run
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(o.seconds);
  constexpr long kWarmup = 200;
  std::vector<double> us;
  us.reserve(static_cast<size_t>(o.count));
  for (long i = 0; i < kWarmup + o.count; i++) {
    if ((i & 255) == 0 && Clock::now() > deadline) {
      std::fprintf(stderr, "connload: time limit of %lds hit\n", o.seconds);
      close(fd);
      return 1;
    }
    char b = 'p';
    Clock::time_point t0 = Clock::now();
    if (write(fd, &b, 1) != 1 || read(fd, &b, 1) != 1) {
      std::perror("connload: round trip");
      close(fd);
      return 1;
    }
    Clock::time_point t1 = Clock::now();
    if (i >= kWarmup) us.push_back(Seconds(t1 - t0) * 1e6);
  }
  close(fd);
  double sum = 0;
  for (double v : us) sum += v;
  std::sort(us.begin(), us.end());
  auto pct = [&](double p) {
    size_t k = static_cast<size_t>(p * static_cast<double>(us.size() - 1) + 0.5);
    return us[std::min(k, us.size() - 1)];
  };
  std::printf("count=%zu p50_us=%.2f p99_us=%.2f mean_us=%.2f min_us=%.2f max_us=%.2f\n", us.size(),
              pct(0.50), pct(0.99), sum / static_cast<double>(us.size()), us.front(), us.back());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = Parse(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  if (o.mode == "latency") return RunLatency(o);
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    std::perror("connload: epoll_create1");
    return 1;
  }
  RateRun run(o, epfd);
  int rc = run.Run();
  close(epfd);
  return rc;
}
