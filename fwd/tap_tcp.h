// TapTcp: the guest's TCP connections, translated to and from host sockets,
// with no retransmission buffer of our own.
//
// Theory of operation. A flow is keyed by what the guest sees: its address
// and port, and the address and port it connected to. A SYN from the guest
// takes a non-blocking host socket (in the daemon's namespace; from a small
// pool per family, refilled on the timer, else a new one) and connects
// it through the ring (kind kTapTcpConnect) to the mapped target (the host's
// loopback for the gateway's address, as for UDP). SYN retries while the
// connect is in flight are absorbed. A failed connect answers the guest with
// RST (the guest sees "connection refused"); a completed one with a SYN-ACK
// carrying our MSS (from the MTU) and a window scale when the guest offered
// one. The guest's ACK of it makes the flow established.
//
// States: kConnecting (SYN seen, connect in flight) -> kSynRcvd (SYN-ACK
// sent, retransmitted on the timer) -> kEstablished; inbound (a HOST rule's
// listener accepted a connection for the guest): kSynSent (our SYN sent,
// retransmitted on the timer) -> kEstablished on the guest's SYN-ACK, which
// supplies its sequence, MSS and window scale; FIN and RST are flags
// on top of kEstablished: guest_fin (the guest's FIN was taken in order: the
// socket is shut down for writing), fin_sent/fin_seq (the socket reached EOF
// and we sent our FIN), fin_acked. A flow closes when both FINs are acked,
// on RST either way, after too many retransmissions (RST both ways) or after
// two hours without traffic (RST both ways).
//
// Socket to guest: the socket's receive queue is the retransmission buffer.
// Data is peeked (MSG_PEEK, with SO_PEEK_OFF at snd_nxt - snd_una) straight
// into frame buffers of the sink behind the headers, in MSS-sized segments up
// to the guest's window (PSH when the socket ran dry), and leaves the socket
// (recv with MSG_TRUNC) only as the guest acknowledges it. A retransmission
// timeout (1 s, doubling, bounded) rewinds snd_nxt to snd_una and resends
// from there; a duplicate ACK (same ACK and window, no data: the link does
// not reorder, so the first one means a loss) resends the first
// unacknowledged segment at once, and so does each partial ACK until the data in flight at the
// first duplicate is acknowledged (NewReno, RFC 6582). A zero window is probed with one byte on the
// retransmission timer (probes are not counted as retries).
//
// Guest to socket: the in-order data of a batch's frames of one flow is
// written with one sendmsg; older bytes are dropped as duplicates; segments
// ahead of rcv_nxt are retried once the gap is filled within the batch,
// otherwise duplicate ACKs (one per such segment, up to three per batch, the
// window field held so that they count as duplicates) ask the guest for a
// fast retransmit rather than a timeout; the part of a short
// write not taken is left unacknowledged (the guest resends it). The window
// we advertise is the room for unsent bytes in the socket's send buffer
// (half of it, less what is not yet sent; bytes sent and not yet
// acknowledged by the host's peer are not counted, as they leave within
// that path's round trip, but the buffer memory they hold still bounds the
// window), and its right edge never moves backwards. When it was small or a
// write was short, a one-shot POLLOUT (kind kTapTcpOut) sends a window
// update once room appears: TCP_NOTSENT_LOWAT at half the buffer makes
// POLLOUT mean "the unsent bytes fell below a quarter". The kernel only
// autotunes a buffer that ran out of room, which ours never does, so each
// socket's send buffer is set to tcp_wmem's maximum up front
// (SO_SNDBUFFORCE, else SO_SNDBUF up to net.core.wmem_max).
//
// Timestamps (RFC 7323) are used when the guest offers them: they let the
// guest time the round trip of resent data, so that its retransmission timer
// does not stay backed off while it resends what we dropped past a gap.
//
// Slots are preallocated with generations (user_data carries slot and
// generation); nothing is allocated per segment. SYNs beyond the table are
// dropped and counted; segments of no flow are answered with RST.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "fwd/addr.h"
#include "fwd/frame_batch.h"
#include "fwd/frame_sink.h"
#include "fwd/link_config.h"
#include "fwd/netns.h"
#include "fwd/tcp_seq.h"
#include "uring/fd.h"
#include "uring/ring.h"
#include "uring/user_data.h"

