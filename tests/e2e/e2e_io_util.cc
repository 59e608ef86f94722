// Sockets, byte patterns and digests, and the small test servers.
#include <arpa/inet.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "tests/e2e/e2e_util.h"

namespace ringfwd::e2e {
namespace {

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

// ---- Sockets ----

std::vector<Fd> SocketsIn(const TempNetns& ns, int family, int type, size_t count) {
  std::vector<Fd> out;
  int err = 0;
  RunInNs(ns, [&] {
    for (size_t i = 0; i < count; ++i) {
      int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        err = errno;
        return;
      }
      out.emplace_back(fd);
    }
  });
  if (err) ADD_FAILURE() << "socket: " << std::strerror(err) << " after " << out.size();
  return out;
}

Fd SocketIn(const TempNetns& ns, int family, int type) {
  std::vector<Fd> v = SocketsIn(ns, family, type, 1);
  return v.empty() ? Fd() : std::move(v[0]);
}

namespace {

Fd BoundSocket(const TempNetns& ns, const Addr& a, int type) {
  Fd fd = SocketIn(ns, a.family(), type);
  if (!fd) return fd;
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (a.family() == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(fd.get(), a.sa(), a.len) < 0) {
    ADD_FAILURE() << "bind " << a.ToString() << " in " << ns.name() << ": " << std::strerror(errno);
    return Fd();
  }
  return fd;
}

}  // namespace

Fd TcpListen(const TempNetns& ns, const Addr& a) {
  Fd fd = BoundSocket(ns, a, SOCK_STREAM);
  if (fd && listen(fd.get(), 4096) < 0) {
    ADD_FAILURE() << "listen: " << std::strerror(errno);
    return Fd();
  }
  return fd;
}

Fd UdpBind(const TempNetns& ns, const Addr& a) { return BoundSocket(ns, a, SOCK_DGRAM); }

int ConnectFd(int fd, const Addr& a, Deadline deadline) {
  if (connect(fd, a.sa(), a.len) == 0) return 0;
  if (errno != EINPROGRESS) return errno;
  pollfd p{fd, POLLOUT, 0};
  int n;
  do {
    n = poll(&p, 1, MsLeft(deadline));
  } while (n < 0 && errno == EINTR);
  if (n == 0) return ETIMEDOUT;
  int soerr = 0;
  socklen_t len = sizeof(soerr);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
  return soerr;
}

Fd TcpConnect(const TempNetns& ns, const Addr& a, int* err, int timeout_ms) {
  Fd fd = SocketIn(ns, a.family(), SOCK_STREAM);
  if (!fd) {
    *err = EBADF;
    return fd;
  }
  *err = ConnectFd(fd.get(), a, In(timeout_ms));
  if (*err) return Fd();
  return fd;
}

namespace {

// Waits for `events` on fd; false on deadline.
bool WaitFor(int fd, short events, Deadline deadline) {
  pollfd p{fd, events, 0};
  for (;;) {
    int n = poll(&p, 1, MsLeft(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

}  // namespace

bool WaitReadable(int fd, Deadline deadline) { return WaitFor(fd, POLLIN, deadline); }

int SendAll(int fd, const void* data, size_t len, Deadline deadline) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      len -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return errno;
    if (!WaitFor(fd, POLLOUT, deadline)) return ETIMEDOUT;
  }
  return 0;
}

int SendAll(int fd, const std::string& data, Deadline deadline) {
  return SendAll(fd, data.data(), data.size(), deadline);
}

int RecvExact(int fd, size_t n, std::string* out, Deadline deadline) {
  char buf[65536];
  while (n > 0) {
    ssize_t r = recv(fd, buf, std::min(n, sizeof(buf)), 0);
    if (r > 0) {
      out->append(buf, static_cast<size_t>(r));
      n -= static_cast<size_t>(r);
      continue;
    }
    if (r == 0) return EPIPE;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return errno;
    if (!WaitFor(fd, POLLIN, deadline)) return ETIMEDOUT;
  }
  return 0;
}

int RecvToEof(int fd, std::string* out, Deadline deadline, size_t max) {
  char buf[65536];
  for (;;) {
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r > 0) {
      if (out->size() + static_cast<size_t>(r) > max) return EMSGSIZE;
      out->append(buf, static_cast<size_t>(r));
      continue;
    }
    if (r == 0) return 0;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return errno;
    if (!WaitFor(fd, POLLIN, deadline)) return ETIMEDOUT;
  }
}

// ---- Pattern and Digest ----

void Pattern::Fill(uint64_t offset, uint8_t* buf, size_t n) const {
  uint64_t word_index = offset / 8;
  unsigned skip = offset % 8;
  while (n > 0) {
    uint64_t w = SplitMix(seed_ ^ (word_index * 0xd1b54a32d192ed03ull));
    uint8_t bytes[8];
    std::memcpy(bytes, &w, 8);
    size_t take = std::min<size_t>(8 - skip, n);
    std::memcpy(buf, bytes + skip, take);
    buf += take;
    n -= take;
    skip = 0;
    ++word_index;
  }
}

std::string Pattern::Bytes(uint64_t offset, size_t n) const {
  std::string s(n, '\0');
  Fill(offset, reinterpret_cast<uint8_t*>(s.data()), n);
  return s;
}

void Digest::Update(const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  count_ += n;
  auto mix = [this](uint64_t w) {
    h_ = (h_ ^ w) * 0x100000001b3ull;
    h_ ^= h_ >> 29;
  };
  while (n > 0 && carry_len_ > 0) {
    carry_ |= uint64_t{*p++} << (8 * carry_len_);
    --n;
    if (++carry_len_ == 8) {
      mix(carry_);
      carry_ = 0;
      carry_len_ = 0;
    }
  }
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    mix(w);
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    carry_ |= uint64_t{*p++} << (8 * carry_len_++);
    --n;
  }
}

uint64_t Digest::Value() const {
  uint64_t h = h_;
  h = (h ^ carry_ ^ (uint64_t{carry_len_} << 56)) * 0x100000001b3ull;
  return SplitMix(h ^ count_);
}

uint64_t DigestOf(const std::string& s) {
  Digest d;
  d.Update(s.data(), s.size());
  return d.Value();
}

uint64_t PatternDigest(uint64_t seed, uint64_t len) {
  Pattern p(seed);
  Digest d;
  std::vector<uint8_t> buf(1 << 16);
  for (uint64_t off = 0; off < len; off += buf.size()) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), len - off));
    p.Fill(off, buf.data(), n);
    d.Update(buf.data(), n);
  }
  return d.Value();
}

