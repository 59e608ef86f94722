// Helpers for the load, torture and lifecycle end-to-end tests
// (load_test.cc, torture_test.cc, lifecycle_test.cc): what the daemon's
// /proc entries say (descriptors, resident memory, CPU, uid, seccomp), many
// connections opened and echoed at once, and slow steady flows that must keep
// moving while the daemon is abused.
//
// Builds on e2e_util.h and swap_util.h; every wait has a deadline.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/e2e_util.h"
#include "uring/fd.h"

namespace ringfwd::e2e {

// ---- The daemon's /proc ----

// Open descriptors of `pid` (entries of /proc/PID/fd), -1 if unreadable.
int CountFds(pid_t pid);
// Open descriptors of `pid` by kind (from the /proc/PID/fd links).
struct FdKinds {
  int sockets = 0;
  int pipes = 0;
  int other = 0;
  int total() const { return sockets + pipes + other; }
  std::string ToString() const;
};
FdKinds CountFdKinds(pid_t pid);
// Waits until the descriptor count of `pid` has not changed for 300 ms (at
// most `ms`, scaled for sanitizers) and returns it: flows close
// asynchronously.
int SettledFds(pid_t pid, int ms = 3000);
// A field of /proc/PID/status ("VmRSS", "Uid", "Seccomp"): the text after
// the colon, trimmed; empty if missing.
std::string StatusField(pid_t pid, const std::string& name);
// VmRSS of `pid` in KiB, -1 if unknown.
int64_t RssKiB(pid_t pid);
// True when memory-size assertions are to be skipped: the environment sets
// RINGFWD_ASAN (ASan inflates RSS), or this is an ASan build.
bool SkipMemoryChecks();
// Clock ticks per second (for CpuTicks of swap_util.h).
int64_t TicksPerSecond();
// Reads a whole file; empty if it does not exist.
std::string ReadFileOrEmpty(const std::string& path);
// True if `path` exists.
bool FileExists(const std::string& path);

// ---- Many connections ----

// Opens `n` TCP connections from `ns` to `a`, at most `batch` connecting at
// a time; every one must complete. Returns them, or fewer and `*error` set.
std::vector<Fd> ConnectMany(const TempNetns& ns, const Addr& a, int n, int batch, Deadline deadline,
                            std::string* error);
// Starts `n` non-blocking connects from `ns` to `a` without waiting for them
// (a flood); returns the sockets, connected or not.
std::vector<Fd> StartConnects(const TempNetns& ns, const Addr& a, int n);
// Sends `message(i)` on socks[i] for every i, then reads each echo back in
// one poll loop. Returns how many came back intact; `*error` describes the
// first problem.
int EchoEach(const std::vector<Fd>& socks, const std::function<std::string(int)>& message,
             Deadline deadline, std::string* error);
// Closes `fd` with a reset (SO_LINGER 0).
void CloseWithReset(Fd fd);

// ---- Steady flows ----

// `count` connections from `ns` to an echo server at `a`, each on its own
// thread sending `chunk` bytes of its own pattern, reading them back and
// checking them, then pausing `pause_ms`; until Stop(). The pause keeps the
// daemon's CPU use low, so that its idle CPU can still be measured.
class SteadyFlows {
 public:
  SteadyFlows(const TempNetns& ns, const Addr& a, int count, size_t chunk, int pause_ms);
  ~SteadyFlows();
  void Stop();
  // Connections that connected.
  int connected() const { return connected_.load(); }
  // Bytes echoed back intact, over all flows.
  uint64_t bytes() const { return bytes_.load(); }
  // Round trips completed by the flow with the fewest.
  int64_t min_rounds() const;
  // The first error ("" if none): connect, send, receive, timeout, corruption.
  std::string error() const;
  // Waits until every flow has done `rounds` more round trips than now;
  // false on timeout or error.
  bool AdvanceAll(int64_t rounds, int timeout_ms);

 private:
  void Run(int index, const Addr& a);
  std::string ns_path_;
  size_t chunk_;
  int pause_ms_;
  std::atomic<bool> stop_{false};
  std::atomic<int> connected_{0};
  std::atomic<uint64_t> bytes_{0};
  std::unique_ptr<std::atomic<int64_t>[]> rounds_;
  int count_;
  mutable std::mutex mu_;
  std::string error_;
  std::vector<std::thread> threads_;
};

// ---- A daemon started with a wrapper ----

// ringfwd run as a child as `ip netns exec HOST WRAPPER... ringfwd ARGS...`
// (WRAPPER e.g. {"prlimit", "--nofile=256:256"}), its output in a temporary
// file. Unlike Daemon (e2e_util.h) it can wait for the "ready" line in a log
// file named by --log-file, and it reports how the child exited.
class RingfwdChild {
 public:
  // Starts it and waits until " ready" appears in its output, or in
  // `log_file` if that is not empty; nullptr and `*error` on failure.
  static std::unique_ptr<RingfwdChild> Start(const TempNetns& host,
                                             const std::vector<std::string>& wrapper,
                                             const std::vector<std::string>& args,
                                             const std::string& log_file, std::string* error);
  // Kills it (SIGKILL) if still running; prints its output on test failure.
  ~RingfwdChild();
  RingfwdChild(const RingfwdChild&) = delete;
  RingfwdChild& operator=(const RingfwdChild&) = delete;

  // Sends `sig` and waits up to `timeout_ms` for the exit; returns the exit
  // code, 128+signal, or -1 if it did not exit in time (it is then killed).
  int Signal(int sig, int timeout_ms);
  bool Running();
  pid_t pid() const { return pid_; }
  std::string Output() const { return ReadFileOrEmpty(out_path_); }

 private:
  RingfwdChild() = default;
  pid_t pid_ = -1;
  int status_ = -1;  // wait status once reaped
  std::string out_path_;
  std::string log_file_;
};

}  // namespace ringfwd::e2e
