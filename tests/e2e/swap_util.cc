#include "tests/e2e/swap_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>

#include "tests/test_util.h"

namespace ringfwd::e2e {

// ---- Control sockets ----

SocketDir::SocketDir() {
  char tmpl[] = "/tmp/rfswap-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    return;
  }
  dir_ = tmpl;
  if (chmod(dir_.c_str(), 0755) < 0) ADD_FAILURE() << "chmod " << dir_ << ": " << errno;
}

SocketDir::~SocketDir() {
  if (!dir_.empty()) RunCmd({"rm", "-rf", dir_});
}

CmdResult RunPesto(const std::vector<std::string>& args, const std::string& path, int timeout_ms) {
  std::vector<std::string> argv = {testing::BinDir() + "/pesto"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(path);
  return RunCmd(argv, timeout_ms * Slowdown());
}

Fd UnixConnect(const std::string& path, int* err) {
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    *err = errno;
    return fd;
  }
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof(sa.sun_path)) {
    *err = ENAMETOOLONG;
    return Fd();
  }
  std::memcpy(sa.sun_path, path.data(), path.size());
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0) {
    *err = errno;
    return Fd();
  }
  *err = 0;
  return fd;
}

Listing ReadListing(int fd, Deadline deadline) {
  Listing l;
  wire::Bytes buf;
  uint8_t tmp[4096];
  for (;;) {
    auto hello = wire::DecodeHello(buf);
    if (hello.state == wire::DecodeState::kError) {
      l.error = "hello: " + hello.error;
      return l;
    }
    if (hello.ok()) {
      auto listing = wire::DecodeListing(wire::ByteSpan(buf).subspan(hello.consumed));
      if (listing.state == wire::DecodeState::kError) {
        l.error = "listing: " + listing.error;
        return l;
      }
      if (listing.ok()) {
        l.bytes.assign(buf.begin(), buf.begin() + hello.consumed + listing.consumed);
        l.tables = std::move(listing.value);
        if (buf.size() > l.bytes.size()) l.error = "bytes after the listing";
        return l;
      }
    }
    ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
    if (n > 0) {
      buf.insert(buf.end(), tmp, tmp + n);
      continue;
    }
    if (n == 0) {
      l.error = "EOF after " + std::to_string(buf.size()) + " bytes of hello and listing";
      return l;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) {
      l.error = std::string("recv: ") + std::strerror(errno);
      return l;
    }
    if (!WaitReadable(fd, deadline) || Clock::now() >= deadline) {
      l.error = "timed out after " + std::to_string(buf.size()) + " bytes of hello and listing";
      return l;
    }
  }
}

ControlConn OpenControl(const std::string& path, int timeout_ms) {
  ControlConn c;
  int err = 0;
  c.fd = UnixConnect(path, &err);
  if (!c.fd) {
    c.listing.error = "connect " + path + ": " + std::strerror(err);
    return c;
  }
  c.listing = ReadListing(c.fd.get(), In(timeout_ms * Slowdown()));
  if (!c.listing.ok()) c.fd.Reset();
  return c;
}

Listing ListControl(const std::string& path, int timeout_ms) {
  return OpenControl(path, timeout_ms).listing;
}

Reply SendAndRead(int fd, const wire::Bytes& update, bool shut_wr, Deadline deadline) {
  Reply r;
  r.err = SendAll(fd, update.data(), update.size(), deadline);
  if (r.err) return r;
  if (shut_wr) shutdown(fd, SHUT_WR);
  std::string in;
  r.err = RecvToEof(fd, &in, deadline, 1 << 20);
  r.bytes.assign(in.begin(), in.end());
  if (r.bytes.empty()) return r;
  auto st = wire::DecodeStatus(r.bytes);
  if (st.ok() && st.consumed == r.bytes.size()) {
    r.has_status = true;
    r.status = std::move(st.value);
  } else if (st.ok()) {
    r.decode_error = "bytes after the status";
  } else {
    r.decode_error = st.state == wire::DecodeState::kNeedMore ? "truncated status" : st.error;
  }
  return r;
}

Reply Transact(const std::string& path, const wire::Bytes& update, int timeout_ms,
               Listing* listing) {
  Deadline deadline = In(timeout_ms * Slowdown());
  ControlConn c = OpenControl(path, timeout_ms);
  if (listing) *listing = c.listing;
  if (!c.fd) {
    Reply r;
    r.err = ENOTCONN;
    r.decode_error = c.listing.error;
    return r;
  }
  return SendAndRead(c.fd.get(), update, false, deadline);
}

wire::Bytes TxnUpdate(const std::vector<wire::UpdateBlock>& blocks) {
  wire::Update u;
  u.transactional = true;
  u.blocks = blocks;
  wire::Bytes out;
  wire::EncodeUpdate(u, &out);
  return out;
}

