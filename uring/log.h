// Logging with levels, to stderr or a file, rate-limited per call site.
//
// LOG_ERR/LOG_WARN/LOG_INFO/LOG_DEBUG take printf-style arguments (checked by
// absl::StrFormat). LOG_RATELIMITED(level, ...) prints at most a burst of
// lines per second from one call site and then a count of the suppressed
// ones, so a flood of bad packets cannot flood the log.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace ringfwd::log {

enum class Level { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

// Messages above this level are dropped. Default kInfo.
void SetLevel(Level l);
Level GetLevel();
inline bool Enabled(Level l) { return static_cast<int>(l) <= static_cast<int>(GetLevel()); }

// Sends the log to `path` (appending), or back to stderr when empty.
absl::Status SetFile(const std::string& path);
// Reopens the current log file (for SIGHUP after rotation). Safe to call from
// the main loop, not from a signal handler.
absl::Status Reopen();

// Writes one line: a timestamp, the level and the message.
void Write(Level l, std::string_view msg);

// Per call site token bucket: `burst` lines per second.
class RateLimit {
 public:
  // True if a line may be written now; counts the line as suppressed if not.
  bool Allow();
  // Lines suppressed since the last allowed one, reset by the call.
  uint64_t TakeSuppressed() { return suppressed_.exchange(0); }

 private:
  static constexpr int kBurst = 10;
  int64_t window_start_ns_ = 0;
  int count_ = 0;
  std::atomic<uint64_t> suppressed_{0};
};

}  // namespace ringfwd::log

#define RINGFWD_LOG_(level, ...)                                    \
  do {                                                              \
    if (::ringfwd::log::Enabled(level))                             \
      ::ringfwd::log::Write(level, ::absl::StrFormat(__VA_ARGS__)); \
  } while (0)

#define LOG_ERR(...) RINGFWD_LOG_(::ringfwd::log::Level::kError, __VA_ARGS__)
#define LOG_WARN(...) RINGFWD_LOG_(::ringfwd::log::Level::kWarn, __VA_ARGS__)
#define LOG_INFO(...) RINGFWD_LOG_(::ringfwd::log::Level::kInfo, __VA_ARGS__)
#define LOG_DEBUG(...) RINGFWD_LOG_(::ringfwd::log::Level::kDebug, __VA_ARGS__)

#define LOG_RATELIMITED(level, ...)                                                        \
  do {                                                                                     \
    static ::ringfwd::log::RateLimit ringfwd_rl_;                                          \
    if (::ringfwd::log::Enabled(level) && ringfwd_rl_.Allow()) {                           \
      uint64_t ringfwd_sup_ = ringfwd_rl_.TakeSuppressed();                                \
      std::string ringfwd_msg_ = ::absl::StrFormat(__VA_ARGS__);                           \
      if (ringfwd_sup_)                                                                    \
        ringfwd_msg_ += ::absl::StrFormat(" (%d similar lines suppressed)", ringfwd_sup_); \
      ::ringfwd::log::Write(level, ringfwd_msg_);                                          \
    }                                                                                      \
  } while (0)
