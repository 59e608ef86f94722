#include "fwd/tap_tcp.h"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "fwd/kinds.h"
#include "fwd/packet.h"
#include "fwd/tap_tcp_flow.h"
#include "fwd/tap_udp.h"
#include "uring/log.h"

namespace ringfwd {
namespace {

constexpr uint32_t kNone = UINT32_MAX;
constexpr int8_t kOurWscale = 7;  // windows up to 8 MiB
constexpr int64_t kTimerStepNs = 10'000'000;
constexpr uint32_t kDupAckThreshold = 3;

bool IsUsable(const Addr6& a) {
  if (a.IsMulticast()) return false;
  if (a.IsV4()) return a.V4() != 0 && a.V4() != 0xffffffff;
  return !a.IsUnspecified6();
}

// The largest send buffer TCP autotuning may reach (net.ipv4.tcp_wmem's
// third field); 4 MiB, the kernel's default, if it cannot be read.
int64_t TcpWmemMax() {
  int64_t lo = 0, def = 0, max = 0;
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/tcp_wmem", "re")) {
    if (std::fscanf(f, "%" SCNd64 " %" SCNd64 " %" SCNd64, &lo, &def, &max) != 3) max = 0;
    std::fclose(f);
  }
  return max > 0 ? max : int64_t{4} << 20;
}

}  // namespace

// Flow and Scratch: fwd/tap_tcp_flow.h.

TapTcp::TapTcp(Ring* ring, const LinkConfig& config, const LinkState& state, SocketFactory* host,
               FrameSink* sink, size_t max_frame, const TapUdp& udp, const TapTcpOptions& opts)
    : ring_(ring),
      config_(config),
      state_(state),
      host_(host),
      sink_(sink),
      max_frame_(max_frame),
      udp_(udp),
      opts_(opts),
      flows_(opts.max_flows),
      scratch_(new Scratch) {
  free_.reserve(opts.max_flows);
  for (size_t i = opts.max_flows; i-- > 0;) free_.push_back(static_cast<uint32_t>(i));
  map_.reserve(opts.max_flows);
  blocked_.reserve(opts.max_flows);
  blocked_next_.reserve(opts.max_flows);
  scan_.reserve(opts.max_flows);
  if (opts_.sndbuf < 0) opts_.sndbuf = TcpWmemMax();
  for (auto& p : pool_) p.reserve(opts_.pool);
  RefillPool();
}

absl::StatusOr<Fd> TapTcp::NewSocket(int family) {
  absl::StatusOr<Fd> s = host_->Socket(family, SOCK_STREAM);
  if (s.ok()) SizeSendBuffer(s->get());
  return s;
}

absl::StatusOr<Fd> TapTcp::TakeSocket(int family) {
  std::vector<Fd>& p = pool_[family == AF_INET6];
  if (p.empty()) return NewSocket(family);
  Fd s = std::move(p.back());
  p.pop_back();
  stats_.pool_hits++;
  return s;
}

void TapTcp::RefillPool() {
  for (int family : {AF_INET, AF_INET6}) {
    if (!(family == AF_INET ? config_.has_v4 : config_.has_v6)) continue;
    std::vector<Fd>& p = pool_[family == AF_INET6];
    while (p.size() < opts_.pool) {
      absl::StatusOr<Fd> s = NewSocket(family);
      if (!s.ok()) break;  // out of descriptors: SYNs make their own, or fail and say so
      p.push_back(std::move(*s));
    }
  }
}

