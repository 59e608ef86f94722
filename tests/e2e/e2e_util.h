// Helpers for the end-to-end tests: throwaway network namespaces, the daemon
// as a child process, and small servers and clients with bounded waits.
//
// Every test makes its own host namespace (where ringfwd runs and clients
// connect) and target namespace (where backends listen), so tests can run in
// parallel and never touch the machine's own ports. All sockets are
// close-on-exec, so the daemon never inherits a test's sockets. Nothing here
// sleeps for a fixed time: waits poll with deadlines.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "uring/fd.h"

namespace ringfwd::e2e {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;
// A deadline `ms` milliseconds from now.
Deadline In(int ms);
// Milliseconds left until `d`, at least 0.
int MsLeft(Deadline d);
// How much slower things are expected to run under ASan (3), else 1.
int Slowdown();

// The result of running a command to completion.
struct CmdResult {
  int exit_code = -1;  // 128+signal if killed; -1 if it could not run
  bool timed_out = false;
  std::string output;  // stdout and stderr together
};
// Runs argv (no shell) and waits up to `timeout_ms`; killed after that.
CmdResult RunCmd(const std::vector<std::string>& argv, int timeout_ms = 10000);

// A socket address: IPv4 or IPv6, numeric.
struct Addr {
  sockaddr_storage ss{};
  socklen_t len = 0;

  // Parses a numeric address ("127.0.0.1", "::1"); an invalid address
  // yields len 0 and a test failure.
  static Addr Of(const std::string& ip, uint16_t port);
  static Addr FromSockaddr(const sockaddr* sa, socklen_t len);
  int family() const { return ss.ss_family; }
  uint16_t port() const;
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&ss); }
  std::string ToString() const;
  bool operator==(const Addr& o) const;
};

// A network namespace under /run/netns named rfe2e-<pid>-<counter>, with lo
// up; deleted in the destructor.
class TempNetns {
 public:
  // Creates the namespace; nullptr and `*error` set on failure.
  static std::unique_ptr<TempNetns> Create(std::string* error);
  ~TempNetns();
  TempNetns(const TempNetns&) = delete;
  TempNetns& operator=(const TempNetns&) = delete;

  const std::string& name() const { return name_; }
  std::string path() const { return "/run/netns/" + name_; }

  // Runs `ip -n NAME args...`; false and `*error` set on failure.
  bool Ip(const std::vector<std::string>& args, std::string* error) const;
  // Adds an interface `dev` (one end of a veth pair whose other end, dev+"p",
  // is also here: there is no dummy driver on every kernel), up, holding
  // `cidrs`. Addresses must be in the documentation ranges 192.0.2.0/24,
  // 198.51.100.0/24 or 2001:db8::/32; others are refused.
  bool AddLink(const std::string& dev, const std::vector<std::string>& cidrs,
               std::string* error) const;

 private:
  explicit TempNetns(std::string name) : name_(std::move(name)) {}
  std::string name_;
};

// A veth pair between two namespaces, both ends up, with documentation
// addresses as in AddLink.
bool AddVeth(const TempNetns& a, const std::string& dev_a, const std::vector<std::string>& cidrs_a,
             const TempNetns& b, const std::string& dev_b, const std::vector<std::string>& cidrs_b,
             std::string* error);

// True if `cidr` ("192.0.2.1/24", "2001:db8::1/64") is in a documentation
// range.
bool IsDocumentationAddress(const std::string& cidr);

// Runs `fn` on a thread that entered `ns` (setns CLONE_NEWNET) and waits for
// it. Sockets created there stay in that namespace. If setns fails, `fn` does
// not run and the test fails.
void RunInNs(const TempNetns& ns, const std::function<void()>& fn);

// Sockets created inside `ns`: non-blocking, close-on-exec.
Fd SocketIn(const TempNetns& ns, int family, int type);
std::vector<Fd> SocketsIn(const TempNetns& ns, int family, int type, size_t count);
// A listening TCP socket in `ns` on `a` (IPv6 sockets are v6-only); invalid
// and a test failure on error.
Fd TcpListen(const TempNetns& ns, const Addr& a);
// A UDP socket in `ns` bound to `a`.
Fd UdpBind(const TempNetns& ns, const Addr& a);

// Connects `fd` (non-blocking) to `a`, waiting until `deadline`. Returns 0 or
// the errno (ETIMEDOUT when the deadline passed).
int ConnectFd(int fd, const Addr& a, Deadline deadline);
// A TCP socket made in `ns` and connected to `a`; on failure the Fd is
// invalid and `*err` holds the errno.
Fd TcpConnect(const TempNetns& ns, const Addr& a, int* err, int timeout_ms = 3000);

// Blocking-style I/O on non-blocking sockets, bounded by a deadline. Each
// returns 0 on success or an errno (ETIMEDOUT when the deadline passed).
int SendAll(int fd, const void* data, size_t len, Deadline deadline);
int SendAll(int fd, const std::string& data, Deadline deadline);
// Reads exactly `n` bytes (EPIPE if EOF comes first).
int RecvExact(int fd, size_t n, std::string* out, Deadline deadline);
// Reads until EOF (0), an error, or the deadline; appends to `*out` at most
// `max` bytes (EMSGSIZE beyond).
int RecvToEof(int fd, std::string* out, Deadline deadline, size_t max = 64 << 20);
// Waits until `fd` is readable (or has an error/hangup).
bool WaitReadable(int fd, Deadline deadline);

// Deterministic bytes: byte i of the stream of `seed`.
class Pattern {
 public:
  explicit Pattern(uint64_t seed) : seed_(seed) {}
  void Fill(uint64_t offset, uint8_t* buf, size_t n) const;
  std::string Bytes(uint64_t offset, size_t n) const;

