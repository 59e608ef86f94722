#include "fwd/tap_udp.h"

#include <linux/errqueue.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "fwd/kinds.h"
#include "fwd/packet.h"
#include "fwd/pktinfo.h"
#include "uring/log.h"

namespace ringfwd {
namespace {

constexpr uint32_t kNone = UINT32_MAX;
constexpr int kReadBudget = 64;  // inbound datagrams per listener wake (x4)
constexpr int kRecvBatch = 16;   // replies per recvmmsg
constexpr int kReadRounds = 4;   // recvmmsg calls per flow per wake
constexpr size_t kRecvSlot = 65536;
constexpr int kErrorBudget = 16;    // queued ICMP errors per wake
constexpr size_t kQuoteMax = 1232;  // of an errored datagram: enough for either family's quote

Addr6 V4(const in_addr& a) { return Addr6::FromV4(ntohl(a.s_addr)); }

bool IsSet(const Addr6& a) { return !a.IsUnspecified6() && !(a.IsV4() && a.V4() == 0); }

}  // namespace

struct TapUdp::Scratch {
  mmsghdr msgs[FrameBatch::kMaxFrames];
  iovec iov[FrameBatch::kMaxFrames];
  mmsghdr rmsgs[kRecvBatch];
  iovec riov[kRecvBatch];
  std::unique_ptr<uint8_t[]> rdata{new uint8_t[kRecvBatch * kRecvSlot]};
  uint8_t drain[65536];
  uint8_t err_data[kQuoteMax];
  uint8_t quote[kIpv6HeaderLen + kUdpHeaderLen + kQuoteMax];
  alignas(cmsghdr) uint8_t cmsg[512];

  Scratch() {
    // The receive batch points at its slots once; each call sets the lengths.
    for (int i = 0; i < kRecvBatch; i++) {
      riov[i] = iovec{rdata.get() + i * kRecvSlot, kRecvSlot};
      rmsgs[i].msg_hdr = msghdr{};
      rmsgs[i].msg_hdr.msg_iov = &riov[i];
      rmsgs[i].msg_hdr.msg_iovlen = 1;
    }
  }
};

TapUdp::TapUdp(Ring* ring, const LinkConfig& config, const LinkState& state, SocketFactory* host,
               FrameSink* sink, size_t max_frame, const TapUdpOptions& opts)
    : ring_(ring),
      config_(config),
      state_(state),
      host_(host),
      sink_(sink),
      max_frame_(max_frame),
      opts_(opts),
      flows_(opts.max_flows),
      scratch_(new Scratch) {
  free_.reserve(opts.max_flows);
  for (size_t i = opts.max_flows; i-- > 0;) {
    flows_[i].prev = flows_[i].next = kNone;
    free_.push_back(i);
  }
  map_.reserve(opts.max_flows);
  ready_.reserve(opts.max_flows);
  ready_next_.reserve(opts.max_flows);
  blocked_.reserve(opts.max_flows);
}

TapUdp::~TapUdp() = default;  // sockets close with their Fds; the ring may be gone

Addr6 TapUdp::MapTarget(const Addr6& dst, uint16_t port) const {
  if (dst.IsV4()) {
    if (port == 53 && IsSet(opts_.dns4_target))
      for (const in_addr& d : config_.dns4)
        if (V4(d) == dst) return opts_.dns4_target;
    if (config_.map_host_loopback && config_.has_v4 && dst == V4(config_.gw4))
      return Addr6::Loopback4();
    return dst;
  }
  if (port == 53 && IsSet(opts_.dns6_target))
    for (const in6_addr& d : config_.dns6)
      if (Addr6::FromIn6(d) == dst) return opts_.dns6_target;
  if (config_.map_host_loopback && config_.has_v6) {
    Addr6 gw = Addr6::FromIn6(config_.gw6), gwg = Addr6::FromIn6(config_.gw6_global);
    if (dst == gw || (IsSet(gwg) && dst == gwg)) return Addr6::Loopback6();
  }
  return dst;
}

void TapUdp::HandleGroup(const FrameBatch& batch, std::span<const uint16_t> frames,
                         int64_t now_ns) {
  const FrameView& v0 = batch.view(frames[0]);
  if (v0.dst.IsMulticast() || (v0.dst.IsV4() && (v0.dst.V4() == 0xffffffff || v0.dst.V4() == 0))) {
    stats_.dropped += frames.size();  // no multicast or broadcast beyond the link
    return;
  }
  Key key{v0.src, v0.dst, v0.sport, v0.dport};
  uint32_t idx;
  auto it = map_.find(key);
  if (it != map_.end()) {
    idx = it->second;
  } else {
    idx = Create(key, now_ns);
    if (idx == kNone) {
      stats_.dropped += frames.size();
      return;
    }
  }
  Touch(idx, now_ns);
  if (flows_[idx].inbound) {
    flows_[idx].replied = true;
    SendToClient(idx, batch, frames);
    return;
  }
  // Each datagram is a send on the ring, straight from the frame's buffer
  // (the source keeps it until the ring has taken the send: the loop's next
  // wait submits it with everything else, no system call of its own).
  // MSG_DONTWAIT: a full buffer fails at once instead of leaving the send
  // parked on a poll that would read the buffer later. Only a failure
  // completes: a full buffer, or an error from an earlier ICMP
  // (ECONNREFUSED): UDP loses the datagram; the error itself is relayed
  // from the error queue.
  Flow& f = flows_[idx];
  for (uint16_t i : frames) {
    const FrameView& v = batch.view(i);
    std::span<const uint8_t> fr = batch.frame(i);
    io_uring_sqe* sqe = ring_->GetSqe();
    io_uring_prep_send(sqe, f.sock.get(), fr.data() + v.payload_off, v.payload_len, MSG_DONTWAIT);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, UserData{kind::kTapUdpSend, f.gen, idx}.Pack());
  }
  f.send_tail = ring_->QueuedTail();
  stats_.datagrams_out += frames.size();
}

