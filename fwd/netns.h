// Sockets on either side of the forwarder.
//
// A socket stays in the network namespace it was created in, so the
// forwarder never switches namespaces on its data-plane thread. A
// SocketFactory makes sockets on one side: HostSockets in the daemon's own
// namespace, NetNs in a target namespace. NetNs owns a thread that entered
// the namespace once (setns) and runs work there; sockets for new connections
// come from a small pre-opened pool it refills in the background, so a
// connection costs no round trip to that thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "uring/fd.h"

namespace ringfwd {

class SocketFactory {
 public:
  virtual ~SocketFactory() = default;
  // A new non-blocking, close-on-exec socket on this side; stream sockets
  // come with TCP_NODELAY, SO_OOBINLINE and TCP_INQ set. `loopback`: it will
  // connect to a loopback address, so it gets the loopback congestion
  // control, if one is set.
  virtual absl::StatusOr<Fd> Socket(int family, int type, bool loopback = false) = 0;
  // Runs `fn` on this side (inside the namespace, if any) and waits for it.
  virtual void RunSync(const std::function<void()>& fn) = 0;
  // A short name for logs: "host" or "namespace NAME".
  virtual std::string Name() const = 0;

  // TCP congestion control for stream sockets that stay on this host's
  // loopback (empty: the system's default). Set before the first Socket().
  void set_loopback_cc(std::string cc) { loopback_cc_ = std::move(cc); }
  const std::string& loopback_cc() const { return loopback_cc_; }

 protected:
  // The congestion control to set on a new socket (empty: none).
  const std::string& CcFor(bool loopback) const {
    static const std::string kNone;
    return loopback ? loopback_cc_ : kNone;
  }

 private:
  std::string loopback_cc_;
};

// The daemon's own namespace: plain socket(2).
class HostSockets : public SocketFactory {
 public:
  absl::StatusOr<Fd> Socket(int family, int type, bool loopback = false) override;
  void RunSync(const std::function<void()>& fn) override { fn(); }
  std::string Name() const override { return "host"; }
};

class NetNs : public SocketFactory {
 public:
  // Opens a namespace given as a name (/run/netns/NAME), a path to a
  // namespace file, or a pid (/proc/PID/ns/net), starts its thread and brings
  // its loopback interface up. Errors name what was tried.
  static absl::StatusOr<std::unique_ptr<NetNs>> Open(const std::string& spec);
  ~NetNs() override;

  absl::StatusOr<Fd> Socket(int family, int type, bool loopback = false) override;
  void RunSync(const std::function<void()>& fn) override;
  std::string Name() const override { return name_; }

 private:
  NetNs() = default;
  void ThreadMain(int nsfd, std::promise<absl::Status>* started);
  void Refill();

  // A pool of ready sockets for each (family, type, loopback) the data path
  // asks for.
  struct Pool {
    int family;
    int type;
    bool loopback;
    std::vector<Fd> fds;
    bool refill_queued = false;
  };
  static constexpr size_t kPoolTarget = 64;

  std::string name_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // guarded by mu_
  std::vector<Pool> pools_;                  // guarded by mu_
  bool stop_ = false;                        // guarded by mu_
};

// Sets congestion control `cc` on TCP socket `fd`; an error names it.
absl::Status SetCongestionControl(int fd, const std::string& cc);

// The default congestion control of loopback hops: reno, always built in.
// The system's default may pace (bbr does: a timer per segment, on a hop
// with no queue to spare) or leave slow start early on a delay signal
// (cubic's HyStart): bbr cost a fifth to two fifths more CPU per GiB here.
inline constexpr char kDefaultLoopbackCc[] = "reno";

// The congestion control for loopback hops: `wanted` if this kernel has it,
// "" for "system" (the system's default), an error naming it otherwise.
absl::StatusOr<std::string> PickLoopbackCc(const std::string& wanted);

// Brings interface "lo" up in the calling thread's namespace.
absl::Status BringLoopbackUp();

}  // namespace ringfwd