void TapTcp::SizeSendBuffer(int fd) {
  if (opts_.sndbuf <= 0) return;
  // The kernel doubles the value for its overhead, as tcp_wmem's are not.
  int half = static_cast<int>(std::min<int64_t>(opts_.sndbuf / 2, INT32_MAX / 2));
  bool forced = setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &half, sizeof(half)) == 0;
  if (!forced) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &half, sizeof(half));
  int got = 0;
  socklen_t sl = sizeof(got);
  getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &sl);
  // POLLOUT once the bytes not yet sent fall below a quarter of the buffer
  // (the kernel halves the mark for polling): the window we advertise is
  // at least a quarter again by then (see Space).
  int lowat = got / 2;
  setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
  if (!forced && !sndbuf_capped_logged_) {
    sndbuf_capped_logged_ = true;
    if (got < opts_.sndbuf)
      LOG_INFO(
          "tap TCP: send buffers capped at %d bytes by net.core.wmem_max (no CAP_NET_ADMIN for "
          "%lld): guest-to-host throughput may be lower",
          got, static_cast<long long>(opts_.sndbuf));
  }
}

TapTcp::~TapTcp() = default;  // sockets close with their Fds; the ring may be gone

FrameAddrs TapTcp::AddrsOf(const Key& k) const {
  FrameAddrs a;
  a.src_mac = config_.our_mac;
  a.dst_mac = state_.guest_mac;
  a.src = k.dst;
  a.dst = k.guest;
  return a;
}

void TapTcp::HandleGroup(const FrameBatch& batch, std::span<const uint16_t> frames,
                         int64_t now_ns) {
  const FrameView& v0 = batch.view(frames[0]);
  stats_.segments_in += frames.size();
  if (!IsUsable(v0.dst) || !IsUsable(v0.src)) {
    stats_.invalid += frames.size();  // no multicast or broadcast TCP
    return;
  }
  Key key{v0.src, v0.dst, v0.sport, v0.dport};
  auto it = map_.find(key);
  uint32_t idx = it == map_.end() ? kNone : it->second;
  size_t first = 0;
  if (idx == kNone) {
    // The first valid segment decides: a SYN opens a flow, anything else is
    // answered with RST.
    for (; first < frames.size(); first++) {
      const FrameView& v = batch.view(frames[first]);
      if (!VerifyL4Checksum(v, batch.frame(frames[first]))) {
        stats_.bad_checksum++;
        continue;
      }
      uint8_t fl = v.tcp_flags;
      if ((fl & (kTcpSyn | kTcpAck | kTcpRst | kTcpFin)) == kTcpSyn) {
        idx = Open(key, v, batch.frame(frames[first]), now_ns);
        first++;
        break;
      }
      if (fl & kTcpRst) continue;
      stats_.invalid++;
      ResetUnknown(v);
    }
    if (idx == kNone) return;
  }
  if (first < frames.size()) Segments(idx, batch, frames.subspan(first), now_ns);
}

uint32_t TapTcp::Open(const Key& key, const FrameView& syn, std::span<const uint8_t> frame,
                      int64_t now_ns) {
  if (free_.empty()) {
    stats_.syn_dropped++;
    LOG_RATELIMITED(log::Level::kWarn, "tap TCP: flow table full (%d flows), SYN dropped",
                    static_cast<int>(flows_.size()));
    return kNone;
  }
  Addr6 target = udp_.MapTarget(key.dst, key.dport);
  SockAddr to = SockAddr::From(target, key.dport);
  absl::StatusOr<Fd> sock = TakeSocket(to.family());
  if (!sock.ok()) {
    stats_.syn_dropped++;
    LOG_RATELIMITED(log::Level::kWarn, "tap TCP: %s", sock.status().message());
    return kNone;
  }
  uint32_t idx = Claim(key, std::move(*sock), now_ns);
  Flow& f = flows_[idx];
  f.state = State::kConnecting;
  f.target = to;
  f.irs = syn.tcp_seq;
  f.rcv_nxt = syn.tcp_seq + 1;
  f.rcv_adv = f.rcv_nxt;
  SynOptions o = ParseSynOptions(frame.subspan(syn.tcp_opt_off, syn.tcp_opt_len));
  bool v4 = key.guest.IsV4();
  uint16_t guest_mss = o.mss ? o.mss : (v4 ? 536 : 1220);
  size_t hdr = TcpPayloadOffset(v4, 0);
  size_t link_mss = max_frame_ > hdr + 64 ? max_frame_ - hdr : 64;
  f.mss = static_cast<uint16_t>(
      std::max<size_t>(64, std::min<size_t>({guest_mss, MssForMtu(config_.mtu, v4), link_mss})));
  if (o.wscale >= 0) {
    f.guest_ws = static_cast<uint8_t>(o.wscale);
    f.our_ws = kOurWscale;
  }
  f.guest_wnd = syn.tcp_window;  // never scaled in a SYN
  f.ts = o.ts;
  f.ts_recent = o.tsval;
  f.connecting = true;
  ring_->PrepConnect(f.sock.get(), f.target.sa(), f.target.len,
                     UserData{kind::kTapTcpConnect, f.gen, idx}.Pack());
  stats_.flows_created++;
  LOG_DEBUG("tap TCP: flow %s:%d -> %s:%d via %s", key.guest.ToString(), key.gport,
            key.dst.ToString(), key.dport, to.ToString());
  return idx;
}

