// Forwarding table (dataplane/route.hh).
#include <gtest/gtest.h>

#include "config.hh"
#include "eal_env.hh"
#include "route.hh"

namespace ravelin::dp {
namespace {

const char* config_text = R"([dataplane]
lcores = "0,1"

[[port]]
name = "inside"
role = "protected"
device = "net_null0"
address = ["198.18.1.1/24", "2001:db8:1::1/64"]

[[port]]
name = "outside"
role = "unprotected"
device = "net_null1"
address = ["198.18.0.1/24"]

[[route]]
prefix = "198.18.64.0/18"
via = "198.18.0.2"
port = "outside"

[[route]]
prefix = "198.18.64.128/25"
via = "198.18.1.9"
port = "inside"

[[route]]
prefix = "2001:db8:99::/48"
via = "2001:db8:1::7"
port = "inside"
)";

IpAddress v6(std::string_view s) { return *parse_ip(s); }

TEST(Fib, ConnectedAndStaticRoutesLongestPrefixWins)
{
    test::eal();
    auto cfg = parse_config(config_text, "route.toml");
    ASSERT_TRUE(cfg) << cfg.error().to_string();
    std::string error;
    auto fib = Fib::build(cfg.value(), {7, 9}, "fib_t1", error);
    ASSERT_TRUE(fib) << error;

    const NextHop* nh = fib->lookup(IpAddress::v4(0xc6120105));   // 198.18.1.5: connected inside
    ASSERT_NE(nh, nullptr);
    EXPECT_EQ(nh->port, 7);
    EXPECT_TRUE(nh->on_link);

    nh = fib->lookup(IpAddress::v4(0xc6124001));   // 198.18.64.1: via 198.18.0.2
    ASSERT_NE(nh, nullptr);
    EXPECT_EQ(nh->port, 9);
    EXPECT_FALSE(nh->on_link);
    EXPECT_EQ(nh->gateway, IpAddress::v4(0xc6120002));

    nh = fib->lookup(IpAddress::v4(0xc61240c8));   // 198.18.64.200: the /25 is more specific
    ASSERT_NE(nh, nullptr);
    EXPECT_EQ(nh->port, 7);
    EXPECT_EQ(nh->gateway, IpAddress::v4(0xc6120109));

    EXPECT_EQ(fib->lookup(IpAddress::v4(0xc6130001)), nullptr);   // 198.19.0.1: no route

    nh = fib->lookup(v6("2001:db8:99::1"));
    ASSERT_NE(nh, nullptr);
    EXPECT_EQ(nh->gateway, v6("2001:db8:1::7"));
    nh = fib->lookup(v6("2001:db8:1::42"));
    ASSERT_NE(nh, nullptr);
    EXPECT_TRUE(nh->on_link);
    EXPECT_EQ(fib->lookup(v6("2001:db8:2::1")), nullptr);
}

TEST(Fib, DefaultRoutesCatchWhatNothingElseDoes)
{
    test::eal();
    std::string text = std::string(config_text) + R"(
[[route]]
prefix = "0.0.0.0/0"
via = "198.18.0.254"
port = "outside"

[[route]]
prefix = "::/0"
via = "2001:db8:1::fe"
port = "inside"
)";
    auto cfg = parse_config(text, "route.toml");
    ASSERT_TRUE(cfg) << cfg.error().to_string();
    std::string error;
    auto fib = Fib::build(cfg.value(), {7, 9}, "fib_t3", error);
    ASSERT_TRUE(fib) << error;
    const NextHop* nh = fib->lookup(IpAddress::v4(0xc6130001));   // 198.19.0.1: only the default
    ASSERT_NE(nh, nullptr);
    EXPECT_EQ(nh->gateway, IpAddress::v4(0xc61200fe));
    nh = fib->lookup(IpAddress::v4(0xc6124001));                 // the /18 still wins
    ASSERT_NE(nh, nullptr);
    EXPECT_EQ(nh->gateway, IpAddress::v4(0xc6120002));
    nh = fib->lookup(v6("2001:db8:2::1"));
    ASSERT_NE(nh, nullptr);
    EXPECT_EQ(nh->gateway, v6("2001:db8:1::fe"));
}

TEST(Fib, KnowsItsOwnAddresses)
{
    test::eal();
    auto cfg = parse_config(config_text, "route.toml");
    ASSERT_TRUE(cfg) << cfg.error().to_string();
    std::string error;
    auto fib = Fib::build(cfg.value(), {0, 1}, "fib_t2", error);
    ASSERT_TRUE(fib) << error;
    EXPECT_TRUE(fib->is_local(IpAddress::v4(0xc6120101)));
    EXPECT_TRUE(fib->is_local(v6("2001:db8:1::1")));
    EXPECT_FALSE(fib->is_local(IpAddress::v4(0xc6120102)));
    ASSERT_NE(fib->address_on(1, IpFamily::v4), nullptr);
    EXPECT_EQ(*fib->address_on(1, IpFamily::v4), IpAddress::v4(0xc6120001));
    EXPECT_EQ(fib->address_on(1, IpFamily::v6), nullptr);
}

} // namespace
} // namespace ravelin::dp
