// Learning which ports a side listens on, for SCAN (auto) rules.
//
// A NETLINK_SOCK_DIAG socket made on the scanned side (it stays in the
// namespace it was made in) is asked for TCP sockets in LISTEN state, or for
// bound UDP sockets, of both families. /proc/net/tcp would also list
// TIME_WAIT sockets and grow with connection churn; sock_diag filters by
// state in the kernel.
#pragma once

#include <bitset>
#include <cstdint>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "uring/fd.h"

namespace ringfwd {

using PortSet = std::bitset<65536>;

// A NETLINK_SOCK_DIAG socket in the calling thread's namespace.
absl::StatusOr<Fd> OpenSockDiag();

// The local ports of TCP listeners (proto 6) or bound UDP sockets (proto 17)
// reachable through `diag`, skipping sockets whose inode is in `exclude`
// (the forwarder's own listeners).
absl::StatusOr<PortSet> ListeningPorts(int diag, uint8_t proto,
                                       const absl::flat_hash_set<uint64_t>& exclude);

}  // namespace ringfwd
