// Narrowing what the daemon can do once it is set up, as pasta does: it
// parses bytes from strangers (network peers, control clients), so after its
// sockets, rings and threads exist it can drop to an unprivileged user and
// install a seccomp filter that allows only the system calls it still uses.
#pragma once

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ringfwd {

struct RunAs {
  uid_t uid = 0;
  gid_t gid = 0;
};

// Parses "UID[:GID]" or "USER[:GROUP]"; without a group, the user's primary
// group (or GID = UID for a numeric uid unknown to the user database).
absl::StatusOr<RunAs> ParseRunAs(const std::string& text);

// Drops supplementary groups, then sets the gid and uid of every thread.
absl::Status DropPrivileges(const RunAs& who);

// Installs the daemon's seccomp filter on every thread (TSYNC): the syscalls
// of the data path, the control server, logging and shutdown are allowed;
// any other fails with EPERM (it does not kill: a forgotten rare call then
// shows up as an error in the log, not as a dead forwarder). Sets
// no_new_privs.
absl::Status InstallSeccomp();

// For tests and the test launcher: makes system call `nr` fail with `err`
// for the calling thread and its future children (and exec'd programs).
absl::Status DenySyscall(int nr, int err);

}  // namespace ringfwd
