// Forwarder: the data-plane thread's state and its event loop.
//
// Theory of operation. One io_uring ring serves everything: a multishot
// accept on every TCP listener, a multishot poll on every UDP listener, the
// sockets of TCP and UDP flows (see tcp_flow.h, udp_flow.h), and an eventfd
// through which other threads wake the loop (stop, and later table swaps).
// Each loop iteration submits what is queued, waits for completions (at most
// a tick), dispatches them by the kind in their user_data, then runs the
// flows that still have work, then the periodic jobs of the tick: resuming
// listeners paused for lack of descriptors, expiring idle UDP flows, and
// rescanning the target side for SCAN rules.
//
// Listeners live in slots with generations, found by key (listener.h). HOST
// listeners are opened on the host and connect on the target side (the
// namespace, or the host itself); SPLICE listeners are opened in the
// namespace and connect on the host.
#pragma once

#include <sys/eventfd.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "fwd/listener.h"
#include "fwd/netns.h"
#include "fwd/rule.h"
#include "fwd/scan.h"
#include "fwd/tap_link.h"
#include "fwd/tcp_flow.h"
#include "fwd/udp_flow.h"
#include "uring/fd.h"
#include "uring/ring.h"

namespace ringfwd {

struct ForwarderOptions {
  std::string netns;  // NAME, PATH or PID; empty: the target side is the host
  size_t max_tcp_flows = 16384;
  size_t max_udp_flows = 4096;
  int udp_timeout_s = 180;
  size_t pipe_size = 1 << 20;
  // TCP congestion control of connections that stay on this host's loopback
  // (see PickLoopbackCc): "system" leaves the system's default.
  std::string loopback_cc = kDefaultLoopbackCc;
  unsigned ring_entries = 4096;
  // The thread that calls Create() also runs Run() and destroys the
  // forwarder (as ringfwd does): the ring keeps completion work for its
  // waits (see Ring::Create). Other threads may still RunOnLoop() and Stop().
  bool single_thread = false;
  int scan_interval_ms = 1000;
  // Threads that bind a swap's new host ports when there are thousands.
  size_t bind_threads = 2;
  // Tap mode: a Layer-2 link for the guest (mode kNone: off).
  TapLinkOptions tap;
};

// Per-rule outcome of opening listeners.
struct RuleBindReport {
  uint32_t bound = 0;
  uint32_t failed = 0;
  int first_errno = 0;
  uint16_t first_failed_port = 0;
};

class Forwarder {
 public:
  // Sets up the ring, the target side (namespace thread) and the eventfd.
  static absl::StatusOr<std::unique_ptr<Forwarder>> Create(const ForwarderOptions& opts);
  ~Forwarder();

  // The caps the daemon offers for `pif` (HOST always, SPLICE with a
  // namespace); 0 if the pif is not served.
  uint32_t CapsFor(PifId pif) const;
  // An empty table set with every served pif, names and caps filled in.
  TableSet EmptyTables() const;
  TargetContext Context() const {
    return TargetContext{netns_ != nullptr, tap_ && !netns_ && tap_->ServesHostRules()};
  }

  // Validates `tables` and opens their listeners (not SCAN rules: those open
  // as the target side starts listening). A bind failure of a non-WEAK rule,
  // or a WEAK rule that bound nothing, fails the start with the rule, address,
  // port and errno; a WEAK rule's partial failure is logged.
  absl::Status Start(const TableSet& tables);

  // Runs the loop on the calling thread until Stop(). Returns an error only if
  // the ring itself fails.
  absl::Status Run();
  // Asks Run() to return; async-signal-safe and thread-safe.
  void Stop();
  // Calls `hook` on the loop thread after each batch of completions, and at
  // least every 100 ms.
  void SetTickHook(std::function<void()> hook) { tick_hook_ = std::move(hook); }

  // Runs `fn` on the loop thread between completions and waits for it: the
  // control submission through which table swaps reach the data plane. Runs
  // `fn` on the caller's thread when the loop is not running, unless the
  // forwarder is single_thread and the caller is not its thread: then `fn`
  // waits for Run() or ServeTasksUntil() on that thread. Thread-safe.
  void RunOnLoop(const std::function<void()>& fn);

  // For the forwarder's own thread while Run() is not running (before it,
  // or after it returned): runs what other threads pass to RunOnLoop() and
  // reaps the ring's completions (closing accepted sockets, forwarding
  // nothing), until `done` returns true. A single_thread forwarder's control
  // server is stopped this way, so a transaction in progress finishes.
  void ServeTasksUntil(const std::function<bool()>& done);

  // The data-plane ring; only from the forwarder's thread (or RunOnLoop()).
  Ring* ring() { return ring_.get(); }

  // The keys of every open listener (armed or not). Thread-safe.
  std::vector<ListenerKey> ListenerKeys();

