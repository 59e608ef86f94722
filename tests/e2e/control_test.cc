// End-to-end tests of the control socket (PROTOCOL.md sections 1-6): raw
// clients built on the codec, hostile clients, the captured bytes of the
// passt project's server and client (interop/), peer-uid checks, and the
// pesto binary against a live daemon.
//
// After every refused or broken transaction the tables must be exactly as
// before (the listing bytes compare equal), forwarding must go on, and the
// next well-formed client must be served.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/swap_util.h"
#include "tests/test_util.h"

namespace ringfwd::e2e {
namespace {

class ControlTest : public E2eTest {
 protected:
  void SetUp() override {
    E2eTest::SetUp();
    ctl_ = dir_.Path("ctl.sock");
  }
  std::unique_ptr<Daemon> Start(std::vector<std::string> args) {
    args.push_back("-c");
    args.push_back(ctl_);
    return StartForwarder(args);
  }
  Addr V4(uint16_t port) const { return Addr::Of("127.0.0.1", port); }

  SocketDir dir_;
  std::string ctl_;
};

void PutU32(uint32_t v, wire::Bytes* out) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<uint8_t>(v >> shift));
}

wire::Bytes ClientMagic() { return wire::Bytes(wire::kClientMagic, wire::kClientMagic + 8); }

