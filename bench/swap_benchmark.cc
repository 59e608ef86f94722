// Latency of live table swaps through the control socket (PROTOCOL.md
// sections 4-6), measured on the client side: from the first byte of a
// transactional update to the status read back, with an in-process
// Forwarder (loop on a background thread, no namespace) and a ctl::Server on
// a temporary socket.
//
//   BM_KeepAll/N      N HOST rules (1 to 4 ports each on 127.0.0.1), every
//                     update re-points every rule to other target ports: every
//                     listener is kept, none opened or closed.
//   BM_NoChange/N     the same N rules sent back unchanged.
//   BM_AddPorts/P     one rule 127.0.0.1:20000-(20000+P-1) => 30000-... added
//                     beside the ping rule (P listeners bound and armed).
//   BM_RemovePorts/P  the reverse: back to the ping rule alone.
//   BM_PingIdle       the ping-pong below with no swap, as the baseline.
//
// The second argument of Add/RemovePorts (ping) runs, during each timed swap,
// a 1-byte ping-pong on a persistent connection through a kept port (the
// ping rule, to a small echo server thread) and reports the worst round trip
// as max_rtt_us: how long the swap stalls the data plane. The ping window
// runs until the server has finalized the swap (old listeners closed), so it
// covers what happens after the status too; done_p50_ms/done_max_ms are the
// times from the first byte to that point.
//
// Only the swap is timed (UseManualTime): connecting and reading the listing,
// and the untimed swaps that put the forwarder back into the starting state,
// are not counted. Time is the mean; p50_* and max_* counters give the median
// and the worst swap of the run.
//
// The ports used (127.0.0.1 only): 10000-12039 and 19999 listening, 20000-29999
// for the added range; 30000-42039 as targets nobody connects to.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "ctl/client.h"
#include "ctl/server.h"
#include "ctl/wire.h"
#include "fwd/forwarder.h"
#include "fwd/rule.h"
#include "uring/log.h"

namespace ringfwd {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint16_t kPingPort = 19999;     // the kept port the ping goes through
constexpr uint16_t kRulesBase = 10000;    // keep-all rules: 10000-12039
constexpr uint16_t kRulesTarget = 40000;  // their (unused) targets
constexpr uint16_t kBulkFirst = 20000;    // added ranges: 20000-...
constexpr uint16_t kBulkTarget = 30000;   // their (unused) targets: 30000-...

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
int64_t Nanos(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

// A TCP rule on 127.0.0.1 to 127.0.0.1 (an explicit target: never itself).
Rule TcpRule(uint16_t first, uint16_t last, uint16_t to) {
  Rule r;
  r.proto = kProtoTcp;
  r.addr = Addr6::Loopback4();
  r.target = Addr6::Loopback4();
  r.first = first;
  r.last = last;
  r.to = to;
  return r;
}

// A 127.0.0.1 socket: listening on an ephemeral port, or connected to `port`.
int Loopback4Socket(uint16_t connect_port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(connect_port);
  int ret = connect_port ? connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa))
                         : bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  if (ret < 0 || (!connect_port && listen(fd, 64) < 0)) {
    close(fd);
    return -1;
  }
  return fd;
}

