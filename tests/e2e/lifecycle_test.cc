// The daemon's life: clean exits on SIGTERM and SIGINT with flows open (and
// its control socket and pid file removed), SIGHUP reopening the log file,
// SIGPIPE never killing it, dropping privileges with seccomp on, and
// --daemon with --pid.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "ctl/wire.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/load_util.h"
#include "tests/e2e/swap_util.h"

namespace ringfwd::e2e {
namespace {

class LifecycleTest : public E2eTest {
 protected:
  Addr Front(uint16_t port = 8080) const { return Addr::Of("127.0.0.1", port); }
  Addr Back(uint16_t port = 80) const { return Addr::Of("127.0.0.1", port); }

  // Sends `sig` to a daemon with TCP and UDP flows open (idle, streaming,
  // and one whose backend does not read): it exits 0 within 2 s and removes
  // its control socket and pid file.
  void ExitsCleanlyOn(int sig) {
    SocketDir dir;
    const std::string ctl = dir.Path("ctl.sock"), pid_file = dir.Path("ringfwd.pid");
    EchoServer echo(TcpListen(*target_, Back()));
    std::atomic<bool> release{false};
    TcpServer deaf(TcpListen(*target_, Back(81)), [&](Fd) {
      for (Deadline dl = In(10000 * Slowdown()); !release && Clock::now() < dl;) usleep(5000);
    });
    UdpEchoServer udp(UdpBind(*target_, Addr::Of("127.0.0.1", 53)), "u:");
    auto d = StartForwarder(
        {"-t", "8080:80", "-t", "8081:81", "-u", "5353:53", "-c", ctl, "--pid", pid_file});
    ASSERT_TRUE(d);
    ASSERT_TRUE(FileExists(ctl));
    ASSERT_EQ(ReadFileOrEmpty(pid_file), std::to_string(d->pid()) + "\n");

    std::string error;
    std::vector<Fd> idle = ConnectMany(*host_, Front(), 20, 20, In(3000 * Slowdown()), &error);
    ASSERT_EQ(idle.size(), 20u) << error;
    ASSERT_EQ(EchoEach(
                  idle, [](int i) { return std::to_string(i); }, In(3000 * Slowdown()), &error),
              20)
        << error;
    int err = 0;
    Fd blocked = TcpConnect(*host_, Front(8081), &err);
    ASSERT_TRUE(blocked) << std::strerror(err);
    // Fill every buffer on the way to the backend that does not read.
    const std::string chunk(1 << 16, 'x');
    for (int i = 0; i < 2048 && SendAll(blocked.get(), chunk, In(200)) == 0; ++i) {
    }
    Fd u = SocketIn(*host_, AF_INET, SOCK_DGRAM);
    ASSERT_EQ(UdpRoundTrip(u.get(), Addr::Of("127.0.0.1", 5353), "ping", nullptr), "u:ping");
    SteadyFlows streaming(*host_, Front(), 1, 1 << 16, 0);
    ASSERT_TRUE(streaming.AdvanceAll(3, 3000)) << streaming.error();
    ASSERT_TRUE(WaitUntil([&] { return echo.accepted() >= 21; }, 3000));

    Clock::time_point t0 = Clock::now();
    kill(d->pid(), sig);
    bool exited = WaitUntil([&] { return !d->Running(); }, 2000);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    EXPECT_TRUE(exited) << "still running " << ms << " ms after signal " << sig;
    EXPECT_EQ(d->Stop(100), 0) << "exit status after signal " << sig;
    EXPECT_FALSE(FileExists(ctl)) << "control socket left behind";
    EXPECT_FALSE(FileExists(pid_file)) << "pid file left behind";
    streaming.Stop();
    release = true;
  }
};

TEST_F(LifecycleTest, SigtermWithFlowsOpen) { ExitsCleanlyOn(SIGTERM); }

TEST_F(LifecycleTest, SigintWithFlowsOpen) { ExitsCleanlyOn(SIGINT); }

// SIGHUP reopens the log file: after a rename (as logrotate does), new lines
// go to a new file of the old name.
TEST_F(LifecycleTest, SighupReopensTheLogFile) {
  SocketDir dir;
  const std::string ctl = dir.Path("ctl.sock"), log = dir.Path("ringfwd.log");
  std::string error;
  auto d = RingfwdChild::Start(
      *host_, {}, {"--netns", target_->name(), "-t", "8080:80", "-c", ctl, "--log-file", log}, log,
      &error);
  ASSERT_TRUE(d) << error;
  ASSERT_EQ(rename(log.c_str(), (log + ".1").c_str()), 0) << std::strerror(errno);
  ASSERT_EQ(kill(d->pid(), SIGHUP), 0);
  // The reopen happens on the daemon's next tick; an update logs a line.
  int updates = 0;
  bool logged = WaitUntil(
      [&] {
        uint16_t port = static_cast<uint16_t>(9100 + updates % 2);
        RunPesto({updates % 2 == 0 ? "-A" : "-D", "-t", std::to_string(port)}, ctl);
        ++updates;
        return ReadFileOrEmpty(log).find("control: client pid") != std::string::npos;
      },
      3000);
  EXPECT_TRUE(logged) << "no update logged to a new " << log << " after " << updates << " updates";
  const std::string fresh = ReadFileOrEmpty(log), old = ReadFileOrEmpty(log + ".1");
  EXPECT_NE(old.find(" ready"), std::string::npos) << "the renamed file lost its lines";
  EXPECT_EQ(fresh.find(" ready"), std::string::npos) << "the new file is the old one";
  EXPECT_TRUE(d->Running());
  EXPECT_EQ(d->Signal(SIGTERM, 2000 * Slowdown()), 0);
}

// SIGUSR1 logs the counters, without stopping anything: after one forwarded
// connection the line counts it and its bytes.
TEST_F(LifecycleTest, Sigusr1LogsTheCounters) {
  SocketDir dir;
  const std::string log = dir.Path("ringfwd.log");
  EchoServer echo(TcpListen(*target_, Back()));
  std::string error;
  auto d = RingfwdChild::Start(
      *host_, {}, {"--netns", target_->name(), "-t", "8080:80", "--log-file", log}, log, &error);
  ASSERT_TRUE(d) << error;
  int err = 0;
  {
    Fd c = TcpConnect(*host_, Front(), &err);
    ASSERT_TRUE(c) << std::strerror(err);
    ExchangeResult r = Exchange(c.get(), 5, 100000, true, In(10000 * Slowdown()));
    ASSERT_EQ(r.err, 0) << std::strerror(r.err);
  }
  // Polled: the counters may still be moving as the flow closes.
  bool logged = WaitUntil(
      [&] {
        kill(d->pid(), SIGUSR1);
        return ReadFileOrEmpty(log).find("stats: 1 listeners; TCP 1 accepted, 1 closed") !=
               std::string::npos;
      },
      3000);
  EXPECT_TRUE(logged) << ReadFileOrEmpty(log);
  EXPECT_NE(ReadFileOrEmpty(log).find("200000 bytes"), std::string::npos) << ReadFileOrEmpty(log);
  EXPECT_TRUE(d->Running());
  EXPECT_EQ(EchoByte(*host_, Front()), 0) << "forwarding stopped after SIGUSR1";
  EXPECT_EQ(d->Signal(SIGTERM, 2000 * Slowdown()), 0);
}

// Writing to a peer that has gone raises SIGPIPE unless the daemon ignores
// it: clients that reset while the daemon writes to them, control clients
// that close before reading the tables or their status. The daemon lives on
// and serves both.
TEST_F(LifecycleTest, SigpipeNeverKills) {
  SocketDir dir;
  const std::string ctl = dir.Path("ctl.sock");
  TcpServer downloads(TcpListen(*target_, Back()), TransferHandler);
  auto d = StartForwarder({"-t", "8080:80", "-c", ctl});
  ASSERT_TRUE(d);
  for (int i = 0; i < 5; ++i) {
    int err = 0;
    Fd c = TcpConnect(*host_, Front(), &err);
    ASSERT_TRUE(c) << std::strerror(err);
    ASSERT_EQ(SendAll(c.get(), TransferHeader('D', i, uint64_t{1} << 30), In(1000)), 0);
    std::string got;
    ASSERT_EQ(RecvExact(c.get(), 1 << 20, &got, In(5000 * Slowdown())), 0);
    CloseWithReset(std::move(c));
  }
  // Control clients: gone before the listing, and gone before the status
  // of an update (which is then undone).
  for (int i = 0; i < 10; ++i) {
    int err = 0;
    Fd c = UnixConnect(ctl, &err);
    ASSERT_TRUE(c) << std::strerror(err);
  }
  Listing before = ListControl(ctl);
  ASSERT_TRUE(before.ok()) << before.error;
  for (int i = 0; i < 10; ++i) {
    ControlConn c = OpenControl(ctl);
    ASSERT_TRUE(c.fd) << c.listing.error;
    TableSet set = c.listing.tables;
    set.Find(PifId::kHost)->rules.push_back(MakeRule(kProtoTcp, "", 9200, 9200, 9200));
    wire::Bytes update = TxnUpdateOf(set);
    ASSERT_EQ(SendAll(c.fd.get(), update.data(), update.size(), In(1000)), 0);
  }  // closed without reading the status
  ASSERT_TRUE(d->Running()) << "the daemon died";
  auto count = [](const std::string& text, const std::string& what) {
    int n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  ASSERT_TRUE(WaitUntil([&] { return count(d->Log(), " uid 0: ") >= 10; }, 3000))
      << "the daemon did not finish every update";
  std::cout << "control clients gone before the tables: "
            << count(d->Log(), "gone before reading the tables")
            << " of 10, before the status: " << count(d->Log(), "gone before its status")
            << " of 10\n";
  // Still serving: a transfer, and a control client.
  int err = 0;
  Fd c = TcpConnect(*host_, Front(), &err);
  ASSERT_TRUE(c) << std::strerror(err);
  ASSERT_EQ(SendAll(c.get(), TransferHeader('D', 42, 1 << 20), In(1000)), 0);
  std::string got;
  EXPECT_EQ(RecvToEof(c.get(), &got, In(5000 * Slowdown())), 0);
  EXPECT_TRUE(got == Pattern(42).Bytes(0, 1 << 20));
  CmdResult p = RunPesto({"-A", "-t", "9201"}, ctl);
  EXPECT_EQ(p.exit_code, 0) << p.output;
  EXPECT_TRUE(d->Running());
  EXPECT_EQ(d->Stop(), 0);
}

// --runas 65534 --seccomp: the daemon really runs as nobody under a filter,
// forwards TCP and UDP, and still applies an update (ports >= 1024).
TEST_F(LifecycleTest, RunasNobodyWithSeccomp) {
  SocketDir dir;
  // The directory belongs to the user the daemon becomes (as /run/ringfwd
  // would), so that it can remove its control socket and pid file at exit.
  ASSERT_EQ(chown(dir.dir().c_str(), 65534, 65534), 0) << std::strerror(errno);
  const std::string ctl = dir.Path("ctl.sock"), pid_file = dir.Path("ringfwd.pid");
  EchoServer echo(TcpListen(*target_, Back()));
  auto later = StartEcho(*target_, "127.0.0.1", 9300);
  ASSERT_TRUE(later);
  UdpEchoServer udp(UdpBind(*target_, Addr::Of("127.0.0.1", 53)), "u:");
  UdpEchoServer udp2(UdpBind(*target_, Addr::Of("127.0.0.1", 9301)), "v:");
  // LeakSanitizer's exit check stops the world with ptrace, which the filter
  // refuses (rightly): under the sanitizer this daemon runs without it (every
  // other test checks for leaks).
  struct NoLeakCheck {
    std::string saved;
    bool had = false;
    NoLeakCheck() {
      if (const char* v = getenv("ASAN_OPTIONS")) saved = v, had = true;
      setenv("ASAN_OPTIONS", (saved + (saved.empty() ? "" : ":") + "detect_leaks=0").c_str(), 1);
    }
    ~NoLeakCheck() { had ? setenv("ASAN_OPTIONS", saved.c_str(), 1) : unsetenv("ASAN_OPTIONS"); }
  } no_leak_check;
  auto d = StartForwarder({"-t", "8080:80", "-u", "5353:53", "-c", ctl, "--pid", pid_file,
                           "--runas", "65534", "--seccomp"});
  ASSERT_TRUE(d);
  const std::string uid = StatusField(d->pid(), "Uid");
  EXPECT_EQ(uid.substr(0, uid.find_first_of(" \t")), "65534") << "Uid: " << uid;
  EXPECT_EQ(uid.find_first_not_of("65534 \t"), std::string::npos) << "Uid: " << uid;
  EXPECT_EQ(StatusField(d->pid(), "Seccomp"), "2");
  EXPECT_EQ(StatusField(d->pid(), "CapEff"), "0000000000000000");

  int err = 0;
  Fd c = TcpConnect(*host_, Front(), &err);
  ASSERT_TRUE(c) << std::strerror(err);
  ExchangeResult r = Exchange(c.get(), 3, 4 << 20, true, In(10000 * Slowdown()));
  EXPECT_EQ(r.err, 0) << std::strerror(r.err);
  EXPECT_EQ(r.recv_digest, PatternDigest(3, 4 << 20));
  Fd u = SocketIn(*host_, AF_INET, SOCK_DGRAM);
  EXPECT_EQ(UdpRoundTrip(u.get(), Addr::Of("127.0.0.1", 5353), "ping", nullptr), "u:ping");

  CmdResult p = RunPesto({"-A", "-t", "9300", "-u", "9301"}, ctl);
  EXPECT_EQ(p.exit_code, 0) << p.output;
  EXPECT_EQ(EchoByte(*host_, Front(9300)), 0);
  Fd u2 = SocketIn(*host_, AF_INET, SOCK_DGRAM);
  EXPECT_EQ(UdpRoundTrip(u2.get(), Addr::Of("127.0.0.1", 9301), "pong", nullptr), "v:pong");
  // A port below 1024 cannot be bound any more: refused, nothing changes.
  p = RunPesto({"-A", "-t", "900"}, ctl);
  EXPECT_NE(p.exit_code, 0) << p.output;
  EXPECT_EQ(EchoByte(*host_, Front(9300)), 0);
  EXPECT_TRUE(d->Running());
  const int rc = d->Stop();
  EXPECT_EQ(rc, 0);
  EXPECT_FALSE(FileExists(ctl)) << "control socket left behind";
  EXPECT_FALSE(FileExists(pid_file)) << "pid file left behind";
}

// --runas with the control socket and pid file in a directory only root may
// write to (as /run is): they must still go at exit, or at least the daemon
// must say that they could not.
//
// DISABLED: daemon bug. tools/ringfwd.cc chowns the control socket to the
// new user "so it can still remove it at exit", but removing a file needs
// write permission on its directory, not ownership of the file: after
// --runas the unlink of the control socket and of the pid file fail with
// EACCES, silently, and the daemon reports a clean exit 0 with both files
// left behind (the stale socket is replaced at the next start; the pid file
// names a dead process). Possible fixes: unlink from a helper that kept the
// right, log a warning naming the files, or document that their directory
// must belong to the --runas user.
TEST_F(LifecycleTest, RunasRemovesItsFilesInARootOwnedDirectory) {
  SocketDir dir;  // root's, mode 0755
  const std::string ctl = dir.Path("ctl.sock"), pid_file = dir.Path("ringfwd.pid");
  auto d = StartForwarder({"-t", "8080:80", "-c", ctl, "--pid", pid_file, "--runas", "65534"});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->Stop(), 0);
  const bool warned = d->Log().find("warning") != std::string::npos;
  EXPECT_TRUE(!FileExists(ctl) || warned) << "control socket left behind without a word";
  EXPECT_TRUE(!FileExists(pid_file) || warned) << "pid file left behind without a word";
}

// True once `pid` has exited (gone, or a zombie nobody reaped yet).
bool Exited(pid_t pid) {
  std::string stat = ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  return stat.empty() ||
         (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z');
}

// --daemon --pid: the command returns 0 once the daemon is ready, the pid
// file (there at once) names the live daemon, which forwards; SIGTERM stops
// it and removes the pid file.
TEST_F(LifecycleTest, DaemonWithPidFile) {
  SocketDir dir;
  const std::string pid_file = dir.Path("ringfwd.pid"), log = dir.Path("ringfwd.log");
  EchoServer echo(TcpListen(*target_, Back()));
  CmdResult r = RunRingfwd(*host_, {"--daemon", "--pid", pid_file, "--log-file", log, "--netns",
                                    target_->name(), "-t", "8080:80"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string text = ReadFileOrEmpty(pid_file);
  const pid_t pid = static_cast<pid_t>(std::atoi(text.c_str()));
  ASSERT_GT(pid, 0) << "pid file: '" << text << "'";
  struct Killer {
    pid_t pid;
    ~Killer() {
      if (!Exited(pid)) kill(pid, SIGKILL);
    }
  } killer{pid};
  EXPECT_EQ(text, std::to_string(pid) + "\n");
  EXPECT_FALSE(Exited(pid));
  EXPECT_EQ(StatusField(pid, "Name"), "ringfwd");
  EXPECT_NE(ReadFileOrEmpty(log).find(" ready"), std::string::npos);
  int err = 0;
  Fd c = TcpConnect(*host_, Front(), &err);
  ASSERT_TRUE(c) << std::strerror(err);
  ExchangeResult x = Exchange(c.get(), 9, 1 << 20, true, In(5000 * Slowdown()));
  EXPECT_EQ(x.recv_digest, PatternDigest(9, 1 << 20));
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  EXPECT_TRUE(WaitUntil([&] { return Exited(pid); }, 2000)) << "the daemon ignored SIGTERM";
  EXPECT_FALSE(FileExists(pid_file)) << "pid file left behind";
  EXPECT_NE(ReadFileOrEmpty(log).find("shutting down"), std::string::npos) << ReadFileOrEmpty(log);
}

}  // namespace
}  // namespace ringfwd::e2e
