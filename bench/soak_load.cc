// soak_load: the traffic, the table swaps and the verdict of bench/soak.sh.
//
//   soak_load --host-ns PATH --target-ns PATH --pid PID --pesto BIN --ctl PATH
//             [--seconds N] [--base PORT] [--window S]
//
// Runs as root in any namespace; its threads enter the two namespaces (by
// their /run/netns paths). With B = --base (default 17000):
//   backends in TARGET: TCP echo on 127.0.0.1:B+1 (bulk) and B+2 (churn),
//                       UDP echo on B+3
//   backend on the host side (HOST namespace): TCP echo on 127.0.0.1:B+4
//   the daemon (started by soak.sh) forwards -t B+11:B+1, -t B+12:B+2,
//   -u B+13:B+3, -T B+14:B+4
// and for N seconds, all at once:
//   bulk    64 MiB echoed through B+11 per connection, over and over, every
//           byte compared with what was sent
//   splice  the same, 16 MiB per connection, from TARGET through B+14
//   churn   2 threads: connect to B+12, echo 1-200 bytes, close (paced)
//   udp     request/response on B+13, every reply compared (paced)
//   swaps   every second a `pesto -A` of another port, then a `pesto -D` of
//           it (B+50.. TCP, B+70.. UDP), never touching the ones in use
//   monitor every second the daemon's descriptors, VmRSS and CPU time
// Then prints a summary and exits 1 if any byte was corrupted or lost, any
// connection or request on the kept ports failed, a swap failed, the daemon
// died, or, between the first and the last window (a minute, or a quarter
// of the run when shorter), descriptors or VmRSS grew or the daemon's CPU
// time per byte rose by more than 25%.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string host_ns, target_ns, pesto, ctl;
  pid_t pid = 0;
  long seconds = 600;
  int base = 17000;
  long window = 0;  // 0: min(60, seconds / 4)
};

[[noreturn]] void Usage() {
  std::fprintf(stderr,
               "usage: soak_load --host-ns PATH --target-ns PATH --pid PID --pesto BIN --ctl PATH\n"
               "                 [--seconds N] [--base PORT] [--window S]\n");
  std::exit(2);
}

long ParseLong(const char* s, long lo, long hi) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (!*s || *end || v < lo || v > hi) Usage();
  return v;
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (i + 1 >= argc) Usage();
    const char* v = argv[++i];
    if (a == "--host-ns") {
      o.host_ns = v;
    } else if (a == "--target-ns") {
      o.target_ns = v;
    } else if (a == "--pid") {
      o.pid = static_cast<pid_t>(ParseLong(v, 1, 1 << 30));
    } else if (a == "--pesto") {
      o.pesto = v;
    } else if (a == "--ctl") {
      o.ctl = v;
    } else if (a == "--seconds") {
      o.seconds = ParseLong(v, 10, 7 * 86400);
    } else if (a == "--base") {
      o.base = static_cast<int>(ParseLong(v, 1024, 65000));
    } else if (a == "--window") {
      o.window = ParseLong(v, 1, 3600);
    } else {
      Usage();
    }
  }
  if (o.host_ns.empty() || o.target_ns.empty() || o.pesto.empty() || o.ctl.empty() || !o.pid)
    Usage();
  if (o.window == 0) o.window = std::min<long>(60, o.seconds / 4);
  return o;
}

std::atomic<bool> g_stop{false};          // the clients, swaps and monitor
std::atomic<bool> g_stop_servers{false};  // the backends, once the clients are done

// ---- Problems and counters ----

std::mutex g_mu;
std::vector<std::string> g_problems;  // the first few, for the summary
int64_t g_problem_count = 0;

void Problem(const std::string& what) {
  std::lock_guard<std::mutex> lock(g_mu);
  ++g_problem_count;
  if (g_problems.size() < 12) g_problems.push_back(what);
  if (g_problem_count <= 12) std::fprintf(stderr, "soak_load: %s\n", what.c_str());
}

struct Counters {
  std::atomic<int64_t> ok{0};
  std::atomic<int64_t> failed{0};
  std::atomic<int64_t> bytes{0};  // received back intact
};
Counters g_bulk, g_splice, g_churn, g_udp, g_swaps;
std::atomic<int64_t> g_udp_lost{0};

int64_t TotalBytes() { return g_bulk.bytes + g_splice.bytes + g_churn.bytes + g_udp.bytes; }

