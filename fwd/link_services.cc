// The dispatcher of the link services: learns the guest, routes each
// link-service frame to its handler (link_arp.cc, link_ndp.cc, link_dhcp.cc,
// link_dhcpv6.cc), and times the unsolicited router advertisements.
#include "fwd/link_services.h"

#include <netinet/in.h>

#include <climits>
#include <cstring>

#include "fwd/link_handlers.h"

namespace ringfwd {
namespace link {

std::span<uint8_t> Reserve(Ctx& c, size_t max_len) {
  std::span<uint8_t> buf = c.out.Reserve(max_len);
  if (buf.size() < max_len) {
    if (!buf.empty()) c.out.Commit(0);
    c.counters.sink_full++;
    return {};
  }
  return buf;
}

size_t EncodeDomainNames(const std::vector<std::string>& names, std::span<uint8_t> out) {
  size_t n = 0;
  auto put = [&](uint8_t b) {
    if (n < out.size()) out[n] = b;
    n++;
  };
  for (const std::string& name : names) {
    // Check the labels first: a name with an oversized label is left out.
    bool valid = false;
    size_t start = 0;
    for (size_t i = 0; i <= name.size(); i++) {
      if (i == name.size() || name[i] == '.') {
        if (i - start > 63) {
          valid = false;
          break;
        }
        if (i > start) valid = true;
        start = i + 1;
      }
    }
    if (!valid) continue;
    start = 0;
    for (size_t i = 0; i <= name.size(); i++) {
      if (i == name.size() || name[i] == '.') {
        if (i > start) {
          put(static_cast<uint8_t>(i - start));
          for (size_t j = start; j < i; j++) put(static_cast<uint8_t>(name[j]));
        }
        start = i + 1;
      }
    }
    put(0);
  }
  return n;
}

Addr6 AllNodes6() {
  Addr6 a;
  a.b[0] = 0xff;
  a.b[1] = 0x02;
  a.b[15] = 1;
  return a;
}

Addr6 AllDhcpServers6() {
  Addr6 a;
  a.b[0] = 0xff;
  a.b[1] = 0x02;
  a.b[13] = 1;
  a.b[15] = 2;
  return a;
}

MacAddr MulticastMac6(const Addr6& a) { return {0x33, 0x33, a.b[12], a.b[13], a.b[14], a.b[15]}; }

}  // namespace link

namespace {

bool IsLinkLocal6(const Addr6& a) { return a.b[0] == 0xfe && (a.b[1] & 0xc0) == 0x80; }

}  // namespace

LinkServices::LinkServices(const LinkConfig& config, LinkState& state)
    : config_(config), state_(state) {}

bool LinkServices::Handle(const FrameView& v, std::span<const uint8_t> frame, FrameSink& out) {
  if (!v.ok()) return false;
  // Learn the guest's MAC from any unicast source that is not ours.
  if (!(v.eth_src[0] & 1) && v.eth_src != config_.our_mac && v.eth_src != MacAddr{}) {
    state_.guest_mac = v.eth_src;
    state_.guest_mac_known = true;
  }
  link::Ctx c{config_, state_, counters_, out};
  if (v.l3 == L3Kind::kArp) {
    link::HandleArp(c, v);
    return true;
  }
  if (v.is_v6() && IsLinkLocal6(v.src)) {
    state_.guest_ll6 = v.src.In6();
    state_.guest_ll6_known = true;
  }
  if (v.is_v6() && v.l4_proto == IPPROTO_ICMPV6) {
    // MLD (130-132, 143) and NDP (133-137) are the link's business.
    if ((v.icmp_type >= 130 && v.icmp_type <= 137) || v.icmp_type == 143) {
      link::HandleNdp(c, v, frame);
      return true;
    }
    return false;
  }
  if (v.l4_proto != IPPROTO_UDP) return false;
  if (v.is_v4() && v.dport == 67) {
    link::HandleDhcp(c, v, frame);
    return true;
  }
  if (v.is_v6() && v.dport == 547 &&
      (v.dst == link::AllDhcpServers6() || v.dst == Addr6::FromIn6(config_.gw6))) {
    link::HandleDhcpv6(c, v, frame);
    return true;
  }
  return false;
}

void LinkServices::Tick(int64_t now_ns, FrameSink& out) {
  if (!config_.has_v6 || !state_.guest_mac_known) return;
  if (next_ra_ns_ != 0 && now_ns < next_ra_ns_) return;
  link::Ctx c{config_, state_, counters_, out};
  link::SendRouterAdvert(c, link::MulticastMac6(link::AllNodes6()), link::AllNodes6());
  // xorshift32, seeded from the guest's MAC: jitter in [-1 min, +1 min).
  if (jitter_seed_ == 0) {
    for (uint8_t b : state_.guest_mac) jitter_seed_ = jitter_seed_ * 31 + b;
    jitter_seed_ |= 1;
  }
  jitter_seed_ ^= jitter_seed_ << 13;
  jitter_seed_ ^= jitter_seed_ >> 17;
  jitter_seed_ ^= jitter_seed_ << 5;
  int64_t jitter = static_cast<int64_t>(jitter_seed_ % 120'000) * 1'000'000 - kRaJitterNs;
  next_ra_ns_ = now_ns + kRaIntervalNs + jitter;
  if (next_ra_ns_ == 0) next_ra_ns_ = 1;
}

int64_t LinkServices::NextTickNs() const {
  if (!config_.has_v6 || !state_.guest_mac_known) return INT64_MAX;
  return next_ra_ns_;
}

}  // namespace ringfwd