 private:
  uint64_t seed_;
};

// A streaming 64-bit digest; equal streams give equal digests however they
// were cut into pieces.
class Digest {
 public:
  void Update(const void* data, size_t n);
  uint64_t Value() const;
  uint64_t count() const { return count_; }

 private:
  uint64_t h_ = 0x9e3779b97f4a7c15ull;
  uint64_t carry_ = 0;
  unsigned carry_len_ = 0;
  uint64_t count_ = 0;
};
uint64_t DigestOf(const std::string& s);

// One full-duplex exchange on a connected socket: sends `send_len` bytes of
// Pattern(seed) (then shutdown(SHUT_WR) if `shut_wr`), and reads until EOF,
// digesting what comes back.
struct ExchangeResult {
  int err = 0;  // 0, or the errno that ended the exchange
  uint64_t sent = 0;
  uint64_t received = 0;
  uint64_t recv_digest = 0;
  std::string head;  // the first (up to 64) bytes received
};
ExchangeResult Exchange(int fd, uint64_t seed, uint64_t send_len, bool shut_wr, Deadline deadline);
// The digest of `len` bytes of Pattern(seed).
uint64_t PatternDigest(uint64_t seed, uint64_t len);

// A TcpServer handler for one-way transfers. The client sends a 17-byte
// header (TransferHeader): op 'U' (upload: the server reads to EOF and
// replies with 16 bytes, TransferReply(count, digest)) or 'D' (download: the
// server sends `len` bytes of Pattern(seed), then FIN).
void TransferHandler(Fd conn);
std::string TransferHeader(char op, uint64_t seed, uint64_t len);
std::string TransferReply(uint64_t count, uint64_t digest);

// Runs a stop eventfd for server loops.
class StopFlag {
 public:
  StopFlag();
  void Set();
  int fd() const { return fd_.get(); }
  bool IsSet() const { return set_.load(); }

 private:
  Fd fd_;
  std::atomic<bool> set_{false};
};

// A TCP echo server on one thread (poll loop, any number of connections).
// Sends `greeting` first on every connection, then echoes; on the client's
// half-close it flushes and shuts its own side down.
class EchoServer {
 public:
  explicit EchoServer(Fd listener, std::string greeting = "");
  ~EchoServer();
  int accepted() const { return accepted_.load(); }

 private:
  void Loop();
  Fd listener_;
  std::string greeting_;
  StopFlag stop_;
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

// A TCP server that runs `handler` on its own thread for every accepted
// connection (a non-blocking socket). Handlers must bound their own waits;
// the destructor stops accepting and joins them.
class TcpServer {
 public:
  using Handler = std::function<void(Fd conn)>;
  TcpServer(Fd listener, Handler handler);
  ~TcpServer();
  int accepted() const { return accepted_.load(); }
  // Stops accepting and closes the listening socket (joins the accept loop).
  void CloseListener();

 private:
  void Loop();
  Fd listener_;
  Handler handler_;
  StopFlag stop_;
  std::atomic<int> accepted_{0};
  std::mutex mu_;
  std::vector<std::thread> handlers_;
  std::thread thread_;
};

// A UDP server that replies `tag + payload` to every datagram, and records
// the source address of each.
class UdpEchoServer {
 public:
  UdpEchoServer(Fd sock, std::string tag);
  ~UdpEchoServer();
  std::vector<Addr> peers() const;

 private:
  void Loop();
  Fd sock_;
  std::string tag_;
  StopFlag stop_;
  mutable std::mutex mu_;
  std::vector<Addr> peers_;
  std::thread thread_;
};

// Sends `msg` from `fd` to `to` and waits for one datagram back; returns it
// and sets `*from`. Empty string and a test failure on timeout.
std::string UdpRoundTrip(int fd, const Addr& to, const std::string& msg, Addr* from,
                         int timeout_ms = 3000);

// ringfwd running as a child under `ip netns exec HOST`, its stderr in a
// temporary file.
class Daemon {
 public:
  // Starts it and waits for the "ready" line; nullptr and `*error` (with
  // the log) if it exits or does not get ready in time.
  static std::unique_ptr<Daemon> Start(const TempNetns& host, const std::vector<std::string>& args,
                                       std::string* error);
  // Stops it if still running (SIGTERM, so that a sanitizer build runs its
  // exit checks; SIGKILL after a while); fails the test if its log holds a
  // sanitizer report; prints its log on test failure.
  ~Daemon();

  // SIGTERM, then waits up to `timeout_ms` for it to exit. Returns the exit
  // code, 128+signal if it died by a signal, or -1 if it had to be killed.
  int Stop(int timeout_ms = 5000);
  // True while the child has not exited.
  bool Running();
  std::string Log() const;
  pid_t pid() const { return pid_; }

 private:
  Daemon() = default;
  pid_t pid_ = -1;
  int status_ = -1;  // exit status, once reaped
  std::string log_path_;
};

// Runs ringfwd to completion in `host` (expected to fail fast): exit code and
// stderr.
CmdResult RunRingfwd(const TempNetns& host, const std::vector<std::string>& args,
                     int timeout_ms = 5000);

// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new limit.
size_t RaiseNofile();

// Base fixture: skips unless root; makes a host and a target namespace.
class E2eTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // ringfwd in host_ with `--netns target_` prepended to `args`.
  std::unique_ptr<Daemon> StartForwarder(const std::vector<std::string>& args);
  // ringfwd in host_ with exactly `args`.
  std::unique_ptr<Daemon> StartDaemon(const std::vector<std::string>& args);

  std::unique_ptr<TempNetns> host_;
  std::unique_ptr<TempNetns> target_;
};

}  // namespace ringfwd::e2e
