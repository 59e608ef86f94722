// TapLink: the guest's Layer-2 link - a frame source, the link services and
// the translators of the guest's traffic to host sockets.
//
// Theory of operation. The forwarder owns one TapLink when tap mode is on and
// routes the completions of the tap kinds (16-31) to Dispatch(). Frames read
// by the source arrive in batches (OnFrames): each is parsed; bad frames are
// dropped and counted by reason; the link services (ARP, NDP, DHCP, DHCPv6)
// take theirs and answer at once; the rest are grouped by flow (FrameBatch)
// and each group goes to its translator: UDP to TapUdp; ICMP echo requests
// go to TapIcmp (ping sockets) as they come; TCP to TapTcp; anything else,
// other ICMP included, is counted and dropped. Everything the link sends is committed to the
// source's send queue, which the loop flushes once per iteration (Flush), so
// all writes of an iteration go to the kernel in one submission.
#pragma once

#include <liburing.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "fwd/frame_batch.h"
#include "fwd/link_config.h"
#include "fwd/link_fault.h"
#include "fwd/link_services.h"
#include "fwd/netns.h"
#include "fwd/packet.h"
#include "fwd/tap_icmp.h"
#include "fwd/tap_tcp.h"
#include "fwd/tap_udp.h"
#include "uring/frame_source.h"
#include "uring/ring.h"

namespace ringfwd {

struct TapLinkOptions {
  enum class Mode { kNone, kTap, kQemu };
  Mode mode = Mode::kNone;
  std::string ifname = "tap0";  // kTap: the interface made in the namespace
  std::string qemu_path;        // kQemu: the UNIX socket to listen on
  LinkConfig link;
  TapUdpOptions udp;
  TapTcpOptions tcp;
  LinkFaultOptions fault;  // --tap-fault, for tests
};

struct TapLinkStats {
  uint64_t frames = 0;
  uint64_t dropped = 0;  // every frame not consumed, whatever the reason
  std::array<uint64_t, static_cast<size_t>(DropReason::kCount)> bad{};  // ParseFrame refusals
  uint64_t not_for_us = 0;                                              // unicast to another MAC
  uint64_t services = 0;       // taken by the link services
  uint64_t udp = 0;            // frames given to the UDP translator
  uint64_t icmp_echo = 0;      // echo requests given to the ICMP translator
  uint64_t icmp_dropped = 0;   // other ICMP from the guest
  uint64_t tcp = 0;            // segments given to the TCP translator
  uint64_t other_dropped = 0;  // other IP protocols
  uint64_t fault_dropped = 0;  // --tap-fault, from the guest
  uint64_t fault_reordered = 0;
};

class TapLink : public FrameReceiver {
 public:
  // kTap: creates the tap in `ns`'s namespace, configures it by netlink (MTU,
  // up, the guest's addresses and default routes, no DAD, lo up) and reads
  // it. kQemu: listens on the socket path. Translated sockets are made by
  // `host`. `ring`, `ns` and `host` must outlive the link.
  static absl::StatusOr<std::unique_ptr<TapLink>> Create(Ring* ring, const TapLinkOptions& opts,
                                                         NetNs* ns, SocketFactory* host);
  ~TapLink() override;

  // A completion of a tap kind (kTapFirst..kTapLast).
  void Dispatch(const io_uring_cqe& cqe, UserData ud, int64_t now_ns);
  // After a round of completions: hands frames read to the link, and lets
  // flows with data left read on.
  void Process(int64_t now_ns);
  // Whether Process() has work left without waiting for a completion.
  bool HasWork() const { return udp_->HasReady() || tcp_->HasBlocked(); }
  // Periodic work: router advertisements, UDP expiry, re-armed reads.
  void Tick(int64_t now_ns);
  // Queues every frame committed since the last call on the ring.
  void Flush() {
    if (fault_sink_) fault_sink_->Release();
    source_->Flush();
  }
  // Closes the translated flows (their polls are removed on the ring).
  void Shutdown();
  // Whether HOST rules without a target address deliver to the guest over
  // the link (a VM on the QEMU socket) rather than to a namespace.
  bool ServesHostRules() const { return mode_ == TapLinkOptions::Mode::kQemu; }
  // A HOST rule's UDP listener is readable: its datagrams go to the guest.
  void HandleInboundUdp(const TapInboundListener& l, int64_t now_ns) {
    udp_->HandleInbound(l, now_ns);
  }
  // A connection accepted by a HOST rule whose target is the guest: it
  // becomes a connection to the guest's `port` (its SYN is sent now).
  void HandleInboundTcp(Fd client, uint16_t port, int64_t now_ns) {
    tcp_->Accept(std::move(client), port, now_ns);
  }
  // Whether `a` is the guest's address on the link.
  bool IsGuestAddress(const Addr6& a) const;
  // The listener goes away or changes target: its inbound flows close.
  void FlushListener(uint32_t index) { udp_->FlushListener(index); }

  void OnFrames(std::span<const std::span<const uint8_t>> frames,
                std::span<const uint8_t> flags) override;

  const TapLinkStats& stats() const { return stats_; }
  const FrameSourceStats& source_stats() const { return source_->stats(); }
  const LinkCounters& service_counters() const { return services_->counters(); }
  const TapUdpStats& udp_stats() const { return udp_->stats(); }
  const TapIcmpStats& icmp_stats() const { return icmp_->stats(); }
  const TapTcpStats& tcp_stats() const { return tcp_->stats(); }
  const LinkConfig& config() const { return config_; }
  // One line of counters for the logs.
  std::string Summary() const;

 private:
  explicit TapLink(const TapLinkOptions& opts);
  void RunBatch(int64_t now_ns);
  // One frame; `flags` as the source gave them (kFrameChecksumTrusted).
  void OnFrame(std::span<const uint8_t> f, uint8_t flags);
  // Where frames for the guest go: the source, or a FaultSink before it.
  FrameSink* sink() {
    return fault_sink_ ? static_cast<FrameSink*>(fault_sink_.get()) : source_.get();
  }

  LinkConfig config_;
  LinkState state_;
  TapLinkOptions::Mode mode_;
  std::unique_ptr<FrameSource> source_;
  std::unique_ptr<FaultSink> fault_sink_;
  std::unique_ptr<FaultFilter> fault_in_;
  std::unique_ptr<LinkServices> services_;
  std::unique_ptr<TapUdp> udp_;
  std::unique_ptr<TapIcmp> icmp_;
  std::unique_ptr<TapTcp> tcp_;
  std::unique_ptr<FrameBatch> batch_;
  int64_t now_ns_ = 0;
  int64_t next_expire_ns_ = 0;
  TapLinkStats stats_;
};

// Creates tap `name` in the calling thread's namespace and configures it for
// `link` (MTU, up, addresses without DAD, default routes; lo up). Run on the
// namespace's thread. Returns the tap's descriptor.
absl::StatusOr<Fd> CreateConfiguredTap(const std::string& name, const LinkConfig& link);

}  // namespace ringfwd
