// The end-to-end helpers themselves: digests, patterns, address checks, and
// namespaces that really isolate and really go away.
#include <sys/stat.h>

#include <string>

#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"

namespace ringfwd::e2e {
namespace {

TEST(E2eUtilTest, DigestIgnoresHowTheStreamIsCut) {
  std::string data = Pattern(1).Bytes(0, 1000);
  Digest whole;
  whole.Update(data.data(), data.size());
  for (size_t step : {1, 3, 7, 8, 9, 100}) {
    Digest pieces;
    for (size_t off = 0; off < data.size(); off += step)
      pieces.Update(data.data() + off, std::min(step, data.size() - off));
    EXPECT_EQ(pieces.Value(), whole.Value()) << step;
    EXPECT_EQ(pieces.count(), data.size());
  }
  EXPECT_EQ(PatternDigest(1, 1000), whole.Value());
}

TEST(E2eUtilTest, DigestSeesEveryByte) {
  std::string data = Pattern(2).Bytes(0, 4097);
  uint64_t base = DigestOf(data);
  for (size_t i : {size_t{0}, size_t{7}, size_t{4096}}) {
    std::string changed = data;
    changed[i] ^= 1;
    EXPECT_NE(DigestOf(changed), base) << i;
  }
  EXPECT_NE(DigestOf(data.substr(0, 4096)), base);
  EXPECT_NE(DigestOf(data + std::string(1, '\0')), base);
}

TEST(E2eUtilTest, PatternIsAddressable) {
  Pattern p(3);
  std::string all = p.Bytes(0, 100);
  for (size_t off : {1, 8, 13, 64}) EXPECT_EQ(p.Bytes(off, 20), all.substr(off, 20)) << off;
  EXPECT_NE(Pattern(4).Bytes(0, 100), all);
}

TEST(E2eUtilTest, OnlyDocumentationAddresses) {
  EXPECT_TRUE(IsDocumentationAddress("192.0.2.1/24"));
  EXPECT_TRUE(IsDocumentationAddress("198.51.100.7"));
  EXPECT_TRUE(IsDocumentationAddress("2001:db8::5/64"));
  EXPECT_FALSE(IsDocumentationAddress("10.0.0.1/8"));
  EXPECT_FALSE(IsDocumentationAddress("192.168.1.1/24"));
  EXPECT_FALSE(IsDocumentationAddress("8.8.8.8"));
  EXPECT_FALSE(IsDocumentationAddress("2001:db9::1/64"));
  EXPECT_FALSE(IsDocumentationAddress("fd00::1/64"));
  EXPECT_FALSE(IsDocumentationAddress("nonsense"));
}

class E2eNetnsTest : public E2eTest {};

// A port bound in one namespace is free in the other, and the namespaces
// are gone after their destructors.
TEST_F(E2eNetnsTest, NamespacesIsolateAndGoAway) {
  Fd a = TcpListen(*host_, Addr::Of("127.0.0.1", 80));
  Fd b = TcpListen(*target_, Addr::Of("127.0.0.1", 80));
  EXPECT_TRUE(a && b);
  int err = 0;
  EXPECT_FALSE(TcpConnect(*host_, Addr::Of("127.0.0.1", 81), &err));
  EXPECT_EQ(err, ECONNREFUSED);
  std::string path = host_->path();
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0);
  host_.reset();
  EXPECT_NE(stat(path.c_str(), &st), 0) << path << " left behind";
}

TEST_F(E2eNetnsTest, RefusesOtherAddresses) {
  std::string error;
  EXPECT_FALSE(target_->AddLink("d0", {"10.1.2.3/24"}, &error));
  EXPECT_NE(error.find("10.1.2.3"), std::string::npos);
}

TEST_F(E2eNetnsTest, DaemonThatFailsIsReported) {
  std::string error;
  std::unique_ptr<Daemon> d = Daemon::Start(*host_, {"-t", "70000"}, &error);
  EXPECT_FALSE(d);
  EXPECT_NE(error.find("70000"), std::string::npos) << error;
}

}  // namespace
}  // namespace ringfwd::e2e
