#include "ctl/wire.h"

#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace ringfwd::wire {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A rule from its text-ish parts; an empty addr means DUAL_STACK_ANY on "::".
Rule R(uint8_t proto, const std::string& addr, const std::string& ifname, uint16_t first,
       uint16_t last, uint16_t to, uint8_t flags, const std::string& target = "") {
  Rule r;
  r.proto = proto;
  if (!addr.empty()) r.addr = *Addr6::Parse(addr);
  if (!target.empty()) r.target = *Addr6::Parse(target);
  std::memcpy(r.ifname.data(), ifname.data(), ifname.size());
  r.first = first;
  r.last = last;
  r.to = to;
  r.flags = flags;
  return r;
}

constexpr uint8_t T = kProtoTcp;
constexpr uint8_t U = kProtoUdp;

std::vector<Rule> ListedHostRules() {
  return {
      R(T, "", "", 15201, 15201, 15201, kFlagDualStackAny),
      R(T, "127.0.0.1", "", 8000, 8010, 9000, 0),
      R(T, "::1", "", 2222, 2222, 22, 0),
      R(U, "", "", 5353, 5353, 5353, kFlagDualStackAny),
      R(U, "", "", 10000, 10049, 10000, kFlagDualStackAny),
      R(U, "", "", 10051, 10100, 10051, kFlagDualStackAny),
  };
}

std::vector<Rule> ListedSpliceRules() {
  return {
      R(T, "", "lo", 3000, 3000, 3000, kFlagDualStackAny),
      R(U, "", "lo", 53, 53, 53, kFlagDualStackAny),
  };
}

TableSet ListedTables() {
  TableSet set;
  set.tables.push_back({PifId::kHost, "HOST", 0x3f, ListedHostRules()});
  set.tables.push_back({PifId::kSplice, "SPLICE", 0x3f, ListedSpliceRules()});
  return set;
}

Update UpdateOf(const std::vector<Rule>& host, const std::vector<Rule>& splice) {
  Update u;
  u.blocks.push_back({static_cast<uint8_t>(PifId::kHost), host});
  u.blocks.push_back({static_cast<uint8_t>(PifId::kSplice), splice});
  return u;
}

Bytes Interop(const std::string& name) {
  return ringfwd::testing::ReadFileBytes(ringfwd::testing::InteropDir() + "/" + name);
}

ByteSpan Span(const Bytes& b) { return ByteSpan(b.data(), b.size()); }

TEST(WireRule, FieldsAreBigEndianAtTheirOffsets) {
  Rule r = R(T, "192.0.2.1", "eth0", 443, 444, 8443, kFlagWeak, "192.0.2.9");
  uint8_t buf[kRuleSize];
  EncodeRule(r, buf);
  EXPECT_EQ(buf[10], 0xff);
  EXPECT_EQ(buf[12], 192);
  EXPECT_EQ(buf[16 + 15], 9);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf + 32)), "eth0");
  EXPECT_EQ(buf[48], 0x01);
  EXPECT_EQ(buf[49], 0xbb);
  EXPECT_EQ(buf[51], 0xbc);
  EXPECT_EQ(buf[52], 0x20);
  EXPECT_EQ(buf[53], 0xfb);
  EXPECT_EQ(buf[54], kProtoTcp);
  EXPECT_EQ(buf[55], kFlagWeak);
  EXPECT_EQ(DecodeRule(buf), r);
}

