// Addr6: an IPv6 address, or an IPv4 address in its mapped form
// (::ffff:a.b.c.d), exactly as the pesto wire protocol carries addresses.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ringfwd {

struct Addr6 {
  std::array<uint8_t, 16> b{};

  // The unspecified address "::".
  static Addr6 Any6() { return Addr6{}; }
  // The IPv4 wildcard "0.0.0.0" in mapped form.
  static Addr6 Any4() { return FromV4(0); }
  // IPv4 loopback 127.0.0.1 and IPv6 loopback ::1.
  static Addr6 Loopback4() { return FromV4(0x7f000001); }
  static Addr6 Loopback6();
  // Mapped form of an IPv4 address given in host byte order.
  static Addr6 FromV4(uint32_t host_order);
  static Addr6 FromIn6(const in6_addr& a);
  // Parses "192.0.2.1" (mapped) or "2001:db8::1"; nullopt if neither.
  static std::optional<Addr6> Parse(std::string_view text);

  // True for ::ffff:a.b.c.d.
  bool IsV4() const;
  // True for "::" (not for 0.0.0.0).
  bool IsUnspecified6() const;
  // True for 0.0.0.0 (mapped) or ::, i.e. a wildcard of its family.
  bool IsWildcard() const;
  // True for 224.0.0.0/4 (mapped) or ff00::/8.
  bool IsMulticast() const;
  bool IsLoopback() const;
  // The IPv4 address in host byte order; only meaningful when IsV4().
  uint32_t V4() const;
  in6_addr In6() const;
  // "192.0.2.1" for mapped addresses, RFC 5952 text otherwise.
  std::string ToString() const;

  friend bool operator==(const Addr6&, const Addr6&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const Addr6& a) {
    return H::combine(std::move(h), a.b);
  }
};

// A socket address of either family, sized for both.
struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;

  // AF_INET for a mapped address, AF_INET6 otherwise.
  static SockAddr From(const Addr6& a, uint16_t port);
  // Same, but always AF_INET6 (for dual-stack sockets).
  static SockAddr From6(const Addr6& a, uint16_t port);
  int family() const { return ss.ss_family; }
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&ss); }
  sockaddr* sa() { return reinterpret_cast<sockaddr*>(&ss); }
  // The address part (mapped for AF_INET) and the port.
  Addr6 addr() const;
  uint16_t port() const;
  // "192.0.2.1:80" or "[2001:db8::1]:80".
  std::string ToString() const;
};

}  // namespace ringfwd
