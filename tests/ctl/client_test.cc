#include "ctl/client.h"

#include <chrono>
#include <thread>

#include "ctl/pesto_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/ctl/fake_server.h"
#include "tests/test_util.h"

namespace ringfwd::ctl {
namespace {

using ::ringfwd::testing::FakeServer;
using ::ringfwd::testing::ReadUntil;
using ::ringfwd::testing::SendAll;
using ::testing::HasSubstr;

wire::Bytes Listing() {
  return ringfwd::testing::ReadFileBytes(ringfwd::testing::InteropDir() + "/server_listing.bin");
}

TEST(Client, ReadsAListingThatArrivesByteByByte) {
  FakeServer server([](int fd) {
    for (uint8_t b : Listing()) {
      if (!SendAll(fd, {b})) return;
    }
    wire::Bytes rest;
    ReadUntil(fd, &rest, 5000);
  });
  std::vector<std::string> trace;
  ClientOptions opts;
  opts.debug = [&trace](const std::string& line) { trace.push_back(line); };
  auto c = Client::Connect(server.path(), opts);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->tables().tables.size(), 2u);
  EXPECT_EQ(c->tables().tables[0].rules.size(), 6u);
  EXPECT_EQ(c->tables().tables[1].name, "SPLICE");
  EXPECT_FALSE(SupportsTransactions(c->tables()));
  EXPECT_THAT(trace, ::testing::Contains(HasSubstr("listing: 2 pifs in 723 bytes")));
  c->Close();
}

TEST(Client, ConnectErrorNamesThePath) {
  auto c = Client::Connect("/nonexistent/ringfwd/ctl.sock");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "connect /nonexistent/ringfwd/ctl.sock: No such file or directory");
  auto too_long = Client::Connect(std::string(200, 'x'));
  EXPECT_FALSE(too_long.ok());
}

TEST(Client, SilentServerTimesOut) {
  FakeServer server([](int fd) {
    wire::Bytes rest;
    ReadUntil(fd, &rest, 5000);  // says nothing; ends when the client gives up
  });
  ClientOptions opts;
  opts.timeout_ms = 200;
  auto start = std::chrono::steady_clock::now();
  auto c = Client::Connect(server.path(), opts);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(c.status())) << c.status();
  EXPECT_EQ(c.status().message(), server.path() + ": timed out after 200 ms waiting for the hello");
  EXPECT_LT(took, std::chrono::seconds(3));
}

TEST(Client, StatusMayArriveInTheSameReadAsTheListing) {
  // A server that sends its status before reading the update still has it
  // understood: bytes past the listing are kept for the status decoder.
  wire::Bytes greeting = Listing();
  auto listing = wire::DecodeListing(
      wire::ByteSpan(greeting.data(), greeting.size()).subspan(wire::kHelloSize));
  ASSERT_TRUE(listing.ok());
  TableSet set = listing.value;
  for (Table& t : set.tables) t.caps |= kCapTxn;
  wire::Bytes all;
  wire::EncodeHello(wire::Hello{}, &all);
  wire::EncodeListing(set, &all);
  wire::StatusReply reply{wire::StatusCode::kApplied, "ok", {}};
  wire::EncodeStatus(reply, &all);
  wire::Bytes received;
  FakeServer server([&all, &received](int fd) {
    SendAll(fd, all);
    ReadUntil(fd, &received, 5000);
  });
  auto c = Client::Connect(server.path());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(SupportsTransactions(c->tables()));
  auto status = c->SendTransactional(c->tables());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, reply);
  server.Join();
  wire::Bytes want;
  wire::EncodeUpdateFromTables(c->tables(), true, &want);
  EXPECT_EQ(received, want);
}

TEST(Client, MalformedStatusIsAnError) {
  wire::Bytes greeting = Listing();
  auto listing = wire::DecodeListing(
      wire::ByteSpan(greeting.data(), greeting.size()).subspan(wire::kHelloSize));
  ASSERT_TRUE(listing.ok());
  TableSet set = listing.value;
  for (Table& t : set.tables) t.caps |= kCapTxn;
  wire::Bytes hello_listing;
  wire::EncodeHello(wire::Hello{}, &hello_listing);
  wire::EncodeListing(set, &hello_listing);
  FakeServer server([&hello_listing](int fd) {
    SendAll(fd, hello_listing);
    wire::Bytes got;
    ReadUntil(fd, &got, 5000, [](const wire::Bytes& b) {
      return wire::DecodeUpdate(wire::ByteSpan(b.data(), b.size())).ok();
    });
    SendAll(fd, {7, 0, 0, 0, 0, 0});  // unknown status code 7
  });
  auto c = Client::Connect(server.path());
  ASSERT_TRUE(c.ok()) << c.status();
  auto status = c->SendTransactional(set);
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.status().message(), HasSubstr("offset 0: unknown status code 7"));
}

TEST(PestoFormat, JsonStringEscapes) {
  EXPECT_EQ(JsonString("a\"b\\c\nd\x01"), "\"a\\\"b\\\\c\\nd\\u0001\"");
  EXPECT_EQ(JsonString("TCP [*]:80  =>  80 "), "\"TCP [*]:80  =>  80 \"");
}

TEST(PestoFormat, StatusWithoutReport) {
  EXPECT_EQ(FormatStatus({wire::StatusCode::kApplied, "", {}}, TableSet{}), "Update APPLIED\n");
  EXPECT_EQ(FormatStatus({wire::StatusCode::kProtocolError, "offset 9: bad", {{9, {{0, 1, 0}}}}},
                         TableSet{}),
            "Update PROTOCOL_ERROR: offset 9: bad\n  PIF9\n    rule 1: 0 ports bound, 1 failed\n");
}

}  // namespace
}  // namespace ringfwd::ctl