TEST(WireGolden, ServerListingDecodesToTheCapturedTables) {
  Bytes bytes = Interop("server_listing.bin");
  ASSERT_EQ(bytes.size(), 743u);
  auto hello = DecodeHello(Span(bytes));
  ASSERT_TRUE(hello.ok()) << hello.error;
  EXPECT_EQ(hello.consumed, kHelloSize);
  EXPECT_EQ(hello.value.version, 2u);
  EXPECT_EQ(hello.value.pif_name_size, 128u);
  EXPECT_EQ(hello.value.ifnamsiz, 16u);

  auto listing = DecodeListing(Span(bytes).subspan(kHelloSize));
  ASSERT_TRUE(listing.ok()) << listing.error;
  EXPECT_EQ(listing.consumed, bytes.size() - kHelloSize);
  const TableSet& set = listing.value;
  ASSERT_EQ(set.tables.size(), 2u);
  const Table& host = set.tables[0];
  EXPECT_EQ(host.pif, PifId::kHost);
  EXPECT_EQ(host.name, "HOST");
  EXPECT_EQ(host.caps, 0x3fu);
  const Table& splice = set.tables[1];
  EXPECT_EQ(splice.pif, PifId::kSplice);
  EXPECT_EQ(splice.name, "SPLICE");
  EXPECT_EQ(splice.caps, 0x3fu);

  // Field by field first, so a mismatch says which field.
  ASSERT_EQ(host.rules.size(), 6u);
  std::vector<Rule> want = ListedHostRules();
  for (size_t i = 0; i < want.size(); i++) {
    SCOPED_TRACE(i);
    EXPECT_EQ(host.rules[i].addr.ToString(), want[i].addr.ToString());
    EXPECT_EQ(host.rules[i].target.ToString(), "::");
    EXPECT_EQ(host.rules[i].ifname, want[i].ifname);
    EXPECT_EQ(host.rules[i].first, want[i].first);
    EXPECT_EQ(host.rules[i].last, want[i].last);
    EXPECT_EQ(host.rules[i].to, want[i].to);
    EXPECT_EQ(host.rules[i].proto, want[i].proto);
    EXPECT_EQ(host.rules[i].flags, want[i].flags);
  }
  ASSERT_EQ(splice.rules.size(), 2u);
  for (const Rule& r : splice.rules) {
    EXPECT_EQ(std::string(r.ifname.data()), "lo");
    EXPECT_EQ(r.flags, kFlagDualStackAny);
    EXPECT_TRUE(r.addr.IsUnspecified6());
  }
  EXPECT_EQ(set, ListedTables());
}

TEST(WireGolden, ServerListingEncodesToTheSameBytes) {
  Bytes out;
  EncodeHello(Hello{}, &out);
  EncodeListing(ListedTables(), &out);
  EXPECT_EQ(out, Interop("server_listing.bin"));
}

struct UpdateCase {
  const char* file;
  std::vector<Rule> host;
  std::vector<Rule> splice;
};

std::vector<UpdateCase> UpdateCases() {
  std::vector<Rule> added = ListedHostRules();
  added.push_back(R(T, "192.0.2.1", "eth0", 443, 443, 8443, 0));
  added.push_back(R(U, "", "", 7000, 7002, 7000, kFlagDualStackAny));
  std::vector<Rule> deleted = ListedHostRules();
  deleted.erase(deleted.begin() + 1);
  return {
      {"client_update_add.bin", added, ListedSpliceRules()},
      {"client_update_replace.bin",
       {R(T, "", "", 80, 80, 80, kFlagDualStackAny), R(T, "0.0.0.0", "", 8080, 8081, 80, 0),
        R(U, "::", "", 53, 53, 53, 0)},
       {}},
      {"client_update_delete.bin", deleted, {}},
  };
}

TEST(WireGolden, ClientUpdatesDecodeAndReencode) {
  for (const UpdateCase& c : UpdateCases()) {
    SCOPED_TRACE(c.file);
    Bytes bytes = Interop(c.file);
    auto d = DecodeUpdate(Span(bytes));
    ASSERT_TRUE(d.ok()) << d.error;
    EXPECT_EQ(d.consumed, bytes.size());
    EXPECT_FALSE(d.value.transactional);
    EXPECT_EQ(d.value, UpdateOf(c.host, c.splice));

    Bytes again;
    EncodeUpdate(d.value, &again);
    EXPECT_EQ(again, bytes);

    TableSet set = ListedTables();
    set.tables[0].rules = c.host;
    set.tables[1].rules = c.splice;
    Bytes from_tables;
    EncodeUpdateFromTables(set, /*transactional=*/false, &from_tables);
    EXPECT_EQ(from_tables, bytes);
  }
}

