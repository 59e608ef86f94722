#include "fwd/forwarder.h"

#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "fwd/kinds.h"
#include "uring/log.h"
#include "uring/status.h"

namespace ringfwd {
namespace {

constexpr int kTickMs = 100;
// Listener cancels per loop iteration (each is kernel work on this thread).
constexpr size_t kCancelBatch = 256;

// For completions reaped outside the loop (teardown, ServeTasksUntil):
// a connection accepted meanwhile is closed, not forwarded.
void CloseAccepted(const io_uring_cqe& cqe) {
  if (UserData::Unpack(cqe.user_data).kind == kind::kAccept && cqe.res >= 0) Fd stale(cqe.res);
}

int64_t MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

uint64_t InodeOf(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

}  // namespace

size_t RaiseFdLimit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

Forwarder::Forwarder(const ForwarderOptions& opts, std::unique_ptr<Ring> ring)
    : opts_(opts),
      ring_(std::move(ring)),
      tcp_(ring_.get(), opts.max_tcp_flows, opts.pipe_size),
      udp_(ring_.get(), opts.max_udp_flows, int64_t{opts.udp_timeout_s} * 1000000000LL) {
  set_bind_threads(opts.bind_threads);
}

Forwarder::~Forwarder() {
  // Teardown in stages: cancel every request and reap the completions, so
  // the kernel drops its references to our sockets; only then close them.
  // Otherwise an armed accept keeps its listener's port bound until the
  // ring's asynchronous teardown, after the process has already exited.
  // Listeners' accepts (and cancellations a swap left queued) are named by
  // tag: thousands of them by one catch-all cancellation would take seconds.
  std::vector<uint64_t> targets(cancel_queue_.begin(), cancel_queue_.end());
  cancel_queue_.clear();
  for (uint32_t i = 0; i < listeners_.size(); i++) {
    const Listener& l = listeners_[i];
    if (!l.used || !l.armed) continue;
    targets.push_back(ArmTag(i));
  }
  bool reaped = ring_->CancelEverything(1000, targets, CloseAccepted);
  if (!reaped) LOG_WARN("shutdown: io_uring requests still in flight after 1 s");
  tcp_.CloseAll();
  udp_.CloseAll();
  if (tap_) tap_->Shutdown();
}

absl::StatusOr<std::unique_ptr<Forwarder>> Forwarder::Create(const ForwarderOptions& opts) {
  RINGFWD_ASSIGN_OR_RETURN(std::unique_ptr<Ring> ring,
                           Ring::Create(opts.ring_entries, opts.single_thread));
  std::unique_ptr<Forwarder> f(new Forwarder(opts, std::move(ring)));
  f->owner_ = std::this_thread::get_id();
  RINGFWD_ASSIGN_OR_RETURN(std::string cc, PickLoopbackCc(opts.loopback_cc));
  f->host_.set_loopback_cc(cc);
  if (!opts.netns.empty()) {
    RINGFWD_ASSIGN_OR_RETURN(f->netns_, NetNs::Open(opts.netns));
    f->netns_->set_loopback_cc(cc);
  }
  f->wake_.Reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!f->wake_) return ErrnoError(errno, "eventfd");
  f->fd_limit_ = RaiseFdLimit();
  f->tables_ = f->EmptyTables();
  if (opts.tap.mode != TapLinkOptions::Mode::kNone) {
    RINGFWD_ASSIGN_OR_RETURN(f->tap_,
                             TapLink::Create(f->ring_.get(), opts.tap, f->netns_.get(), &f->host_));
  }
  return f;
}

uint32_t Forwarder::CapsFor(PifId pif) const {
  uint32_t base = kCapIpv4 | kCapIpv6 | kCapTcp | kCapUdp | kCapIfname | kCapTxn;
  if (pif == PifId::kHost) return base | (netns_ ? kCapScan : 0);
  if (pif == PifId::kSplice && netns_) return base | kCapScan;
  return 0;
}

TableSet Forwarder::EmptyTables() const {
  TableSet set;
  for (PifId pif : {PifId::kHost, PifId::kSplice}) {
    uint32_t caps = CapsFor(pif);
    if (caps) set.tables.push_back(Table{pif, PifName(pif), caps, {}});
  }
  return set;
}

SocketFactory* Forwarder::ListenSide(PifId pif) {
  if (pif == PifId::kSplice && netns_) return netns_.get();
  return &host_;
}

SocketFactory* Forwarder::ConnectSide(PifId pif) {
  if (pif == PifId::kHost && netns_) return netns_.get();
  return &host_;
}

size_t Forwarder::ListenerBudget() const {
  // Keep a quarter of the descriptors (and some slack for the ring, logs,
  // pools) for connections.
  size_t reserve = fd_limit_ / 4 + 64;
  return fd_limit_ > reserve ? fd_limit_ - reserve : 0;
}

int Forwarder::AddListener(const ListenerKey& key, const ListenerTarget& target,
                           const std::string& label, bool scanned) {
  if (by_key_.size() >= ListenerBudget()) return EMFILE;
  OpenResult r;
  ListenSide(key.pif)->RunSync([&] { r = OpenListener(key); });
  if (!r.fd) {
    LOG_DEBUG("%s: %s %s: %s", label, r.step, key.ToString(), std::strerror(r.err));
    return r.err;
  }
  AttachListener(key, std::move(r.fd), target, label, scanned);
  return 0;
}

uint32_t Forwarder::AttachListener(const ListenerKey& key, Fd fd, const ListenerTarget& target,
                                   const std::string& label, bool scanned, bool defer_arm) {
  uint32_t index;
  if (!free_listeners_.empty()) {
    index = free_listeners_.back();
    free_listeners_.pop_back();
  } else {
    index = listeners_.size();
    listeners_.emplace_back();
  }
  Listener& l = listeners_[index];
  l.used = true;
  l.fd = std::move(fd);
  // Connections accepted on loopback stay on this host (they inherit it).
  if (key.proto == kProtoTcp && !host_.loopback_cc().empty() &&
      (key.addr.IsLoopback() || key.ifname_view() == "lo"))
    if (absl::Status st = SetCongestionControl(l.fd.get(), host_.loopback_cc()); !st.ok())
      LOG_RATELIMITED(log::Level::kWarn, "%s: %s", label, st.message());
  l.key = key;
  l.target = target;
  l.label = label;
  l.armed = false;
  l.paused = false;
  l.disarmed = false;
  l.scanned = scanned;
  l.inode = 0;  // looked up when a scan needs it
  by_key_[key] = index;
  if (defer_arm) {
    // Many listeners at once (a big swap): arm them over the next loop
    // iterations, between data completions. Their sockets already listen,
    // so connections wait in the backlog meanwhile.
    arm_queue_.push_back(ArmItem{index, l.gen});
  } else {
    Arm(index);
  }
  return index;
}

void Forwarder::Disarm(uint32_t index, bool cancel_now) {
  Listener& l = listeners_[index];
  if (l.armed) {
    uint64_t ud = ArmTag(index);
    if (!cancel_now) {
      // Cancelled in batches by ProcessCancels(), between data completions.
      cancel_queue_.push_back(ud);
    } else {
      ring_->PrepCancel(ud);
    }
  }
  l.armed = false;
  l.paused = false;
  l.disarmed = true;
  // Completions of the cancelled request must not match a re-arm: a new
  // generation makes them stale.
  l.gen = (l.gen + 1) & UserData::kGenMask;
}

Fd Forwarder::DetachListener(uint32_t index, bool cancel_now) {
  Listener& l = listeners_[index];
  Disarm(index, cancel_now);
  if (l.key.proto == kProtoUdp) {
    udp_.FlushListener(index);
    if (tap_) tap_->FlushListener(index);
  }
  by_key_.erase(l.key);
  Fd fd = std::move(l.fd);
  l.used = false;
  l.disarmed = false;
  free_listeners_.push_back(index);
  return fd;
}

uint64_t Forwarder::ArmTag(uint32_t index) const {
  const Listener& l = listeners_[index];
  return UserData{l.key.proto == kProtoTcp ? kind::kAccept : kind::kUdpListen, l.gen, index}.Pack();
}

void Forwarder::Arm(uint32_t index) {
  Listener& l = listeners_[index];
  if (l.key.proto == kProtoTcp)
    ring_->PrepMultishotAccept(l.fd.get(), ArmTag(index));
  else
    ring_->PrepPollMultishot(l.fd.get(), POLLIN, ArmTag(index));
  l.armed = true;
}

void Forwarder::RemoveListener(uint32_t index) { ring_->Close(DetachListener(index, false)); }

bool Forwarder::ProcessCancels(size_t max) {
  size_t n = 0;
  while (!cancel_queue_.empty() && n < max) {
    ring_->PrepCancel(cancel_queue_.front());
    cancel_queue_.pop_front();
    n++;
  }
  if (n) ring_->Submit();
  return !cancel_queue_.empty();
}

void Forwarder::DrainCancels() {
  ProcessCancels(SIZE_MAX);
  ring_->Submit();
}

bool Forwarder::ArmQueued() {
  // Each arm is a non-blocking accept attempt plus a poll registration in
  // the kernel; a batch per iteration keeps the loop responsive.
  constexpr size_t kArmBatch = 256;
  size_t n = 0;
  while (!arm_queue_.empty() && n < kArmBatch) {
    ArmItem it = arm_queue_.front();
    arm_queue_.pop_front();
    Listener& l = listeners_[it.index];
    if (!l.used || l.gen != it.gen || l.armed || l.disarmed) continue;
    Arm(it.index);
    n++;
  }
  if (n) ring_->Submit();
  return !arm_queue_.empty();
}

absl::Status Forwarder::Start(const TableSet& tables) {
  RINGFWD_RETURN_IF_ERROR(ValidateTableSet(tables, Context()));
  TableSet active = EmptyTables();
  for (const Table& t : tables.tables) {
    Table* dst = active.Find(t.pif);
    if (!dst) {
      if (t.rules.empty()) continue;
      return absl::InvalidArgumentError(
          absl::StrCat(PifName(t.pif), " rules need a target namespace (--netns)"));
    }
    dst->rules = t.rules;
  }
  for (const Table& t : active.tables) {
    for (const Rule& rule : t.rules) {
      std::string label = RuleText(rule);
      if (rule.scan()) continue;
      RuleBindReport rep;
      for (uint32_t p = rule.first; p <= rule.last; p++) {
        int err = AddListener(KeyFor(t.pif, rule, p), TargetFor(rule, p), label, false);
        if (err == 0) {
          rep.bound++;
          continue;
        }
        if (rep.failed++ == 0) {
          rep.first_errno = err;
          rep.first_failed_port = p;
        }
      }
      if (!rep.failed) continue;
      std::string what = absl::StrCat(PifName(t.pif), " rule ", label, ": ", rep.failed, " of ",
                                      rep.failed + rep.bound, " ports failed, first ",
                                      rep.first_failed_port, ": ", std::strerror(rep.first_errno));
      if (rep.first_errno == EMFILE && by_key_.size() >= ListenerBudget())
        absl::StrAppend(&what, " (descriptor budget: ", ListenerBudget(),
                        " listeners, a quarter of the open-file limit kept for connections)");
      bool budget_only = rep.first_errno == EMFILE && by_key_.size() >= ListenerBudget();
      if (!rule.weak() || (rep.bound == 0 && !budget_only)) {
        if (rule.weak() && rep.bound == 0)
          what = absl::StrCat(what, " (best effort, but no port bound)");
        return absl::Status(ErrnoToCode(rep.first_errno), what);
      }
      LOG_WARN("%s", what);
    }
  }
  {
    std::lock_guard<std::mutex> lock(tables_mu_);
    tables_ = std::move(active);
  }
  if (netns_) {
    // Scanning sockets for SCAN rules, one per side (SCAN needs a namespace).
    RINGFWD_ASSIGN_OR_RETURN(diag_host_, OpenSockDiag());
    absl::StatusOr<Fd> nd = absl::InternalError("no namespace");
    netns_->RunSync([&] { nd = OpenSockDiag(); });
    RINGFWD_RETURN_IF_ERROR(nd.status());
    diag_target_ = std::move(*nd);
  }
  SetScanRules(tables_);
  if (!scan_rules_.empty()) Rescan();
  return absl::OkStatus();
}

void Forwarder::SetScanRules(const TableSet& tables) {
  scan_rules_.clear();
  for (const Table& t : tables.tables)
    for (const Rule& rule : t.rules)
      if (rule.scan()) scan_rules_.push_back(ScanRule{t.pif, rule, RuleText(rule)});
}

std::vector<ListenerKey> Forwarder::ListenerKeys() {
  std::vector<ListenerKey> keys;
  RunOnLoop([&] {
    for (const auto& [key, index] : by_key_) keys.push_back(key);
  });
  return keys;
}

TableSet Forwarder::Tables() const {
  std::lock_guard<std::mutex> lock(tables_mu_);
  return tables_;
}

void Forwarder::RunOnLoop(const std::function<void()>& fn) {
  std::promise<void> done;
  bool here;
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    // Without a loop, the caller is the only thread at work; but only the
    // forwarder's own thread may touch a single-thread ring.
    here = !loop_running_ && (!opts_.single_thread || std::this_thread::get_id() == owner_);
    if (!here) tasks_.emplace_back(&fn, &done);
  }
  if (here) {
    fn();
    return;
  }
  auto fut = done.get_future();
  uint64_t one = 1;
  ssize_t ignored = write(wake_.get(), &one, sizeof(one));
  (void)ignored;
  fut.wait();
}

