// Helpers for the table-swap and control-socket end-to-end tests
// (swap_test.cc, control_test.cc): a raw pesto client built on the codec of
// ctl/wire.h, the pesto binary, listener identity from /proc, and traffic
// that runs while tables change (a connect storm, a ping-pong RTT probe).
//
// Builds on e2e_util.h (namespaces, the daemon, echo servers); every wait
// has a deadline.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ctl/wire.h"
#include "fwd/rule.h"
#include "tests/e2e/e2e_util.h"
#include "uring/fd.h"

namespace ringfwd::e2e {

// A directory under /tmp, mode 0755 (so that other uids can reach a socket
// in it), for control sockets; removed with its contents in the destructor.
class SocketDir {
 public:
  SocketDir();
  ~SocketDir();
  SocketDir(const SocketDir&) = delete;
  SocketDir& operator=(const SocketDir&) = delete;
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

// Waits until `pred` holds, polling every millisecond, up to `ms` (scaled
// for sanitizers). Returns whether it held.
template <typename Pred>
bool WaitUntil(Pred pred, int ms) {
  Deadline d = In(ms * Slowdown());
  while (!pred()) {
    if (Clock::now() >= d) return false;
    usleep(1000);
  }
  return true;
}

// Runs `pesto ARGS... PATH` (the built binary) to completion.
CmdResult RunPesto(const std::vector<std::string>& args, const std::string& path,
                   int timeout_ms = 10000);

// A UNIX stream socket (non-blocking, close-on-exec) connected to `path`;
// invalid and `*err` set on failure.
Fd UnixConnect(const std::string& path, int* err);

// What a raw client read on connecting: the hello and the listing.
struct Listing {
  std::string error;  // empty on success
  wire::Bytes bytes;  // exactly the hello and the listing as sent
  TableSet tables;
  bool ok() const { return error.empty(); }
};
// Reads the hello and the listing from a fresh connection.
Listing ReadListing(int fd, Deadline deadline);

// A control connection that has read its listing (fd invalid on failure).
struct ControlConn {
  Fd fd;
  Listing listing;
};
ControlConn OpenControl(const std::string& path, int timeout_ms = 3000);
// Connects, reads the listing, closes without sending (a read-only client).
Listing ListControl(const std::string& path, int timeout_ms = 3000);

// What the server sent after the listing, up to its close.
struct Reply {
  int err = 0;        // 0, or the errno that ended sending or reading
  wire::Bytes bytes;  // everything received after the listing
  bool has_status = false;
  wire::StatusReply status;  // when has_status
  std::string decode_error;  // when bytes came but did not decode as a status
};
// Sends `update` on a connection that has read its listing, half-closes if
// `shut_wr`, and reads to EOF.
Reply SendAndRead(int fd, const wire::Bytes& update, bool shut_wr, Deadline deadline);
// Connects, reads the listing (into *listing if set), sends `update`, reads
// the reply.
Reply Transact(const std::string& path, const wire::Bytes& update, int timeout_ms = 5000,
               Listing* listing = nullptr);

// A transactional update (client magic, blocks, u8 0).
wire::Bytes TxnUpdate(const std::vector<wire::UpdateBlock>& blocks);
// A transactional update sending every table of `set`.
wire::Bytes TxnUpdateOf(const TableSet& set);

// A rule. `addr` "" means any address, dual-stack (:: with DUAL_STACK_ANY);
// else a numeric address ("127.0.0.1", "::"). `target` "" is the default.
Rule MakeRule(uint8_t proto, const std::string& addr, uint16_t first, uint16_t last, uint16_t to,
              uint8_t flags = 0, const std::string& target = "", const std::string& ifname = "");

// The rules of `pif` in `set` (empty if there is no such table).
std::vector<Rule> RulesOf(const TableSet& set, PifId pif);
// One line per rule, for messages.
std::string TablesText(const TableSet& set);

// Connects from `ns` to `a`, sends one byte, waits for it to come back.
// Returns 0, or the errno: ECONNREFUSED, ECONNRESET, EPIPE (EOF before the
// echo), EPROTO (another byte came back), ETIMEDOUT...
int EchoByte(const TempNetns& ns, const Addr& a, int timeout_ms = 3000);

// The inode of the TCP socket of `family` listening on `port` in `ns` (as
// `ss -ltne` shows it, from sock_diag), or 0 if there is none. A dual-stack
// listener is AF_INET6.
uint64_t ListenerInode(const TempNetns& ns, int family, uint16_t port);
// How many TCP sockets listen in `ns` on ports first..last (both families).
int CountListeners(const TempNetns& ns, uint16_t first, uint16_t last);

// An echo server (EchoServer) listening in `ns` on ip:port.
std::unique_ptr<EchoServer> StartEcho(const TempNetns& ns, const std::string& ip, uint16_t port,
                                      const std::string& greeting = "");

// Connections that each connect, echo one byte, and close, on `threads`
// threads, from `ns` to the addresses given (round robin), until Stop(), at
// most `max_per_thread` connections per thread.
class ConnectStorm {
 public:
  struct Stats {
    int64_t ok = 0;
    int64_t refused = 0;               // ECONNREFUSED on connect
    int64_t reset = 0;                 // ECONNRESET anywhere
    int64_t failed = 0;                // anything else: EOF before the echo, timeouts...
    std::vector<std::string> samples;  // the first few failures, described
    int64_t failures() const { return refused + reset + failed; }
  };
  // Each thread pauses `pause_us` between connections (0: none).
  ConnectStorm(const TempNetns& ns, std::vector<Addr> targets, int threads, int max_per_thread,
               int pause_us = 500);
  ~ConnectStorm();
  // Stops the threads and waits for them.
  void Stop();
  int64_t ok() const { return ok_.load(); }
  Stats stats() const;

 private:
  void Run(int index);
  std::vector<Addr> targets_;
  int max_per_thread_;
  int pause_us_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> ok_{0};
  mutable std::mutex mu_;
  Stats stats_;
  std::vector<std::thread> threads_;
  std::string ns_path_;
};

// One connection from `ns` to `a` carrying a 1-byte ping-pong, timed, until
// Stop(); records the worst round trip.
class Pinger {
 public:
  Pinger(const TempNetns& ns, const Addr& a);
  ~Pinger();
  void Stop();
  // Starts a new measurement window (worst and count from now on).
  void ResetWorst();
  int64_t worst_us() const { return worst_us_.load(); }
  int64_t count() const { return count_.load(); }
  int err() const { return err_.load(); }  // first error, 0 if none
  // Round trips above `kStallUs`, as "HH:MM:SS.mmm 12345us" (wall clock of
  // the start, to match the daemon's log), the first 20.
  static constexpr int64_t kStallUs = 5000;
  std::vector<std::string> stalls() const;

 private:
  void Run();
  Fd fd_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> worst_us_{0};
  std::atomic<int64_t> count_{0};
  std::atomic<int> err_{0};
  mutable std::mutex mu_;
  std::vector<std::string> stalls_;
  std::thread thread_;
};

// CPU time (user + system) that process `pid` has used, in clock ticks.
int64_t CpuTicks(pid_t pid);

}  // namespace ringfwd::e2e
