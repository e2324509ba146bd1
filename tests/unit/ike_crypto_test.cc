// Tests for controlplane/ike/crypto.hh: the key schedule against a real
// strongSwan conversation (tests/vectors/ike/strongswan-psk-kat.txt), HMAC
// against RFC 4231, DH against RFC 5903 / RFC 7748 and invalid peer values,
// the SK payload ciphers by round trip, tampering and hand-built bodies.
#include "crypto.hh"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace ravelin::ike;

// --- helpers -----------------------------------------------------------------

Bytes unhex(std::string_view s)
{
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    Bytes out;
    int hi = -1;
    for (char c : s) {
        const int v = nibble(c);
        if (v < 0) {
            if (c == ' ') continue;
            throw std::runtime_error("not hex: " + std::string(s));
        }
        if (hi < 0) {
            hi = v;
        } else {
            out.push_back(uint8_t(hi << 4 | v));
            hi = -1;
        }
    }
    if (hi >= 0) throw std::runtime_error("odd number of hex digits");
    return out;
}

std::string hex(ByteView b)
{
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (uint8_t c : b) {
        s += digits[c >> 4];
        s += digits[c & 15];
    }
    return s;
}

ByteView text(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

Bytes cat(std::initializer_list<ByteView> parts)
{
    Bytes out;
    for (ByteView p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}

uint64_t be64(ByteView b)
{
    if (b.size() != 8) throw std::runtime_error("SPI must be 8 bytes");
    uint64_t v = 0;
    for (uint8_t c : b) v = v << 8 | c;
    return v;
}

// "name = hex" lines from $RAVELIN_VECTORS/<relative>; a missing variable,
// file or name throws, which fails the test.
class Vectors {
public:
    explicit Vectors(const std::string& relative)
    {
        const char* dir = std::getenv("RAVELIN_VECTORS");
        if (!dir || !*dir) throw std::runtime_error("RAVELIN_VECTORS is not set (point it at tests/vectors)");
        const std::string path = std::string(dir) + "/" + relative;
        std::ifstream in(path);
        if (!in) throw std::runtime_error("cannot open test vector file " + path);
        std::string line;
        while (std::getline(in, line)) {
            line = line.substr(0, line.find('#'));
            const auto eq = line.find('=');
            if (eq == std::string::npos) {
                if (line.find_first_not_of(" \t\r") != std::string::npos)
                    throw std::runtime_error("bad line in " + path + ": " + line);
                continue;
            }
            std::string name = line.substr(0, eq);
            name.erase(name.find_last_not_of(" \t") + 1);
            std::string value = line.substr(eq + 1);
            value.erase(0, value.find_first_not_of(" \t"));
            value.erase(value.find_last_not_of(" \t\r") + 1);
            values_[name] = unhex(value);
        }
        if (values_.empty()) throw std::runtime_error("no vectors in " + path);
    }

    const Bytes& operator[](const std::string& name) const
    {
        const auto it = values_.find(name);
        if (it == values_.end()) throw std::runtime_error("missing vector " + name);
        return it->second;
    }

private:
    std::map<std::string, Bytes> values_;
};

// The payloads in a decrypted SK body: (type, payload without its generic
// header), following the Next Payload chain from `first`.
std::vector<std::pair<uint8_t, Bytes>> payloads(ByteView plain, uint8_t first)
{
    std::vector<std::pair<uint8_t, Bytes>> out;
    std::size_t off = 0;
    for (uint8_t type = first; type != 0;) {
        if (plain.size() - off < 4) throw std::runtime_error("payload header past the end");
        const std::size_t len = std::size_t(plain[off + 2]) << 8 | plain[off + 3];
        if (len < 4 || len > plain.size() - off) throw std::runtime_error("bad payload length");
        out.emplace_back(type, Bytes(plain.begin() + std::ptrdiff_t(off + 4), plain.begin() + std::ptrdiff_t(off + len)));
        type = plain[off];
        off += len;
    }
    return out;
}

Bytes payload_of(ByteView plain, uint8_t first, uint8_t type)
{
    for (auto& [t, body] : payloads(plain, first))
        if (t == type) return body;
    throw std::runtime_error("payload " + std::to_string(type) + " not found");
}

constexpr uint8_t pl_sa = 33, pl_nonce = 40, pl_idi = 35, pl_idr = 36;
constexpr std::size_t ike_header_len = 28, sk_header_len = 4;

// Opens an SK payload that is the first payload of `msg` (IKE header + SK).
std::optional<Bytes> open_message(const SkCipher& c, ByteView msg)
{
    const std::size_t prefix = ike_header_len + sk_header_len;
    return c.open(msg.first(prefix), msg.subspan(prefix));
}

const IkeSuite strongswan_suite{encr::aes_gcm_16, 256, prf::hmac_sha2_256, integ::none, dh::curve25519};

// --- strongSwan known answers --------------------------------------------------

TEST(IkeCryptoStrongswan, InitialIkeSaKeys)
{
    const Vectors v("ike/strongswan-psk-kat.txt");
    EXPECT_EQ(hex(prf_compute(prf::hmac_sha2_256, cat({v["ike1.ni"], v["ike1.nr"]}), v["ike1.gir"])),
              hex(v["ike1.skeyseed"]));
    IkeKeys k = derive_ike_keys(strongswan_suite, v["ike1.ni"], v["ike1.nr"], v["ike1.gir"],
                                be64(v["ike1.spi_i"]), be64(v["ike1.spi_r"]));
    EXPECT_EQ(hex(k.sk_d), hex(v["ike1.sk_d"]));
    EXPECT_EQ(hex(k.sk_ei), hex(v["ike1.sk_ei"]));
    EXPECT_EQ(hex(k.sk_er), hex(v["ike1.sk_er"]));
    EXPECT_EQ(hex(k.sk_pi), hex(v["ike1.sk_pi"]));
    EXPECT_EQ(hex(k.sk_pr), hex(v["ike1.sk_pr"]));
    EXPECT_TRUE(k.sk_ai.empty());
    EXPECT_TRUE(k.sk_ar.empty());
    k.wipe();
    EXPECT_TRUE(k.sk_d.empty() && k.sk_ei.empty() && k.sk_er.empty() && k.sk_pi.empty() && k.sk_pr.empty());
}

// RFC 7296 §2.15: AUTH = prf(prf(PSK, "Key Pad for IKEv2"), message | peer's
// nonce | prf(SK_px, IDx')).
TEST(IkeCryptoStrongswan, PskAuthPayloads)
{
    const Vectors v("ike/strongswan-psk-kat.txt");
    const Bytes keypad = prf_compute(prf::hmac_sha2_256, v["psk"], text("Key Pad for IKEv2"));
    EXPECT_EQ(hex(keypad), hex(v["ike1.psk_keypad_prf"]));

    const Bytes octets_i = cat({v["ike1.init_request"], v["ike1.nr"],
                                prf_compute(prf::hmac_sha2_256, v["ike1.sk_pi"], v["ike1.idi_prime"])});
    EXPECT_EQ(hex(octets_i), hex(v["ike1.auth_i_octets"]));
    EXPECT_EQ(hex(prf_compute(prf::hmac_sha2_256, keypad, octets_i)), hex(v["ike1.auth_i"]));

    const Bytes octets_r = cat({v["ike1.init_response"], v["ike1.ni"],
                                prf_compute(prf::hmac_sha2_256, v["ike1.sk_pr"], v["ike1.idr_prime"])});
    EXPECT_EQ(hex(octets_r), hex(v["ike1.auth_r_octets"]));
    EXPECT_EQ(hex(prf_compute(prf::hmac_sha2_256, keypad, octets_r)), hex(v["ike1.auth_r"]));
}

TEST(IkeCryptoStrongswan, IkeAuthMessagesDecrypt)
{
    const Vectors v("ike/strongswan-psk-kat.txt");
    auto in_i = SkCipher::create(encr::aes_gcm_16, 256, integ::none, v["ike1.sk_ei"], {});
    auto in_r = SkCipher::create(encr::aes_gcm_16, 256, integ::none, v["ike1.sk_er"], {});
    ASSERT_TRUE(in_i && in_r);

    const Bytes& req = v["ike1.auth_request"];
    ASSERT_GT(req.size(), ike_header_len + sk_header_len);
    ASSERT_EQ(req[ike_header_len], pl_idi);              // SK's Next Payload
    const auto plain = open_message(*in_i, req);
    ASSERT_TRUE(plain);
    EXPECT_EQ(plain->size(), req.size() - 32 - 8 - 16 - 1);   // strongSwan sends no padding
    // IDi first: generic header (next = N, length 12), then IDx' itself.
    ASSERT_GE(plain->size(), 12u);
    EXPECT_EQ(hex(ByteView(*plain).first(4)), "2900000c");
    EXPECT_EQ(hex(ByteView(*plain).subspan(4, 8)), hex(v["ike1.idi_prime"]));
    // The AUTH payload carries the value the log shows (method 2, PSK).
    const Bytes auth = payload_of(*plain, pl_idi, 39);
    EXPECT_EQ(hex(ByteView(auth).subspan(4)), hex(v["ike1.auth_i"]));
    EXPECT_EQ(auth[0], 2);

    const Bytes& resp = v["ike1.auth_response"];
    ASSERT_EQ(resp[ike_header_len], pl_idr);
    const auto rplain = open_message(*in_r, resp);
    ASSERT_TRUE(rplain);
    EXPECT_EQ(hex(payload_of(*rplain, pl_idr, pl_idr)), hex(v["ike1.idr_prime"]));

    // The other direction's key, and any changed byte, fail.
    EXPECT_FALSE(open_message(*in_r, req));
    for (std::size_t i = 0; i < req.size(); ++i) {
        Bytes bad = req;
        bad[i] ^= 0x01;
        EXPECT_FALSE(open_message(*in_i, bad)) << "byte " << i;
    }
}

TEST(IkeCryptoStrongswan, ChildSaKeys)
{
    const Vectors v("ike/strongswan-psk-kat.txt");
    // IKE_AUTH's Child SA: no KE, KEYMAT = prf+(SK_d, Ni | Nr).
    ChildKeys c1 = derive_child_keys(prf::hmac_sha2_256, v["ike1.sk_d"], {}, v["ike1.ni"], v["ike1.nr"],
                                     encr::aes_gcm_16, 256, integ::none);
    EXPECT_EQ(hex(c1.encr_i), hex(v["child1.encr_i"]));
    EXPECT_EQ(hex(c1.encr_r), hex(v["child1.encr_r"]));
    EXPECT_TRUE(c1.integ_i.empty() && c1.integ_r.empty());

    // Its rekey with PFS: the nonces are the ones inside the exchange.
    auto in_i = SkCipher::create(encr::aes_gcm_16, 256, integ::none, v["ike1.sk_ei"], {});
    auto in_r = SkCipher::create(encr::aes_gcm_16, 256, integ::none, v["ike1.sk_er"], {});
    ASSERT_TRUE(in_i && in_r);
    const auto req = open_message(*in_i, v["child2.request"]);
    const auto resp = open_message(*in_r, v["child2.response"]);
    ASSERT_TRUE(req && resp);
    EXPECT_EQ(hex(payload_of(*req, v["child2.request"][ike_header_len], pl_nonce)), hex(v["child2.ni"]));
    EXPECT_EQ(hex(payload_of(*resp, v["child2.response"][ike_header_len], pl_nonce)), hex(v["child2.nr"]));

    ChildKeys c2 = derive_child_keys(prf::hmac_sha2_256, v["ike1.sk_d"], v["child2.gir"], v["child2.ni"],
                                     v["child2.nr"], encr::aes_gcm_16, 256, integ::none);
    EXPECT_EQ(hex(c2.encr_i), hex(v["child2.encr_i"]));
    EXPECT_EQ(hex(c2.encr_r), hex(v["child2.encr_r"]));
    c2.wipe();
    EXPECT_TRUE(c2.encr_i.empty() && c2.encr_r.empty());
}

TEST(IkeCryptoStrongswan, RekeyedIkeSaKeys)
{
    const Vectors v("ike/strongswan-psk-kat.txt");
    // The rekey exchange runs under the old SA; its nonces and new SPIs.
    auto in_i = SkCipher::create(encr::aes_gcm_16, 256, integ::none, v["ike1.sk_ei"], {});
    auto in_r = SkCipher::create(encr::aes_gcm_16, 256, integ::none, v["ike1.sk_er"], {});
    ASSERT_TRUE(in_i && in_r);
    const auto req = open_message(*in_i, v["ike2.request"]);
    const auto resp = open_message(*in_r, v["ike2.response"]);
    ASSERT_TRUE(req && resp);
    EXPECT_EQ(hex(payload_of(*req, pl_sa, pl_nonce)), hex(v["ike2.ni"]));
    EXPECT_EQ(hex(payload_of(*resp, pl_sa, pl_nonce)), hex(v["ike2.nr"]));
    // Proposal substructure: SPI (8 bytes) after its 8-byte header.
    EXPECT_EQ(hex(ByteView(payload_of(*req, pl_sa, pl_sa)).subspan(8, 8)), hex(v["ike2.spi_i"]));
    EXPECT_EQ(hex(ByteView(payload_of(*resp, pl_sa, pl_sa)).subspan(8, 8)), hex(v["ike2.spi_r"]));

    EXPECT_EQ(hex(prf_compute(prf::hmac_sha2_256, v["ike1.sk_d"], cat({v["ike2.gir"], v["ike2.ni"], v["ike2.nr"]}))),
              hex(v["ike2.skeyseed"]));
    const IkeKeys k = derive_rekeyed_ike_keys(prf::hmac_sha2_256, v["ike1.sk_d"], strongswan_suite, v["ike2.ni"],
                                              v["ike2.nr"], v["ike2.gir"], be64(v["ike2.spi_i"]),
                                              be64(v["ike2.spi_r"]));
    EXPECT_EQ(hex(k.sk_d), hex(v["ike2.sk_d"]));
    EXPECT_EQ(hex(k.sk_ei), hex(v["ike2.sk_ei"]));
    EXPECT_EQ(hex(k.sk_er), hex(v["ike2.sk_er"]));
    EXPECT_EQ(hex(k.sk_pi), hex(v["ike2.sk_pi"]));
    EXPECT_EQ(hex(k.sk_pr), hex(v["ike2.sk_pr"]));
}

// --- PRF, prf+, hashes ---------------------------------------------------------------

struct HmacCase {
    int number;
    Bytes key;
    Bytes data;
    const char* sha256;
    const char* sha384;
    const char* sha512;
};

// RFC 4231 §4 test cases 1-4, 6, 7 (5 is the truncated-output case).
std::vector<HmacCase> rfc4231_cases()
{
    auto repeat = [](uint8_t b, std::size_t n) { return Bytes(n, b); };
    auto str = [](std::string_view s) { return Bytes(s.begin(), s.end()); };
    Bytes key4;
    for (uint8_t i = 1; i <= 25; ++i) key4.push_back(i);
    return {
        {1, repeat(0x0b, 20), str("Hi There"),
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
         "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6",
         "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"},
        {2, str("Jefe"), str("what do ya want for nothing?"),
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
         "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
         "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
        {3, repeat(0xaa, 20), repeat(0xdd, 50),
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
         "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b2a5ab39dc13814b94e3ab6e101a34f27",
         "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb"},
        {4, key4, repeat(0xcd, 50),
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
         "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e6801dd23c4a7d679ccf8a386c674cffb",
         "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3dba91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd"},
        {6, repeat(0xaa, 131), str("Test Using Larger Than Block-Size Key - Hash Key First"),
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
         "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952",
         "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"},
        {7, repeat(0xaa, 131),
         str("This is a test using a larger than block-size key and a larger than block-size data. The key needs "
             "to be hashed before being used by the HMAC algorithm."),
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
         "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5a678cc31e799176d3860e6110c46523e",
         "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58"},
    };
}

TEST(IkeCryptoPrf, Rfc4231Vectors)
{
    for (const HmacCase& c : rfc4231_cases()) {
        EXPECT_EQ(hex(prf_compute(prf::hmac_sha2_256, c.key, c.data)), c.sha256) << "case " << c.number;
        EXPECT_EQ(hex(prf_compute(prf::hmac_sha2_384, c.key, c.data)), c.sha384) << "case " << c.number;
        EXPECT_EQ(hex(prf_compute(prf::hmac_sha2_512, c.key, c.data)), c.sha512) << "case " << c.number;
    }
    // RFC 2202 §3 test case 1 for PRF_HMAC_SHA1.
    EXPECT_EQ(hex(prf_compute(prf::hmac_sha1, Bytes(20, 0x0b), text("Hi There"))),
              "b617318655057264e28bc0b6fb378c8ef146be00");
    EXPECT_TRUE(prf_compute(99, Bytes(20, 1), text("x")).empty());
}

TEST(IkeCryptoPrf, PrfPlusStructure)
{
    const Bytes key = unhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    const Bytes seed = cat({text("nonces"), Bytes{0xde, 0xad}});
    for (uint16_t id : {prf::hmac_sha1, prf::hmac_sha2_256, prf::hmac_sha2_384, prf::hmac_sha2_512}) {
        const std::size_t h = prf_output_len(id);
        // T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n).
        Bytes expect;
        Bytes t;
        for (uint8_t n = 1; n <= 5; ++n) {
            t = prf_compute(id, key, cat({t, seed, Bytes{n}}));
            expect.insert(expect.end(), t.begin(), t.end());
        }
        for (std::size_t len : {std::size_t(1), h - 1, h, h + 1, 3 * h + 7, 5 * h}) {
            const Bytes out = prf_plus(id, key, seed, len);
            ASSERT_EQ(out.size(), len) << prf_name(id);
            EXPECT_EQ(hex(out), hex(ByteView(expect).first(len))) << prf_name(id) << " len " << len;
        }
        // At most 255 blocks: the counter is one octet.
        EXPECT_EQ(prf_plus(id, key, seed, 255 * h).size(), 255 * h);
        EXPECT_TRUE(prf_plus(id, key, seed, 255 * h + 1).empty());
        EXPECT_TRUE(prf_plus(id, key, seed, 0).empty());
    }
    EXPECT_TRUE(prf_plus(1, key, seed, 10).empty());   // PRF_HMAC_MD5: not ours
}

TEST(IkeCryptoPrf, Hashes)
{
    // FIPS 180-2 appendix examples ("abc").
    EXPECT_EQ(hex(sha1(text("abc"))), "a9993e364706816aba3e25717850c26c9cd0d89d");
    EXPECT_EQ(hex(sha256(text("abc"))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(hex(sha256({})), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(IkeCryptoPrf, RandomBytes)
{
    std::array<uint8_t, 32> a{}, b{};
    random_bytes(a);
    random_bytes(b);
    EXPECT_NE(hex(a), hex(b));
    EXPECT_NE(hex(a), std::string(64, '0'));
    random_bytes({});   // nothing asked, nothing done
}

// --- Diffie-Hellman ---------------------------------------------------------------------

struct GroupInfo {
    uint16_t group;
    std::size_t public_len;
    std::size_t secret_len;
};
const GroupInfo all_groups[] = {
    {dh::modp1024, 128, 128}, {dh::modp2048, 256, 256}, {dh::modp3072, 384, 384}, {dh::modp4096, 512, 512},
    {dh::ecp256, 64, 32},     {dh::ecp384, 96, 48},     {dh::ecp521, 132, 66},    {dh::curve25519, 32, 32},
};

Bytes seed_for(char who, uint16_t group)
{
    Bytes s = sha256(text(std::string("ravelin dh test ") + who + std::to_string(group)));
    s.insert(s.end(), 8, uint8_t(who));   // 40 bytes: X25519 takes the first 32
    return s;
}

TEST(IkeCryptoDh, BothSidesAgreeInEveryGroup)
{
    for (const GroupInfo& g : all_groups) {
        SCOPED_TRACE(std::string(dh_name(g.group)));
        EXPECT_TRUE(dh_supported(g.group));
        auto a = DhKey::create(g.group, seed_for('a', g.group));
        auto b = DhKey::create(g.group, seed_for('b', g.group));
        ASSERT_TRUE(a && b);
        EXPECT_EQ(a->group(), g.group);
        EXPECT_EQ(a->public_value().size(), g.public_len);
        EXPECT_NE(hex(a->public_value()), hex(b->public_value()));
        const auto ab = a->shared_secret(b->public_value());
        const auto ba = b->shared_secret(a->public_value());
        ASSERT_TRUE(ab && ba);
        EXPECT_EQ(ab->size(), g.secret_len);
        EXPECT_EQ(hex(*ab), hex(*ba));

        // The same seed gives the same key; no seed gives fresh ones.
        auto a2 = DhKey::create(g.group, seed_for('a', g.group));
        ASSERT_TRUE(a2);
        EXPECT_EQ(hex(a2->public_value()), hex(a->public_value()));
        auto r1 = DhKey::create(g.group);
        auto r2 = DhKey::create(g.group);
        ASSERT_TRUE(r1 && r2);
        EXPECT_NE(hex(r1->public_value()), hex(r2->public_value()));
        const auto s1 = r1->shared_secret(r2->public_value());
        const auto s2 = r2->shared_secret(r1->public_value());
        ASSERT_TRUE(s1 && s2);
        EXPECT_EQ(hex(*s1), hex(*s2));

        // Wrong lengths, whatever the group.
        Bytes longer = b->public_value();
        longer.push_back(0);
        EXPECT_FALSE(a->shared_secret(longer));
        EXPECT_FALSE(a->shared_secret(ByteView(b->public_value()).first(g.public_len - 1)));
        EXPECT_FALSE(a->shared_secret({}));
    }
    for (uint16_t unsupported : {0, 1, 5, 17, 22, 24, 32}) {
        EXPECT_FALSE(dh_supported(unsupported));
        EXPECT_EQ(DhKey::create(unsupported), nullptr);
    }
}

TEST(IkeCryptoDh, ModpPrimesAndBounds)
{
    const Vectors v("ike/dh-kat.txt");
    for (uint16_t group : {dh::modp1024, dh::modp2048, dh::modp3072, dh::modp4096}) {
        SCOPED_TRACE(std::string(dh_name(group)));
        const Bytes& p = v["modp" + std::to_string(group) + ".p"];
        auto key = DhKey::create(group, Bytes{0x02});
        ASSERT_TRUE(key);
        // g^2 = 4, padded to the prime's length.
        Bytes four(p.size(), 0);
        four.back() = 4;
        EXPECT_EQ(hex(key->public_value()), hex(four));

        Bytes value(p.size(), 0);
        EXPECT_FALSE(key->shared_secret(value)) << "0";
        value.back() = 1;
        EXPECT_FALSE(key->shared_secret(value)) << "1";
        value.back() = 2;
        auto two = key->shared_secret(value);       // g itself: 2^2 = 4
        ASSERT_TRUE(two);
        EXPECT_EQ(hex(*two), hex(four));
        Bytes pm1 = p;
        pm1.back() -= 1;                            // p ends in 0xff
        EXPECT_FALSE(key->shared_secret(pm1)) << "p-1";
        EXPECT_FALSE(key->shared_secret(p)) << "p";
        EXPECT_FALSE(key->shared_secret(Bytes(p.size(), 0xff))) << "above p";
        // p-2 = -2 is in range but outside g's subgroup of order (p-1)/2:
        // refused in every group alike (crypto.cc gives OpenSSL q).
        Bytes pm2 = p;
        pm2.back() -= 2;
        EXPECT_FALSE(key->shared_secret(pm2)) << "p-2";

        // Seeds that reduce to exponents 0 or 1 are refused.
        EXPECT_EQ(DhKey::create(group, Bytes{0x00}), nullptr);
        EXPECT_EQ(DhKey::create(group, Bytes{0x01}), nullptr);
        EXPECT_EQ(DhKey::create(group, pm1), nullptr);   // p-1 mod q = 0
    }
}

TEST(IkeCryptoDh, ModpKnownAnswers)
{
    const Vectors v("ike/dh-kat.txt");
    for (uint16_t group : {dh::modp1024, dh::modp2048, dh::modp3072, dh::modp4096}) {
        const std::string n = "modp" + std::to_string(group);
        auto key = DhKey::create(group, v[n + ".seed"]);
        ASSERT_TRUE(key);
        EXPECT_EQ(hex(key->public_value()), hex(v[n + ".public"])) << n;
        const auto s = key->shared_secret(v[n + ".peer"]);
        ASSERT_TRUE(s);
        EXPECT_EQ(hex(*s), hex(v[n + ".shared"])) << n;
    }
}

TEST(IkeCryptoDh, EcpRfc5903Vectors)
{
    const Vectors v("ike/dh-kat.txt");
    for (uint16_t group : {dh::ecp256, dh::ecp384, dh::ecp521}) {
        const std::string n = "ecp" + std::to_string(group);
        SCOPED_TRACE(n);
        auto i = DhKey::create(group, v[n + ".i"]);
        auto r = DhKey::create(group, v[n + ".r"]);
        ASSERT_TRUE(i && r);
        const Bytes gi = cat({v[n + ".gix"], v[n + ".giy"]});
        const Bytes gr = cat({v[n + ".grx"], v[n + ".gry"]});
        EXPECT_EQ(hex(i->public_value()), hex(gi));     // x || y, no 04 prefix
        EXPECT_EQ(hex(r->public_value()), hex(gr));
        const auto si = i->shared_secret(gr);
        const auto sr = r->shared_secret(gi);
        ASSERT_TRUE(si && sr);
        EXPECT_EQ(hex(*si), hex(v[n + ".girx"]));
        EXPECT_EQ(hex(*sr), hex(v[n + ".girx"]));

        Bytes off = gr;
        off.back() ^= 0x01;                              // y changed: off the curve
        EXPECT_FALSE(i->shared_secret(off));
        EXPECT_FALSE(i->shared_secret(Bytes(gr.size(), 0x00)));   // (0, 0), also "infinity" to some
        EXPECT_FALSE(i->shared_secret(Bytes(gr.size(), 0xff)));   // coordinates >= p
        EXPECT_FALSE(i->shared_secret(cat({Bytes{0x04}, gr})));    // SEC 1 form is not IKE's
        EXPECT_FALSE(i->shared_secret(ByteView(gr).first(gr.size() / 2)));   // x alone
        EXPECT_EQ(DhKey::create(group, Bytes{0x00}), nullptr);  // scalar 0
    }
    // The scalar is reduced mod the order: n + 1 gives the generator (P-256).
    const Bytes n256 = unhex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    Bytes n_plus_1 = n256;
    n_plus_1.back() += 1;
    auto g = DhKey::create(dh::ecp256, n_plus_1);
    ASSERT_TRUE(g);
    EXPECT_EQ(hex(g->public_value()),
              "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
              "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5");
    EXPECT_EQ(DhKey::create(dh::ecp256, n256), nullptr);   // n mod n = 0
}

TEST(IkeCryptoDh, X25519Rfc7748AndLowOrderPoints)
{
    const Vectors v("ike/dh-kat.txt");
    auto a = DhKey::create(dh::curve25519, v["x25519.a"]);
    auto b = DhKey::create(dh::curve25519, v["x25519.b"]);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(hex(a->public_value()), hex(v["x25519.a_pub"]));
    EXPECT_EQ(hex(b->public_value()), hex(v["x25519.b_pub"]));
    const auto ka = a->shared_secret(v["x25519.b_pub"]);
    const auto kb = b->shared_secret(v["x25519.a_pub"]);
    ASSERT_TRUE(ka && kb);
    EXPECT_EQ(hex(*ka), hex(v["x25519.k"]));
    EXPECT_EQ(hex(*kb), hex(v["x25519.k"]));

    for (int n = 0; n < 5; ++n) {
        const std::string name = "x25519.low_order_" + std::to_string(n);
        EXPECT_FALSE(a->shared_secret(v[name])) << name;
    }
    // The seed's first 32 bytes are the key; shorter seeds are refused.
    auto longer = DhKey::create(dh::curve25519, cat({v["x25519.a"], Bytes(9, 0x77)}));
    ASSERT_TRUE(longer);
    EXPECT_EQ(hex(longer->public_value()), hex(v["x25519.a_pub"]));
    EXPECT_EQ(DhKey::create(dh::curve25519, ByteView(v["x25519.a"]).first(31)), nullptr);
}

// --- SK payload ---------------------------------------------------------------------------

struct Suite {
    uint16_t encr, bits, integ;
};
const Suite all_suites[] = {
    {encr::aes_cbc, 128, integ::hmac_sha2_256_128},   {encr::aes_cbc, 192, integ::hmac_sha2_384_192},
    {encr::aes_cbc, 256, integ::hmac_sha2_512_256},   {encr::aes_cbc, 256, integ::hmac_sha2_256_128},
    {encr::aes_cbc, 128, integ::hmac_sha1_96},        {encr::des3, 0, integ::hmac_sha1_96},
    {encr::des3, 192, integ::hmac_sha2_256_128},      {encr::aes_gcm_16, 128, integ::none},
    {encr::aes_gcm_16, 192, integ::none},             {encr::aes_gcm_16, 256, integ::none},
    {encr::chacha20_poly1305, 0, integ::none},        {encr::chacha20_poly1305, 256, integ::none},
};

std::string suite_name(const Suite& s)
{
    return std::string(encr_name(s.encr)) + "-" + std::to_string(s.bits) + "/" + std::string(integ_name(s.integ));
}

struct Keys {
    Bytes e, a;
};
Keys keys_for(const Suite& s)
{
    Keys k{Bytes(encr_keymat_len(s.encr, s.bits)), Bytes(integ_key_len(s.integ))};
    random_bytes(k.e);
    random_bytes(k.a);
    return k;
}

Bytes fake_prefix(std::size_t body_len)
{
    // IKE header + SK payload header, lengths filled in as a sender would.
    Bytes p = unhex("0011223344556677 8899aabbccddeeff 2e202508 00000003 00000000 23000000");
    const std::size_t total = p.size() + body_len;
    p[24] = uint8_t(total >> 24);
    p[25] = uint8_t(total >> 16);
    p[26] = uint8_t(total >> 8);
    p[27] = uint8_t(total);
    p[30] = uint8_t((body_len + 4) >> 8);
    p[31] = uint8_t(body_len + 4);
    return p;
}

TEST(IkeCryptoSk, RoundTripEverySuite)
{
    for (const Suite& s : all_suites) {
        SCOPED_TRACE(suite_name(s));
        const Keys k = keys_for(s);
        ASSERT_GT(k.e.size(), 0u);
        auto c = SkCipher::create(s.encr, s.bits, s.integ, k.e, k.a);
        ASSERT_TRUE(c);
        for (std::size_t n : {0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 100, 1000, 3000}) {
            Bytes plain(n);
            random_bytes(plain);
            const Bytes prefix = fake_prefix(c->sealed_len(n));
            const Bytes body = c->seal(prefix, plain);
            ASSERT_EQ(body.size(), c->sealed_len(n)) << n;
            const auto back = c->open(prefix, body);
            ASSERT_TRUE(back) << n;
            EXPECT_EQ(hex(*back), hex(plain)) << n;
            EXPECT_GE(c->max_plaintext(body.size()), n);
        }
        // max_plaintext is the largest that fits, for every body size.
        for (std::size_t body = 0; body < 120; ++body) {
            const std::size_t m = c->max_plaintext(body);
            if (body >= c->sealed_len(0)) {
                EXPECT_LE(c->sealed_len(m), body) << body;
                EXPECT_GT(c->sealed_len(m + 1), body) << body;
            } else {
                EXPECT_EQ(m, 0u) << body;
            }
        }
        // Different keys in the other direction do not open it.
        const Keys other = keys_for(s);
        auto d = SkCipher::create(s.encr, s.bits, s.integ, other.e, other.a);
        ASSERT_TRUE(d);
        const Bytes prefix = fake_prefix(c->sealed_len(5));
        EXPECT_FALSE(d->open(prefix, c->seal(prefix, text("hello"))));
    }
}

TEST(IkeCryptoSk, AnyChangedOrMissingByteFails)
{
    for (const Suite& s : all_suites) {
        SCOPED_TRACE(suite_name(s));
        const Keys k = keys_for(s);
        auto c = SkCipher::create(s.encr, s.bits, s.integ, k.e, k.a);
        ASSERT_TRUE(c);
        const Bytes plain = unhex("2900000c01000000c6120001290000080000400024000008");
        const Bytes prefix = fake_prefix(c->sealed_len(plain.size()));
        const Bytes body = c->seal(prefix, plain);
        ASSERT_TRUE(c->open(prefix, body));
        for (std::size_t i = 0; i < prefix.size(); ++i) {
            Bytes bad = prefix;
            bad[i] ^= 0x80;
            EXPECT_FALSE(c->open(bad, body)) << "prefix byte " << i;
        }
        for (std::size_t i = 0; i < body.size(); ++i) {   // IV, ciphertext, ICV
            Bytes bad = body;
            bad[i] ^= 0x01;
            EXPECT_FALSE(c->open(prefix, bad)) << "body byte " << i;
        }
        for (std::size_t len = 0; len < body.size(); ++len)
            EXPECT_FALSE(c->open(prefix, ByteView(body).first(len))) << "truncated to " << len;
        EXPECT_FALSE(c->open(prefix, cat({body, Bytes{0}}))) << "one byte more";
        EXPECT_FALSE(c->open(ByteView(prefix).first(prefix.size() - 1), body)) << "shorter prefix";
    }
}

TEST(IkeCryptoSk, AeadIvIsACounterCbcIvIsRandom)
{
    const Keys g = keys_for({encr::aes_gcm_16, 256, integ::none});
    auto gcm = SkCipher::create(encr::aes_gcm_16, 256, integ::none, g.e, {});
    ASSERT_TRUE(gcm);
    std::set<std::string> seen;
    uint64_t previous = 0;
    for (int i = 0; i < 1000; ++i) {
        const Bytes body = gcm->seal({}, text("same"));
        ASSERT_EQ(body.size(), 8u + 4 + 1 + 16);
        const uint64_t iv = be64(ByteView(body).first(8));
        if (i > 0) {
            EXPECT_EQ(iv, previous + 1);
        }
        previous = iv;
        seen.insert(hex(body));
    }
    EXPECT_EQ(seen.size(), 1000u);

    const Keys k = keys_for({encr::aes_cbc, 128, integ::hmac_sha2_256_128});
    auto cbc = SkCipher::create(encr::aes_cbc, 128, integ::hmac_sha2_256_128, k.e, k.a);
    ASSERT_TRUE(cbc);
    EXPECT_NE(hex(cbc->seal({}, text("same"))), hex(cbc->seal({}, text("same"))));
}

// CBC with a valid ICV over a body whose padding is wrong: the test holds
// SK_a, and HMAC-SHA2-256-128 is the PRF's HMAC truncated to 16 bytes.
TEST(IkeCryptoSk, CbcChecksBlockAndPaddingAfterTheIcv)
{
    const Keys k = keys_for({encr::aes_cbc, 128, integ::hmac_sha2_256_128});
    auto c = SkCipher::create(encr::aes_cbc, 128, integ::hmac_sha2_256_128, k.e, k.a);
    ASSERT_TRUE(c);
    const Bytes prefix = fake_prefix(16 + 16 + 16);
    auto with_icv = [&](ByteView iv_and_ct) {
        const Bytes mac = prf_compute(prf::hmac_sha2_256, k.a, cat({prefix, iv_and_ct}));
        return cat({iv_and_ct, ByteView(mac).first(16)});
    };
    const Bytes body = c->seal(prefix, {});   // one block: 15 zero pad bytes, then 15
    ASSERT_EQ(body.size(), 48u);
    const Bytes iv_ct(body.begin(), body.end() - 16);
    ASSERT_EQ(hex(with_icv(iv_ct)), hex(body));   // the ICV construction is RFC 7296's

    // Flipping IV bits flips the same plaintext bits (CBC): Pad Length 15 -> 5
    // gives ten zero bytes of plaintext, 15 -> 16 is longer than the block.
    Bytes iv5 = iv_ct;
    iv5[15] ^= 15 ^ 5;
    const auto ten = c->open(prefix, with_icv(iv5));
    ASSERT_TRUE(ten);
    EXPECT_EQ(hex(*ten), hex(Bytes(10, 0)));
    Bytes iv16 = iv_ct;
    iv16[15] ^= 15 ^ 16;
    EXPECT_FALSE(c->open(prefix, with_icv(iv16)));
    // Ciphertext not a whole number of blocks, with a valid ICV.
    EXPECT_FALSE(c->open(prefix, with_icv(ByteView(iv_ct).first(31))));
    EXPECT_FALSE(c->open(prefix, with_icv(ByteView(iv_ct).first(16))));   // IV only
}

// An SK body built independently with EVP (nonce = salt || IV, AAD = the
// prefix), as RFC 5282 §5.1 / RFC 7634 §3 describe.
Bytes reference_aead_body(const EVP_CIPHER* cipher, ByteView keymat, ByteView iv, ByteView aad, ByteView padded)
{
    const Bytes nonce = cat({keymat.last(4), iv});
    std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
    Bytes out(padded.size() + 16);
    int len = 0;
    if (!ctx || EVP_EncryptInit_ex(ctx.get(), cipher, nullptr, nullptr, nullptr) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_IVLEN, 12, nullptr) != 1 ||
        EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, keymat.data(), nonce.data()) != 1 ||
        EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(), int(aad.size())) != 1 ||
        EVP_EncryptUpdate(ctx.get(), out.data(), &len, padded.data(), int(padded.size())) != 1 ||
        EVP_EncryptFinal_ex(ctx.get(), out.data() + len, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, 16, out.data() + padded.size()) != 1)
        throw std::runtime_error("EVP reference encryption failed");
    return cat({iv, out});
}

TEST(IkeCryptoSk, AeadMatchesAnIndependentConstruction)
{
    struct Case {
        uint16_t encr, bits;
        const EVP_CIPHER* cipher;
    };
    for (const Case& t : {Case{encr::aes_gcm_16, 128, EVP_aes_128_gcm()}, Case{encr::aes_gcm_16, 256, EVP_aes_256_gcm()},
                          Case{encr::chacha20_poly1305, 0, EVP_chacha20_poly1305()}}) {
        SCOPED_TRACE(std::string(encr_name(t.encr)));
        Bytes keymat(encr_keymat_len(t.encr, t.bits));
        random_bytes(keymat);
        auto c = SkCipher::create(t.encr, t.bits, integ::none, keymat, {});
        ASSERT_TRUE(c);
        const Bytes iv = unhex("0102030405060708");
        const Bytes prefix = fake_prefix(8 + 6 + 16);
        // Plaintext "hello" with two pad bytes and Pad Length 2.
        const auto opened = c->open(prefix, reference_aead_body(t.cipher, keymat, iv, prefix, unhex("68656c6c6f aaaa 02")));
        ASSERT_TRUE(opened);
        EXPECT_EQ(hex(*opened), hex(text("hello")));
        // Pad Length larger than what precedes it: authentic but inconsistent.
        EXPECT_FALSE(c->open(prefix, reference_aead_body(t.cipher, keymat, iv, prefix, unhex("6869 05"))));
        // And our seal() is what the reference produces for its IV.
        const Bytes sealed = c->seal(prefix, text("hello"));
        ASSERT_EQ(sealed.size(), 8u + 6 + 16);
        EXPECT_EQ(hex(sealed), hex(reference_aead_body(t.cipher, keymat, ByteView(sealed).first(8), prefix,
                                                         unhex("68656c6c6f 00"))));
    }
}

TEST(IkeCryptoSk, CreateRefusesInconsistentParameters)
{
    const Bytes k16(16, 1), k20(20, 2), k24(24, 3), k32(32, 4), k36(36, 5);
    EXPECT_TRUE(SkCipher::create(encr::aes_cbc, 128, integ::hmac_sha2_256_128, k16, k32));
    EXPECT_FALSE(SkCipher::create(encr::aes_cbc, 128, integ::hmac_sha2_256_128, k24, k32));   // key length
    EXPECT_FALSE(SkCipher::create(encr::aes_cbc, 128, integ::hmac_sha2_256_128, k16, k20));   // SK_a length
    EXPECT_FALSE(SkCipher::create(encr::aes_cbc, 128, integ::none, k16, {}));                 // no integrity
    EXPECT_FALSE(SkCipher::create(encr::aes_cbc, 100, integ::hmac_sha2_256_128, Bytes(12), k32));
    EXPECT_FALSE(SkCipher::create(encr::des3, 128, integ::hmac_sha1_96, k24, k20));
    EXPECT_TRUE(SkCipher::create(encr::aes_gcm_16, 256, integ::none, k36, {}));
    EXPECT_FALSE(SkCipher::create(encr::aes_gcm_16, 256, integ::none, k32, {}));               // no salt
    EXPECT_FALSE(SkCipher::create(encr::aes_gcm_16, 256, integ::hmac_sha2_256_128, k36, k32)); // AEAD + integ
    EXPECT_FALSE(SkCipher::create(encr::chacha20_poly1305, 128, integ::none, Bytes(20), {}));
    EXPECT_FALSE(SkCipher::create(encr::null_aes_gmac, 256, integ::none, k36, {}));            // ESP only
    EXPECT_FALSE(SkCipher::create(encr::null_, 0, integ::hmac_sha2_256_128, {}, k32));
    EXPECT_FALSE(SkCipher::create(99, 128, integ::hmac_sha2_256_128, k16, k32));
}

// --- key derivation ---------------------------------------------------------------------------

TEST(IkeCryptoKeys, IkeKeyLengthsAndOrder)
{
    const Bytes ni(32, 0x11), nr(24, 0x22), shared(256, 0x33);
    const uint64_t spi_i = 0x0102030405060708, spi_r = 0x1112131415161718;
    const IkeSuite s{encr::aes_cbc, 256, prf::hmac_sha2_384, integ::hmac_sha2_512_256, dh::modp2048};
    const IkeKeys k = derive_ike_keys(s, ni, nr, shared, spi_i, spi_r);
    const Bytes skeyseed = prf_compute(prf::hmac_sha2_384, cat({ni, nr}), shared);
    const Bytes keymat = prf_plus(prf::hmac_sha2_384, skeyseed,
                                  cat({ni, nr, unhex("0102030405060708 1112131415161718")}), 48 + 64 * 2 + 32 * 2 + 48 * 2);
    ByteView m(keymat);
    auto next = [&m](std::size_t n) {
        const std::string h = hex(m.first(n));
        m = m.subspan(n);
        return h;
    };
    EXPECT_EQ(hex(k.sk_d), next(48));
    EXPECT_EQ(hex(k.sk_ai), next(64));
    EXPECT_EQ(hex(k.sk_ar), next(64));
    EXPECT_EQ(hex(k.sk_ei), next(32));
    EXPECT_EQ(hex(k.sk_er), next(32));
    EXPECT_EQ(hex(k.sk_pi), next(48));
    EXPECT_EQ(hex(k.sk_pr), next(48));
    EXPECT_TRUE(m.empty());

    // ChaCha20-Poly1305 (RFC 7634): 32-byte key + 4-byte salt, no SK_a.
    const IkeKeys c = derive_ike_keys({encr::chacha20_poly1305, 0, prf::hmac_sha2_256, integ::none, dh::curve25519},
                                      ni, nr, shared, spi_i, spi_r);
    EXPECT_EQ(c.sk_ei.size(), 36u);
    EXPECT_TRUE(c.sk_ai.empty());
    EXPECT_EQ(c.sk_d.size(), 32u);

    // Unusable suites give nothing.
    EXPECT_TRUE(derive_ike_keys({encr::aes_cbc, 256, 99, integ::hmac_sha2_256_128, 14}, ni, nr, shared, 1, 2).sk_d.empty());
    EXPECT_TRUE(derive_ike_keys({encr::aes_cbc, 256, prf::hmac_sha2_256, integ::none, 14}, ni, nr, shared, 1, 2).sk_d.empty());
    EXPECT_TRUE(derive_ike_keys({encr::aes_cbc, 64, prf::hmac_sha2_256, integ::hmac_sha1_96, 14}, ni, nr, shared, 1, 2).sk_d.empty());
    EXPECT_TRUE(derive_ike_keys(s, ni, nr, {}, 1, 2).sk_d.empty());
    EXPECT_TRUE(derive_rekeyed_ike_keys(prf::hmac_sha2_256, {}, s, ni, nr, shared, 1, 2).sk_d.empty());
}

TEST(IkeCryptoKeys, ChildKeyLengthsAndOrder)
{
    const Bytes sk_d(32, 0x44), ni(32, 0x55), nr(32, 0x66), gir(32, 0x77);
    struct Case {
        uint16_t encr, bits, integ;
        std::size_t e, a;
    };
    for (const Case& t : {Case{encr::aes_cbc, 128, integ::hmac_sha1_96, 16, 20},
                          Case{encr::aes_cbc, 256, integ::hmac_sha2_256_128, 32, 32},
                          Case{encr::aes_gcm_16, 128, integ::none, 20, 0},        // RFC 4106: key + salt
                          Case{encr::aes_gcm_16, 256, integ::none, 36, 0},
                          Case{encr::null_aes_gmac, 256, integ::none, 36, 0},      // RFC 4543
                          Case{encr::chacha20_poly1305, 0, integ::none, 36, 0},    // RFC 7634
                          Case{encr::des3, 0, integ::hmac_sha2_512_256, 24, 64},
                          Case{encr::null_, 0, integ::hmac_sha2_256_128, 0, 32}}) {
        SCOPED_TRACE(std::string(encr_name(t.encr)) + "/" + std::string(integ_name(t.integ)));
        for (bool pfs : {false, true}) {
            const ChildKeys k = derive_child_keys(prf::hmac_sha2_256, sk_d, pfs ? ByteView(gir) : ByteView(), ni, nr,
                                                  t.encr, t.bits, t.integ);
            const Bytes keymat = prf_plus(prf::hmac_sha2_256, sk_d, pfs ? cat({gir, ni, nr}) : cat({ni, nr}),
                                          2 * (t.e + t.a));
            ASSERT_EQ(keymat.size(), 2 * (t.e + t.a));
            ByteView m(keymat);
            EXPECT_EQ(hex(k.encr_i), hex(m.first(t.e)));
            EXPECT_EQ(hex(k.integ_i), hex(m.subspan(t.e, t.a)));
            EXPECT_EQ(hex(k.encr_r), hex(m.subspan(t.e + t.a, t.e)));
            EXPECT_EQ(hex(k.integ_r), hex(m.subspan(2 * t.e + t.a, t.a)));
        }
    }
    EXPECT_TRUE(derive_child_keys(prf::hmac_sha2_256, sk_d, {}, ni, nr, 99, 128, integ::hmac_sha1_96).encr_i.empty());
    EXPECT_TRUE(derive_child_keys(prf::hmac_sha2_256, sk_d, {}, ni, nr, encr::aes_cbc, 128, 77).encr_i.empty());
    EXPECT_TRUE(derive_child_keys(prf::hmac_sha2_256, sk_d, {}, ni, nr, encr::null_, 0, integ::none).integ_i.empty());
    EXPECT_TRUE(derive_child_keys(7777, sk_d, {}, ni, nr, encr::aes_gcm_16, 128, integ::none).encr_i.empty());
}

TEST(IkeCryptoKeys, WipeEmpties)
{
    Bytes b = unhex("0102030405");
    wipe(b);
    EXPECT_TRUE(b.empty());
    Bytes none;
    wipe(none);
    EXPECT_TRUE(none.empty());
}

// --- names and sizes ---------------------------------------------------------------------------

// strongSwan's spellings, as swanctl --list-sas --raw prints encr-alg=,
// integ-alg=, prf-alg=, dh-group= (the captures' raw listings show
// AES_GCM_16, PRF_HMAC_SHA2_256, CURVE_25519).
TEST(IkeCryptoNames, StrongswanSpellings)
{
    EXPECT_EQ(encr_name(encr::aes_gcm_16), "AES_GCM_16");
    EXPECT_EQ(encr_name(encr::aes_cbc), "AES_CBC");
    EXPECT_EQ(encr_name(encr::chacha20_poly1305), "CHACHA20_POLY1305");
    EXPECT_EQ(encr_name(encr::des3), "3DES_CBC");
    EXPECT_EQ(encr_name(encr::null_aes_gmac), "NULL_AES_GMAC");
    EXPECT_EQ(encr_name(encr::null_), "NULL");
    EXPECT_EQ(prf_name(prf::hmac_sha1), "PRF_HMAC_SHA1");
    EXPECT_EQ(prf_name(prf::hmac_sha2_256), "PRF_HMAC_SHA2_256");
    EXPECT_EQ(prf_name(prf::hmac_sha2_384), "PRF_HMAC_SHA2_384");
    EXPECT_EQ(prf_name(prf::hmac_sha2_512), "PRF_HMAC_SHA2_512");
    EXPECT_EQ(integ_name(integ::hmac_sha1_96), "HMAC_SHA1_96");
    EXPECT_EQ(integ_name(integ::hmac_sha2_256_128), "HMAC_SHA2_256_128");
    EXPECT_EQ(integ_name(integ::hmac_sha2_384_192), "HMAC_SHA2_384_192");
    EXPECT_EQ(integ_name(integ::hmac_sha2_512_256), "HMAC_SHA2_512_256");
    EXPECT_EQ(dh_name(dh::modp1024), "MODP_1024");
    EXPECT_EQ(dh_name(dh::modp2048), "MODP_2048");
    EXPECT_EQ(dh_name(dh::modp3072), "MODP_3072");
    EXPECT_EQ(dh_name(dh::modp4096), "MODP_4096");
    EXPECT_EQ(dh_name(dh::ecp256), "ECP_256");
    EXPECT_EQ(dh_name(dh::ecp384), "ECP_384");
    EXPECT_EQ(dh_name(dh::ecp521), "ECP_521");
    EXPECT_EQ(dh_name(dh::curve25519), "CURVE_25519");
    EXPECT_EQ(encr_name(999), "UNKNOWN");
    EXPECT_EQ(dh_name(999), "UNKNOWN");
}

TEST(IkeCryptoNames, Sizes)
{
    EXPECT_TRUE(is_aead(encr::aes_gcm_16));
    EXPECT_TRUE(is_aead(encr::chacha20_poly1305));
    EXPECT_TRUE(is_aead(encr::null_aes_gmac));
    EXPECT_FALSE(is_aead(encr::aes_cbc));
    EXPECT_FALSE(is_aead(encr::des3));
    EXPECT_EQ(encr_keymat_len(encr::aes_cbc, 192), 24u);
    EXPECT_EQ(encr_keymat_len(encr::aes_gcm_16, 128), 20u);
    EXPECT_EQ(encr_keymat_len(encr::chacha20_poly1305, 0), 36u);
    EXPECT_EQ(encr_keymat_len(encr::des3, 0), 24u);
    EXPECT_EQ(encr_keymat_len(encr::aes_cbc, 0), 0u);
    EXPECT_EQ(integ_icv_len(integ::hmac_sha1_96), 12u);
    EXPECT_EQ(integ_icv_len(integ::hmac_sha2_512_256), 32u);
    EXPECT_EQ(integ_key_len(integ::hmac_sha2_384_192), 48u);
    EXPECT_EQ(integ_key_len(integ::none), 0u);
    EXPECT_EQ(prf_output_len(prf::hmac_sha1), 20u);
    EXPECT_EQ(prf_output_len(prf::hmac_sha2_512), 64u);
}

} // namespace
