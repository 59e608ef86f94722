#include "fwd/tap_icmp.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "fwd/kinds.h"
#include "uring/log.h"

namespace ringfwd {
namespace {

constexpr uint32_t kNone = UINT32_MAX;
// Replies read per completion before yielding to the loop.
constexpr int kMaxRepliesPerWake = 64;

// The current value of the sysctl, for the log line ("?" if unreadable).
std::string PingGroupRange() {
  int fd = open("/proc/sys/net/ipv4/ping_group_range", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "?";
  char buf[64];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return "?";
  std::string s(buf, static_cast<size_t>(n));
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s)
    if (c == '\t') c = ' ';
  return s;
}

}  // namespace

TapIcmp::TapIcmp(Ring* ring, const LinkConfig& config, const LinkState& state, size_t max_flows,
                 int64_t idle_timeout_ns)
    : ring_(ring), config_(config), state_(state), idle_timeout_ns_(idle_timeout_ns) {
  flows_.resize(max_flows);
  free_.reserve(max_flows);
  for (size_t i = max_flows; i > 0; i--) free_.push_back(static_cast<uint32_t>(i - 1));
  map_.reserve(max_flows);
}

TapIcmp::~TapIcmp() { CloseAll(); }

Addr6 TapIcmp::TargetOf(const Addr6& dst) const {
  if (!config_.map_host_loopback) return dst;
  if (dst.IsV4()) {
    if (config_.has_v4 && dst == Addr6::FromV4(ntohl(config_.gw4.s_addr)))
      return Addr6::Loopback4();
    return dst;
  }
  Addr6 gw_global = Addr6::FromIn6(config_.gw6_global);
  if (config_.has_v6 &&
      (dst == Addr6::FromIn6(config_.gw6) || (!gw_global.IsUnspecified6() && dst == gw_global)))
    return Addr6::Loopback6();
  return dst;
}

bool TapIcmp::HandleGuestEcho(const FrameView& v, std::span<const uint8_t> frame, int64_t now_ns) {
  if (!v.ok()) return false;
  bool request = (v.is_v4() && v.l4_proto == IPPROTO_ICMP && v.icmp_type == kIcmpEchoRequest) ||
                 (v.is_v6() && v.l4_proto == IPPROTO_ICMPV6 && v.icmp_type == kIcmp6EchoRequest);
  if (!request) return false;
  if (v.icmp_code != 0 || !VerifyL4Checksum(v, frame)) {
    stats_.dropped++;
    return true;
  }
  Key key{v.src, v.dst, v.icmp_id};
  uint32_t idx;
  auto it = map_.find(key);
  if (it != map_.end()) {
    idx = it->second;
  } else {
    idx = Create(key, now_ns);
    if (idx == kNone) return true;  // counted by Create
  }
  Flow& f = flows_[idx];
  f.last_active = now_ns;
  // The request as the guest wrote it; the kernel sets the identifier and
  // the checksum of what it sends.
  if (send(f.sock.get(), frame.data() + v.l4_off, v.l4_len, MSG_DONTWAIT) < 0) {
    LOG_RATELIMITED(log::Level::kWarn, "ICMP echo to %s: send: %s", key.dst.ToString(),
                    std::strerror(errno));
    stats_.dropped++;
    return true;
  }
  stats_.requests++;
  return true;
}

uint32_t TapIcmp::Create(const Key& key, int64_t now_ns) {
  if (free_.empty()) {
    // Evict the least recently used flow: a scan, only when the table is full.
    uint32_t oldest = kNone;
    for (uint32_t i = 0; i < flows_.size(); i++)
      if (flows_[i].used && (oldest == kNone || flows_[i].last_active < flows_[oldest].last_active))
        oldest = i;
    if (oldest == kNone) {
      stats_.dropped++;
      return kNone;
    }
    stats_.flows_evicted++;
    Close(oldest);
  }
  Addr6 target = TargetOf(key.dst);
  bool v4 = target.IsV4();
  int fd = socket(v4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  v4 ? int{IPPROTO_ICMP} : int{IPPROTO_ICMPV6});
  if (fd < 0) {
    int err = errno;
    if (err == EACCES) {
      if (!eacces_logged_) {
        eacces_logged_ = true;
        LOG_WARN(
            "ICMP echo for the guest disabled: ping sockets are not permitted because "
            "sysctl net.ipv4.ping_group_range (\"%s\") does not include group %d; echo "
            "requests are dropped until it does (e.g. sysctl -w "
            "net.ipv4.ping_group_range=\"0 2147483647\")",
            PingGroupRange(), static_cast<int>(getegid()));
      }
      stats_.not_permitted++;
    } else {
      LOG_RATELIMITED(log::Level::kWarn, "ICMP echo to %s: ping socket: %s", key.dst.ToString(),
                      std::strerror(err));
      stats_.dropped++;
    }
    return kNone;
  }
  Fd sock(fd);
  SockAddr to = SockAddr::From(target, 0);
  if (connect(sock.get(), to.sa(), to.len) < 0) {
    LOG_RATELIMITED(log::Level::kWarn, "ICMP echo: connect to %s: %s", target.ToString(),
                    std::strerror(errno));
    stats_.dropped++;
    return kNone;
  }
  uint32_t idx = free_.back();
  free_.pop_back();
  Flow& f = flows_[idx];
  f.used = true;
  f.sock = std::move(sock);
  f.key = key;
  f.last_active = now_ns;
  map_.emplace(key, idx);
  Arm(idx);
  stats_.flows_created++;
  return idx;
}

void TapIcmp::Arm(uint32_t index) {
  Flow& f = flows_[index];
  ring_->PrepPollMultishot(f.sock.get(), POLLIN, UserData{kind::kTapPing, f.gen, index}.Pack());
}

void TapIcmp::HandleCompletion(const io_uring_cqe& cqe, UserData ud, int64_t now_ns,
                               FrameSink& out) {
  if (ud.index >= flows_.size()) return;
  Flow& f = flows_[ud.index];
  if (!f.used || f.gen != ud.gen) return;  // stale: the slot was closed
  if (!(cqe.flags & IORING_CQE_F_MORE)) Arm(ud.index);
  if (cqe.res < 0) return;
  bool v4 = f.key.dst.IsV4();
  size_t l4_off = kEthHeaderLen + (v4 ? kIpv4HeaderLen : kIpv6HeaderLen);
  // As much as the link carries (the frame sources reserve up to MTU + 14).
  size_t max_frame = std::min<size_t>(kEthHeaderLen + config_.mtu, kMaxFrameLen);
  if (max_frame < l4_off + kIcmpHeaderLen) return;  // an MTU no echo fits in
  for (int i = 0; i < kMaxRepliesPerWake; i++) {
    std::span<uint8_t> buf = out.Reserve(max_frame);
    if (buf.size() < max_frame) {
      // No room for the guest now: drop what the socket holds (the poll
      // only fires again on new data, so nothing may be left behind).
      if (!buf.empty()) out.Commit(0);
      char scratch[1];
      for (; i < kMaxRepliesPerWake; i++) {
        if (recv(f.sock.get(), scratch, sizeof(scratch), MSG_TRUNC) < 0) break;
        stats_.dropped++;
      }
      return;
    }
    ssize_t n = recv(f.sock.get(), buf.data() + l4_off, max_frame - l4_off, MSG_TRUNC);
    if (n < 0) {
      out.Commit(0);
      return;  // EAGAIN: drained (errors of the socket are not the guest's business)
    }
    size_t len = static_cast<size_t>(n);
    uint8_t* m = buf.data() + l4_off;
    if (len > max_frame - l4_off || len < kIcmpHeaderLen ||
        m[0] != (v4 ? kIcmpEchoReply : kIcmp6EchoReply)) {
      out.Commit(0);
      stats_.dropped++;
      continue;
    }
    f.last_active = now_ns;
    Store16(m + 4, f.key.id);  // the guest's identifier back in place
    FrameAddrs a{config_.our_mac, state_.guest_mac, f.key.dst, f.key.guest, 64};
    uint8_t proto = v4 ? uint8_t{IPPROTO_ICMP} : uint8_t{IPPROTO_ICMPV6};
    WriteEthIpHeaders(buf.data(), a, proto, len);
    FillL4Checksum(buf.subspan(l4_off, len), a.src, a.dst, proto, 2);
    out.Commit(l4_off + len);
    stats_.replies++;
  }
}

void TapIcmp::Close(uint32_t index) {
  Flow& f = flows_[index];
  if (!f.used) return;
  ring_->PrepCancel(UserData{kind::kTapPing, f.gen, index}.Pack());
  map_.erase(f.key);
  ring_->Close(std::move(f.sock));  // after the submissions that name it
  f.used = false;
  f.gen = (f.gen + 1) & UserData::kGenMask;
  free_.push_back(index);
}

void TapIcmp::Expire(int64_t now_ns) {
  for (uint32_t i = 0; i < flows_.size(); i++) {
    if (flows_[i].used && now_ns - flows_[i].last_active > idle_timeout_ns_) {
      stats_.flows_expired++;
      Close(i);
    }
  }
}

void TapIcmp::CloseAll() {
  for (uint32_t i = 0; i < flows_.size(); i++) Close(i);
}

}  // namespace ringfwd
