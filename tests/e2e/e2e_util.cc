#include "tests/e2e/e2e_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "tests/test_util.h"

namespace ringfwd::e2e {
namespace {

std::atomic<int> g_ns_counter{0};

// Closes every descriptor from 3 up; async-signal-safe.
void CloseFrom3() {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 3, ~0U, 0) == 0) return;
#endif
  for (int fd = 3; fd < 65536; ++fd) close(fd);
}

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Waits for `pid` up to `timeout_ms`; returns true and the status if it
// exited.
bool WaitPid(pid_t pid, int timeout_ms, int* status) {
  Deadline d = In(timeout_ms);
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno != EINTR) return false;
    if (Clock::now() >= d) return false;
    usleep(2000);
  }
}

int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Forks and execs argv with stdout and stderr going to `out_fd`, stdin from
// /dev/null, dying with the test process.
pid_t Spawn(const std::vector<std::string>& argv, int out_fd) {
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = fork();
  if (pid != 0) return pid;
  // Child: async-signal-safe calls only.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd >= 0) dup2(null_fd, 0);
  dup2(out_fd, 1);
  dup2(out_fd, 2);
  CloseFrom3();
  execvp(cargv[0], cargv.data());
  _exit(127);
}

// A temporary file path under $TMPDIR; the file is created empty.
std::string MakeTempFile(Fd* fd) {
  const char* dir = std::getenv("TMPDIR");
  std::string path = std::string(dir && *dir ? dir : "/tmp") + "/rfe2e-XXXXXX";
  int f = mkostemp(path.data(), O_CLOEXEC);
  if (f < 0) {
    ADD_FAILURE() << "mkostemp: " << std::strerror(errno);
    return "";
  }
  fd->Reset(f);
  return path;
}

// True if `pid` runs (a zombie waiting to be reaped counts as dead).
bool PidAlive(long pid) {
  std::string stat = ReadWhole("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  if (stat.empty() || paren == std::string::npos || paren + 2 >= stat.size()) return false;
  return stat[paren + 2] != 'Z';
}

// Deletes rfe2e-<pid>-* namespaces left by test processes that died.
void CleanStaleNamespaces() {
  static std::once_flag once;
  std::call_once(once, [] {
    DIR* dir = opendir("/run/netns");
    if (!dir) return;
    std::vector<std::string> stale;
    while (dirent* e = readdir(dir)) {
      long pid = 0;
      int counter = 0;
      char tail = 0;
      if (std::sscanf(e->d_name, "rfe2e-%ld-%d%c", &pid, &counter, &tail) == 2 && pid > 0 &&
          pid != getpid() && !PidAlive(pid))
        stale.push_back(e->d_name);
    }
    closedir(dir);
    for (const std::string& n : stale) RunCmd({"ip", "netns", "del", n});
  });
}

bool ParseCidr(const std::string& cidr, int* family, uint8_t addr[16], int* prefix) {
  size_t slash = cidr.find('/');
  std::string ip = cidr.substr(0, slash);
  *prefix = slash == std::string::npos ? -1 : std::atoi(cidr.c_str() + slash + 1);
  if (inet_pton(AF_INET, ip.c_str(), addr) == 1) {
    *family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, ip.c_str(), addr) == 1) {
    *family = AF_INET6;
    return true;
  }
  return false;
}

}  // namespace

Deadline In(int ms) { return Clock::now() + std::chrono::milliseconds(ms); }

int MsLeft(Deadline d) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(d - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 1 << 30));
}

int Slowdown() {
  // RINGFWD_ASAN=1: the daemons under test run under a sanitizer (CI runs
  // this binary against the ASan and TSan builds' ringfwd and pesto).
  const char* env = std::getenv("RINGFWD_ASAN");
  if (env != nullptr && std::string(env) == "1") return 3;
#if defined(__SANITIZE_ADDRESS__)
  return 3;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return 3;
#else
  return 1;
#endif
#else
  return 1;
#endif
}

