#include "fwd/tap_link.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "fwd/kinds.h"
#include "fwd/netlink.h"
#include "uring/log.h"
#include "uring/qemu_stream.h"
#include "uring/status.h"
#include "uring/tap_device.h"

namespace ringfwd {
namespace {

constexpr FrameSourceKinds kKinds{kind::kTapRead, kind::kTapWrite, kind::kTapAccept};

bool IsMulticastMac(const MacAddr& m) { return m[0] & 1; }

}  // namespace

absl::StatusOr<Fd> CreateConfiguredTap(const std::string& name, const LinkConfig& link) {
  std::string actual;
  // With virtio-net headers: TCP segments to the guest go with partial
  // checksums (uring/tap_device.h).
  RINGFWD_ASSIGN_OR_RETURN(Fd tap, TapDevice::OpenTap(name, &actual, /*vnet_header=*/true));
  RINGFWD_ASSIGN_OR_RETURN(Netlink nl, Netlink::Open());
  RINGFWD_RETURN_IF_ERROR(nl.LoopbackUp());
  RINGFWD_ASSIGN_OR_RETURN(int idx, nl.IfIndex(actual));
  RINGFWD_RETURN_IF_ERROR(nl.SetMtu(idx, actual, link.mtu));
  // No duplicate address detection on the tap, for the link-local address
  // the kernel makes either: we are the only other node on the link.
  std::string dad = absl::StrCat("/proc/sys/net/ipv6/conf/", actual, "/accept_dad");
  if (int fd = open(dad.c_str(), O_WRONLY | O_CLOEXEC); fd >= 0) {
    (void)!write(fd, "0", 1);
    close(fd);
  }
  RINGFWD_RETURN_IF_ERROR(nl.LinkUp(idx, actual));
  if (link.has_v4) {
    RINGFWD_RETURN_IF_ERROR(
        nl.AddAddress(idx, actual, IfAddr{Addr6::FromV4(ntohl(link.addr4.s_addr)), link.prefix4}));
    if (link.gw4.s_addr)
      RINGFWD_RETURN_IF_ERROR(
          nl.AddDefaultRoute(idx, actual, Addr6::FromV4(ntohl(link.gw4.s_addr))));
  }
  if (link.has_v6) {
    RINGFWD_RETURN_IF_ERROR(
        nl.AddAddress(idx, actual, IfAddr{Addr6::FromIn6(link.addr6), link.prefix6}));
    Addr6 gw = Addr6::FromIn6(link.gw6);
    if (!gw.IsUnspecified6()) RINGFWD_RETURN_IF_ERROR(nl.AddDefaultRoute(idx, actual, gw));
  }
  return tap;
}

TapLink::TapLink(const TapLinkOptions& opts)
    : config_(opts.link), mode_(opts.mode), batch_(new FrameBatch) {}

TapLink::~TapLink() = default;

absl::StatusOr<std::unique_ptr<TapLink>> TapLink::Create(Ring* ring, const TapLinkOptions& opts,
                                                         NetNs* ns, SocketFactory* host) {
  std::unique_ptr<TapLink> link(new TapLink(opts));
  if (opts.mode == TapLinkOptions::Mode::kTap) {
    if (!ns) return absl::InvalidArgumentError("--tap needs a target namespace (--netns)");
    absl::StatusOr<Fd> tap = absl::InternalError("not run");
    ns->RunSync([&] { tap = CreateConfiguredTap(opts.ifname, opts.link); });
    if (!tap.ok())
      return absl::Status(tap.status().code(),
                          absl::StrCat("tap in ", ns->Name(), ": ", tap.status().message()));
    link->source_ =
        std::make_unique<TapDevice>(ring, std::move(*tap), link.get(), opts.link.mtu, kKinds);
  } else if (opts.mode == TapLinkOptions::Mode::kQemu) {
    RINGFWD_ASSIGN_OR_RETURN(Fd l, QemuStream::Listen(opts.qemu_path));
    link->source_ = std::make_unique<QemuStream>(ring, std::move(l), opts.qemu_path, link.get(),
                                                 opts.link.mtu, kKinds);
  } else {
    return absl::InvalidArgumentError("tap link without a mode");
  }
  if (opts.fault.enabled()) {
    link->fault_sink_ =
        std::make_unique<FaultSink>(link->source_.get(), opts.fault, link->source_->MaxFrame());
    link->fault_in_ = std::make_unique<FaultFilter>(opts.fault);
  }
  link->services_ = std::make_unique<LinkServices>(link->config_, link->state_);
  link->udp_ = std::make_unique<TapUdp>(ring, link->config_, link->state_, host, link->sink(),
                                        link->source_->MaxFrame(), opts.udp);
  link->icmp_ = std::make_unique<TapIcmp>(ring, link->config_, link->state_);
  link->tcp_ = std::make_unique<TapTcp>(ring, link->config_, link->state_, host, link->sink(),
                                        link->source_->MaxFrame(), *link->udp_, opts.tcp);
  link->source_->Start();
  return link;
}

void TapLink::Dispatch(const io_uring_cqe& cqe, UserData ud, int64_t now_ns) {
  now_ns_ = now_ns;
  switch (ud.kind) {
    case kind::kTapRead:
    case kind::kTapWrite:
    case kind::kTapAccept:
      source_->HandleCompletion(cqe, ud);
      return;
    case kind::kTapUdp:
    case kind::kTapUdpSend:
      udp_->HandleCompletion(cqe, ud, now_ns);
      return;
    case kind::kTapTcp:
    case kind::kTapTcpOut:
    case kind::kTapTcpConnect:
      tcp_->HandleCompletion(cqe, ud, now_ns);
      return;
    case kind::kTapPing:
      icmp_->HandleCompletion(cqe, ud, now_ns, *sink());
      return;
    default:
      return;
  }
}

void TapLink::Process(int64_t now_ns) {
  now_ns_ = now_ns;
  source_->DeliverReceived();
  if (udp_->HasReady()) udp_->RunReady(now_ns);
  if (udp_->HasBlocked()) udp_->RunBlocked(now_ns);
  if (tcp_->HasBlocked()) tcp_->RunBlocked(now_ns);
}

void TapLink::Tick(int64_t now_ns) {
  now_ns_ = now_ns;
  services_->Tick(now_ns, *sink());
  tcp_->Tick(now_ns);
  if (now_ns >= next_expire_ns_) {
    next_expire_ns_ = now_ns + 1'000'000'000;
    udp_->Expire(now_ns);
    icmp_->Expire(now_ns);
    // Reads that failed are retried once a second, never in a tight loop.
    if (mode_ == TapLinkOptions::Mode::kTap) static_cast<TapDevice*>(source_.get())->Tick();
  }
}

void TapLink::Shutdown() {
  udp_->CloseAll();
  icmp_->CloseAll();
  tcp_->CloseAll();
}

void TapLink::OnFrames(std::span<const std::span<const uint8_t>> frames,
                       std::span<const uint8_t> flags) {
  batch_->Clear();
  auto flag = [&](size_t i) -> uint8_t { return flags.empty() ? 0 : flags[i]; };
  for (size_t i = 0; i < frames.size(); i++) {
    if (fault_in_) {
      FaultFilter::Verdict v = fault_in_->Next();
      if (v == FaultFilter::Verdict::kDrop) {
        stats_.fault_dropped++;
        continue;
      }
      if (v == FaultFilter::Verdict::kReorder && i + 1 < frames.size()) {
        stats_.fault_reordered++;
        OnFrame(frames[i + 1], flag(i + 1));
        OnFrame(frames[i], flag(i));
        i++;
        continue;
      }
    }
    OnFrame(frames[i], flag(i));
  }
  RunBatch(now_ns_);
  batch_->Clear();
}

void TapLink::OnFrame(std::span<const uint8_t> f, uint8_t flags) {
  {
    stats_.frames++;
    FrameView v = ParseFrame(f);
    v.checksum_trusted = flags & kFrameChecksumTrusted;
    if (!v.ok()) {
      stats_.bad[static_cast<size_t>(v.drop)]++;
      stats_.dropped++;
      LOG_RATELIMITED(log::Level::kDebug, "tap: dropped a frame of %d bytes: %s", f.size(),
                      DropReasonName(v.drop));
      return;
    }
    if (!IsMulticastMac(v.eth_dst) && v.eth_dst != config_.our_mac) {
      stats_.not_for_us++;
      stats_.dropped++;
      return;
    }
    if (services_->Handle(v, f, *sink())) {
      stats_.services++;
      return;
    }
    if (v.l3 != L3Kind::kIpv4 && v.l3 != L3Kind::kIpv6) {
      stats_.other_dropped++;
      stats_.dropped++;
      return;
    }
    switch (v.l4_proto) {
      case IPPROTO_UDP:
        stats_.udp++;
        break;
      case IPPROTO_ICMP:
      case IPPROTO_ICMPV6:
        // Echo requests go out through ping sockets (dropped and counted
        // there if not permitted); other ICMP from the guest is dropped.
        if (icmp_->HandleGuestEcho(v, f, now_ns_)) {
          stats_.icmp_echo++;
        } else {
          stats_.icmp_dropped++;
          stats_.dropped++;
        }
        return;
      case IPPROTO_TCP:
        stats_.tcp++;
        break;
      default:
        stats_.other_dropped++;
        stats_.dropped++;
        return;
    }
    if (!batch_->Add(v, f)) {
      RunBatch(now_ns_);
      batch_->Clear();
      batch_->Add(v, f);
    }
  }
}

void TapLink::RunBatch(int64_t now_ns) {
  if (!batch_->size()) return;
  batch_->Group();
  for (size_t g = 0; g < batch_->group_count(); g++) {
    std::span<const uint16_t> group = batch_->group(g);
    const FrameView& v = batch_->view(group[0]);
    if (v.l4_proto == IPPROTO_UDP)
      udp_->HandleGroup(*batch_, group, now_ns);
    else if (v.l4_proto == IPPROTO_TCP)
      tcp_->HandleGroup(*batch_, group, now_ns);
  }
}

bool TapLink::IsGuestAddress(const Addr6& a) const {
  if (a.IsV4()) return config_.has_v4 && a == Addr6::FromV4(ntohl(config_.addr4.s_addr));
  return config_.has_v6 && a == Addr6::FromIn6(config_.addr6);
}

std::string TapLink::Summary() const {
  const FrameSourceStats& s = source_->stats();
  const TapUdpStats& u = udp_->stats();
  std::string bad;
  for (size_t i = 1; i < stats_.bad.size(); i++)
    if (stats_.bad[i])
      absl::StrAppend(&bad, " ", DropReasonName(static_cast<DropReason>(i)), "=", stats_.bad[i]);
  return absl::StrCat(
      "tap: ", s.frames_in, " frames in (", s.offloaded_in, " offloaded), ", s.frames_out,
      " out; dropped ", stats_.dropped, " (bad:", bad.empty() ? " none" : bad, "; not for us ",
      stats_.not_for_us, ", icmp ", stats_.icmp_dropped, ", other ", stats_.other_dropped,
      "); services ", stats_.services, "; udp flows ", u.flows_created, ", datagrams out ",
      u.datagrams_out, " in ", u.datagrams_in, ", icmp errors ", u.icmp_errors, ", udp dropped ",
      u.dropped, "; icmp echo ", icmp_->stats().requests, " requests ", icmp_->stats().replies,
      " replies ", icmp_->stats().not_permitted, " not permitted; tcp flows ",
      tcp_->stats().flows_created, " (", tcp_->active(), " open, ", tcp_->stats().connect_failed,
      " refused, ", tcp_->stats().syn_dropped, " SYNs dropped), segments in ",
      tcp_->stats().segments_in, " out ", tcp_->stats().segments_out, " (",
      tcp_->stats().segmented_out, " offloaded), retransmits ", tcp_->stats().retransmits, "+",
      tcp_->stats().fast_retransmits, " fast, short writes ", tcp_->stats().short_writes,
      ", out of order ", tcp_->stats().out_of_order, ", bad checksums ", tcp_->stats().bad_checksum,
      "; send queue full ", s.out_dropped,
      fault_in_ ? absl::StrCat("; faults: dropped ", stats_.fault_dropped, "+",
                               fault_sink_->filter().dropped, " reordered ", stats_.fault_reordered,
                               "+", fault_sink_->filter().reordered)
                : std::string());
}

}  // namespace ringfwd