void Forwarder::RunLoopTasks() {
  std::vector<std::pair<const std::function<void()>*, std::promise<void>*>> tasks;
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    tasks.swap(tasks_);
  }
  for (auto& [fn, done] : tasks) {
    (*fn)();
    done->set_value();
  }
}

void Forwarder::Stop() {
  stop_.store(true);
  uint64_t one = 1;
  ssize_t ignored = write(wake_.get(), &one, sizeof(one));
  (void)ignored;
}

void Forwarder::ServeTasksUntil(const std::function<bool()>& done) {
  while (!done()) {
    RunLoopTasks();
    // A wait: the completion work of what the tasks submitted (a cancelled
    // accept letting go of its socket) runs there on a single-thread ring.
    ring_->RunOnce(10, CloseAccepted);
  }
  RunLoopTasks();
}

absl::Status Forwarder::Run() {
  ring_->PrepPollMultishot(wake_.get(), POLLIN, UserData{kind::kWake, 0, 0}.Pack());
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    loop_running_ = true;
  }
  now_ns_ = MonoNs();
  next_expire_ns_ = now_ns_ + 1000000000LL;
  next_scan_ns_ = now_ns_ + int64_t{opts_.scan_interval_ms} * 1000000;
  while (!stop_.load(std::memory_order_relaxed)) {
    bool backlog = tcp_.HasReady() || !arm_queue_.empty() || !cancel_queue_.empty() ||
                   (tap_ && tap_->HasWork());
    int timeout = backlog ? 0 : kTickMs;
    int n = ring_->RunOnce(timeout, [this](const io_uring_cqe& cqe) { Dispatch(cqe); });
    if (n < 0 && n != -ETIME && n != -EINTR && n != -EAGAIN && n != -EBUSY)
      return ErrnoError(-n, "io_uring wait");
    now_ns_ = MonoNs();
    tcp_.RunReady();
    if (tap_) tap_->Process(now_ns_);
    ProcessCancels(kCancelBatch);
    ArmQueued();
    Tick(now_ns_);
    // Every frame this iteration queued for the guest, in one submission
    // (the next wait submits them).
    if (tap_) tap_->Flush();
  }
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    loop_running_ = false;
  }
  RunLoopTasks();  // whoever waits on a task must not wait forever
  return absl::OkStatus();
}

