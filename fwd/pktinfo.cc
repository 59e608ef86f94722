#include "fwd/pktinfo.h"

#include <arpa/inet.h>

#include <cstring>

namespace ringfwd {

bool ReadPktinfo(msghdr* mh, Addr6* local, uint32_t* ifindex) {
  for (cmsghdr* c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      in_pktinfo pi;
      std::memcpy(&pi, CMSG_DATA(c), sizeof(pi));
      *local = Addr6::FromV4(ntohl(pi.ipi_addr.s_addr));
      *ifindex = pi.ipi_ifindex;
      return true;
    }
    if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo pi;
      std::memcpy(&pi, CMSG_DATA(c), sizeof(pi));
      *local = Addr6::FromIn6(pi.ipi6_addr);
      *ifindex = pi.ipi6_ifindex;
      return true;
    }
  }
  return false;
}

size_t WritePktinfo(void* ctrl, int family, const Addr6& local, uint32_t ifindex) {
  std::memset(ctrl, 0, kPktinfoSpace);
  cmsghdr* c = static_cast<cmsghdr*>(ctrl);
  if (family == AF_INET) {
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
    in_pktinfo pi{};
    pi.ipi_spec_dst.s_addr = htonl(local.V4());
    std::memcpy(CMSG_DATA(c), &pi, sizeof(pi));
    return CMSG_SPACE(sizeof(in_pktinfo));
  }
  c->cmsg_level = IPPROTO_IPV6;
  c->cmsg_type = IPV6_PKTINFO;
  c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
  in6_pktinfo pi{};
  pi.ipi6_addr = local.In6();
  // Link-local sources need their interface; others are routed.
  bool link_local = !local.IsV4() && local.b[0] == 0xfe && (local.b[1] & 0xc0) == 0x80;
  pi.ipi6_ifindex = link_local ? ifindex : 0;
  std::memcpy(CMSG_DATA(c), &pi, sizeof(pi));
  return CMSG_SPACE(sizeof(in6_pktinfo));
}

}  // namespace ringfwd
