#include "tests/e2e/tap_util.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

namespace ringfwd::e2e {

void TapTest::SetUp() {
  E2eTest::SetUp();
  if (IsSkipped()) return;
  if (access("/dev/net/tun", R_OK | W_OK) != 0) GTEST_SKIP() << "no /dev/net/tun";
  std::string error;
  outside_ = TempNetns::Create(&error);
  ASSERT_TRUE(outside_) << error;
  ASSERT_TRUE(AddVeth(*host_, "out0", {"192.0.2.1/24", "2001:db8::1/64"}, *outside_, "out0",
                      {"192.0.2.2/24", "2001:db8::2/64"}, &error))
      << error;
  ASSERT_TRUE(host_->Ip({"route", "add", "default", "via", "192.0.2.2"}, &error)) << error;
  ASSERT_TRUE(host_->Ip({"-6", "route", "add", "default", "via", "2001:db8::2"}, &error)) << error;
  RunInNs(*host_, [] {
    std::ofstream f("/proc/sys/net/ipv4/ping_group_range");
    f << "0 2147483647\n";
  });
}

void TapTest::TearDown() {
  outside_.reset();
  E2eTest::TearDown();
}

std::unique_ptr<Daemon> TapTest::StartTap(const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"--tap",
                                   "--address",
                                   std::string(kGuest4) + "/24",
                                   "--gateway",
                                   kGateway4,
                                   "--address",
                                   std::string(kGuest6) + "/64",
                                   "--gateway",
                                   kGateway6,
                                   "--dns",
                                   kDns4,
                                   "--dns-forward",
                                   "127.0.0.1"};
  args.insert(args.end(), extra.begin(), extra.end());
  return StartForwarder(args);
}

bool UdpExchange(int fd, const Addr& to, const std::string& msg, const std::string& expect,
                 Addr* from, int tries, int wait_ms) {
  std::vector<char> buf(1 << 16);
  for (int t = 0; t < tries; t++) {
    if (sendto(fd, msg.data(), msg.size(), 0, to.sa(), to.len) < 0) return false;
    Deadline d = In(wait_ms * Slowdown());
    while (WaitReadable(fd, d)) {
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      ssize_t n = recvfrom(fd, buf.data(), buf.size(), MSG_DONTWAIT,
                           reinterpret_cast<sockaddr*>(&ss), &len);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        return false;
      }
      if (std::string(buf.data(), n) != expect) continue;  // a late reply to an earlier try
      if (from) *from = Addr::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
      return true;
    }
  }
  return false;
}

std::vector<std::pair<std::string, long>> ChecksumErrorCounters(const TempNetns& ns) {
  CmdResult r = RunCmd({"ip", "netns", "exec", ns.name(), "nstat", "-asz"});
  std::vector<std::pair<std::string, long>> out;
  if (r.exit_code != 0) {
    out.emplace_back("nstat", -1);
    return out;
  }
  std::istringstream in(r.output);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string name;
    long v = 0;
    if (!(ls >> name >> v)) continue;
    if (name.find("CsumErrors") != std::string::npos) out.emplace_back(name, v);
  }
  return out;
}

uint16_t InetChecksum(const uint8_t* p, size_t n, uint32_t sum) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += (p[i] << 8) | p[i + 1];
  if (n & 1) sum += p[n - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

namespace {

void Put16(Bytes& b, size_t off, uint16_t v) {
  b[off] = v >> 8;
  b[off + 1] = v & 0xff;
}
void Put32(Bytes& b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; i++) b[off + i] = v >> (24 - 8 * i);
}
uint16_t Get16(const Bytes& b, size_t off) { return (b[off] << 8) | b[off + 1]; }
uint32_t Get32(const Bytes& b, size_t off) {
  return (uint32_t{b[off]} << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3];
}

uint32_t PseudoSum4(uint32_t src, uint32_t dst, uint8_t proto, uint16_t len) {
  return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + len;
}

}  // namespace

uint32_t Ip4(const char* text) {
  in_addr a{};
  inet_pton(AF_INET, text, &a);
  return ntohl(a.s_addr);
}

