#include "fwd/udp_flow.h"

#include <poll.h>

#include <cerrno>
#include <cstring>

#include "fwd/kinds.h"
#include "fwd/pktinfo.h"
#include "uring/log.h"

namespace ringfwd {
namespace {

constexpr uint32_t kNone = UINT32_MAX;
constexpr int kBatch = 32;
constexpr size_t kMaxDatagram = 65536;
constexpr int kBatchesPerWake = 4;

}  // namespace

struct UdpFlows::Batch {
  mmsghdr msgs[kBatch];
  iovec iov[kBatch];
  sockaddr_storage names[kBatch];
  alignas(cmsghdr) char cmsg[kBatch][kPktinfoSpace];
  std::unique_ptr<char[]> data{new char[kBatch * kMaxDatagram]};

  // Prepares the batch for a receive (names and cmsgs wanted or not).
  void PrepRecv(bool want_names) {
    for (int i = 0; i < kBatch; i++) {
      iov[i] = iovec{data.get() + i * kMaxDatagram, kMaxDatagram};
      msghdr& mh = msgs[i].msg_hdr;
      mh = msghdr{};
      mh.msg_iov = &iov[i];
      mh.msg_iovlen = 1;
      if (want_names) {
        mh.msg_name = &names[i];
        mh.msg_namelen = sizeof(names[i]);
        mh.msg_control = cmsg[i];
        mh.msg_controllen = kPktinfoSpace;
      }
    }
  }
};

UdpFlows::UdpFlows(Ring* ring, size_t max_flows, int64_t idle_timeout_ns)
    : ring_(ring), idle_timeout_ns_(idle_timeout_ns), flows_(max_flows), batch_(new Batch) {
  free_.reserve(max_flows);
  for (size_t i = max_flows; i-- > 0;) {
    flows_[i].prev = flows_[i].next = kNone;
    free_.push_back(i);
  }
  map_.reserve(max_flows);
}

UdpFlows::~UdpFlows() = default;

void UdpFlows::HandleListener(const UdpListenerInfo& l, int64_t now_ns) {
  Batch& b = *batch_;
  for (int round = 0; round < kBatchesPerWake; round++) {
    b.PrepRecv(true);
    int n = recvmmsg(l.fd, b.msgs, kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EINTR)
        LOG_RATELIMITED(log::Level::kWarn, "%s: receive: %s", *l.label, std::strerror(errno));
      return;
    }
    for (int i = 0; i < n; i++) {
      msghdr& mh = b.msgs[i].msg_hdr;
      SockAddr client;
      std::memcpy(&client.ss, &b.names[i], sizeof(client.ss));
      client.len = mh.msg_namelen;
      Key key{l.index, client.addr(), client.port()};
      uint32_t idx;
      auto it = map_.find(key);
      if (it != map_.end()) {
        idx = it->second;
      } else {
        Addr6 local;
        uint32_t ifindex = 0;
        bool has_local = ReadPktinfo(&mh, &local, &ifindex);
        idx = Create(l, key, b.names[i], mh.msg_namelen, has_local ? &local : nullptr, ifindex,
                     now_ns);
        if (idx == kNone) {
          stats_.dropped++;
          continue;
        }
      }
      Touch(idx, now_ns);
      stats_.datagrams_in++;
      if (send(flows_[idx].sock.get(), b.iov[i].iov_base, b.msgs[i].msg_len, MSG_DONTWAIT) < 0)
        stats_.dropped++;  // UDP: a full buffer or an ICMP error loses the datagram
    }
    if (n < kBatch) return;
  }
}

