#include "uring/sandbox.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "uring/ring.h"

namespace ringfwd {
namespace {

// Runs `body` in a forked child; returns its exit code (or 128+signal).
template <typename F>
int InChild(F body) {
  pid_t pid = fork();
  if (pid == 0) _exit(body());
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(Sandbox, SeccompRefusesWhatTheDaemonDoesNotUse) {
  if (std::getenv("RINGFWD_ASAN")) GTEST_SKIP() << "the sanitizer runtime makes its own syscalls";
  int code = InChild([] {
    if (!InstallSeccomp().ok()) return 10;
    // Forwarding's own calls still work...
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (s < 0) return 11;
    int p[2];
    if (pipe2(p, O_NONBLOCK) < 0) return 12;
    // ...and what it never needs is refused with EPERM, not a crash.
    char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
    execv("/bin/true", argv);
    if (errno != EPERM) return 13;
    if (syscall(SYS_fork) != -1 || errno != EPERM) return 14;
    if (syscall(SYS_ptrace, 0, 0, 0, 0) != -1 || errno != EPERM) return 15;
    return 0;
  });
  EXPECT_EQ(code, 0);
}

TEST(Sandbox, RingSetupDeniedGivesAClearReason) {
  int code = InChild([] {
    if (!DenySyscall(SYS_io_uring_setup, EPERM).ok()) return 10;
    auto ring = Ring::Create(64);
    if (ring.ok()) return 11;
    std::string msg(ring.status().message());
    std::fprintf(stderr, "%s\n", msg.c_str());
    return msg.find("io_uring") != std::string::npos && msg.find("seccomp") != std::string::npos
               ? 0
               : 12;
  });
  EXPECT_EQ(code, 0);
}

TEST(Sandbox, DaemonWithoutIoUringExitsWithOneLine) {
  std::string bin = testing::BinDir() + "/ringfwd";
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], STDERR_FILENO);
    close(pipefd[0]);
    if (!DenySyscall(SYS_io_uring_setup, ENOSYS).ok()) _exit(99);
    execl(bin.c_str(), "ringfwd", "-t", "127.0.0.1/40080:40081", nullptr);
    _exit(98);
  }
  close(pipefd[1]);
  std::string err;
  char buf[512];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof(buf))) > 0) err.append(buf, n);
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(err.find("ringfwd: "), std::string::npos) << err;
  EXPECT_NE(err.find("io_uring"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

TEST(Sandbox, ParsesRunAs) {
  auto a = ParseRunAs("65534:65533");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->uid, 65534u);
  EXPECT_EQ(a->gid, 65533u);
  auto b = ParseRunAs("nobody");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->uid, 65534u);
  EXPECT_FALSE(ParseRunAs("no-such-user-here").ok());
  EXPECT_FALSE(ParseRunAs("nobody:no-such-group-here").ok());
}

}  // namespace
}  // namespace ringfwd