// Echoes every byte on every connection until stopped.
class EchoServer {
 public:
  ~EchoServer() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    for (int fd : conns_) close(fd);
    if (listen_ >= 0) close(listen_);
  }
  // Starts the thread; returns the port, or 0 on failure.
  uint16_t Start() {
    listen_ = Loopback4Socket(0);
    if (listen_ < 0) return 0;
    sockaddr_in sa{};
    socklen_t len = sizeof(sa);
    if (getsockname(listen_, reinterpret_cast<sockaddr*>(&sa), &len) < 0) return 0;
    thread_ = std::thread([this] { Main(); });
    return ntohs(sa.sin_port);
  }

 private:
  void Main() {
    while (!stop_.load()) {
      std::vector<pollfd> p{{listen_, POLLIN, 0}};
      for (int fd : conns_) p.push_back({fd, POLLIN, 0});
      if (poll(p.data(), p.size(), 50) <= 0) continue;
      if (p[0].revents & POLLIN) {
        int c = accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          int one = 1;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
          conns_.push_back(c);
        }
      }
      for (size_t i = 1; i < p.size(); i++) {
        if (!p[i].revents) continue;
        char buf[4096];
        ssize_t n = recv(p[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN) continue;
        if (n <= 0 || send(p[i].fd, buf, n, MSG_NOSIGNAL) != n) {
          close(p[i].fd);
          conns_.erase(std::find(conns_.begin(), conns_.end(), p[i].fd));
        }
      }
    }
  }

  int listen_ = -1;
  std::vector<int> conns_;  // only touched by the thread, then the destructor
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// 1-byte ping-pong through the forwarder, back to back while enabled,
// recording the worst round trip since the last Reset().
class Pinger {
 public:
  ~Pinger() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) close(fd_);
  }
  // Connects to `port` and checks one round trip; then starts the thread.
  absl::Status Start(uint16_t port) {
    port_ = port;
    if (!Connect()) return absl::UnavailableError(absl::StrCat("ping connect to ", port));
    if (RoundTrip() < 0) return absl::UnavailableError("no echo through the forwarder");
    thread_ = std::thread([this] { Main(); });
    return absl::OkStatus();
  }
  void Enable(bool on) { enabled_.store(on); }
  void Reset() {
    max_ns_.store(0);
    sum_ns_.store(0);
    count_.store(0);
  }
  int64_t max_ns() const { return max_ns_.load(); }
  int64_t count() const { return count_.load(); }
  int64_t sum_ns() const { return sum_ns_.load(); }
  int64_t errors() const { return errors_.load(); }

 private:
  bool Connect() {
    fd_ = Loopback4Socket(port_);
    if (fd_ < 0) return false;
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    timeval tv{2, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return true;
  }
  // One round trip in nanoseconds, -1 on failure.
  int64_t RoundTrip() {
    char c = 'p';
    auto t0 = Clock::now();
    if (send(fd_, &c, 1, MSG_NOSIGNAL) != 1 || recv(fd_, &c, 1, 0) != 1) return -1;
    return Nanos(Clock::now() - t0);
  }
  void Main() {
    while (!stop_.load()) {
      if (!enabled_.load()) {
        usleep(1000);
        continue;
      }
      if (fd_ < 0 && !Connect()) {
        errors_++;
        usleep(10000);
        continue;
      }
      int64_t rtt = RoundTrip();
      if (rtt < 0) {
        errors_++;
        close(fd_);
        fd_ = -1;
        continue;
      }
      int64_t cur = max_ns_.load();
      while (rtt > cur && !max_ns_.compare_exchange_weak(cur, rtt)) {
      }
      sum_ns_ += rtt;
      count_++;
    }
  }

  uint16_t port_ = 0;
  int fd_ = -1;
  std::atomic<bool> stop_{false}, enabled_{false};
  std::atomic<int64_t> max_ns_{0}, sum_ns_{0}, count_{0}, errors_{0};
  std::thread thread_;
};

// The forwarder, its loop thread, the control server, the echo server and
// the pinger, shared by every benchmark of the process.
class Env {
 public:
  static absl::StatusOr<Env*> Get() {
    static absl::StatusOr<std::unique_ptr<Env>> env = Create();
    if (!env.ok()) return env.status();
    return env->get();
  }

  ~Env() {
    pinger_.reset();
    server_.reset();
    if (loop_.joinable()) {
      fwd_->Stop();
      loop_.join();
    }
    fwd_.reset();
    echo_.reset();
    if (!dir_.empty()) rmdir(dir_.c_str());
  }

  // HOST tables holding `rules`.
  TableSet With(std::vector<Rule> rules) const {
    TableSet set = fwd_->EmptyTables();
    set.Find(PifId::kHost)->rules = std::move(rules);
    return set;
  }
  Rule PingRule() const { return TcpRule(kPingPort, kPingPort, echo_port_); }

