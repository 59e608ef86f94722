// The daemon's command line as a user meets it: refusals with one clear
// line, help and version, pid file, and shutting down on signals.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"

namespace ringfwd::e2e {
namespace {

std::string ReadIfThere(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The namespace identity ("net:[inode]") of a /proc ns link, or of a bind
// mounted namespace file (by its inode).
std::string ReadLink(const std::string& path, bool is_file) {
  if (is_file) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return "";
    return "net:[" + std::to_string(st.st_ino) + "]";
  }
  char buf[128];
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf));
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

class CliTest : public E2eTest {
 protected:
  // Runs ringfwd in the host namespace and checks that it exits 1 with
  // exactly one line, "ringfwd: ...", containing every one of `needles`.
  void ExpectRefused(const std::vector<std::string>& args,
                     const std::vector<std::string>& needles) {
    std::string cmd;
    for (const std::string& a : args) cmd += " " + a;
    CmdResult r = RunRingfwd(*host_, args);
    EXPECT_FALSE(r.timed_out) << "ringfwd" << cmd << " kept running";
    EXPECT_EQ(r.exit_code, 1) << "ringfwd" << cmd << ":\n" << r.output;
    EXPECT_EQ(r.output.rfind("ringfwd: ", 0), 0u) << "ringfwd" << cmd << ":\n" << r.output;
    ASSERT_FALSE(r.output.empty());
    EXPECT_EQ(r.output.back(), '\n');
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1)
        << "ringfwd" << cmd << " printed more than one line:\n"
        << r.output;
    for (const std::string& n : needles)
      EXPECT_NE(r.output.find(n), std::string::npos)
          << "ringfwd" << cmd << ": '" << n << "' missing from: " << r.output;
  }
};

// Without --netns the target side is the host: -t 8080 would connect to its
// own listener.
TEST_F(CliTest, SelfConnectingRuleRefused) {
  ExpectRefused({"-t", "8080"}, {"8080", "own listener"});
}

TEST_F(CliTest, SelfConnectingUdpRuleRefused) {
  ExpectRefused({"-u", "5353"}, {"5353", "own listener"});
}

TEST_F(CliTest, UnknownCongestionControlRefused) {
  ExpectRefused({"--loopback-cc", "nosuchcc", "-t", "8080:9090"}, {"'nosuchcc'", "not available"});
  ExpectRefused({"--loopback-cc", "", "-t", "8080:9090"}, {"--loopback-cc"});
}

TEST_F(CliTest, SpliceWithoutNetnsRefused) { ExpectRefused({"-T", "22"}, {"-T 22", "--netns"}); }

// SCAN rules learn the target side's ports, so they need --netns. (The
// message names auto-scan but, unlike -T's, not --netns.)
TEST_F(CliTest, ScanWithoutNetnsRefused) {
  ExpectRefused({"-t", "20000-20010,auto"}, {"20000-20010", "auto"});
}

TEST_F(CliTest, BadPortRefused) {
  ExpectRefused({"--netns", target_->name(), "-t", "70000"}, {"70000"});
}

TEST_F(CliTest, BadSpecsRefused) {
  for (const char* spec : {"0", "80-70", "8080:", "abc", "1.2.3/80", "8080:0"})
    ExpectRefused({"--netns", target_->name(), "-t", spec}, {spec});
}

TEST_F(CliTest, BadOptionValuesRefused) {
  ExpectRefused({"--udp-timeout", "0", "-t", "8080:80"}, {"'0'"});
  ExpectRefused({"--max-tcp-flows", "x", "-t", "8080:80"}, {"'x'"});
  ExpectRefused({"--max-udp-flows", "-1", "-t", "8080:80"}, {"'-1'"});
  ExpectRefused({"--pipe-size", "100", "-t", "8080:80"}, {"'100'"});
}

TEST_F(CliTest, MissingNamespaceRefused) {
  struct stat st;
  if (stat("/run/netns/does-not-exist", &st) == 0) GTEST_SKIP() << "it exists here";
  ExpectRefused({"--netns", "does-not-exist", "-t", "8080:80"}, {"does-not-exist"});
}

// A dual-stack listener with an IPv4 target address is invalid by the
// protocol's rule validation.
TEST_F(CliTest, DualStackWithIpv4TargetRefused) {
  ExpectRefused({"--netns", target_->name(), "-t", "8080:198.51.100.1/80"}, {"198.51.100.1"});
}

TEST_F(CliTest, OverlappingRulesRefused) {
  ExpectRefused({"--netns", target_->name(), "-t", "8080:80", "-t", "8000-8090:9000-9090"},
                {"8080"});
}

// HOST and SPLICE rules that land on each other's listeners would pass a
// connection back and forth forever.
TEST_F(CliTest, LoopingRulesRefused) {
  ExpectRefused({"--netns", target_->name(), "-t", "8080:80", "-T", "80:8080"}, {"loop"});
  ExpectRefused({"--netns", target_->name(), "-t", "20000-20010,auto", "-T", "20000-20010,auto"},
                {"loop"});
}

