// Listening sockets, identified by key.
//
// A listener's key is (pif, protocol, address, dual-stack or not, interface,
// port): two rules that produce the same key can share one socket, which is
// what lets a table swap carry an unchanged port's socket into the new table
// (IPV6_V6ONLY cannot change after bind, hence the dual-stack bit).
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fwd/addr.h"
#include "fwd/rule.h"
#include "uring/fd.h"

namespace ringfwd {

struct ListenerKey {
  PifId pif = PifId::kNone;
  uint8_t proto = 0;
  Addr6 addr;
  bool dual_stack = false;
  std::array<char, kIfNameSize> ifname{};
  uint16_t port = 0;

  friend bool operator==(const ListenerKey&, const ListenerKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const ListenerKey& k) {
    return H::combine(std::move(h), k.pif, k.proto, k.addr, k.dual_stack, k.ifname, k.port);
  }
  // The socket family: AF_INET for a mapped address, AF_INET6 otherwise.
  int family() const { return (!dual_stack && addr.IsV4()) ? AF_INET : AF_INET6; }
  // The interface the listener is bound to ("": none).
  std::string_view ifname_view() const {
    return std::string_view(ifname.data(), strnlen(ifname.data(), ifname.size()));
  }
  // "TCP [*]:8080", "UDP [127.0.0.1]%lo:53" for logs.
  std::string ToString() const;
};

// The key of port `port` of `rule` in table `pif`.
ListenerKey KeyFor(PifId pif, const Rule& rule, uint16_t port);

// Where a listener's connections go.
struct ListenerTarget {
  Addr6 addr;         // the rule's target address; :: = loopback of the target side
  uint16_t port = 0;  // the target port for this listening port
  bool operator==(const ListenerTarget&) const = default;
};

// The target of port `port` of `rule`.
ListenerTarget TargetFor(const Rule& rule, uint16_t port);

// The result of opening a listener: the socket, or the errno that stopped it
// and the step that failed ("bind", "setsockopt SO_BINDTODEVICE").
struct OpenResult {
  Fd fd;
  int err = 0;
  const char* step = "";
};

// Creates, configures, binds and (for TCP) listens a non-blocking socket for
// `key` in the calling thread's namespace. UDP sockets get packet-info
// reception on wildcard addresses so replies leave from the address a client
// wrote to. Makes no io_uring submission.
OpenResult OpenListener(const ListenerKey& key);

}  // namespace ringfwd