wire::Bytes Concat(std::vector<wire::Bytes> parts) {
  wire::Bytes out;
  for (const wire::Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// One update block: u8 pif, u32 count, rules.
wire::Bytes Block(uint8_t pif, const std::vector<Rule>& rules) {
  wire::Bytes out = {pif};
  PutU32(static_cast<uint32_t>(rules.size()), &out);
  for (const Rule& r : rules) {
    uint8_t buf[wire::kRuleSize];
    wire::EncodeRule(r, buf);
    out.insert(out.end(), buf, buf + sizeof(buf));
  }
  return out;
}

wire::Bytes Text(const std::string& s) { return wire::Bytes(s.begin(), s.end()); }

// ---- Section 3: every kind of invalid rule is REJECTED, nothing changes ----

TEST_F(ControlTest, InvalidRulesAreRejectedAndChangeNothing) {
  auto echo = StartEcho(*target_, "127.0.0.1", 5000);
  ASSERT_TRUE(echo);
  auto d = Start({"-t", "5000", "-t", "127.0.0.1/8000-8010:9000-9010", "-u", "5353", "-T", "7100"});
  ASSERT_TRUE(d);
  Listing before = ListControl(ctl_);
  ASSERT_TRUE(before.ok()) << before.error;

  struct Case {
    const char* name;
    PifId pif;
    std::function<void(std::vector<Rule>*)> edit;
    const char* message_has = "";
  };
  auto add = [](Rule r) { return [r](std::vector<Rule>* rules) { rules->push_back(r); }; };
  Rule no_nul = MakeRule(kProtoTcp, "127.0.0.1", 7000, 7000, 7000);
  no_nul.ifname.fill('a');
  Rule bad_proto = MakeRule(kProtoTcp, "", 7000, 7000, 7000);
  bad_proto.proto = 1;
  Rule zero_proto = bad_proto;
  zero_proto.proto = 0;
  Rule dual_v4 = MakeRule(kProtoTcp, "127.0.0.1", 7000, 7000, 7000, kFlagDualStackAny);
  Rule dual_v6 = MakeRule(kProtoTcp, "::1", 7000, 7000, 7000, kFlagDualStackAny);
  const std::vector<Case> cases = {
      {"first port 0", PifId::kHost, add(MakeRule(kProtoTcp, "", 0, 10, 1))},
      {"first above last", PifId::kHost, add(MakeRule(kProtoTcp, "", 7010, 7000, 7010))},
      {"target range past 65535", PifId::kHost, add(MakeRule(kProtoTcp, "", 7000, 7010, 65530))},
      {"target port 0", PifId::kHost, add(MakeRule(kProtoTcp, "", 7000, 7000, 0))},
      {"protocol 1", PifId::kHost, add(bad_proto)},
      {"protocol 0", PifId::kHost, add(zero_proto)},
      {"unknown flag 0x08", PifId::kHost, add(MakeRule(kProtoTcp, "", 7000, 7000, 7000, 0x08))},
      {"unknown flag 0x80", PifId::kHost, add(MakeRule(kProtoUdp, "", 7000, 7000, 7000, 0x80))},
      {"ifname not NUL-terminated", PifId::kHost, add(no_nul)},
      {"dual stack with 127.0.0.1", PifId::kHost, add(dual_v4)},
      {"dual stack with ::1", PifId::kHost, add(dual_v6)},
      {"dual stack with a target address", PifId::kHost,
       add(MakeRule(kProtoTcp, "", 7000, 7000, 7000, 0, "192.0.2.7")),
       "Dual stack forward to IPv4 address 192.0.2.7 unsupported"},
      {"IPv4 listen, IPv6 target", PifId::kHost,
       add(MakeRule(kProtoTcp, "127.0.0.1", 7000, 7000, 7000, 0, "2001:db8::5"))},
      {"IPv6 listen, IPv4 target", PifId::kHost,
       add(MakeRule(kProtoTcp, "::1", 7000, 7000, 7000, 0, "192.0.2.7"))},
      {":: (not dual stack) listen, IPv4 target", PifId::kHost,
       add(MakeRule(kProtoUdp, "::", 7000, 7000, 7000, 0, "192.0.2.7"))},
      {"IPv4 multicast target", PifId::kHost,
       add(MakeRule(kProtoUdp, "0.0.0.0", 7000, 7000, 7000, 0, "224.0.0.1"))},
      {"IPv6 multicast target", PifId::kHost,
       add(MakeRule(kProtoUdp, "::", 7000, 7000, 7000, 0, "ff02::1"))},
      {"overlaps [*]:5000", PifId::kHost, add(MakeRule(kProtoTcp, "127.0.0.1", 5000, 5000, 5000))},
      {"overlaps 8000-8010", PifId::kHost, add(MakeRule(kProtoTcp, "", 8005, 8020, 8005))},
      {"overlaps UDP 5353", PifId::kHost, add(MakeRule(kProtoUdp, "0.0.0.0", 5353, 5353, 5353))},
      {"a rule twice", PifId::kHost, add(MakeRule(kProtoTcp, "", 5000, 5000, 5000))},
      {"256 rules", PifId::kHost,
       [](std::vector<Rule>* rules) {
         for (uint16_t i = 0; rules->size() < 256; i++)
           rules->push_back(MakeRule(kProtoTcp, "", 30000 + i, 30000 + i, 30000 + i));
       }},
      {"HOST and SPLICE forward into each other", PifId::kHost,
       add(MakeRule(kProtoTcp, "", 7100, 7100, 7100))},
      {"invalid SPLICE rule", PifId::kSplice,
       add(MakeRule(kProtoTcp, "", 7200, 7100, 7200, 0, "", "lo"))},
      {"SPLICE overlap", PifId::kSplice,
       add(MakeRule(kProtoTcp, "", 7100, 7100, 7300, 0, "", "lo"))},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    TableSet set = before.tables;
    // A valid new rule in the same update must not be applied either.
    set.Find(PifId::kHost)->rules.push_back(MakeRule(kProtoTcp, "", 7500, 7500, 7500));
    c.edit(&set.Find(c.pif)->rules);
    Reply r = Transact(ctl_, TxnUpdateOf(set));
    ASSERT_TRUE(r.has_status) << r.decode_error << " err " << r.err;
    EXPECT_EQ(r.status.code, wire::StatusCode::kRejected) << r.status.message;
    EXPECT_FALSE(r.status.message.empty());
    EXPECT_NE(r.status.message.find(c.message_has), std::string::npos) << r.status.message;
    EXPECT_TRUE(r.status.report.empty()) << "nothing was attempted";
    Listing now = ListControl(ctl_);
    ASSERT_TRUE(now.ok()) << now.error;
    EXPECT_EQ(now.bytes, before.bytes) << TablesText(now.tables);
  }
  EXPECT_EQ(ListenerInode(*host_, AF_INET6, 7500), 0u);
  EXPECT_EQ(EchoByte(*host_, V4(5000)), 0);
}

// ---- Section 5.1 and 5.8: hostile clients ----

struct Hostile {
  const char* name;
  wire::Bytes bytes;
  bool shut_wr;
  // The status a server must send, or -1: none required (the client broke
  // off), but if one comes it must be PROTOCOL_ERROR.
  int code;
};

TEST_F(ControlTest, HostileClientsChangeNothing) {
  auto echo = StartEcho(*target_, "127.0.0.1", 5000);
  ASSERT_TRUE(echo);
  auto d = Start({"--control-timeout", "2", "-t", "5000", "-u", "5353"});
  ASSERT_TRUE(d);
  Listing before = ListControl(ctl_);
  ASSERT_TRUE(before.ok()) << before.error;
  Pinger ping(*host_, V4(5000));

  const std::vector<Rule> host = RulesOf(before.tables, PifId::kHost);
  const wire::Bytes host_block = Block(1, host);
  const wire::Bytes end = {0};
  wire::Bytes absurd = {1};
  PutU32(0xffffffffu, &absurd);
  wire::Bytes half_rules = {1};
  PutU32(2, &half_rules);
  half_rules.insert(half_rules.end(), host_block.begin() + 5, host_block.begin() + 5 + 80);
  const int kProto = static_cast<int>(wire::StatusCode::kProtocolError);
  const int kRej = static_cast<int>(wire::StatusCode::kRejected);
  const std::vector<Hostile> cases = {
      // Without the client magic a client speaks version 2: it gets no status.
      {"text garbage after the hello", Text("hello, world\n"), false, -1},
      {"binary garbage after the hello", wire::Bytes(64, 0xa5), false, -1},
      {"garbage after the client magic", Concat({ClientMagic(), Text("hello, world\n")}), false,
       kProto},
      {"wrong client magic", Concat({Text(std::string("basil:x\0", 8)), host_block, end}), false,
       kProto},
      {"client magic of another protocol", Concat({Text("bogus!!!"), host_block, end}), false,
       kProto},
      {"count 2^32-1", Concat({ClientMagic(), absurd}), false, kProto},
      {"count 2^32-1, version 2", absurd, false, -1},
      {"unknown pif 9", Concat({ClientMagic(), Block(9, {}), end}), false, kRej},
      {"pif 2 (TAP: no table here)", Concat({ClientMagic(), Block(2, {}), end}), false, kRej},
      {"repeated pif", Concat({ClientMagic(), host_block, host_block, end}), false, kRej},
      {"truncated magic", Text("basi"), true, -1},
      {"truncated count", Concat({ClientMagic(), wire::Bytes{1, 0, 0}}), true, -1},
      {"truncated rules", Concat({ClientMagic(), half_rules}), true, -1},
      {"no terminating u8 0", Concat({ClientMagic(), host_block}), true, -1},
  };
  for (const Hostile& c : cases) {
    SCOPED_TRACE(c.name);
    ControlConn conn = OpenControl(ctl_);
    ASSERT_TRUE(conn.fd) << conn.listing.error;
    Reply r = SendAndRead(conn.fd.get(), c.bytes, c.shut_wr, In(5000 * Slowdown()));
    EXPECT_EQ(r.err, 0) << std::strerror(r.err);
    EXPECT_TRUE(r.decode_error.empty()) << r.decode_error;
    if (c.code >= 0) {
      ASSERT_TRUE(r.has_status) << "no status; " << r.bytes.size() << " bytes";
      EXPECT_EQ(static_cast<int>(r.status.code), c.code) << r.status.message;
      EXPECT_FALSE(r.status.message.empty());
    } else if (r.has_status) {
      EXPECT_EQ(static_cast<int>(r.status.code), kProto) << r.status.message;
    }
    Listing now = ListControl(ctl_);
    ASSERT_TRUE(now.ok()) << "next client not served: " << now.error;
    EXPECT_EQ(now.bytes, before.bytes) << TablesText(now.tables);
    EXPECT_EQ(EchoByte(*host_, V4(5000)), 0);
  }
  // Forwarding went on beside the hostile clients: the pinger's round trips
  // keep completing (waited for, bounded: on a loaded machine its thread may
  // not have been scheduled yet within the loop's quarter second).
  for (Deadline dl = In(3000 * Slowdown()); ping.count() == 0 && MsLeft(dl) > 0;)
    poll(nullptr, 0, 10);
  EXPECT_GT(ping.count(), 0);
  ping.Stop();
  EXPECT_EQ(ping.err(), 0) << std::strerror(ping.err());
}

TEST_F(ControlTest, StallingClientIsDroppedAndTheNextServed) {
  auto echo = StartEcho(*target_, "127.0.0.1", 5000);
  ASSERT_TRUE(echo);
  auto d = Start({"--control-timeout", "1", "-t", "5000"});
  ASSERT_TRUE(d);
  Listing before = ListControl(ctl_);
  ASSERT_TRUE(before.ok()) << before.error;
  Pinger ping(*host_, V4(5000));

  const wire::Bytes full = TxnUpdateOf(before.tables);
  for (size_t sent : {size_t{0}, size_t{30}}) {
    SCOPED_TRACE("stalls after " + std::to_string(sent) + " bytes of update");
    ControlConn staller = OpenControl(ctl_);
    ASSERT_TRUE(staller.fd) << staller.listing.error;
    ASSERT_EQ(SendAll(staller.fd.get(), full.data(), sent, In(1000)), 0);
    // The next client waits for its hello until the staller is dropped.
    auto t0 = Clock::now();
    int err = 0;
    Fd next = UnixConnect(ctl_, &err);
    ASSERT_TRUE(next) << std::strerror(err);
    Listing l = ReadListing(next.get(), In(5000 * Slowdown()));
    int64_t waited =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    ASSERT_TRUE(l.ok()) << l.error;
    EXPECT_EQ(l.bytes, before.bytes);
    EXPECT_GE(waited, 500) << "served before the staller was dropped?";
    EXPECT_LE(waited, 1000 + 2000 * Slowdown());
    // The staller's connection was closed, with no APPLIED status.
    std::string rest;
    EXPECT_EQ(RecvToEof(staller.fd.get(), &rest, In(1000 * Slowdown())), 0);
    EXPECT_TRUE(rest.empty() || rest[0] != 0) << "a stalled update was applied";
    // Sending the rest now changes nothing either.
    SendAll(staller.fd.get(), full.data() + sent, full.size() - sent, In(100));
    next.Reset();
  }
  EXPECT_NE(d->Log().find("stalled"), std::string::npos) << d->Log();
  Listing now = ListControl(ctl_);
  EXPECT_EQ(now.bytes, before.bytes) << TablesText(now.tables);
  EXPECT_EQ(EchoByte(*host_, V4(5000)), 0);
  ping.Stop();
  EXPECT_EQ(ping.err(), 0);
  // A well-formed client is served normally.
  CmdResult add = RunPesto({"-A", "-t", "6001"}, ctl_);
  EXPECT_EQ(add.exit_code, 0) << add.output;
}

TEST_F(ControlTest, DisconnectMidUpdateChangesNothing) {
  auto echo = StartEcho(*target_, "127.0.0.1", 5000);
  ASSERT_TRUE(echo);
  auto d = Start({"-t", "5000"});
  ASSERT_TRUE(d);
  Listing before = ListControl(ctl_);
  ASSERT_TRUE(before.ok()) << before.error;
  TableSet more = before.tables;
  more.Find(PifId::kHost)->rules.push_back(MakeRule(kProtoTcp, "", 6001, 6001, 6001));
  const wire::Bytes full = TxnUpdateOf(more);
  Pinger ping(*host_, V4(5000));

  for (size_t cut : {size_t{1}, size_t{8}, size_t{13}, full.size() / 2, full.size() - 1}) {
    SCOPED_TRACE("closes after " + std::to_string(cut) + " of " + std::to_string(full.size()));
    ControlConn c = OpenControl(ctl_);
    ASSERT_TRUE(c.fd) << c.listing.error;
    ASSERT_EQ(SendAll(c.fd.get(), full.data(), cut, In(1000)), 0);
    c.fd.Reset();
    Listing now = ListControl(ctl_);
    ASSERT_TRUE(now.ok()) << "next client not served: " << now.error;
    EXPECT_EQ(now.bytes, before.bytes) << TablesText(now.tables);
    EXPECT_EQ(EchoByte(*host_, V4(5000)), 0);
  }
  {
    // A complete update from a client that can no longer read its status
    // (it shut its reading side: the server's write fails): undone.
    SCOPED_TRACE("complete update, status undeliverable");
    ControlConn c = OpenControl(ctl_);
    ASSERT_TRUE(c.fd) << c.listing.error;
    ASSERT_EQ(shutdown(c.fd.get(), SHUT_RD), 0);
    ASSERT_EQ(SendAll(c.fd.get(), full.data(), full.size(), In(1000)), 0);
    Listing now = ListControl(ctl_, 5000);
    ASSERT_TRUE(now.ok()) << now.error;
    EXPECT_EQ(now.bytes, before.bytes) << TablesText(now.tables);
    EXPECT_EQ(EchoByte(*host_, V4(6001)), ECONNREFUSED);
    EXPECT_NE(d->Log().find("gone before its status"), std::string::npos) << d->Log();
  }
  ping.Stop();
  EXPECT_GT(ping.count(), 0);
  EXPECT_EQ(ping.err(), 0) << std::strerror(ping.err());
  // The same update, delivered, applies.
  Reply ok = Transact(ctl_, full);
  ASSERT_TRUE(ok.has_status) << ok.decode_error;
  EXPECT_EQ(ok.status.code, wire::StatusCode::kApplied) << ok.status.message;
  EXPECT_NE(ListenerInode(*host_, AF_INET6, 6001), 0u);
}

// A client that trickles its update a byte at a time is still bound by the
// timeout of its whole transaction.
TEST_F(ControlTest, TricklingClientIsDropped) {
  auto d = Start({"--control-timeout", "1", "-t", "5000"});
  ASSERT_TRUE(d);
  ControlConn c = OpenControl(ctl_);
  ASSERT_TRUE(c.fd) << c.listing.error;
  TableSet more = c.listing.tables;
  more.Find(PifId::kHost)->rules.push_back(MakeRule(kProtoTcp, "", 6001, 6001, 6001));
  const wire::Bytes full = TxnUpdateOf(more);
  std::atomic<bool> stop{false};
  std::thread trickle([&] {
    for (size_t i = 0; i + 1 < full.size() && !stop; i++) {
      if (SendAll(c.fd.get(), &full[i], 1, In(1000)) != 0) return;
      usleep(200000);
    }
  });
  auto t0 = Clock::now();
  Listing next = ListControl(ctl_, 5000);
  int64_t waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  stop = true;
  trickle.join();
  ASSERT_TRUE(next.ok()) << next.error;
  EXPECT_EQ(next.bytes, c.listing.bytes);
  EXPECT_LE(waited, 1000 + 2000 * Slowdown());
}

// A pif the update does not name keeps its table; an update naming none
// changes nothing and is APPLIED.
TEST_F(ControlTest, UnnamedPifKeepsItsTable) {
  auto d = Start({"-t", "5000", "-T", "7000"});
  ASSERT_TRUE(d);
  Listing before = ListControl(ctl_);
  ASSERT_TRUE(before.ok()) << before.error;
  Reply empty = Transact(ctl_, TxnUpdate({}));
  ASSERT_TRUE(empty.has_status) << empty.decode_error;
  EXPECT_EQ(empty.status.code, wire::StatusCode::kApplied) << empty.status.message;
  EXPECT_EQ(ListControl(ctl_).bytes, before.bytes);

  std::vector<Rule> splice = RulesOf(before.tables, PifId::kSplice);
  splice.push_back(MakeRule(kProtoTcp, "", 7001, 7001, 7001, 0, "", "lo"));
  Reply r = Transact(ctl_, TxnUpdate({{static_cast<uint8_t>(PifId::kSplice), splice}}));
  ASSERT_TRUE(r.has_status) << r.decode_error;
  EXPECT_EQ(r.status.code, wire::StatusCode::kApplied) << r.status.message;
  ASSERT_EQ(r.status.report.size(), 1u) << "one report block per pif of the update";
  EXPECT_EQ(r.status.report[0].pif, static_cast<uint8_t>(PifId::kSplice));
  Listing after = ListControl(ctl_);
  EXPECT_EQ(RulesOf(after.tables, PifId::kHost), RulesOf(before.tables, PifId::kHost));
  EXPECT_EQ(RulesOf(after.tables, PifId::kSplice), splice);
  EXPECT_NE(ListenerInode(*target_, AF_INET6, 7001), 0u);
  EXPECT_NE(ListenerInode(*host_, AF_INET6, 5000), 0u);
}

// ---- Interop with the passt project's captured bytes ----

const std::vector<std::string> kInteropArgs = {
    "-t", "15201",       "-t", "127.0.0.1/8000-8010:9000-9010",
    "-t", "::1/2222:22", "-u", "5353",
    "-u", "10000-10049", "-u", "10051-10100",
    "-T", "3000",        "-U", "53"};

std::vector<Rule> InteropHost() {
  return {MakeRule(kProtoTcp, "", 15201, 15201, 15201),
          MakeRule(kProtoTcp, "127.0.0.1", 8000, 8010, 9000),
          MakeRule(kProtoTcp, "::1", 2222, 2222, 22),
          MakeRule(kProtoUdp, "", 5353, 5353, 5353),
          MakeRule(kProtoUdp, "", 10000, 10049, 10000),
          MakeRule(kProtoUdp, "", 10051, 10100, 10051)};
}
std::vector<Rule> InteropSplice() {
  return {MakeRule(kProtoTcp, "", 3000, 3000, 3000, 0, "", "lo"),
          MakeRule(kProtoUdp, "", 53, 53, 53, 0, "", "lo")};
}

// The captured listing with caps 0x3f; ours must differ only in caps bit 31.
void ExpectInteropListing(const wire::Bytes& ours) {
  const std::vector<uint8_t> theirs =
      testing::ReadFileBytes(testing::InteropDir() + "/server_listing.bin");
  ASSERT_EQ(theirs.size(), 743u);
  ASSERT_EQ(ours.size(), theirs.size());
  // Offsets of the caps fields: HOST after hello (20), id, name (128); SPLICE
  // after HOST's caps, count and 6 rules, then id and name.
  const size_t host_caps = 20 + 1 + 128;
  const size_t splice_caps = host_caps + 4 + 4 + 6 * 56 + 1 + 128;
  for (size_t caps : {host_caps, splice_caps}) {
    EXPECT_EQ(wire::Bytes(theirs.begin() + caps, theirs.begin() + caps + 4),
              (wire::Bytes{0, 0, 0, 0x3f}));
    EXPECT_EQ(wire::Bytes(ours.begin() + caps, ours.begin() + caps + 4),
              (wire::Bytes{0x80, 0, 0, 0x3f}));
  }
  wire::Bytes a = ours;
  for (size_t caps : {host_caps, splice_caps}) a[caps] = 0;
  EXPECT_EQ(a, theirs);
}

TEST_F(ControlTest, InteropListingIsTheCapturedBytes) {
  auto d = Start(kInteropArgs);
  ASSERT_TRUE(d);
  Listing l = ListControl(ctl_);
  ASSERT_TRUE(l.ok()) << l.error;
  ExpectInteropListing(l.bytes);
  EXPECT_EQ(RulesOf(l.tables, PifId::kHost), InteropHost());
  EXPECT_EQ(RulesOf(l.tables, PifId::kSplice), InteropSplice());

  // pesto lists the rules as the passt project's client prints them.
  CmdResult list = RunPesto({}, ctl_);
  EXPECT_EQ(list.exit_code, 0);
  std::string want = testing::ReadFileText(testing::InteropDir() + "/pesto_list.txt");
  ASSERT_NE(want.find('\n'), std::string::npos);
  ASSERT_NE(list.output.find('\n'), std::string::npos) << list.output;
  EXPECT_EQ(list.output.substr(list.output.find('\n')), want.substr(want.find('\n')));
  // And shows a change the same way (then our status follows).
  CmdResult show =
      RunPesto({"-s", "-D", "-t", "127.0.0.1/8000-8010:9000-9010", "-C", "SPLICE"}, ctl_);
  EXPECT_EQ(show.exit_code, 0) << show.output;
  std::string shown = testing::ReadFileText(testing::InteropDir() + "/pesto_show_delete.txt");
  EXPECT_EQ(show.output.substr(0, shown.size()), shown);
}

TEST_F(ControlTest, InteropClientUpdatesApply) {
  std::string error;
  ASSERT_TRUE(host_->AddLink("eth0", {"192.0.2.1/24"}, &error)) << error;
  struct Case {
    const char* file;
    std::vector<Rule> host;
    std::vector<Rule> splice;
  };
  std::vector<Rule> added = InteropHost();
  added.push_back(MakeRule(kProtoTcp, "192.0.2.1", 443, 443, 8443, 0, "", "eth0"));
  added.push_back(MakeRule(kProtoUdp, "", 7000, 7002, 7000));
  std::vector<Rule> deleted = InteropHost();
  deleted.erase(deleted.begin() + 1);
  const std::vector<Case> cases = {
      {"client_update_add.bin", added, InteropSplice()},
      {"client_update_replace.bin",
       {MakeRule(kProtoTcp, "", 80, 80, 80), MakeRule(kProtoTcp, "0.0.0.0", 8080, 8081, 80),
        MakeRule(kProtoUdp, "::", 53, 53, 53)},
       {}},
      {"client_update_delete.bin", deleted, {}},
      {"client_listing_only.bin", InteropHost(), InteropSplice()},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    ctl_ = dir_.Path(std::string(c.file) + ".sock");
    auto d = Start(kInteropArgs);
    ASSERT_TRUE(d);
    std::vector<uint8_t> bytes = testing::ReadFileBytes(testing::InteropDir() + "/" + c.file);
    ControlConn conn = OpenControl(ctl_);
    ASSERT_TRUE(conn.fd) << conn.listing.error;
    ExpectInteropListing(conn.listing.bytes);
    // What the passt project's pesto does: write, then close.
    ASSERT_EQ(SendAll(conn.fd.get(), bytes.data(), bytes.size(), In(2000)), 0);
    conn.fd.Reset();
    Listing after = ListControl(ctl_, 5000);
    ASSERT_TRUE(after.ok()) << after.error;
    EXPECT_EQ(RulesOf(after.tables, PifId::kHost), c.host) << TablesText(after.tables);
    EXPECT_EQ(RulesOf(after.tables, PifId::kSplice), c.splice) << TablesText(after.tables);
    // The listeners follow the tables.
    auto has = [&](uint16_t port) {
      return std::any_of(c.host.begin(), c.host.end(),
                         [&](const Rule& r) { return r.first == port && r.proto == kProtoTcp; });
    };
    EXPECT_EQ(ListenerInode(*host_, AF_INET, 443) != 0, has(443));
    EXPECT_EQ(ListenerInode(*host_, AF_INET6, 2222) != 0, has(2222));
    EXPECT_EQ(ListenerInode(*host_, AF_INET, 8080) != 0, has(8080));
    EXPECT_EQ(d->Stop(), 0);
    // The next daemon binds the same ports: an exited daemon holds none
    // (SwapTest.ExitReleasesPortsAtOnce).
    EXPECT_EQ(CountListeners(*host_, 1, 65535), 0);
  }
}

// PROTOCOL.md section 4: after a version-2 update "the server applies the
// tables and sends nothing back". (Regression: ringfwd used to write a
// status to version-2 clients too; fixed in b22be6f.)
TEST_F(ControlTest, VersionTwoUpdateGetsNoReply) {
  auto d = Start(kInteropArgs);
  ASSERT_TRUE(d);
  std::vector<uint8_t> bytes =
      testing::ReadFileBytes(testing::InteropDir() + "/client_update_delete.bin");
  ControlConn conn = OpenControl(ctl_);
  ASSERT_TRUE(conn.fd) << conn.listing.error;
  Reply r = SendAndRead(conn.fd.get(), bytes, true, In(5000 * Slowdown()));
  EXPECT_EQ(r.err, 0);
  EXPECT_TRUE(r.bytes.empty()) << r.bytes.size() << " bytes sent back to a version-2 client";
  Listing after = ListControl(ctl_);
  EXPECT_EQ(RulesOf(after.tables, PifId::kSplice).size(), 0u);
}

// ---- Peer uid ----

struct UidProbe {
  pid_t pid = -1;
  int connect_err = -1;  // errno of connect(), 0 if it connected
  std::string got;       // what the server sent (up to the 20-byte hello)
};

// Forks a child that takes uid and gid `uid`, connects to `path` and reads.
UidProbe ConnectAs(const std::string& path, uid_t uid) {
  UidProbe probe;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), std::min(path.size(), sizeof(sa.sun_path) - 1));
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return probe;
  }
  const int wait_ms = 3000 * Slowdown();
  pid_t pid = fork();
  if (pid == 0) {
    // Child: raw system calls only.
    close(p[0]);
    if (syscall(SYS_setgroups, 0, nullptr) != 0 || syscall(SYS_setgid, uid) != 0 ||
        syscall(SYS_setuid, uid) != 0)
      _exit(3);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int32_t err = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0 ? 0 : errno;
    if (write(p[1], &err, sizeof(err)) != sizeof(err)) _exit(4);
    char buf[wire::kHelloSize];
    size_t total = 0;
    while (err == 0 && total < sizeof(buf)) {
      pollfd pf{fd, POLLIN, 0};
      if (poll(&pf, 1, wait_ms) <= 0) break;
      ssize_t n = read(fd, buf + total, sizeof(buf) - total);
      if (n <= 0) break;
      total += static_cast<size_t>(n);
    }
    if (total > 0 && write(p[1], buf, total) < 0) _exit(5);
    _exit(0);
  }
  close(p[1]);
  Fd rd(p[0]);
  probe.pid = pid;
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  int32_t err = -1;
  if (read(rd.get(), &err, sizeof(err)) == sizeof(err)) probe.connect_err = err;
  char buf[64];
  ssize_t n = read(rd.get(), buf, sizeof(buf));
  if (n > 0) probe.got.assign(buf, static_cast<size_t>(n));
  return probe;
}

