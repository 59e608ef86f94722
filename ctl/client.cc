// Theory of operation: the client is a short straight line, each step
// bounded by a deadline.
//   Connect:  socket, connect (blocking but bounded by SO_SNDTIMEO), then
//             read until DecodeHello is kOk, then until DecodeListing is kOk.
//   Update:   write every byte (poll for POLLOUT, send with MSG_DONTWAIT);
//             version 2 closes at once, transactional reads until
//             DecodeStatus is kOk, then closes.
// A read of 0 bytes before the decoder is satisfied is "closed by the
// server"; a poll that runs out of time is a timeout; a decoder kError is a
// protocol error naming the offset. Nothing here ever waits unbounded.
#include "ctl/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "uring/status.h"

namespace ringfwd::ctl {
namespace {

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

// Waits for `events` on `fd` until `deadline_ms`. Returns OK when ready,
// DeadlineExceeded on timeout, or the poll error.
absl::Status PollUntil(int fd, short events, int64_t deadline_ms) {
  for (;;) {
    int64_t left = deadline_ms - NowMs();
    if (left <= 0) return absl::DeadlineExceededError("timed out");
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, static_cast<int>(left));
    if (n > 0) return absl::OkStatus();
    if (n == 0) return absl::DeadlineExceededError("timed out");
    if (errno != EINTR) return ErrnoError(errno, "poll");
  }
}

}  // namespace

bool SupportsTransactions(const TableSet& set) {
  if (set.tables.empty()) return false;
  for (const Table& t : set.tables)
    if (!(t.caps & kCapTxn)) return false;
  return true;
}

void Client::Debug(const std::string& line) const {
  if (opts_.debug) opts_.debug(line);
}

absl::StatusOr<Client> Client::Connect(const std::string& path, const ClientOptions& opts) {
  Client c(path, opts);
  int64_t deadline = NowMs() + opts.timeout_ms;

  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    return absl::InvalidArgumentError(absl::StrCat("connect ", path, ": invalid socket path"));
  std::memcpy(addr.sun_path, path.data(), path.size());

  c.fd_.Reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!c.fd_) return ErrnoError(errno, "socket");
  // A UNIX connect only blocks while the listen backlog is full; bound it.
  timeval tv{opts.timeout_ms / 1000, (opts.timeout_ms % 1000) * 1000};
  setsockopt(c.fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int rc;
  do {
    rc = connect(c.fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return ErrnoError(errno, absl::StrCat("connect ", path));
  c.Debug(absl::StrCat("connected to ", path));

  for (;;) {
    auto hello = wire::DecodeHello(wire::ByteSpan(c.buf_.data(), c.buf_.size()));
    if (hello.state == wire::DecodeState::kError) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": not a compatible pesto server: ", hello.error));
    }
    if (hello.ok()) {
      c.hello_ = hello.value;
      c.buf_.erase(c.buf_.begin(), c.buf_.begin() + hello.consumed);
      break;
    }
    RINGFWD_RETURN_IF_ERROR(c.ReadSome(deadline, "hello"));
  }
  c.Debug(absl::StrCat("hello: version ", c.hello_.version, ", pif name size ",
                       c.hello_.pif_name_size, ", ifnamsiz ", c.hello_.ifnamsiz));

  for (;;) {
    auto listing = wire::DecodeListing(wire::ByteSpan(c.buf_.data(), c.buf_.size()));
    if (listing.state == wire::DecodeState::kError) {
      return absl::DataLossError(
          absl::StrCat(path, ": malformed listing after the hello: ", listing.error));
    }
    if (listing.ok()) {
      c.tables_ = std::move(listing.value);
      c.Debug(absl::StrCat("listing: ", c.tables_.tables.size(), " pifs in ", listing.consumed,
                           " bytes"));
      c.buf_.erase(c.buf_.begin(), c.buf_.begin() + listing.consumed);
      break;
    }
    RINGFWD_RETURN_IF_ERROR(c.ReadSome(deadline, "listing"));
  }
  for (const Table& t : c.tables_.tables) {
    c.Debug(absl::StrCat("  pif ", static_cast<int>(t.pif), " ", t.name, ": caps 0x",
                         absl::Hex(t.caps), ", ", t.rules.size(), " rules"));
  }
  return c;
}

absl::Status Client::ReadSome(int64_t deadline_ms, const char* what) {
  uint8_t chunk[4096];
  for (;;) {
    absl::Status ready = PollUntil(fd_.get(), POLLIN, deadline_ms);
    if (absl::IsDeadlineExceeded(ready)) {
      return absl::DeadlineExceededError(absl::StrCat(path_, ": timed out after ", opts_.timeout_ms,
                                                      " ms waiting for the ", what));
    }
    if (!ready.ok()) return ready;
    ssize_t n = recv(fd_.get(), chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n > 0) {
      buf_.insert(buf_.end(), chunk, chunk + n);
      return absl::OkStatus();
    }
    if (n == 0) {
      return absl::UnavailableError(absl::StrCat(path_, ": connection closed by the server after ",
                                                 buf_.size(), " bytes of the ", what));
    }
    if (errno != EINTR && errno != EAGAIN) return ErrnoError(errno, absl::StrCat("read ", path_));
  }
}

absl::Status Client::WriteAll(const wire::Bytes& bytes, int64_t deadline_ms) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n =
        send(fd_.get(), bytes.data() + done, bytes.size() - done, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return ErrnoError(errno, absl::StrCat("write ", path_));
    absl::Status ready = PollUntil(fd_.get(), POLLOUT, deadline_ms);
    if (absl::IsDeadlineExceeded(ready)) {
      return absl::DeadlineExceededError(
          absl::StrCat(path_, ": timed out after ", opts_.timeout_ms, " ms writing the update"));
    }
    RINGFWD_RETURN_IF_ERROR(ready);
  }
  return absl::OkStatus();
}

absl::Status Client::SendUpdate(const TableSet& set) {
  if (!fd_) return absl::FailedPreconditionError(absl::StrCat(path_, ": connection closed"));
  wire::Bytes out;
  wire::EncodeUpdateFromTables(set, /*transactional=*/false, &out);
  Debug(absl::StrCat("sending ", out.size(), "-byte version-2 update"));
  absl::Status s = WriteAll(out, NowMs() + opts_.timeout_ms);
  Close();
  return s;
}

absl::StatusOr<wire::StatusReply> Client::SendTransactional(const TableSet& set) {
  if (!fd_) return absl::FailedPreconditionError(absl::StrCat(path_, ": connection closed"));
  wire::Bytes out;
  wire::EncodeUpdateFromTables(set, /*transactional=*/true, &out);
  Debug(absl::StrCat("sending ", out.size(), "-byte transactional update"));
  int64_t deadline = NowMs() + opts_.timeout_ms;
  absl::Status written = WriteAll(out, deadline);
  if (!written.ok()) {
    Close();
    return written;
  }
  // The listing was complete, so anything still in buf_ is the status's start.
  for (;;) {
    auto status = wire::DecodeStatus(wire::ByteSpan(buf_.data(), buf_.size()));
    if (status.state == wire::DecodeState::kError) {
      Close();
      return absl::DataLossError(absl::StrCat(path_, ": malformed status reply: ", status.error));
    }
    if (status.ok()) {
      Debug(absl::StrCat("status: ", wire::StatusCodeName(status.value.code), " in ",
                         status.consumed, " bytes"));
      Close();
      return std::move(status.value);
    }
    absl::Status more = ReadSome(deadline, "status reply");
    if (!more.ok()) {
      Close();
      return more;
    }
  }
}

}  // namespace ringfwd::ctl
