#include "tests/e2e/load_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "tests/test_util.h"

namespace ringfwd::e2e {

// ---- The daemon's /proc ----

int CountFds(pid_t pid) {
  DIR* dir = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (!dir) return -1;
  int n = 0;
  while (dirent* e = readdir(dir))
    if (e->d_name[0] != '.') ++n;
  closedir(dir);
  return n;
}

std::string FdKinds::ToString() const {
  return std::to_string(total()) + " (" + std::to_string(sockets) + " sockets, " +
         std::to_string(pipes) + " pipe ends, " + std::to_string(other) + " other)";
}

FdKinds CountFdKinds(pid_t pid) {
  FdKinds k;
  std::string dir_path = "/proc/" + std::to_string(pid) + "/fd";
  DIR* dir = opendir(dir_path.c_str());
  if (!dir) return k;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    char target[256];
    ssize_t n = readlink((dir_path + "/" + e->d_name).c_str(), target, sizeof(target) - 1);
    std::string t(target, n > 0 ? static_cast<size_t>(n) : 0);
    if (t.rfind("socket:", 0) == 0) {
      ++k.sockets;
    } else if (t.rfind("pipe:", 0) == 0) {
      ++k.pipes;
    } else {
      ++k.other;
    }
  }
  closedir(dir);
  return k;
}

int SettledFds(pid_t pid, int ms) {
  int last = CountFds(pid);
  Clock::time_point stable_since = Clock::now();
  for (Deadline dl = In(ms * Slowdown()); Clock::now() < dl;) {
    usleep(20000);
    int now = CountFds(pid);
    if (now != last) {
      last = now;
      stable_since = Clock::now();
    } else if (Clock::now() - stable_since >= std::chrono::milliseconds(300)) {
      break;
    }
  }
  return last;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  return std::string(std::istreambuf_iterator<char>(in), {});
}

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

std::string StatusField(pid_t pid, const std::string& name) {
  std::istringstream in(ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, name.size(), name) != 0 || line.size() <= name.size() ||
        line[name.size()] != ':')
      continue;
    std::string v = line.substr(name.size() + 1);
    size_t b = v.find_first_not_of(" \t");
    size_t e = v.find_last_not_of(" \t");
    return b == std::string::npos ? "" : v.substr(b, e - b + 1);
  }
  return "";
}

int64_t RssKiB(pid_t pid) {
  std::string v = StatusField(pid, "VmRSS");  // "12345 kB"
  if (v.empty()) return -1;
  return std::atoll(v.c_str());
}

bool SkipMemoryChecks() {
  const char* env = std::getenv("RINGFWD_ASAN");
  return (env != nullptr && *env != '\0') || Slowdown() > 1;
}

int64_t TicksPerSecond() {
  long t = sysconf(_SC_CLK_TCK);
  return t > 0 ? t : 100;
}

// ---- Many connections ----

std::vector<Fd> ConnectMany(const TempNetns& ns, const Addr& a, int n, int batch, Deadline deadline,
                            std::string* error) {
  std::vector<Fd> out;
  out.reserve(static_cast<size_t>(n));
  while (static_cast<int>(out.size()) < n) {
    int want = std::min<int>(batch, n - static_cast<int>(out.size()));
    std::vector<Fd> socks = SocketsIn(ns, a.family(), SOCK_STREAM, static_cast<size_t>(want));
    if (static_cast<int>(socks.size()) != want) {
      *error = "could not make sockets after " + std::to_string(out.size()) + " connections";
      return out;
    }
    std::vector<bool> pending(socks.size(), true);
    int left = want;
    for (size_t i = 0; i < socks.size(); ++i) {
      if (connect(socks[i].get(), a.sa(), a.len) == 0) {
        pending[i] = false;
        --left;
      } else if (errno != EINPROGRESS) {
        *error = "connect " + a.ToString() + " (connection " + std::to_string(out.size() + i) +
                 "): " + std::strerror(errno);
        return out;
      }
    }
    while (left > 0) {
      std::vector<pollfd> pfds;
      std::vector<size_t> idx;
      for (size_t i = 0; i < socks.size(); ++i) {
        if (!pending[i]) continue;
        pfds.push_back({socks[i].get(), POLLOUT, 0});
        idx.push_back(i);
      }
      int r = poll(pfds.data(), pfds.size(), MsLeft(deadline));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        *error = std::to_string(left) + " of a batch of " + std::to_string(want) +
                 " connections still connecting at the deadline, after " +
                 std::to_string(out.size()) + " connected";
        return out;
      }
      for (size_t k = 0; k < pfds.size(); ++k) {
        if (!pfds[k].revents) continue;
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        getsockopt(pfds[k].fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        if (soerr) {
          *error =
              "connection " + std::to_string(out.size() + idx[k]) + ": " + std::strerror(soerr);
          return out;
        }
        pending[idx[k]] = false;
        --left;
      }
    }
    for (Fd& s : socks) out.push_back(std::move(s));
  }
  return out;
}