CmdResult RunCmd(const std::vector<std::string>& argv, int timeout_ms) {
  CmdResult r;
  Fd out;
  std::string path = MakeTempFile(&out);
  if (path.empty()) return r;
  pid_t pid = Spawn(argv, out.get());
  if (pid < 0) {
    unlink(path.c_str());
    return r;
  }
  int status = 0;
  if (WaitPid(pid, timeout_ms, &status)) {
    r.exit_code = DecodeStatus(status);
  } else {
    r.timed_out = true;
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  r.output = ReadWhole(path);
  unlink(path.c_str());
  return r;
}

// ---- Addr ----

Addr Addr::Of(const std::string& ip, uint16_t port) {
  Addr a;
  auto* in4 = reinterpret_cast<sockaddr_in*>(&a.ss);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
  if (inet_pton(AF_INET, ip.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(port);
    a.len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, ip.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    a.len = sizeof(sockaddr_in6);
  } else {
    ADD_FAILURE() << "bad address " << ip;
  }
  return a;
}

Addr Addr::FromSockaddr(const sockaddr* sa, socklen_t len) {
  Addr a;
  len = std::min<socklen_t>(len, sizeof(a.ss));
  std::memcpy(&a.ss, sa, len);
  a.len = len;
  return a;
}

uint16_t Addr::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

std::string Addr::ToString() const {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, buf, sizeof(buf));
    return std::string(buf) + ":" + std::to_string(port());
  }
  if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof(buf));
    return "[" + std::string(buf) + "]:" + std::to_string(port());
  }
  return "?";
}

bool Addr::operator==(const Addr& o) const { return ToString() == o.ToString(); }

// ---- Namespaces ----

std::unique_ptr<TempNetns> TempNetns::Create(std::string* error) {
  if (geteuid() != 0) {
    *error = "not root: network namespaces need CAP_SYS_ADMIN";
    return nullptr;
  }
  CleanStaleNamespaces();
  std::string name = "rfe2e-" + std::to_string(getpid()) + "-" + std::to_string(++g_ns_counter);
  CmdResult r;
  for (int attempt = 0; attempt < 3; ++attempt) {
    r = RunCmd({"ip", "netns", "add", name});
    if (r.exit_code == 0) break;
    RunCmd({"ip", "netns", "del", name});
  }
  if (r.exit_code != 0) {
    *error = "ip netns add " + name + " failed: " + r.output;
    return nullptr;
  }
  std::unique_ptr<TempNetns> ns(new TempNetns(name));
  if (!ns->Ip({"link", "set", "lo", "up"}, error)) return nullptr;
  return ns;
}

TempNetns::~TempNetns() {
  CmdResult r = RunCmd({"ip", "netns", "del", name_});
  if (r.exit_code != 0) ADD_FAILURE() << "ip netns del " << name_ << ": " << r.output;
}

bool TempNetns::Ip(const std::vector<std::string>& args, std::string* error) const {
  std::vector<std::string> argv = {"ip", "-n", name_};
  argv.insert(argv.end(), args.begin(), args.end());
  CmdResult r = RunCmd(argv);
  if (r.exit_code == 0) return true;
  std::string cmd;
  for (const std::string& a : argv) cmd += a + " ";
  *error = cmd + "failed: " + r.output;
  return false;
}

bool IsDocumentationAddress(const std::string& cidr) {
  int family, prefix;
  uint8_t a[16] = {};
  if (!ParseCidr(cidr, &family, a, &prefix)) return false;
  if (family == AF_INET)
    return (a[0] == 192 && a[1] == 0 && a[2] == 2) || (a[0] == 198 && a[1] == 51 && a[2] == 100);
  return a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8;
}

namespace {

bool AddAddresses(const TempNetns& ns, const std::string& dev,
                  const std::vector<std::string>& cidrs, std::string* error) {
  for (const std::string& c : cidrs) {
    if (!IsDocumentationAddress(c)) {
      *error = "refusing non-documentation address " + c;
      return false;
    }
    std::vector<std::string> args = {"addr", "add", c, "dev", dev};
    if (c.find(':') != std::string::npos) args.push_back("nodad");
    if (!ns.Ip(args, error)) return false;
  }
  return ns.Ip({"link", "set", dev, "up"}, error);
}

}  // namespace

bool TempNetns::AddLink(const std::string& dev, const std::vector<std::string>& cidrs,
                        std::string* error) const {
  for (const std::string& c : cidrs) {
    if (!IsDocumentationAddress(c)) {
      *error = "refusing non-documentation address " + c;
      return false;
    }
  }
  return Ip({"link", "add", dev, "type", "veth", "peer", "name", dev + "p"}, error) &&
         Ip({"link", "set", dev + "p", "up"}, error) && AddAddresses(*this, dev, cidrs, error);
}

bool AddVeth(const TempNetns& a, const std::string& dev_a, const std::vector<std::string>& cidrs_a,
             const TempNetns& b, const std::string& dev_b, const std::vector<std::string>& cidrs_b,
             std::string* error) {
  for (const auto* list : {&cidrs_a, &cidrs_b}) {
    for (const std::string& c : *list) {
      if (!IsDocumentationAddress(c)) {
        *error = "refusing non-documentation address " + c;
        return false;
      }
    }
  }
  return a.Ip({"link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", b.name()},
              error) &&
         AddAddresses(a, dev_a, cidrs_a, error) && AddAddresses(b, dev_b, cidrs_b, error);
}