TEST_F(ControlTest, OnlyTheOwnerByDefault) {
  auto d = Start({"-t", "5000"});
  ASSERT_TRUE(d);
  UidProbe nobody = ConnectAs(ctl_, 65534);
  EXPECT_EQ(nobody.connect_err, EACCES) << std::strerror(nobody.connect_err);
  EXPECT_TRUE(nobody.got.empty());
  EXPECT_TRUE(ListControl(ctl_).ok()) << "root not served";
}

TEST_F(ControlTest, AllowedUidIsServedOthersAreRefused) {
  auto d = Start({"--control-allow-uid", "65534", "-t", "5000"});
  ASSERT_TRUE(d);
  UidProbe allowed = ConnectAs(ctl_, 65534);
  EXPECT_EQ(allowed.connect_err, 0) << std::strerror(allowed.connect_err);
  auto hello = wire::DecodeHello(wire::Bytes(allowed.got.begin(), allowed.got.end()));
  EXPECT_TRUE(hello.ok()) << allowed.got.size() << " bytes: " << hello.error;

  UidProbe other = ConnectAs(ctl_, 65533);
  EXPECT_EQ(other.connect_err, 0) << "the socket is mode 0666: "
                                  << std::strerror(other.connect_err);
  EXPECT_TRUE(other.got.empty()) << "a refused uid got " << other.got.size() << " bytes";
  std::string log = d->Log();
  std::string line;
  for (size_t at = 0; (at = log.find("refused", at)) != std::string::npos; at++) {
    size_t start = log.rfind('\n', at);
    line = log.substr(start == std::string::npos ? 0 : start + 1,
                      log.find('\n', at) - (start == std::string::npos ? 0 : start + 1));
  }
  EXPECT_NE(line.find("pid " + std::to_string(other.pid)), std::string::npos) << log;
  EXPECT_NE(line.find("uid 65533"), std::string::npos) << log;
  EXPECT_TRUE(ListControl(ctl_).ok()) << "root not served after a refusal";
}

