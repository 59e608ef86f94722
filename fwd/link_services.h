// LinkServices: the answers a guest gets from the link itself - ARP, NDP
// (neighbour and router advertisements), DHCPv4 and DHCPv6 - as a router and
// DHCP server on the guest's segment would give them.
//
// Theory of operation. The frame source parses each frame (ParseFrame) and
// offers it to Handle() first. Handle() learns the guest's MAC (and its IPv6
// link-local address) from every frame the guest sends, then consumes the
// frames that are the link's business: all ARP, NDP and MLD, DHCP to port 67,
// DHCPv6 to port 547. It answers through the FrameSink right away (one frame
// per question, never allocating) and returns true; the guest's traffic to
// anywhere else returns false and goes to the translators. Bad service
// frames (wrong checksum, NDP with a hop limit other than 255, truncated DHCP
// messages) are consumed and counted, never answered.
//
// Tick() sends unsolicited router advertisements: the first at the first
// tick after the guest's MAC is known, then every 10 minutes plus or minus a
// minute of jitter. NextTickNs() says when the next one is due so the loop
// can arm a timer; ticking more often is harmless.
//
// One LinkServices per link; not thread-safe. The config and the state are
// borrowed and must outlive it.
#pragma once

#include <cstdint>
#include <span>

#include "fwd/frame_sink.h"
#include "fwd/link_config.h"
#include "fwd/packet.h"

namespace ringfwd {

// What the services did, for the control socket and the logs.
struct LinkCounters {
  uint64_t arp_replies = 0;       // ARP replies sent
  uint64_t arp_ignored = 0;       // ARP not answered: for the guest's address,
                                  // gratuitous, replies, announcements
  uint64_t na_sent = 0;           // neighbour advertisements sent
  uint64_t ns_ignored = 0;        // NS for the guest's own addresses, DAD
  uint64_t rs_received = 0;       // router solicitations
  uint64_t ra_sent = 0;           // router advertisements (solicited or not)
  uint64_t dhcp_offers = 0;       // DHCPOFFER
  uint64_t dhcp_acks = 0;         // DHCPACK (REQUEST and INFORM)
  uint64_t dhcp_naks = 0;         // DHCPNAK: a REQUEST for another address
  uint64_t dhcp_ignored = 0;      // RELEASE, DECLINE, REQUEST to another server
  uint64_t dhcpv6_advertise = 0;  // ADVERTISE
  uint64_t dhcpv6_replies = 0;    // REPLY
  uint64_t dhcpv6_ignored = 0;    // messages for another server, RELEASE, ...
  uint64_t bad = 0;               // malformed service frames, consumed
  uint64_t sink_full = 0;         // answers lost: FrameSink::Reserve was empty
};

class LinkServices {
 public:
  // `config` and `state` are borrowed for the lifetime of this object.
  LinkServices(const LinkConfig& config, LinkState& state);

  // Offers a frame from the guest that ParseFrame accepted (v.ok()); `frame`
  // is the frame v was parsed from. Learns the guest's MAC and link-local
  // address; answers link-service frames into `out` and returns true for
  // them (consumed); returns false for everything else, and for dropped
  // views. Never allocates.
  bool Handle(const FrameView& v, std::span<const uint8_t> frame, FrameSink& out);

  // Sends an unsolicited router advertisement when one is due (IPv6 on the
  // link and the guest's MAC known). `now_ns` is CLOCK_MONOTONIC.
  void Tick(int64_t now_ns, FrameSink& out);

  // When the next Tick() has something to do: 0 while it would act at once
  // (the guest is known and no RA was sent yet), INT64_MAX while nothing is
  // scheduled (no IPv6, or the guest not seen yet).
  int64_t NextTickNs() const;

  const LinkCounters& counters() const { return counters_; }

 private:
  const LinkConfig& config_;
  LinkState& state_;
  LinkCounters counters_;
  int64_t next_ra_ns_ = 0;  // 0: the first RA is due at the next tick
  uint32_t jitter_seed_ = 0;
};

// The period of unsolicited router advertisements and its jitter.
inline constexpr int64_t kRaIntervalNs = 600'000'000'000;
inline constexpr int64_t kRaJitterNs = 60'000'000'000;

}  // namespace ringfwd
