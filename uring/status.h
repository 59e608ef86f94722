// Small helpers around absl::Status for syscall-heavy code.
//
// Abseil 20220623 (Debian's) has no status macros, so the one we need lives
// here: RINGFWD_RETURN_IF_ERROR. ErrnoError builds a Status from an errno
// value with a message that names the object ("bind 127.0.0.1:8080: Address
// already in use").
#pragma once

#include <cerrno>
#include <cstring>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace ringfwd {

// Maps an errno value to the closest absl::StatusCode.
inline absl::StatusCode ErrnoToCode(int err) {
  switch (err) {
    case EINVAL:
      return absl::StatusCode::kInvalidArgument;
    case ENOENT:
      return absl::StatusCode::kNotFound;
    case EEXIST:
    case EADDRINUSE:
      return absl::StatusCode::kAlreadyExists;
    case EPERM:
    case EACCES:
      return absl::StatusCode::kPermissionDenied;
    case ENOMEM:
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
      return absl::StatusCode::kResourceExhausted;
    case ENOSYS:
    case EOPNOTSUPP:
      return absl::StatusCode::kUnimplemented;
    case EAGAIN:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kUnknown;
  }
}

// "what: strerror(err)", with a code derived from err.
inline absl::Status ErrnoError(int err, absl::string_view what) {
  return absl::Status(ErrnoToCode(err), absl::StrCat(what, ": ", std::strerror(err)));
}

}  // namespace ringfwd

#define RINGFWD_STATUS_CONCAT_INNER_(a, b) a##b
#define RINGFWD_STATUS_CONCAT_(a, b) RINGFWD_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` (an absl::Status) is not OK.
#define RINGFWD_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    ::absl::Status ringfwd_status_ = (expr);           \
    if (!ringfwd_status_.ok()) return ringfwd_status_; \
  } while (0)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status,
// otherwise moves the value into `lhs` (which may be a declaration).
#define RINGFWD_ASSIGN_OR_RETURN(lhs, rexpr) \
  RINGFWD_ASSIGN_OR_RETURN_IMPL_(RINGFWD_STATUS_CONCAT_(ringfwd_sor_, __LINE__), lhs, rexpr)
#define RINGFWD_ASSIGN_OR_RETURN_IMPL_(sor, lhs, rexpr) \
  auto sor = (rexpr);                                   \
  if (!sor.ok()) return sor.status();                   \
  lhs = std::move(sor).value()
