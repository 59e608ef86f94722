// TapIcmp: ICMP and ICMPv6 echo for the guest of a tap link, through the
// kernel's unprivileged ping sockets (socket(AF_INET, SOCK_DGRAM,
// IPPROTO_ICMP) and its IPv6 twin).
//
// Theory of operation. An echo request from the guest is looked up by
// (guest address, destination, guest identifier). The first one creates a
// flow: a ping socket, connected to the destination (the host's loopback
// when the guest pings the gateway and map_host_loopback is set), watched by
// a multishot POLLIN on the ring (kind::kTapPing, index and generation of
// the flow's slot). The kernel gives the socket its own identifier and
// rewrites the request's; the sequence number and data go through as they
// are. Replies read from the socket are written to the guest as echo
// replies from the destination it pinged, with its own identifier back in
// place, received straight into the FrameSink's buffer. A flow idle for
// 60 s (by default) is closed; when all slots are in use the least recently
// used flow is closed for a new one. Slots are preallocated; a completion
// whose generation does not match its slot is stale and ignored.
//
// Ping sockets need the caller's group in net.ipv4.ping_group_range (it is
// "1 0", nobody, by default, even for root; it covers IPv6 as well). When
// socket() fails with EACCES, one log line names the sysctl and echo
// requests are dropped and counted (we never change the sysctl).
//
// Not thread-safe: one per link, on the data-plane thread.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "fwd/addr.h"
#include "fwd/frame_sink.h"
#include "fwd/link_config.h"
#include "fwd/packet.h"
#include "uring/fd.h"
#include "uring/ring.h"
#include "uring/user_data.h"

namespace ringfwd {

struct TapIcmpStats {
  uint64_t flows_created = 0;
  uint64_t flows_expired = 0;
  uint64_t flows_evicted = 0;
  uint64_t requests = 0;       // echo requests sent for the guest
  uint64_t replies = 0;        // echo replies written to the guest
  uint64_t dropped = 0;        // bad checksum, send failures, full sink, oversized replies
  uint64_t not_permitted = 0;  // dropped: ping sockets not allowed (EACCES)
};

class TapIcmp {
 public:
  static constexpr int64_t kDefaultIdleNs = 60'000'000'000;

  // `ring`, `config` and `state` are borrowed and must outlive this object.
  // All `max_flows` slots are allocated here.
  TapIcmp(Ring* ring, const LinkConfig& config, const LinkState& state, size_t max_flows = 256,
          int64_t idle_timeout_ns = kDefaultIdleNs);
  ~TapIcmp();
  TapIcmp(const TapIcmp&) = delete;
  TapIcmp& operator=(const TapIcmp&) = delete;

  // Offers a parsed frame from the guest. Returns false unless it is an ICMP
  // echo request (IPv4) or ICMPv6 echo request (IPv6); true if it was one,
  // whether it was sent or dropped (counted). `now_ns` is CLOCK_MONOTONIC.
  bool HandleGuestEcho(const FrameView& v, std::span<const uint8_t> frame, int64_t now_ns);

  // A completion of kind kind::kTapPing: reads the flow's replies and writes
  // them to `out` as echo-reply frames for the guest. Re-arms the poll when
  // the kernel ended the multishot.
  void HandleCompletion(const io_uring_cqe& cqe, UserData ud, int64_t now_ns, FrameSink& out);

  // Closes flows idle for longer than the timeout.
  void Expire(int64_t now_ns);
  // Closes every flow (their polls are removed; late completions are stale).
  void CloseAll();

  size_t active() const { return map_.size(); }
  const TapIcmpStats& stats() const { return stats_; }

 private:
  struct Key {
    Addr6 guest;  // the guest's source address
    Addr6 dst;    // the address the guest pinged
    uint16_t id;  // the guest's identifier
    friend bool operator==(const Key&, const Key&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.guest, k.dst, k.id);
    }
  };
  struct Flow {
    bool used = false;
    uint32_t gen = 0;
    Fd sock;
    Key key{};
    int64_t last_active = 0;
  };

  uint32_t Create(const Key& key, int64_t now_ns);
  void Close(uint32_t index);
  void Arm(uint32_t index);
  Addr6 TargetOf(const Addr6& dst) const;

  Ring* ring_;
  const LinkConfig& config_;
  const LinkState& state_;
  int64_t idle_timeout_ns_;
  std::vector<Flow> flows_;
  std::vector<uint32_t> free_;
  absl::flat_hash_map<Key, uint32_t> map_;
  bool eacces_logged_ = false;
  TapIcmpStats stats_;
};

}  // namespace ringfwd
