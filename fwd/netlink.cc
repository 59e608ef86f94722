#include "fwd/netlink.h"

#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "uring/status.h"

namespace ringfwd {
namespace {

constexpr size_t kBuf = 32768;

// A request being built: header, fixed part, attributes.
struct Req {
  alignas(nlmsghdr) uint8_t buf[512] = {};
  nlmsghdr* hdr() { return reinterpret_cast<nlmsghdr*>(buf); }
  template <typename T>
  T* Body() {
    return reinterpret_cast<T*>(buf + NLMSG_HDRLEN);
  }
  void Init(uint16_t type, uint16_t flags, size_t body) {
    hdr()->nlmsg_len = NLMSG_LENGTH(body);
    hdr()->nlmsg_type = type;
    hdr()->nlmsg_flags = NLM_F_REQUEST | flags;
  }
  void Attr(uint16_t type, const void* data, size_t len) {
    size_t off = NLMSG_ALIGN(hdr()->nlmsg_len);
    rtattr* rta = reinterpret_cast<rtattr*>(buf + off);
    rta->rta_type = type;
    rta->rta_len = RTA_LENGTH(len);
    std::memcpy(RTA_DATA(rta), data, len);
    hdr()->nlmsg_len = off + RTA_ALIGN(rta->rta_len);
  }
};

int FamilyOf(const Addr6& a) { return a.IsV4() ? AF_INET : AF_INET6; }

// The address bytes in network order, for an attribute (4 or 16 bytes).
size_t RawAddr(const Addr6& a, uint8_t out[16]) {
  if (a.IsV4()) {
    std::memcpy(out, a.b.data() + 12, 4);
    return 4;
  }
  std::memcpy(out, a.b.data(), 16);
  return 16;
}

Addr6 FromRaw(int family, const void* data) {
  if (family == AF_INET) {
    uint32_t v;
    std::memcpy(&v, data, 4);
    return Addr6::FromV4(ntohl(v));
  }
  in6_addr a;
  std::memcpy(&a, data, 16);
  return Addr6::FromIn6(a);
}

std::string IfLabel(int ifindex, const std::string& name) {
  return name.empty() ? absl::StrCat("interface ", ifindex) : absl::StrCat("interface ", name);
}

}  // namespace

absl::StatusOr<Netlink> Netlink::Open() {
  Fd fd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd) return ErrnoError(errno, "netlink socket");
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0)
    return ErrnoError(errno, "netlink bind");
  int one = 1;
  setsockopt(fd.get(), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
  timeval tv{5, 0};  // the kernel always answers; never wait forever if not
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return Netlink(std::move(fd));
}

int Netlink::Send(void* msg, size_t len, uint16_t flags) {
  nlmsghdr* h = static_cast<nlmsghdr*>(msg);
  h->nlmsg_flags |= flags;
  h->nlmsg_seq = ++seq_;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd_.get(), msg, len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0)
    return errno;
  return 0;
}