uint32_t TapTcp::Claim(const Key& key, Fd sock, int64_t now_ns) {
  uint32_t idx = free_.back();
  free_.pop_back();
  Flow& f = flows_[idx];
  uint32_t gen = f.gen;
  f = Flow{};
  f.gen = gen;
  f.sock = std::move(sock);
  f.key = key;
  f.iss = isn_.Isn(key.dst, key.dport, key.guest, key.gport, now_ns);
  f.ts_off = f.iss * 2654435761u;  // per flow, so the clock is not shared (RFC 7323 7.1)
  f.snd_una = f.snd_nxt = f.snd_max = f.iss;
  f.rto_ns = opts_.rto_initial_ns;
  f.last_active = now_ns;
  map_.emplace(key, idx);
  return idx;
}

void TapTcp::Accept(Fd client, uint16_t port, int64_t now_ns) {
  SockAddr peer;
  peer.len = sizeof(peer.ss);
  if (getpeername(client.get(), peer.sa(), &peer.len) < 0) return;
  Addr6 from = peer.addr();
  Key key;
  if (from.IsV4()) {
    if (!config_.has_v4) return;
    key.guest = Addr6::FromV4(ntohl(config_.addr4.s_addr));
    // A client on the host's own loopback appears as the gateway.
    key.dst = from.IsLoopback() ? Addr6::FromV4(ntohl(config_.gw4.s_addr)) : from;
  } else {
    if (!config_.has_v6) return;
    key.guest = Addr6::FromIn6(config_.addr6);
    Addr6 gwg = Addr6::FromIn6(config_.gw6_global);
    key.dst = from.IsLoopback() ? (IsUsable(gwg) ? gwg : Addr6::FromIn6(config_.gw6)) : from;
  }
  key.gport = port;
  key.dport = peer.port();
  if (!state_.guest_mac_known || free_.empty() || map_.contains(key)) {
    stats_.syn_dropped++;
    linger l{1, 0};
    setsockopt(client.get(), SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    return;  // the client sees a reset
  }
  int zero = 0;
  if (setsockopt(client.get(), SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)) < 0) {
    stats_.syn_dropped++;
    return;
  }
  int one = 1;
  setsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  SizeSendBuffer(client.get());
  uint32_t idx = Claim(key, std::move(client), now_ns);
  Flow& f = flows_[idx];
  f.state = State::kSynSent;
  f.target = peer;
  f.our_ws = kOurWscale;  // offered; dropped if the guest does not scale
  f.ts = true;            // offered likewise
  bool v4 = key.guest.IsV4();
  size_t hdr = TcpPayloadOffset(v4, 0);
  f.mss = static_cast<uint16_t>(std::min<size_t>(MssForMtu(config_.mtu, v4), max_frame_ - hdr));
  SendControl(idx, kTcpSyn);
  f.snd_nxt = f.snd_max = f.iss + 1;
  f.rto_at = now_ns + f.rto_ns;
  stats_.flows_created++;
  LOG_DEBUG("tap TCP: inbound %s -> guest port %d", peer.ToString(), port);
}