TEST(WireGolden, ListOnlyClientSentNothing) {
  Bytes bytes = Interop("client_listing_only.bin");
  EXPECT_TRUE(bytes.empty());
  EXPECT_EQ(DecodeUpdate(Span(bytes)).state, DecodeState::kNeedMore);
}

// Every proper prefix of a valid message is "need more", never an error.
template <typename Fn>
void ExpectPrefixesNeedMore(const Bytes& bytes, Fn decode) {
  for (size_t n = 0; n < bytes.size(); n++) {
    auto d = decode(ByteSpan(bytes.data(), n));
    ASSERT_EQ(d.state, DecodeState::kNeedMore) << "prefix of " << n << " bytes: " << d.error;
  }
  EXPECT_TRUE(decode(Span(bytes)).ok());
}

TEST(WireGolden, EveryTruncationNeedsMore) {
  Bytes listing = Interop("server_listing.bin");
  Bytes hello(listing.begin(), listing.begin() + kHelloSize);
  ExpectPrefixesNeedMore(hello, DecodeHello);
  ExpectPrefixesNeedMore(Bytes(listing.begin() + kHelloSize, listing.end()), DecodeListing);
  // The hello decoder on a prefix of the whole capture, too.
  for (size_t n = 0; n < kHelloSize; n++)
    EXPECT_EQ(DecodeHello(ByteSpan(listing.data(), n)).state, DecodeState::kNeedMore);
  for (const char* f :
       {"client_update_add.bin", "client_update_replace.bin", "client_update_delete.bin"}) {
    SCOPED_TRACE(f);
    ExpectPrefixesNeedMore(Interop(f), DecodeUpdate);
    Bytes txn(kClientMagic, kClientMagic + 8);
    Bytes body = Interop(f);
    txn.insert(txn.end(), body.begin(), body.end());
    ExpectPrefixesNeedMore(txn, DecodeUpdate);
  }
  StatusReply s{StatusCode::kApplyFailed,
                "bind 127.0.0.1:8080: Address already in use",
                {{1, {{3, 0, 0}, {0, 1, 98}}}, {3, {}}}};
  Bytes status;
  EncodeStatus(s, &status);
  ExpectPrefixesNeedMore(status, DecodeStatus);
}

TEST(WireRoundTrip, TransactionalUpdate) {
  Update u = UpdateOf(ListedHostRules(), {});
  u.transactional = true;
  u.blocks.push_back({42, {R(T, "2001:db8::1", "", 1, 65535, 1, kFlagWeak | kFlagScan)}});
  Bytes b;
  EncodeUpdate(u, &b);
  EXPECT_EQ(std::memcmp(b.data(), kClientMagic, 8), 0);
  auto d = DecodeUpdate(Span(b));
  ASSERT_TRUE(d.ok()) << d.error;
  EXPECT_TRUE(d.value.transactional);
  EXPECT_EQ(d.value, u);  // pif 42 is unknown, but that is the server's business
  EXPECT_EQ(d.consumed, b.size());

  Bytes from_tables;
  TableSet set = ListedTables();
  EncodeUpdateFromTables(set, /*transactional=*/true, &from_tables);
  auto d2 = DecodeUpdate(Span(from_tables));
  ASSERT_TRUE(d2.ok());
  EXPECT_EQ(d2.value, [] {
    Update w = UpdateOf(ListedHostRules(), ListedSpliceRules());
    w.transactional = true;
    return w;
  }());
}