  // Sends `set` as a transactional update on a fresh connection; `seconds`
  // gets the time from the first byte of the update to the status.
  absl::StatusOr<wire::StatusReply> Swap(const TableSet& set, double* seconds) {
    absl::StatusOr<ctl::Client> c = ctl::Client::Connect(path_);
    if (!c.ok()) return c.status();
    auto t0 = Clock::now();
    absl::StatusOr<wire::StatusReply> r = c->SendTransactional(set);
    *seconds = Seconds(Clock::now() - t0);
    if (!r.ok()) return r.status();
    if (r->code != wire::StatusCode::kApplied)
      return absl::InternalError(absl::StrCat("swap not applied: ", r->message));
    current_ = set;
    return r;
  }
  // Untimed: makes `set` the active tables if it is not already.
  absl::Status Install(const TableSet& set) {
    if (set == current_) return absl::OkStatus();
    double ignored;
    return Swap(set, &ignored).status();
  }
  // Returns once the server has finished the previous transaction (its
  // Finalize included): it serves one connection at a time.
  absl::Status Barrier() {
    absl::StatusOr<ctl::Client> c = ctl::Client::Connect(path_);
    return c.status();
  }
  size_t Listeners() {
    size_t n = 0;
    fwd_->RunOnLoop([&] { n = fwd_->listener_count(); });
    return n;
  }
  Pinger& pinger() { return *pinger_; }
  Forwarder& fwd() { return *fwd_; }

 private:
  static absl::StatusOr<std::unique_ptr<Env>> Create() {
    log::SetLevel(log::Level::kWarn);  // no line per transaction
    size_t limit = RaiseFdLimit();
    if (limit < 12000)
      return absl::ResourceExhaustedError(
          absl::StrCat("open-file limit ", limit, ": 10000 listeners need about 12000"));
    std::unique_ptr<Env> e(new Env);
    char tmpl[] = "/tmp/swapbench.XXXXXX";
    if (!mkdtemp(tmpl)) return absl::InternalError("mkdtemp");
    e->dir_ = tmpl;
    e->path_ = e->dir_ + "/ctl.sock";

    e->echo_ = std::make_unique<EchoServer>();
    e->echo_port_ = e->echo_->Start();
    if (!e->echo_port_) return absl::InternalError("echo server");

    absl::StatusOr<std::unique_ptr<Forwarder>> f = Forwarder::Create(ForwarderOptions{});
    if (!f.ok()) return f.status();
    e->fwd_ = std::move(*f);
    e->current_ = e->With({e->PingRule()});
    absl::Status st = e->fwd_->Start(e->current_);
    if (!st.ok()) return st;
    e->loop_ = std::thread([p = e->fwd_.get()] {
      absl::Status s = p->Run();
      if (!s.ok()) std::fprintf(stderr, "forwarder loop: %s\n", s.ToString().c_str());
    });
    absl::StatusOr<std::unique_ptr<ctl::Server>> s =
        ctl::Server::Start(e->fwd_.get(), ctl::ServerOptions{e->path_, {}, 10000});
    if (!s.ok()) return s.status();
    e->server_ = std::move(*s);

    e->pinger_ = std::make_unique<Pinger>();
    st = e->pinger_->Start(kPingPort);
    if (!st.ok()) return st;
    return e;
  }
  Env() = default;

  std::string dir_, path_;
  std::unique_ptr<EchoServer> echo_;
  uint16_t echo_port_ = 0;
  std::unique_ptr<Forwarder> fwd_;
  std::thread loop_;
  std::unique_ptr<ctl::Server> server_;
  std::unique_ptr<Pinger> pinger_;
  TableSet current_;  // what the forwarder runs, as far as we know
};

// `n` rules, rule i on 127.0.0.1 ports 10000+8i .. +(i%4) (1 to 4 ports);
// `variant` shifts every target port, so variant 0 and 1 have the same
// listener keys and different targets.
std::vector<Rule> KeepAllRules(int n, int variant) {
  std::vector<Rule> rules;
  for (int i = 0; i < n; i++) {
    uint16_t first = static_cast<uint16_t>(kRulesBase + 8 * i);
    rules.push_back(TcpRule(first, static_cast<uint16_t>(first + i % 4),
                            static_cast<uint16_t>(kRulesTarget + 8 * i + 4 * variant)));
  }
  return rules;
}