template <typename F>
int Netlink::Receive(int rounds, F&& on_reply) {
  alignas(nlmsghdr) uint8_t buf[kBuf];
  for (int round = 0; round < rounds; round++) {
    ssize_t n = recv(fd_.get(), buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    for (nlmsghdr* r = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(r, static_cast<size_t>(n));
         r = NLMSG_NEXT(r, n)) {
      if (r->nlmsg_seq != seq_) continue;
      if (std::optional<int> done = on_reply(r)) return *done;
    }
  }
  return ETIMEDOUT;
}

int Netlink::Transact(void* msg, size_t len) {
  if (int err = Send(msg, len, NLM_F_ACK)) return err;
  return Receive(64, [](const nlmsghdr* r) -> std::optional<int> {
    if (r->nlmsg_type != NLMSG_ERROR) return std::nullopt;
    return -static_cast<const nlmsgerr*>(NLMSG_DATA(r))->error;
  });
}

template <typename F>
int Netlink::Dump(void* msg, size_t len, F&& on_msg) {
  if (int err = Send(msg, len, NLM_F_DUMP)) return err;
  return Receive(100000, [&](const nlmsghdr* r) -> std::optional<int> {
    if (r->nlmsg_type == NLMSG_DONE) return 0;
    if (r->nlmsg_type == NLMSG_ERROR) {
      int error = static_cast<const nlmsgerr*>(NLMSG_DATA(r))->error;
      if (error) return -error;
      return std::nullopt;
    }
    on_msg(r);
    return std::nullopt;
  });
}

absl::StatusOr<TemplateIface> Netlink::FindTemplate(int family) {
  const char* fam = family == AF_INET ? "IPv4" : "IPv6";
  TemplateIface t;
  uint32_t best_metric = UINT32_MAX;
  Req req;
  req.Init(RTM_GETROUTE, 0, sizeof(rtmsg));
  req.Body<rtmsg>()->rtm_family = family;
  int err = Dump(req.buf, req.hdr()->nlmsg_len, [&](const nlmsghdr* r) {
    if (r->nlmsg_type != RTM_NEWROUTE) return;
    const rtmsg* rt = static_cast<const rtmsg*>(NLMSG_DATA(r));
    if (rt->rtm_family != family || rt->rtm_dst_len != 0 || rt->rtm_type != RTN_UNICAST) return;
    int oif = 0;
    uint32_t metric = 0, table = rt->rtm_table;
    Addr6 gw;
    bool has_gw = false;
    int len = RTM_PAYLOAD(r);
    for (const rtattr* a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
      if (a->rta_type == RTA_OIF) std::memcpy(&oif, RTA_DATA(a), 4);
      if (a->rta_type == RTA_PRIORITY) std::memcpy(&metric, RTA_DATA(a), 4);
      if (a->rta_type == RTA_TABLE) std::memcpy(&table, RTA_DATA(a), 4);
      if (a->rta_type == RTA_GATEWAY) {
        gw = FromRaw(family, RTA_DATA(a));
        has_gw = true;
      }
    }
    if (table != RT_TABLE_MAIN || oif == 0 || (t.ifindex && metric >= best_metric)) return;
    best_metric = metric;
    t.ifindex = oif;
    t.gateway = gw;
    t.has_gateway = has_gw;
  });
  if (err) return ErrnoError(err, absl::StrCat("netlink: list ", fam, " routes"));
  if (!t.ifindex) return absl::NotFoundError(absl::StrCat("no ", fam, " default route"));
  char name[IF_NAMESIZE] = {};
  if (if_indextoname(t.ifindex, name)) t.name = name;

  Req areq;
  areq.Init(RTM_GETADDR, 0, sizeof(ifaddrmsg));
  areq.Body<ifaddrmsg>()->ifa_family = family;
  err = Dump(areq.buf, areq.hdr()->nlmsg_len, [&](const nlmsghdr* r) {
    if (r->nlmsg_type != RTM_NEWADDR) return;
    const ifaddrmsg* ifa = static_cast<const ifaddrmsg*>(NLMSG_DATA(r));
    if (static_cast<int>(ifa->ifa_index) != t.ifindex || ifa->ifa_family != family ||
        ifa->ifa_scope != RT_SCOPE_UNIVERSE)
      return;
    const void* local = nullptr;
    const void* address = nullptr;
    int len = IFA_PAYLOAD(r);
    for (const rtattr* a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
      if (a->rta_type == IFA_LOCAL) local = RTA_DATA(a);
      if (a->rta_type == IFA_ADDRESS) address = RTA_DATA(a);
    }
    const void* use = local ? local : address;  // IFA_LOCAL is ours on point-to-point links
    if (use) t.addrs.push_back(IfAddr{FromRaw(family, use), ifa->ifa_prefixlen});
  });
  if (err) return ErrnoError(err, absl::StrCat("netlink: list ", fam, " addresses"));
  return t;
}

absl::StatusOr<int> Netlink::IfIndex(const std::string& name) {
  Req req;
  req.Init(RTM_GETLINK, 0, sizeof(ifinfomsg));
  req.Body<ifinfomsg>()->ifi_family = AF_UNSPEC;
  req.Attr(IFLA_IFNAME, name.c_str(), name.size() + 1);
  req.hdr()->nlmsg_seq = ++seq_;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd_.get(), req.buf, req.hdr()->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel),
             sizeof(kernel)) < 0)
    return ErrnoError(errno, absl::StrCat("netlink: look up interface ", name));
  alignas(nlmsghdr) uint8_t buf[kBuf];
  for (int round = 0; round < 64; round++) {
    ssize_t n = recv(fd_.get(), buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("netlink: look up interface ", name));
    }
    for (nlmsghdr* r = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(r, static_cast<size_t>(n));
         r = NLMSG_NEXT(r, n)) {
      if (r->nlmsg_seq != seq_) continue;
      if (r->nlmsg_type == NLMSG_ERROR) {
        int e = -static_cast<const nlmsgerr*>(NLMSG_DATA(r))->error;
        return ErrnoError(e ? e : ENODEV, absl::StrCat("interface ", name));
      }
      if (r->nlmsg_type == RTM_NEWLINK)
        return static_cast<const ifinfomsg*>(NLMSG_DATA(r))->ifi_index;
    }
  }
  return ErrnoError(ETIMEDOUT, absl::StrCat("netlink: look up interface ", name));
}