TEST(WireRoundTrip, Status) {
  std::vector<StatusReply> cases = {
      {StatusCode::kApplied, "", {}},
      {StatusCode::kRejected, "rule 3: port range 90-80 is reversed", {}},
      {StatusCode::kRollbackFailed,
       "undo failed",
       {{1, {{11, 0, 0}, {0, 2, 98}, {5, 5, -1}}}, {3, {{1, 0, 0}}}}},
      {StatusCode::kProtocolError, std::string(kMaxStatusMessage, 'x'), {}},
  };
  for (const StatusReply& s : cases) {
    Bytes b;
    EncodeStatus(s, &b);
    auto d = DecodeStatus(Span(b));
    ASSERT_TRUE(d.ok()) << d.error;
    EXPECT_EQ(d.value, s);
    EXPECT_EQ(d.consumed, b.size());
  }
  Bytes b;
  EncodeStatus({StatusCode::kApplied, "", {}}, &b);
  EXPECT_EQ(b, (Bytes{0, 0, 0, 0, 0, 0}));
  EXPECT_STREQ(StatusCodeName(StatusCode::kRejected), "REJECTED");
  EXPECT_STREQ(StatusCodeName(StatusCode::kProtocolError), "PROTOCOL_ERROR");
}

TEST(WireRoundTrip, OverlongStatusMessageIsCutOnACharacterBoundary) {
  std::string msg(kMaxStatusMessage - 1, 'a');
  msg += "\xc3\xa9tc";  // 'é' straddles the limit
  Bytes b;
  EncodeStatus({StatusCode::kRejected, msg, {}}, &b);
  auto d = DecodeStatus(Span(b));
  ASSERT_TRUE(d.ok()) << d.error;
  EXPECT_EQ(d.value.message, std::string(kMaxStatusMessage - 1, 'a'));
}

TEST(WireErrors, HelloBadMagic) {
  Bytes b = Interop("server_listing.bin");
  b[6] = 'x';
  auto d = DecodeHello(Span(b));
  ASSERT_EQ(d.state, DecodeState::kError);
  EXPECT_EQ(d.error_offset, 6u);
  EXPECT_THAT(d.error, StartsWith("offset 6: bad server magic"));
  // Refused as soon as the wrong byte is there.
  EXPECT_EQ(DecodeHello(ByteSpan(b.data(), 7)).state, DecodeState::kError);
  EXPECT_EQ(DecodeHello(ByteSpan(b.data(), 6)).state, DecodeState::kNeedMore);
}

TEST(WireErrors, HelloVersionAndSizes) {
  Bytes b;
  EncodeHello(Hello{3, 128, 16}, &b);
  auto d = DecodeHello(Span(b));
  ASSERT_EQ(d.state, DecodeState::kError);
  EXPECT_EQ(d.error_offset, 8u);
  EXPECT_EQ(d.error, "offset 8: protocol version 3 is not 2 (unsupported)");
  b.clear();
  EncodeHello(Hello{2, 64, 16}, &b);
  d = DecodeHello(Span(b));
  ASSERT_EQ(d.state, DecodeState::kError);
  EXPECT_EQ(d.error_offset, 12u);
  EXPECT_THAT(d.error, HasSubstr("pif name size 64 is not 128"));
  b.clear();
  EncodeHello(Hello{2, 128, 32}, &b);
  d = DecodeHello(Span(b));
  ASSERT_EQ(d.state, DecodeState::kError);
  EXPECT_EQ(d.error_offset, 16u);
  EXPECT_THAT(d.error, HasSubstr("interface name size 32 is not 16"));
}

