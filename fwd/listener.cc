#include "fwd/listener.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ringfwd {

std::string ListenerKey::ToString() const {
  std::string addr_text = dual_stack ? "*" : addr.ToString();
  std::string_view ifn = ifname_view();
  return absl::StrCat(proto == kProtoTcp ? "TCP" : "UDP", " [", addr_text, "]",
                      ifn.empty() ? "" : "%", absl::string_view(ifn.data(), ifn.size()), ":", port);
}

ListenerKey KeyFor(PifId pif, const Rule& rule, uint16_t port) {
  ListenerKey k;
  k.pif = pif;
  k.proto = rule.proto;
  k.addr = rule.addr;
  k.dual_stack = rule.dual_stack();
  k.ifname = rule.ifname;
  k.port = port;
  return k;
}

ListenerTarget TargetFor(const Rule& rule, uint16_t port) {
  return ListenerTarget{rule.target, rule.TargetPort(port)};
}

OpenResult OpenListener(const ListenerKey& key) {
  OpenResult r;
  int type = key.proto == kProtoTcp ? SOCK_STREAM : SOCK_DGRAM;
  int family = key.family();
  int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r.err = errno;
    r.step = "socket";
    return r;
  }
  Fd sock(fd);
  auto fail = [&](const char* step) {
    r.err = errno;
    r.step = step;
    return std::move(r);
  };
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
    return fail("setsockopt SO_REUSEADDR");
  if (family == AF_INET6) {
    int v6only = key.dual_stack ? 0 : 1;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0)
      return fail("setsockopt IPV6_V6ONLY");
  }
  if (std::string_view ifn = key.ifname_view(); !ifn.empty()) {
    if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifn.data(), ifn.size()) < 0)
      return fail("setsockopt SO_BINDTODEVICE");
  }
  if (key.proto == kProtoUdp && (key.dual_stack || key.addr.IsWildcard())) {
    if (family == AF_INET) {
      if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) < 0)
        return fail("setsockopt IP_PKTINFO");
    } else if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) < 0) {
      return fail("setsockopt IPV6_RECVPKTINFO");
    }
  }
  // Accepted connections inherit TCP_NODELAY and SO_OOBINLINE (urgent data
  // read in its place, so that it is forwarded, not dropped): set once here,
  // not per connection on the data path.
  if (key.proto == kProtoTcp) {
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
      return fail("setsockopt TCP_NODELAY");
    if (setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one)) < 0)
      return fail("setsockopt SO_OOBINLINE");
    // The copy path's reads learn from it whether the socket is empty.
    setsockopt(fd, IPPROTO_TCP, TCP_INQ, &one, sizeof(one));
  }
  SockAddr sa = key.dual_stack ? SockAddr::From6(Addr6::Any6(), key.port)
                               : SockAddr::From(key.addr, key.port);
  if (bind(fd, sa.sa(), sa.len) < 0) return fail("bind");
  if (key.proto == kProtoTcp && listen(fd, SOMAXCONN) < 0) return fail("listen");
  r.fd = std::move(sock);
  return r;
}

}  // namespace ringfwd
