// ringfwd: the port-forwarding daemon.
//
// Parses the command line into tables, sets up the forwarder (ring, target
// namespace, listeners), prints the active tables, and runs the data-plane
// loop on the main thread until SIGTERM or SIGINT.
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "ctl/server.h"
#include "fwd/forwarder.h"
#include "fwd/netlink.h"
#include "fwd/port_spec.h"
#include "fwd/rule.h"
#include "fwd/tap_config.h"
#include "uring/log.h"
#include "uring/sandbox.h"

namespace ringfwd {
namespace {

constexpr const char* kVersion = "ringfwd 0.1";

void Usage(FILE* out) {
  std::fprintf(out, R"(Usage: ringfwd [OPTION]...
Forward TCP and UDP ports between the host and a target network namespace
(or host addresses), with an io_uring data path.

  -t, --tcp-ports SPEC    HOST TCP rules: listen on the host, connect on the
                          target side (repeatable)
  -u, --udp-ports SPEC    HOST UDP rules (repeatable)
  -T, --tcp-ns SPEC       SPLICE TCP rules: listen in the namespace (on lo
                          unless an interface is given), connect on the host
  -U, --udp-ns SPEC       SPLICE UDP rules
      --netns NS          target namespace: a name under /run/netns, a path to
                          a namespace file, or a pid
  -c, --control PATH      control socket for pesto clients (mode 0600: the
                          owner and root only)
      --control-allow-uid UID  also serve this uid (repeatable; the socket
                          becomes mode 0666 and SO_PEERCRED decides)
      --control-timeout SEC  drop a control client that has not finished its
                          transaction after SEC seconds (default 10)
  -d, --debug             debug logging
      --log-file FILE     log to FILE instead of stderr (SIGHUP reopens it;
                          SIGUSR1 logs the counters)
      --pid FILE          write the daemon's pid to FILE
      --daemon            detach and run in the background
      --udp-timeout SEC   idle UDP flows expire after SEC seconds (default 180)
      --max-tcp-flows N   concurrent TCP connections (default 16384)
      --max-udp-flows N   concurrent UDP flows (default 4096)
      --pipe-size BYTES   splice pipe size (default 1048576). Above
                          fs.pipe-max-size it needs CAP_SYS_RESOURCE (not
                          kept by --runas); without it, that maximum is used
      --loopback-cc NAME  TCP congestion control of the connections ringfwd
                          makes to a loopback address and accepts on a
                          loopback listener (default reno: no pacing, no early
                          exit from slow start); 'system' keeps the system's
                          default there too
      --runas UID[:GID]   after setup, drop to this user (and group); also
                          USER[:GROUP]. New ports below 1024 then fail to bind
      --seccomp           after setup, allow only the system calls ringfwd
                          uses (others fail with EPERM)

Tap mode (a Layer-2 link for a VM or a namespace, as passt and pasta give):
      --tap               with --netns: also create a tap interface in the
                          namespace (named after the host's interface with the
                          default route, tap0 when none), configure it and
                          route the namespace's traffic through ringfwd
      --qemu-socket PATH  passt mode: listen on a UNIX socket for a VM (QEMU
                          -netdev stream,addr.type=unix,addr.path=PATH)
      --mtu N             the link's MTU (default 65520)
      --address ADDR[/PREFIX]  the guest's IPv4 or IPv6 address (repeatable,
                          one per family; default: the host's)
      --gateway ADDR      the gateway we answer as (one per family; default:
                          the host's default gateway)
      --dns ADDR          a resolver to advertise (repeatable; default: the
                          host's, a loopback one as the gateway's address)
      --dns-forward ADDR  where DNS to an advertised resolver goes (default:
                          the first nameserver of /etc/resolv.conf)
      --mac MAC           our MAC on the link (default 02:52:46:57:44:01)
      --no-map-host-loopback  traffic to the gateway's address goes to the
                          gateway itself, not to the host's loopback
      --tap-fault drop=N,reorder=M  for tests: drop every Nth frame and swap
                          every Mth with the next, both ways on the link

  -h, --help              this help
      --version           print the version

SPEC is the port syntax of pasta and pesto, e.g. 22, 8080:80, 22-80:32-90,
127.0.0.1/8000-8010:9000-9010, 192.0.2.1%%eth0/443:8443, 5-25,~10-20, all,
auto, none. Without --netns a HOST rule connects on the host itself, so it
must remap its port or name a target address (-t 8080:80, -t
0.0.0.0/8080:192.0.2.9/80).

Example: ringfwd --netns ns1 -t 8080:80 -u 5353:53
)");
}

std::atomic<Forwarder*> g_forwarder{nullptr};
std::atomic<bool> g_reopen{false};
std::atomic<bool> g_stats{false};

void OnSignal(int sig) {
  if (sig == SIGHUP) {
    g_reopen = true;
    return;
  }
  if (sig == SIGUSR1) {
    g_stats = true;
    return;
  }
  if (Forwarder* f = g_forwarder.load()) f->Stop();
}

// The counters since start, as log lines (SIGUSR1, and at exit).
void LogStats(const Forwarder& f) {
  const TcpStats& t = f.tcp_stats();
  const UdpStats& u = f.udp_stats();
  LOG_INFO(
      "stats: %d listeners; TCP %d accepted, %d closed, %d reset, %d failed connects, %d refused "
      "(flow table full), %d bytes; UDP %d flows (%d expired, %d evicted), %d datagrams in, %d "
      "out, %d dropped",
      f.listener_count(), t.accepted, t.closed, t.resets, t.connect_failed, t.table_full, t.bytes,
      u.flows_created, u.flows_expired, u.flows_evicted, u.datagrams_in, u.datagrams_out,
      u.dropped);
  if (const TapLink* link = f.tap_link()) LOG_INFO("stats: %s", link->Summary());
}

struct Args {
  ForwarderOptions fwd;
  TapArgs tap;
  std::vector<std::pair<char, std::string>> specs;
  ctl::ServerOptions control;
  std::string log_file;
  std::string pid_file;
  bool daemon = false;
  bool debug = false;
  bool seccomp = false;
  std::string runas;
};

bool ParseSize(const char* text, const char* what, size_t min, size_t* out) {
  uint64_t v;
  if (!absl::SimpleAtoi(text, &v) || v < min) {
    std::fprintf(stderr, "ringfwd: invalid %s '%s'\n", what, text);
    return false;
  }
  *out = v;
  return true;
}

// Returns an exit code >= 0 to stop, -1 to go on.
int ParseArgs(int argc, char** argv, Args* a) {
  enum {
    kNetns = 256,
    kLogFile,
    kPid,
    kDaemon,
    kUdpTimeout,
    kMaxTcp,
    kMaxUdp,
    kPipeSize,
    kLoopbackCc,
    kVersionOpt,
    kAllowUid,
    kCtlTimeout,
    kRunas,
    kSeccomp,
    kTap,
    kQemuSocket,
    kMtu,
    kAddress,
    kGateway,
    kDns,
    kDnsForward,
    kMac,
    kNoMapLoopback,
    kTapFault
  };
  static const option kLong[] = {
      {"tcp-ports", required_argument, nullptr, 't'},
      {"udp-ports", required_argument, nullptr, 'u'},
      {"tcp-ns", required_argument, nullptr, 'T'},
      {"udp-ns", required_argument, nullptr, 'U'},
      {"control", required_argument, nullptr, 'c'},
      {"debug", no_argument, nullptr, 'd'},
      {"help", no_argument, nullptr, 'h'},
      {"netns", required_argument, nullptr, kNetns},
      {"log-file", required_argument, nullptr, kLogFile},
      {"pid", required_argument, nullptr, kPid},
      {"daemon", no_argument, nullptr, kDaemon},
      {"udp-timeout", required_argument, nullptr, kUdpTimeout},
      {"max-tcp-flows", required_argument, nullptr, kMaxTcp},
      {"max-udp-flows", required_argument, nullptr, kMaxUdp},
      {"pipe-size", required_argument, nullptr, kPipeSize},
      {"loopback-cc", required_argument, nullptr, kLoopbackCc},
      {"version", no_argument, nullptr, kVersionOpt},
      {"control-allow-uid", required_argument, nullptr, kAllowUid},
      {"control-timeout", required_argument, nullptr, kCtlTimeout},
      {"runas", required_argument, nullptr, kRunas},
      {"seccomp", no_argument, nullptr, kSeccomp},
      {"tap", no_argument, nullptr, kTap},
      {"qemu-socket", required_argument, nullptr, kQemuSocket},
      {"mtu", required_argument, nullptr, kMtu},
      {"address", required_argument, nullptr, kAddress},
      {"gateway", required_argument, nullptr, kGateway},
      {"dns", required_argument, nullptr, kDns},
      {"dns-forward", required_argument, nullptr, kDnsForward},
      {"mac", required_argument, nullptr, kMac},
      {"no-map-host-loopback", no_argument, nullptr, kNoMapLoopback},
      {"tap-fault", required_argument, nullptr, kTapFault},
      {nullptr, 0, nullptr, 0},
  };
  int c;
  size_t v;
  while ((c = getopt_long(argc, argv, "t:u:T:U:c:dh", kLong, nullptr)) != -1) {
    switch (c) {
      case 't':
      case 'u':
      case 'T':
      case 'U':
        a->specs.emplace_back(static_cast<char>(c), optarg);
        break;
      case 'c':
        a->control.path = optarg;
        break;
      case kAllowUid:
        if (!ParseSize(optarg, "uid", 0, &v) || v > 0xfffffffe) return 1;
        a->control.allow_uids.push_back(static_cast<uid_t>(v));
        break;
      case kCtlTimeout:
        if (!ParseSize(optarg, "control timeout", 1, &v)) return 1;
        a->control.timeout_ms = static_cast<int>(std::min<size_t>(v, 3600) * 1000);
        break;
      case 'd':
        a->debug = true;
        break;
      case 'h':
        Usage(stdout);
        return 0;
      case kNetns:
        a->fwd.netns = optarg;
        break;
      case kLogFile:
        a->log_file = optarg;
        break;
      case kPid:
        a->pid_file = optarg;
        break;
      case kDaemon:
        a->daemon = true;
        break;
      case kUdpTimeout:
        if (!ParseSize(optarg, "UDP timeout", 1, &v)) return 1;
        a->fwd.udp_timeout_s = static_cast<int>(std::min<size_t>(v, 86400 * 365));
        break;
      case kMaxTcp:
        if (!ParseSize(optarg, "flow count", 1, &v)) return 1;
        a->fwd.max_tcp_flows = std::min<size_t>(v, 1 << 22);
        break;
      case kMaxUdp:
        if (!ParseSize(optarg, "flow count", 1, &v)) return 1;
        a->fwd.max_udp_flows = std::min<size_t>(v, 1 << 22);
        break;
      case kPipeSize:
        if (!ParseSize(optarg, "pipe size", 4096, &v)) return 1;
        a->fwd.pipe_size = std::min<size_t>(v, 1 << 26);
        break;
      case kLoopbackCc:
        if (!*optarg || strlen(optarg) >= 16) {  // TCP_CA_NAME_MAX
          fprintf(stderr, "ringfwd: --loopback-cc: '%s' is not a congestion control name\n",
                  optarg);
          return 1;
        }
        a->fwd.loopback_cc = optarg;
        break;
      case kRunas:
        a->runas = optarg;
        break;
      case kSeccomp:
        a->seccomp = true;
        break;
      case kTap:
        a->tap.tap = true;
        break;
      case kQemuSocket:
        a->tap.qemu_socket = optarg;
        break;
      case kMtu:
        if (!ParseSize(optarg, "MTU", 1, &v)) return 1;
        a->tap.mtu = static_cast<uint32_t>(std::min<size_t>(v, UINT32_MAX));
        break;
      case kAddress:
        a->tap.addresses.push_back(optarg);
        break;
      case kGateway:
        a->tap.gateways.push_back(optarg);
        break;
      case kDns:
        a->tap.dns.push_back(optarg);
        break;
      case kDnsForward:
        a->tap.dns_forward.push_back(optarg);
        break;
      case kMac:
        a->tap.mac = optarg;
        break;
      case kNoMapLoopback:
        a->tap.no_map_host_loopback = true;
        break;
      case kTapFault:
        a->tap.fault = optarg;
        break;
      case kVersionOpt:
        std::printf("%s\n", kVersion);
        return 0;
      default:
        std::fprintf(stderr, "Try 'ringfwd --help'.\n");
        return 1;
    }
  }
  if (optind < argc) {
    std::fprintf(stderr, "ringfwd: unexpected argument '%s'\nTry 'ringfwd --help'.\n",
                 argv[optind]);
    return 1;
  }
  return -1;
}

// The tap link's options: the command line over the host's template
// interfaces (found by netlink in our own namespace) and resolvers.
absl::Status BuildTapOptions(Args* a) {
  a->tap.netns = a->fwd.netns;
  HostNetInfo host;
  bool needed = a->tap.tap || !a->tap.qemu_socket.empty();
  if (needed) {
    absl::StatusOr<Netlink> nl = Netlink::Open();
    if (!nl.ok()) return nl.status();
    for (int family : {AF_INET, AF_INET6}) {
      absl::StatusOr<TemplateIface> t = nl->FindTemplate(family);
      if (t.ok()) {
        (family == AF_INET ? host.v4 : host.v6) = *t;
      } else if (t.status().code() != absl::StatusCode::kNotFound) {
        return t.status();
      }
    }
    std::ifstream rc("/etc/resolv.conf");
    std::string text((std::istreambuf_iterator<char>(rc)), std::istreambuf_iterator<char>());
    host.resolvers = ParseResolvConf(text);
  }
  absl::StatusOr<TapLinkOptions> o = BuildTapLinkOptions(a->tap, host);
  if (!o.ok()) return o.status();
  a->fwd.tap = *o;
  return absl::OkStatus();
}

// Builds the tables from the -t/-u/-T/-U options, in order.
absl::Status BuildTables(const Args& a, TableSet* set) {
  PortRange eph = ReadEphemeralRange();
  for (const auto& [opt, spec] : a.specs) {
    PortSpecOptions o;
    o.pif = (opt == 't' || opt == 'u') ? PifId::kHost : PifId::kSplice;
    o.proto = (opt == 't' || opt == 'T') ? kProtoTcp : kProtoUdp;
    o.ephemeral = eph;
    absl::StatusOr<std::vector<Rule>> rules = ParsePortSpec(spec, o);
    if (!rules.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("-", std::string(1, opt), " ", spec, ": ", rules.status().message()));
    Table* t = set->Find(o.pif);
    if (!t) {
      if (rules->empty()) continue;
      return absl::InvalidArgumentError(
          absl::StrCat("-", std::string(1, opt), " ", spec, ": ", PifName(o.pif),
                       " rules listen inside the target namespace and need --netns"));
    }
    t->rules.insert(t->rules.end(), rules->begin(), rules->end());
  }
  return absl::OkStatus();
}

void PrintTables(const TableSet& set) {
  for (const Table& t : set.tables) {
    LOG_INFO("%s: %d rule%s", t.name, t.rules.size(), t.rules.size() == 1 ? "" : "s");
    for (const Rule& r : t.rules) LOG_INFO("  %s", RuleText(r));
  }
}

int Main(int argc, char** argv) {
  Args a;
  int rc = ParseArgs(argc, argv, &a);
  if (rc >= 0) return rc;
  if (a.debug) log::SetLevel(log::Level::kDebug);
  if (!a.log_file.empty()) {
    absl::Status st = log::SetFile(a.log_file);
    if (!st.ok()) {
      std::fprintf(stderr, "ringfwd: %s\n", std::string(st.message()).c_str());
      return 1;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  // --daemon forks first (threads do not survive a fork); the parent waits
  // until the child is ready or has failed, so errors still reach the
  // terminal and the exit status tells.
  Fd ready;
  if (a.daemon) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
      std::fprintf(stderr, "ringfwd: pipe: %s\n", std::strerror(errno));
      return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
      std::fprintf(stderr, "ringfwd: fork: %s\n", std::strerror(errno));
      return 1;
    }
    if (pid > 0) {
      close(p[1]);
      char c = 1;
      ssize_t n = read(p[0], &c, 1);
      return n == 1 && c == 0 ? 0 : 1;
    }
    close(p[0]);
    ready.Reset(p[1]);
    setsid();
  }

  if (absl::Status ts = BuildTapOptions(&a); !ts.ok()) {
    std::fprintf(stderr, "ringfwd: %s\n", std::string(ts.message()).c_str());
    return 1;
  }
  a.fwd.single_thread = true;  // this thread creates, runs and destroys it
  absl::StatusOr<std::unique_ptr<Forwarder>> fwd = Forwarder::Create(a.fwd);
  if (!fwd.ok()) {
    std::fprintf(stderr, "ringfwd: %s\n", std::string(fwd.status().message()).c_str());
    return 1;
  }
  TableSet tables = (*fwd)->EmptyTables();
  absl::Status st = BuildTables(a, &tables);
  if (st.ok()) st = (*fwd)->Start(tables);
  if (!st.ok()) {
    std::fprintf(stderr, "ringfwd: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  if (!a.pid_file.empty()) {
    std::ofstream pf(a.pid_file, std::ios::trunc);
    pf << getpid() << "\n";
    if (!pf) LOG_WARN("cannot write pid file %s", a.pid_file);
  }

  std::unique_ptr<ctl::Server> control;
  if (!a.control.path.empty()) {
    absl::StatusOr<std::unique_ptr<ctl::Server>> cs = ctl::Server::Start(fwd->get(), a.control);
    if (!cs.ok()) {
      LOG_ERR("%s", cs.status().message());
      return 1;
    }
    control = std::move(*cs);
    LOG_INFO("control socket %s", a.control.path);
  }
  // Stops the control server. A transaction in progress reaches the data
  // plane through RunOnLoop(), which only this thread may serve (the ring
  // is single-thread), so this thread serves it until the server's thread
  // has ended. (No helper thread: seccomp may forbid creating one.)
  auto stop_control = [&] {
    if (!control) return;
    control->RequestStop();
    (*fwd)->ServeTasksUntil([&] { return control->Stopped(); });
    control.reset();
  };

  if (!a.runas.empty()) {
    absl::StatusOr<RunAs> who = ParseRunAs(a.runas);
    // The control socket follows the daemon's user, so it can still remove
    // it at exit.
    if (who.ok() && !a.control.path.empty() &&
        chown(a.control.path.c_str(), who->uid, who->gid) < 0)
      LOG_WARN("chown %s: %s", a.control.path, std::strerror(errno));
    absl::Status dropped = who.ok() ? DropPrivileges(*who) : who.status();
    if (!dropped.ok()) {
      LOG_ERR("%s", dropped.message());
      stop_control();
      return 1;
    }
    LOG_INFO("running as uid %d gid %d", who->uid, who->gid);
  }
  if (a.seccomp) {
    absl::Status sc = InstallSeccomp();
    if (!sc.ok()) {
      LOG_ERR("%s", sc.message());
      stop_control();
      return 1;
    }
    LOG_INFO("seccomp filter installed");
  }

  g_forwarder = fwd->get();
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);

  LOG_INFO("%s ready, target side: %s", kVersion,
           a.fwd.netns.empty() ? "host" : "namespace " + a.fwd.netns);
  PrintTables((*fwd)->tables());
  if (const TapLink* link = (*fwd)->tap_link()) {
    std::string where = a.fwd.tap.mode == TapLinkOptions::Mode::kTap
                            ? absl::StrCat("tap ", a.fwd.tap.ifname, " in namespace ", a.fwd.netns)
                            : absl::StrCat("qemu socket ", a.fwd.tap.qemu_path);
    LOG_INFO("%s", DescribeTapLink(a.fwd.tap, where));
    (void)link;
  }
  if (ready) {
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
      dup2(null, STDIN_FILENO);
      dup2(null, STDOUT_FILENO);
      if (a.log_file.empty()) dup2(null, STDERR_FILENO);
      close(null);
    }
    char ok = 0;
    ssize_t ignored = write(ready.get(), &ok, 1);
    (void)ignored;
    ready.Reset();
  }
  Forwarder* f = fwd->get();
  (*fwd)->SetTickHook([f] {
    if (g_reopen.exchange(false)) {
      absl::Status s = log::Reopen();
      if (!s.ok()) LOG_WARN("reopen log: %s", s.message());
    }
    if (g_stats.exchange(false)) LogStats(*f);
  });
  st = (*fwd)->Run();
  g_forwarder = nullptr;
  stop_control();  // after the loop: a transaction in progress still finishes
  if (!a.pid_file.empty() && unlink(a.pid_file.c_str()) < 0 && errno != ENOENT)
    LOG_WARN(
        "could not remove pid file %s: %s%s", a.pid_file, std::strerror(errno),
        errno == EACCES ? " (after --runas, its directory must be writable by that user)" : "");
  if (!st.ok()) {
    LOG_ERR("%s", st.message());
    return 1;
  }
  LOG_INFO("shutting down");
  LogStats(**fwd);
  return 0;
}

}  // namespace
}  // namespace ringfwd

int main(int argc, char** argv) { return ringfwd::Main(argc, argv); }
