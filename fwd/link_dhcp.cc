// DHCPv4 (RFC 2131, 2132): one fixed lease, the guest's configured address.
// DISCOVER gets an OFFER, a REQUEST for that address an ACK, a REQUEST for
// any other a NAK, INFORM an ACK without lease; RELEASE and DECLINE change
// nothing. The answers come from the gateway's address, port 67 to 68, and
// carry mask, router, resolvers, MTU, lease time, server identifier and the
// search list (option 119, RFC 3397; split as RFC 3396 says when long).
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "fwd/link_handlers.h"

namespace ringfwd::link {
namespace {

constexpr size_t kBootpFixedLen = 236;
constexpr size_t kOptionsOff = kBootpFixedLen + 4;  // after the magic cookie
constexpr uint32_t kMagicCookie = 0x63825363;
constexpr size_t kMinBootpLen = 300;   // the BOOTP minimum, as clients expect
constexpr size_t kMaxSearchLen = 800;  // longer search lists are not sent
constexpr size_t kMaxDns = 8;
constexpr uint16_t kFlagBroadcast = 0x8000;

enum MsgType : uint8_t {
  kDiscover = 1,
  kOffer = 2,
  kRequest = 3,
  kDecline = 4,
  kAck = 5,
  kNak = 6,
  kRelease = 7,
  kInform = 8,
};

struct Request {
  uint8_t type = 0;
  bool has_requested = false;
  uint8_t requested[4] = {};
  bool has_server_id = false;
  uint8_t server_id[4] = {};
};

// Walks the options; false if they run past the message or lack a type.
bool ParseOptions(std::span<const uint8_t> msg, Request& r) {
  size_t i = kOptionsOff;
  while (i < msg.size()) {
    uint8_t code = msg[i];
    if (code == 0) {
      i++;
      continue;
    }
    if (code == 255) break;
    if (i + 2 > msg.size()) return false;
    size_t len = msg[i + 1];
    const uint8_t* val = msg.data() + i + 2;
    if (i + 2 + len > msg.size()) return false;
    if (code == 53 && len == 1) r.type = val[0];
    if (code == 50 && len == 4) {
      r.has_requested = true;
      std::memcpy(r.requested, val, 4);
    }
    if (code == 54 && len == 4) {
      r.has_server_id = true;
      std::memcpy(r.server_id, val, 4);
    }
    i += 2 + len;
  }
  return r.type != 0;
}

// Appends option `code` with `len` bytes of `val` at o; returns the end.
uint8_t* PutOption(uint8_t* o, uint8_t code, const void* val, size_t len) {
  o[0] = code;
  o[1] = static_cast<uint8_t>(len);
  std::memcpy(o + 2, val, len);
  return o + 2 + len;
}

uint8_t* PutOption32(uint8_t* o, uint8_t code, uint32_t host_order) {
  uint8_t b[4];
  Store32(b, host_order);
  return PutOption(o, code, b, 4);
}

}  // namespace

void HandleDhcp(Ctx& c, const FrameView& v, std::span<const uint8_t> frame) {
  const LinkConfig& cfg = c.cfg;
  std::span<const uint8_t> msg = frame.subspan(v.payload_off, v.payload_len);
  if (!cfg.has_v4) {
    c.counters.dhcp_ignored++;
    return;
  }
  Request r;
  if (msg.size() < kOptionsOff || msg[0] != 1 || msg[1] != 1 || msg[2] != 6 ||
      Load32(msg.data() + kBootpFixedLen) != kMagicCookie || !VerifyL4Checksum(v, frame) ||
      !ParseOptions(msg, r)) {
    c.counters.bad++;
    return;
  }
  const uint8_t* ours = reinterpret_cast<const uint8_t*>(&cfg.gw4);
  const uint8_t* lease = reinterpret_cast<const uint8_t*>(&cfg.addr4);
  uint8_t reply_type;
  switch (r.type) {
    case kDiscover:
      reply_type = kOffer;
      break;
    case kRequest: {
      if (r.has_server_id && std::memcmp(r.server_id, ours, 4) != 0) {
        c.counters.dhcp_ignored++;  // the client chose another server
        return;
      }
      const uint8_t* want = r.has_requested ? r.requested : msg.data() + 12;  // else ciaddr
      reply_type = std::memcmp(want, lease, 4) == 0 ? kAck : kNak;
      break;
    }
    case kInform:
      reply_type = kAck;
      break;
    default:
      c.counters.dhcp_ignored++;
      return;
  }

  bool nak = reply_type == kNak;
  size_t search_len = EncodeDomainNames(cfg.search, {});
  if (search_len > kMaxSearchLen) search_len = 0;
  size_t n_dns = std::min(cfg.dns4.size(), kMaxDns);
  bool mtu = cfg.mtu >= 68;
  // The exact size, so the reservation fits links with a small MTU.
  size_t opts_len = 3 + 6 + 1;  // type, server id, end
  if (!nak) {
    opts_len += (r.type != kInform ? 6 : 0) + 6 + 6 + (n_dns ? 2 + 4 * n_dns : 0) + (mtu ? 4 : 0) +
                search_len + 2 * ((search_len + 254) / 255);
  }
  size_t len = std::max(kOptionsOff + opts_len, kMinBootpLen);
  std::span<uint8_t> buf = Reserve(c, kUdp4FrameHeadersLen + len);
  if (buf.empty()) return;
  uint8_t* m = buf.data() + kUdp4FrameHeadersLen;
  std::memset(m, 0, len);
  m[0] = 2;  // BOOTREPLY
  m[1] = 1;
  m[2] = 6;
  std::memcpy(m + 4, msg.data() + 4, 4);                         // xid
  std::memcpy(m + 10, msg.data() + 10, 2);                       // flags
  std::memcpy(m + 12, msg.data() + 12, 4);                       // ciaddr
  if (!nak && r.type != kInform) std::memcpy(m + 16, lease, 4);  // yiaddr
  std::memcpy(m + 24, msg.data() + 24, 4 + 16);                  // giaddr, chaddr
  Store32(m + kBootpFixedLen, kMagicCookie);
  uint8_t* o = m + kOptionsOff;
  o = PutOption(o, 53, &reply_type, 1);
  o = PutOption(o, 54, ours, 4);
  if (!nak) {
    if (r.type != kInform) o = PutOption32(o, 51, cfg.lease_time_s);
    uint32_t mask = cfg.prefix4 == 0 ? 0 : ~uint32_t{0} << (32 - std::min<int>(cfg.prefix4, 32));
    o = PutOption32(o, 1, mask);
    o = PutOption(o, 3, ours, 4);
    if (n_dns) {
      o[0] = 6;
      o[1] = static_cast<uint8_t>(4 * n_dns);
      for (size_t i = 0; i < n_dns; i++) std::memcpy(o + 2 + 4 * i, &cfg.dns4[i], 4);
      o += 2 + 4 * n_dns;
    }
    if (mtu) {
      uint8_t v[2];
      Store16(v, static_cast<uint16_t>(std::min<uint32_t>(cfg.mtu, 65535)));
      o = PutOption(o, 26, v, 2);
    }
    if (search_len) {
      // Encoded once, then cut into options of at most 255 bytes that the
      // client concatenates (RFC 3396).
      uint8_t names[kMaxSearchLen];
      EncodeDomainNames(cfg.search, std::span<uint8_t>(names, search_len));
      for (size_t done = 0; done < search_len;) {
        size_t n = std::min<size_t>(255, search_len - done);
        o = PutOption(o, 119, names + done, n);
        done += n;
      }
    }
  }
  *o++ = 255;

  // NAKs and replies the client asked to be broadcast go to everyone; a
  // renewing client (ciaddr set) gets it at its address; else unicast to the
  // offered address and the client's hardware address.
  FrameAddrs a{cfg.our_mac, kBroadcastMac, Addr6::FromV4(ntohl(cfg.gw4.s_addr)),
               Addr6::FromV4(0xffffffff)};
  uint32_t ciaddr = Load32(msg.data() + 12);
  bool broadcast = nak || (Load16(msg.data() + 10) & kFlagBroadcast);
  if (!broadcast) {
    std::memcpy(a.dst_mac.data(), msg.data() + 28, 6);
    a.dst = ciaddr ? Addr6::FromV4(ciaddr) : Addr6::FromV4(ntohl(cfg.addr4.s_addr));
  }
  size_t flen = FinishUdpFrame(buf, a, 67, 68, len);
  c.out.Commit(flen);
  if (reply_type == kOffer) c.counters.dhcp_offers++;
  if (reply_type == kAck) c.counters.dhcp_acks++;
  if (reply_type == kNak) c.counters.dhcp_naks++;
}

}  // namespace ringfwd::link