void RunInNs(const TempNetns& ns, const std::function<void()>& fn) {
  std::string err;
  std::thread t([&] {
    Fd nsfd(open(ns.path().c_str(), O_RDONLY | O_CLOEXEC));
    if (!nsfd) {
      err = "open " + ns.path() + ": " + std::strerror(errno);
      return;
    }
    if (setns(nsfd.get(), CLONE_NEWNET) < 0) {
      err = "setns " + ns.path() + ": " + std::strerror(errno);
      return;
    }
    fn();
  });
  t.join();
  if (!err.empty()) ADD_FAILURE() << err;
}

// ---- The daemon ----

std::unique_ptr<Daemon> Daemon::Start(const TempNetns& host, const std::vector<std::string>& args,
                                      std::string* error) {
  std::unique_ptr<Daemon> d(new Daemon());
  Fd log;
  d->log_path_ = MakeTempFile(&log);
  if (d->log_path_.empty()) {
    *error = "no temporary file";
    return nullptr;
  }
  std::vector<std::string> argv = {"ip", "netns", "exec", host.name(),
                                   testing::BinDir() + "/ringfwd"};
  argv.insert(argv.end(), args.begin(), args.end());
  d->pid_ = Spawn(argv, log.get());
  if (d->pid_ < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    return nullptr;
  }
  Deadline deadline = In(5000 * Slowdown());
  for (;;) {
    std::string text = d->Log();
    if (text.find(" ready") != std::string::npos) return d;
    if (!d->Running()) {
      *error = "ringfwd exited with status " + std::to_string(DecodeStatus(d->status_)) +
               " before it was ready:\n" + d->Log();
      return nullptr;
    }
    if (Clock::now() >= deadline) {
      *error = "ringfwd not ready in time:\n" + text;
      return nullptr;
    }
    usleep(5000);
  }
}

bool Daemon::Running() {
  if (status_ != -1 || pid_ < 0) return false;
  int st;
  if (waitpid(pid_, &st, WNOHANG) == pid_) {
    status_ = st;
    return false;
  }
  return true;
}

int Daemon::Stop(int timeout_ms) {
  if (Running()) {
    kill(pid_, SIGTERM);
    int st;
    if (!WaitPid(pid_, timeout_ms, &st)) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &st, 0);
      status_ = st;
      return -1;
    }
    status_ = st;
  }
  return status_ == -1 ? -1 : DecodeStatus(status_);
}

Daemon::~Daemon() {
  Stop(3000 * Slowdown());
  // The e2e suite also drives sanitizer builds of the daemon (RINGFWD_BIN_DIR):
  // their reports go to its stderr, which is the log.
  std::string log = Log();
  for (const char* mark : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                           "WARNING: ThreadSanitizer", "runtime error:"})
    if (log.find(mark) != std::string::npos)
      ADD_FAILURE() << "ringfwd's log has \"" << mark << "\"";
  if (::testing::Test::HasFailure()) std::cerr << "---- ringfwd log ----\n" << log << "----\n";
  if (!log_path_.empty()) unlink(log_path_.c_str());
}

std::string Daemon::Log() const { return ReadWhole(log_path_); }

CmdResult RunRingfwd(const TempNetns& host, const std::vector<std::string>& args, int timeout_ms) {
  std::vector<std::string> argv = {"ip", "netns", "exec", host.name(),
                                   testing::BinDir() + "/ringfwd"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCmd(argv, timeout_ms * Slowdown());
}

size_t RaiseNofile() {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  return rl.rlim_cur;
}

// ---- Fixture ----

void E2eTest::SetUp() {
  if (geteuid() != 0) GTEST_SKIP() << "end-to-end tests need root (network namespaces)";
  std::string error;
  host_ = TempNetns::Create(&error);
  if (host_) target_ = TempNetns::Create(&error);
  if (!host_ || !target_) GTEST_SKIP() << "cannot create a network namespace: " << error;
}

void E2eTest::TearDown() {
  target_.reset();
  host_.reset();
}

std::unique_ptr<Daemon> E2eTest::StartForwarder(const std::vector<std::string>& args) {
  std::vector<std::string> all = {"--netns", target_->name()};
  all.insert(all.end(), args.begin(), args.end());
  return StartDaemon(all);
}

std::unique_ptr<Daemon> E2eTest::StartDaemon(const std::vector<std::string>& args) {
  std::string error;
  std::unique_ptr<Daemon> d = Daemon::Start(*host_, args, &error);
  if (!d) ADD_FAILURE() << "ringfwd did not start: " << error;
  return d;
}

}  // namespace ringfwd::e2e
