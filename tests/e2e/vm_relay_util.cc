#include "tests/e2e/vm_relay_util.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

namespace ringfwd::e2e {
namespace {

// Opens tap `dev` inside `ns` (from a thread that enters it: a tap belongs
// to the namespace it was created in).
Fd OpenTapIn(const TempNetns& ns, const std::string& dev, std::string* error) {
  Fd tap;
  std::thread t([&] {
    Fd nsfd(open(ns.path().c_str(), O_RDONLY | O_CLOEXEC));
    if (!nsfd.valid() || setns(nsfd.get(), CLONE_NEWNET) != 0) {
      *error = "setns " + ns.path() + ": " + std::strerror(errno);
      return;
    }
    Fd fd(open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!fd.valid()) {
      *error = std::string("/dev/net/tun: ") + std::strerror(errno);
      return;
    }
    ifreq ifr{};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    std::strncpy(ifr.ifr_name, dev.c_str(), IFNAMSIZ - 1);
    if (ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
      *error = std::string("TUNSETIFF: ") + std::strerror(errno);
      return;
    }
    tap = std::move(fd);
  });
  t.join();
  return tap;
}

bool WriteAll(int fd, const uint8_t* p, size_t n, const std::atomic<bool>& stop) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w > 0) {
      p += w;
      n -= static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EINTR) return false;
    if (stop.load()) return false;
    pollfd pf{fd, POLLOUT, 0};
    poll(&pf, 1, 100);
  }
  return true;
}

}  // namespace

std::unique_ptr<VmRelay> VmRelay::Start(const TempNetns& ns, const std::string& dev,
                                        const std::string& mac, int mtu, const std::string& cidr,
                                        const std::string& gateway, const std::string& socket_path,
                                        std::string* error) {
  std::unique_ptr<VmRelay> r(new VmRelay);
  r->tap_ = OpenTapIn(ns, dev, error);
  if (!r->tap_.valid()) return nullptr;
  if (!ns.Ip({"link", "set", dev, "address", mac, "mtu", std::to_string(mtu), "up"}, error) ||
      !ns.Ip({"addr", "add", cidr, "dev", dev}, error) ||
      !ns.Ip({"route", "add", "default", "via", gateway}, error))
    return nullptr;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, socket_path.c_str(), sizeof(a.sun_path) - 1);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  for (;;) {
    Fd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
      r->sock_ = std::move(s);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      *error = "connect " + socket_path + ": " + std::strerror(errno);
      return nullptr;
    }
    usleep(20000);
  }
  fcntl(r->tap_.get(), F_SETFL, O_NONBLOCK);
  fcntl(r->sock_.get(), F_SETFL, O_NONBLOCK);
  r->thread_ = std::thread([p = r.get()] { p->Run(); });
  return r;
}

VmRelay::~VmRelay() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

std::string VmRelay::error() const { return failed_.load() ? error_ : std::string(); }

void VmRelay::Run() {
  std::vector<uint8_t> frame(70000);
  std::vector<uint8_t> in;  // bytes from the daemon not yet a whole frame
  std::vector<uint8_t> chunk(1 << 18);
  auto fail = [&](const std::string& why) {
    error_ = why;
    failed_ = true;
  };
  while (!stop_.load()) {
    pollfd p[2] = {{tap_.get(), POLLIN, 0}, {sock_.get(), POLLIN, 0}};
    if (poll(p, 2, 100) < 0 && errno != EINTR) return fail("poll");
    // The VM's frames to the daemon, each with its length.
    for (int i = 0; i < 64; i++) {
      ssize_t n = read(tap_.get(), frame.data() + 4, frame.size() - 4);
      if (n <= 0) break;
      uint32_t len = static_cast<uint32_t>(n);
      frame[0] = static_cast<uint8_t>(len >> 24);
      frame[1] = static_cast<uint8_t>(len >> 16);
      frame[2] = static_cast<uint8_t>(len >> 8);
      frame[3] = static_cast<uint8_t>(len);
      if (!WriteAll(sock_.get(), frame.data(), len + 4, stop_)) return fail("write to daemon");
      to_daemon_++;
    }
    // The daemon's frames to the VM.
    ssize_t n = read(sock_.get(), chunk.data(), chunk.size());
    if (n == 0) return fail("the daemon closed the stream");
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) return fail("read from daemon");
      continue;
    }
    in.insert(in.end(), chunk.begin(), chunk.begin() + n);
    size_t off = 0;
    while (in.size() - off >= 4) {
      uint32_t len = (uint32_t{in[off]} << 24) | (uint32_t{in[off + 1]} << 16) |
                     (uint32_t{in[off + 2]} << 8) | in[off + 3];
      if (in.size() - off - 4 < len) break;
      // A tap takes a frame whole; a full queue drops it, as a NIC would.
      if (write(tap_.get(), in.data() + off + 4, len) < 0 && errno != EAGAIN && errno != ENOBUFS)
        return fail(std::string("write to tap: ") + std::strerror(errno));
      from_daemon_++;
      off += 4 + len;
    }
    in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(off));
  }
}

}  // namespace ringfwd::e2e