// Swap times of one benchmark run, reported as median and worst (the mean is
// the benchmark's Time column; on a shared machine the median is steadier).
class Samples {
 public:
  void Add(double seconds) { s_.push_back(seconds); }
  // Sets <prefix>p50_<unit> and <prefix>max_<unit>; `scale` converts seconds.
  void Report(benchmark::State& state, const std::string& prefix, const char* unit, double scale) {
    if (s_.empty()) return;
    std::sort(s_.begin(), s_.end());
    state.counters[prefix + "p50_" + unit] = s_[s_.size() / 2] * scale;
    state.counters[prefix + "max_" + unit] = s_.back() * scale;
  }

 private:
  std::vector<double> s_;
};

Env* EnvOrSkip(benchmark::State& state) {
  absl::StatusOr<Env*> env = Env::Get();
  if (!env.ok()) {
    state.SkipWithError(std::string(env.status().message()).c_str());
    return nullptr;
  }
  (*env)->pinger().Enable(false);
  return *env;
}

void Fail(benchmark::State& state, const absl::Status& st) {
  state.SkipWithError(std::string(st.message()).c_str());
}

// Every listener kept, every target changed.
void BM_KeepAll(benchmark::State& state) {
  Env* env = EnvOrSkip(state);
  if (!env) return;
  int n = static_cast<int>(state.range(0));
  TableSet sets[2] = {env->With(KeepAllRules(n, 0)), env->With(KeepAllRules(n, 1))};
  if (absl::Status st = env->Install(sets[0]); !st.ok()) return Fail(state, st);
  size_t listeners = env->Listeners();
  Samples samples;
  int next = 1;
  for (auto _ : state) {
    double s = 0;
    absl::StatusOr<wire::StatusReply> r = env->Swap(sets[next], &s);
    if (!r.ok()) return Fail(state, r.status());
    if (!absl::StartsWith(r->message, "applied: 0 ports opened"))
      return Fail(state, absl::InternalError(absl::StrCat("not a keep-all swap: ", r->message)));
    state.SetIterationTime(s);
    samples.Add(s);
    next ^= 1;
  }
  state.counters["listeners"] = static_cast<double>(listeners);
  samples.Report(state, "", "us", 1e6);
}
BENCHMARK(BM_KeepAll)->Arg(1)->Arg(16)->Arg(255)->UseManualTime()->Unit(benchmark::kMicrosecond);

// The active tables sent back as they are.
void BM_NoChange(benchmark::State& state) {
  Env* env = EnvOrSkip(state);
  if (!env) return;
  TableSet set = env->With(KeepAllRules(static_cast<int>(state.range(0)), 0));
  if (absl::Status st = env->Install(set); !st.ok()) return Fail(state, st);
  size_t listeners = env->Listeners();
  Samples samples;
  for (auto _ : state) {
    double s = 0;
    absl::StatusOr<wire::StatusReply> r = env->Swap(set, &s);
    if (!r.ok()) return Fail(state, r.status());
    state.SetIterationTime(s);
    samples.Add(s);
  }
  state.counters["listeners"] = static_cast<double>(listeners);
  samples.Report(state, "", "us", 1e6);
}
BENCHMARK(BM_NoChange)->Arg(1)->Arg(16)->Arg(255)->UseManualTime()->Unit(benchmark::kMicrosecond);

