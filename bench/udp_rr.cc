// udp_rr: UDP request/response load for bench/tap_compare.sh.
//
//   udp_rr server --addr A --port P [--seconds S]
//   udp_rr client --addr A --port P [--flows N] [--size B] [--seconds S]
//
// server: echoes every datagram to its sender (recvmmsg/sendmmsg batches).
// client: N sockets (flows), each with one request in flight, B bytes each
// (default 64); a reply sends the next request on that flow. Runs S seconds
// (default 5) after a 0.5 s warm-up and prints one line:
//   flows=N size=B transactions=T seconds=S rate=R p50_us=X p99_us=Y lost=L
// A request unanswered for 200 ms counts as lost and is resent. One thread,
// epoll, non-blocking sockets.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

bool ParseAddr(const std::string& a, uint16_t port, sockaddr_storage* ss, socklen_t* len) {
  *ss = {};
  auto* s4 = reinterpret_cast<sockaddr_in*>(ss);
  auto* s6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET, a.c_str(), &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    *len = sizeof(*s4);
    return true;
  }
  if (inet_pton(AF_INET6, a.c_str(), &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    *len = sizeof(*s6);
    return true;
  }
  return false;
}

int Server(const sockaddr_storage& ss, socklen_t len, int seconds) {
  int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&ss), len) < 0) {
    perror("bind");
    return 1;
  }
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  constexpr int kBatch = 64;
  std::vector<char> data(kBatch * 2048);
  mmsghdr msgs[kBatch];
  iovec iov[kBatch];
  sockaddr_storage names[kBatch];
  auto end = Clock::now() + std::chrono::seconds(seconds);
  while (Clock::now() < end) {
    for (int i = 0; i < kBatch; i++) {
      iov[i] = iovec{data.data() + i * 2048, 2048};
      msgs[i].msg_hdr = msghdr{};
      msgs[i].msg_hdr.msg_name = &names[i];
      msgs[i].msg_hdr.msg_namelen = sizeof(names[i]);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = recvmmsg(fd, msgs, kBatch, MSG_WAITFORONE, nullptr);
    if (n <= 0) continue;
    for (int i = 0; i < n; i++) iov[i].iov_len = msgs[i].msg_len;
    sendmmsg(fd, msgs, n, 0);
  }
  return 0;
}

int Client(const sockaddr_storage& ss, socklen_t len, int flows, size_t size, int seconds) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<int> fds(flows);
  std::vector<Clock::time_point> sent(flows);
  std::string payload(size, 'x');
  for (int i = 0; i < flows; i++) {
    fds[i] = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (connect(fds[i], reinterpret_cast<const sockaddr*>(&ss), len) < 0) {
      perror("connect");
      return 1;
    }
    epoll_event ev{EPOLLIN, {.u32 = static_cast<uint32_t>(i)}};
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
  }
  auto start = Clock::now();
  auto measure_from = start + std::chrono::milliseconds(500);
  auto end = measure_from + std::chrono::seconds(seconds);
  for (int i = 0; i < flows; i++) {
    send(fds[i], payload.data(), payload.size(), 0);
    sent[i] = Clock::now();
  }
  std::vector<uint32_t> lat;
  lat.reserve(1 << 22);
  uint64_t count = 0, lost = 0;
  char buf[65536];
  epoll_event evs[256];
  auto next_check = Clock::now() + std::chrono::milliseconds(50);
  for (;;) {
    auto now = Clock::now();
    if (now >= end) break;
    int n = epoll_wait(ep, evs, 256, 10);
    now = Clock::now();
    for (int k = 0; k < n; k++) {
      int i = evs[k].data.u32;
      while (recv(fds[i], buf, sizeof(buf), 0) > 0) {
        if (now >= measure_from) {
          count++;
          if (lat.size() < lat.capacity())
            lat.push_back(
                std::chrono::duration_cast<std::chrono::nanoseconds>(now - sent[i]).count() / 1000);
        }
        send(fds[i], payload.data(), payload.size(), 0);
        sent[i] = now;
      }
    }
    if (now >= next_check) {
      next_check = now + std::chrono::milliseconds(50);
      for (int i = 0; i < flows; i++) {
        if (now - sent[i] > std::chrono::milliseconds(200)) {
          lost++;
          send(fds[i], payload.data(), payload.size(), 0);
          sent[i] = now;
        }
      }
    }
  }
  double secs = std::chrono::duration<double>(end - measure_from).count();
  std::sort(lat.begin(), lat.end());
  uint32_t p50 = lat.empty() ? 0 : lat[lat.size() / 2];
  uint32_t p99 = lat.empty() ? 0 : lat[lat.size() * 99 / 100];
  std::printf(
      "flows=%d size=%zu transactions=%llu seconds=%.2f rate=%.0f p50_us=%u p99_us=%u lost=%llu\n",
      flows, size, static_cast<unsigned long long>(count), secs, count / secs, p50, p99,
      static_cast<unsigned long long>(lost));
  return count > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: udp_rr server|client --addr A --port P [...]\n");
    return 2;
  }
  std::string mode = argv[1], addr = "127.0.0.1";
  int port = 7777, flows = 1, seconds = mode == "server" ? 3600 : 5;
  size_t size = 64;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--addr")
      addr = v;
    else if (k == "--port")
      port = std::atoi(v.c_str());
    else if (k == "--flows")
      flows = std::max(1, std::atoi(v.c_str()));
    else if (k == "--size")
      size = std::min<size_t>(60000, std::max(1, std::atoi(v.c_str())));
    else if (k == "--seconds")
      seconds = std::max(1, std::atoi(v.c_str()));
  }
  sockaddr_storage ss;
  socklen_t len;
  if (!ParseAddr(addr, port, &ss, &len)) {
    std::fprintf(stderr, "udp_rr: bad address %s\n", addr.c_str());
    return 2;
  }
  return mode == "server" ? Server(ss, len, seconds) : Client(ss, len, flows, size, seconds);
}
