#include "fwd/addr.h"

#include <arpa/inet.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace ringfwd {

Addr6 Addr6::Loopback6() {
  Addr6 a;
  a.b[15] = 1;
  return a;
}

Addr6 Addr6::FromV4(uint32_t host_order) {
  Addr6 a;
  a.b[10] = 0xff;
  a.b[11] = 0xff;
  a.b[12] = host_order >> 24;
  a.b[13] = host_order >> 16;
  a.b[14] = host_order >> 8;
  a.b[15] = host_order;
  return a;
}

Addr6 Addr6::FromIn6(const in6_addr& in) {
  Addr6 a;
  std::memcpy(a.b.data(), &in, 16);
  return a;
}

std::optional<Addr6> Addr6::Parse(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  in_addr v4;
  if (inet_pton(AF_INET, buf, &v4) == 1) return FromV4(ntohl(v4.s_addr));
  in6_addr v6;
  if (inet_pton(AF_INET6, buf, &v6) == 1) return FromIn6(v6);
  return std::nullopt;
}

bool Addr6::IsV4() const {
  // ::ffff:0:0/96, compared as one 8- and one 4-byte word (called several
  // times per frame on the tap path).
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(b.data(), kPrefix, sizeof(kPrefix)) == 0;
}

bool Addr6::IsUnspecified6() const { return *this == Addr6{}; }

bool Addr6::IsWildcard() const { return IsUnspecified6() || (IsV4() && V4() == 0); }

bool Addr6::IsMulticast() const { return IsV4() ? (V4() >> 28) == 0xe : b[0] == 0xff; }

bool Addr6::IsLoopback() const { return IsV4() ? (V4() >> 24) == 127 : *this == Loopback6(); }

uint32_t Addr6::V4() const {
  return (uint32_t{b[12]} << 24) | (uint32_t{b[13]} << 16) | (uint32_t{b[14]} << 8) | b[15];
}

in6_addr Addr6::In6() const {
  in6_addr in;
  std::memcpy(&in, b.data(), 16);
  return in;
}

std::string Addr6::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  if (IsV4()) {
    in_addr v4{htonl(V4())};
    inet_ntop(AF_INET, &v4, buf, sizeof(buf));
  } else {
    in6_addr v6 = In6();
    inet_ntop(AF_INET6, &v6, buf, sizeof(buf));
  }
  return buf;
}

SockAddr SockAddr::From(const Addr6& a, uint16_t port) {
  if (!a.IsV4()) return From6(a, port);
  SockAddr s;
  auto* sin = reinterpret_cast<sockaddr_in*>(&s.ss);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(port);
  sin->sin_addr.s_addr = htonl(a.V4());
  s.len = sizeof(sockaddr_in);
  return s;
}

SockAddr SockAddr::From6(const Addr6& a, uint16_t port) {
  SockAddr s;
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&s.ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  sin6->sin6_addr = a.In6();
  s.len = sizeof(sockaddr_in6);
  return s;
}

Addr6 SockAddr::addr() const {
  if (ss.ss_family == AF_INET)
    return Addr6::FromV4(ntohl(reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr.s_addr));
  if (ss.ss_family == AF_INET6)
    return Addr6::FromIn6(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr);
  return Addr6{};
}

uint16_t SockAddr::port() const {
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

std::string SockAddr::ToString() const {
  Addr6 a = addr();
  if (ss.ss_family == AF_INET6 && !a.IsV4()) return absl::StrCat("[", a.ToString(), "]:", port());
  return absl::StrCat(a.ToString(), ":", port());
}

}  // namespace ringfwd
