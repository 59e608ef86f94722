// TapUdp: the guest's UDP datagrams, translated to and from host sockets.
//
// Theory of operation. A flow is keyed by what the guest sees: its address
// and port, and the destination address and port it wrote to. The first
// datagram of a flow opens a host socket (in the daemon's own namespace),
// bound to the guest's source port where the host allows it (any port
// otherwise), and connected to the target: the host's loopback for the
// gateway's address (LinkConfig::map_host_loopback), the host's resolver for
// DNS to an advertised resolver, the destination itself otherwise. The
// frames of one flow come as a group (FrameBatch) and leave in one sendmmsg.
// The socket has a multishot POLLIN whose user_data carries the flow's slot
// and generation (kind kTapUdp), so a reply maps to its flow without a
// lookup; replies are received in batches (recvmmsg: one call when the
// socket holds fewer than a batch) and each copied into a frame buffer of
// the sink behind the headers (source: the address the guest wrote to).
// IP_RECVERR/IPV6_RECVERR queue the ICMP errors the host gets for the flow;
// each becomes an ICMP error to the guest quoting the datagram it answers. A
// flow expires after 30 s idle, or 120 s once traffic went both ways; when
// the table is full the least recently used flow is evicted. Slots are
// preallocated, with generations; nothing is allocated per datagram.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "fwd/addr.h"
#include "fwd/frame_batch.h"
#include "fwd/frame_sink.h"
#include "fwd/link_config.h"
#include "fwd/lru_list.h"
#include "fwd/netns.h"
#include "uring/fd.h"
#include "uring/ring.h"
#include "uring/user_data.h"

namespace ringfwd {

struct TapUdpStats {
  uint64_t flows_created = 0;
  uint64_t flows_expired = 0;
  uint64_t flows_evicted = 0;
  uint64_t flow_failures = 0;  // socket, bind or connect refused
  uint64_t datagrams_out = 0;  // guest -> host socket
  uint64_t datagrams_in = 0;   // host socket -> guest
  uint64_t icmp_errors = 0;    // ICMP errors relayed to the guest
  uint64_t dropped = 0;        // send failed, sink full, too big for the link
};

// A HOST rule's UDP listener whose target is the guest (a VM on the link).
struct TapInboundListener {
  uint32_t index = 0;  // listener slot; its flows are flushed before it closes
  int fd = -1;         // borrowed
  int family = AF_INET;
  uint16_t target_port = 0;
  const std::string* label = nullptr;
};

struct TapUdpOptions {
  size_t max_flows = 4096;
  int64_t idle_ns = 30'000'000'000;        // one-way flows
  int64_t idle_both_ns = 120'000'000'000;  // once traffic went both ways
  // Where DNS to an advertised resolver goes (port 53 on the guest side);
  // unset (::) keeps the advertised address.
  Addr6 dns4_target;
  Addr6 dns6_target;
};

class TapUdp {
 public:
  // `config`, `state`, `host` and `sink` are borrowed for the lifetime.
  TapUdp(Ring* ring, const LinkConfig& config, const LinkState& state, SocketFactory* host,
         FrameSink* sink, size_t max_frame, const TapUdpOptions& opts);
  ~TapUdp();

  // The frames of one UDP flow from the guest (indexes into `batch`). To
  // the target, each datagram is queued as a send on the ring that reads
  // the frame's buffer when the ring submits it: the buffers must stay as
  // they are until then (FrameReceiver's contract).
  void HandleGroup(const FrameBatch& batch, std::span<const uint16_t> frames, int64_t now_ns);
  // A completion of kind kTapUdp (replies or errors on a flow's socket) or
  // kTapUdpSend (a send that failed).
  void HandleCompletion(const io_uring_cqe& cqe, UserData ud, int64_t now_ns);
  // Inbound: the datagrams a listener holds go to the guest's address at
  // the target port, from the client's address (the gateway's for clients
  // on the host's loopback); the guest's replies leave from the listener.
  void HandleInbound(const TapInboundListener& l, int64_t now_ns);
  // Closes the inbound flows of listener `index`.
  void FlushListener(uint32_t index);
  // Flows whose socket still had data when their read budget ran out.
  bool HasReady() const { return !ready_.empty(); }
  void RunReady(int64_t now_ns);
  // Flows that stopped reading because the link's send queue was full; the
  // loop retries them after its completions (a write done frees room), never
  // in a busy loop.
  bool HasBlocked() const { return !blocked_.empty(); }
  void RunBlocked(int64_t now_ns);
  // Closes flows past their idle time.
  void Expire(int64_t now_ns);
  void CloseAll();

  size_t active() const { return map_.size(); }
  const TapUdpStats& stats() const { return stats_; }

  // Where a datagram the guest sends to `dst`:`port` goes on the host.
  Addr6 MapTarget(const Addr6& dst, uint16_t port) const;

 private:
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
  struct Flow {
    bool used = false;
    bool armed = false;
    bool replied = false;  // traffic went both ways
    bool queued = false;   // in ready_ (kept across reuse of the slot)
    bool blocked = false;  // in blocked_ (likewise)
    uint32_t gen = 0;
    unsigned send_tail = 0;  // the ring's queued tail after its last send
    Fd sock;
    Key key{};
    Addr6 target;  // where the socket is connected
    // Inbound flows (sock unset): replies leave from the listener.
    bool inbound = false;
    uint32_t listener = 0;
    int listener_fd = -1;
    sockaddr_storage client{};
    socklen_t client_len = 0;
    Addr6 local;  // the address the client wrote to, when known
    bool has_local = false;
    uint32_t ifindex = 0;
    int64_t last_active = 0;
    uint32_t prev = 0, next = 0;  // LRU, most recent at the head
  };

  uint32_t Create(const Key& key, int64_t now_ns);
  void Close(uint32_t index);
  void Touch(uint32_t index, int64_t now_ns);
  // Reads replies into frames for the guest; true if the budget ran out.
  enum class ReadResult { kIdle, kMore, kBlocked };
  // Reads replies into frames for the guest: kMore if the budget ran out,
  // kBlocked if the link's send queue is full (data left in the socket).
  ReadResult ReadReplies(uint32_t index, int64_t now_ns);
  void Requeue(uint32_t index, ReadResult r);
  void ReadErrors(uint32_t index);
  // Takes a free slot (evicting the oldest flow if none) and links it in.
  uint32_t Claim(const Key& key, int64_t now_ns);
  // The guest-side view of an inbound client, or false if the guest has no
  // address of its family.
  bool InboundKey(const Addr6& client, uint16_t port, uint16_t target_port, Key* key) const;
  void SendToClient(uint32_t index, const FrameBatch& batch, std::span<const uint16_t> frames);

  Ring* ring_;
  const LinkConfig& config_;
  const LinkState& state_;
  SocketFactory* host_;
  FrameSink* sink_;
  size_t max_frame_;
  TapUdpOptions opts_;
  std::vector<Flow> flows_;
  std::vector<uint32_t> free_;
  LruList<Flow> lru_{&flows_};
  absl::flat_hash_map<Key, uint32_t> map_;
  std::vector<uint32_t> ready_;
  std::vector<uint32_t> ready_next_;
  std::vector<uint32_t> blocked_;
  struct Scratch;
  std::unique_ptr<Scratch> scratch_;
  TapUdpStats stats_;
};

}  // namespace ringfwd