namespace ringfwd {

class TapUdp;

struct TapTcpStats {
  uint64_t flows_created = 0;   // guest SYNs that opened a socket
  uint64_t flows_closed = 0;    // every flow that ended, however
  uint64_t connect_failed = 0;  // answered with RST
  uint64_t syn_dropped = 0;     // table full or no socket
  uint64_t syn_absorbed = 0;    // guest SYN retries while connecting
  uint64_t segments_in = 0;
  uint64_t segments_out = 0;   // frames, each one segment or (segmented_out) many
  uint64_t segmented_out = 0;  // frames the link cuts into segments (offload)
  uint64_t bytes_in = 0;       // guest -> socket, written
  uint64_t bytes_out = 0;      // socket -> guest, acknowledged by the guest
  uint64_t bad_checksum = 0;
  uint64_t invalid = 0;       // bad flags, ACK of unsent data, SYN on no flow with ACK...
  uint64_t duplicate = 0;     // guest data already taken
  uint64_t out_of_order = 0;  // guest data ahead of a gap: dup ACK sent
  uint64_t short_writes = 0;  // socket took less than offered
  uint64_t retransmits = 0;   // timeouts that rewound
  uint64_t fast_retransmits = 0;
  uint64_t probes = 0;    // zero-window probes
  uint64_t rst_in = 0;    // from the guest
  uint64_t rst_out = 0;   // to the guest
  uint64_t timeouts = 0;  // flows aborted after too many retries
  uint64_t idle_closed = 0;
  uint64_t sink_full = 0;  // frames not sent: the link's queue was full
  uint64_t pool_hits = 0;  // outbound flows that took a socket from the pool
};

struct TapTcpOptions {
  size_t max_flows = 4096;
  int64_t idle_ns = 7200LL * 1'000'000'000;  // 2 h
  int64_t rto_initial_ns = 1'000'000'000;
  int64_t rto_max_ns = 30'000'000'000;
  int max_retries = 8;
  // Send buffer of each flow's host socket, bytes: -1 takes net.ipv4.tcp_wmem's
  // maximum, 0 leaves the kernel's default and autotuning.
  int64_t sndbuf = -1;
  // Sockets kept ready per family for the guest's SYNs (refilled on the
  // timer), so that a connection starts with the connect alone.
  size_t pool = 8;
};

class TapTcp {
 public:
  // `config`, `state`, `host`, `sink` and `udp` (for its target mapping)
  // are borrowed for the lifetime.
  TapTcp(Ring* ring, const LinkConfig& config, const LinkState& state, SocketFactory* host,
         FrameSink* sink, size_t max_frame, const TapUdp& udp, const TapTcpOptions& opts);
  ~TapTcp();

  // The segments of one TCP flow from the guest (indexes into `batch`).
  void HandleGroup(const FrameBatch& batch, std::span<const uint16_t> frames, int64_t now_ns);
  // Inbound: `client` was accepted for the guest's `port`; we send the
  // guest a SYN from the client's address (the gateway's for a client on
  // the host's loopback). Closed at once if the guest has no address of the
  // family, is not known yet, or the table is full.
  void Accept(Fd client, uint16_t port, int64_t now_ns);
  // A completion of kind kTapTcp, kTapTcpOut or kTapTcpConnect.
  void HandleCompletion(const io_uring_cqe& cqe, UserData ud, int64_t now_ns);
  // Flows that stopped sending because the link's send queue was full.
  bool HasBlocked() const { return !blocked_.empty(); }
  void RunBlocked(int64_t now_ns);
  // Retransmission timers, probes and the idle timeout (checked every 10 ms
  // at most).
  void Tick(int64_t now_ns);
  // Closes every flow (RST to the host peers of established ones).
  void CloseAll();

  size_t active() const { return map_.size(); }
  const TapTcpStats& stats() const { return stats_; }

 private:
  enum class State : uint8_t { kFree, kConnecting, kSynRcvd, kSynSent, kEstablished };
  struct Key {
    Addr6 guest;
    Addr6 dst;
    uint16_t gport;
    uint16_t dport;
    friend bool operator==(const Key&, const Key&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.guest, k.dst, k.gport, k.dport);
    }
  };
  struct Flow;
  struct Scratch;