// ---- Sockets ----

bool EnterNs(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = setns(fd, CLONE_NEWNET) == 0;
  close(fd);
  return ok;
}

sockaddr_in Loopback(int port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sa;
}

void SetTimeouts(int fd, int seconds) {
  timeval tv{seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// A blocking TCP connection to 127.0.0.1:port (10 s timeouts); -1 and
// `*err` on failure.
int Connect(int port, int* err) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  SetTimeouts(fd, 10);
  sockaddr_in sa = Loopback(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0) {
    *err = errno;
    close(fd);
    return -1;
  }
  return fd;
}

int Listen(int type, int port) {
  int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in sa = Loopback(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0 ||
      (type == SOCK_STREAM && listen(fd, 4096) < 0)) {
    close(fd);
    return -1;
  }
  return fd;
}

// ---- Backends ----

void EchoConnection(int fd) {
  SetTimeouts(fd, 30);
  std::vector<char> buf(1 << 18);
  for (;;) {
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) break;
    size_t off = 0;
    while (off < static_cast<size_t>(n)) {
      ssize_t m = send(fd, buf.data() + off, static_cast<size_t>(n) - off, MSG_NOSIGNAL);
      if (m <= 0) {
        close(fd);
        return;
      }
      off += static_cast<size_t>(m);
    }
  }
  close(fd);
}

