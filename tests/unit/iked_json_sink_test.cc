// ravelin-iked's SA sinks (controlplane/iked/json_sink.hh) and the text
// forms they use (names.hh): the exact JSON line other tests and scripts
// parse, the file's mode and append behaviour.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "json_sink.hh"
#include "names.hh"
#include "udp_transport.hh"

namespace ravelin::iked {
namespace {

IpAddress addr(const char* text)
{
    IpAddress a;
    EXPECT_TRUE(parse_address(text, a)) << text;
    return a;
}

ike::TrafficSelector ts(const char* start, const char* end, uint8_t proto = 0, uint16_t lo = 0,
                        uint16_t hi = 65535)
{
    ike::TrafficSelector t;
    t.start = addr(start);
    t.end = addr(end);
    t.protocol = proto;
    t.start_port = lo;
    t.end_port = hi;
    return t;
}

TEST(IkedNames, TrafficSelectorsAsSwanctlPrintsThem)
{
    EXPECT_EQ(format_ts(ts("198.19.1.0", "198.19.1.255")), "198.19.1.0/24");
    EXPECT_EQ(format_ts(ts("198.19.1.7", "198.19.1.7")), "198.19.1.7/32");
    EXPECT_EQ(format_ts(ts("0.0.0.0", "255.255.255.255")), "0.0.0.0/0");
    EXPECT_EQ(format_ts(ts("198.19.1.5", "198.19.1.9")), "198.19.1.5-198.19.1.9");
    // Low bits of start set: not a prefix even though end looks like one.
    EXPECT_EQ(format_ts(ts("198.19.1.1", "198.19.1.255")), "198.19.1.1-198.19.1.255");
    EXPECT_EQ(format_ts(ts("2001:db8::", "2001:db8::ffff:ffff:ffff:ffff")), "2001:db8::/64");
    EXPECT_EQ(format_ts(ts("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), "::/0");
    EXPECT_EQ(format_ts(ts("198.19.1.0", "198.19.1.255", 17, 53, 53)), "198.19.1.0/24[udp/53]");
    EXPECT_EQ(format_ts(ts("198.19.1.0", "198.19.1.255", 6)), "198.19.1.0/24[tcp]");
    EXPECT_EQ(format_ts(ts("198.19.1.0", "198.19.1.255", 47, 1000, 2000)), "198.19.1.0/24[47/1000-2000]");
    ike::TsConfig dyn;
    dyn.dynamic = true;
    dyn.ts.protocol = 6;
    EXPECT_EQ(format_ts_config(dyn), "dynamic[tcp]");
}

TEST(IkedNames, SuitesInStrongswanSpelling)
{
    ike::SelectedSuite ike_suite;
    ike_suite.encr = 20;
    ike_suite.encr_key_bits = 256;
    ike_suite.prf = 5;
    ike_suite.dh = 31;
    EXPECT_EQ(describe_suite(ike_suite, true), "AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519");
    ike::SelectedSuite esp;
    esp.encr = 12;
    esp.encr_key_bits = 128;
    esp.integ = 12;
    esp.dh = 14;
    esp.esn = true;
    EXPECT_EQ(describe_suite(esp, false), "AES_CBC-128/HMAC_SHA2_256_128/MODP_2048/ESN");
    EXPECT_EQ(encr_name(28), "CHACHA20_POLY1305");
    EXPECT_EQ(encr_name(999), "UNKNOWN_999");
}

// A Child SA like the strongSwan capture's first one (tests/vectors style
// values, not real keys).
ike::ChildSaRecord gcm_record()
{
    ike::ChildSaRecord r;
    r.connection = "gw";
    r.child = "net";
    r.reqid = 1;
    for (SaDescriptor* sa : {&r.inbound, &r.outbound}) {
        sa->mode = SaMode::tunnel;
        sa->cipher = EspCipher::aes_gcm16;
        sa->integ = EspInteg::none;
        sa->cipher_key_len = 32;
        for (unsigned i = 0; i < 36; ++i) sa->cipher_key[i] = uint8_t(i);
        sa->udp_encap = true;
        sa->reqid = 1;
    }
    r.inbound.direction = SaDirection::inbound;
    r.inbound.spi = Spi(0xc6ebc868);
    r.inbound.local = addr("198.18.0.1");
    r.inbound.remote = addr("198.18.0.2");
    r.outbound.direction = SaDirection::outbound;
    r.outbound.spi = Spi(0xf88201b3);
    r.outbound.local = addr("198.18.0.1");
    r.outbound.remote = addr("198.18.0.2");
    r.local_ts = {ts("198.19.1.0", "198.19.1.255")};
    r.remote_ts = {ts("198.19.2.0", "198.19.2.255"), ts("198.19.3.0", "198.19.3.255")};
    return r;
}

TEST(IkedJsonSink, AeadLineCarriesKeyAndSaltAndNullIntegrity)
{
    auto r = gcm_record();
    EXPECT_EQ(sa_event_json("install", r, r.inbound),
              R"({"event":"install","connection":"gw","child":"net","reqid":1,"direction":"in",)"
              R"("spi":"0xc6ebc868","mode":"tunnel","encr":"AES_GCM_16","encr_key_bits":256,)"
              R"("encr_key":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223",)"
              R"("integ":null,"integ_key":null,"esn":false,"local":"198.18.0.1","remote":"198.18.0.2",)"
              R"("udp_encap":true,"local_port":4500,"remote_port":4500,"local_ts":["198.19.1.0/24"],)"
              R"("remote_ts":["198.19.2.0/24","198.19.3.0/24"]})");
}

TEST(IkedJsonSink, CbcHmacTransportIpv6Line)
{
    ike::ChildSaRecord r;
    r.connection = "host";
    r.child = "h";
    r.reqid = 7;
    SaDescriptor& sa = r.outbound;
    sa.direction = SaDirection::outbound;
    sa.spi = Spi(0x0000abcd);
    sa.mode = SaMode::transport;
    sa.cipher = EspCipher::aes_cbc;
    sa.cipher_key_len = 16;
    for (unsigned i = 0; i < 16; ++i) sa.cipher_key[i] = uint8_t(0xf0 + i);
    sa.cipher_key[16] = 0x99;   // beyond the key: must not appear (no salt for CBC)
    sa.integ = EspInteg::hmac_sha256_128;
    sa.integ_key_len = 32;
    for (unsigned i = 0; i < 32; ++i) sa.integ_key[i] = uint8_t(i * 3);
    sa.esn = true;
    sa.local = addr("2001:db8::1");
    sa.remote = addr("2001:db8::2");
    sa.udp_encap = false;
    r.local_ts = {ts("2001:db8::1", "2001:db8::1", 6, 443, 443)};
    r.remote_ts = {ts("2001:db8::2", "2001:db8::2")};
    EXPECT_EQ(sa_event_json("remove", r, r.outbound),
              R"({"event":"remove","connection":"host","child":"h","reqid":7,"direction":"out",)"
              R"("spi":"0x0000abcd","mode":"transport","encr":"AES_CBC","encr_key_bits":128,)"
              R"("encr_key":"f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff","integ":"HMAC_SHA2_256_128",)"
              R"("integ_key":"000306090c0f1215181b1e2124272a2d303336393c3f4245484b4e5154575a5d",)"
              R"("esn":true,"local":"2001:db8::1","remote":"2001:db8::2","udp_encap":false,)"
              R"("local_port":4500,"remote_port":4500,"local_ts":["2001:db8::1/128[tcp/443]"],)"
              R"("remote_ts":["2001:db8::2/128"]})");
}

std::vector<std::string> lines_of(const std::string& path)
{
    std::ifstream in(path);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

TEST(IkedJsonSink, FileIsPrivateAndAppendedLinePerEvent)
{
    std::string path = "/tmp/rvl-iked-sink-" + std::to_string(getpid()) + ".jsonl";
    unlink(path.c_str());
    // An existing file with looser permissions is tightened, and kept.
    {
        std::ofstream pre(path);
        pre << "earlier\n";
    }
    chmod(path.c_str(), 0644);
    std::string error;
    auto sink = JsonSaSink::open(path, error);
    ASSERT_TRUE(sink) << error;
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    auto r = gcm_record();
    sink->install_inbound(r);
    sink->install_outbound(r);
    sink->remove_inbound(r);
    // Flushed per line: readable before the sink is gone.
    auto lines = lines_of(path);
    ASSERT_EQ(lines.size(), 4u);
    EXPECT_EQ(lines[0], "earlier");
    EXPECT_EQ(lines[1], sa_event_json("install", r, r.inbound));
    EXPECT_EQ(lines[2], sa_event_json("install", r, r.outbound));
    EXPECT_EQ(lines[3], sa_event_json("remove", r, r.inbound));
    EXPECT_EQ(sink->installed(), 2u);
    EXPECT_EQ(sink->removed(), 1u);
    EXPECT_EQ(sink->write_errors(), 0u);
    sink.reset();
    unlink(path.c_str());

    // A new file is created 0600 whatever the umask.
    mode_t old = umask(0);
    sink = JsonSaSink::open(path, error);
    umask(old);
    ASSERT_TRUE(sink) << error;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    sink.reset();
    unlink(path.c_str());
}

TEST(IkedJsonSink, UnwritablePathIsAnError)
{
    std::string error;
    EXPECT_FALSE(JsonSaSink::open("/nonexistent-dir-rvl/sas.jsonl", error));
    EXPECT_NE(error.find("/nonexistent-dir-rvl/sas.jsonl"), std::string::npos) << error;
}

} // namespace
} // namespace ravelin::iked
