// The control socket server: the pesto protocol's server side (PROTOCOL.md).
//
// Theory of operation. A control thread owns the UNIX listening socket and
// serves one connection at a time (the next client waits in the backlog and
// gets its hello when the current transaction is over). Per connection:
//
//   accepted --(peer uid allowed?)--> hello + listing written
//     --(EOF before any byte)--> done, nothing changed (read-only client)
//     --(bytes until the update decodes)--> TableSwap::Apply
//          REJECTED / APPLY_FAILED / ROLLBACK_FAILED / PROTOCOL_ERROR
//               --> status written, nothing changed
//          APPLIED --> status written in full? Finalize : Undo
//     --(stall past the timeout, or EOF mid-update)--> dropped, nothing changed
//
// Every socket operation is non-blocking with a deadline, on the control
// thread: the data plane never waits for a client; it only runs the short
// closures of a swap between its completions.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "ctl/wire.h"
#include "fwd/forwarder.h"
#include "fwd/table_swap.h"
#include "uring/fd.h"

namespace ringfwd::ctl {

struct ServerOptions {
  std::string path;               // socket path; created mode 0600
  std::vector<uid_t> allow_uids;  // if set, socket mode 0666 and these uids are served too
  int timeout_ms = 10000;         // a transaction must complete within this
};

// What the server tells about one finished connection (for logs and tests).
struct TransactionLog {
  pid_t pid = 0;
  uid_t uid = 0;
  bool refused = false;  // peer uid not allowed
  bool updated = false;  // an update was decoded and processed
  wire::StatusCode code = wire::StatusCode::kApplied;
  std::string message;
};

class Server {
 public:
  // Creates the socket (replacing a stale one; refusing if another daemon
  // answers on it) and starts the control thread.
  static absl::StatusOr<std::unique_ptr<Server>> Start(Forwarder* fwd, const ServerOptions& opts);
  // Stops the thread (an open transaction changes nothing) and removes the
  // socket file.
  ~Server();

  // Asks the thread to stop without waiting for it; Stopped() says when it
  // has. An update being applied still finishes first, through
  // Forwarder::RunOnLoop(): a single-thread forwarder's own thread serves it
  // meanwhile (Forwarder::ServeTasksUntil(Stopped)).
  void RequestStop();
  bool Stopped() const { return stopped_.load(); }

  // Handles one accepted connection to the end; exposed for tests.
  TransactionLog Serve(Fd conn);

 private:
  Server(Forwarder* fwd, ServerOptions opts) : fwd_(fwd), opts_(std::move(opts)) {}
  void ThreadMain();
  bool Allowed(uid_t uid) const;

  Forwarder* fwd_;
  ServerOptions opts_;
  Fd listen_;
  Fd stop_;
  std::atomic<bool> stopped_{false};  // the thread has returned
  std::thread thread_;
};

// Maps a swap outcome to the wire report of PROTOCOL.md section 6.
wire::StatusReply ToStatusReply(const SwapResult& r);

}  // namespace ringfwd::ctl