void TapTcp::OnSynAck(uint32_t idx, const FrameView& v, std::span<const uint8_t> frame,
                      int64_t now_ns) {
  Flow& f = flows_[idx];
  SynOptions o = ParseSynOptions(frame.subspan(v.tcp_opt_off, v.tcp_opt_len));
  bool v4 = f.key.guest.IsV4();
  uint16_t guest_mss = o.mss ? o.mss : (v4 ? 536 : 1220);
  f.mss = static_cast<uint16_t>(std::max<size_t>(64, std::min<size_t>(guest_mss, f.mss)));
  if (o.wscale >= 0) {
    f.guest_ws = static_cast<uint8_t>(o.wscale);
  } else {
    f.guest_ws = 0;
    f.our_ws = 0;
  }
  f.guest_wnd = v.tcp_window;  // never scaled in a SYN
  f.ts = o.ts;
  f.ts_recent = o.tsval;
  f.irs = v.tcp_seq;
  f.rcv_nxt = f.irs + 1;
  f.rcv_adv = f.rcv_nxt;
  f.state = State::kEstablished;
  f.snd_una = f.snd_nxt = f.snd_max = f.iss + 1;
  f.rto_at = 0;
  f.retries = 0;
  f.rto_ns = opts_.rto_initial_ns;
  f.last_active = now_ns;
  ring_->PrepPollMultishot(f.sock.get(), POLLIN | POLLRDHUP,
                           UserData{kind::kTapTcp, f.gen, idx}.Pack());
  f.armed_in = true;
  SendControl(idx, kTcpAck);
}

void TapTcp::HandleCompletion(const io_uring_cqe& cqe, UserData ud, int64_t now_ns) {
  if (ud.index >= flows_.size()) return;
  Flow& f = flows_[ud.index];
  if (f.state == State::kFree || f.gen != ud.gen) return;
  switch (ud.kind) {
    case kind::kTapTcpConnect:
      f.connecting = false;
      if (f.state == State::kConnecting) OnConnected(ud.index, cqe.res, now_ns);
      return;
    case kind::kTapTcp:
      if (!(cqe.flags & IORING_CQE_F_MORE)) {
        f.armed_in = false;
        if (cqe.res == -ECANCELED) return;
        ring_->PrepPollMultishot(f.sock.get(), POLLIN | POLLRDHUP,
                                 UserData{kind::kTapTcp, f.gen, ud.index}.Pack());
        f.armed_in = true;
      }
      if (cqe.res < 0) return;
      OnReadable(ud.index, cqe.res, now_ns);
      return;
    case kind::kTapTcpOut: {
      f.armed_out = false;
      if (cqe.res < 0) return;
      UpdateWindow(ud.index, now_ns);
      return;
    }
    default:
      return;
  }
}

void TapTcp::OnConnected(uint32_t idx, int res, int64_t now_ns) {
  Flow& f = flows_[idx];
  int zero = 0;
  if (res == 0 && setsockopt(f.sock.get(), SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)) < 0)
    res = -errno;  // a kernel without SO_PEEK_OFF for TCP (before 6.9)
  if (res < 0) {
    stats_.connect_failed++;
    LOG_DEBUG("tap TCP: connect to %s: %s", f.target.ToString(), std::strerror(-res));
    // RST|ACK acknowledging the SYN: "connection refused" in the guest.
    f.snd_nxt = 0;
    SendControl(idx, kTcpRst | kTcpAck);
    Close(idx);
    return;
  }
  f.state = State::kSynRcvd;
  f.last_active = now_ns;
  ring_->PrepPollMultishot(f.sock.get(), POLLIN | POLLRDHUP,
                           UserData{kind::kTapTcp, f.gen, idx}.Pack());
  f.armed_in = true;
  SendControl(idx, kTcpSyn | kTcpAck);
  f.snd_nxt = f.snd_max = f.iss + 1;
  f.rto_at = now_ns + f.rto_ns;
}