// A TCP echo server in namespace `ns`: a thread per connection.
void TcpEchoServer(const std::string& ns, int port, std::atomic<int>* ready) {
  if (!EnterNs(ns)) {
    Problem("setns " + ns + ": " + std::strerror(errno));
    return;
  }
  int l = Listen(SOCK_STREAM, port);
  if (l < 0) {
    Problem("TCP backend on port " + std::to_string(port) + ": " + std::strerror(errno));
    return;
  }
  ++*ready;
  while (!g_stop_servers) {
    pollfd p{l, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    int c = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    if (c >= 0) std::thread(EchoConnection, c).detach();
  }
  close(l);
}

void UdpEchoServer(const std::string& ns, int port, std::atomic<int>* ready) {
  if (!EnterNs(ns)) {
    Problem("setns " + ns + ": " + std::strerror(errno));
    return;
  }
  int s = Listen(SOCK_DGRAM, port);
  if (s < 0) {
    Problem("UDP backend on port " + std::to_string(port) + ": " + std::strerror(errno));
    return;
  }
  ++*ready;
  std::vector<char> buf(65536);
  while (!g_stop_servers) {
    pollfd p{s, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    sockaddr_storage from{};
    socklen_t len = sizeof(from);
    ssize_t n =
        recvfrom(s, buf.data(), buf.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &len);
    if (n >= 0)
      sendto(s, buf.data(), static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
  }
  close(s);
}

// ---- Bulk transfers ----

// The stream of round `seed`: byte i is kData[(i + seed * 4099) % kDataSize].
// kData holds kDataSize random bytes plus a copy of the first kMaxChunk, so
// any chunk of at most kMaxChunk bytes is contiguous in it.
constexpr size_t kDataSize = 4 << 20;
constexpr size_t kMaxChunk = 1 << 16;
std::vector<uint8_t> g_data;

void MakeData() {
  g_data.resize(kDataSize + kMaxChunk);
  std::mt19937_64 rng(0x50a450a4);
  for (size_t i = 0; i < kDataSize; i += 8) {
    uint64_t v = rng();
    std::memcpy(&g_data[i], &v, 8);
  }
  std::memcpy(&g_data[kDataSize], &g_data[0], kMaxChunk);
}

const uint8_t* StreamAt(uint64_t seed, uint64_t offset) {
  return &g_data[(offset + seed * 4099) % kDataSize];
}

// One connection: sends `len` bytes of stream `seed` while reading the echo
// back and comparing every byte. Returns "" or what went wrong.
std::string EchoRound(int port, uint64_t seed, uint64_t len, Counters* c) {
  int err = 0;
  int fd = Connect(port, &err);
  if (fd < 0) return std::string("connect: ") + std::strerror(err);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  uint64_t sent = 0, got = 0;
  std::vector<uint8_t> in(kMaxChunk);
  std::string result;
  Clock::time_point last_progress = Clock::now();
  while (got < len) {
    bool progress = false;
    if (sent < len) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(kMaxChunk, len - sent));
      ssize_t m = send(fd, StreamAt(seed, sent), n, MSG_NOSIGNAL);
      if (m > 0) {
        sent += static_cast<uint64_t>(m);
        progress = true;
        if (sent == len) shutdown(fd, SHUT_WR);
      } else if (m < 0 && errno != EAGAIN && errno != EINTR) {
        result = "send after " + std::to_string(sent) + " bytes: " + std::strerror(errno);
        break;
      }
    }
    ssize_t r = recv(fd, in.data(), in.size(), 0);
    if (r > 0) {
      if (std::memcmp(in.data(), StreamAt(seed, got), static_cast<size_t>(r)) != 0) {
        result = "corrupted bytes at offset " + std::to_string(got) + " of " + std::to_string(len);
        break;
      }
      got += static_cast<uint64_t>(r);
      c->bytes += r;
      progress = true;
    } else if (r == 0) {
      result = "EOF after " + std::to_string(got) + " of " + std::to_string(len) + " bytes";
      break;
    } else if (errno != EAGAIN && errno != EINTR) {
      result = "recv after " + std::to_string(got) + " bytes: " + std::strerror(errno);
      break;
    }
    if (progress) {
      last_progress = Clock::now();
      continue;
    }
    if (Clock::now() - last_progress > std::chrono::seconds(10)) {
      result = "stalled 10 s at " + std::to_string(got) + " of " + std::to_string(len);
      break;
    }
    pollfd p{fd, static_cast<short>(POLLIN | (sent < len ? POLLOUT : 0)), 0};
    poll(&p, 1, 100);
  }
  if (result.empty()) {
    // The echo server closes after our FIN: a clean end, nothing extra.
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    ssize_t r = recv(fd, in.data(), 1, 0);
    if (r != 0)
      result = r > 0 ? "bytes after the echo" : std::string("end: ") + std::strerror(errno);
  }
  close(fd);
  return result;
}

void BulkLoop(const std::string& ns, int port, uint64_t len, uint64_t seed0, Counters* c,
              const char* name) {
  if (!EnterNs(ns)) {
    Problem(std::string(name) + ": setns: " + std::strerror(errno));
    return;
  }
  for (uint64_t round = 0; !g_stop; ++round) {
    std::string r = EchoRound(port, seed0 + round, len, c);
    if (r.empty()) {
      ++c->ok;
    } else {
      ++c->failed;
      Problem(std::string(name) + " round " + std::to_string(round) + ": " + r);
      usleep(100000);
    }
  }
}

// ---- Churn and UDP ----

void ChurnLoop(const std::string& ns, int port, int index) {
  if (!EnterNs(ns)) {
    Problem(std::string("churn: setns: ") + std::strerror(errno));
    return;
  }
  std::mt19937 rng(static_cast<unsigned>(index));
  for (uint64_t n = 0; !g_stop; ++n) {
    usleep(2000);  // at most ~500 connections per second per thread
    size_t len = 1 + rng() % 200;
    uint64_t seed = static_cast<uint64_t>(index) << 32 | n;
    int err = 0;
    int fd = Connect(port, &err);
    std::string what;
    if (fd < 0) {
      what = std::string("connect: ") + std::strerror(err);
    } else {
      std::vector<uint8_t> back(len);
      size_t got = 0;
      if (send(fd, StreamAt(seed, 0), len, MSG_NOSIGNAL) != static_cast<ssize_t>(len)) {
        what = std::string("send: ") + std::strerror(errno);
      } else {
        while (got < len) {
          ssize_t r = recv(fd, back.data() + got, len - got, 0);
          if (r <= 0) {
            what = r == 0 ? "EOF before the echo" : std::string("recv: ") + std::strerror(errno);
            break;
          }
          got += static_cast<size_t>(r);
        }
        if (what.empty() && std::memcmp(back.data(), StreamAt(seed, 0), len) != 0)
          what = "corrupted echo";
      }
      close(fd);
    }
    if (what.empty()) {
      ++g_churn.ok;
      g_churn.bytes += static_cast<int64_t>(len);
    } else {
      ++g_churn.failed;
      Problem("churn connection " + std::to_string(n) + ": " + what);
    }
  }
}

void UdpLoop(const std::string& ns, int port) {
  if (!EnterNs(ns)) {
    Problem(std::string("udp: setns: ") + std::strerror(errno));
    return;
  }
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in to = Loopback(port);
  if (s < 0 || connect(s, reinterpret_cast<sockaddr*>(&to), sizeof(to)) < 0) {
    Problem(std::string("udp: socket: ") + std::strerror(errno));
    return;
  }
  std::vector<uint8_t> out(1500), in(2048);
  for (uint64_t seq = 0; !g_stop; ++seq) {
    usleep(1000);
    size_t len = 16 + seq % 1200;
    std::memcpy(out.data(), &seq, 8);
    std::memcpy(out.data() + 8, StreamAt(seq, 0), len - 8);
    if (send(s, out.data(), len, 0) != static_cast<ssize_t>(len)) {
      ++g_udp.failed;
      Problem(std::string("udp send: ") + std::strerror(errno));
      continue;
    }
    bool answered = false;
    for (Clock::time_point end = Clock::now() + std::chrono::seconds(1);
         !answered && Clock::now() < end;) {
      pollfd p{s, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      ssize_t r = recv(s, in.data(), in.size(), MSG_DONTWAIT);
      if (r < 0) continue;
      uint64_t echoed;
      std::memcpy(&echoed, in.data(), 8);
      if (r >= 8 && echoed < seq) continue;  // a late reply to an earlier request
      answered = true;
      if (static_cast<size_t>(r) != len || std::memcmp(in.data(), out.data(), len) != 0) {
        ++g_udp.failed;
        Problem("udp request " + std::to_string(seq) + ": corrupted reply");
      } else {
        ++g_udp.ok;
        g_udp.bytes += static_cast<int64_t>(len);
      }
    }
    if (!answered) {
      ++g_udp_lost;
      Problem("udp request " + std::to_string(seq) + ": no reply within 1 s");
    }
  }
  close(s);
}

// ---- Swaps ----

int RunPesto(const Options& o, const std::vector<std::string>& args, std::string* out) {
  std::vector<std::string> argv = {o.pesto};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(o.ctl);
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  char path[] = "/tmp/soak-pesto-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return -1;
  unlink(path);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fd, 1);
  posix_spawn_file_actions_adddup2(&fa, fd, 2);
  pid_t pid;
  int rc = posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    close(fd);
    return -1;
  }
  int status = 0;
  Clock::time_point end = Clock::now() + std::chrono::seconds(10);
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > end) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    usleep(2000);
  }
  char buf[4096];
  ssize_t n = pread(fd, buf, sizeof(buf), 0);
  if (n > 0) out->assign(buf, static_cast<size_t>(n));
  close(fd);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void SwapLoop(const Options& o) {
  // Alternately adds a port and removes it again, TCP and UDP in turn:
  // B+50..B+69 (TCP) and B+70..B+89 (UDP), never a port in use.
  for (int i = 0; !g_stop; ++i) {
    Clock::time_point next = Clock::now() + std::chrono::seconds(1);
    int k = (i / 2) % 40;
    bool add = i % 2 == 0;
    bool udp = k % 2 == 1;
    int port = o.base + 50 + k / 2 + (udp ? 20 : 0);
    std::string out;
    int rc = RunPesto(o, {add ? "-A" : "-D", udp ? "-u" : "-t", std::to_string(port)}, &out);
    if (rc == 0) {
      ++g_swaps.ok;
    } else {
      ++g_swaps.failed;
      Problem("swap " + std::to_string(i) + " (" + (add ? "add " : "delete ") +
              (udp ? "UDP " : "TCP ") + std::to_string(port) + "): pesto exit " +
              std::to_string(rc) + ": " + out);
    }
    while (!g_stop && Clock::now() < next) usleep(20000);
  }
}

