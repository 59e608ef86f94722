// The state of one translated TCP flow and the translator's scratch space:
// private to fwd/tap_tcp.cc and fwd/tap_tcp_send.cc (see fwd/tap_tcp.h for
// the theory of operation).
#pragma once

#include <sys/uio.h>

#include <cstdint>

#include "fwd/tap_tcp.h"

namespace ringfwd {

struct TapTcp::Flow {
  State state = State::kFree;
  uint32_t gen = 0;
  Fd sock;
  Key key{};
  SockAddr target;  // read by the kernel when the connect is submitted
  bool armed_in = false;
  bool armed_out = false;
  bool connecting = false;  // connect in flight
  bool blocked = false;     // in blocked_
  // The window we gave was small: tell the guest when it grows (on POLLOUT,
  // else on the timer: POLLOUT fires once a third of the buffer is free,
  // which can be before our window grew).
  bool want_update = false;
  // Updates sent since the guest last sent data, and when the last went: an
  // update the link lost would leave the guest on its persist timer, whose
  // backoff grows to minutes, so it is repeated a few times.
  int updates = 0;
  int64_t update_at = 0;
  // Toward the guest. Sequence numbers of the data at the head of the
  // socket's receive queue (snd_una), the next to send, the highest sent.
  uint32_t iss = 0, snd_una = 0, snd_nxt = 0, snd_max = 0;
  uint32_t fin_seq = 0;
  bool sock_eof = false;  // the socket reached EOF (peek returned 0)
  // The last peek found no more bytes (or fewer than it asked for, with no
  // FIN reported): nothing to send until the socket polls readable again or
  // a rewind. Saves the peek that would only say EAGAIN, per wake-up.
  bool dry = false;
  bool rdhup = false;  // the socket's poll reported the peer's FIN (or a hang-up)
  // Space() of the batch just written, for the ACK that follows (-1: none).
  int64_t space_hint = -1;
  // The last Space() measured, while nothing was written to the socket since
  // (rcv_nxt still space_rcv) and for kSpaceCacheNs: Send() reuses it. The
  // space grows while nothing is written, as the peer acknowledges; it can
  // shrink only by the kernel's own doing (memory pressure trimming the
  // buffer), and then a window that was too large for those 2 ms ends in a
  // short write, counted as lost and resent by the guest.
  int64_t space_cache = -1;
  uint32_t space_rcv = 0;
  int64_t space_at = 0;
  // The sequence number at the kernel's peek offset (snd_una + SO_PEEK_OFF),
  // when peek_known: a peek moves it on by what it returned, discarding
  // acknowledged bytes leaves it in place (the kernel moves the offset back
  // with them). Send() sets the offset only when it is not at snd_nxt.
  uint32_t peek_seq = 0;
  bool peek_known = false;
  bool fin_sent = false;  // our FIN is in snd_nxt
  bool fin_ever = false;  // fin_seq is set
  bool fin_acked = false;
  bool probe = false;      // the next Send may put one byte into a zero window
  uint64_t guest_wnd = 0;  // bytes
  uint8_t guest_ws = 0;
  uint8_t our_ws = 0;
  uint16_t mss = 536;  // our segments to the guest (options included)
  // Timestamps (RFC 7323), when both sides offered them: every segment
  // carries one; ours count milliseconds from ts_off, and echo ts_recent,
  // the guest's latest in-sequence TSval. The echo gives the guest a round
  // trip sample even from retransmitted data, so its retransmission timer
  // backs off only while nothing gets through, not for a whole window of
  // resent data after a loss (Karn's rule, without timestamps).
  bool ts = false;
  uint32_t ts_off = 0;
  uint32_t ts_recent = 0;
  uint32_t dup_acks = 0;
  bool recovering = false;  // fast recovery until snd_una passes `recover`
  uint32_t recover = 0;
  // From the guest.
  uint32_t irs = 0, rcv_nxt = 0, rcv_adv = 0;  // rcv_adv: right edge advertised
  bool guest_fin = false;
  // Timers.
  int64_t rto_ns = 0;
  int64_t rto_at = 0;  // 0: off
  int retries = 0;
  int64_t last_active = 0;
};

struct TapTcp::Scratch {
  iovec iov[FrameBatch::kMaxFrames];
  uint16_t pending[FrameBatch::kMaxFrames];
  // Send(): small segments are peeked many at a time into here.
  static constexpr size_t kPeek = 65536;
  uint8_t peek[kPeek];
};

}  // namespace ringfwd
