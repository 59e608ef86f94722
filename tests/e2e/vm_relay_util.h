// A namespace's kernel as the VM behind --qemu-socket: a tap device in the
// namespace, and a thread relaying its frames to and from the daemon's
// stream socket in QEMU's framing (4-byte big-endian length, then the
// frame). The namespace's TCP then runs over the stream as a VM's would.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "tests/e2e/e2e_util.h"
#include "uring/fd.h"

namespace ringfwd::e2e {

class VmRelay {
 public:
  // Creates tap `dev` in `ns` with `mac`, MTU `mtu`, address `cidr` and a
  // default route via `gateway`, connects to `socket_path` (waiting up to 3
  // s for it to appear) and starts relaying. nullptr and `*error` set on
  // failure.
  static std::unique_ptr<VmRelay> Start(const TempNetns& ns, const std::string& dev,
                                        const std::string& mac, int mtu, const std::string& cidr,
                                        const std::string& gateway, const std::string& socket_path,
                                        std::string* error);
  ~VmRelay();  // stops the relay, closes both ends
  VmRelay(const VmRelay&) = delete;
  VmRelay& operator=(const VmRelay&) = delete;

  uint64_t frames_to_daemon() const { return to_daemon_.load(); }
  uint64_t frames_from_daemon() const { return from_daemon_.load(); }
  // Why the relay stopped early (empty while it runs).
  std::string error() const;

 private:
  VmRelay() = default;
  void Run();
  Fd tap_, sock_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> to_daemon_{0}, from_daemon_{0};
  std::atomic<bool> failed_{false};
  std::string error_;  // written by the relay thread before failed_
  std::thread thread_;
};

}  // namespace ringfwd::e2e
