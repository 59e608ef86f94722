#include "uring/tap_device.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fwd/netns.h"
#include "gtest/gtest.h"

namespace ringfwd {
namespace {

// Brings interface `name` of the current namespace up.
void LinkUp(const std::string& name) {
  Fd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ioctl(s.get(), SIOCGIFFLAGS, &ifr);
  ifr.ifr_flags |= IFF_UP;
  ioctl(s.get(), SIOCSIFFLAGS, &ifr);
}

// A fresh network namespace, held by a descriptor.
Fd NewNetnsFd() {
  Fd out;
  std::thread t([&] {
    if (unshare(CLONE_NEWNET) == 0)
      out.Reset(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  });
  t.join();
  return out;
}

struct Collector : FrameReceiver {
  std::vector<std::string> frames;
  std::vector<uint8_t> flags;  // by frame (0 where the source gave none)
  size_t batches = 0;
  void OnFrames(std::span<const std::span<const uint8_t>> fs,
                std::span<const uint8_t> fl) override {
    batches++;
    for (size_t i = 0; i < fs.size(); i++) {
      frames.emplace_back(reinterpret_cast<const char*>(fs[i].data()), fs[i].size());
      flags.push_back(fl.empty() ? 0 : fl[i]);
    }
  }
};

uint16_t IpChecksum(const uint8_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += (p[i] << 8) | p[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// Frames from the kernel read, a UDP datagram written as a frame delivered;
// with `vnet` (IFF_VNET_HDR) also one whose checksum the kernel is to
// complete, and one with a bad checksum dropped (our header claims nothing).
void ReadsAndWritesFramesThroughTheRing(bool vnet) {
  Fd nsfd = NewNetnsFd();
  ASSERT_TRUE(nsfd) << "unshare(CLONE_NEWNET)";
  absl::StatusOr<std::unique_ptr<NetNs>> ns =
      NetNs::Open(absl::StrCat("/proc/self/fd/", nsfd.get()));
  ASSERT_TRUE(ns.ok()) << ns.status();

  absl::StatusOr<Fd> tap = absl::InternalError("not run");
  std::string name;
  Fd udp;
  uint8_t tap_mac[6] = {};
  (*ns)->RunSync([&] {
    tap = TapDevice::OpenTap("rftest0", &name, vnet);
    if (!tap.ok()) return;
    Fd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    sockaddr_in* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.1", &sin->sin_addr);
    ioctl(s.get(), SIOCSIFADDR, &ifr);
    inet_pton(AF_INET, "255.255.255.0", &sin->sin_addr);
    ioctl(s.get(), SIOCSIFNETMASK, &ifr);
    ioctl(s.get(), SIOCGIFFLAGS, &ifr);
    ifr.ifr_flags |= IFF_UP;
    ioctl(s.get(), SIOCSIFFLAGS, &ifr);
    ioctl(s.get(), SIOCGIFHWADDR, &ifr);
    std::memcpy(tap_mac, ifr.ifr_hwaddr.sa_data, 6);
    udp.Reset(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(9999);
    inet_pton(AF_INET, "192.0.2.1", &a.sin_addr);
    bind(udp.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a));
    // The kernel asks for 192.0.2.2's MAC on the tap: a frame for us.
    a.sin_port = htons(7);
    inet_pton(AF_INET, "192.0.2.2", &a.sin_addr);
    sendto(udp.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  });
  ASSERT_TRUE(tap.ok()) << tap.status();
  EXPECT_EQ(name, "rftest0");

  absl::StatusOr<std::unique_ptr<Ring>> ring = Ring::Create(64);
  ASSERT_TRUE(ring.ok());
  Collector rx;
  TapDevice dev(ring->get(), std::move(*tap), &rx, 1500, FrameSourceKinds{16, 17, 18},
                TapDeviceOptions{.buffers = 8, .write_slots = 8});
  EXPECT_EQ(dev.vnet_header(), vnet ? 10u : 0u);
  EXPECT_EQ(dev.PartialChecksums(), vnet);
  dev.Start();
  int eagain = 0;
  auto pump = [&](auto done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (int i = 0; i < 1000 && !done() && std::chrono::steady_clock::now() < deadline; i++) {
      (*ring)->RunOnce(50, [&](const io_uring_cqe& cqe) {
        if (cqe.res == -EAGAIN) eagain++;
        dev.HandleCompletion(cqe, UserData::Unpack(cqe.user_data));
      });
      dev.DeliverReceived();
      dev.Flush();
    }
  };
  auto has_arp = [&] {
    for (const std::string& f : rx.frames)
      if (f.size() >= 14 && uint8_t(f[12]) == 0x08 && uint8_t(f[13]) == 0x06) return true;
    return false;
  };
  pump(has_arp);
  EXPECT_TRUE(has_arp()) << rx.frames.size() << " frames read, none ARP";
  EXPECT_EQ(dev.stats().read_errors, 0u);

  // A UDP datagram from 192.0.2.2:1234 to the socket, written as a frame.
  std::span<uint8_t> buf = dev.Reserve(64);
  ASSERT_EQ(buf.size(), 64u);
  std::memset(buf.data(), 0, 64);
  std::memcpy(buf.data(), tap_mac, 6);
  const uint8_t src_mac[6] = {0x02, 0, 0, 0, 0, 2};
  std::memcpy(buf.data() + 6, src_mac, 6);
  buf[12] = 0x08;
  uint8_t* ip = buf.data() + 14;
  const char payload[] = "hello tap";
  size_t plen = sizeof(payload) - 1;
  size_t iplen = 20 + 8 + plen;
  ip[0] = 0x45;
  ip[2] = iplen >> 8;
  ip[3] = iplen & 0xff;
  ip[8] = 64;
  ip[9] = 17;
  inet_pton(AF_INET, "192.0.2.2", ip + 12);
  inet_pton(AF_INET, "192.0.2.1", ip + 16);
  uint16_t c = IpChecksum(ip, 20);
  ip[10] = c >> 8;
  ip[11] = c & 0xff;
  uint8_t* u = ip + 20;
  u[0] = 1234 >> 8;
  u[1] = 1234 & 0xff;
  u[2] = 9999 >> 8;
  u[3] = 9999 & 0xff;
  u[4] = (8 + plen) >> 8;
  u[5] = (8 + plen) & 0xff;
  std::memcpy(u + 8, payload, plen);
  dev.Commit(14 + iplen);
  char got[64] = {};
  ssize_t n = -1;
  pump([&] {
    n = recv(udp.get(), got, sizeof(got), MSG_DONTWAIT);
    return n >= 0;
  });
  EXPECT_EQ(std::string(got, n > 0 ? n : 0), "hello tap");
  EXPECT_EQ(dev.stats().frames_out, 1u);

  if (vnet) {
    // The same frame again, its UDP checksum left to the kernel (the field
    // holds the pseudo-header sum), then with a wrong full checksum.
    auto resend = [&](uint16_t csum, bool partial) {
      std::span<uint8_t> b = dev.Reserve(14 + iplen);
      ASSERT_EQ(b.size(), 14 + iplen);
      std::memmove(b.data(), buf.data(), 14 + iplen);  // same slot: no-op
      b[14 + 20 + 6] = static_cast<uint8_t>(csum >> 8);
      b[14 + 20 + 7] = static_cast<uint8_t>(csum);
      if (partial)
        dev.CommitPartial(14 + iplen, 14 + 20, 6);
      else
        dev.Commit(14 + iplen);
    };
    // Pseudo-header: addresses, protocol, UDP length; folded, not complemented.
    uint32_t ph = 0xc000 + 0x0202 + 0xc000 + 0x0201 + 17 + (8 + plen);
    while (ph >> 16) ph = (ph & 0xffff) + (ph >> 16);
    resend(static_cast<uint16_t>(ph), true);
    n = -1;
    std::memset(got, 0, sizeof(got));
    pump([&] {
      n = recv(udp.get(), got, sizeof(got), MSG_DONTWAIT);
      return n >= 0;
    });
    EXPECT_EQ(std::string(got, n > 0 ? n : 0), "hello tap") << "partial checksum not taken";
    resend(0x1234, false);
    n = -1;
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    pump([&] {
      n = recv(udp.get(), got, sizeof(got), MSG_DONTWAIT);
      return n >= 0 || std::chrono::steady_clock::now() > until;
    });
    EXPECT_LT(n, 0) << "a bad checksum was delivered: the header claimed it valid";
    EXPECT_EQ(dev.stats().frames_out, 3u);
  }

  // Reads parked on the ring must not have parked io-wq workers (the tap is
  // polled, not read by a blocked kernel thread per request).
  int workers = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) {
      std::string comm;
      FILE* f = fopen(absl::StrCat("/proc/self/task/", e->d_name, "/comm").c_str(), "r");
      if (!f) continue;
      char b[64] = {};
      if (fgets(b, sizeof(b), f)) comm = b;
      fclose(f);
      if (comm.rfind("iou-wrk", 0) == 0) workers++;
    }
    closedir(d);
  }
  EXPECT_EQ(workers, 0);
  EXPECT_EQ(eagain, 0) << "reads on the non-blocking tap must wait in the ring, not spin";
}

TEST(TapDevice, ReadsAndWritesFramesThroughTheRing) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (tap devices, namespaces)";
  if (access("/dev/net/tun", R_OK | W_OK) != 0) GTEST_SKIP() << "no /dev/net/tun";
  ReadsAndWritesFramesThroughTheRing(false);
}

TEST(TapDevice, VnetHeadersCarryPartialChecksumsAndClaimNothingElse) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (tap devices, namespaces)";
  if (access("/dev/net/tun", R_OK | W_OK) != 0) GTEST_SKIP() << "no /dev/net/tun";
  ReadsAndWritesFramesThroughTheRing(true);
}

// Gives interface `name` of the current namespace 192.0.2.1/24, brings it
// up, and adds a permanent neighbour 192.0.2.3 (so datagrams to it leave as
// IP frames at once, without waiting for ARP).
void AddressWithNeighbour(const std::string& name) {
  Fd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  sockaddr_in* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
  sin->sin_family = AF_INET;
  inet_pton(AF_INET, "192.0.2.1", &sin->sin_addr);
  ioctl(s.get(), SIOCSIFADDR, &ifr);
  inet_pton(AF_INET, "255.255.255.0", &sin->sin_addr);
  ioctl(s.get(), SIOCSIFNETMASK, &ifr);
  LinkUp(name);
  arpreq ar{};
  sin = reinterpret_cast<sockaddr_in*>(&ar.arp_pa);
  sin->sin_family = AF_INET;
  inet_pton(AF_INET, "192.0.2.3", &sin->sin_addr);
  ar.arp_ha.sa_family = ARPHRD_ETHER;
  const uint8_t mac[6] = {0x02, 0, 0, 0, 0, 0x03};
  std::memcpy(ar.arp_ha.sa_data, mac, 6);
  ar.arp_flags = ATF_PERM | ATF_COM;
  std::strncpy(ar.arp_dev, name.c_str(), sizeof(ar.arp_dev) - 1);
  ioctl(s.get(), SIOCSARP, &ar);
}

// The UDP checksum of IPv4 frame `f` (no options) verifies.
bool UdpChecksumVerifies(const std::string& f) {
  const uint8_t* ip = reinterpret_cast<const uint8_t*>(f.data()) + 14;
  size_t ulen = (size_t{ip[20 + 4]} << 8) | ip[20 + 5];
  uint32_t sum = 17 + static_cast<uint32_t>(ulen);
  for (int i = 12; i < 20; i += 2) sum += (ip[i] << 8) | ip[i + 1];
  for (size_t i = 0; i < ulen; i += 2)
    sum += (ip[20 + i] << 8) | (i + 1 < ulen ? ip[20 + i + 1] : 0);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum == 0xffff;
}

// With offload (the default with a virtio-net header) the kernel leaves a
// UDP datagram's checksum for the link to fill, and the frame comes marked
// kFrameChecksumTrusted; without, its checksum is whole and nothing is
// claimed.
void UdpChecksumOffload(bool offload) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (tap devices, namespaces)";
  if (access("/dev/net/tun", R_OK | W_OK) != 0) GTEST_SKIP() << "no /dev/net/tun";
  Fd nsfd = NewNetnsFd();
  ASSERT_TRUE(nsfd) << "unshare(CLONE_NEWNET)";
  absl::StatusOr<std::unique_ptr<NetNs>> ns =
      NetNs::Open(absl::StrCat("/proc/self/fd/", nsfd.get()));
  ASSERT_TRUE(ns.ok()) << ns.status();
  absl::StatusOr<Fd> tap = absl::InternalError("not run");
  (*ns)->RunSync([&] {
    std::string name;
    tap = TapDevice::OpenTap("rftest2", &name, true);
    if (tap.ok()) AddressWithNeighbour(name);
  });
  ASSERT_TRUE(tap.ok()) << tap.status();
  absl::StatusOr<std::unique_ptr<Ring>> ring = Ring::Create(64);
  ASSERT_TRUE(ring.ok());
  Collector rx;
  TapDevice dev(ring->get(), std::move(*tap), &rx, 1500, FrameSourceKinds{16, 17, 18},
                TapDeviceOptions{.buffers = 8, .write_slots = 8, .offload = offload});
  EXPECT_EQ(dev.offload(), offload);
  dev.Start();
  ssize_t sent = -1;
  (*ns)->RunSync([&] {  // after the device asked for offloads
    Fd udp(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(7);
    inet_pton(AF_INET, "192.0.2.3", &a.sin_addr);
    std::string payload(201, 'u');
    sent = sendto(udp.get(), payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&a),
                  sizeof(a));
  });
  ASSERT_EQ(sent, 201);
  auto udp_frame = [&]() -> int {
    for (size_t i = 0; i < rx.frames.size(); i++) {
      const std::string& f = rx.frames[i];
      if (f.size() >= 14 + 20 + 8 + 201 && uint8_t(f[12]) == 0x08 && f[13] == 0 && f[14 + 9] == 17)
        return static_cast<int>(i);
    }
    return -1;
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (udp_frame() < 0 && std::chrono::steady_clock::now() < deadline) {
    (*ring)->RunOnce(50, [&](const io_uring_cqe& cqe) {
      dev.HandleCompletion(cqe, UserData::Unpack(cqe.user_data));
    });
    dev.DeliverReceived();
  }
  int i = udp_frame();
  ASSERT_GE(i, 0) << rx.frames.size() << " frames read, none the datagram";
  if (offload) {
    EXPECT_EQ(rx.flags[i], kFrameChecksumTrusted);
    EXPECT_FALSE(UdpChecksumVerifies(rx.frames[i])) << "the checksum was not left partial";
  } else {
    EXPECT_EQ(rx.flags[i], 0);
    EXPECT_TRUE(UdpChecksumVerifies(rx.frames[i]));
  }
}

TEST(TapDevice, OffloadDeliversPartialChecksumsMarkedTrusted) { UdpChecksumOffload(true); }

TEST(TapDevice, WithoutOffloadChecksumsAreWholeAndUnclaimed) { UdpChecksumOffload(false); }

// How the frames are read in the tests below.
enum class ReadPath { kMultishot, kSingleShot, kFallback };

// `count` frames of a local experimental EtherType (0x88b5), numbered in
// their payload, sent on an up tap from a packet socket in its namespace
// before the device starts reading: all of them must come out, in order,
// through `buffers` receive buffers.
void ReadQueuedFrames(ReadPath path, unsigned buffers, int count) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (tap devices, namespaces)";
  if (access("/dev/net/tun", R_OK | W_OK) != 0) GTEST_SKIP() << "no /dev/net/tun";
  Fd nsfd = NewNetnsFd();
  ASSERT_TRUE(nsfd) << "unshare(CLONE_NEWNET)";
  absl::StatusOr<std::unique_ptr<NetNs>> ns =
      NetNs::Open(absl::StrCat("/proc/self/fd/", nsfd.get()));
  ASSERT_TRUE(ns.ok()) << ns.status();
  absl::StatusOr<Fd> tap = absl::InternalError("not run");
  int sent = 0;
  (*ns)->RunSync([&] {
    std::string name;
    tap = TapDevice::OpenTap("rftest1", &name);
    if (!tap.ok()) return;
    LinkUp(name);
    Fd pk(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
    sockaddr_ll ll{};
    ll.sll_family = AF_PACKET;
    ll.sll_ifindex = static_cast<int>(if_nametoindex(name.c_str()));
    for (int i = 0; i < count; i++) {
      uint8_t f[60] = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x88, 0xb5};
      f[14] = static_cast<uint8_t>(i >> 8);
      f[15] = static_cast<uint8_t>(i);
      if (sendto(pk.get(), f, sizeof(f), 0, reinterpret_cast<sockaddr*>(&ll), sizeof(ll)) ==
          sizeof(f))
        sent++;
    }
  });
  ASSERT_TRUE(tap.ok()) << tap.status();
  ASSERT_EQ(sent, count);

