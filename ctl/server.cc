#include "ctl/server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "fwd/table_swap.h"
#include "uring/log.h"
#include "uring/status.h"

namespace ringfwd::ctl {
namespace {

// Largest update worth reading: client magic, three full pifs, terminator.
constexpr size_t kMaxUpdateBytes = 8 + 3 * (5 + wire::kMaxWireRules * wire::kRuleSize) + 1;

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

absl::StatusOr<sockaddr_un> UnixAddr(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(sa.sun_path))
    return absl::InvalidArgumentError(
        absl::StrCat("control socket path '", path, "' is empty or too long"));
  std::memcpy(sa.sun_path, path.data(), path.size());
  return sa;
}

// Writes all of `bytes` before `deadline`; false if the peer is gone or slow.
bool WriteAll(int fd, const wire::Bytes& bytes, int64_t deadline) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return false;
    int left = static_cast<int>(deadline - NowMs());
    if (left <= 0) return false;
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, left) <= 0) return false;
  }
  return true;
}

}  // namespace

wire::StatusReply ToStatusReply(const SwapResult& r) {
  wire::StatusReply s;
  s.code = static_cast<wire::StatusCode>(r.code);
  s.message = r.message.substr(0, wire::kMaxStatusMessage);
  for (const auto& [pif, rules] : r.report) {
    wire::PifReport pr;
    pr.pif = pif;
    for (const RuleBindReport& rep : rules)
      pr.rules.push_back(wire::RuleReport{rep.bound, rep.failed, rep.first_errno});
    s.report.push_back(std::move(pr));
  }
  return s;
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(Forwarder* fwd, const ServerOptions& opts) {
  RINGFWD_ASSIGN_OR_RETURN(sockaddr_un sa, UnixAddr(opts.path));
  std::unique_ptr<Server> s(new Server(fwd, opts));
  s->listen_.Reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s->listen_) return ErrnoError(errno, "control socket");
  // A socket file left by a daemon that died is replaced; one that answers
  // belongs to a running daemon and is not.
  struct stat st;
  if (lstat(opts.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return absl::AlreadyExistsError(
          absl::StrCat("control socket ", opts.path, ": exists and is not a socket"));
    Fd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (connect(probe.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0)
      return absl::AlreadyExistsError(
          absl::StrCat("control socket ", opts.path, ": another server is listening on it"));
    unlink(opts.path.c_str());
  }
  mode_t old = umask(0177);  // created 0600: the owner and root only
  int ret = bind(s->listen_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  int err = errno;
  umask(old);
  if (ret < 0) return ErrnoError(err, "bind control socket " + opts.path);
  if (!opts.allow_uids.empty() && chmod(opts.path.c_str(), 0666) < 0)
    return ErrnoError(errno, "chmod control socket " + opts.path);
  if (listen(s->listen_.get(), 16) < 0) return ErrnoError(errno, "listen " + opts.path);
  s->stop_.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->stop_) return ErrnoError(errno, "eventfd");
  s->thread_ = std::thread([p = s.get()] {
    p->ThreadMain();
    p->stopped_ = true;
  });
  return s;
}

void Server::RequestStop() {
  uint64_t one = 1;
  ssize_t ignored = write(stop_.get(), &one, sizeof(one));
  (void)ignored;
}

Server::~Server() {
  if (thread_.joinable()) {
    RequestStop();
    thread_.join();
  }
  if (listen_ && unlink(opts_.path.c_str()) < 0 && errno != ENOENT)
    LOG_WARN(
        "could not remove control socket %s: %s%s", opts_.path, std::strerror(errno),
        errno == EACCES ? " (after --runas, its directory must be writable by that user)" : "");
}

bool Server::Allowed(uid_t uid) const {
  if (uid == 0 || uid == geteuid()) return true;
  return std::find(opts_.allow_uids.begin(), opts_.allow_uids.end(), uid) != opts_.allow_uids.end();
}

void Server::ThreadMain() {
  while (true) {
    pollfd p[2] = {{listen_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    int n = poll(p, 2, -1);
    if (n < 0 && errno != EINTR) {
      LOG_ERR("control socket poll: %s", std::strerror(errno));
      return;
    }
    if (p[1].revents) return;
    if (!(p[0].revents & POLLIN)) continue;
    int c = accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) {
      if (errno == EMFILE || errno == ENFILE) {
        LOG_RATELIMITED(log::Level::kWarn, "control socket accept: %s", std::strerror(errno));
        usleep(100000);  // the connection waits in the backlog meanwhile
      }
      continue;
    }
    Serve(Fd(c));
  }
}

TransactionLog Server::Serve(Fd conn) {
  TransactionLog tl;
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    tl.pid = cred.pid;
    tl.uid = cred.uid;
  }
  if (!Allowed(tl.uid)) {
    tl.refused = true;
    LOG_WARN("control: refused client pid %d uid %d (not an allowed uid)", tl.pid, tl.uid);
    return tl;
  }
  int64_t deadline = NowMs() + opts_.timeout_ms;
  wire::Bytes out;
  wire::EncodeHello(wire::Hello{}, &out);
  wire::EncodeListing(fwd_->Tables(), &out);
  if (!WriteAll(conn.get(), out, deadline)) {
    LOG_INFO("control: client pid %d gone before reading the tables", tl.pid);
    return tl;
  }

  wire::Bytes in;
  wire::Decoded<wire::Update> upd;
  while (true) {
    upd = wire::DecodeUpdate(in);
    if (upd.state != wire::DecodeState::kNeedMore) break;
    if (in.size() > kMaxUpdateBytes) {
      upd.state = wire::DecodeState::kError;
      upd.error = absl::StrCat("update larger than ", kMaxUpdateBytes, " bytes");
      break;
    }
    int left = static_cast<int>(deadline - NowMs());
    pollfd p{conn.get(), POLLIN, 0};
    if (left <= 0 || poll(&p, 1, left) == 0) {
      LOG_WARN(
          "control: client pid %d stalled mid-update (%d bytes in %d ms): dropped, nothing "
          "changed",
          tl.pid, in.size(), opts_.timeout_ms);
      return tl;
    }
    uint8_t buf[16384];
    ssize_t n = recv(conn.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) {
      if (in.empty()) {
        LOG_DEBUG("control: client pid %d listed the tables", tl.pid);
      } else {
        LOG_WARN("control: client pid %d disconnected mid-update (%d bytes): nothing changed",
                 tl.pid, in.size());
      }
      return tl;
    }
    in.insert(in.end(), buf, buf + n);
  }

  tl.updated = true;
  wire::StatusReply reply;
  TableSwap swap(fwd_);
  bool applied = false;
  if (upd.state == wire::DecodeState::kError) {
    reply.code = wire::StatusCode::kProtocolError;
    reply.message = upd.error.substr(0, wire::kMaxStatusMessage);
  } else {
    std::vector<SwapBlock> blocks;
    for (auto& b : upd.value.blocks) blocks.push_back(SwapBlock{b.pif, std::move(b.rules)});
    SwapResult res = swap.Apply(blocks);
    applied = res.code == SwapCode::kApplied;
    reply = ToStatusReply(res);
  }
  // A version-2 client reads nothing back (PROTOCOL.md section 4): its
  // update is final at the switch, and it gets no status. A client that
  // started with the client magic's first byte gets one, even when the rest
  // did not parse.
  bool wants_status = upd.value.transactional || (!in.empty() && in[0] == wire::kClientMagic[0]);
  if (applied && !upd.value.transactional) swap.Finalize();
  bool delivered = false;
  if (wants_status) {
    out.clear();
    wire::EncodeStatus(reply, &out);
    delivered = WriteAll(conn.get(), out, deadline);
  }
  if (applied && upd.value.transactional) {
    if (delivered) {
      swap.Finalize();
    } else {
      SwapResult undo = swap.Undo();
      LOG_WARN("control: client pid %d gone before its status: %s", tl.pid, undo.message);
    }
  }
  tl.code = reply.code;
  tl.message = reply.message;
  LOG_INFO("control: client pid %d uid %d: %s: %s", tl.pid, tl.uid,
           wire::StatusCodeName(reply.code), reply.message);
  return tl;
}

}  // namespace ringfwd::ctl