uint32_t TapUdp::Claim(const Key& key, int64_t now_ns) {
  if (free_.empty()) {
    stats_.flows_evicted++;
    Close(lru_.tail());
  }
  uint32_t idx = free_.back();
  free_.pop_back();
  Flow& f = flows_[idx];
  f.used = true;
  f.replied = false;
  f.inbound = false;
  f.has_local = false;
  f.key = key;
  f.last_active = now_ns;
  map_.emplace(key, idx);
  lru_.PushFront(idx);
  return idx;
}

uint32_t TapUdp::Create(const Key& key, int64_t now_ns) {
  if (free_.empty() && lru_.empty()) return kNone;
  Addr6 target = MapTarget(key.dst, key.dport);
  SockAddr to = SockAddr::From(target, key.dport);
  absl::StatusOr<Fd> sock = host_->Socket(to.family(), SOCK_DGRAM);
  if (!sock.ok()) {
    stats_.flow_failures++;
    LOG_RATELIMITED(log::Level::kWarn, "tap UDP: %s", sock.status().message());
    return kNone;
  }
  int one = 1;
  if (to.family() == AF_INET) {
    setsockopt(sock->get(), SOL_IP, IP_RECVERR, &one, sizeof(one));
  } else {
    setsockopt(sock->get(), SOL_IPV6, IPV6_RECVERR, &one, sizeof(one));
    setsockopt(sock->get(), SOL_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }
  // The guest's source port where the host allows it; any port otherwise.
  SockAddr local =
      SockAddr::From(to.family() == AF_INET ? Addr6::Any4() : Addr6::Any6(), key.gport);
  (void)!bind(sock->get(), local.sa(), local.len);
  if (connect(sock->get(), to.sa(), to.len) < 0) {
    stats_.flow_failures++;
    LOG_RATELIMITED(log::Level::kWarn, "tap UDP: connect to %s: %s", to.ToString(),
                    std::strerror(errno));
    return kNone;
  }
  uint32_t idx = Claim(key, now_ns);
  Flow& f = flows_[idx];
  f.sock = std::move(*sock);
  f.target = target;
  ring_->PrepPollMultishot(f.sock.get(), POLLIN, UserData{kind::kTapUdp, f.gen, idx}.Pack());
  f.armed = true;
  stats_.flows_created++;
  LOG_DEBUG("tap UDP: flow %s:%d -> %s:%d via %s", key.guest.ToString(), key.gport,
            key.dst.ToString(), key.dport, to.ToString());
  return idx;
}

void TapUdp::HandleCompletion(const io_uring_cqe& cqe, UserData ud, int64_t now_ns) {
  if (ud.kind == kind::kTapUdpSend) {
    if (cqe.res < 0) stats_.dropped++;  // only failures complete
    return;
  }
  if (ud.index >= flows_.size()) return;
  Flow& f = flows_[ud.index];
  if (!f.used || f.gen != ud.gen) return;
  if (!(cqe.flags & IORING_CQE_F_MORE)) {
    f.armed = false;
    if (cqe.res == -ECANCELED) return;
    ring_->PrepPollMultishot(f.sock.get(), POLLIN, UserData{kind::kTapUdp, f.gen, ud.index}.Pack());
    f.armed = true;
  }
  if (cqe.res < 0) return;
  if (cqe.res & POLLERR) ReadErrors(ud.index);
  Requeue(ud.index, ReadReplies(ud.index, now_ns));
}

void TapUdp::Requeue(uint32_t index, ReadResult r) {
  Flow& f = flows_[index];
  if (r == ReadResult::kMore && !f.queued) {
    f.queued = true;
    ready_.push_back(index);
  } else if (r == ReadResult::kBlocked && !f.blocked) {
    f.blocked = true;
    blocked_.push_back(index);
  }
}

void TapUdp::RunBlocked(int64_t now_ns) {
  ready_next_.swap(blocked_);
  blocked_.clear();
  for (uint32_t idx : ready_next_) {
    Flow& f = flows_[idx];
    f.blocked = false;
    if (f.used && !f.inbound) Requeue(idx, ReadReplies(idx, now_ns));
  }
  ready_next_.clear();
}

void TapUdp::RunReady(int64_t now_ns) {
  ready_next_.swap(ready_);
  ready_.clear();
  for (uint32_t idx : ready_next_) {
    Flow& f = flows_[idx];
    f.queued = false;
    if (f.used && !f.inbound) Requeue(idx, ReadReplies(idx, now_ns));
  }
  ready_next_.clear();
}

TapUdp::ReadResult TapUdp::ReadReplies(uint32_t index, int64_t now_ns) {
  Flow& f = flows_[index];
  Scratch& s = *scratch_;
  bool v4 = f.key.guest.IsV4();
  size_t hdr = v4 ? kUdp4FrameHeadersLen : kUdp6FrameHeadersLen;
  // The largest datagram one frame of the link can carry.
  size_t room = std::min(kRecvSlot, max_frame_ > hdr ? max_frame_ - hdr : 0);
  FrameAddrs a;
  a.src_mac = config_.our_mac;
  a.dst_mac = state_.guest_mac;
  a.src = f.key.dst;
  a.dst = f.key.guest;
  for (int round = 0; round < kReadRounds; round++) {
    // Room for a frame on the link? Otherwise the datagrams wait in the
    // socket (its buffer, not ours, absorbs the burst).
    std::span<uint8_t> probe = sink_->Reserve(hdr + 1);
    sink_->Commit(0);
    if (probe.empty()) return ReadResult::kBlocked;
    for (int i = 0; i < kRecvBatch; i++) s.riov[i].iov_len = room;
    // One call takes what is queued: fewer than a batch means the socket
    // was empty, and the next datagram wakes the poll again.
    int n = recvmmsg(f.sock.get(), s.rmsgs, kRecvBatch, MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == EINTR || errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH)
        continue;  // a pending error, relayed from the error queue
      return ReadResult::kIdle;
    }
    for (int i = 0; i < n; i++) {
      size_t len = s.rmsgs[i].msg_len;
      std::span<uint8_t> buf;
      if (!(s.rmsgs[i].msg_hdr.msg_flags & MSG_TRUNC)) buf = sink_->Reserve(hdr + len);
      if (buf.empty()) {
        stats_.dropped++;  // larger than the link's MTU, or the link's queue is full
        continue;
      }
      std::memcpy(buf.data() + hdr, s.riov[i].iov_base, len);
      size_t flen = FinishUdpFrame(buf, a, f.key.dport, f.key.gport, len);
      sink_->Commit(flen);
      if (!flen) {
        stats_.dropped++;
        continue;
      }
      stats_.datagrams_in++;
      f.replied = true;
    }
    if (n > 0) Touch(index, now_ns);
    if (n < kRecvBatch) return ReadResult::kIdle;
  }
  return ReadResult::kMore;
}

