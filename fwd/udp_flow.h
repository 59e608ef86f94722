// UDP flows: one per (listener, client address and port).
//
// Theory of operation. A datagram read from a listening socket is looked up
// by (listener, client address, client port); the first one creates a flow
// with its own socket on the target side, connected to the target, so
// replies come back on that socket alone and map to the client without a
// lookup. Replies leave from the listening socket, addressed to the client
// and sourced from the address the client wrote to (packet info on wildcard
// listeners). Reads and writes are batched (recvmmsg/sendmmsg into buffers
// allocated once). A flow expires after an idle time; when the table is full
// the least recently used flow is evicted; the flows of a listener that goes
// away or changes target are flushed. Nothing is allocated per datagram: the
// lookup table is reserved for the maximum number of flows up front.
#pragma once

#include <liburing.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "fwd/addr.h"
#include "fwd/listener.h"
#include "fwd/lru_list.h"
#include "fwd/netns.h"
#include "uring/fd.h"
#include "uring/ring.h"
#include "uring/user_data.h"

namespace ringfwd {

// What a UDP listener needs to forward: its socket, target and side.
struct UdpListenerInfo {
  uint32_t index = 0;  // listener slot, with its generation
  uint32_t gen = 0;
  int fd = -1;                    // borrowed; flows are flushed before it closes
  SocketFactory* side = nullptr;  // where target sockets are made
  ListenerTarget target;
  const std::string* label = nullptr;  // rule text for logs
};

struct UdpStats {
  uint64_t flows_created = 0;
  uint64_t flows_expired = 0;
  uint64_t flows_evicted = 0;
  uint64_t datagrams_in = 0;   // client -> target
  uint64_t datagrams_out = 0;  // target -> client
  uint64_t dropped = 0;
};

class UdpFlows {
 public:
  UdpFlows(Ring* ring, size_t max_flows, int64_t idle_timeout_ns);
  ~UdpFlows();

  // The listener is readable: forward what it holds (bounded per call).
  void HandleListener(const UdpListenerInfo& l, int64_t now_ns);
  // A flow's target socket is readable (kind kUdpReply): send replies back.
  void HandleCompletion(const io_uring_cqe& cqe, UserData ud, int64_t now_ns);
  // Closes flows idle for longer than the timeout.
  void Expire(int64_t now_ns);
  // Closes every flow of listener `index` (removed or retargeted).
  void FlushListener(uint32_t index);
  void CloseAll();

  size_t active() const { return map_.size(); }
  const UdpStats& stats() const { return stats_; }

 private:
  struct Key {
    uint32_t listener;
    Addr6 addr;
    uint16_t port;
    friend bool operator==(const Key&, const Key&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.listener, k.addr, k.port);
    }
  };
  struct Flow {
    bool used = false;
    uint32_t gen = 0;
    Fd sock;
    Key key{};
    int listener_fd = -1;
    sockaddr_storage client{};  // as the listener reported it
    socklen_t client_len = 0;
    Addr6 local;  // where the client wrote to (when known)
    uint32_t ifindex = 0;
    bool has_local = false;
    bool armed = false;
    int64_t last_active = 0;
    uint32_t prev = 0, next = 0;  // LRU list, most recent at head
  };

  uint32_t Create(const UdpListenerInfo& l, const Key& key, const sockaddr_storage& client,
                  socklen_t client_len, const Addr6* local, uint32_t ifindex, int64_t now_ns);
  void Close(uint32_t index);
  void Touch(uint32_t index, int64_t now_ns);
  void SendReplies(uint32_t index, int n);

  Ring* ring_;
  int64_t idle_timeout_ns_;
  std::vector<Flow> flows_;
  std::vector<uint32_t> free_;
  LruList<Flow> lru_{&flows_};
  absl::flat_hash_map<Key, uint32_t> map_;
  // Batch buffers, allocated once.
  struct Batch;
  std::unique_ptr<Batch> batch_;
  UdpStats stats_;
};

}  // namespace ringfwd
