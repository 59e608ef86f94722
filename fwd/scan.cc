#include "fwd/scan.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "uring/status.h"

namespace ringfwd {
namespace {

constexpr int kTcpListen = 10;  // TCP_LISTEN in the kernel's enum
constexpr int kTcpClose = 7;    // TCP_CLOSE: how unconnected UDP sockets report

absl::Status Dump(int diag, int family, uint8_t proto, const absl::flat_hash_set<uint64_t>& exclude,
                  PortSet* out) {
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = family;
  msg.req.sdiag_protocol = proto;
  // UDP sockets that are bound but not connected are in TCP_CLOSE; connected
  // ones (ESTABLISHED) are clients, not servers.
  msg.req.idiag_states = proto == IPPROTO_TCP ? (1u << kTcpListen) : (1u << kTcpClose);
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  if (sendto(diag, &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0)
    return ErrnoError(errno, "sock_diag request");
  alignas(nlmsghdr) char buf[32768];
  for (int rounds = 0; rounds < 100000; rounds++) {
    ssize_t n = recv(diag, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "sock_diag receive");
    }
    unsigned int len = static_cast<unsigned int>(n);
    for (nlmsghdr* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) return absl::OkStatus();
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        return ErrnoError(-e->error, "sock_diag");
      }
      auto* m = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
      if (exclude.contains(m->idiag_inode)) continue;
      out->set(ntohs(m->id.idiag_sport));
    }
  }
  return absl::InternalError("sock_diag: dump did not end");
}

}  // namespace

absl::StatusOr<Fd> OpenSockDiag() {
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return ErrnoError(errno, "socket NETLINK_SOCK_DIAG");
  return Fd(fd);
}

absl::StatusOr<PortSet> ListeningPorts(int diag, uint8_t proto,
                                       const absl::flat_hash_set<uint64_t>& exclude) {
  PortSet ports;
  RINGFWD_RETURN_IF_ERROR(Dump(diag, AF_INET, proto, exclude, &ports));
  RINGFWD_RETURN_IF_ERROR(Dump(diag, AF_INET6, proto, exclude, &ports));
  return ports;
}

}  // namespace ringfwd