std::vector<Fd> StartConnects(const TempNetns& ns, const Addr& a, int n) {
  std::vector<Fd> socks = SocketsIn(ns, a.family(), SOCK_STREAM, static_cast<size_t>(n));
  for (Fd& s : socks) {
    int r = connect(s.get(), a.sa(), a.len);
    (void)r;  // EINPROGRESS, or an error the test may not care about
  }
  return socks;
}

int EchoEach(const std::vector<Fd>& socks, const std::function<std::string(int)>& message,
             Deadline deadline, std::string* error) {
  const int n = static_cast<int>(socks.size());
  std::vector<std::string> want(static_cast<size_t>(n)), got(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    want[i] = message(i);
    if (int err = SendAll(socks[i].get(), want[i], deadline)) {
      if (error->empty())
        *error = "send on connection " + std::to_string(i) + ": " + std::strerror(err);
      return 0;
    }
  }
  std::vector<bool> done(static_cast<size_t>(n), false);
  int complete = 0, failed = 0;
  std::vector<char> buf(4096);
  while (complete + failed < n && Clock::now() < deadline) {
    std::vector<pollfd> pfds;
    std::vector<int> idx;
    for (int i = 0; i < n; ++i) {
      if (done[i]) continue;
      pfds.push_back({socks[i].get(), POLLIN, 0});
      idx.push_back(i);
    }
    int r = poll(pfds.data(), pfds.size(), MsLeft(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    for (size_t k = 0; k < pfds.size(); ++k) {
      if (!pfds[k].revents) continue;
      int i = idx[k];
      ssize_t m = recv(pfds[k].fd, buf.data(), buf.size(), 0);
      if (m < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (m <= 0) {
        if (error->empty())
          *error = "connection " + std::to_string(i) + " ended after " +
                   std::to_string(got[i].size()) +
                   " bytes: " + (m == 0 ? std::string("EOF") : std::string(std::strerror(errno)));
        done[i] = true;
        ++failed;
        continue;
      }
      got[i].append(buf.data(), static_cast<size_t>(m));
      if (got[i].size() >= want[i].size()) {
        done[i] = true;
        if (got[i] == want[i]) {
          ++complete;
        } else {
          ++failed;
          if (error->empty()) *error = "connection " + std::to_string(i) + " got foreign bytes";
        }
      }
    }
  }
  if (complete + failed < n && error->empty())
    *error = std::to_string(n - complete - failed) + " echoes missing at the deadline";
  return complete;
}

void CloseWithReset(Fd fd) {
  if (!fd) return;
  linger lg{1, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

// ---- Steady flows ----

SteadyFlows::SteadyFlows(const TempNetns& ns, const Addr& a, int count, size_t chunk, int pause_ms)
    : ns_path_(ns.path()),
      chunk_(chunk),
      pause_ms_(pause_ms),
      rounds_(new std::atomic<int64_t>[static_cast<size_t>(count)]),
      count_(count) {
  for (int i = 0; i < count; ++i) rounds_[i] = 0;
  for (int i = 0; i < count; ++i) threads_.emplace_back([this, i, a] { Run(i, a); });
}

SteadyFlows::~SteadyFlows() { Stop(); }

void SteadyFlows::Stop() {
  stop_ = true;
  for (std::thread& t : threads_)
    if (t.joinable()) t.join();
}

int64_t SteadyFlows::min_rounds() const {
  int64_t m = INT64_MAX;
  for (int i = 0; i < count_; ++i) m = std::min<int64_t>(m, rounds_[i].load());
  return count_ ? m : 0;
}

std::string SteadyFlows::error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

bool SteadyFlows::AdvanceAll(int64_t rounds, int timeout_ms) {
  std::vector<int64_t> start(static_cast<size_t>(count_));
  for (int i = 0; i < count_; ++i) start[i] = rounds_[i].load();
  Deadline dl = In(timeout_ms * Slowdown());
  for (;;) {
    if (!error().empty()) return false;
    bool all = true;
    for (int i = 0; i < count_ && all; ++i) all = rounds_[i].load() >= start[i] + rounds;
    if (all) return true;
    if (Clock::now() >= dl) return false;
    usleep(2000);
  }
}

void SteadyFlows::Run(int index, const Addr& a) {
  auto fail = [&](const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_.empty()) error_ = "steady flow " + std::to_string(index) + ": " + what;
  };
  Fd nsfd(open(ns_path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!nsfd || setns(nsfd.get(), CLONE_NEWNET) < 0) {
    fail("setns " + ns_path_ + ": " + std::strerror(errno));
    return;
  }
  Fd fd(socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    fail(std::string("socket: ") + std::strerror(errno));
    return;
  }
  if (int err = ConnectFd(fd.get(), a, In(3000 * Slowdown()))) {
    fail("connect " + a.ToString() + ": " + std::strerror(err));
    return;
  }
  ++connected_;
  Pattern pattern(0x57ead000u + static_cast<uint64_t>(index));
  uint64_t offset = 0;
  while (!stop_) {
    // A round trip may wait behind a stalled daemon; 10 s is "stopped".
    Deadline d = In(10000 * Slowdown());
    std::string out = pattern.Bytes(offset, chunk_);
    if (int err = SendAll(fd.get(), out, d)) {
      fail(std::string("send: ") + std::strerror(err));
      return;
    }
    std::string back;
    if (int err = RecvExact(fd.get(), chunk_, &back, d)) {
      fail("receive at byte " + std::to_string(offset) + ": " + std::strerror(err));
      return;
    }
    if (back != out) {
      fail("corrupted echo at byte " + std::to_string(offset));
      return;
    }
    offset += chunk_;
    bytes_ += chunk_;
    ++rounds_[index];
    for (int slept = 0; slept < pause_ms_ && !stop_; slept += 5) usleep(5000);
  }
}

// ---- A daemon started with a wrapper ----

namespace {

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

std::unique_ptr<RingfwdChild> RingfwdChild::Start(const TempNetns& host,
                                                  const std::vector<std::string>& wrapper,
                                                  const std::vector<std::string>& args,
                                                  const std::string& log_file, std::string* error) {
  std::unique_ptr<RingfwdChild> c(new RingfwdChild());
  c->log_file_ = log_file;
  const char* tmp = std::getenv("TMPDIR");
  c->out_path_ = std::string(tmp && *tmp ? tmp : "/tmp") + "/rfload-XXXXXX";
  Fd out(mkostemp(c->out_path_.data(), O_CLOEXEC));
  if (!out) {
    *error = std::string("mkostemp: ") + std::strerror(errno);
    c->out_path_.clear();
    return nullptr;
  }
  std::vector<std::string> argv = {"ip", "netns", "exec", host.name()};
  argv.insert(argv.end(), wrapper.begin(), wrapper.end());
  argv.push_back(testing::BinDir() + "/ringfwd");
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  c->pid_ = fork();
  if (c->pid_ < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    return nullptr;
  }
  if (c->pid_ == 0) {
    // Async-signal-safe calls only.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(out.get(), 1);
    dup2(out.get(), 2);
    syscall(SYS_close_range, 3, ~0U, 0);
    execvp(cargv[0], cargv.data());
    _exit(127);
  }
  Deadline deadline = In(5000 * Slowdown());
  for (;;) {
    std::string text = log_file.empty() ? c->Output() : ReadFileOrEmpty(log_file);
    if (text.find(" ready") != std::string::npos) return c;
    if (!c->Running()) {
      *error = "ringfwd exited with status " + std::to_string(DecodeWaitStatus(c->status_)) +
               " before it was ready:\n" + c->Output() + text;
      return nullptr;
    }
    if (Clock::now() >= deadline) {
      *error = "ringfwd not ready in time:\n" + c->Output() + text;
      return nullptr;
    }
    usleep(5000);
  }
}

bool RingfwdChild::Running() {
  if (status_ != -1 || pid_ <= 0) return false;
  int st;
  if (waitpid(pid_, &st, WNOHANG) == pid_) {
    status_ = st;
    return false;
  }
  return true;
}

int RingfwdChild::Signal(int sig, int timeout_ms) {
  if (Running()) {
    kill(pid_, sig);
    Deadline d = In(timeout_ms);
    while (Running() && Clock::now() < d) usleep(2000);
    if (Running()) {
      kill(pid_, SIGKILL);
      int st;
      waitpid(pid_, &st, 0);
      status_ = st;
      return -1;
    }
  }
  return status_ == -1 ? -1 : DecodeWaitStatus(status_);
}

RingfwdChild::~RingfwdChild() {
  if (Running()) {
    kill(pid_, SIGKILL);
    int st;
    waitpid(pid_, &st, 0);
  }
  if (::testing::Test::HasFailure()) {
    std::cerr << "---- ringfwd output ----\n" << Output();
    if (!log_file_.empty())
      std::cerr << "---- " << log_file_ << " ----\n" << ReadFileOrEmpty(log_file_);
    std::cerr << "----\n";
  }
  if (!out_path_.empty()) unlink(out_path_.c_str());
}

}  // namespace ringfwd::e2e