void TapTcp::OnReadable(uint32_t idx, int events, int64_t now_ns) {
  Flow& f = flows_[idx];
  if (events & POLLERR) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(f.sock.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      LOG_DEBUG("tap TCP: %s: %s", f.target.ToString(), std::strerror(err));
      Abort(idx, true, false);
      return;
    }
  }
  f.last_active = now_ns;
  f.dry = false;
  if (events & (POLLRDHUP | POLLHUP)) f.rdhup = true;
  Send(idx, now_ns);
}

void TapTcp::Segments(uint32_t idx, const FrameBatch& batch, std::span<const uint16_t> frames,
                      int64_t now_ns) {
  Flow& f = flows_[idx];
  Scratch& s = *scratch_;
  size_t niov = 0, npending = 0;
  uint64_t offered = 0;
  uint32_t expect = f.rcv_nxt;
  bool need_ack = false, fast_rtx = false, fin_in = false;
  f.last_active = now_ns;

  // RFC 7323: the TSval of a segment at or before the next expected byte is
  // the one to echo (never an older one).
  auto note_ts = [&](const FrameView& v, std::span<const uint8_t> fr) {
    uint32_t tsval = 0;
    if (f.ts && ParseTimestamp(fr.subspan(v.tcp_opt_off, v.tcp_opt_len), &tsval) &&
        SeqGe(tsval, f.ts_recent))
      f.ts_recent = tsval;
  };
  // Takes the data (and FIN) of an acceptable segment at `expect`; false if
  // it lies ahead of a gap.
  auto take = [&](const FrameView& v, std::span<const uint8_t> fr) {
    uint32_t seq = v.tcp_seq;
    uint32_t len = v.payload_len;
    if (SeqGt(seq, expect)) return false;
    note_ts(v, fr);
    uint32_t end = seq + len;
    if (len && SeqGt(end, expect)) {
      uint32_t skip = expect - seq;
      s.iov[niov++] = iovec{const_cast<uint8_t*>(fr.data()) + v.payload_off + skip, len - skip};
      offered += len - skip;
      expect = end;
    } else if (len) {
      stats_.duplicate++;
      need_ack = true;
    }
    if (v.tcp_flags & kTcpFin) {
      if (!f.guest_fin && end == expect)
        fin_in = true;
      else if (f.guest_fin)
        need_ack = true;  // a resent FIN: our ACK of it was lost
    }
    return true;
  };

  for (uint16_t i : frames) {
    const FrameView& v = batch.view(i);
    std::span<const uint8_t> fr = batch.frame(i);
    if (!VerifyL4Checksum(v, fr)) {
      stats_.bad_checksum++;
      continue;
    }
    uint8_t fl = v.tcp_flags;
    if (f.state == State::kSynSent) {
      if ((fl & kTcpAck) && v.tcp_ack != f.iss + 1) {
        stats_.invalid++;
        continue;
      }
      if (fl & kTcpRst) {
        if (!(fl & kTcpAck)) continue;
        stats_.rst_in++;  // refused by the guest: the client sees a reset
        Abort(idx, false, true);
        return;
      }
      if ((fl & (kTcpSyn | kTcpAck)) != (kTcpSyn | kTcpAck)) {
        stats_.invalid++;
        continue;
      }
      OnSynAck(idx, v, fr, now_ns);
      continue;
    }
    if (fl & kTcpRst) {
      // Accepted when in the window we advertised (RFC 5961 is stricter;
      // the guest is our own peer on a point-to-point link).
      uint32_t right = f.rcv_adv == f.rcv_nxt ? f.rcv_nxt + 1 : f.rcv_adv;
      if (f.state == State::kConnecting || f.state == State::kSynRcvd ||
          (SeqGe(v.tcp_seq, f.rcv_nxt) && SeqLt(v.tcp_seq, right))) {
        stats_.rst_in++;
        Abort(idx, false, true);
        return;
      }
      stats_.invalid++;
      continue;
    }
    if (fl & kTcpSyn) {
      if (f.state == State::kConnecting && v.tcp_seq == f.irs) {
        stats_.syn_absorbed++;
      } else if (f.state == State::kSynRcvd && v.tcp_seq == f.irs) {
        uint32_t nxt = f.snd_nxt;
        f.snd_nxt = f.iss;
        SendControl(idx, kTcpSyn | kTcpAck);  // our SYN-ACK was lost
        f.snd_nxt = nxt;
      } else {
        stats_.invalid++;
        need_ack = true;  // a challenge ACK
      }
      continue;
    }
    if (!(fl & kTcpAck) || f.state == State::kConnecting) {
      stats_.invalid++;
      continue;
    }
    if (f.state == State::kSynRcvd) {
      if (v.tcp_ack != f.iss + 1) {
        stats_.invalid++;
        continue;
      }
      f.state = State::kEstablished;
      f.snd_una = f.snd_nxt = f.snd_max = f.iss + 1;
      f.rto_at = 0;
      f.retries = 0;
      f.rto_ns = opts_.rto_initial_ns;
    }
    if (TakeAck(idx, v, now_ns)) fast_rtx = true;
    if (f.state == State::kFree) return;
    if (v.payload_len && f.guest_fin) {
      stats_.invalid++;  // data after the guest's FIN
      need_ack = true;
      continue;
    }
    if (!v.payload_len && !(fl & kTcpFin)) {
      if (SeqLe(v.tcp_seq, expect)) note_ts(v, fr);
      if (SeqLt(v.tcp_seq, f.rcv_nxt)) need_ack = true;  // a keepalive
      continue;
    }
    if (!take(v, fr)) s.pending[npending++] = i;
  }
  // Segments ahead of a gap: taken if the batch filled the gap.
  for (bool progress = true; npending && progress;) {
    progress = false;
    for (size_t k = 0; k < npending;) {
      uint16_t i = s.pending[k];
      if (take(batch.view(i), batch.frame(i))) {
        s.pending[k] = s.pending[--npending];
        progress = true;
      } else {
        k++;
      }
    }
  }
  if (npending) {
    stats_.out_of_order += npending;
    need_ack = true;  // a duplicate ACK: the guest resends from rcv_nxt
  }
  if (niov) {
    msghdr mh{};
    mh.msg_iov = s.iov;
    mh.msg_iovlen = niov;
    ssize_t r = sendmsg(f.sock.get(), &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      LOG_DEBUG("tap TCP: write to %s: %s", f.target.ToString(), std::strerror(errno));
      Abort(idx, true, false);
      return;
    }
    uint64_t written = r > 0 ? static_cast<uint64_t>(r) : 0;
    if (written) {
      f.want_update = false;  // the guest knows of room; set again below if short
      f.updates = 0;
    }
    f.rcv_nxt += static_cast<uint32_t>(written);
    stats_.bytes_in += written;
    if (written < offered) {
      stats_.short_writes++;
      fin_in = false;  // the FIN is behind bytes the guest must resend
      ArmOut(idx);
    } else if (int64_t space = Space(idx, nullptr); space < 2 * static_cast<int64_t>(f.mss)) {
      ArmOut(idx);  // a window update once the socket drains
    } else {
      f.space_hint = space;  // for the ACK below, as nothing is written in between
    }
    need_ack = true;
  }
  if (fin_in) {
    f.rcv_nxt++;
    f.guest_fin = true;
    shutdown(f.sock.get(), SHUT_WR);
    need_ack = true;
  }
  if (fast_rtx) {
    stats_.fast_retransmits++;
    ResendHead(idx);
    if (f.state == State::kFree) return;
  }
  uint32_t sent_before = f.snd_nxt;
  uint64_t segs_before = stats_.segments_out;
  Send(idx, now_ns);
  if (f.state == State::kFree) return;
  bool sent = stats_.segments_out != segs_before || f.snd_nxt != sent_before;
  if (need_ack && !sent) SendControl(idx, kTcpAck);
  // A receiver acknowledges each segment past a gap at once, so three of
  // them bring the sender's fast retransmit; dropped without a trace, they
  // would leave the guest on its retransmission timer, whose backoff grows
  // to seconds under repeated loss.
  for (size_t k = 0; k < std::min<size_t>(npending, kDupAckThreshold); k++)
    if (!SendControl(idx, kTcpAck, true)) break;
  f.space_hint = -1;  // unused if the link's queue was full
  MaybeDone(idx);
}

