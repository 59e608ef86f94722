// The client side of the pesto control protocol (PROTOCOL.md): connect to a
// forwarder's control socket, read its hello and tables, then either close
// (read-only) or send replacement tables, as a version-2 update (write and
// close) or a transactional one (write, then read the status).
//
// Every wait is bounded by the timeout of ClientOptions; errors name the
// socket path ("connect /run/x.sock: No such file or directory").
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ctl/wire.h"
#include "fwd/rule.h"
#include "uring/fd.h"

namespace ringfwd::ctl {

struct ClientOptions {
  // Bound on connecting plus reading the hello and listing, and again on
  // writing an update plus reading its status.
  int timeout_ms = 10000;
  // If set, called with one line of protocol trace per step (for pesto -d).
  std::function<void(const std::string&)> debug;
};

// True if the server accepts a transactional update for `set`: it has at
// least one table and every table's caps has kCapTxn.
bool SupportsTransactions(const TableSet& set);

// One control connection, from the hello to the end of the transaction.
// Move-only; owns its socket.
class Client {
 public:
  // Connects to the UNIX socket at `path`, reads and checks the hello, and
  // reads the listing. Fails on an unreachable socket, a server that is not
  // a pesto server or speaks another version, a malformed listing, EOF or the
  // timeout.
  static absl::StatusOr<Client> Connect(const std::string& path, const ClientOptions& opts = {});

  Client(Client&&) = default;
  Client& operator=(Client&&) = default;

  // The server's hello and tables, as read by Connect().
  const wire::Hello& hello() const { return hello_; }
  const TableSet& tables() const { return tables_; }
  const std::string& path() const { return path_; }

  // Sends `set` (one block per table) as a version-2 update, then closes.
  // The server sends nothing back.
  absl::Status SendUpdate(const TableSet& set);

  // Sends `set` as a transactional update and returns the server's status
  // reply; closes the connection either way. Requires SupportsTransactions().
  absl::StatusOr<wire::StatusReply> SendTransactional(const TableSet& set);

  // Closes the connection without sending anything (read-only use).
  void Close() { fd_.Reset(); }

 private:
  Client(std::string path, ClientOptions opts) : path_(std::move(path)), opts_(std::move(opts)) {}

  void Debug(const std::string& line) const;
  // Writes all of `bytes` before `deadline_ms` (CLOCK_MONOTONIC).
  absl::Status WriteAll(const wire::Bytes& bytes, int64_t deadline_ms);
  // Appends what the socket has to buf_, waiting until `deadline_ms`.
  // `what` names the message awaited, for the EOF and timeout errors.
  absl::Status ReadSome(int64_t deadline_ms, const char* what);

  std::string path_;
  ClientOptions opts_;
  Fd fd_;
  wire::Bytes buf_;  // received bytes not yet consumed by a decoder
  wire::Hello hello_;
  TableSet tables_;
};

}  // namespace ringfwd::ctl
