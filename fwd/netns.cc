#include "fwd/netns.h"

#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "uring/log.h"
#include "uring/status.h"

namespace ringfwd {

namespace {

// A non-blocking socket; TCP ones with TCP_NODELAY set (forwarded bytes are
// never held back to coalesce) and SO_OOBINLINE (urgent data is read in its
// place and forwarded, not dropped). -1 with errno on failure.
// `cc`: congestion control to set (empty: leave the default). A failure
// there leaves the default: the socket works either way.
int NewSocket(int family, int type, const std::string& cc) {
  int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0 && type == SOCK_STREAM) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_INQ, &one, sizeof(one));
    if (!cc.empty()) {
      absl::Status st = SetCongestionControl(fd, cc);
      static std::atomic<bool> warned{false};  // the cause lasts: once is enough
      if (!st.ok() && !warned.exchange(true)) LOG_WARN("%s", st.message());
    }
  }
  return fd;
}

}  // namespace

absl::Status SetCongestionControl(int fd, const std::string& cc) {
  if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc.data(), cc.size()) == 0)
    return absl::OkStatus();
  if (errno == ENOENT)
    return absl::NotFoundError("TCP congestion control '" + cc +
                               "' is not available (see "
                               "/proc/sys/net/ipv4/tcp_available_congestion_control)");
  if (errno == EPERM)  // after --runas: only the allowed ones
    return absl::PermissionDeniedError(
        "TCP congestion control '" + cc +
        "' is not allowed for this user (see net.ipv4.tcp_allowed_congestion_control): "
        "connections keep the default");
  return ErrnoError(errno, "TCP congestion control '" + cc + "'");
}

absl::StatusOr<std::string> PickLoopbackCc(const std::string& wanted) {
  if (wanted == "system") return std::string();
  Fd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe) return ErrnoError(errno, "socket");
  RINGFWD_RETURN_IF_ERROR(SetCongestionControl(probe.get(), wanted));
  return wanted;
}

absl::StatusOr<Fd> HostSockets::Socket(int family, int type, bool loopback) {
  int fd = NewSocket(family, type, CcFor(loopback));
  if (fd < 0) return ErrnoError(errno, "socket");
  return Fd(fd);
}

absl::Status BringLoopbackUp() {
  Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return ErrnoError(errno, "socket for loopback setup");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(s.get(), SIOCGIFFLAGS, &ifr) < 0) return ErrnoError(errno, "get flags of lo");
  if (ifr.ifr_flags & IFF_UP) return absl::OkStatus();
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(s.get(), SIOCSIFFLAGS, &ifr) < 0) return ErrnoError(errno, "bring lo up");
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<NetNs>> NetNs::Open(const std::string& spec) {
  std::string path;
  uint32_t pid;
  if (spec.empty()) return absl::InvalidArgumentError("empty namespace name");
  if (spec.find('/') != std::string::npos) {
    path = spec;
  } else if (absl::SimpleAtoi(spec, &pid)) {
    path = absl::StrCat("/proc/", pid, "/ns/net");
  } else {
    path = absl::StrCat("/run/netns/", spec);
  }
  Fd nsfd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!nsfd) return ErrnoError(errno, absl::StrCat("namespace '", spec, "': open ", path));

  std::unique_ptr<NetNs> ns(new NetNs());
  ns->name_ = absl::StrCat("namespace ", spec);
  std::promise<absl::Status> started;
  auto fut = started.get_future();
  int raw = nsfd.get();
  ns->thread_ = std::thread([n = ns.get(), raw, &started] { n->ThreadMain(raw, &started); });
  absl::Status st = fut.get();
  if (!st.ok()) {
    ns->thread_.join();
    ns->thread_ = std::thread();
    return absl::Status(st.code(),
                        absl::StrCat("namespace '", spec, "' (", path, "): ", st.message()));
  }
  return ns;
}

NetNs::~NetNs() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void NetNs::ThreadMain(int nsfd, std::promise<absl::Status>* started) {
  if (setns(nsfd, CLONE_NEWNET) < 0) {
    started->set_value(ErrnoError(errno, "setns"));
    return;
  }
  absl::Status lo = BringLoopbackUp();
  if (!lo.ok()) {
    started->set_value(lo);
    return;
  }
  started->set_value(absl::OkStatus());
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
    if (stop_) break;
    auto task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    task();
    lock.lock();
  }
}

void NetNs::RunSync(const std::function<void()>& fn) {
  std::promise<void> done;
  auto fut = done.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back([&] {
      fn();
      done.set_value();
    });
  }
  cv_.notify_all();
  fut.wait();
}

absl::StatusOr<Fd> NetNs::Socket(int family, int type, bool loopback) {
  loopback = loopback && !CcFor(true).empty() && type == SOCK_STREAM;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Pool* pool = nullptr;
    for (auto& p : pools_)
      if (p.family == family && p.type == type && p.loopback == loopback) pool = &p;
    if (!pool) {
      pools_.push_back(Pool{family, type, loopback, {}, false});
      pool = &pools_.back();
    }
    if (pool->fds.size() < kPoolTarget / 2 && !pool->refill_queued) {
      pool->refill_queued = true;
      tasks_.push_back([this] { Refill(); });
      cv_.notify_all();
    }
    if (!pool->fds.empty()) {
      Fd fd = std::move(pool->fds.back());
      pool->fds.pop_back();
      return fd;
    }
  }
  // Pool empty (first use, or a burst): make one now on the namespace thread.
  absl::StatusOr<Fd> out = absl::InternalError("not run");
  RunSync([&] {
    int fd = NewSocket(family, type, CcFor(loopback));
    out = fd < 0 ? absl::StatusOr<Fd>(ErrnoError(errno, "socket in " + name_)) : Fd(fd);
  });
  return out;
}

void NetNs::Refill() {
  // Runs on the namespace thread. Sockets are made outside the lock.
  // Only the shortfall is made: sockets made beyond it would be closed
  // unused (a socket, a setsockopt and a close each).
  struct Want {
    int family, type;
    bool loopback;
    size_t count;
  };
  std::vector<Want> kinds;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& p : pools_) {
      if (p.refill_queued)
        kinds.push_back(Want{p.family, p.type, p.loopback, kPoolTarget - p.fds.size()});
    }
  }
  for (auto [family, type, loopback, count] : kinds) {
    std::vector<Fd> made;
    for (size_t i = 0; i < count; i++) {
      int fd = NewSocket(family, type, CcFor(loopback));
      if (fd < 0) break;
      made.emplace_back(fd);
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& p : pools_) {
      if (p.family != family || p.type != type || p.loopback != loopback) continue;
      while (!made.empty() && p.fds.size() < kPoolTarget) {
        p.fds.push_back(std::move(made.back()));
        made.pop_back();
      }
      p.refill_queued = false;
    }
  }
}

}  // namespace ringfwd