wire::Bytes TxnUpdateOf(const TableSet& set) {
  wire::Bytes out;
  wire::EncodeUpdateFromTables(set, true, &out);
  return out;
}

Rule MakeRule(uint8_t proto, const std::string& addr, uint16_t first, uint16_t last, uint16_t to,
              uint8_t flags, const std::string& target, const std::string& ifname) {
  Rule r;
  r.proto = proto;
  r.first = first;
  r.last = last;
  r.to = to;
  r.flags = flags;
  if (addr.empty()) {
    r.flags |= kFlagDualStackAny;
  } else {
    std::optional<Addr6> a = Addr6::Parse(addr);
    if (!a) ADD_FAILURE() << "bad address " << addr;
    r.addr = a.value_or(Addr6{});
  }
  if (!target.empty()) {
    std::optional<Addr6> t = Addr6::Parse(target);
    if (!t) ADD_FAILURE() << "bad target " << target;
    r.target = t.value_or(Addr6{});
  }
  if (!ifname.empty() && !r.SetIfname(ifname)) ADD_FAILURE() << "bad ifname " << ifname;
  return r;
}

std::vector<Rule> RulesOf(const TableSet& set, PifId pif) {
  const Table* t = set.Find(pif);
  return t ? t->rules : std::vector<Rule>{};
}

std::string TablesText(const TableSet& set) {
  std::string out;
  for (const Table& t : set.tables) {
    out += t.name + " (" + std::to_string(static_cast<int>(t.pif)) + "):\n";
    for (const Rule& r : t.rules)
      out += "  " + RuleText(r) + " flags " + std::to_string(r.flags) + "\n";
  }
  return out;
}

// ---- Traffic ----

int EchoByte(const TempNetns& ns, const Addr& a, int timeout_ms) {
  Deadline d = In(timeout_ms * Slowdown());
  Fd fd = SocketIn(ns, a.family(), SOCK_STREAM);
  if (!fd) return EBADF;
  if (int err = ConnectFd(fd.get(), a, d)) return err;
  if (int err = SendAll(fd.get(), "e", d)) return err;
  std::string got;
  if (int err = RecvExact(fd.get(), 1, &got, d)) return err;
  return got == "e" ? 0 : EPROTO;
}

namespace {

struct ListenSock {
  int family = 0;
  uint16_t port = 0;
  uint64_t inode = 0;
};

// The TCP sockets listening in `ns`, from sock_diag (what `ss -ltne` shows;
// unlike /proc/net/tcp it stays fast with thousands of TIME_WAIT sockets).
std::vector<ListenSock> TcpListeners(const TempNetns& ns) {
  std::vector<ListenSock> out;
  std::string error;
  RunInNs(ns, [&] {
    for (int family : {AF_INET, AF_INET6}) {
      Fd nl(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
      if (!nl) {
        error = std::string("netlink socket: ") + std::strerror(errno);
        return;
      }
      struct {
        nlmsghdr nlh;
        inet_diag_req_v2 req;
      } msg{};
      msg.nlh.nlmsg_len = sizeof(msg);
      msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
      msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
      msg.req.sdiag_family = static_cast<uint8_t>(family);
      msg.req.sdiag_protocol = IPPROTO_TCP;
      msg.req.idiag_states = 1u << 10;  // TCP_LISTEN
      if (send(nl.get(), &msg, sizeof(msg), 0) < 0) {
        error = std::string("sock_diag request: ") + std::strerror(errno);
        return;
      }
      std::vector<char> buf(1 << 16);
      for (bool done = false; !done;) {
        ssize_t n = recv(nl.get(), buf.data(), buf.size(), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          error = std::string("sock_diag recv: ") + std::strerror(errno);
          return;
        }
        int len = static_cast<int>(n);
        for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len);
             h = NLMSG_NEXT(h, len)) {
          if (h->nlmsg_type == NLMSG_DONE) {
            done = true;
            break;
          }
          if (h->nlmsg_type == NLMSG_ERROR) {
            error = "sock_diag: error reply";
            return;
          }
          const auto* m = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
          out.push_back(ListenSock{m->idiag_family, ntohs(m->id.idiag_sport), m->idiag_inode});
        }
      }
    }
  });
  if (!error.empty()) ADD_FAILURE() << error;
  return out;
}

}  // namespace

uint64_t ListenerInode(const TempNetns& ns, int family, uint16_t port) {
  for (const ListenSock& s : TcpListeners(ns))
    if (s.family == family && s.port == port) return s.inode;
  return 0;
}

int CountListeners(const TempNetns& ns, uint16_t first, uint16_t last) {
  int n = 0;
  for (const ListenSock& s : TcpListeners(ns))
    if (s.port >= first && s.port <= last) n++;
  return n;
}

std::unique_ptr<EchoServer> StartEcho(const TempNetns& ns, const std::string& ip, uint16_t port,
                                      const std::string& greeting) {
  Fd l = TcpListen(ns, Addr::Of(ip, port));
  if (!l) return nullptr;
  return std::make_unique<EchoServer>(std::move(l), greeting);
}