Bytes UdpFrame4(const Mac& src_mac, const Mac& dst_mac, uint32_t src, uint32_t dst, uint16_t sport,
                uint16_t dport, const Bytes& payload) {
  size_t udp_len = 8 + payload.size();
  Bytes f(14 + 20 + udp_len, 0);
  std::memcpy(f.data(), dst_mac.data(), 6);
  std::memcpy(f.data() + 6, src_mac.data(), 6);
  Put16(f, 12, 0x0800);
  f[14] = 0x45;
  Put16(f, 16, 20 + udp_len);
  f[22] = 64;
  f[23] = 17;
  Put32(f, 26, src);
  Put32(f, 30, dst);
  Put16(f, 24, InetChecksum(f.data() + 14, 20));
  Put16(f, 34, sport);
  Put16(f, 36, dport);
  Put16(f, 38, udp_len);
  std::memcpy(f.data() + 42, payload.data(), payload.size());
  uint16_t c = InetChecksum(f.data() + 34, udp_len, PseudoSum4(src, dst, 17, udp_len));
  Put16(f, 40, c ? c : 0xffff);
  return f;
}

Bytes ArpRequest(const Mac& mac, uint32_t ip, uint32_t target) {
  Bytes f(14 + 28, 0);
  std::memset(f.data(), 0xff, 6);
  std::memcpy(f.data() + 6, mac.data(), 6);
  Put16(f, 12, 0x0806);
  Put16(f, 14, 1);
  Put16(f, 16, 0x0800);
  f[18] = 6;
  f[19] = 4;
  Put16(f, 20, 1);
  std::memcpy(f.data() + 22, mac.data(), 6);
  Put32(f, 28, ip);
  Put32(f, 38, target);
  return f;
}

Bytes DhcpFrame(const Mac& mac, uint8_t type, uint32_t xid, uint32_t requested, uint32_t server) {
  Bytes p(240, 0);
  p[0] = 1;  // BOOTREQUEST
  p[1] = 1;
  p[2] = 6;
  Put32(p, 4, xid);
  Put16(p, 10, 0x8000);  // broadcast
  std::memcpy(p.data() + 28, mac.data(), 6);
  Put32(p, 236, 0x63825363);
  p.insert(p.end(), {53, 1, type});
  if (requested) {
    p.insert(p.end(), {50, 4, 0, 0, 0, 0});
    Put32(p, p.size() - 4, requested);
  }
  if (server) {
    p.insert(p.end(), {54, 4, 0, 0, 0, 0});
    Put32(p, p.size() - 4, server);
  }
  p.insert(p.end(), {55, 4, 1, 3, 6, 26});  // mask, router, DNS, MTU
  p.push_back(255);
  Mac bcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  return UdpFrame4(mac, bcast, 0, 0xffffffff, 68, 67, p);
}

Parsed4 ParseFrame4(const Bytes& f) {
  Parsed4 r;
  if (f.size() < 14) return r;
  std::memcpy(r.dst_mac.data(), f.data(), 6);
  std::memcpy(r.src_mac.data(), f.data() + 6, 6);
  r.ethertype = Get16(f, 12);
  if (r.ethertype == 0x0806) {
    if (f.size() < 42) return r;
    r.arp.assign(f.begin() + 14, f.begin() + 42);
    r.ok = true;
    return r;
  }
  if (r.ethertype != 0x0800 || f.size() < 34 || (f[14] >> 4) != 4) return r;
  size_t ihl = (f[14] & 0xf) * 4;
  size_t tot = Get16(f, 16);
  if (ihl < 20 || tot < ihl || 14 + tot > f.size()) return r;
  if (InetChecksum(f.data() + 14, ihl) != 0) return r;
  r.proto = f[23];
  r.src = Get32(f, 26);
  r.dst = Get32(f, 30);
  if (r.proto == 17) {
    size_t u = 14 + ihl;
    if (tot < ihl + 8) return r;
    uint16_t ulen = Get16(f, u + 4);
    if (ulen != tot - ihl) return r;
    if (Get16(f, u + 6) != 0 &&
        InetChecksum(f.data() + u, ulen, PseudoSum4(r.src, r.dst, 17, ulen)) != 0)
      return r;
    r.sport = Get16(f, u);
    r.dport = Get16(f, u + 2);
    r.payload.assign(f.begin() + u + 8, f.begin() + u + ulen);
  }
  r.ok = true;
  return r;
}