bool TapTcp::TakeAck(uint32_t idx, const FrameView& v, int64_t now_ns) {
  Flow& f = flows_[idx];
  uint32_t ack = v.tcp_ack;
  uint64_t wnd = uint64_t{v.tcp_window} << f.guest_ws;
  bool fast = false;
  if (SeqGt(ack, f.snd_max)) {
    stats_.invalid++;  // acknowledges what we never sent: the ACK field is ignored
    return false;
  }
  if (SeqGt(ack, f.snd_una)) {
    uint32_t data_end = f.fin_ever ? f.fin_seq : ack;
    uint32_t data_acked = SeqLt(ack, data_end) ? ack - f.snd_una : data_end - f.snd_una;
    if (data_acked) {
      // The acknowledged bytes leave the socket (the peek offset moves back
      // with them).
      ssize_t r = recv(f.sock.get(), nullptr, data_acked, MSG_TRUNC | MSG_DONTWAIT);
      if (r != static_cast<ssize_t>(data_acked)) {
        LOG_RATELIMITED(log::Level::kWarn, "tap TCP: %s: discarded %d of %u acknowledged bytes",
                        f.target.ToString(), static_cast<int>(r), data_acked);
        Abort(idx, true, true);
        return false;
      }
      // The kernel's offset stops at the new head if it was behind it.
      if (uint32_t head = f.snd_una + data_acked; SeqLt(f.peek_seq, head)) f.peek_seq = head;
      stats_.bytes_out += data_acked;
    }
    if (f.fin_ever && SeqGt(ack, f.fin_seq)) {
      f.fin_acked = true;
      f.fin_sent = true;
    }
    f.snd_una = ack;
    if (SeqLt(f.snd_nxt, f.snd_una)) f.snd_nxt = f.snd_una;
    if (f.fin_acked) f.snd_nxt = f.snd_max;
    f.retries = 0;
    f.rto_ns = opts_.rto_initial_ns;
    f.rto_at = f.snd_nxt != f.snd_una ? now_ns + f.rto_ns : 0;
    f.dup_acks = 0;
    f.probe = false;
    if (f.recovering) {
      // NewReno (RFC 6582): a partial ACK shows the next hole; resend it.
      if (SeqLt(ack, f.recover))
        fast = true;
      else
        f.recovering = false;
    }
  } else if (ack == f.snd_una && !v.payload_len && !(v.tcp_flags & kTcpFin) &&
             f.snd_nxt != f.snd_una) {
    // A duplicate ACK repeats the window too (otherwise it is a window
    // update, RFC 5681). On this point-to-point link segments arrive in
    // order, so the first one means a loss: resend at once rather than wait
    // for the third.
    if (wnd == f.guest_wnd && ++f.dup_acks == 1 && !f.recovering) {
      fast = true;
      f.recovering = true;
      f.recover = f.snd_nxt;
    }
  }
  f.guest_wnd = wnd;
  return fast;
}

