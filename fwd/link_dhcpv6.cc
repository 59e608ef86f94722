// DHCPv6 (RFC 8415): the guest's configured address as its one IA_NA
// address, with the resolvers (option 23) and the search list (24; RFC 3646).
// SOLICIT gets an ADVERTISE, or a REPLY with rapid commit when the client
// asked for it; REQUEST, RENEW, REBIND, CONFIRM and INFORMATION-REQUEST a
// REPLY. Our identity is a DUID-LL of our MAC. Answers go from our link-local
// address, port 547, to the client's address, port 546.
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "fwd/link_handlers.h"

namespace ringfwd::link {
namespace {

enum MsgType : uint8_t {
  kSolicit = 1,
  kAdvertise = 2,
  kRequest = 3,
  kConfirm = 4,
  kRenew = 5,
  kRebind = 6,
  kReply = 7,
  kRelease = 8,
  kDecline = 9,
  kInformationRequest = 11,
};

enum OptionCode : uint16_t {
  kOptClientId = 1,
  kOptServerId = 2,
  kOptIaNa = 3,
  kOptIaAddr = 5,
  kOptStatusCode = 13,
  kOptRapidCommit = 14,
  kOptDnsServers = 23,
  kOptDomainList = 24,
};

constexpr size_t kMaxDuidOptLen = 130;  // a DUID is at most 128 bytes + type
constexpr size_t kMaxDomainsLen = 1000;
constexpr size_t kMaxDns = 8;
constexpr size_t kServerIdLen = 10;  // DUID-LL: type 3, hardware type 1, MAC

struct Message {
  uint8_t type = 0;
  std::span<const uint8_t> client_id;  // the option's value
  std::span<const uint8_t> server_id;
  bool has_server_id = false;
  bool has_ia_na = false;
  std::span<const uint8_t> ia_na;  // the first IA_NA's value (IAID, T1, T2, options)
  bool rapid_commit = false;
};

bool ParseMessage(std::span<const uint8_t> msg, Message& m) {
  if (msg.size() < 4) return false;
  m.type = msg[0];
  size_t i = 4;
  while (i < msg.size()) {
    if (msg.size() - i < 4) return false;
    uint16_t code = Load16(msg.data() + i);
    size_t len = Load16(msg.data() + i + 2);
    if (msg.size() - i - 4 < len) return false;
    std::span<const uint8_t> val = msg.subspan(i + 4, len);
    switch (code) {
      case kOptClientId:
        if (len == 0 || len > kMaxDuidOptLen) return false;
        m.client_id = val;
        break;
      case kOptServerId:
        m.server_id = val;
        m.has_server_id = true;
        break;
      case kOptIaNa:
        if (len < 12) return false;
        if (!m.has_ia_na) m.ia_na = val;
        m.has_ia_na = true;
        break;
      case kOptRapidCommit:
        m.rapid_commit = true;
        break;
      default:
        break;
    }
    i += 4 + len;
  }
  return true;
}

// True if every IAADDR in the IA_NA value `ia` is `addr` (CONFIRM).
bool IaAddressesAre(std::span<const uint8_t> ia, const Addr6& addr) {
  for (size_t i = 12; ia.size() - i >= 4;) {
    uint16_t code = Load16(ia.data() + i);
    size_t len = Load16(ia.data() + i + 2);
    if (ia.size() - i - 4 < len) return false;
    if (code == kOptIaAddr && (len < 16 || std::memcmp(ia.data() + i + 4, addr.b.data(), 16)))
      return false;
    i += 4 + len;
  }
  return true;
}

uint8_t* PutOptionHeader(uint8_t* o, uint16_t code, size_t len) {
  Store16(o, code);
  Store16(o + 2, static_cast<uint16_t>(len));
  return o + 4;
}

}  // namespace

void HandleDhcpv6(Ctx& c, const FrameView& v, std::span<const uint8_t> frame) {
  const LinkConfig& cfg = c.cfg;
  if (!cfg.has_v6) {
    c.counters.dhcpv6_ignored++;
    return;
  }
  std::span<const uint8_t> msg = frame.subspan(v.payload_off, v.payload_len);
  Message q;
  if (!VerifyL4Checksum(v, frame) || !ParseMessage(msg, q)) {
    c.counters.bad++;
    return;
  }
  uint8_t server_id[kServerIdLen] = {0, 3, 0, 1};
  std::memcpy(server_id + 4, cfg.our_mac.data(), 6);
  bool for_us = q.has_server_id && q.server_id.size() == kServerIdLen &&
                std::memcmp(q.server_id.data(), server_id, kServerIdLen) == 0;

  uint8_t reply_type = kReply;
  bool give_address = false;
  bool confirm = false;
  switch (q.type) {
    case kSolicit:
      if (q.client_id.empty() || q.has_server_id) goto ignore;
      reply_type = q.rapid_commit ? kReply : kAdvertise;
      give_address = true;
      break;
    case kRequest:
    case kRenew:
      if (q.client_id.empty() || !for_us) goto ignore;
      give_address = true;
      break;
    case kRebind:
      if (q.client_id.empty() || q.has_server_id) goto ignore;
      give_address = true;
      break;
    case kConfirm:
      if (q.client_id.empty() || q.has_server_id) goto ignore;
      confirm = true;
      break;
    case kInformationRequest:
      if (q.has_server_id && !for_us) goto ignore;
      break;
    default:
      goto ignore;
  }

  {
    size_t domains_len = EncodeDomainNames(cfg.search, {});
    if (domains_len > kMaxDomainsLen) domains_len = 0;
    size_t n_dns = std::min(cfg.dns6.size(), kMaxDns);
    bool ia = give_address && q.has_ia_na;
    bool rapid = q.type == kSolicit && q.rapid_commit;
    // The exact size, so the reservation fits links with a small MTU.
    size_t len = 4 + 4 + kServerIdLen + (q.client_id.empty() ? 0 : 4 + q.client_id.size()) +
                 (ia ? 4 + 12 + 4 + 24 : 0) + (rapid ? 4 : 0) + (confirm ? 4 + 2 : 0) +
                 (n_dns ? 4 + 16 * n_dns : 0) + (domains_len ? 4 + domains_len : 0);
    std::span<uint8_t> buf = Reserve(c, kUdp6FrameHeadersLen + len);
    if (buf.empty()) return;
    uint8_t* m = buf.data() + kUdp6FrameHeadersLen;
    uint8_t* o = m;
    o[0] = reply_type;
    std::memcpy(o + 1, msg.data() + 1, 3);  // transaction id
    o += 4;
    o = PutOptionHeader(o, kOptServerId, kServerIdLen);
    std::memcpy(o, server_id, kServerIdLen);
    o += kServerIdLen;
    if (!q.client_id.empty()) {
      o = PutOptionHeader(o, kOptClientId, q.client_id.size());
      std::memcpy(o, q.client_id.data(), q.client_id.size());
      o += q.client_id.size();
    }
    Addr6 addr = Addr6::FromIn6(cfg.addr6);
    if (ia) {
      o = PutOptionHeader(o, kOptIaNa, 12 + 4 + 24);
      std::memcpy(o, q.ia_na.data(), 4);  // IAID
      Store32(o + 4, cfg.lease_time_s / 2);
      Store32(o + 8, static_cast<uint32_t>(uint64_t{cfg.lease_time_s} * 4 / 5));
      o = PutOptionHeader(o + 12, kOptIaAddr, 24);
      std::memcpy(o, addr.b.data(), 16);
      Store32(o + 16, cfg.lease_time_s);  // preferred
      Store32(o + 20, cfg.lease_time_s);  // valid
      o += 24;
    }
    if (rapid) o = PutOptionHeader(o, kOptRapidCommit, 0);
    if (confirm) {
      bool on_link = !q.has_ia_na || IaAddressesAre(q.ia_na, addr);
      o = PutOptionHeader(o, kOptStatusCode, 2);
      Store16(o, on_link ? 0 : 4);  // Success or NotOnLink
      o += 2;
    }
    if (n_dns) {
      o = PutOptionHeader(o, kOptDnsServers, 16 * n_dns);
      for (size_t i = 0; i < n_dns; i++) std::memcpy(o + 16 * i, &cfg.dns6[i], 16);
      o += 16 * n_dns;
    }
    if (domains_len) {
      o = PutOptionHeader(o, kOptDomainList, domains_len);
      EncodeDomainNames(cfg.search, std::span<uint8_t>(o, domains_len));
      o += domains_len;
    }
    FrameAddrs a{cfg.our_mac, v.eth_src, Addr6::FromIn6(cfg.gw6), v.src, 255};
    size_t flen = FinishUdpFrame(buf, a, 547, 546, o - m);
    c.out.Commit(flen);
    if (reply_type == kAdvertise)
      c.counters.dhcpv6_advertise++;
    else
      c.counters.dhcpv6_replies++;
    return;
  }

ignore:
  c.counters.dhcpv6_ignored++;
}

}  // namespace ringfwd::link