void Forwarder::Dispatch(const io_uring_cqe& cqe) {
  UserData ud = UserData::Unpack(cqe.user_data);
  switch (ud.kind) {
    case kind::kAccept: {
      if (ud.index >= listeners_.size() || !listeners_[ud.index].used ||
          listeners_[ud.index].gen != ud.gen) {
        if (cqe.res >= 0) Fd stale(cqe.res);  // accepted on a listener being removed
        return;
      }
      Listener& l = listeners_[ud.index];
      if (!(cqe.flags & IORING_CQE_F_MORE)) l.armed = false;
      if (cqe.res >= 0) {
        OnAccept(ud.index, Fd(cqe.res));
      } else if (cqe.res == -EMFILE || cqe.res == -ENFILE || cqe.res == -ENOBUFS ||
                 cqe.res == -ENOMEM) {
        // Out of descriptors: stop accepting on this listener (the kernel
        // queues or refuses new connections) and retry on the tick.
        LOG_RATELIMITED(log::Level::kWarn, "%s: accept: %s; pausing this listener", l.label,
                        std::strerror(-cqe.res));
        if (l.armed) ring_->PrepCancel(cqe.user_data);
        l.armed = false;
        l.paused = true;
        any_paused_ = true;
        next_resume_ns_ = std::max(next_resume_ns_, now_ns_ + kResumeIntervalNs);
        return;
      } else if (cqe.res == -EINVAL && ring_->accept_poll_first()) {
        // A kernel without IORING_ACCEPT_POLL_FIRST: arm without it.
        LOG_DEBUG("multishot accept: poll-first refused, arming without it");
        ring_->DisableAcceptPollFirst();
      } else if (cqe.res != -ECANCELED) {
        LOG_RATELIMITED(log::Level::kWarn, "%s: accept: %s", l.label, std::strerror(-cqe.res));
        if (cqe.res == -EINVAL) {
          l.paused = true;  // retried on the tick, never in a tight loop
          any_paused_ = true;
          next_resume_ns_ = std::max(next_resume_ns_, now_ns_ + kResumeIntervalNs);
          return;
        }
      }
      if (!l.armed && !l.paused && !l.disarmed && cqe.res != -ECANCELED) Arm(ud.index);
      return;
    }
    case kind::kUdpListen: {
      if (ud.index >= listeners_.size() || !listeners_[ud.index].used ||
          listeners_[ud.index].gen != ud.gen)
        return;
      Listener& l = listeners_[ud.index];
      if (!(cqe.flags & IORING_CQE_F_MORE)) {
        l.armed = false;
        if (cqe.res != -ECANCELED && !l.disarmed) Arm(ud.index);
      }
      if (cqe.res < 0) return;
      if (l.key.pif == PifId::kHost && l.target.addr.IsUnspecified6() && Context().tap_guest) {
        tap_->HandleInboundUdp(
            TapInboundListener{ud.index, l.fd.get(), l.key.family(), l.target.port, &l.label},
            now_ns_);
        return;
      }
      UdpListenerInfo info{ud.index, l.gen, l.fd.get(), ConnectSide(l.key.pif), l.target, &l.label};
      udp_.HandleListener(info, now_ns_);
      return;
    }
    case kind::kUdpReply:
      udp_.HandleCompletion(cqe, ud, now_ns_);
      return;
    case kind::kTcpConnect:
    case kind::kTcpIn0:
    case kind::kTcpIn1:
    case kind::kTcpOut0:
    case kind::kTcpOut1:
      tcp_.HandleCompletion(cqe, ud);
      return;
    case kind::kWake: {
      uint64_t v;
      ssize_t ignored = read(wake_.get(), &v, sizeof(v));
      (void)ignored;
      if (!(cqe.flags & IORING_CQE_F_MORE))
        ring_->PrepPollMultishot(wake_.get(), POLLIN, UserData{kind::kWake, 0, 0}.Pack());
      RunLoopTasks();
      return;
    }
    default:
      if (ud.kind >= kind::kTapFirst && ud.kind <= kind::kTapLast && tap_)
        tap_->Dispatch(cqe, ud, now_ns_);
      return;
  }
}

