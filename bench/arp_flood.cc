// arp_flood: frames per second through a tap link's own answers, for
// bench/tap_compare.sh. Run inside the guest namespace:
//
//   arp_flood --dev IF --ip GUEST --target GATEWAY [--window N] [--seconds S]
//
// A packet socket on IF sends ARP requests for GATEWAY (from GUEST and IF's
// MAC), keeping N (default 32) unanswered at most, and counts the replies
// for S seconds (default 5) after a 0.5 s warm-up. Each request is a frame
// the daemon reads, parses and answers with a frame: the read, classify and
// answer path with no host socket involved. Prints one line:
//   window=N replies=R seconds=S rate=R/s
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
  std::string dev = "tap0", ip = "198.51.100.2", target = "198.51.100.1";
  int window = 32, seconds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--dev")
      dev = v;
    else if (k == "--ip")
      ip = v;
    else if (k == "--target")
      target = v;
    else if (k == "--window")
      window = std::max(1, std::atoi(v.c_str()));
    else if (k == "--seconds")
      seconds = std::max(1, std::atoi(v.c_str()));
  }
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ARP));
  if (fd < 0) {
    perror("socket");
    return 1;
  }
  int ifindex = if_nametoindex(dev.c_str());
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, dev.c_str(), IFNAMSIZ - 1);
  if (!ifindex || ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
    std::fprintf(stderr, "arp_flood: no interface %s\n", dev.c_str());
    return 1;
  }
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ARP);
  sll.sll_ifindex = ifindex;
  bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof(sll));
  unsigned char req[42] = {};
  std::memset(req, 0xff, 6);
  std::memcpy(req + 6, ifr.ifr_hwaddr.sa_data, 6);
  req[12] = 0x08;
  req[13] = 0x06;
  req[15] = 1;  // Ethernet
  req[16] = 0x08;
  req[18] = 6;
  req[19] = 4;
  req[21] = 1;  // request
  std::memcpy(req + 22, ifr.ifr_hwaddr.sa_data, 6);
  inet_pton(AF_INET, ip.c_str(), req + 28);
  inet_pton(AF_INET, target.c_str(), req + 38);
  sll.sll_halen = 6;
  std::memset(sll.sll_addr, 0xff, 6);
  using Clock = std::chrono::steady_clock;
  auto measure_from = Clock::now() + std::chrono::milliseconds(500);
  auto end = measure_from + std::chrono::seconds(seconds);
  long outstanding = 0, replies = 0;
  auto last_reply = Clock::now();
  unsigned char buf[2048];
  while (Clock::now() < end) {
    while (outstanding < window) {
      if (sendto(fd, req, sizeof(req), 0, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) < 0)
        break;
      outstanding++;
    }
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, 10);
    for (;;) {
      ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0) break;
      // A reply (op 2) to us, from the target.
      if (n >= 42 && buf[21] == 2 && std::memcmp(buf + 28, req + 38, 4) == 0) {
        outstanding--;
        last_reply = Clock::now();
        if (last_reply >= measure_from) replies++;
      }
    }
    if (Clock::now() - last_reply > std::chrono::milliseconds(100)) outstanding = 0;  // lost ones
  }
  double secs = std::chrono::duration<double>(end - measure_from).count();
  std::printf("window=%d replies=%ld seconds=%.2f rate=%.0f\n", window, replies, secs,
              replies / secs);
  return replies > 0 ? 0 : 1;
}
