// TapTcp, the sending half: segments to the guest (data peeked from the
// socket, control segments, resets), the windows we advertise, rewinds.
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "fwd/kinds.h"
#include "fwd/packet.h"
#include "fwd/tap_tcp.h"
#include "fwd/tap_tcp_flow.h"
#include "uring/log.h"

namespace ringfwd {
namespace {

constexpr int kMaxUpdates = 8;                    // repeats of a window update
constexpr int64_t kUpdateRepeatNs = 200'000'000;  // between them
// Segments smaller than this are peeked in batches (Send()).
constexpr size_t kBatchedSegment = 16384;
// How long Send() reuses the send buffer space it measured while nothing is
// written to the socket (Flow::space_cache).
constexpr int64_t kSpaceCacheNs = 2'000'000;

// The timestamp clock (RFC 7323): milliseconds, from the coarse monotonic
// clock (no system call).
uint32_t TsClock() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
  return static_cast<uint32_t>(t.tv_sec * 1000 + t.tv_nsec / 1'000'000);
}

}  // namespace

size_t TapTcp::TsOption(uint32_t idx, uint8_t* out) const {
  const Flow& f = flows_[idx];
  if (!f.ts) return 0;
  WriteTimestamp(out, TsClock() + f.ts_off, f.ts_recent);
  return kTsOptLen;
}

void TapTcp::Rewind(uint32_t idx) {
  Flow& f = flows_[idx];
  f.snd_nxt = f.snd_una;
  f.dry = false;
  if (f.fin_sent && !f.fin_acked) f.fin_sent = false;  // resent after the data
  f.dup_acks = 0;
  f.recovering = false;
}

