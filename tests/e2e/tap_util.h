// Helpers for the tap-mode end-to-end tests: the test's own namespaces (a
// host with a veth to an outside world, a guest behind ringfwd's tap), a
// UDP round trip that tolerates a lost datagram, and raw Ethernet frames
// built and checked independently of ringfwd's own packet code.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/e2e/e2e_util.h"

namespace ringfwd::e2e {

// The addresses of the tap tests (documentation ranges only).
inline constexpr const char* kGuest4 = "198.51.100.2";
inline constexpr const char* kGateway4 = "198.51.100.1";
inline constexpr const char* kDns4 = "198.51.100.53";
inline constexpr const char* kGuest6 = "2001:db8:1::2";
inline constexpr const char* kGateway6 = "2001:db8:1::1";
inline constexpr const char* kOutside4 = "192.0.2.2";
inline constexpr const char* kOutside6 = "2001:db8::2";
inline constexpr const char* kOurMac = "02:52:46:57:44:01";

// The tap test fixture: host_ (where ringfwd runs) has a veth "out0" to
// outside_ (192.0.2.1/24, 2001:db8::1/64 on our side; .2/::2 outside) with
// default routes through it and ping sockets allowed; target_ is the guest.
class TapTest : public E2eTest {
 protected:
  void SetUp() override;
  void TearDown() override;
  // ringfwd in host_ with --netns target_ --tap and the test's addresses.
  std::unique_ptr<Daemon> StartTap(const std::vector<std::string>& extra = {});
  std::unique_ptr<TempNetns> outside_;
};

// Sends `msg` from `fd` to `to` and waits for the reply that equals
// `expect`, resending up to `tries` times (UDP may lose a datagram); returns
// true and the reply's source in `*from` when it came.
bool UdpExchange(int fd, const Addr& to, const std::string& msg, const std::string& expect,
                 Addr* from, int tries = 3, int wait_ms = 1000);

// The value of every "*CsumErrors" counter of `ns` (nstat -asz), by name;
// an entry "nstat" with -1 if nstat could not run.
std::vector<std::pair<std::string, long>> ChecksumErrorCounters(const TempNetns& ns);

// --- Raw frames (independent of fwd/packet.h) ---

using Bytes = std::vector<uint8_t>;
using Mac = std::array<uint8_t, 6>;

// RFC 1071 over `data` with an initial partial sum.
uint16_t InetChecksum(const uint8_t* data, size_t len, uint32_t sum = 0);
// An Ethernet/IPv4/UDP frame with valid IP and UDP checksums.
Bytes UdpFrame4(const Mac& src_mac, const Mac& dst_mac, uint32_t src, uint32_t dst, uint16_t sport,
                uint16_t dport, const Bytes& payload);
// An ARP request from (mac, ip) for `target`.
Bytes ArpRequest(const Mac& mac, uint32_t ip, uint32_t target);
// A DHCP DISCOVER (type 1) or REQUEST (type 3, for `requested` from
// `server`) from `mac`, broadcast.
Bytes DhcpFrame(const Mac& mac, uint8_t type, uint32_t xid, uint32_t requested = 0,
                uint32_t server = 0);

// A parsed IPv4 frame of ours, checked: IP header checksum and UDP checksum
// verified (ok false otherwise).
struct Parsed4 {
  bool ok = false;
  Mac dst_mac{}, src_mac{};
  uint16_t ethertype = 0;
  uint8_t proto = 0;
  uint32_t src = 0, dst = 0;
  uint16_t sport = 0, dport = 0;
  Bytes payload;  // UDP payload
  Bytes arp;      // ARP packet (ethertype 0x0806)
};
Parsed4 ParseFrame4(const Bytes& frame);

// DHCP options of a DHCP payload (after the 240-byte header and cookie).
struct DhcpReply {
  bool ok = false;
  uint32_t xid = 0;
  uint32_t yiaddr = 0;
  uint8_t type = 0;
  uint32_t mask = 0, router = 0, server = 0, lease = 0;
  std::vector<uint32_t> dns;
  uint16_t mtu = 0;
};
DhcpReply ParseDhcp(const Bytes& payload);

uint32_t Ip4(const char* text);  // host byte order

// A peer of --qemu-socket: length-prefixed frames over a UNIX stream.
class QemuPeer {
 public:
  // Connects to `path`, waiting up to `timeout_ms` for it to appear.
  static std::unique_ptr<QemuPeer> Connect(const std::string& path, int timeout_ms = 3000);
  bool Send(const Bytes& frame);
  bool SendRaw(const std::string& bytes);
  // The next frame, or nullopt after `timeout_ms` or at EOF (eof() then).
  std::optional<Bytes> Recv(int timeout_ms = 2000);
  // Waits for a frame that `match` accepts, skipping others (e.g. RAs).
  std::optional<Bytes> RecvMatching(const std::function<bool(const Bytes&)>& match,
                                    int timeout_ms = 3000);
  bool eof() const { return eof_; }
  int fd() const { return fd_.get(); }

 private:
  Fd fd_;
  std::string buf_;
  bool eof_ = false;
};

}  // namespace ringfwd::e2e