ExchangeResult Exchange(int fd, uint64_t seed, uint64_t send_len, bool shut_wr, Deadline deadline) {
  ExchangeResult r;
  Pattern pattern(seed);
  Digest digest;
  std::vector<uint8_t> out(1 << 16), in(1 << 16);
  size_t out_pos = 0, out_len = 0;
  bool send_done = send_len == 0;
  bool recv_done = false;
  if (send_done && shut_wr) shutdown(fd, SHUT_WR);
  auto finish = [&](int err) {
    r.err = err;
    r.received = digest.count();
    r.recv_digest = digest.Value();
    return r;
  };
  for (;;) {
    // Read what is there.
    while (!recv_done) {
      ssize_t n = recv(fd, in.data(), in.size(), 0);
      if (n > 0) {
        if (r.head.size() < 64)
          r.head.append(reinterpret_cast<const char*>(in.data()),
                        std::min<size_t>(64 - r.head.size(), static_cast<size_t>(n)));
        digest.Update(in.data(), static_cast<size_t>(n));
        continue;
      }
      if (n == 0) {
        recv_done = true;
        break;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return finish(errno);
      break;
    }
    // Send what fits.
    while (!send_done) {
      if (out_pos == out_len) {
        out_len = static_cast<size_t>(std::min<uint64_t>(out.size(), send_len - r.sent));
        pattern.Fill(r.sent, out.data(), out_len);
        out_pos = 0;
      }
      ssize_t n = send(fd, out.data() + out_pos, out_len - out_pos, MSG_NOSIGNAL);
      if (n > 0) {
        out_pos += static_cast<size_t>(n);
        r.sent += static_cast<uint64_t>(n);
        if (r.sent == send_len) {
          send_done = true;
          if (shut_wr) shutdown(fd, SHUT_WR);
        }
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN) return finish(errno);
      break;
    }
    if (send_done && recv_done) return finish(0);
    short events = static_cast<short>((recv_done ? 0 : POLLIN) | (send_done ? 0 : POLLOUT));
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, MsLeft(deadline));
    if (n == 0 || Clock::now() >= deadline) return finish(ETIMEDOUT);
  }
}