// The port is taken in the daemon's namespace: start fails, naming it.
TEST_F(CliTest, PortInUseRefused) {
  Fd taken = TcpListen(*host_, Addr::Of("127.0.0.1", 8080));
  ASSERT_TRUE(taken);
  ExpectRefused({"--netns", target_->name(), "-t", "127.0.0.1/8080:80"}, {"8080"});
}

// --netns as a path to a namespace file.
TEST_F(CliTest, NetnsByPath) {
  EchoServer server(TcpListen(*target_, Addr::Of("127.0.0.1", 80)), "ok");
  auto d = StartDaemon({"--netns", target_->path(), "-t", "8080:80"});
  ASSERT_TRUE(d);
  int err = 0;
  Fd c = TcpConnect(*host_, Addr::Of("127.0.0.1", 8080), &err);
  ASSERT_TRUE(c) << std::strerror(err);
  std::string g;
  EXPECT_EQ(RecvExact(c.get(), 2, &g, In(3000 * Slowdown())), 0);
  EXPECT_EQ(g, "ok");
}

// --netns as the pid of a process in the target namespace.
TEST_F(CliTest, NetnsByPid) {
  Fd nsfd(open(target_->path().c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(nsfd);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (setns(nsfd.get(), CLONE_NEWNET) < 0) _exit(1);
    for (;;) pause();
  }
  EchoServer server(TcpListen(*target_, Addr::Of("127.0.0.1", 80)), "ok");
  // The child is in the namespace once /proc says so.
  std::string want = ReadLink(target_->path(), true);
  for (Deadline dl = In(3000); Clock::now() < dl; usleep(2000))
    if (ReadLink("/proc/" + std::to_string(child) + "/ns/net", false) == want) break;
  {
    auto d = StartDaemon({"--netns", std::to_string(child), "-t", "8080:80"});
    EXPECT_TRUE(d);
    if (d) {
      int err = 0;
      Fd c = TcpConnect(*host_, Addr::Of("127.0.0.1", 8080), &err);
      EXPECT_TRUE(c) << std::strerror(err);
      std::string g;
      if (c) {
        EXPECT_EQ(RecvExact(c.get(), 2, &g, In(3000 * Slowdown())), 0);
      }
      EXPECT_EQ(g, "ok");
    }
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
}

TEST_F(CliTest, HelpAndVersion) {
  CmdResult help = RunRingfwd(*host_, {"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("Usage: ringfwd"), std::string::npos) << help.output;
  CmdResult version = RunRingfwd(*host_, {"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.output.rfind("ringfwd ", 0), 0u) << version.output;
}

TEST_F(CliTest, UnknownOptionRefused) {
  CmdResult r = RunRingfwd(*host_, {"--no-such-option"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
}

// --pid writes the daemon's pid, and the file goes away on exit.
TEST_F(CliTest, PidFile) {
  std::string path = "/tmp/rfe2e-pid-" + std::to_string(getpid());
  unlink(path.c_str());
  auto d = StartForwarder({"--pid", path, "-t", "8080:80"});
  ASSERT_TRUE(d);
  std::string text;
  for (Deadline dl = In(3000 * Slowdown()); Clock::now() < dl; usleep(5000)) {
    text = ReadIfThere(path);
    if (!text.empty() && text.back() == '\n') break;
  }
  EXPECT_EQ(text, std::to_string(d->pid()) + "\n");
  EXPECT_EQ(d->Stop(), 0);
  struct stat st;
  EXPECT_NE(stat(path.c_str(), &st), 0) << "pid file left behind";
  unlink(path.c_str());
}

// True once `pid` has exited (gone, or a zombie nobody reaped yet).
bool Exited(pid_t pid) {
  std::string stat = ReadIfThere("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  return stat.empty() ||
         (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z');
}

// --daemon: the command returns 0 at once, the detached daemon writes its pid
// file and log, forwards (also more connections than its pre-opened socket
// pool holds, which needs its namespace thread), and exits on SIGTERM.
TEST_F(CliTest, DaemonMode) {
  std::string base = "/tmp/rfe2e-daemon-" + std::to_string(getpid());
  std::string pid_path = base + ".pid", log_path = base + ".log";
  unlink(pid_path.c_str());
  unlink(log_path.c_str());
  EchoServer echo(TcpListen(*target_, Addr::Of("127.0.0.1", 80)));
  CmdResult r = RunRingfwd(*host_, {"--daemon", "--pid", pid_path, "--log-file", log_path,
                                    "--netns", target_->name(), "-t", "8080:80"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  pid_t pid = 0;
  for (Deadline dl = In(3000 * Slowdown()); pid <= 0 && Clock::now() < dl; usleep(5000)) {
    std::string text = ReadIfThere(pid_path);
    if (!text.empty() && text.back() == '\n') pid = std::atoi(text.c_str());
  }
  ASSERT_GT(pid, 0) << "no pid file";
  struct Killer {
    pid_t pid;
    ~Killer() {
      if (!Exited(pid)) kill(pid, SIGKILL);
    }
  } killer{pid};
  EXPECT_NE(ReadIfThere(log_path).find(" ready"), std::string::npos) << ReadIfThere(log_path);
  int served = 0;
  for (int i = 0; i < 100; ++i) {
    int err = 0;
    Fd c = TcpConnect(*host_, Addr::Of("127.0.0.1", 8080), &err);
    if (!c) break;
    std::string back;
    if (SendAll(c.get(), "hi", In(1000)) != 0 ||
        RecvExact(c.get(), 2, &back, In(2000 * Slowdown())) != 0 || back != "hi")
      break;
    ++served;
  }
  EXPECT_EQ(served, 100) << "log:\n" << ReadIfThere(log_path);
  kill(pid, SIGTERM);
  for (Deadline dl = In(3000 * Slowdown()); !Exited(pid) && Clock::now() < dl;) usleep(5000);
  EXPECT_TRUE(Exited(pid)) << "the daemon ignored SIGTERM";
  struct stat st;
  EXPECT_NE(stat(pid_path.c_str(), &st), 0) << "pid file left behind";
  unlink(pid_path.c_str());
  unlink(log_path.c_str());
}

// SIGHUP (reopen the log) does not stop the daemon.
TEST_F(CliTest, SighupKeepsRunning) {
  EchoServer echo(TcpListen(*target_, Addr::Of("127.0.0.1", 80)));
  auto d = StartForwarder({"-t", "8080:80"});
  ASSERT_TRUE(d);
  kill(d->pid(), SIGHUP);
  int err = 0;
  Fd c = TcpConnect(*host_, Addr::Of("127.0.0.1", 8080), &err);
  ASSERT_TRUE(c) << std::strerror(err);
  std::string back;
  ASSERT_EQ(SendAll(c.get(), "hi", In(1000)), 0);
  EXPECT_EQ(RecvExact(c.get(), 2, &back, In(3000 * Slowdown())), 0);
  EXPECT_TRUE(d->Running());
  EXPECT_EQ(d->Stop(), 0);
}

TEST_F(CliTest, SigintExitsZero) {
  auto d = StartForwarder({"-t", "8080:80"});
  ASSERT_TRUE(d);
  kill(d->pid(), SIGINT);
  Deadline dl = In(2000 * Slowdown());
  while (d->Running() && Clock::now() < dl) usleep(2000);
  EXPECT_EQ(d->Stop(), 0);
}

// SIGTERM with connections open (idle, streaming, and one whose backend does
// not read) still exits 0 within 2 s.
TEST_F(CliTest, SigtermWithOpenConnections) {
  EchoServer echo(TcpListen(*target_, Addr::Of("127.0.0.1", 80)));
  std::atomic<bool> release{false};
  TcpServer stuck(TcpListen(*target_, Addr::Of("127.0.0.1", 81)), [&](Fd) {
    for (Deadline dl = In(10000 * Slowdown()); !release && Clock::now() < dl;) usleep(5000);
  });
  auto d = StartForwarder({"-t", "8080:80", "-t", "8081:81"});
  ASSERT_TRUE(d);
  std::vector<Fd> idle;
  for (int i = 0; i < 20; ++i) {
    int err = 0;
    idle.push_back(TcpConnect(*host_, Addr::Of("127.0.0.1", 8080), &err));
    ASSERT_TRUE(idle.back()) << std::strerror(err);
    std::string back;
    ASSERT_EQ(SendAll(idle.back().get(), "hi", In(3000)), 0);
    ASSERT_EQ(RecvExact(idle.back().get(), 2, &back, In(3000 * Slowdown())), 0);
  }
  int err = 0;
  Fd blocked = TcpConnect(*host_, Addr::Of("127.0.0.1", 8081), &err);
  ASSERT_TRUE(blocked) << std::strerror(err);
  std::string junk(1 << 20, 'x');
  SendAll(blocked.get(), junk, In(300));  // fills the buffers, then times out
  Fd streaming = TcpConnect(*host_, Addr::Of("127.0.0.1", 8080), &err);
  ASSERT_TRUE(streaming) << std::strerror(err);
  std::atomic<uint64_t> progress{0};
  std::thread stream([&] {
    ExchangeResult r =
        Exchange(streaming.get(), 1, uint64_t{1} << 34, true, In(10000 * Slowdown()));
    progress = r.received;
  });
  for (Deadline dl = In(3000 * Slowdown()); echo.accepted() < 21 && Clock::now() < dl;)
    usleep(2000);
  ASSERT_EQ(echo.accepted(), 21);
  Clock::time_point t0 = Clock::now();
  int rc = d->Stop(5000 * Slowdown());
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_EQ(rc, 0);
  EXPECT_LT(ms, 2000 * Slowdown()) << "exit took " << ms << " ms";
  stream.join();  // ends when the daemon's side of the stream goes away
  release = true;
}

}  // namespace
}  // namespace ringfwd::e2e