// Rewind, Send, ResendHead, SendControl, ResetUnknown, Space, Window,
// ArmOut: fwd/tap_tcp_send.cc.

void TapTcp::Block(uint32_t idx) {
  Flow& f = flows_[idx];
  if (f.blocked) return;
  f.blocked = true;
  blocked_.push_back(idx);
}

void TapTcp::RunBlocked(int64_t now_ns) {
  blocked_next_.swap(blocked_);
  blocked_.clear();
  for (uint32_t idx : blocked_next_) {
    Flow& f = flows_[idx];
    f.blocked = false;
    if (f.state != State::kFree) {
      Send(idx, now_ns);
      if (f.state != State::kFree) MaybeDone(idx);
    }
  }
  blocked_next_.clear();
}

void TapTcp::MaybeDone(uint32_t idx) {
  Flow& f = flows_[idx];
  if (f.state == State::kEstablished && f.guest_fin && f.fin_acked) Close(idx);
}

void TapTcp::Tick(int64_t now_ns) {
  if (now_ns < next_timer_ns_) return;
  next_timer_ns_ = now_ns + kTimerStepNs;
  RefillPool();
  for (const auto& [key, idx] : map_) {
    (void)key;
    scan_.push_back(idx);  // a copy: timers may close flows
  }
  for (uint32_t idx : scan_) {
    Flow& f = flows_[idx];
    if (f.state == State::kFree) continue;
    if (now_ns - f.last_active > opts_.idle_ns) {
      stats_.idle_closed++;
      Abort(idx, true, true);
      continue;
    }
    if (f.rto_at && now_ns >= f.rto_at) OnTimer(idx, now_ns);
    if (f.state != State::kFree && f.want_update) UpdateWindow(idx, now_ns);
  }
  scan_.clear();
}

