#include "fwd/table_swap.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "uring/log.h"

namespace ringfwd {
namespace {

// New host ports bound in parallel once a swap has this many.
constexpr size_t kParallelBindMin = 512;

// A port-level identity: two keys with the same one may collide in bind().
struct PortId {
  PifId pif;
  uint8_t proto;
  uint16_t port;
  friend bool operator==(const PortId&, const PortId&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const PortId& p) {
    return H::combine(std::move(h), p.pif, p.proto, p.port);
  }
};

PortId PortOf(const ListenerKey& k) { return PortId{k.pif, k.proto, k.port}; }

// Does SCAN rule `r` of table `pif` cover listener key `k`?
bool ScanCovers(PifId pif, const Rule& r, const ListenerKey& k) {
  return k.pif == pif && r.scan() && k.proto == r.proto && k.addr == r.addr &&
         k.dual_stack == r.dual_stack() && k.ifname == r.ifname && k.port >= r.first &&
         k.port <= r.last;
}

}  // namespace

TableSwap::~TableSwap() {
  if (applied_) Finalize();
}

SwapResult TableSwap::Apply(const std::vector<SwapBlock>& blocks) {
  SwapResult res;
  // 1. The shadow set, validated before any socket is touched.
  old_tables_ = fwd_->Tables();
  new_tables_ = old_tables_;
  absl::flat_hash_set<uint8_t> seen;
  for (const SwapBlock& b : blocks) {
    if (!seen.insert(b.pif).second) {
      res.code = SwapCode::kRejected;
      res.message = absl::StrCat("pif ", PifName(PifId(b.pif)), " appears twice in the update");
      return res;
    }
    Table* t = new_tables_.Find(PifId(b.pif));
    if (!t) {
      res.code = SwapCode::kRejected;
      res.message = absl::StrCat("unknown pif ", b.pif, " (", PifName(PifId(b.pif)),
                                 "): this server has no such table");
      return res;
    }
    t->rules = b.rules;
  }
  // Every table (rules, count, overlaps), then loops across tables.
  absl::Status st = ValidateTableSet(new_tables_, fwd_->Context());
  if (!st.ok()) {
    res.code = SwapCode::kRejected;
    res.message = std::string(st.message());
    return res;
  }
  res.report.resize(blocks.size());
  for (size_t i = 0; i < blocks.size(); i++) {
    res.report[i].first = blocks[i].pif;
    res.report[i].second.resize(blocks[i].rules.size());
  }

  // 2. Snapshot of the open listeners; scanning paused until the end.
  struct Open {
    ListenerKey key;
    uint32_t index;
    bool scanned;
  };
  std::vector<Open> open;
  fwd_->RunOnLoop([&] {
    fwd_->scan_paused_ = true;
    fwd_->DrainCancels();  // ports a previous swap removed are free to bind
    for (uint32_t i = 0; i < fwd_->listeners_.size(); i++) {
      const auto& l = fwd_->listeners_[i];
      if (l.used) open.push_back(Open{l.key, i, l.scanned});
    }
  });

  // 3. The keys the new tables want.
  auto block_of = [&](PifId pif) {
    for (size_t i = 0; i < blocks.size(); i++)
      if (PifId(blocks[i].pif) == pif) return static_cast<int>(i);
    return -1;
  };
  absl::flat_hash_map<ListenerKey, Want> want;
  want.reserve(open.size() + 64);
  for (const Table& t : new_tables_.tables) {
    int block = block_of(t.pif);
    for (size_t ri = 0; ri < t.rules.size(); ri++) {
      const Rule& r = t.rules[ri];
      if (r.scan()) continue;
      std::string label = RuleText(r);
      for (uint32_t p = r.first; p <= r.last; p++)
        want[KeyFor(t.pif, r, p)] = Want{TargetFor(r, p), label, false, block, int(ri)};
    }
  }
  // Ports a SCAN rule has open stay open if a SCAN rule still covers them.
  for (const Open& o : open) {
    if (!o.scanned || want.contains(o.key)) continue;
    const Table* t = new_tables_.Find(o.key.pif);
    if (!t) continue;
    for (size_t ri = 0; ri < t->rules.size(); ri++) {
      const Rule& r = t->rules[ri];
      if (!ScanCovers(t->pif, r, o.key)) continue;
      want[o.key] = Want{TargetFor(r, o.key.port), RuleText(r), true, block_of(t->pif), int(ri)};
      break;
    }
  }

  // 4. Classify.
  absl::flat_hash_map<ListenerKey, uint32_t> open_by_key;
  absl::flat_hash_map<PortId, std::vector<size_t>> old_only_by_port;
  for (size_t i = 0; i < open.size(); i++) {
    open_by_key[open[i].key] = open[i].index;
    if (!want.contains(open[i].key)) old_only_by_port[PortOf(open[i].key)].push_back(i);
  }
  std::vector<std::pair<ListenerKey, const Want*>> to_bind;
  for (const auto& [key, w] : want) {
    auto it = open_by_key.find(key);
    if (it == open_by_key.end()) {
      to_bind.emplace_back(key, &w);
    } else {
      if (w.block >= 0) res.report[w.block].second[w.rule].bound++;
    }
  }

  // 5. Bind the new keys off the loop thread (SPLICE keys inside the
  // namespace, in one batch). Within the descriptor budget.
  size_t budget = fwd_->ListenerBudget();
  size_t after = want.size() - to_bind.size();
  std::vector<OpenResult> bound(to_bind.size());
  auto bind_side = [&](PifId side_pif) {
    std::vector<size_t> mine;
    for (size_t i = 0; i < to_bind.size(); i++)
      if ((to_bind[i].first.pif == PifId::kSplice) == (side_pif == PifId::kSplice))
        mine.push_back(i);
    if (mine.empty()) return;
    // Keys past the descriptor budget are not even tried.
    size_t allowed = budget > after ? budget - after : 0;
    for (size_t k = allowed; k < mine.size(); k++) {
      bound[mine[k]].err = EMFILE;
      bound[mine[k]].step = "descriptor budget";
    }
    mine.resize(std::min(mine.size(), allowed));
    auto open_range = [&](size_t from, size_t to) {
      for (size_t k = from; k < to; k++) bound[mine[k]] = OpenListener(to_bind[mine[k]].first);
    };
    // Thousands of host ports: bind them from several threads at once (the
    // kernel locks per port hash bucket, so they scale), about halving a
    // 10000-port swap. Namespace sockets are opened by its one thread.
    const size_t threads =
        side_pif == PifId::kHost && mine.size() >= kParallelBindMin ? fwd_->bind_threads() : 1;
    if (threads > 1) {
      std::vector<std::thread> helpers;
      const size_t per = (mine.size() + threads - 1) / threads;
      for (size_t t = 1; t < threads; t++)
        helpers.emplace_back(open_range, std::min(mine.size(), t * per),
                             std::min(mine.size(), (t + 1) * per));
      open_range(0, per);
      for (std::thread& h : helpers) h.join();
    } else {
      fwd_->ListenSide(side_pif)->RunSync([&] { open_range(0, mine.size()); });
    }
    for (size_t i : mine)
      if (bound[i].fd) after++;
  };
  bind_side(PifId::kHost);
  bind_side(PifId::kSplice);

  // A new key that collides with an old-only key on the same port: close
  // that old socket (only that one), then bind again.
  for (size_t i = 0; i < to_bind.size(); i++) {
    if (bound[i].fd || bound[i].err != EADDRINUSE) continue;
    auto it = old_only_by_port.find(PortOf(to_bind[i].first));
    if (it == old_only_by_port.end() || it->second.empty()) continue;
    for (size_t oi : it->second) {
      const Open& o = open[oi];
      Detached d{o.key, {}, {}, o.scanned};
      fwd_->RunOnLoop([&] {
        auto& l = fwd_->listeners_[o.index];
        d.target = l.target;
        d.label = l.label;
        Fd fd = fwd_->DetachListener(o.index, true);
        fwd_->ring_->Submit();  // the port is free once this thread closes fd
      });
      detached_.push_back(std::move(d));
      open_by_key.erase(o.key);
    }
    it->second.clear();
    // The kernel drops its last reference to the old socket asynchronously;
    // a few short retries cover that window.
    for (int attempt = 0; attempt < 20; attempt++) {
      fwd_->ListenSide(to_bind[i].first.pif)->RunSync([&] {
        bound[i] = OpenListener(to_bind[i].first);
      });
      if (bound[i].fd || bound[i].err != EADDRINUSE) break;
      usleep(5000);
    }
  }

  // 6. Per-rule accounting; any failure that is not tolerated undoes all.
  for (size_t i = 0; i < to_bind.size(); i++) {
    const Want& w = *to_bind[i].second;
    if (w.block < 0) continue;
    RuleBindReport& rep = res.report[w.block].second[w.rule];
    if (bound[i].fd) {
      rep.bound++;
    } else if (rep.failed++ == 0 || to_bind[i].first.port < rep.first_failed_port) {
      rep.first_errno = bound[i].err;
      rep.first_failed_port = to_bind[i].first.port;
    }
  }
  std::vector<std::string> failures;
  std::vector<std::string> warnings;
  for (size_t b = 0; b < blocks.size(); b++) {
    for (size_t ri = 0; ri < blocks[b].rules.size(); ri++) {
      const Rule& r = blocks[b].rules[ri];
      const RuleBindReport& rep = res.report[b].second[ri];
      if (r.scan() || rep.failed == 0) continue;
      std::string what = absl::StrCat(PifName(PifId(blocks[b].pif)), " rule ", ri + 1, " (",
                                      RuleText(r), "): ", rep.failed, " of ",
                                      rep.failed + rep.bound, " ports failed to bind, first port ",
                                      rep.first_failed_port, ": ", std::strerror(rep.first_errno));
      // A WEAK rule fails the update only if it bound nothing for a reason
      // other than the descriptor budget (ports that do not fit are reported).
      bool budget_only = rep.first_errno == EMFILE;
      if (!r.weak() || (rep.bound == 0 && !budget_only))
        failures.push_back(what);
      else
        warnings.push_back(what);
    }
  }
  if (!failures.empty()) {
    bound.clear();  // closes every new socket: they were never armed
    std::vector<std::string> lost = RestoreDetached();
    ResumeScan();
    res.message = absl::StrJoin(failures, "; ");
    if (!lost.empty()) {
      res.code = SwapCode::kRollbackFailed;
      absl::StrAppend(&res.message, "; rollback could not restore ", absl::StrJoin(lost, ", "));
    } else {
      res.code = SwapCode::kApplyFailed;
      absl::StrAppend(&res.message, "; nothing changed");
    }
    return res;
  }

  // 7. The switch: one closure on the loop thread.
  fwd_->RunOnLoop([&] {
    for (size_t i = 0; i < to_bind.size(); i++) {
      if (!bound[i].fd) continue;  // a WEAK rule's port that failed: reported, not open
      const Want& w = *to_bind[i].second;
      fwd_->AttachListener(to_bind[i].first, std::move(bound[i].fd), w.target, w.label, w.scanned,
                           /*defer_arm=*/true);
      new_keys_.push_back(to_bind[i].first);
    }
    for (const auto& [key, index] : open_by_key) {
      auto& l = fwd_->listeners_[index];
      auto it = want.find(key);
      if (it == want.end()) {
        // Old-only: still accepting (into its old target) until Finalize,
        // so an undo finds it exactly as it was.
        old_only_.push_back(index);
        continue;
      }
      const Want& w = it->second;
      if (l.target == w.target && l.scanned == w.scanned && l.label == w.label) continue;
      kept_.push_back(Kept{index, l.target, l.label, l.scanned, w.target, w.label, w.scanned});
      if (l.key.proto == kProtoUdp && !(l.target == w.target)) {
        fwd_->udp_.FlushListener(index);
        if (fwd_->tap_) fwd_->tap_->FlushListener(index);
      }
      l.target = w.target;
      l.label = w.label;
      l.scanned = w.scanned;
    }
    fwd_->SetScanRules(new_tables_);
    std::lock_guard<std::mutex> lock(fwd_->tables_mu_);
    fwd_->tables_ = new_tables_;
  });
  applied_ = true;
  for (const std::string& w : warnings) LOG_WARN("%s", w);
  res.code = SwapCode::kApplied;
  res.message =
      warnings.empty()
          ? absl::StrCat("applied: ", new_keys_.size(), " ports opened, ", kept_.size(), " kept, ",
                         old_only_.size() + detached_.size(), " closed")
          : absl::StrCat("applied with best-effort failures: ", absl::StrJoin(warnings, "; "));
  return res;
}

void TableSwap::Finalize() {
  if (!applied_) return;
  applied_ = false;
  // Old-only listeners leave the loop (their accepts are cancelled in
  // batches there); the sockets are closed here, off the data-plane thread.
  // In batches: the loop cancels a batch's accepts (dropping the kernel's
  // references), then this thread closes those sockets, so tearing down a
  // listening socket never runs on the data-plane thread.
  constexpr size_t kBatch = 256;
  for (size_t start = 0; start < old_only_.size(); start += kBatch) {
    std::vector<Fd> closing;
    size_t end = std::min(old_only_.size(), start + kBatch);
    fwd_->RunOnLoop([&] {
      for (size_t i = start; i < end; i++)
        closing.push_back(fwd_->DetachListener(old_only_[i], /*cancel_now=*/true));
      fwd_->ring_->Submit();
    });
  }
  fwd_->RunOnLoop([&] { fwd_->scan_paused_ = false; });
  old_only_.clear();
  detached_.clear();
}

void TableSwap::ResumeScan() {
  fwd_->RunOnLoop([&] { fwd_->scan_paused_ = false; });
}

std::vector<std::string> TableSwap::RestoreDetached() {
  std::vector<std::string> lost;
  for (Detached& d : detached_) {
    OpenResult r;
    for (int attempt = 0; attempt < 20; attempt++) {
      fwd_->ListenSide(d.key.pif)->RunSync([&] { r = OpenListener(d.key); });
      if (r.fd || r.err != EADDRINUSE) break;
      usleep(5000);
    }
    if (!r.fd) {
      lost.push_back(absl::StrCat(d.key.ToString(), " (", r.step, ": ", std::strerror(r.err), ")"));
      continue;
    }
    fwd_->RunOnLoop(
        [&] { fwd_->AttachListener(d.key, std::move(r.fd), d.target, d.label, d.scanned); });
  }
  detached_.clear();
  return lost;
}

SwapResult TableSwap::Undo() {
  SwapResult res;
  if (!applied_) return res;
  applied_ = false;
  fwd_->RunOnLoop([&] {
    // New listeners go; they were armed, so cancel and close them.
    for (const ListenerKey& key : new_keys_) {
      auto it = fwd_->by_key_.find(key);
      if (it != fwd_->by_key_.end()) fwd_->RemoveListener(it->second);
    }
    fwd_->DrainCancels();  // frees their ports before detached ones re-bind
    for (const Kept& k : kept_) {
      auto& l = fwd_->listeners_[k.index];
      if (l.key.proto == kProtoUdp && !(l.target == k.old_target)) {
        fwd_->udp_.FlushListener(k.index);
        if (fwd_->tap_) fwd_->tap_->FlushListener(k.index);
      }
      l.target = k.old_target;
      l.label = k.old_label;
      l.scanned = k.old_scanned;
    }
    fwd_->SetScanRules(old_tables_);
    std::lock_guard<std::mutex> lock(fwd_->tables_mu_);
    fwd_->tables_ = old_tables_;
  });
  // Sockets closed to make room for narrower keys come back last, once the
  // new ones that took their ports are closed.
  std::vector<std::string> lost = RestoreDetached();
  ResumeScan();
  old_only_.clear();
  kept_.clear();
  new_keys_.clear();
  if (!lost.empty()) {
    res.code = SwapCode::kRollbackFailed;
    res.message = absl::StrCat("undo could not restore ", absl::StrJoin(lost, ", "));
  } else {
    res.message = "update undone";
  }
  return res;
}

}  // namespace ringfwd