void TapTcp::Send(uint32_t idx, int64_t now_ns) {
  Flow& f = flows_[idx];
  if (f.state != State::kEstablished || f.fin_sent) return;
  bool v4 = f.key.guest.IsV4();
  uint8_t opts[kTsOptLen];
  size_t opt_len = TsOption(idx, opts);
  size_t hdr = TcpPayloadOffset(v4, opt_len);
  size_t pay = f.mss > opt_len + 8 ? f.mss - opt_len : 8;  // RFC 6691: options take from the MSS
  uint64_t wnd = f.guest_wnd;
  if (!wnd && f.probe) wnd = 1;
  uint32_t wnd_end = f.snd_una + static_cast<uint32_t>(std::min<uint64_t>(wnd, 1u << 30));
  if (!SeqLt(f.snd_nxt, wnd_end)) {
    // A closed window with nothing in flight: probe it on the timer.
    if (!f.guest_wnd && f.snd_nxt == f.snd_una && !f.rto_at) f.rto_at = now_ns + f.rto_ns;
    return;
  }
  if (f.dry) return;
  if (!f.peek_known || f.peek_seq != f.snd_nxt) {
    int off = static_cast<int>(f.snd_nxt - f.snd_una);
    if (setsockopt(f.sock.get(), SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off)) < 0) {
      Abort(idx, true, true);
      return;
    }
    f.peek_seq = f.snd_nxt;
    f.peek_known = true;
  }
  FrameAddrs a = AddrsOf(f.key);
  // Window() records the edge it gives, so it is asked only once a frame is
  // going out (an edge recorded but never sent would keep UpdateWindow()
  // from telling the guest); rcv_nxt stays put while we send.
  int window = -1;
  // The guest's kernel completes the checksum when the link can say so (a
  // tap with virtio-net headers): the payload is summed by neither side.
  const bool partial = sink_->PartialChecksums();
  const uint16_t csum_start = static_cast<uint16_t>(TcpChecksumStart(v4));
  // A link with segmentation offload takes frames of many segments, which
  // the guest's kernel receives whole: `frame_pay` payload bytes per frame,
  // a multiple of the segment's (the IP length field bounds the frame).
  size_t frame_pay = pay;
  if (size_t max_seg = sink_->MaxSegmentedFrame(); partial && max_seg) {
    size_t max_frame = std::min(max_seg, kEthHeaderLen + 65535 + (v4 ? 0 : kIpv6HeaderLen));
    if (max_frame >= hdr + 2 * pay) frame_pay = (max_frame - hdr) / pay * pay;
  }
  // Segments under kBatchedSegment are peeked many at a time into scratch
  // and copied into their frames: one system call, and one walk of the
  // receive queue to the peek offset, per 64 KiB instead of per segment.
  // Bigger ones are peeked straight into their frame.
  Scratch& s = *scratch_;
  const bool batched = frame_pay < kBatchedSegment;
  size_t chunk_len = 0, chunk_off = 0;  // batched: peeked, not yet framed
  bool chunk_short = false;             // the last batch came up short
  while (SeqLt(f.snd_nxt, wnd_end)) {
    size_t seg = std::min<size_t>(frame_pay, wnd_end - f.snd_nxt);
    std::span<uint8_t> buf = sink_->Reserve(hdr + seg);
    if (buf.empty()) {
      stats_.sink_full++;
      Block(idx);
      break;
    }
    ssize_t n;
    if (batched && chunk_off < chunk_len) {
      n = static_cast<ssize_t>(std::min(seg, chunk_len - chunk_off));
    } else {
      size_t want = batched ? std::min<size_t>(Scratch::kPeek, wnd_end - f.snd_nxt) : seg;
      uint8_t* to = batched ? s.peek : buf.data() + hdr;
      n = recv(f.sock.get(), to, want, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0) f.peek_seq += static_cast<uint32_t>(n);
      if (batched && n > 0) {
        chunk_len = static_cast<size_t>(n);
        chunk_off = 0;
        chunk_short = chunk_len < want;
        n = static_cast<ssize_t>(std::min(seg, chunk_len));
      } else if (n > 0) {
        chunk_short = static_cast<size_t>(n) < seg;
      }
    }
    if (n < 0) {
      sink_->Commit(0);
      if (errno == EAGAIN || errno == EWOULDBLOCK) f.dry = true;
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
      LOG_DEBUG("tap TCP: read from %s: %s", f.target.ToString(), std::strerror(errno));
      Abort(idx, true, false);
      return;
    }
    if (n == 0) {
      // EOF after everything sent: our FIN.
      sink_->Commit(0);
      f.sock_eof = true;
      if (!f.fin_ever) {
        f.fin_ever = true;
        f.fin_seq = f.snd_nxt;
      }
      if (!SendControl(idx, kTcpFin | kTcpAck)) break;
      f.fin_sent = true;
      f.snd_nxt++;
      if (SeqGt(f.snd_nxt, f.snd_max)) f.snd_max = f.snd_nxt;
      break;
    }
    if (batched) {
      std::memcpy(buf.data() + hdr, s.peek + chunk_off, static_cast<size_t>(n));
      chunk_off += static_cast<size_t>(n);
    }
    // The socket ran dry with this segment: what the last peek got, all of it.
    const bool last = chunk_short && (!batched || chunk_off == chunk_len);
    TcpSegmentHeader h;
    h.sport = f.key.dport;
    h.dport = f.key.gport;
    h.seq = f.snd_nxt;
    h.ack = f.rcv_nxt;
    h.flags = kTcpAck | (last ? kTcpPsh : 0);
    if (window < 0) window = Window(idx, false, now_ns);
    h.window = static_cast<uint16_t>(window);
    h.options = std::span<const uint8_t>(opts, opt_len);
    size_t len = FinishTcpFrame(buf, a, h, n, partial);
    if (partial && len && static_cast<size_t>(n) > pay) {
      sink_->CommitSegmented(len, csum_start, static_cast<uint16_t>(hdr),
                             static_cast<uint16_t>(pay), !v4);
      stats_.segmented_out++;
    } else if (partial && len) {
      sink_->CommitPartial(len, csum_start, 16);
    } else {
      sink_->Commit(len);
    }
    if (!len) break;
    stats_.segments_out++;
    if (f.probe && !f.guest_wnd) stats_.probes++;
    f.snd_nxt += static_cast<uint32_t>(n);
    if (SeqGt(f.snd_nxt, f.snd_max)) f.snd_max = f.snd_nxt;
    // A short peek took every byte queued (the receive queue and its
    // backlog): later bytes wake the poll, which clears `dry`. Not after the
    // peer's FIN, which wakes nothing more: the next peek must see the EOF.
    if (last && !f.rdhup) {
      f.dry = true;
      break;
    }
  }
  f.probe = false;
  if (f.snd_nxt != f.snd_una && !f.rto_at) f.rto_at = now_ns + f.rto_ns;
}

