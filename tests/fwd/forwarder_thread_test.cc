// A single_thread forwarder's ring may only be used by the thread that
// created it (IORING_SETUP_SINGLE_ISSUER: a submission from another thread
// fails with EEXIST). The control server's thread reaches the data plane
// through RunOnLoop(), so what it passes must run on the forwarder's thread
// whether or not the loop is running.
#include <atomic>
#include <chrono>
#include <thread>

#include "fwd/forwarder.h"
#include "gtest/gtest.h"

namespace ringfwd {
namespace {

using std::chrono::milliseconds;

// Waits (at most `ms`) for `flag`; true if it was set.
bool WaitFor(const std::atomic<bool>& flag, int ms) {
  for (int i = 0; i < ms && !flag.load(); i++) std::this_thread::sleep_for(milliseconds(1));
  return flag.load();
}

TEST(ForwarderThread, SingleThreadRunsOtherThreadsTasksOnItsOwn) {
  ForwarderOptions opts;
  opts.single_thread = true;
  opts.ring_entries = 64;
  absl::StatusOr<std::unique_ptr<Forwarder>> f = Forwarder::Create(opts);
  ASSERT_TRUE(f.ok()) << f.status();
  const std::thread::id me = std::this_thread::get_id();

  // Before Run(): the task waits for the loop instead of running on the
  // caller's thread (where its ring calls would fail).
  std::thread::id ran_on;
  std::atomic<bool> served{false};
  // A task that makes a ring call, as a table swap does: only the
  // forwarder's thread may.
  auto task = [&](std::thread::id* ran) {
    return [&f, ran] {
      *ran = std::this_thread::get_id();
      io_uring_prep_nop((*f)->ring()->GetSqe());
      EXPECT_EQ((*f)->ring()->Submit(), 1);
    };
  };
  std::thread before([&] {
    (*f)->RunOnLoop(task(&ran_on));
    served = true;
    (*f)->Stop();
  });
  EXPECT_FALSE(WaitFor(served, 100)) << "ran before the loop started";
  absl::Status st = (*f)->Run();
  before.join();
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_TRUE(served.load());
  EXPECT_EQ(ran_on, me);

  // After Run() returned: ServeTasksUntil() on this thread serves it.
  std::atomic<bool> done{false};
  std::thread::id ran_after;
  std::thread after([&] {
    (*f)->RunOnLoop(task(&ran_after));
    done = true;
  });
  EXPECT_FALSE(WaitFor(done, 50)) << "ran with no loop, on the caller's thread";
  (*f)->ServeTasksUntil([&] { return done.load(); });
  after.join();
  EXPECT_EQ(ran_after, me);
}

// Without single_thread, a task passed while no loop runs runs at once on
// the caller's thread (the caller is then the only one at work).
TEST(ForwarderThread, SharedRingRunsTasksInlineWithoutALoop) {
  ForwarderOptions opts;
  opts.ring_entries = 64;
  absl::StatusOr<std::unique_ptr<Forwarder>> f = Forwarder::Create(opts);
  ASSERT_TRUE(f.ok()) << f.status();
  std::thread::id caller, ran_on;
  std::thread t([&] {
    caller = std::this_thread::get_id();
    (*f)->RunOnLoop([&] { ran_on = std::this_thread::get_id(); });
  });
  t.join();
  EXPECT_EQ(ran_on, caller);
}

}  // namespace
}  // namespace ringfwd