void TapUdp::ReadErrors(uint32_t index) {
  Flow& f = flows_[index];
  Scratch& s = *scratch_;
  bool v4 = f.key.guest.IsV4();
  for (int i = 0; i < kErrorBudget; i++) {
    iovec iov{s.err_data, sizeof(s.err_data)};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = s.cmsg;
    mh.msg_controllen = sizeof(s.cmsg);
    ssize_t n = recvmsg(f.sock.get(), &mh, MSG_ERRQUEUE | MSG_DONTWAIT);
    if (n < 0) return;
    const sock_extended_err* ee = nullptr;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if ((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
          (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR))
        ee = reinterpret_cast<const sock_extended_err*>(CMSG_DATA(c));
    }
    if (!ee) continue;
    bool icmp4 = ee->ee_origin == SO_EE_ORIGIN_ICMP;
    bool icmp6 = ee->ee_origin == SO_EE_ORIGIN_ICMP6;
    if ((v4 && !icmp4) || (!v4 && !icmp6)) continue;  // local errors, other families
    // Who the guest hears it from: the router that sent it, unless that is
    // the target itself or the host's loopback (then the address the guest
    // wrote to).
    Addr6 from = f.key.dst;
    const sockaddr* off = SO_EE_OFFENDER(ee);
    if (icmp4 && off->sa_family == AF_INET) {
      Addr6 o = V4(reinterpret_cast<const sockaddr_in*>(off)->sin_addr);
      if (o != f.target && !o.IsLoopback() && IsSet(o)) from = o;
    } else if (icmp6 && off->sa_family == AF_INET6) {
      Addr6 o = Addr6::FromIn6(reinterpret_cast<const sockaddr_in6*>(off)->sin6_addr);
      if (o != f.target && !o.IsLoopback() && IsSet(o)) from = o;
    }
    // The datagram the guest sent, as it sent it: IP and UDP headers around
    // the payload the error queue returned.
    size_t plen = std::min<size_t>(n, sizeof(s.err_data));
    size_t ip_hdr = v4 ? kIpv4HeaderLen : kIpv6HeaderLen;
    size_t l4 = kUdpHeaderLen + plen;
    if (v4)
      WriteIpv4Header(s.quote, f.key.guest, f.key.dst, IPPROTO_UDP, 64, l4);
    else
      WriteIpv6Header(s.quote, f.key.guest, f.key.dst, IPPROTO_UDP, 64, l4);
    uint8_t* udp = s.quote + ip_hdr;
    Store16(udp, f.key.gport);
    Store16(udp + 2, f.key.dport);
    Store16(udp + 4, static_cast<uint16_t>(l4));
    Store16(udp + 6, 0);
    std::memcpy(udp + kUdpHeaderLen, s.err_data, plen);
    FillL4Checksum(std::span<uint8_t>(udp, l4), f.key.guest, f.key.dst, IPPROTO_UDP, 6);
    FrameAddrs a;
    a.src_mac = config_.our_mac;
    a.dst_mac = state_.guest_mac;
    a.src = from;
    a.dst = f.key.guest;
    bool mtu_info = (icmp4 && ee->ee_type == kIcmpDestUnreach && ee->ee_code == 4) ||
                    (icmp6 && ee->ee_type == kIcmp6PacketTooBig);
    std::span<uint8_t> buf = sink_->Reserve(std::min<size_t>(max_frame_, 1400));
    if (buf.empty()) {
      stats_.dropped++;
      continue;
    }
    size_t len = BuildIcmpErrorFrame(buf, a, ee->ee_type, ee->ee_code, mtu_info ? ee->ee_info : 0,
                                     std::span<const uint8_t>(s.quote, ip_hdr + l4));
    sink_->Commit(len);
    if (len) stats_.icmp_errors++;
  }
}

