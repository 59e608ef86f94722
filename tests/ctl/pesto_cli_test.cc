// End-to-end tests of the pesto binary against a scripted server: the bytes
// it sends must equal, byte for byte, what the passt project's pesto sent for
// the same command line (interop/client_*.bin), and what it prints must
// match that client's output.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "ctl/wire.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/ctl/fake_server.h"
#include "tests/test_util.h"

extern char** environ;

namespace ringfwd {
namespace {

using ::ringfwd::testing::FakeServer;
using ::ringfwd::testing::InteropDir;
using ::ringfwd::testing::ReadFileBytes;
using ::ringfwd::testing::ReadFileText;
using ::ringfwd::testing::SendThenRecord;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAreArray;

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs bin/pesto with `args`, stdout and stderr captured through files in
// `dir`. Waits for it to exit.
Result RunPesto(const std::vector<std::string>& args, const std::string& dir) {
  std::string bin = ringfwd::testing::BinDir() + "/pesto";
  std::string out_path = dir + "/stdout", err_path = dir + "/stderr";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<char*> argv{bin.data()};
  std::vector<std::string> copy = args;
  for (std::string& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  Result r;
  int rc = posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  EXPECT_EQ(rc, 0) << "spawn " << bin << ": " << std::strerror(rc);
  if (rc != 0) return r;
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = ReadFileText(out_path);
  r.err = ReadFileText(err_path);
  return r;
}

wire::Bytes Interop(const std::string& name) { return ReadFileBytes(InteropDir() + "/" + name); }

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Runs pesto with `args` after the socket path against a server that sends
// `greeting` and records what comes back.
struct Session {
  Result result;
  wire::Bytes received;
  bool accepted = false;
};

Session RunAgainst(const wire::Bytes& greeting, const std::vector<std::string>& args) {
  Session s;
  FakeServer server(SendThenRecord(greeting, &s.received));
  std::vector<std::string> all{server.path()};
  all.insert(all.end(), args.begin(), args.end());
  s.result = RunPesto(all, server.dir());
  server.Join();
  s.accepted = server.accepted();
  return s;
}

TEST(PestoCli, ListOnlySendsNothingAndPrintsTheRules) {
  Session s = RunAgainst(Interop("server_listing.bin"), {});
  EXPECT_EQ(s.result.exit_code, 0) << s.result.err;
  EXPECT_EQ(s.received, Interop("client_listing_only.bin"));
  std::vector<std::string> got = Lines(s.result.out);
  std::vector<std::string> want = Lines(ReadFileText(InteropDir() + "/pesto_list.txt"));
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got[0], "Configuration (ctl.sock)");
  // Every line after the header is identical, trailing spaces included.
  EXPECT_EQ(std::vector<std::string>(got.begin() + 1, got.end()),
            std::vector<std::string>(want.begin() + 1, want.end()));
  EXPECT_EQ(s.result.err, "");
}

struct GoldenCase {
  std::vector<std::string> args;
  const char* file;
};

TEST(PestoCli, UpdatesAreByteIdenticalToThePasstClient) {
  std::vector<GoldenCase> cases = {
      {{"-A", "-t", "192.0.2.1%eth0/443:8443", "-u", "7000-7002"}, "client_update_add.bin"},
      {{"-t", "80", "-t", "0.0.0.0/8080-8081:80-81", "-u", "::/53", "-T", "none"},
       "client_update_replace.bin"},
      {{"-s", "-D", "-t", "127.0.0.1/8000-8010:9000-9010", "-C", "SPLICE"},
       "client_update_delete.bin"},
  };
  for (const GoldenCase& c : cases) {
    SCOPED_TRACE(c.file);
    Session s = RunAgainst(Interop("server_listing.bin"), c.args);
    EXPECT_EQ(s.result.exit_code, 0) << s.result.err;
    EXPECT_EQ(s.received, Interop(c.file));
    EXPECT_EQ(s.result.err, "");
  }
}

TEST(PestoCli, ShowDeletePrintsWhatThePasstClientPrinted) {
  Session s = RunAgainst(Interop("server_listing.bin"),
                         {"-s", "-D", "-t", "127.0.0.1/8000-8010:9000-9010", "-C", "SPLICE"});
  EXPECT_EQ(s.result.exit_code, 0) << s.result.err;
  EXPECT_EQ(s.result.out, ReadFileText(InteropDir() + "/pesto_show_delete.txt"));
}

TEST(PestoCli, BadSpecExits5AndSendsNothing) {
  Session s = RunAgainst(Interop("server_listing.bin"), {"-t", "70000"});
  EXPECT_EQ(s.result.exit_code, 5);
  EXPECT_THAT(s.result.err, StartsWith("pesto: "));
  EXPECT_THAT(s.result.err, HasSubstr("70000"));
  EXPECT_EQ(std::count(s.result.err.begin(), s.result.err.end(), '\n'), 1) << s.result.err;
  EXPECT_TRUE(s.received.empty());
}

TEST(PestoCli, UnreachableSocketExits5) {
  char tmpl[] = "/tmp/ringfwd_pesto_test.XXXXXX";
  std::string dir = mkdtemp(tmpl);
  Result r = RunPesto({dir + "/missing.sock"}, dir);
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(r.err, "pesto: connect " + dir + "/missing.sock: No such file or directory\n");
  std::filesystem::remove_all(dir);
}

TEST(PestoCli, WrongMagicOrVersionExits5) {
  wire::Bytes bad_magic = Interop("server_listing.bin");
  bad_magic[0] = 'B';
  Session s = RunAgainst(bad_magic, {"-t", "80"});
  EXPECT_EQ(s.result.exit_code, 5);
  EXPECT_THAT(s.result.err, HasSubstr("not a compatible pesto server"));
  EXPECT_THAT(s.result.err, HasSubstr("magic"));
  EXPECT_TRUE(s.received.empty());

  wire::Bytes v3 = Interop("server_listing.bin");
  v3[11] = 3;
  s = RunAgainst(v3, {});
  EXPECT_EQ(s.result.exit_code, 5);
  EXPECT_THAT(s.result.err, HasSubstr("version 3"));
}

TEST(PestoCli, ServerClosingMidListingExits5) {
  wire::Bytes cut = Interop("server_listing.bin");
  cut.resize(300);
  FakeServer server([&cut](int fd) { ringfwd::testing::SendAll(fd, cut); });
  Result r = RunPesto({server.path()}, server.dir());
  server.Join();
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(r.err, "pesto: " + server.path() +
                       ": connection closed by the server after 280 bytes of the listing\n");
}

TEST(PestoCli, DeleteThenAddInOneCommandLine) {
  Session s = RunAgainst(Interop("server_listing.bin"),
                         {"-D", "-u", "10000-10049", "-A", "-u", "10000-10010"});
  ASSERT_EQ(s.result.exit_code, 0) << s.result.err;
  auto d = wire::DecodeUpdate(wire::ByteSpan(s.received.data(), s.received.size()));
  ASSERT_TRUE(d.ok()) << d.error;
  EXPECT_EQ(d.consumed, s.received.size());
  EXPECT_FALSE(d.value.transactional);
  auto listing =
      wire::DecodeListing(wire::ByteSpan(Interop("server_listing.bin")).subspan(wire::kHelloSize));
  ASSERT_TRUE(listing.ok());
  const TableSet& before = listing.value;
  std::vector<Rule> want_host = before.tables[0].rules;
  Rule old_udp = want_host[4];
  ASSERT_EQ(old_udp.first, 10000);
  ASSERT_EQ(old_udp.last, 10049);
  want_host.erase(want_host.begin() + 4);
  Rule narrowed = old_udp;
  narrowed.last = 10010;
  want_host.push_back(narrowed);
  ASSERT_EQ(d.value.blocks.size(), 2u);
  EXPECT_EQ(d.value.blocks[0].pif, 1);
  EXPECT_THAT(d.value.blocks[0].rules, UnorderedElementsAreArray(want_host));
  EXPECT_EQ(d.value.blocks[1].pif, 3);
  EXPECT_EQ(d.value.blocks[1].rules, before.tables[1].rules);
}

// The captured listing with caps bit TXN set on every pif.
wire::Bytes TransactionalListing() {
  auto listing =
      wire::DecodeListing(wire::ByteSpan(Interop("server_listing.bin")).subspan(wire::kHelloSize));
  EXPECT_TRUE(listing.ok());
  TableSet set = listing.value;
  for (Table& t : set.tables) t.caps |= kCapTxn;
  wire::Bytes out;
  wire::EncodeHello(wire::Hello{}, &out);
  wire::EncodeListing(set, &out);
  return out;
}

// Serves a transactional listing, reads the update until it is complete,
// answers `reply`, then waits for the client to close.
FakeServer::Handler TransactionalServer(wire::StatusReply reply, wire::Bytes* received) {
  return [reply = std::move(reply), received](int fd) {
    ringfwd::testing::SendAll(fd, TransactionalListing());
    ringfwd::testing::ReadUntil(fd, received, 10000, [](const wire::Bytes& b) {
      return wire::DecodeUpdate(wire::ByteSpan(b.data(), b.size())).state !=
             wire::DecodeState::kNeedMore;
    });
    wire::Bytes out;
    wire::EncodeStatus(reply, &out);
    ringfwd::testing::SendAll(fd, out);
    wire::Bytes rest;
    ringfwd::testing::ReadUntil(fd, &rest, 10000);
    EXPECT_TRUE(rest.empty());
  };
}

TEST(PestoCli, TransactionalRejectedExits1AndPrintsTheMessage) {
  wire::Bytes received;
  FakeServer server(TransactionalServer(
      {wire::StatusCode::kRejected, "HOST rule 7 (TCP [*]:80  =>  80 ): loops back", {}},
      &received));
  Result r = RunPesto({server.path(), "-A", "-t", "80"}, server.dir());
  server.Join();
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Update REJECTED: HOST rule 7 (TCP [*]:80  =>  80 ): loops back"));
  EXPECT_EQ(r.err, "pesto: update REJECTED: HOST rule 7 (TCP [*]:80  =>  80 ): loops back\n");
  auto d = wire::DecodeUpdate(wire::ByteSpan(received.data(), received.size()));
  ASSERT_TRUE(d.ok()) << d.error;
  EXPECT_TRUE(d.value.transactional);
  EXPECT_EQ(d.consumed, received.size());
  ASSERT_EQ(d.value.blocks.size(), 2u);
  EXPECT_EQ(d.value.blocks[0].rules.size(), 7u);
  EXPECT_EQ(d.value.blocks[1].rules.size(), 2u);
}

TEST(PestoCli, TransactionalReportShowsEveryRule) {
  wire::StatusReply reply{wire::StatusCode::kApplyFailed,
                          "bind 127.0.0.1:8000: Address already in use",
                          {{1, {{1, 0, 0}, {3, 8, EADDRINUSE}}}, {3, {}}}};
  wire::Bytes received;
  FakeServer server(TransactionalServer(reply, &received));
  Result r = RunPesto(
      {server.path(), "-t", "15201", "-t", "127.0.0.1/8000-8010:9000-9010", "-C", "SPLICE"},
      server.dir());
  server.Join();
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.out,
            "Update APPLY_FAILED: bind 127.0.0.1:8000: Address already in use\n"
            "  HOST\n"
            "    TCP [*]:15201  =>  15201 : 1 port bound, 0 failed\n"
            "    TCP [127.0.0.1]:8000-8010  =>  9000-9010 : 3 ports bound, 8 failed (Address "
            "already in use)\n"
            "  SPLICE\n");
}

TEST(PestoCli, JsonListingAndStatus) {
  Session s = RunAgainst(Interop("server_listing.bin"), {"--json"});
  EXPECT_EQ(s.result.exit_code, 0) << s.result.err;
  EXPECT_TRUE(s.received.empty());
  EXPECT_THAT(s.result.out, StartsWith("{\"socket\": "));
  EXPECT_THAT(s.result.out, HasSubstr("\"id\": 1, \"name\": \"HOST\", \"caps\": 63"));
  EXPECT_THAT(s.result.out, HasSubstr("\"id\": 3, \"name\": \"SPLICE\""));
  EXPECT_THAT(s.result.out,
              HasSubstr("{\"proto\": \"TCP\", \"addr\": \"127.0.0.1\", \"target\": \"::\", "
                        "\"ifname\": \"\", \"first\": 8000, \"last\": 8010, \"to\": 9000, "
                        "\"flags\": 0, \"dual_stack\": false, \"weak\": false, \"scan\": false, "
                        "\"text\": \"TCP [127.0.0.1]:8000-8010  =>  9000-9010 \"}"));
  EXPECT_THAT(s.result.out, HasSubstr("\"ifname\": \"lo\""));
  EXPECT_THAT(s.result.out, Not(HasSubstr("\"status\"")));

  wire::Bytes received;
  FakeServer server(
      TransactionalServer({wire::StatusCode::kApplied, "", {{1, {{1, 0, 0}}}}}, &received));
  Result r = RunPesto({server.path(), "--json", "-t", "22"}, server.dir());
  server.Join();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"updated\": ["));
  EXPECT_THAT(r.out, HasSubstr("\"status\": {\"code\": 0, \"name\": \"APPLIED\", \"message\": "
                               "\"\", \"report\": [{\"pif\": 1, \"rules\": [{\"bound\": 1, "
                               "\"failed\": 0, \"errno\": 0, \"error\": \"\"}]}]}}"));
}