uint32_t UdpFlows::Create(const UdpListenerInfo& l, const Key& key, const sockaddr_storage& client,
                          socklen_t client_len, const Addr6* local, uint32_t ifindex,
                          int64_t now_ns) {
  if (free_.empty()) {
    if (lru_.empty()) return kNone;
    stats_.flows_evicted++;
    Close(lru_.tail());
  }
  Addr6 taddr = l.target.addr;
  if (taddr.IsUnspecified6()) taddr = key.addr.IsV4() ? Addr6::Loopback4() : Addr6::Loopback6();
  SockAddr target = SockAddr::From(taddr, l.target.port);
  absl::StatusOr<Fd> sock = l.side->Socket(target.family(), SOCK_DGRAM);
  if (!sock.ok()) {
    LOG_RATELIMITED(log::Level::kWarn, "%s: %s", *l.label, sock.status().message());
    return kNone;
  }
  if (connect(sock->get(), target.sa(), target.len) < 0) {
    LOG_RATELIMITED(log::Level::kWarn, "%s: connect to %s: %s", *l.label, target.ToString(),
                    std::strerror(errno));
    return kNone;
  }
  uint32_t idx = free_.back();
  free_.pop_back();
  Flow& f = flows_[idx];
  f.used = true;
  f.sock = std::move(*sock);
  f.key = key;
  f.listener_fd = l.fd;
  f.client = client;
  f.client_len = client_len;
  f.has_local = local != nullptr;
  if (local) f.local = *local;
  f.ifindex = ifindex;
  f.last_active = now_ns;
  map_.emplace(key, idx);
  lru_.PushFront(idx);
  ring_->PrepPollMultishot(f.sock.get(), POLLIN, UserData{kind::kUdpReply, f.gen, idx}.Pack());
  f.armed = true;
  stats_.flows_created++;
  return idx;
}

void UdpFlows::HandleCompletion(const io_uring_cqe& cqe, UserData ud, int64_t now_ns) {
  if (ud.index >= flows_.size()) return;
  Flow& f = flows_[ud.index];
  if (!f.used || f.gen != ud.gen) return;
  if (!(cqe.flags & IORING_CQE_F_MORE)) {
    ring_->PrepPollMultishot(f.sock.get(), POLLIN,
                             UserData{kind::kUdpReply, f.gen, ud.index}.Pack());
  }
  if (cqe.res < 0) return;
  Batch& b = *batch_;
  for (int round = 0; round < kBatchesPerWake; round++) {
    b.PrepRecv(false);
    int n = recvmmsg(f.sock.get(), b.msgs, kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) return;  // EAGAIN, or a pending ICMP error (ECONNREFUSED): nothing to send
    Touch(ud.index, now_ns);
    SendReplies(ud.index, n);
    if (n < kBatch) return;
  }
}

void UdpFlows::SendReplies(uint32_t index, int n) {
  Flow& f = flows_[index];
  Batch& b = *batch_;
  // Reuse the receive headers: point each at the client and the source cmsg.
  alignas(cmsghdr) char ctrl[kPktinfoSpace];
  size_t ctrl_len = f.has_local ? WritePktinfo(ctrl, f.client.ss_family, f.local, f.ifindex) : 0;
  for (int i = 0; i < n; i++) {
    msghdr& mh = b.msgs[i].msg_hdr;
    b.iov[i].iov_len = b.msgs[i].msg_len;
    mh.msg_name = &f.client;
    mh.msg_namelen = f.client_len;
    mh.msg_control = ctrl_len ? ctrl : nullptr;
    mh.msg_controllen = ctrl_len;
  }
  int sent = 0;
  while (sent < n) {
    int r = sendmmsg(f.listener_fd, b.msgs + sent, n - sent, MSG_DONTWAIT);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      stats_.dropped += n - sent;  // UDP: a full socket buffer drops
      break;
    }
    sent += r;
    stats_.datagrams_out += r;
  }
}

void UdpFlows::Touch(uint32_t index, int64_t now_ns) {
  Flow& f = flows_[index];
  f.last_active = now_ns;
  lru_.MoveToFront(index);
}

void UdpFlows::Close(uint32_t index) {
  Flow& f = flows_[index];
  if (!f.used) return;
  if (f.armed) ring_->PrepCancel(UserData{kind::kUdpReply, f.gen, index}.Pack());
  lru_.Unlink(index);
  map_.erase(f.key);
  ring_->Close(std::move(f.sock));  // after the submissions that name it
  f.used = false;
  f.armed = false;
  f.has_local = false;
  f.gen = (f.gen + 1) & UserData::kGenMask;
  free_.push_back(index);
}

void UdpFlows::Expire(int64_t now_ns) {
  while (!lru_.empty() && now_ns - flows_[lru_.tail()].last_active > idle_timeout_ns_) {
    stats_.flows_expired++;
    Close(lru_.tail());
  }
}

void UdpFlows::FlushListener(uint32_t index) {
  for (uint32_t i = 0; i < flows_.size(); i++)
    if (flows_[i].used && flows_[i].key.listener == index) Close(i);
}

void UdpFlows::CloseAll() {
  for (uint32_t i = 0; i < flows_.size(); i++) Close(i);
}

}  // namespace ringfwd
