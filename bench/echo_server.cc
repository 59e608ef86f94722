// echo_server: the small TCP echo server that bench/compare.sh runs inside
// the target namespace for the connection-rate and latency measurements.
//
//   echo_server [--addr A] [--port P] [--oneshot-port Q] [--seconds S]
//
// On port P (default 5202) every byte read is written back until the peer
// closes: a persistent connection for request/response latency. On port Q
// (default 5203) the server echoes the first bytes it reads and then closes
// its side, so the server is the first to send FIN and its socket, not the
// client's, goes to TIME_WAIT: a connection-rate run of tens of thousands of
// connections then does not eat the client's ephemeral ports. One thread,
// epoll, non-blocking sockets; nothing is allocated per connection beyond a
// small output buffer used only when the peer's window is full. The process
// exits on SIGTERM/SIGINT or after S seconds (default 3600), so a forgotten
// server cannot run forever.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>

namespace {

volatile sig_atomic_t g_stop = 0;

void OnSignal(int) { g_stop = 1; }

// Per-connection state: bytes read but not yet written back.
struct Conn {
  bool oneshot = false;
  std::string out;
};

int Listen(const char* addr, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
    close(fd);
    errno = EINVAL;
    return -1;
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0 || listen(fd, 4096) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

class Server {
 public:
  explicit Server(int epfd) : epfd_(epfd) {}

  void AddListener(int fd, bool oneshot) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = static_cast<uint64_t>(fd) | (oneshot ? kListenOneshot : kListen);
    epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  }

  void Handle(const epoll_event& ev) {
    int fd = static_cast<int>(ev.data.u64 & 0xffffffffu);
    uint64_t tag = ev.data.u64 & ~uint64_t{0xffffffffu};
    if (tag == kListen || tag == kListenOneshot) {
      Accept(fd, tag == kListenOneshot);
      return;
    }
    auto it = conns_.find(fd);
    if (it == conns_.end()) return;
    if (ev.events & EPOLLOUT) {
      if (!Flush(fd, &it->second)) return;
    }
    if (ev.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) Read(fd, &it->second);
  }

 private:
  static constexpr uint64_t kListen = uint64_t{1} << 32;
  static constexpr uint64_t kListenOneshot = uint64_t{2} << 32;

  void Accept(int lfd, bool oneshot) {
    // Bounded: a burst of at most 256 connections per readiness event.
    for (int i = 0; i < 256; i++) {
      int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.u64 = static_cast<uint64_t>(fd);
      if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        continue;
      }
      conns_[fd].oneshot = oneshot;
    }
  }

  void Drop(int fd) {
    conns_.erase(fd);
    close(fd);  // also removes it from the epoll set
  }

  // Writes pending output; returns false if the connection was dropped.
  bool Flush(int fd, Conn* c) {
    while (!c->out.empty()) {
      ssize_t n = write(fd, c->out.data(), c->out.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
          Watch(fd, EPOLLOUT);
          return true;
        }
        Drop(fd);
        return false;
      }
      c->out.erase(0, static_cast<size_t>(n));
    }
    if (c->oneshot) {
      Drop(fd);  // the server closes first: TIME_WAIT stays here
      return false;
    }
    Watch(fd, EPOLLIN | EPOLLRDHUP);
    return true;
  }

  void Watch(int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = static_cast<uint64_t>(fd);
    epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
  }

  void Read(int fd, Conn* c) {
    if (!c->out.empty()) return;  // back-pressure: wait for EPOLLOUT first
    char buf[16384];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
      Drop(fd);
      return;
    }
    c->out.assign(buf, static_cast<size_t>(n));
    Flush(fd, c);
  }

  int epfd_;
  std::unordered_map<int, Conn> conns_;
};

int ParsePort(const char* s) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (!*s || *end || v <= 0 || v > 65535) {
    std::fprintf(stderr, "echo_server: bad port '%s'\n", s);
    std::exit(2);
  }
  return static_cast<int>(v);
}

}  // namespace

int main(int argc, char** argv) {
  const char* addr = "127.0.0.1";
  int port = 5202;
  int oneshot_port = 5203;
  long seconds = 3600;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (i + 1 < argc && a == "--addr") {
      addr = argv[++i];
    } else if (i + 1 < argc && a == "--port") {
      port = ParsePort(argv[++i]);
    } else if (i + 1 < argc && a == "--oneshot-port") {
      oneshot_port = ParsePort(argv[++i]);
    } else if (i + 1 < argc && a == "--seconds") {
      seconds = std::strtol(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr,
                   "usage: echo_server [--addr A] [--port P] [--oneshot-port Q] [--seconds S]\n");
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    std::perror("echo_server: epoll_create1");
    return 1;
  }
  Server server(epfd);
  int lfd = Listen(addr, port);
  int ofd = Listen(addr, oneshot_port);
  if (lfd < 0 || ofd < 0) {
    std::fprintf(stderr, "echo_server: listen on %s:%d/%d: %s\n", addr, port, oneshot_port,
                 std::strerror(errno));
    return 1;
  }
  server.AddListener(lfd, false);
  server.AddListener(ofd, true);

  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  epoll_event events[256];
  while (!g_stop && std::chrono::steady_clock::now() < deadline) {
    int n = epoll_wait(epfd, events, 256, 500);
    if (n < 0 && errno != EINTR) {
      std::perror("echo_server: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) server.Handle(events[i]);
  }
  return 0;
}
