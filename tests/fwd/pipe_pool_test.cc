// PipePool: the pipe size a user asks for, and what happens when the kernel
// refuses it.
#include "fwd/pipe_pool.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace ringfwd {
namespace {

// Removes CAP_SYS_RESOURCE from this thread's effective set (as --runas
// does with every capability). False if it cannot.
bool DropSysResource() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &hdr, data) != 0) return false;
  data[CAP_SYS_RESOURCE / 32].effective &= ~(1u << (CAP_SYS_RESOURCE % 32));
  return syscall(SYS_capset, &hdr, data) == 0;
}

TEST(PipePool, PipesGetTheSizeAsked) {
  size_t max = PipeMaxSize();
  ASSERT_GE(max, 256u << 10);
  PipePool pool(256 << 10, 4);
  Pipe p;
  ASSERT_TRUE(pool.Get(&p));
  EXPECT_EQ(fcntl(p.w.get(), F_GETPIPE_SZ), 256 << 10);
  EXPECT_EQ(pool.capacity(), 256u << 10);
  pool.Put(std::move(p));
  // The pipe comes back from the pool, not as a new one.
  Pipe again;
  ASSERT_TRUE(pool.Get(&again));
  EXPECT_EQ(pool.live(), 1u);
}

TEST(PipePool, PrimeMakesOnePipeUpFront) {
  PipePool pool(128 << 10, 4);
  pool.Prime();
  EXPECT_EQ(pool.live(), 1u);
  EXPECT_EQ(pool.idle(), 1u);
  EXPECT_EQ(pool.capacity(), 128u << 10);
}

// Without CAP_SYS_RESOURCE a size above fs.pipe-max-size is refused; the pool
// then uses that maximum, not the kernel's 64 KiB default.
TEST(PipePool, SizeAboveTheMaximumFallsBackToIt) {
  size_t max = PipeMaxSize();
  if (max == 0 || max > (64u << 20)) GTEST_SKIP() << "fs.pipe-max-size " << max;
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (!DropSysResource()) _exit(2);
    PipePool pool(max * 4, 4);
    Pipe p;
    if (!pool.Get(&p)) _exit(3);
    int got = fcntl(p.w.get(), F_GETPIPE_SZ);
    if (got != static_cast<int>(max)) _exit(4);
    if (pool.capacity() != max || pool.pipe_size() != max) _exit(5);
    // The next pipe is asked for the maximum straight away.
    Pipe q;
    if (!pool.Get(&q) || fcntl(q.w.get(), F_GETPIPE_SZ) != static_cast<int>(max)) _exit(6);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  // 2: capset failed; 4: the pipe kept the kernel's default size.
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace ringfwd