void Forwarder::OnAccept(uint32_t index, Fd client) {
  Listener& l = listeners_[index];
  // To the guest over the tap link: a VM's HOST rules without a target
  // address, and rules whose target is the guest's own address.
  if (tap_ && l.key.pif == PifId::kHost &&
      ((l.target.addr.IsUnspecified6() && Context().tap_guest) ||
       tap_->IsGuestAddress(l.target.addr))) {
    tap_->HandleInboundTcp(std::move(client), l.target.port, now_ns_);
    return;
  }
  // The default target is the loopback of the target side, of the family of
  // the accepted connection (a dual-stack listener can see either).
  Addr6 taddr = l.target.addr;
  if (taddr.IsUnspecified6()) {
    bool v4 = l.key.family() == AF_INET;
    if (l.key.dual_stack) {
      SockAddr local;
      local.len = sizeof(local.ss);
      if (getsockname(client.get(), local.sa(), &local.len) == 0) v4 = local.addr().IsV4();
    }
    taddr = v4 ? Addr6::Loopback4() : Addr6::Loopback6();
  }
  tcp_.Start(std::move(client), ConnectSide(l.key.pif), SockAddr::From(taddr, l.target.port),
             l.label);
}

void Forwarder::Tick(int64_t now_ns) {
  if (tick_hook_) tick_hook_();
  if (tap_) tap_->Tick(now_ns);
  // Listeners paused for lack of descriptors are retried every
  // kResumeIntervalNs, not on every loop iteration: while descriptors stay
  // short each retry fails at once, and retrying in a tight loop would spin.
  if (any_paused_ && now_ns >= next_resume_ns_) {
    any_paused_ = false;
    next_resume_ns_ = now_ns + kResumeIntervalNs;
    for (uint32_t i = 0; i < listeners_.size(); i++) {
      Listener& l = listeners_[i];
      if (!l.used || !l.paused || l.disarmed) continue;
      l.paused = false;
      Arm(i);
    }
  }
  if (now_ns >= next_expire_ns_) {
    next_expire_ns_ = now_ns + 1000000000LL;
    udp_.Expire(now_ns);
  }
  if (!scan_rules_.empty() && !scan_paused_ && now_ns >= next_scan_ns_) {
    next_scan_ns_ = now_ns + int64_t{opts_.scan_interval_ms} * 1000000;
    Rescan();
  }
}

