// Netlink: the few rtnetlink (NETLINK_ROUTE) requests tap mode needs.
//
// A Netlink object is a socket bound to the network namespace of the thread
// that opened it (run Open() on a NetNs thread to configure a namespace);
// its requests may then be made from any thread, one at a time. Requests are
// synchronous: each waits for the kernel's acknowledgement. Errors are
// absl::Status naming the interface (or address, route) and the errno.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fwd/addr.h"
#include "uring/fd.h"

namespace ringfwd {

// An address on an interface, with its prefix length.
struct IfAddr {
  Addr6 addr;
  uint8_t prefix = 0;
};

// What the host's template interface (the one with the default route of a
// family) gives the guest.
struct TemplateIface {
  int ifindex = 0;
  std::string name;
  std::vector<IfAddr> addrs;  // global-scope addresses of the family, in kernel order
  Addr6 gateway;              // the default route's gateway
  bool has_gateway = false;
};

class Netlink {
 public:
  // A NETLINK_ROUTE socket in the calling thread's network namespace.
  static absl::StatusOr<Netlink> Open();

  // The interface carrying the default route of `family` (AF_INET or
  // AF_INET6; the lowest metric wins), its addresses and gateway. NotFound
  // when the family has no default route.
  absl::StatusOr<TemplateIface> FindTemplate(int family);
  // The index of interface `name`.
  absl::StatusOr<int> IfIndex(const std::string& name);
  // Sets the interface up.
  absl::Status LinkUp(int ifindex, const std::string& name);
  absl::Status SetMtu(int ifindex, const std::string& name, uint32_t mtu);
  // Adds an address with its prefix (IPv6: without duplicate address
  // detection, IFA_F_NODAD). An address already present is not an error.
  absl::Status AddAddress(int ifindex, const std::string& name, const IfAddr& a);
  // Adds a default route of the gateway's family through the interface. A
  // default route already there is not an error.
  absl::Status AddDefaultRoute(int ifindex, const std::string& name, const Addr6& gateway);
  // Sets interface "lo" up.
  absl::Status LoopbackUp();

 private:
  explicit Netlink(Fd fd) : fd_(std::move(fd)) {}
  // Sends a request with `flags` and a new sequence number; 0 or an errno.
  int Send(void* msg, size_t len, uint16_t flags);
  // Reads the answers to the last request until on_reply(const nlmsghdr*)
  // returns an errno value (std::optional<int>, 0 included); at most
  // `rounds` reads.
  template <typename F>
  int Receive(int rounds, F&& on_reply);
  // Sends a request and waits for its acknowledgement; returns 0 or the
  // errno the kernel answered with (or of the socket call).
  int Transact(void* msg, size_t len);
  // Sends a dump request and calls on_msg(const nlmsghdr*) for each answer.
  template <typename F>
  int Dump(void* msg, size_t len, F&& on_msg);

  Fd fd_;
  uint32_t seq_ = 1;
};

}  // namespace ringfwd
