#include "uring/log.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>

#include "uring/status.h"

namespace ringfwd::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::mutex g_mu;
int g_fd = STDERR_FILENO;  // guarded by g_mu; owned when != STDERR_FILENO
std::string g_path;        // guarded by g_mu

const char* LevelName(Level l) {
  switch (l) {
    case Level::kError:
      return "error";
    case Level::kWarn:
      return "warning";
    case Level::kInfo:
      return "info";
    case Level::kDebug:
      return "debug";
  }
  return "?";
}

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

}  // namespace

void SetLevel(Level l) { g_level = static_cast<int>(l); }
Level GetLevel() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }

absl::Status SetFile(const std::string& path) {
  int fd = STDERR_FILENO;
  if (!path.empty()) {
    fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) return ErrnoError(errno, "open log file " + path);
  }
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_fd != STDERR_FILENO) close(g_fd);
  g_fd = fd;
  g_path = path;
  return absl::OkStatus();
}

absl::Status Reopen() {
  std::string path;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    path = g_path;
  }
  if (path.empty()) return absl::OkStatus();
  return SetFile(path);
}

void Write(Level l, std::string_view msg) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  std::string line =
      absl::StrFormat("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ ringfwd %s: %s\n", t.tm_year + 1900,
                      t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                      static_cast<int>(ts.tv_nsec / 1000000), LevelName(l), msg);
  std::lock_guard<std::mutex> lock(g_mu);
  // One write per line keeps lines whole; a short write to a full pipe is
  // not retried (logging must never stall forwarding).
  ssize_t ignored = ::write(g_fd, line.data(), line.size());
  (void)ignored;
}

bool RateLimit::Allow() {
  int64_t now = NowNs();
  if (now - window_start_ns_ > 1000000000LL) {
    window_start_ns_ = now;
    count_ = 0;
  }
  if (count_ < kBurst) {
    count_++;
    return true;
  }
  suppressed_++;
  return false;
}

}  // namespace ringfwd::log