// ---- Monitor ----

struct Sample {
  double t = 0;  // seconds since the start
  int fds = 0;
  int64_t rss_kib = 0;
  int64_t cpu_ticks = 0;
  int64_t bytes = 0;
  bool alive = true;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

Sample Take(pid_t pid, Clock::time_point start) {
  Sample s;
  s.t = std::chrono::duration<double>(Clock::now() - start).count();
  s.bytes = TotalBytes();
  std::string dir = "/proc/" + std::to_string(pid);
  std::string stat = ReadFile(dir + "/stat");
  size_t paren = stat.rfind(')');
  if (stat.empty() || paren == std::string::npos || paren + 2 >= stat.size() ||
      stat[paren + 2] == 'Z') {
    s.alive = false;
    return s;
  }
  // Fields after the command: state is field 3, utime 14, stime 15.
  const char* p = stat.c_str() + paren + 2;
  int64_t utime = 0, stime = 0;
  for (int field = 3; field <= 15 && *p; ++field) {
    if (field == 14) utime = std::atoll(p);
    if (field == 15) stime = std::atoll(p);
    p = std::strchr(p, ' ');
    if (!p) break;
    ++p;
  }
  s.cpu_ticks = utime + stime;
  std::string status = ReadFile(dir + "/status");
  size_t at = status.find("VmRSS:");
  if (at != std::string::npos) s.rss_kib = std::atoll(status.c_str() + at + 6);
  if (DIR* d = opendir((dir + "/fd").c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++s.fds;
    closedir(d);
  }
  return s;
}

// The samples with `from` <= t < `to`.
std::vector<Sample> Window(const std::vector<Sample>& all, double from, double to) {
  std::vector<Sample> out;
  for (const Sample& s : all)
    if (s.t >= from && s.t < to) out.push_back(s);
  return out;
}

struct WindowStats {
  int max_fds = 0;
  int64_t max_rss = 0;
  double seconds = 0;
  double cpu_s = 0;
  double mib = 0;
  double cpu_us_per_mib() const { return mib > 0 ? cpu_s * 1e6 / mib : 0; }
};

WindowStats Summarize(const std::vector<Sample>& w) {
  WindowStats st;
  if (w.size() < 2) return st;
  for (const Sample& s : w) {
    st.max_fds = std::max(st.max_fds, s.fds);
    st.max_rss = std::max(st.max_rss, s.rss_kib);
  }
  st.seconds = w.back().t - w.front().t;
  st.cpu_s = static_cast<double>(w.back().cpu_ticks - w.front().cpu_ticks) / sysconf(_SC_CLK_TCK);
  st.mib = static_cast<double>(w.back().bytes - w.front().bytes) / (1 << 20);
  return st;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = Parse(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  // A watchdog: whatever happens, the tool ends.
  alarm(static_cast<unsigned>(o.seconds + 120));
  MakeData();
  const int b = o.base;

  std::atomic<int> ready{0};
  std::vector<std::thread> servers;
  servers.emplace_back(TcpEchoServer, o.target_ns, b + 1, &ready);
  servers.emplace_back(TcpEchoServer, o.target_ns, b + 2, &ready);
  servers.emplace_back(UdpEchoServer, o.target_ns, b + 3, &ready);
  servers.emplace_back(TcpEchoServer, o.host_ns, b + 4, &ready);
  for (int i = 0; i < 500 && ready < 4; ++i) usleep(10000);
  if (ready < 4) {
    g_stop_servers = true;
    for (std::thread& t : servers) t.join();
    std::fprintf(stderr, "soak_load: backends did not start\n");
    return 1;
  }

  Clock::time_point start = Clock::now();
  std::vector<Sample> samples;
  samples.push_back(Take(o.pid, start));
  std::vector<std::thread> load;
  load.emplace_back(BulkLoop, o.host_ns, b + 11, uint64_t{64} << 20, 1, &g_bulk, "bulk");
  load.emplace_back(BulkLoop, o.target_ns, b + 14, uint64_t{16} << 20, 1000000, &g_splice,
                    "splice");
  load.emplace_back(ChurnLoop, o.host_ns, b + 12, 1);
  load.emplace_back(ChurnLoop, o.host_ns, b + 12, 2);
  load.emplace_back(UdpLoop, o.host_ns, b + 13);
  load.emplace_back(SwapLoop, std::cref(o));

  bool died = false;
  int last_report = 0;
  while (!died) {
    Clock::time_point next = start + std::chrono::seconds(samples.size());
    std::this_thread::sleep_until(next);
    Sample s = Take(o.pid, start);
    samples.push_back(s);
    if (!s.alive) {
      died = true;
      Problem("the daemon (pid " + std::to_string(o.pid) + ") is gone");
    }
    if (s.t >= o.seconds) break;
    if (static_cast<int>(s.t) / 30 != last_report) {
      last_report = static_cast<int>(s.t) / 30;
      std::printf(
          "[%4.0f s] bulk %lld, splice %lld, churn %lld, udp %lld ok; %lld MiB; "
          "fds %d, VmRSS %lld KiB; problems %lld\n",
          s.t, static_cast<long long>(g_bulk.ok.load()), static_cast<long long>(g_splice.ok.load()),
          static_cast<long long>(g_churn.ok.load()), static_cast<long long>(g_udp.ok.load()),
          static_cast<long long>(s.bytes >> 20), s.fds, static_cast<long long>(s.rss_kib),
          static_cast<long long>(g_problem_count));
      std::fflush(stdout);
    }
  }
  g_stop = true;
  for (std::thread& t : load) t.join();
  g_stop_servers = true;
  for (std::thread& t : servers) t.join();

  // ---- Verdict ----
  const double total = samples.back().t;
  const double w = static_cast<double>(o.window);
  // The first window starts after 5 s of warm-up (pools filling, buffers
  // growing); the last one ends with the run.
  WindowStats first = Summarize(Window(samples, 5, 5 + w + 0.5));
  WindowStats last = Summarize(Window(samples, total - w - 0.5, total + 1));
  std::vector<std::string> fails;
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) fails.push_back(what);
  };
  auto line = [](const char* name, const Counters& c, const char* unit) {
    std::printf("  %-8s %10lld %-12s %6lld failed  %10.1f MiB verified\n", name,
                static_cast<long long>(c.ok.load()), unit, static_cast<long long>(c.failed.load()),
                static_cast<double>(c.bytes.load()) / (1 << 20));
  };
  std::printf("\nsoak summary: %.0f s, windows of %.0f s (first from 5 s, last to the end)\n",
              total, w);
  line("bulk", g_bulk, "x 64 MiB");
  line("splice", g_splice, "x 16 MiB");
  line("churn", g_churn, "connections");
  line("udp", g_udp, "requests");
  std::printf("  %-8s %10lld %-12s %6lld failed\n", "swaps",
              static_cast<long long>(g_swaps.ok.load()), "applied",
              static_cast<long long>(g_swaps.failed.load()));
  std::printf("  udp requests without a reply: %lld\n", static_cast<long long>(g_udp_lost.load()));
  std::printf("  daemon        first window   last window\n");
  std::printf("  max fds       %12d   %11d\n", first.max_fds, last.max_fds);
  std::printf("  max VmRSS KiB %12lld   %11lld\n", static_cast<long long>(first.max_rss),
              static_cast<long long>(last.max_rss));
  std::printf("  MiB moved     %12.0f   %11.0f\n", first.mib, last.mib);
  std::printf("  CPU s         %12.2f   %11.2f\n", first.cpu_s, last.cpu_s);
  std::printf("  CPU us/MiB    %12.1f   %11.1f\n", first.cpu_us_per_mib(), last.cpu_us_per_mib());

  check(!died, "the daemon died");
  check(g_bulk.ok > 0 && g_splice.ok > 0 && g_churn.ok > 0 && g_udp.ok > 0 && g_swaps.ok > 0,
        "some traffic never completed once");
  check(g_bulk.failed == 0 && g_splice.failed == 0, "bulk transfers failed or were corrupted");
  check(g_churn.failed == 0, "churn connections on a kept port failed");
  check(g_udp.failed == 0 && g_udp_lost == 0, "UDP requests lost or corrupted");
  check(g_swaps.failed == 0, "table swaps failed");
  if (first.seconds > 0 && last.seconds > 0) {
    // Slack: the namespace thread's socket pools (TCP and UDP) each hold 32
    // to 64 sockets, and idle pipes are pooled.
    check(last.max_fds <= first.max_fds + 64, "descriptors grew (" + std::to_string(first.max_fds) +
                                                  " -> " + std::to_string(last.max_fds) + ")");
    check(last.max_rss <= first.max_rss + std::max<int64_t>(4096, first.max_rss / 10),
          "VmRSS grew (" + std::to_string(first.max_rss) + " -> " + std::to_string(last.max_rss) +
              " KiB)");
    check(first.mib > 0 && last.mib > 0, "no bytes moved in a window");
    check(last.cpu_us_per_mib() <= 1.25 * first.cpu_us_per_mib(),
          "CPU time per byte rose by more than 25%");
  } else {
    fails.push_back("too few samples for the windows");
  }
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_problem_count > 0) {
      std::printf("  problems: %lld, the first ones:\n", static_cast<long long>(g_problem_count));
      for (const std::string& p : g_problems) std::printf("    %s\n", p.c_str());
    }
  }
  if (fails.empty()) {
    std::printf("PASS\n");
    return 0;
  }
  for (const std::string& f : fails) std::printf("FAIL: %s\n", f.c_str());
  return 1;
}