namespace {

void PutLe64(std::string* s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}

uint64_t GetLe64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

}  // namespace

std::string TransferHeader(char op, uint64_t seed, uint64_t len) {
  std::string s(1, op);
  PutLe64(&s, seed);
  PutLe64(&s, len);
  return s;
}

std::string TransferReply(uint64_t count, uint64_t digest) {
  std::string s;
  PutLe64(&s, count);
  PutLe64(&s, digest);
  return s;
}

void TransferHandler(Fd conn) {
  Deadline deadline = In(60000 * Slowdown());
  std::string header;
  if (RecvExact(conn.get(), 17, &header, deadline) != 0) return;
  uint64_t seed = GetLe64(header.data() + 1);
  uint64_t len = GetLe64(header.data() + 9);
  if (header[0] == 'U') {
    ExchangeResult r = Exchange(conn.get(), 0, 0, false, deadline);
    if (r.err == 0) SendAll(conn.get(), TransferReply(r.received, r.recv_digest), deadline);
  } else if (header[0] == 'D') {
    Exchange(conn.get(), seed, len, true, deadline);
  }
}

// ---- Servers ----

StopFlag::StopFlag() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

void StopFlag::Set() {
  set_ = true;
  uint64_t one = 1;
  ssize_t n = write(fd_.get(), &one, sizeof(one));
  (void)n;
}

EchoServer::EchoServer(Fd listener, std::string greeting)
    : listener_(std::move(listener)), greeting_(std::move(greeting)) {
  thread_ = std::thread([this] { Loop(); });
}

EchoServer::~EchoServer() {
  stop_.Set();
  thread_.join();
}

void EchoServer::Loop() {
  struct Conn {
    Fd fd;
    std::string buf;  // bytes to write back
    bool read_eof = false;
    bool shut = false;
  };
  constexpr size_t kMaxBuf = 1 << 18;
  std::vector<Conn> conns;
  std::vector<pollfd> pfds;
  std::vector<char> tmp(1 << 16);
  while (!stop_.IsSet()) {
    pfds.clear();
    pfds.push_back({stop_.fd(), POLLIN, 0});
    pfds.push_back({listener_.get(), POLLIN, 0});
    for (Conn& c : conns) {
      short ev = 0;
      if (!c.read_eof && c.buf.size() < kMaxBuf) ev |= POLLIN;
      if (!c.buf.empty()) ev |= POLLOUT;
      pfds.push_back({c.fd.get(), ev, 0});
    }
    if (poll(pfds.data(), pfds.size(), 1000) < 0 && errno != EINTR) break;
    if (pfds[1].revents & POLLIN) {
      for (;;) {
        int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        ++accepted_;
        conns.push_back(Conn{Fd(fd), greeting_});
      }
    }
    for (size_t i = 0; i < conns.size() && i + 2 < pfds.size(); ++i) {
      Conn& c = conns[i];
      short re = pfds[i + 2].revents;
      if (!re) continue;
      bool dead = false;
      if (!c.read_eof && (re & (POLLIN | POLLHUP | POLLERR))) {
        while (c.buf.size() < kMaxBuf) {
          ssize_t n = recv(c.fd.get(), tmp.data(), std::min(tmp.size(), kMaxBuf - c.buf.size()), 0);
          if (n > 0) {
            c.buf.append(tmp.data(), static_cast<size_t>(n));
          } else if (n == 0) {
            c.read_eof = true;
            break;
          } else {
            if (errno != EAGAIN && errno != EINTR) dead = true;
            break;
          }
        }
      }
      while (!dead && !c.buf.empty()) {
        ssize_t n = send(c.fd.get(), c.buf.data(), c.buf.size(), MSG_NOSIGNAL);
        if (n > 0) {
          c.buf.erase(0, static_cast<size_t>(n));
        } else {
          if (errno != EAGAIN && errno != EINTR) dead = true;
          break;
        }
      }
      if (!dead && c.read_eof && c.buf.empty() && !c.shut) {
        shutdown(c.fd.get(), SHUT_WR);
        c.shut = true;
        dead = true;  // nothing more to do: close
      }
      if (dead) c.fd.Reset();
    }
    conns.erase(std::remove_if(conns.begin(), conns.end(), [](const Conn& c) { return !c.fd; }),
                conns.end());
  }
}