ConnectStorm::ConnectStorm(const TempNetns& ns, std::vector<Addr> targets, int threads,
                           int max_per_thread, int pause_us)
    : targets_(std::move(targets)),
      max_per_thread_(max_per_thread),
      pause_us_(pause_us),
      ns_path_(ns.path()) {
  for (int i = 0; i < threads; i++) threads_.emplace_back([this, i] { Run(i); });
}

ConnectStorm::~ConnectStorm() { Stop(); }

void ConnectStorm::Stop() {
  stop_ = true;
  for (std::thread& t : threads_)
    if (t.joinable()) t.join();
}

ConnectStorm::Stats ConnectStorm::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  Stats s = stats_;
  s.ok = ok_.load();
  return s;
}

void ConnectStorm::Run(int index) {
  auto fail = [this](const Addr& a, const char* step, int err) {
    std::lock_guard<std::mutex> lock(mu_);
    if (step == std::string("connect") && err == ECONNREFUSED) {
      stats_.refused++;
    } else if (err == ECONNRESET) {
      stats_.reset++;
    } else {
      stats_.failed++;
    }
    if (stats_.samples.size() < 8)
      stats_.samples.push_back(a.ToString() + ": " + step + ": " + std::strerror(err));
  };
  Fd nsfd(open(ns_path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!nsfd || setns(nsfd.get(), CLONE_NEWNET) < 0) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.failed++;
    stats_.samples.push_back("setns " + ns_path_ + ": " + std::strerror(errno));
    return;
  }
  for (int n = 0; n < max_per_thread_ && !stop_; n++) {
    if (n > 0 && pause_us_ > 0) usleep(pause_us_);
    const Addr& a = targets_[(static_cast<size_t>(index) + n) % targets_.size()];
    Deadline d = In(3000 * Slowdown());
    Fd fd(socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
      fail(a, "socket", errno);
      continue;
    }
    if (int err = ConnectFd(fd.get(), a, d)) {
      fail(a, "connect", err);
      continue;
    }
    if (int err = SendAll(fd.get(), "s", d)) {
      fail(a, "send", err);
      continue;
    }
    std::string got;
    int err = RecvExact(fd.get(), 1, &got, d);
    if (err == 0 && got != "s") err = EPROTO;
    if (err) {
      fail(a, "echo", err);
      continue;
    }
    ok_++;
  }
}

Pinger::Pinger(const TempNetns& ns, const Addr& a) {
  int err = 0;
  fd_ = TcpConnect(ns, a, &err);
  if (!fd_) {
    err_ = err ? err : EBADF;
    ADD_FAILURE() << "pinger connect " << a.ToString() << ": " << std::strerror(err);
    return;
  }
  int one = 1;
  setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  thread_ = std::thread([this] { Run(); });
}

Pinger::~Pinger() { Stop(); }

void Pinger::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void Pinger::ResetWorst() {
  worst_us_ = 0;
  count_ = 0;
}

std::vector<std::string> Pinger::stalls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stalls_;
}

int64_t CpuTicks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command (which may hold spaces): state is field 3,
  // utime 14, stime 15.
  size_t paren = text.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(text.substr(paren + 2));
  std::string f;
  int64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; i++) {
    if (i == 14) utime = std::atoll(f.c_str());
    if (i == 15) stime = std::atoll(f.c_str());
  }
  return utime + stime;
}

void Pinger::Run() {
  char c = 'p';
  while (!stop_) {
    Deadline d = In(5000 * Slowdown());
    auto start = Clock::now();
    auto wall = std::chrono::system_clock::now();
    int err = SendAll(fd_.get(), &c, 1, d);
    std::string got;
    if (!err) err = RecvExact(fd_.get(), 1, &got, d);
    if (!err && got[0] != c) err = EPROTO;
    if (err) {
      err_ = err;
      return;
    }
    int64_t us =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
    if (us > kStallUs) {
      std::lock_guard<std::mutex> lock(mu_);
      if (stalls_.size() < 20) {
        time_t secs = std::chrono::system_clock::to_time_t(wall);
        auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(wall.time_since_epoch()).count() %
            1000;
        tm t{};
        gmtime_r(&secs, &t);
        char buf[64];
        std::snprintf(buf, sizeof(buf), "%02d:%02d:%02d.%03d %lldus", t.tm_hour, t.tm_min, t.tm_sec,
                      static_cast<int>(ms), static_cast<long long>(us));
        stalls_.push_back(buf);
      }
    }
    int64_t prev = worst_us_.load();
    while (us > prev && !worst_us_.compare_exchange_weak(prev, us)) {
    }
    count_++;
    c = c == 'z' ? 'a' : static_cast<char>(c + 1);
    usleep(100);
  }
}

}  // namespace ringfwd::e2e
