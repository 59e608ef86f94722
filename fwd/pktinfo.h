// Where a datagram on a wildcard UDP socket was addressed, and where its
// reply must come from: the IP_PKTINFO / IPV6_PKTINFO control messages.
// Replies sent with the address the client wrote to (not the one the route
// would pick) are what a client of a multi-homed host expects.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

#include "fwd/addr.h"

namespace ringfwd {

// Room for either control message, for recvmsg and sendmsg buffers.
inline constexpr size_t kPktinfoSpace =
    CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(in_pktinfo));

// The local address and interface of a received datagram, from its control
// messages; false when there are none.
bool ReadPktinfo(msghdr* mh, Addr6* local, uint32_t* ifindex);

// Writes to `ctrl` (kPktinfoSpace bytes, aligned for cmsghdr) the control
// message that sends from `local` on a socket of `family`; a link-local IPv6
// source also names its interface. Returns the length to pass as
// msg_controllen.
size_t WritePktinfo(void* ctrl, int family, const Addr6& local, uint32_t ifindex);

}  // namespace ringfwd
