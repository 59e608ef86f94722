// Congestion control of the forwarder's own connections: those that stay on
// loopback (both ends on this host) get --loopback-cc (reno by default),
// others keep the system's default. Read back with `ss -ti`, as a user
// would check it.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"

namespace ringfwd::e2e {
namespace {

// The words of a file, read inside namespace `ns`.
std::vector<std::string> WordsIn(const TempNetns& ns, const std::string& path) {
  std::istringstream in(RunCmd({"ip", "netns", "exec", ns.name(), "cat", path}).output);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// The congestion control of the established TCP socket in `ns` whose local
// (`local` true) or remote address is `addr` ("127.0.0.1:8080"); "" if none.
// `ss -tinH` prints a socket's line, then a line of details that holds the
// algorithm's name (after "ts sack ecn" where those are on): the first word
// there that names one of `known`.
std::string CcOf(const TempNetns& ns, const std::string& addr, bool local,
                 const std::vector<std::string>& known) {
  CmdResult r = RunCmd({"ip", "netns", "exec", ns.name(), "ss", "-tinH", "state", "established"});
  std::istringstream in(r.output);
  std::string line;
  bool want_next = false;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string x; words >> x;) w.push_back(x);
    if (w.empty()) continue;
    if (want_next) {
      for (const std::string& x : w)
        if (std::find(known.begin(), known.end(), x) != known.end()) return x;
      return "";
    }
    // Recv-Q Send-Q Local Peer (the state column is left out with "state").
    // A dual-stack socket shows IPv4 addresses mapped, a socket bound to
    // an interface its name ("[::ffff:127.0.0.1]%lo:8080").
    std::string a = w.size() >= 4 ? w[local ? 2 : 3] : "";
    if (size_t pct = a.find('%'); pct != std::string::npos) a.erase(pct, a.rfind(':') - pct);
    if (a == addr ||
        a == "[::ffff:" + addr.substr(0, addr.find(':')) + "]" + addr.substr(addr.find(':')))
      want_next = true;
  }
  return "";
}

class LoopbackCcTest : public E2eTest {
 protected:
  void SetUp() override {
    E2eTest::SetUp();
    if (IsSkipped()) return;
    std::vector<std::string> sys = WordsIn(*target_, "/proc/sys/net/ipv4/tcp_congestion_control");
    ASSERT_FALSE(sys.empty());
    system_cc_ = sys[0];
    available_ = WordsIn(*target_, "/proc/sys/net/ipv4/tcp_available_congestion_control");
    for (const std::string& cc : available_)
      if (other_cc_.empty() && cc != "reno" && cc != system_cc_) other_cc_ = cc;
    // With reno as the system's default, the default choice shows nothing.
    if (system_cc_ == "reno") GTEST_SKIP() << "the system's default is already reno";
  }

  // Opens a connection from `ns` through the forwarder to an echo server and
  // checks it carries bytes; returns it, open, so that both hops can be
  // inspected.
  Fd Through(const Addr& front, const TempNetns* ns = nullptr) {
    int err = 0;
    Fd c = TcpConnect(ns ? *ns : *host_, front, &err);
    EXPECT_TRUE(c) << std::strerror(err);
    if (!c) return c;
    std::string got;
    EXPECT_EQ(SendAll(c.get(), "ping", In(2000)), 0);
    EXPECT_EQ(RecvExact(c.get(), 4, &got, In(3000 * Slowdown())), 0);
    EXPECT_EQ(got, "ping");
    return c;
  }

  // Reads back the congestion control of a forwarder's socket.
  std::string Cc(const TempNetns& ns, const std::string& addr, bool local) {
    return CcOf(ns, addr, local, available_);
  }

  std::string system_cc_;               // the target namespace's default
  std::vector<std::string> available_;  // tcp_available_congestion_control
  std::string other_cc_;                // available, neither reno nor the default
};

// Both hops of a forward into the namespace's loopback get reno: the target
// connection, and the client's, accepted on a loopback listener.
TEST_F(LoopbackCcTest, LoopbackHopsGetTheDefault) {
  EchoServer echo(TcpListen(*target_, Addr::Of("127.0.0.1", 80)));
  auto d = StartForwarder({"-t", "127.0.0.1/8080:80"});
  ASSERT_TRUE(d);
  Fd c = Through(Addr::Of("127.0.0.1", 8080));
  ASSERT_TRUE(c);
  EXPECT_EQ(Cc(*target_, "127.0.0.1:80", false), "reno");
  EXPECT_EQ(Cc(*host_, "127.0.0.1:8080", true), "reno");
}

// SPLICE rules: the listener is on the namespace's lo, the target on the
// host's loopback.
TEST_F(LoopbackCcTest, SpliceHopsGetTheDefault) {
  EchoServer echo(TcpListen(*host_, Addr::Of("127.0.0.1", 80)));
  auto d = StartForwarder({"-T", "8080:80"});
  ASSERT_TRUE(d);
  Fd c = Through(Addr::Of("127.0.0.1", 8080), target_.get());
  ASSERT_TRUE(c);
  EXPECT_EQ(Cc(*host_, "127.0.0.1:80", false), "reno");
  EXPECT_EQ(Cc(*target_, "127.0.0.1:8080", true), "reno");
}

// --loopback-cc names the algorithm (IPv6 too); "system" leaves the default.
TEST_F(LoopbackCcTest, OptionChoosesOrKeepsTheSystemDefault) {
  EchoServer echo(TcpListen(*target_, Addr::Of("::1", 80)));
  if (!other_cc_.empty()) {
    auto d = StartForwarder({"--loopback-cc", other_cc_, "-t", "::1/8080:80"});
    ASSERT_TRUE(d);
    Fd c = Through(Addr::Of("::1", 8080));
    ASSERT_TRUE(c);
    EXPECT_EQ(Cc(*target_, "[::1]:80", false), other_cc_);
    EXPECT_EQ(Cc(*host_, "[::1]:8080", true), other_cc_);
  }
  auto d = StartForwarder({"--loopback-cc", "system", "-t", "::1/8080:80"});
  ASSERT_TRUE(d);
  Fd c = Through(Addr::Of("::1", 8080));
  ASSERT_TRUE(c);
  EXPECT_EQ(Cc(*target_, "[::1]:80", false), system_cc_);
  EXPECT_EQ(Cc(*host_, "[::1]:8080", true), system_cc_);
}

// A target address that is not loopback may be across a real network: its
// connection keeps the system's default.
TEST_F(LoopbackCcTest, OtherTargetsKeepTheSystemDefault) {
  std::string error;
  ASSERT_TRUE(target_->AddLink("d0", {"198.51.100.1/24"}, &error)) << error;
  EchoServer echo(TcpListen(*target_, Addr::Of("198.51.100.1", 80)));
  auto d = StartForwarder({"-t", "127.0.0.1/8080:198.51.100.1/80"});
  ASSERT_TRUE(d);
  Fd c = Through(Addr::Of("127.0.0.1", 8080));
  ASSERT_TRUE(c);
  EXPECT_EQ(Cc(*target_, "198.51.100.1:80", false), system_cc_);
  EXPECT_EQ(Cc(*host_, "127.0.0.1:8080", true), "reno");
}

}  // namespace
}  // namespace ringfwd::e2e