absl::Status Netlink::LinkUp(int ifindex, const std::string& name) {
  Req req;
  req.Init(RTM_NEWLINK, 0, sizeof(ifinfomsg));
  ifinfomsg* ifi = req.Body<ifinfomsg>();
  ifi->ifi_index = ifindex;
  ifi->ifi_flags = IFF_UP;
  ifi->ifi_change = IFF_UP;
  int err = Transact(req.buf, req.hdr()->nlmsg_len);
  if (err) return ErrnoError(err, absl::StrCat("set ", IfLabel(ifindex, name), " up"));
  return absl::OkStatus();
}

absl::Status Netlink::SetMtu(int ifindex, const std::string& name, uint32_t mtu) {
  Req req;
  req.Init(RTM_NEWLINK, 0, sizeof(ifinfomsg));
  req.Body<ifinfomsg>()->ifi_index = ifindex;
  req.Attr(IFLA_MTU, &mtu, sizeof(mtu));
  int err = Transact(req.buf, req.hdr()->nlmsg_len);
  if (err) return ErrnoError(err, absl::StrCat("set MTU ", mtu, " on ", IfLabel(ifindex, name)));
  return absl::OkStatus();
}

absl::Status Netlink::AddAddress(int ifindex, const std::string& name, const IfAddr& a) {
  Req req;
  req.Init(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, sizeof(ifaddrmsg));
  ifaddrmsg* ifa = req.Body<ifaddrmsg>();
  ifa->ifa_family = FamilyOf(a.addr);
  ifa->ifa_prefixlen = a.prefix;
  ifa->ifa_index = ifindex;
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  uint8_t raw[16];
  size_t n = RawAddr(a.addr, raw);
  req.Attr(IFA_LOCAL, raw, n);
  req.Attr(IFA_ADDRESS, raw, n);
  if (!a.addr.IsV4()) {
    ifa->ifa_flags = IFA_F_NODAD;
    uint32_t flags = IFA_F_NODAD;
    req.Attr(IFA_FLAGS, &flags, sizeof(flags));
  }
  int err = Transact(req.buf, req.hdr()->nlmsg_len);
  if (err && err != EEXIST)
    return ErrnoError(err, absl::StrCat("add address ", a.addr.ToString(), "/", a.prefix, " to ",
                                        IfLabel(ifindex, name)));
  return absl::OkStatus();
}

absl::Status Netlink::AddDefaultRoute(int ifindex, const std::string& name, const Addr6& gateway) {
  Req req;
  req.Init(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, sizeof(rtmsg));
  rtmsg* rt = req.Body<rtmsg>();
  rt->rtm_family = FamilyOf(gateway);
  rt->rtm_table = RT_TABLE_MAIN;
  rt->rtm_protocol = RTPROT_BOOT;
  rt->rtm_scope = RT_SCOPE_UNIVERSE;
  rt->rtm_type = RTN_UNICAST;
  uint8_t raw[16];
  size_t n = RawAddr(gateway, raw);
  req.Attr(RTA_GATEWAY, raw, n);
  uint32_t oif = ifindex;
  req.Attr(RTA_OIF, &oif, sizeof(oif));
  int err = Transact(req.buf, req.hdr()->nlmsg_len);
  if (err && err != EEXIST)
    return ErrnoError(err, absl::StrCat("add default route via ", gateway.ToString(), " on ",
                                        IfLabel(ifindex, name)));
  return absl::OkStatus();
}

absl::Status Netlink::LoopbackUp() {
  RINGFWD_ASSIGN_OR_RETURN(int lo, IfIndex("lo"));
  return LinkUp(lo, "lo");
}

}  // namespace ringfwd