TcpServer::TcpServer(Fd listener, Handler handler)
    : listener_(std::move(listener)), handler_(std::move(handler)) {
  thread_ = std::thread([this] { Loop(); });
}

void TcpServer::CloseListener() {
  stop_.Set();
  if (thread_.joinable()) thread_.join();
  listener_.Reset();
}

TcpServer::~TcpServer() {
  CloseListener();
  std::lock_guard<std::mutex> lock(mu_);
  for (std::thread& t : handlers_) t.join();
}

void TcpServer::Loop() {
  while (!stop_.IsSet()) {
    pollfd p[2] = {{stop_.fd(), POLLIN, 0}, {listener_.get(), POLLIN, 0}};
    if (poll(p, 2, 1000) < 0 && errno != EINTR) return;
    if (!(p[1].revents & POLLIN)) continue;
    int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) continue;
    ++accepted_;
    std::lock_guard<std::mutex> lock(mu_);
    handlers_.emplace_back([this, fd] { handler_(Fd(fd)); });
  }
}

UdpEchoServer::UdpEchoServer(Fd sock, std::string tag)
    : sock_(std::move(sock)), tag_(std::move(tag)) {
  thread_ = std::thread([this] { Loop(); });
}

UdpEchoServer::~UdpEchoServer() {
  stop_.Set();
  thread_.join();
}

std::vector<Addr> UdpEchoServer::peers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peers_;
}

void UdpEchoServer::Loop() {
  std::vector<char> buf(1 << 16);
  while (!stop_.IsSet()) {
    pollfd p[2] = {{stop_.fd(), POLLIN, 0}, {sock_.get(), POLLIN, 0}};
    if (poll(p, 2, 1000) < 0 && errno != EINTR) return;
    for (;;) {
      sockaddr_storage from{};
      socklen_t fromlen = sizeof(from);
      ssize_t n = recvfrom(sock_.get(), buf.data(), buf.size(), 0,
                           reinterpret_cast<sockaddr*>(&from), &fromlen);
      if (n < 0) break;
      {
        std::lock_guard<std::mutex> lock(mu_);
        peers_.push_back(Addr::FromSockaddr(reinterpret_cast<sockaddr*>(&from), fromlen));
      }
      std::string reply = tag_ + std::string(buf.data(), static_cast<size_t>(n));
      sendto(sock_.get(), reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from),
             fromlen);
    }
  }
}

std::string UdpRoundTrip(int fd, const Addr& to, const std::string& msg, Addr* from,
                         int timeout_ms) {
  if (sendto(fd, msg.data(), msg.size(), 0, to.sa(), to.len) < 0) {
    ADD_FAILURE() << "sendto " << to.ToString() << ": " << std::strerror(errno);
    return "";
  }
  Deadline d = In(timeout_ms);
  std::vector<char> buf(1 << 16);
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    ssize_t n = recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&ss), &len);
    if (n >= 0) {
      if (from) *from = Addr::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
      return std::string(buf.data(), static_cast<size_t>(n));
    }
    if (errno != EAGAIN && errno != EINTR) {
      ADD_FAILURE() << "recvfrom after sending to " << to.ToString() << ": "
                    << std::strerror(errno);
      return "";
    }
    if (!WaitReadable(fd, d)) {
      ADD_FAILURE() << "no UDP reply from " << to.ToString() << " within " << timeout_ms << " ms";
      return "";
    }
  }
}

}  // namespace ringfwd::e2e