// ---- pesto against a live daemon ----

TEST_F(ControlTest, PestoShowsAndReportsAsJson) {
  auto backend = StartEcho(*target_, "127.0.0.1", 9000);
  ASSERT_TRUE(backend);
  auto d = Start({"-t", "5000"});
  ASSERT_TRUE(d);
  CmdResult show = RunPesto({"-s", "-A", "-t", "8081:9000"}, ctl_);
  EXPECT_EQ(show.exit_code, 0) << show.output;
  size_t prev = show.output.find("Previous configuration (ctl.sock)\n");
  size_t upd = show.output.find("Updated configuration (ctl.sock)\n");
  ASSERT_NE(prev, std::string::npos) << show.output;
  ASSERT_NE(upd, std::string::npos) << show.output;
  EXPECT_LT(prev, upd);
  const std::string rule = "    TCP [*]:8081  =>  9000 \n";
  EXPECT_EQ(show.output.substr(prev, upd - prev).find(rule), std::string::npos) << show.output;
  EXPECT_NE(show.output.find(rule, upd), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("Update APPLIED"), std::string::npos) << show.output;
  EXPECT_EQ(EchoByte(*host_, V4(8081)), 0);

  CmdResult json = RunPesto({"--json", "-A", "-t", "8082:9000"}, ctl_);
  EXPECT_EQ(json.exit_code, 0) << json.output;
  EXPECT_NE(json.output.find("\"status\": {\"code\": 0, \"name\": \"APPLIED\""), std::string::npos)
      << json.output;
  EXPECT_NE(json.output.find("{\"pif\": 1, \"rules\": [{\"bound\": 1, \"failed\": 0, \"errno\": 0"),
            std::string::npos)
      << json.output;
  EXPECT_NE(json.output.find("\"updated\": "), std::string::npos) << json.output;
  EXPECT_EQ(EchoByte(*host_, V4(8082)), 0);

  // A failure, as JSON: the held port's errno in the report, exit 2.
  Fd held = TcpListen(*host_, Addr::Of("0.0.0.0", 6002));
  ASSERT_TRUE(held);
  CmdResult failed = RunPesto({"--json", "-A", "-t", "6002"}, ctl_);
  EXPECT_EQ(failed.exit_code, 2) << failed.output;
  EXPECT_NE(failed.output.find("\"code\": 2, \"name\": \"APPLY_FAILED\""), std::string::npos)
      << failed.output;
  EXPECT_NE(
      failed.output.find("\"bound\": 0, \"failed\": 1, \"errno\": " + std::to_string(EADDRINUSE)),
      std::string::npos)
      << failed.output;
}

}  // namespace
}  // namespace ringfwd::e2e