bool TapUdp::InboundKey(const Addr6& client, uint16_t port, uint16_t target_port, Key* key) const {
  if (client.IsV4()) {
    if (!config_.has_v4) return false;
    key->guest = V4(config_.addr4);
    // A client on the host's own loopback appears as the gateway.
    key->dst = client.IsLoopback() ? V4(config_.gw4) : client;
  } else {
    if (!config_.has_v6) return false;
    key->guest = Addr6::FromIn6(config_.addr6);
    Addr6 gwg = Addr6::FromIn6(config_.gw6_global);
    key->dst = client.IsLoopback() ? (IsSet(gwg) ? gwg : Addr6::FromIn6(config_.gw6)) : client;
  }
  key->gport = target_port;
  key->dport = port;
  return true;
}

void TapUdp::HandleInbound(const TapInboundListener& l, int64_t now_ns) {
  Scratch& s = *scratch_;
  for (int i = 0; i < 4 * kReadBudget; i++) {
    std::span<uint8_t> buf = sink_->Reserve(max_frame_);
    // Received at the IPv6 offset on IPv6 sockets (a dual-stack one may
    // hold IPv4 clients: moved down then), at the IPv4 offset otherwise.
    size_t at = l.family == AF_INET ? kUdp4FrameHeadersLen : kUdp6FrameHeadersLen;
    bool have_buf = buf.size() > at;
    iovec iov =
        have_buf ? iovec{buf.data() + at, buf.size() - at} : iovec{s.drain, sizeof(s.drain)};
    sockaddr_storage from{};
    msghdr mh{};
    mh.msg_name = &from;
    mh.msg_namelen = sizeof(from);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = s.cmsg;
    mh.msg_controllen = sizeof(s.cmsg);
    ssize_t n = recvmsg(l.fd, &mh, MSG_DONTWAIT);
    if (n < 0) {
      sink_->Commit(0);
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      LOG_RATELIMITED(log::Level::kWarn, "%s: receive: %s", l.label ? *l.label : "tap UDP",
                      std::strerror(errno));
      return;
    }
    SockAddr client;
    std::memcpy(&client.ss, &from, sizeof(from));
    client.len = mh.msg_namelen;
    Key key;
    if (!have_buf || (mh.msg_flags & MSG_TRUNC) || !state_.guest_mac_known ||
        !InboundKey(client.addr(), client.port(), l.target_port, &key)) {
      sink_->Commit(0);
      stats_.dropped++;  // no room, too big, no guest seen yet, or no address of the family
      continue;
    }
    uint32_t idx;
    auto it = map_.find(key);
    if (it != map_.end() && flows_[it->second].inbound) {
      idx = it->second;
    } else {
      if (it != map_.end()) Close(it->second);  // an outbound flow of the same tuple
      if (free_.empty() && lru_.empty()) {
        sink_->Commit(0);
        stats_.dropped++;
        continue;
      }
      idx = Claim(key, now_ns);
      Flow& f = flows_[idx];
      f.inbound = true;
      f.listener = l.index;
      f.listener_fd = l.fd;
      f.client = from;
      f.client_len = mh.msg_namelen;
      f.has_local = ReadPktinfo(&mh, &f.local, &f.ifindex);
      stats_.flows_created++;
    }
    Touch(idx, now_ns);
    bool v4 = key.guest.IsV4();
    if (v4 && at == kUdp6FrameHeadersLen) {
      std::memmove(buf.data() + kUdp4FrameHeadersLen, buf.data() + at, n);
    }
    FrameAddrs a;
    a.src_mac = config_.our_mac;
    a.dst_mac = state_.guest_mac;
    a.src = key.dst;
    a.dst = key.guest;
    size_t len = FinishUdpFrame(buf, a, key.dport, key.gport, n);
    sink_->Commit(len);
    if (len)
      stats_.datagrams_in++;
    else
      stats_.dropped++;
  }
}