// Adds (add=true) or removes one rule of `ports` ports beside the ping rule,
// timing that swap; the other direction is the untimed setup.
void BulkSwap(benchmark::State& state, bool add) {
  Env* env = EnvOrSkip(state);
  if (!env) return;
  uint16_t ports = static_cast<uint16_t>(state.range(0));
  bool ping = state.range(1) != 0;
  env->fwd().set_bind_threads(static_cast<size_t>(state.range(2)));
  Rule bulk = TcpRule(kBulkFirst, static_cast<uint16_t>(kBulkFirst + ports - 1), kBulkTarget);
  TableSet small = env->With({env->PingRule()});
  TableSet big = env->With({env->PingRule(), bulk});
  const TableSet& from = add ? small : big;
  const TableSet& to = add ? big : small;
  Pinger& pinger = env->pinger();
  int64_t worst_rtt_ns = 0, pings = 0, rtt_sum_ns = 0;
  Samples swap, done;
  bool checked = false;
  for (auto _ : state) {
    if (absl::Status st = env->Install(from); !st.ok()) return Fail(state, st);
    if (absl::Status st = env->Barrier(); !st.ok()) return Fail(state, st);
    if (ping) {
      pinger.Reset();
      pinger.Enable(true);
    }
    auto t0 = Clock::now();
    double s = 0;
    absl::StatusOr<wire::StatusReply> r = env->Swap(to, &s);
    absl::Status barrier = env->Barrier();  // the old listeners are closed
    double done_s = Seconds(Clock::now() - t0);
    pinger.Enable(false);
    if (!r.ok()) return Fail(state, r.status());
    if (!barrier.ok()) return Fail(state, barrier);
    state.SetIterationTime(s);
    swap.Add(s);
    done.Add(done_s);
    if (ping) {
      worst_rtt_ns = std::max(worst_rtt_ns, pinger.max_ns());
      pings += pinger.count();
      rtt_sum_ns += pinger.sum_ns();
    }
    if (add && !checked) {
      // The last new port accepts (the forwarder then fails to reach the
      // unused target and closes: only the listener matters here).
      int fd = Loopback4Socket(static_cast<uint16_t>(kBulkFirst + ports - 1));
      if (fd < 0) return Fail(state, absl::InternalError("new port does not accept"));
      close(fd);
      uint32_t bound =
          r->report.empty() || r->report[0].rules.size() < 2 ? 0 : r->report[0].rules[1].bound;
      if (bound != ports)
        return Fail(state, absl::InternalError(absl::StrCat("bound ", bound, " of ", ports)));
      checked = true;
    }
  }
  if (absl::Status st = env->Install(small); !st.ok()) return Fail(state, st);
  swap.Report(state, "", "ms", 1e3);
  done.Report(state, "done_", "ms", 1e3);
  if (ping) {
    state.counters["max_rtt_us"] = static_cast<double>(worst_rtt_ns) / 1e3;
    state.counters["mean_rtt_us"] = pings ? static_cast<double>(rtt_sum_ns) / pings / 1e3 : 0;
    state.counters["pings"] = static_cast<double>(pings);
    if (pinger.errors()) state.counters["ping_errors"] = static_cast<double>(pinger.errors());
  }
}

void BM_AddPorts(benchmark::State& state) { BulkSwap(state, true); }
void BM_RemovePorts(benchmark::State& state) { BulkSwap(state, false); }

void BulkArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"ports", "ping", "bind_threads"})->UseManualTime()->Unit(benchmark::kMillisecond);
}
// bind_threads 1 against the default 2: the effect of binding in parallel.
BENCHMARK(BM_AddPorts)->Apply(BulkArgs)->Args({1000, 0, 2})->Args({1000, 1, 2});
BENCHMARK(BM_AddPorts)
    ->Apply(BulkArgs)
    ->Args({10000, 0, 1})
    ->Args({10000, 0, 2})
    ->Args({10000, 1, 1})
    ->Args({10000, 1, 2})
    ->Iterations(5);
BENCHMARK(BM_RemovePorts)->Apply(BulkArgs)->Args({1000, 0, 2})->Args({1000, 1, 2});
BENCHMARK(BM_RemovePorts)->Apply(BulkArgs)->Args({10000, 0, 2})->Args({10000, 1, 2})->Iterations(5);

// The ping-pong alone for 50 ms: the baseline of max_rtt_us.
void BM_PingIdle(benchmark::State& state) {
  Env* env = EnvOrSkip(state);
  if (!env) return;
  if (absl::Status st = env->Install(env->With({env->PingRule()})); !st.ok())
    return Fail(state, st);
  Pinger& pinger = env->pinger();
  int64_t worst = 0, pings = 0, sum = 0;
  for (auto _ : state) {
    pinger.Reset();
    pinger.Enable(true);
    usleep(50000);
    pinger.Enable(false);
    worst = std::max(worst, pinger.max_ns());
    pings += pinger.count();
    sum += pinger.sum_ns();
    state.SetIterationTime(0.05);
  }
  state.counters["max_rtt_us"] = static_cast<double>(worst) / 1e3;
  state.counters["mean_rtt_us"] = pings ? static_cast<double>(sum) / pings / 1e3 : 0;
  state.counters["pings"] = static_cast<double>(pings);
}
BENCHMARK(BM_PingIdle)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(4);

}  // namespace
}  // namespace ringfwd
