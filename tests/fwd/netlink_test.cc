#include "fwd/netlink.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "fwd/netns.h"
#include "gtest/gtest.h"
#include "uring/tap_device.h"

namespace ringfwd {
namespace {

// Runs the test body in a fresh network namespace of its own (a thread that
// unshared it), so nothing touches the machine's interfaces.
class NetlinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (namespaces)";
    if (access("/dev/net/tun", R_OK | W_OK) != 0) GTEST_SKIP() << "no /dev/net/tun";
    Fd nsfd;
    std::thread t([&] {
      if (unshare(CLONE_NEWNET) == 0)
        nsfd.Reset(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    });
    t.join();
    ASSERT_TRUE(nsfd);
    auto ns = NetNs::Open(absl::StrCat("/proc/self/fd/", nsfd.get()));
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = std::move(*ns);
  }
  std::unique_ptr<NetNs> ns_;
};

uint32_t MtuOf(const std::string& dev) {
  Fd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, dev.c_str(), IFNAMSIZ - 1);
  if (ioctl(s.get(), SIOCGIFMTU, &ifr) < 0) return 0;
  return ifr.ifr_mtu;
}

TEST_F(NetlinkTest, ConfiguresATapAndFindsItAsTheTemplate) {
  ns_->RunSync([&] {
    absl::StatusOr<Netlink> nl = Netlink::Open();
    ASSERT_TRUE(nl.ok()) << nl.status();
    EXPECT_EQ(nl->FindTemplate(AF_INET).status().code(), absl::StatusCode::kNotFound)
        << "a new namespace has no default route";
    std::string name;
    absl::StatusOr<Fd> tap = TapDevice::OpenTap("rfnl0", &name);
    ASSERT_TRUE(tap.ok()) << tap.status();
    absl::StatusOr<int> idx = nl->IfIndex("rfnl0");
    ASSERT_TRUE(idx.ok()) << idx.status();
    ASSERT_TRUE(nl->SetMtu(*idx, name, 65520).ok());
    ASSERT_TRUE(nl->LinkUp(*idx, name).ok());
    EXPECT_EQ(MtuOf("rfnl0"), 65520u);
    IfAddr a4{*Addr6::Parse("192.0.2.2"), 24};
    IfAddr a6{*Addr6::Parse("2001:db8::2"), 64};
    ASSERT_TRUE(nl->AddAddress(*idx, name, a4).ok());
    ASSERT_TRUE(nl->AddAddress(*idx, name, a6).ok());
    EXPECT_TRUE(nl->AddAddress(*idx, name, a4).ok()) << "an existing address is fine";
    absl::Status r4 = nl->AddDefaultRoute(*idx, name, *Addr6::Parse("192.0.2.1"));
    ASSERT_TRUE(r4.ok()) << r4;
    absl::Status r6 = nl->AddDefaultRoute(*idx, name, *Addr6::Parse("fe80::1"));
    ASSERT_TRUE(r6.ok()) << r6;

    absl::StatusOr<TemplateIface> t4 = nl->FindTemplate(AF_INET);
    ASSERT_TRUE(t4.ok()) << t4.status();
    EXPECT_EQ(t4->name, "rfnl0");
    EXPECT_EQ(t4->ifindex, *idx);
    ASSERT_TRUE(t4->has_gateway);
    EXPECT_EQ(t4->gateway.ToString(), "192.0.2.1");
    ASSERT_EQ(t4->addrs.size(), 1u);
    EXPECT_EQ(t4->addrs[0].addr.ToString(), "192.0.2.2");
    EXPECT_EQ(t4->addrs[0].prefix, 24);

    absl::StatusOr<TemplateIface> t6 = nl->FindTemplate(AF_INET6);
    ASSERT_TRUE(t6.ok()) << t6.status();
    EXPECT_EQ(t6->name, "rfnl0");
    EXPECT_EQ(t6->gateway.ToString(), "fe80::1");
    ASSERT_EQ(t6->addrs.size(), 1u) << "link-local addresses are not the guest's";
    EXPECT_EQ(t6->addrs[0].addr.ToString(), "2001:db8::2");
    EXPECT_EQ(t6->addrs[0].prefix, 64);

    // No duplicate address detection: the address is usable at once.
    Fd s(socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_addr = a6.addr.In6();
    EXPECT_EQ(bind(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0)
        << "bind to a tentative address fails: " << std::strerror(errno);
  });
}

TEST_F(NetlinkTest, ErrorsNameTheInterfaceAndTheCause) {
  ns_->RunSync([&] {
    absl::StatusOr<Netlink> nl = Netlink::Open();
    ASSERT_TRUE(nl.ok());
    absl::StatusOr<int> idx = nl->IfIndex("nosuch0");
    ASSERT_FALSE(idx.ok());
    EXPECT_NE(idx.status().message().find("nosuch0"), std::string::npos) << idx.status();
    absl::Status up = nl->LinkUp(9999, "ghost0");
    ASSERT_FALSE(up.ok());
    EXPECT_NE(up.message().find("ghost0"), std::string::npos) << up;
    EXPECT_NE(up.message().find("No such device"), std::string::npos) << up;
    absl::Status mtu = nl->SetMtu(9999, "", 1500);
    EXPECT_NE(mtu.message().find("interface 9999"), std::string::npos) << mtu;
    ASSERT_TRUE(nl->LoopbackUp().ok());
    absl::StatusOr<int> lo = nl->IfIndex("lo");
    ASSERT_TRUE(lo.ok());
    // A gateway that is not on any link cannot be a next hop.
    absl::Status r = nl->AddDefaultRoute(*lo, "lo", *Addr6::Parse("203.0.113.1"));
    EXPECT_FALSE(r.ok());
    EXPECT_NE(r.message().find("203.0.113.1"), std::string::npos) << r;
  });
}

}  // namespace
}  // namespace ringfwd