  absl::StatusOr<std::unique_ptr<Ring>> ring = Ring::Create(64);
  ASSERT_TRUE(ring.ok());
  Collector rx;
  TapDeviceOptions opts{.buffers = buffers, .write_slots = 8};
  if (path == ReadPath::kSingleShot) opts.multishot = false;
  if (path == ReadPath::kFallback) opts.multishot_opcode = 255;  // no kernel knows it
  TapDevice dev(ring->get(), std::move(*tap), &rx, 1500, FrameSourceKinds{16, 17, 18}, opts);
  dev.Start();
  std::vector<int> got;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (static_cast<int>(got.size()) < count && std::chrono::steady_clock::now() < deadline) {
    (*ring)->RunOnce(50, [&](const io_uring_cqe& cqe) {
      dev.HandleCompletion(cqe, UserData::Unpack(cqe.user_data));
    });
    rx.frames.clear();
    dev.DeliverReceived();
    for (const std::string& f : rx.frames)
      if (f.size() >= 16 && uint8_t(f[12]) == 0x88 && uint8_t(f[13]) == 0xb5)
        got.push_back((uint8_t(f[14]) << 8) | uint8_t(f[15]));
  }
  ASSERT_EQ(static_cast<int>(got.size()), count);
  for (int i = 0; i < count; i++) EXPECT_EQ(got[i], i);
  EXPECT_EQ(dev.stats().read_errors, 0u);
  if (path == ReadPath::kMultishot) {
    // Linux 6.7+ reads with one multishot read; more frames than buffers end
    // it (ENOBUFS), and it is re-armed once the buffers are back.
    EXPECT_TRUE(dev.multishot()) << "the kernel refused the multishot read";
    if (count > static_cast<int>(buffers)) {
      EXPECT_GT(dev.multishot_rearms(), 0u);
    }
  } else {
    EXPECT_FALSE(dev.multishot());
  }
}

// A receiver that queues a submission reading the frames (a NOP here, a
// UDP send in the link) as it gets them.
struct QueuingCollector : Collector {
  Ring* ring = nullptr;
  void OnFrames(std::span<const std::span<const uint8_t>> fs,
                std::span<const uint8_t> fl) override {
    Collector::OnFrames(fs, fl);
    io_uring_prep_nop(ring->GetSqe());
  }
};

// The buffers of a batch go back to the kernel only once the ring has taken
// what the receiver queued during it: until then they are held, and reading
// goes on in the others.
TEST(TapDevice, MultishotHoldsBuffersUntilTheRingTookTheReceiversSubmissions) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (tap devices, namespaces)";
  if (access("/dev/net/tun", R_OK | W_OK) != 0) GTEST_SKIP() << "no /dev/net/tun";
  Fd nsfd = NewNetnsFd();
  ASSERT_TRUE(nsfd) << "unshare(CLONE_NEWNET)";
  absl::StatusOr<std::unique_ptr<NetNs>> ns =
      NetNs::Open(absl::StrCat("/proc/self/fd/", nsfd.get()));
  ASSERT_TRUE(ns.ok()) << ns.status();
  absl::StatusOr<Fd> tap = absl::InternalError("not run");
  Fd pk;
  sockaddr_ll ll{};
  (*ns)->RunSync([&] {
    std::string name;
    tap = TapDevice::OpenTap("rftest2", &name);
    if (!tap.ok()) return;
    LinkUp(name);
    pk.Reset(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
    ll.sll_family = AF_PACKET;
    ll.sll_ifindex = static_cast<int>(if_nametoindex(name.c_str()));
  });
  ASSERT_TRUE(tap.ok()) << tap.status();
  auto send_frames = [&](int n) {
    for (int i = 0; i < n; i++) {
      uint8_t f[60] = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x88, 0xb5};
      ASSERT_EQ(sendto(pk.get(), f, sizeof(f), 0, reinterpret_cast<sockaddr*>(&ll), sizeof(ll)),
                ssize_t{sizeof(f)});
    }
  };
  absl::StatusOr<std::unique_ptr<Ring>> ring = Ring::Create(64);
  ASSERT_TRUE(ring.ok());
  QueuingCollector rx;
  rx.ring = ring->get();
  TapDevice dev(ring->get(), std::move(*tap), &rx, 1500, FrameSourceKinds{16, 17, 18},
                TapDeviceOptions{.buffers = 8, .write_slots = 8});
  dev.Start();
  if (!dev.multishot()) GTEST_SKIP() << "no multishot read (Linux 6.7+)";
  send_frames(3);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (rx.frames.empty() && std::chrono::steady_clock::now() < deadline) {
    (*ring)->RunOnce(50, [&](const io_uring_cqe& cqe) {
      dev.HandleCompletion(cqe, UserData::Unpack(cqe.user_data));
    });
    dev.DeliverReceived();
  }
  ASSERT_FALSE(rx.frames.empty());
  size_t held = dev.held_buffers();
  EXPECT_EQ(held, rx.frames.size());
  // The NOP queued during the delivery is not submitted yet: still held.
  dev.DeliverReceived();
  EXPECT_EQ(dev.held_buffers(), held);
  // Submitted (as the loop's next wait does): given back at the next call.
  (*ring)->Submit();
  dev.DeliverReceived();
  EXPECT_EQ(dev.held_buffers(), 0u);
}

TEST(TapDevice, MultishotReadsEveryQueuedFrameInOrder) {
  ReadQueuedFrames(ReadPath::kMultishot, 32, 20);
}

TEST(TapDevice, MultishotReArmsWhenItRunsOutOfBuffers) {
  ReadQueuedFrames(ReadPath::kMultishot, 2, 40);
}

TEST(TapDevice, SingleShotReadsEveryQueuedFrameInOrder) {
  ReadQueuedFrames(ReadPath::kSingleShot, 4, 40);
}

TEST(TapDevice, FallsBackToSingleShotWhenTheKernelRefusesMultishot) {
  ReadQueuedFrames(ReadPath::kFallback, 4, 40);
}

}  // namespace
}  // namespace ringfwd