DhcpReply ParseDhcp(const Bytes& p) {
  DhcpReply d;
  if (p.size() < 240 || Get32(p, 236) != 0x63825363) return d;
  d.xid = Get32(p, 4);
  d.yiaddr = Get32(p, 16);
  for (size_t i = 240; i < p.size();) {
    uint8_t opt = p[i];
    if (opt == 255) break;
    if (opt == 0) {
      i++;
      continue;
    }
    if (i + 2 > p.size()) return d;
    uint8_t len = p[i + 1];
    if (i + 2 + len > p.size()) return d;
    size_t v = i + 2;
    if (opt == 53 && len == 1) d.type = p[v];
    if (opt == 1 && len == 4) d.mask = Get32(p, v);
    if (opt == 3 && len >= 4) d.router = Get32(p, v);
    if (opt == 54 && len == 4) d.server = Get32(p, v);
    if (opt == 51 && len == 4) d.lease = Get32(p, v);
    if (opt == 26 && len == 2) d.mtu = Get16(p, v);
    if (opt == 6)
      for (size_t k = 0; k + 4 <= len; k += 4) d.dns.push_back(Get32(p, v + k));
    i += 2 + len;
  }
  d.ok = true;
  return d;
}

std::unique_ptr<QemuPeer> QemuPeer::Connect(const std::string& path, int timeout_ms) {
  Deadline d = In(timeout_ms * Slowdown());
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, path.c_str(), sizeof(sun.sun_path) - 1);
  do {
    Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) == 0) {
      auto p = std::unique_ptr<QemuPeer>(new QemuPeer());
      p->fd_ = std::move(fd);
      return p;
    }
    poll(nullptr, 0, 20);
  } while (MsLeft(d) > 0);
  return nullptr;
}

bool QemuPeer::SendRaw(const std::string& bytes) {
  return SendAll(fd_.get(), bytes, In(3000 * Slowdown())) == 0;
}

bool QemuPeer::Send(const Bytes& frame) {
  std::string s(4, '\0');
  uint32_t n = frame.size();
  s[0] = n >> 24;
  s[1] = n >> 16;
  s[2] = n >> 8;
  s[3] = n;
  s.append(reinterpret_cast<const char*>(frame.data()), frame.size());
  return SendRaw(s);
}

std::optional<Bytes> QemuPeer::Recv(int timeout_ms) {
  Deadline d = In(timeout_ms * Slowdown());
  for (;;) {
    if (buf_.size() >= 4) {
      uint32_t n = (uint32_t{uint8_t(buf_[0])} << 24) | (uint8_t(buf_[1]) << 16) |
                   (uint8_t(buf_[2]) << 8) | uint8_t(buf_[3]);
      if (buf_.size() >= 4 + n) {
        Bytes f(buf_.begin() + 4, buf_.begin() + 4 + n);
        buf_.erase(0, 4 + n);
        return f;
      }
    }
    if (eof_ || !WaitReadable(fd_.get(), d)) return std::nullopt;
    char tmp[65536];
    ssize_t n = recv(fd_.get(), tmp, sizeof(tmp), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      eof_ = true;
      return std::nullopt;
    }
    if (n > 0) buf_.append(tmp, n);
  }
}

std::optional<Bytes> QemuPeer::RecvMatching(const std::function<bool(const Bytes&)>& match,
                                            int timeout_ms) {
  Deadline d = In(timeout_ms * Slowdown());
  for (int i = 0; i < 1000 && MsLeft(d) > 0; i++) {
    std::optional<Bytes> f = Recv(MsLeft(d));
    if (!f) return std::nullopt;
    if (match(*f)) return f;
  }
  return std::nullopt;
}

}  // namespace ringfwd::e2e
