// TableSwap: replacing a running forwarder's tables in one transaction.
//
// Theory of operation (PROTOCOL.md section 5). Runs on the control thread;
// every step that touches the data plane's state is a closure run on the
// loop thread between completions (Forwarder::RunOnLoop), so the hot path
// takes no lock.
//
//   Apply:   shadow tables built and validated (REJECTED: nothing touched)
//            -> snapshot of the open listeners, scanning paused
//            -> keys classified: kept (in old and new: socket and armed
//               accept untouched, only the target may change), old-only,
//               new-only
//            -> new-only keys bound here, off the loop thread; a new key
//               that collides with an old-only key on its port gets that one
//               old socket closed just before it binds
//            -> any non-WEAK failure (or a WEAK non-SCAN rule with no port):
//               undo everything, re-binding detached old sockets
//               (APPLY_FAILED, or ROLLBACK_FAILED if one cannot come back)
//            -> switch, on the loop: new listeners armed (in batches
//               between completions), kept ones re-pointed; old-only ones
//               keep accepting into their old target until Finalize
//   then either
//   Finalize: old-only accepts cancelled on the loop and their sockets closed
//             here, in batches; scanning resumed (status delivered)
//   Undo:     the switch reversed exactly (client gone before its status).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "fwd/forwarder.h"
#include "fwd/listener.h"
#include "fwd/rule.h"
#include "uring/fd.h"

namespace ringfwd {

enum class SwapCode { kApplied = 0, kRejected = 1, kApplyFailed = 2, kRollbackFailed = 3 };

// One pif's new table as a client sent it (the pif id may be unknown).
struct SwapBlock {
  uint8_t pif = 0;
  std::vector<Rule> rules;
};

struct SwapResult {
  SwapCode code = SwapCode::kApplied;
  std::string message;  // for a person: which rule, what was wrong
  // Per block of the request, per rule: ports bound/failed, first errno.
  // Empty when nothing was attempted (REJECTED).
  std::vector<std::pair<uint8_t, std::vector<RuleBindReport>>> report;
};

class TableSwap {
 public:
  explicit TableSwap(Forwarder* fwd) : fwd_(fwd) {}
  // Finalizes an applied swap that was neither finalized nor undone.
  ~TableSwap();
  TableSwap(const TableSwap&) = delete;
  TableSwap& operator=(const TableSwap&) = delete;

  // Validates and applies `blocks` up to the switch. A pif the request does
  // not name keeps its table. After kApplied, call Finalize() once the
  // client has its status, or Undo().
  SwapResult Apply(const std::vector<SwapBlock>& blocks);
  // Closes old-only listeners and resumes scanning.
  void Finalize();
  // Reverses an applied swap. kApplied when the old state is back exactly;
  // kRollbackFailed (message names the ports) when an old socket could not
  // be bound again.
  SwapResult Undo();

 private:
  struct Want {
    ListenerTarget target;
    std::string label;
    bool scanned = false;
    int block = -1;  // index in the request, -1 for a pif it does not name
    int rule = -1;
  };
  struct Kept {
    uint32_t index;
    ListenerTarget old_target;
    std::string old_label;
    bool old_scanned;
    ListenerTarget target;
    std::string label;
    bool scanned;
  };
  struct Detached {
    ListenerKey key;
    ListenerTarget target;
    std::string label;
    bool scanned;
  };

  // Re-binds and re-attaches detached old listeners; returns the keys that
  // could not come back.
  std::vector<std::string> RestoreDetached();
  void ResumeScan();

  Forwarder* fwd_;
  bool applied_ = false;
  TableSet old_tables_;
  TableSet new_tables_;
  std::vector<Kept> kept_;
  std::vector<uint32_t> old_only_;  // listener indexes, closed by Finalize
  std::vector<ListenerKey> new_keys_;
  std::vector<Detached> detached_;
};

}  // namespace ringfwd