void TapTcp::ResendHead(uint32_t idx) {
  Flow& f = flows_[idx];
  if (f.state != State::kEstablished || f.snd_nxt == f.snd_una) return;
  if (f.fin_sent && f.snd_una == f.fin_seq) {
    // Only our FIN is outstanding.
    uint32_t nxt = f.snd_nxt;
    f.snd_nxt = f.fin_seq;
    SendControl(idx, kTcpFin | kTcpAck);
    f.snd_nxt = nxt;
    return;
  }
  uint32_t data_end = f.fin_sent ? f.fin_seq : f.snd_nxt;
  bool v4 = f.key.guest.IsV4();
  uint8_t opts[kTsOptLen];
  size_t opt_len = TsOption(idx, opts);
  size_t hdr = TcpPayloadOffset(v4, opt_len);
  size_t pay = f.mss > opt_len + 8 ? f.mss - opt_len : 8;
  size_t seg = std::min<size_t>(pay, data_end - f.snd_una);
  int zero = 0;
  f.peek_known = false;
  if (setsockopt(f.sock.get(), SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)) < 0) return;
  std::span<uint8_t> buf = sink_->Reserve(hdr + seg);
  if (buf.empty()) {
    stats_.sink_full++;
    return;  // the timer resends
  }
  ssize_t n = recv(f.sock.get(), buf.data() + hdr, seg, MSG_PEEK | MSG_DONTWAIT);
  f.peek_seq = f.snd_una + static_cast<uint32_t>(std::max<ssize_t>(n, 0));
  f.peek_known = true;
  if (n <= 0) {
    sink_->Commit(0);
    return;
  }
  TcpSegmentHeader h;
  h.sport = f.key.dport;
  h.dport = f.key.gport;
  h.seq = f.snd_una;
  h.ack = f.rcv_nxt;
  h.flags = kTcpAck;
  h.window = Window(idx);
  h.options = std::span<const uint8_t>(opts, opt_len);
  size_t len = FinishTcpFrame(buf, AddrsOf(f.key), h, n);
  sink_->Commit(len);
  if (len) stats_.segments_out++;
}

bool TapTcp::SendControl(uint32_t idx, uint8_t flags, bool hold_window) {
  Flow& f = flows_[idx];
  bool v4 = f.key.guest.IsV4();
  uint8_t opts[20];
  size_t opt_len = 0;
  if (flags & kTcpSyn) {
    // A SYN offers timestamps (f.ts until the SYN-ACK says otherwise); a
    // SYN-ACK accepts them if the guest's SYN offered them.
    uint32_t ts[2] = {TsClock() + f.ts_off, f.ts_recent};
    opt_len = WriteSynOptions(opts, MssForMtu(config_.mtu, v4), f.our_ws ? f.our_ws : -1,
                              f.ts ? ts : nullptr);
  } else if (!(flags & kTcpRst)) {
    opt_len = TsOption(idx, opts);
  }
  std::span<uint8_t> buf = sink_->Reserve(TcpPayloadOffset(v4, opt_len));
  if (buf.empty()) {
    stats_.sink_full++;
    return false;
  }
  TcpSegmentHeader h;
  h.sport = f.key.dport;
  h.dport = f.key.gport;
  h.seq = (flags & kTcpSyn) ? f.iss : f.snd_nxt;
  h.ack = (flags & kTcpAck) ? f.rcv_nxt : 0;
  h.flags = flags;
  h.options = std::span<const uint8_t>(opts, opt_len);
  if (flags & kTcpSyn) {
    // The window of a SYN is never scaled.
    int space = 0;
    socklen_t sl = sizeof(space);
    getsockopt(f.sock.get(), SOL_SOCKET, SO_SNDBUF, &space, &sl);
    h.window = static_cast<uint16_t>(std::min(space > 0 ? space : 0, 65535));
    f.rcv_adv = f.rcv_nxt + h.window;
  } else if (!(flags & kTcpRst)) {
    h.window = Window(idx, hold_window);
  }
  size_t len = FinishTcpFrame(buf, AddrsOf(f.key), h, 0);
  sink_->Commit(len);
  if (!len) return false;
  stats_.segments_out++;
  if (flags & kTcpRst) stats_.rst_out++;
  return true;
}