  uint32_t Open(const Key& key, const FrameView& syn, std::span<const uint8_t> frame,
                int64_t now_ns);
  void Segments(uint32_t idx, const FrameBatch& batch, std::span<const uint16_t> frames,
                int64_t now_ns);
  // The guest's ACK field and window; true if it asks for a fast retransmit.
  bool TakeAck(uint32_t idx, const FrameView& v, int64_t now_ns);
  void OnConnected(uint32_t idx, int res, int64_t now_ns);
  // Inbound: the guest's answer to our SYN.
  void OnSynAck(uint32_t idx, const FrameView& v, std::span<const uint8_t> frame, int64_t now_ns);
  // Gives a new flow's socket the send buffer of the options.
  void SizeSendBuffer(int fd);
  // A host socket for an outbound flow: from the pool, else a new one.
  absl::StatusOr<Fd> TakeSocket(int family);
  absl::StatusOr<Fd> NewSocket(int family);
  void RefillPool();
  // Takes a slot for `key` (nothing else set).
  uint32_t Claim(const Key& key, Fd sock, int64_t now_ns);
  void OnReadable(uint32_t idx, int events, int64_t now_ns);
  // Peeks and sends what the guest's window allows.
  void Send(uint32_t idx, int64_t now_ns);
  void Rewind(uint32_t idx);
  // Fast retransmit: the first unacknowledged segment again, alone.
  void ResendHead(uint32_t idx);
  void OnTimer(uint32_t idx, int64_t now_ns);
  // The timestamp option of a segment of the flow into `out` (kTsOptLen
  // bytes): its length, 0 if the flow does not use timestamps.
  size_t TsOption(uint32_t idx, uint8_t* out) const;
  // A segment without data from the flow (SYN-ACK, ACK, FIN, RST).
  // `hold_window`: the window field of the last one, unchanged even if the
  // buffer has more room now, so that the guest counts it as a duplicate
  // ACK (a changed window is a window update, and is not counted).
  bool SendControl(uint32_t idx, uint8_t flags, bool hold_window = false);
  // RST to the sender of a segment that belongs to no flow.
  void ResetUnknown(const FrameView& v);
  // Room for payload in the socket's send buffer; the bytes in it not yet
  // sent in *notsent if not null.
  int64_t Space(uint32_t idx, int64_t* notsent);
  // The window field to advertise (and records its right edge); with
  // `hold`, the edge already advertised, not moved. With `now_ns` (Send()),
  // the space measured last may stand in for Space() (Flow::space_cache).
  uint16_t Window(uint32_t idx, bool hold = false, int64_t now_ns = -1);
  // POLLOUT, and the timer's check until then, for a window update.
  void ArmOut(uint32_t idx);
  // Sends a window update if the window grew since it was last advertised.
  void UpdateWindow(uint32_t idx, int64_t now_ns);
  // Ends a flow: RST to the guest and/or the host peer as asked.
  void Abort(uint32_t idx, bool rst_guest, bool rst_host);
  void Close(uint32_t idx);
  void MaybeDone(uint32_t idx);
  void Block(uint32_t idx);
  FrameAddrs AddrsOf(const Key& k) const;

  Ring* ring_;
  const LinkConfig& config_;
  const LinkState& state_;
  SocketFactory* host_;
  FrameSink* sink_;
  size_t max_frame_;
  const TapUdp& udp_;
  TapTcpOptions opts_;
  bool sndbuf_capped_logged_ = false;
  std::vector<Fd> pool_[2];  // AF_INET, AF_INET6
  IsnGenerator isn_;
  std::vector<Flow> flows_;
  std::vector<uint32_t> free_;
  absl::flat_hash_map<Key, uint32_t> map_;
  std::vector<uint32_t> blocked_;
  std::vector<uint32_t> blocked_next_;
  std::vector<uint32_t> scan_;
  std::unique_ptr<Scratch> scratch_;
  int64_t next_timer_ns_ = 0;
  TapTcpStats stats_;
};

}  // namespace ringfwd