TEST(PestoCli, HelpAndVersion) {
  char tmpl[] = "/tmp/ringfwd_pesto_test.XXXXXX";
  std::string dir = mkdtemp(tmpl);
  Result help = RunPesto({"--help"}, dir);
  EXPECT_EQ(help.exit_code, 0);
  for (const char* opt : {"-t,", "-u,", "-T,", "-U,", "-A,", "-D,", "-C,", "-s,", "-d,", "-h,",
                          "--json", "--version", "PATH"}) {
    EXPECT_THAT(help.out, HasSubstr(opt));
  }
  Result version = RunPesto({"--version"}, dir);
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_THAT(version.out, HasSubstr("pesto"));
  Result none = RunPesto({}, dir);
  EXPECT_EQ(none.exit_code, 5);
  EXPECT_THAT(none.err, StartsWith("pesto: missing control socket PATH"));
  Result bad = RunPesto({"-q", "x"}, dir);
  EXPECT_EQ(bad.exit_code, 5);
  EXPECT_THAT(bad.err, HasSubstr("unknown option '-q'"));
  std::filesystem::remove_all(dir);
}

TEST(PestoCli, DebugTracesToStderr) {
  Session s = RunAgainst(Interop("server_listing.bin"), {"-d", "-A", "-u", "7000-7002"});
  EXPECT_EQ(s.result.exit_code, 0);
  EXPECT_THAT(s.result.err, HasSubstr("pesto: hello: version 2"));
  EXPECT_THAT(s.result.err, HasSubstr("version-2 update"));
  EXPECT_EQ(s.result.out, "");
}

}  // namespace
}  // namespace ringfwd