void TapUdp::SendToClient(uint32_t index, const FrameBatch& batch,
                          std::span<const uint16_t> frames) {
  Flow& f = flows_[index];
  Scratch& s = *scratch_;
  // The reply's source: the address the client wrote to (a wildcard
  // listener would otherwise pick one by route).
  alignas(cmsghdr) uint8_t ctrl[kPktinfoSpace];
  size_t ctrl_len = f.has_local ? WritePktinfo(ctrl, f.client.ss_family, f.local, f.ifindex) : 0;
  size_t n = 0;
  for (uint16_t i : frames) {
    const FrameView& v = batch.view(i);
    std::span<const uint8_t> fr = batch.frame(i);
    s.iov[n] = iovec{const_cast<uint8_t*>(fr.data()) + v.payload_off, v.payload_len};
    msghdr& mh = s.msgs[n].msg_hdr;
    mh = msghdr{};
    mh.msg_iov = &s.iov[n];
    mh.msg_iovlen = 1;
    mh.msg_name = &f.client;
    mh.msg_namelen = f.client_len;
    mh.msg_control = ctrl_len ? ctrl : nullptr;
    mh.msg_controllen = ctrl_len;
    n++;
  }
  size_t sent = 0;
  while (sent < n) {
    int r = sendmmsg(f.listener_fd, s.msgs + sent, n - sent, MSG_DONTWAIT);
    if (r > 0) {
      sent += r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    stats_.dropped++;
    sent++;
  }
  stats_.datagrams_out += n;
}

void TapUdp::FlushListener(uint32_t index) {
  for (uint32_t i = 0; i < flows_.size(); i++)
    if (flows_[i].used && flows_[i].inbound && flows_[i].listener == index) Close(i);
}

void TapUdp::Touch(uint32_t index, int64_t now_ns) {
  flows_[index].last_active = now_ns;
  lru_.MoveToFront(index);
}

void TapUdp::Close(uint32_t index) {
  Flow& f = flows_[index];
  if (!f.used) return;
  if (f.armed) ring_->PrepCancel(UserData{kind::kTapUdp, f.gen, index}.Pack());
  lru_.Unlink(index);
  map_.erase(f.key);
  // Sends still queued name the socket by its number: it is closed after
  // they go to the kernel (and before the number goes to another socket).
  ring_->Close(std::move(f.sock));
  f.used = false;
  f.armed = false;
  f.inbound = false;
  f.listener_fd = -1;
  f.gen = (f.gen + 1) & UserData::kGenMask;
  free_.push_back(index);
}

void TapUdp::Expire(int64_t now_ns) {
  uint32_t i = lru_.tail();
  while (i != kNone) {
    Flow& f = flows_[i];
    uint32_t newer = lru_.newer(i);
    int64_t idle = now_ns - f.last_active;
    if (idle <= opts_.idle_ns) break;
    if (!f.replied || idle > opts_.idle_both_ns) {
      stats_.flows_expired++;
      Close(i);
    }
    i = newer;
  }
}

void TapUdp::CloseAll() {
  for (uint32_t i = 0; i < flows_.size(); i++) Close(i);
}

}  // namespace ringfwd