TEST(WireErrors, UpdateCountTooLarge) {
  Bytes b(kClientMagic, kClientMagic + 8);
  b.insert(b.end(), {1, 0xff, 0xff, 0xff, 0xff});
  auto d = DecodeUpdate(Span(b));
  ASSERT_EQ(d.state, DecodeState::kError);
  EXPECT_EQ(d.error_offset, 9u);
  EXPECT_EQ(d.error, "offset 9: rule count 4294967295 exceeds 1024");
  // A count at the limit is fine and simply needs its bytes.
  b.resize(9);
  b.insert(b.end(), {0, 0, 0x04, 0x00});
  EXPECT_EQ(DecodeUpdate(Span(b)).state, DecodeState::kNeedMore);
}

TEST(WireErrors, ListingCountTooLarge) {
  Bytes b = Interop("server_listing.bin");
  Bytes listing(b.begin() + kHelloSize, b.end());
  size_t count_at = 1 + kPifNameSize + 4;
  listing[count_at] = 0x80;
  auto d = DecodeListing(Span(listing));
  ASSERT_EQ(d.state, DecodeState::kError);
  EXPECT_EQ(d.error_offset, count_at);
  EXPECT_THAT(d.error, StartsWith("offset 133: rule count 2147483654 exceeds 1024"));
}

TEST(WireErrors, ListingNameWithoutNul) {
  Bytes b = Interop("server_listing.bin");
  Bytes listing(b.begin() + kHelloSize, b.end());
  for (size_t i = 1; i <= kPifNameSize; i++) listing[i] = 'A';
  auto d = DecodeListing(Span(listing));
  ASSERT_EQ(d.state, DecodeState::kError);
  EXPECT_EQ(d.error_offset, 1u);
  EXPECT_THAT(d.error, HasSubstr("not NUL-terminated"));
  // Until all 128 bytes are there, it may still end in a NUL.
  EXPECT_EQ(DecodeListing(ByteSpan(listing.data(), 100)).state, DecodeState::kNeedMore);
}

TEST(WireErrors, ListingPifsOutOfOrder) {
  TableSet set = ListedTables();
  std::swap(set.tables[0], set.tables[1]);
  Bytes b;
  EncodeListing(set, &b);
  auto d = DecodeListing(Span(b));
  ASSERT_EQ(d.state, DecodeState::kError);
  EXPECT_THAT(d.error, HasSubstr("pif 1 after pif 3"));
}

TEST(WireErrors, WrongClientMagic) {
  Bytes b = {'b', 'a', 's', 'i', 'l', ':', 's', 0, 0};
  auto d = DecodeUpdate(Span(b));
  ASSERT_EQ(d.state, DecodeState::kError);
  EXPECT_EQ(d.error_offset, 6u);
  EXPECT_THAT(d.error, StartsWith("offset 6: bad client magic"));
  Bytes early = {'b', 'x'};
  EXPECT_EQ(DecodeUpdate(Span(early)).state, DecodeState::kError);
}

TEST(WireErrors, StatusMessageTooLong) {
  Bytes b = {1, 0, 0, 0x10, 0x01};  // 4097
  auto d = DecodeStatus(Span(b));
  ASSERT_EQ(d.state, DecodeState::kError);
  EXPECT_EQ(d.error_offset, 1u);
  EXPECT_EQ(d.error, "offset 1: status message length 4097 exceeds 4096");
}

TEST(WireErrors, StatusUnknownCodeAndHugeReport) {
  Bytes b = {9};
  auto d = DecodeStatus(Span(b));
  ASSERT_EQ(d.state, DecodeState::kError);
  EXPECT_EQ(d.error, "offset 0: unknown status code 9");
  b = {0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff};
  d = DecodeStatus(Span(b));
  ASSERT_EQ(d.state, DecodeState::kError);
  EXPECT_EQ(d.error, "offset 6: report count 4294967295 exceeds 1024");
}

TEST(WireDecode, TrailingBytesAreLeftForTheCaller) {
  Bytes b = Interop("client_update_replace.bin");
  size_t n = b.size();
  b.push_back(0xaa);
  auto d = DecodeUpdate(Span(b));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.consumed, n);
}

}  // namespace
}  // namespace ringfwd::wire