void TapTcp::OnTimer(uint32_t idx, int64_t now_ns) {
  Flow& f = flows_[idx];
  f.rto_at = 0;
  f.rto_ns = std::min(f.rto_ns * 2, opts_.rto_max_ns);
  if (f.state == State::kSynRcvd || f.state == State::kSynSent) {
    if (++f.retries > opts_.max_retries) {
      stats_.timeouts++;
      Abort(idx, true, true);
      return;
    }
    uint32_t nxt = f.snd_nxt;
    SendControl(idx, f.state == State::kSynSent ? kTcpSyn : kTcpSyn | kTcpAck);
    f.snd_nxt = nxt;
    f.rto_at = now_ns + f.rto_ns;
    return;
  }
  if (f.state != State::kEstablished) return;
  if (!f.guest_wnd && !f.fin_sent) {
    // Zero window: one byte beyond it, as often as the timer allows.
    Rewind(idx);
    f.probe = true;
    Send(idx, now_ns);
    if (f.state != State::kFree && !f.rto_at) f.rto_at = now_ns + f.rto_ns;
    return;
  }
  if (f.snd_nxt == f.snd_una) return;
  if (++f.retries > opts_.max_retries) {
    stats_.timeouts++;
    Abort(idx, true, true);
    return;
  }
  stats_.retransmits++;
  Rewind(idx);
  Send(idx, now_ns);
  if (f.state != State::kFree && !f.rto_at && f.snd_nxt != f.snd_una) f.rto_at = now_ns + f.rto_ns;
}

void TapTcp::Abort(uint32_t idx, bool rst_guest, bool rst_host) {
  Flow& f = flows_[idx];
  if (rst_guest && f.state != State::kConnecting) SendControl(idx, kTcpRst | kTcpAck);
  if (rst_host && f.sock) {
    linger l{1, 0};
    setsockopt(f.sock.get(), SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  }
  Close(idx);
}

void TapTcp::Close(uint32_t idx) {
  Flow& f = flows_[idx];
  if (f.state == State::kFree) return;
  if (f.armed_in) ring_->PrepCancel(UserData{kind::kTapTcp, f.gen, idx}.Pack());
  if (f.armed_out) ring_->PrepCancel(UserData{kind::kTapTcpOut, f.gen, idx}.Pack());
  if (f.connecting) ring_->PrepCancel(UserData{kind::kTapTcpConnect, f.gen, idx}.Pack());
  map_.erase(f.key);
  ring_->Close(std::move(f.sock));  // after the submissions that name it
  f.state = State::kFree;
  f.armed_in = f.armed_out = f.connecting = false;
  f.gen = (f.gen + 1) & UserData::kGenMask;
  free_.push_back(idx);
  stats_.flows_closed++;
}

void TapTcp::CloseAll() {
  for (uint32_t i = 0; i < flows_.size(); i++)
    if (flows_[i].state != State::kFree) Abort(i, false, flows_[i].state == State::kEstablished);
}

}  // namespace ringfwd