void TapTcp::ResetUnknown(const FrameView& v) {
  bool v4 = v.src.IsV4();
  std::span<uint8_t> buf = sink_->Reserve(TcpPayloadOffset(v4, 0));
  if (buf.empty()) {
    stats_.sink_full++;
    return;
  }
  TcpSegmentHeader h;
  h.sport = v.dport;
  h.dport = v.sport;
  if (v.tcp_flags & kTcpAck) {
    h.seq = v.tcp_ack;
    h.flags = kTcpRst;
  } else {
    h.seq = 0;
    h.ack = v.tcp_seq + v.payload_len + ((v.tcp_flags & kTcpSyn) ? 1 : 0) +
            ((v.tcp_flags & kTcpFin) ? 1 : 0);
    h.flags = kTcpRst | kTcpAck;
  }
  FrameAddrs a;
  a.src_mac = config_.our_mac;
  a.dst_mac = state_.guest_mac;
  a.src = v.dst;
  a.dst = v.src;
  size_t len = FinishTcpFrame(buf, a, h, 0);
  sink_->Commit(len);
  if (len) {
    stats_.segments_out++;
    stats_.rst_out++;
  }
}

int64_t TapTcp::Space(uint32_t idx, int64_t* notsent_out) {
  Flow& f = flows_[idx];
  uint32_t mem[SK_MEMINFO_VARS] = {};
  socklen_t sl = sizeof(mem);
  int notsent = 0;
  getsockopt(f.sock.get(), SOL_SOCKET, SO_MEMINFO, mem, &sl);
  ioctl(f.sock.get(), SIOCOUTQNSD, &notsent);
  if (notsent_out) *notsent_out = notsent;
  int64_t sndbuf = mem[SK_MEMINFO_SNDBUF];
  int64_t queued = mem[SK_MEMINFO_WMEM_QUEUED];  // memory, sent or not
  // Half of the buffer for payload not yet sent (what the kernel assumes of
  // tcp_wmem, and TCP_NOTSENT_LOWAT's mark, so POLLOUT tells of room).
  // Bytes sent and not yet acknowledged are not counted there: they leave
  // within the host path's round trip, and counting them kept the window
  // shut until the next timer tick. The memory they hold still bounds the
  // window, with a quarter to spare for the kernel's overhead.
  return std::max<int64_t>(0, std::min(sndbuf / 2 - notsent, (sndbuf - queued) * 3 / 4));
}

uint16_t TapTcp::Window(uint32_t idx, bool hold, int64_t now_ns) {
  Flow& f = flows_[idx];
  int64_t space = 0;
  if (!f.guest_fin && !hold) {
    if (now_ns >= 0 && f.space_hint < 0 && f.space_cache >= 0 && f.space_rcv == f.rcv_nxt &&
        now_ns - f.space_at < kSpaceCacheNs) {
      space = f.space_cache;  // nothing written since: no system calls
    } else {
      space = f.space_hint >= 0 ? f.space_hint : Space(idx, nullptr);
      if (now_ns >= 0) {
        f.space_cache = space;
        f.space_rcv = f.rcv_nxt;
        f.space_at = now_ns;
      }
    }
  }
  f.space_hint = -1;
  uint64_t need = SeqGt(f.rcv_adv, f.rcv_nxt) ? f.rcv_adv - f.rcv_nxt : 0;
  uint64_t wnd = std::max<uint64_t>(static_cast<uint64_t>(space), need);
  uint64_t field = wnd >> f.our_ws;
  if ((field << f.our_ws) < need) field++;  // never behind the edge already advertised
  if (field > 65535) field = 65535;
  uint32_t right = f.rcv_nxt + static_cast<uint32_t>(field << f.our_ws);
  if (SeqGt(right, f.rcv_adv)) f.rcv_adv = right;
  return static_cast<uint16_t>(field);
}

void TapTcp::UpdateWindow(uint32_t idx, int64_t now_ns) {
  Flow& f = flows_[idx];
  if (f.state != State::kEstablished || f.guest_fin || f.updates >= kMaxUpdates) {
    f.want_update = false;
    return;
  }
  uint32_t before = f.rcv_adv;
  Window(idx);
  bool grew = f.rcv_adv != before;
  bool open = SeqGe(f.rcv_adv, f.rcv_nxt + f.mss);
  // Room in the send buffer: the guest hears of it, and again after a while
  // if it still sends nothing.
  if (grew || (open && f.updates > 0 && now_ns >= f.update_at)) {
    if (SendControl(idx, kTcpAck) && open) {
      f.updates++;
      f.update_at = now_ns + kUpdateRepeatNs;
    }
  }
}

void TapTcp::ArmOut(uint32_t idx) {
  Flow& f = flows_[idx];
  f.want_update = true;
  if (f.armed_out || !f.sock) return;
  ring_->PrepPoll(f.sock.get(), POLLOUT, UserData{kind::kTapTcpOut, f.gen, idx}.Pack());
  f.armed_out = true;
}

}  // namespace ringfwd