void Forwarder::Rescan() {
  // Our own listeners must not count as the other side listening.
  absl::flat_hash_set<uint64_t> ours;
  for (Listener& l : listeners_) {
    if (!l.used) continue;
    if (!l.inode) l.inode = InodeOf(l.fd.get());
    ours.insert(l.inode);
  }
  PortSet ports[2][2];  // [host=0/target=1][tcp=0/udp=1]
  bool have[2][2] = {{false, false}, {false, false}};
  for (const ScanRule& s : scan_rules_) {
    // HOST rules forward into the target side: scan it. SPLICE: scan the host.
    int side = s.pif == PifId::kHost ? 1 : 0;
    int proto = s.rule.proto == kProtoTcp ? 0 : 1;
    if (!have[side][proto]) {
      int diag = side ? diag_target_.get() : diag_host_.get();
      absl::StatusOr<PortSet> got = ListeningPorts(diag, s.rule.proto, ours);
      if (!got.ok()) {
        LOG_RATELIMITED(log::Level::kWarn, "scan: %s", got.status().message());
        return;
      }
      ports[side][proto] = *got;
      have[side][proto] = true;
    }
    const PortSet& listening = ports[side][proto];
    for (uint32_t p = s.rule.first; p <= s.rule.last; p++) {
      ListenerKey key = KeyFor(s.pif, s.rule, p);
      auto it = by_key_.find(key);
      bool want = listening.test(s.rule.TargetPort(p));
      if (want && it == by_key_.end()) {
        int err = AddListener(key, TargetFor(s.rule, p), s.label, true);
        if (err == 0)
          LOG_INFO("%s: target side listens on %d, forwarding port %d", s.label,
                   s.rule.TargetPort(p), p);
        else
          LOG_RATELIMITED(log::Level::kWarn, "%s: port %d: %s", s.label, p, std::strerror(err));
      } else if (!want && it != by_key_.end() && listeners_[it->second].scanned) {
        LOG_INFO("%s: target side stopped listening on %d, closing port %d", s.label,
                 s.rule.TargetPort(p), p);
        RemoveListener(it->second);
      }
    }
  }
}

}  // namespace ringfwd
