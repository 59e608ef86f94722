#include "fwd/addr.h"

#include "gtest/gtest.h"

namespace ringfwd {
namespace {

TEST(Addr6, ParsesAndPrintsBothFamilies) {
  auto v4 = Addr6::Parse("192.0.2.7");
  ASSERT_TRUE(v4.has_value());
  EXPECT_TRUE(v4->IsV4());
  EXPECT_EQ(v4->V4(), 0xc0000207u);
  EXPECT_EQ(v4->ToString(), "192.0.2.7");
  auto v6 = Addr6::Parse("2001:db8::5");
  ASSERT_TRUE(v6.has_value());
  EXPECT_FALSE(v6->IsV4());
  EXPECT_EQ(v6->ToString(), "2001:db8::5");
  EXPECT_FALSE(Addr6::Parse("8080").has_value());
  EXPECT_FALSE(Addr6::Parse("").has_value());
  EXPECT_FALSE(Addr6::Parse("1.2.3.4.5").has_value());
}

TEST(Addr6, Classifies) {
  EXPECT_TRUE(Addr6::Any6().IsUnspecified6());
  EXPECT_FALSE(Addr6::Any4().IsUnspecified6());
  EXPECT_TRUE(Addr6::Any4().IsWildcard());
  EXPECT_TRUE(Addr6::Parse("224.0.0.1")->IsMulticast());
  EXPECT_TRUE(Addr6::Parse("ff02::1")->IsMulticast());
  EXPECT_FALSE(Addr6::Parse("192.0.2.1")->IsMulticast());
  EXPECT_TRUE(Addr6::Loopback4().IsLoopback());
  EXPECT_TRUE(Addr6::Loopback6().IsLoopback());
}

TEST(SockAddr, RoundTripsAndFormats) {
  SockAddr s4 = SockAddr::From(*Addr6::Parse("198.51.100.2"), 8080);
  EXPECT_EQ(s4.family(), AF_INET);
  EXPECT_EQ(s4.port(), 8080);
  EXPECT_EQ(s4.ToString(), "198.51.100.2:8080");
  SockAddr s6 = SockAddr::From(*Addr6::Parse("2001:db8::1"), 443);
  EXPECT_EQ(s6.family(), AF_INET6);
  EXPECT_EQ(s6.ToString(), "[2001:db8::1]:443");
  EXPECT_EQ(s6.addr(), *Addr6::Parse("2001:db8::1"));
}

}  // namespace
}  // namespace ringfwd