  // A copy of the active tables. Thread-safe.
  TableSet Tables() const;
  // The active tables; only from the loop thread or before Run().
  const TableSet& tables() const { return tables_; }
  const TcpStats& tcp_stats() const { return tcp_.stats(); }
  const UdpStats& udp_stats() const { return udp_.stats(); }
  size_t listener_count() const { return by_key_.size(); }
  // Threads for binding many new host ports in a swap (at least 1). Thread-safe.
  void set_bind_threads(size_t n) { bind_threads_.store(n < 1 ? 1 : n); }
  size_t bind_threads() const { return bind_threads_.load(); }
  // The tap link, or nullptr when tap mode is off. Loop thread only.
  const TapLink* tap_link() const { return tap_.get(); }

 private:
  struct Listener {
    bool used = false;
    uint32_t gen = 0;
    Fd fd;
    ListenerKey key;
    ListenerTarget target;
    std::string label;  // the rule's text form
    bool armed = false;
    bool paused = false;    // out of descriptors; retried on the tick
    bool scanned = false;   // opened by a SCAN rule
    bool disarmed = false;  // kept open but not accepting (old-only, mid-swap)
    uint64_t inode = 0;
  };
  friend class TableSwap;
  struct ScanRule {
    PifId pif;
    Rule rule;
    std::string label;
  };

  Forwarder(const ForwarderOptions& opts, std::unique_ptr<Ring> ring);
  SocketFactory* ListenSide(PifId pif);
  SocketFactory* ConnectSide(PifId pif);
  // Opens the listener for `key` on its side and registers it; returns the
  // errno of the failing step (0 on success).
  int AddListener(const ListenerKey& key, const ListenerTarget& target, const std::string& label,
                  bool scanned);
  // Registers an open socket as listener for `key` and arms it.
  // With `defer_arm`, the accept is armed by ArmQueued() in a later batch.
  uint32_t AttachListener(const ListenerKey& key, Fd fd, const ListenerTarget& target,
                          const std::string& label, bool scanned, bool defer_arm = false);
  // Arms a batch of queued listeners; true if more remain.
  bool ArmQueued();
  // Submits up to `max` queued listener cancels; true if more remain.
  bool ProcessCancels(size_t max);
  // Submits every queued cancel now.
  void DrainCancels();
  // Stops accepting on the listener; the socket stays open (and bound). The
  // cancel is queued for ProcessCancels(), or with `cancel_now` prepared at
  // once (the caller submits).
  void Disarm(uint32_t index, bool cancel_now = false);
  // Unregisters the listener and returns its socket, its accept cancelled as
  // in Disarm(). Closing the socket frees its port only once the cancel has
  // been submitted: the kernel's request holds a reference until then.
  Fd DetachListener(uint32_t index, bool cancel_now);
  void RemoveListener(uint32_t index);
  void SetScanRules(const TableSet& tables);
  void RunLoopTasks();
  // The user_data of listener `index`'s armed request (accept or poll).
  uint64_t ArmTag(uint32_t index) const;
  void Arm(uint32_t index);
  void OnAccept(uint32_t index, Fd client);
  void Dispatch(const io_uring_cqe& cqe);
  void Tick(int64_t now_ns);
  void Rescan();
  size_t ListenerBudget() const;

  ForwarderOptions opts_;
  std::atomic<size_t> bind_threads_{2};
  // Declared before the ring, so destroyed after it: the ring's teardown
  // ends the reads that hold the link's buffers.
  std::unique_ptr<TapLink> tap_;
  std::unique_ptr<Ring> ring_;
  HostSockets host_;
  std::unique_ptr<NetNs> netns_;
  Fd wake_;
  std::atomic<bool> stop_{false};
  TableSet tables_;

  std::vector<Listener> listeners_;
  std::vector<uint32_t> free_listeners_;
  absl::flat_hash_map<ListenerKey, uint32_t> by_key_;
  size_t fd_limit_ = 0;

  std::vector<ScanRule> scan_rules_;
  Fd diag_host_, diag_target_;

  TcpFlows tcp_;
  UdpFlows udp_;
  int64_t now_ns_ = 0;
  int64_t next_expire_ns_ = 0;
  int64_t next_scan_ns_ = 0;
  bool any_paused_ = false;
  int64_t next_resume_ns_ = 0;  // earliest retry of paused listeners
  static constexpr int64_t kResumeIntervalNs = 50 * 1000000LL;
  struct ArmItem {
    uint32_t index;
    uint32_t gen;
  };
  std::deque<ArmItem> arm_queue_;
  std::deque<uint64_t> cancel_queue_;  // user_data of listener requests to cancel
  std::function<void()> tick_hook_;
  bool scan_paused_ = false;  // during a table swap

  mutable std::mutex tasks_mu_;
  std::vector<std::pair<const std::function<void()>*, std::promise<void>*>> tasks_;
  bool loop_running_ = false;     // guarded by tasks_mu_
  std::thread::id owner_;         // the thread that created the forwarder
  mutable std::mutex tables_mu_;  // guards tables_ writes from the loop vs Tables()
};

// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
size_t RaiseFdLimit();

}  // namespace ringfwd
