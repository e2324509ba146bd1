// The Wireshark key log (controlplane/iked/keylog.hh): lines Wireshark's
// "IKEv2 Decryption Table" accepts, checked against the table Wireshark
// itself wrote for the strongSwan capture in the project's testbed
// (shared/testbed/strongswan/captures/wireshark/ikev2_decryption_table).
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "keylog.hh"

namespace ravelin::iked {
namespace {

ike::Bytes unhex(std::string_view h)
{
    ike::Bytes out;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(uint8_t(std::stoul(std::string(h.substr(i, 2)), nullptr, 16)));
    return out;
}

// IKE SA ipgw[1] of the capture: AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519.
constexpr uint64_t capture_spi_i = 0x2cb480d740a756caull;
constexpr uint64_t capture_spi_r = 0x00d1892298dee0bfull;
constexpr std::string_view capture_sk_ei = "45243c2c080b3e4359ab960ed0134a50ab1ecbdba54edeecfa3b58b1689a249700731f84";
constexpr std::string_view capture_sk_er = "64b2f3d274c9f156393fb8351b50853a12007f0b68ca17f87062f41b3e60919b657ae9b2";
// Line 2 of the table Wireshark saved for that capture.
constexpr std::string_view wireshark_line =
    "2cb480d740a756ca,00d1892298dee0bf,"
    "45243c2c080b3e4359ab960ed0134a50ab1ecbdba54edeecfa3b58b1689a249700731f84,"
    "64b2f3d274c9f156393fb8351b50853a12007f0b68ca17f87062f41b3e60919b657ae9b2,"
    "\"AES-GCM-256 with 16 octet ICV [RFC5282]\",,,\"NONE [RFC4306]\"";

ike::IkeSuite gcm256()
{
    ike::IkeSuite s;
    s.encr = ike::encr::aes_gcm_16;
    s.encr_key_bits = 256;
    s.prf = ike::prf::hmac_sha2_256;
    s.integ = ike::integ::none;
    s.dh = ike::dh::curve25519;
    return s;
}

TEST(IkedKeyLog, AeadLineMatchesWhatWiresharkWrote)
{
    ike::IkeKeys keys;
    keys.sk_ei = unhex(capture_sk_ei);
    keys.sk_er = unhex(capture_sk_er);
    auto line = keylog_line(capture_spi_i, capture_spi_r, keys, gcm256());
    ASSERT_TRUE(line);
    EXPECT_EQ(*line, wireshark_line);
}

TEST(IkedKeyLog, CbcWithHmacNamesBothAlgorithms)
{
    ike::IkeSuite s;
    s.encr = ike::encr::aes_cbc;
    s.encr_key_bits = 128;
    s.prf = ike::prf::hmac_sha2_256;
    s.integ = ike::integ::hmac_sha2_256_128;
    ike::IkeKeys keys;
    keys.sk_ei = unhex("00112233445566778899aabbccddeeff");
    keys.sk_er = unhex("ffeeddccbbaa99887766554433221100");
    keys.sk_ai = unhex("0101");
    keys.sk_ar = unhex("0202");
    auto line = keylog_line(1, 0xfedcba9876543210ull, keys, s);
    ASSERT_TRUE(line);
    EXPECT_EQ(*line, "0000000000000001,fedcba9876543210,00112233445566778899aabbccddeeff,"
                     "ffeeddccbbaa99887766554433221100,\"AES-CBC-128 [RFC3602]\",0101,0202,"
                     "\"HMAC_SHA2_256_128 [RFC4868]\"");
    s.encr_key_bits = 256;
    s.integ = ike::integ::hmac_sha2_512_256;
    line = keylog_line(1, 2, keys, s);
    ASSERT_TRUE(line);
    EXPECT_NE(line->find("\"AES-CBC-256 [RFC3602]\""), std::string::npos) << *line;
    EXPECT_NE(line->find("\"HMAC_SHA2_512_256 [RFC4868]\""), std::string::npos) << *line;
}

TEST(IkedKeyLog, CiphersWiresharkCannotDecryptAreNotWritten)
{
    ike::IkeSuite s = gcm256();
    s.encr = ike::encr::chacha20_poly1305;
    EXPECT_FALSE(keylog_line(1, 2, {}, s));
    s = gcm256();
    s.encr_key_bits = 100;   // no such AES key
    EXPECT_FALSE(keylog_line(1, 2, {}, s));
}

TEST(IkedKeyLog, FileIsPrivateWithHeaderAndOneLinePerSa)
{
    std::string path = "/tmp/rvl-iked-keylog-" + std::to_string(getpid()) + ".txt";
    unlink(path.c_str());
    std::string error;
    mode_t old = umask(0);
    auto log = KeyLog::open(path, error);
    umask(old);
    ASSERT_TRUE(log) << error;
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    ike::IkeKeys keys;
    keys.sk_ei = unhex(capture_sk_ei);
    keys.sk_er = unhex(capture_sk_er);
    log->write(capture_spi_i, capture_spi_r, keys, gcm256());
    ike::IkeSuite chacha = gcm256();
    chacha.encr = ike::encr::chacha20_poly1305;
    log->write(3, 4, keys, chacha);
    EXPECT_EQ(log->written(), 1u);
    EXPECT_EQ(log->skipped(), 1u);

    std::ifstream in(path);
    std::string first, second, third;
    ASSERT_TRUE(std::getline(in, first));
    EXPECT_EQ(first.front(), '#') << "a comment line, as Wireshark's own table starts";
    ASSERT_TRUE(std::getline(in, second));
    EXPECT_EQ(second, wireshark_line);
    EXPECT_FALSE(std::getline(in, third)) << third;
    log.reset();

    // Reopened: appended to, no second header.
    log = KeyLog::open(path, error);
    ASSERT_TRUE(log) << error;
    log->write(capture_spi_i, capture_spi_r, keys, gcm256());
    log.reset();
    std::ifstream again(path);
    int lines = 0, comments = 0;
    for (std::string l; std::getline(again, l); ++lines) comments += l.front() == '#';
    EXPECT_EQ(lines, 3);
    EXPECT_EQ(comments, 1);
    unlink(path.c_str());
}

} // namespace
} // namespace ravelin::iked
