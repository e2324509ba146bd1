// Tests for dataplane/crypto.hh: the ESP transforms against published
// vectors (RFC 3602, draft-mcgrew-gcm-test-01, RFC 7634, Wycheproof), against
// vectors made by an independent implementation (tests/vectors/esp/
// generated.json), and for the properties the vectors cannot show: open()
// refuses and wipes forgeries, CBC IVs are not predictable.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <set>
#include <string>

#include "crypto.hh"
#include "crypto_test_hooks.hh"
#include "test_algorithms.hh"
#include "vectors.hh"

namespace ravelin::dp {
namespace {

using test::Bytes;
using test::unhex;
using nlohmann::json;

IMB_MGR* mgr()
{
    static IMB_MGR* m = [] {
        IMB_MGR* p = crypto_manager_create();
        if (!p) std::abort();
        return p;
    }();
    return m;
}

// A transform with its keys, kept together because 3DES key schedules are
// pointed to from inside SaKeys (it must not move after make_transform).
struct Xform {
    EspTransform t;
    std::unique_ptr<SaKeys> k = std::make_unique<SaKeys>();
};

std::unique_ptr<Xform> make(const SaDescriptor& d)
{
    auto x = std::make_unique<Xform>();
    if (!make_transform(mgr(), d, x->t, *x->k)) return nullptr;
    return x;
}

SaDescriptor desc(EspCipher c, unsigned key_len, EspInteg i = EspInteg::none, bool esn = false)
{
    SaDescriptor d;
    d.spi = Spi(0x1000);
    d.cipher = c;
    d.integ = i;
    d.cipher_key_len = uint8_t(key_len);
    d.integ_key_len = uint8_t(integ_key_len(i));
    for (unsigned n = 0; n < d.cipher_key.size(); ++n) d.cipher_key[n] = uint8_t(0x11 * n + 1);
    for (unsigned n = 0; n < d.integ_key.size(); ++n) d.integ_key[n] = uint8_t(0x07 * n + 3);
    d.esn = esn;
    return d;
}

// Key (and salt) straight from bytes, for Wycheproof.
SaDescriptor desc_with_key(EspCipher c, const Bytes& key)
{
    SaDescriptor d = desc(c, unsigned(key.size()));
    std::copy(key.begin(), key.end(), d.cipher_key.begin());
    return d;
}

// --- transform selection --------------------------------------------------

TEST(CryptoManager, CreatesAndFrees)
{
    IMB_MGR* m = crypto_manager_create();
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(imb_get_errno(m), 0);
    crypto_manager_free(m);
    crypto_manager_free(nullptr);
}

TEST(MakeTransform, FillsSizesFromTheAlgorithm)
{
    struct Case {
        EspCipher c;
        unsigned key;
        EspInteg i;
        unsigned iv, icv, block;
    } cases[] = {
        {EspCipher::aes_gcm16, 16, EspInteg::none, 8, 16, 4},
        {EspCipher::aes_gcm16, 32, EspInteg::none, 8, 16, 4},
        {EspCipher::null_aes_gmac, 16, EspInteg::none, 8, 16, 4},
        {EspCipher::chacha20_poly1305, 32, EspInteg::none, 8, 16, 4},
        {EspCipher::aes_cbc, 16, EspInteg::hmac_sha256_128, 16, 16, 16},
        {EspCipher::aes_cbc, 32, EspInteg::hmac_sha384_192, 16, 24, 16},
        {EspCipher::aes_cbc, 32, EspInteg::hmac_sha512_256, 16, 32, 16},
        {EspCipher::des3_cbc, 24, EspInteg::hmac_sha1_96, 8, 12, 8},
        {EspCipher::null, 0, EspInteg::hmac_sha256_128, 0, 16, 4},
    };
    for (const Case& c : cases) {
        for (bool esn : {false, true}) {
            auto x = make(desc(c.c, c.key, c.i, esn));
            ASSERT_TRUE(x) << int(c.c) << " " << int(c.i);
            EXPECT_NE(x->t.seal, nullptr);
            EXPECT_NE(x->t.open, nullptr);
            EXPECT_EQ(x->t.iv_len, c.iv);
            EXPECT_EQ(x->t.icv_len, c.icv);
            EXPECT_EQ(x->t.block_len, c.block);
            EXPECT_EQ(x->t.esn, esn);
        }
    }
}

TEST(MakeTransform, RejectsWhatEspMustNotDo)
{
    EXPECT_FALSE(make(desc(EspCipher::aes_gcm16, 24)));                                // AES-192
    EXPECT_FALSE(make(desc(EspCipher::chacha20_poly1305, 16)));                        // short key
    EXPECT_FALSE(make(desc(EspCipher::aes_gcm16, 16, EspInteg::hmac_sha256_128)));     // AEAD + HMAC
    EXPECT_FALSE(make(desc(EspCipher::aes_cbc, 16, EspInteg::none)));                  // no integrity
    EXPECT_FALSE(make(desc(EspCipher::null, 0, EspInteg::none)));                      // nothing at all
    SaDescriptor d = desc(EspCipher::aes_cbc, 16, EspInteg::hmac_sha256_128);
    d.integ_key_len = 20;                                                               // wrong HMAC key size
    EXPECT_FALSE(make(d));
    EspTransform t;
    auto k = std::make_unique<SaKeys>();
    EXPECT_FALSE(make_transform(nullptr, desc(EspCipher::aes_gcm16, 16), t, *k));
}

// --- published ESP vectors ---------------------------------------------------

// RFC 3602 §4 cases 5-8 carry no ICV, so only the CBC cipher part of the
// transform is checked, with the packet's IV, in both directions.
TEST(Rfc3602, CbcCipherMatchesCases5To8)
{
    const json v = test::load_vectors("esp/rfc3602.json");
    ASSERT_EQ(v.at("cases").size(), 4u);
    for (const json& c : v.at("cases")) {
        SCOPED_TRACE(c.at("name").get<std::string>());
        auto x = make(test::descriptor_from_case(c, SaDirection::inbound, EspInteg::hmac_sha256_128));
        ASSERT_TRUE(x);
        const Bytes packet = unhex(c.at("packet").get<std::string>());
        const Bytes plain = unhex(c.at("plaintext").get<std::string>());
        const Bytes iv = unhex(c.at("iv").get<std::string>());
        ASSERT_EQ(packet.size(), 8 + 16 + plain.size());
        const Bytes cipher(packet.begin() + 24, packet.end());

        Bytes buf = cipher;
        ASSERT_TRUE(test_hooks::cbc_cipher(mgr(), x->t, *x->k, iv.data(), buf.data(), uint32_t(buf.size()), false));
        EXPECT_EQ(buf, plain);
        // The trailer of the decrypted packet is the RFC 4303 one.
        EXPECT_EQ(buf.back(), c.at("next_header").get<unsigned>());
        ASSERT_TRUE(test_hooks::cbc_cipher(mgr(), x->t, *x->k, iv.data(), buf.data(), uint32_t(buf.size()), true));
        EXPECT_EQ(buf, cipher);
    }
}

// Runs every case of an AEAD vector file through open() on the ESP packet,
// and through the raw primitive to check the ciphertext byte for byte.
void check_aead_file(const std::string& file, size_t expected_cases)
{
    const json v = test::load_vectors(file);
    ASSERT_EQ(v.at("cases").size(), expected_cases);
    for (const json& c : v.at("cases")) {
        SCOPED_TRACE(c.at("name").get<std::string>());
        const SaDescriptor d = test::descriptor_from_case(c, SaDirection::inbound);
        auto x = make(d);
        ASSERT_TRUE(x);
        const Bytes packet = unhex(c.at("packet").get<std::string>());
        const Bytes plain = unhex(c.at("plaintext").get<std::string>());
        const uint64_t seq = c.at("seq").get<uint64_t>();
        const uint32_t len = uint32_t(packet.size() - 16);

        Bytes buf = packet;
        ASSERT_TRUE(x->t.open(mgr(), x->t, *x->k, buf.data(), len, uint32_t(seq >> 32)));
        EXPECT_EQ(Bytes(buf.begin() + 16, buf.begin() + len), plain);

        // Encrypting the plaintext with the packet's nonce and AAD gives the
        // packet's ciphertext and tag.
        uint8_t nonce[12], aad[12], tag[16];
        std::memcpy(nonce, x->t.salt, 4);
        std::memcpy(nonce + 4, packet.data() + 8, 8);
        std::memcpy(aad, packet.data(), 4);
        uint32_t aad_len = 8;
        if (d.esn) {
            for (int n = 0; n < 4; ++n) aad[4 + n] = uint8_t(seq >> (56 - 8 * n));
            std::memcpy(aad + 8, packet.data() + 4, 4);
            aad_len = 12;
        } else {
            std::memcpy(aad + 4, packet.data() + 4, 4);
        }
        Bytes out(plain.size());
        ASSERT_TRUE(test_hooks::aead_encrypt(mgr(), x->t, *x->k, nonce, aad, aad_len, plain.data(), out.data(),
                                             uint32_t(plain.size()), tag));
        EXPECT_EQ(Bytes(packet.begin() + 16, packet.begin() + len), out);
        EXPECT_EQ(Bytes(packet.begin() + len, packet.end()), Bytes(tag, tag + 16));
    }
}

TEST(McGrewGcm, OpenDecryptsEveryPacket) { check_aead_file("esp/mcgrew_gcm.json", 13); }

TEST(Rfc7634, OpenDecryptsAppendixA) { check_aead_file("esp/rfc7634.json", 1); }

// generated.json: made by pyca/cryptography, an independent implementation.
// open() must accept every packet; seal() must rebuild it byte for byte
// (AEAD: the IV is the sequence number; CBC: the test hook forces the IV,
// the rest of seal() is the same code).
TEST(GeneratedVectors, OpenAcceptsAndSealReproduces)
{
    const json v = test::load_vectors("esp/generated.json");
    ASSERT_GE(v.at("cases").size(), 10u);
    for (const json& c : v.at("cases")) {
        SCOPED_TRACE(c.at("name").get<std::string>());
        auto x = make(test::descriptor_from_case(c, SaDirection::outbound));
        ASSERT_TRUE(x);
        const Bytes packet = unhex(c.at("packet").get<std::string>());
        const Bytes plain = unhex(c.at("plaintext").get<std::string>());
        const uint64_t seq = c.at("seq").get<uint64_t>();
        const uint32_t esn_hi = uint32_t(seq >> 32);
        const uint32_t hdr = 8 + x->t.iv_len;
        const uint32_t len = uint32_t(packet.size() - x->t.icv_len);

        Bytes buf = packet;
        ASSERT_TRUE(x->t.open(mgr(), x->t, *x->k, buf.data(), len, esn_hi));
        EXPECT_EQ(Bytes(buf.begin() + hdr, buf.begin() + len), plain);

        Bytes out(packet.size(), 0);
        std::memcpy(out.data(), packet.data(), 8);                 // SPI, seq lo
        std::memcpy(out.data() + hdr, plain.data(), plain.size());
        if (c.value("seal_matches", false)) {
            x->t.seal(mgr(), x->t, *x->k, out.data(), len, esn_hi);
        } else {
            ASSERT_TRUE(test_hooks::seal_with_iv(mgr(), x->t, *x->k, out.data(), len, esn_hi, packet.data() + 8));
        }
        EXPECT_EQ(out, packet);
    }
}

// --- properties ----------------------------------------------------------------

using test::Alg;
using test::all_algs;

// An ESP packet of `payload` octets padded for `t`, laid out for seal().
Bytes esp_packet(const EspTransform& t, uint32_t seq_lo, uint32_t payload, uint32_t& len)
{
    const uint32_t hdr = 8 + t.iv_len;
    const uint32_t pad = (0u - (payload + 2)) & (t.block_len - 1u);
    len = hdr + payload + pad + 2;
    Bytes b(len + t.icv_len, 0xee);
    const uint8_t head[8] = {0, 0, 0x10, 0, uint8_t(seq_lo >> 24), uint8_t(seq_lo >> 16), uint8_t(seq_lo >> 8),
                             uint8_t(seq_lo)};
    std::memcpy(b.data(), head, 8);
    for (uint32_t n = 0; n < payload; ++n) b[hdr + n] = uint8_t(n * 13 + 5);
    for (uint32_t n = 0; n < pad; ++n) b[hdr + payload + n] = uint8_t(n + 1);
    b[len - 2] = uint8_t(pad);
    b[len - 1] = 4;
    return b;
}

TEST(Transforms, SealOpenRoundTripAndEveryFlippedBitIsRefused)
{
    for (const Alg& a : all_algs) {
        for (bool esn : {false, true}) {
            SCOPED_TRACE(std::string(a.name) + (esn ? " esn" : ""));
            auto x = make(desc(a.c, a.key, a.i, esn));
            ASSERT_TRUE(x);
            for (uint32_t payload : {0u, 1u, 13u, 46u, 64u, 1400u}) {
                uint32_t len;
                const Bytes clear = esp_packet(x->t, 77, payload, len);
                Bytes sealed = clear;
                x->t.seal(mgr(), x->t, *x->k, sealed.data(), len, 5);
                Bytes opened = sealed;
                ASSERT_TRUE(x->t.open(mgr(), x->t, *x->k, opened.data(), len, 5));
                const uint32_t hdr = 8 + x->t.iv_len;
                EXPECT_TRUE(std::equal(clear.begin() + hdr, clear.begin() + len, opened.begin() + hdr));
                // With ESN the high half is authenticated although not sent.
                Bytes other = sealed;
                EXPECT_EQ(x->t.open(mgr(), x->t, *x->k, other.data(), len, 6), !esn);
                if (payload > 64) continue;
                for (size_t pos = 0; pos < sealed.size(); ++pos) {
                    Bytes bad = sealed;
                    bad[pos] ^= 0x01;
                    ASSERT_FALSE(x->t.open(mgr(), x->t, *x->k, bad.data(), len, 5)) << "byte " << pos;
                }
            }
        }
    }
}

// A forged packet's decryption must not stay behind in the buffer.
TEST(Transforms, RefusedPacketsAreNotLeftDecrypted)
{
    for (const Alg& a : all_algs) {
        if (a.c == EspCipher::null || a.c == EspCipher::null_aes_gmac) continue;   // nothing is secret
        SCOPED_TRACE(a.name);
        auto x = make(desc(a.c, a.key, a.i));
        ASSERT_TRUE(x);
        uint32_t len;
        const Bytes clear = esp_packet(x->t, 9, 200, len);
        Bytes bad = clear;
        x->t.seal(mgr(), x->t, *x->k, bad.data(), len, 0);
        bad.back() ^= 0x80;
        ASSERT_FALSE(x->t.open(mgr(), x->t, *x->k, bad.data(), len, 0));
        const uint32_t hdr = 8 + x->t.iv_len;
        EXPECT_FALSE(std::search(bad.begin(), bad.end(), clear.begin() + hdr, clear.begin() + hdr + 32) != bad.end());
    }
}

// AEAD IVs are the sequence number (unique per SA, RFC 4106 §3.1).
TEST(Transforms, AeadIvIsTheSequenceNumber)
{
    auto x = make(desc(EspCipher::aes_gcm16, 16, EspInteg::none, true));
    ASSERT_TRUE(x);
    uint32_t len;
    Bytes b = esp_packet(x->t, 0x01020304, 10, len);
    x->t.seal(mgr(), x->t, *x->k, b.data(), len, 0xa0b0c0d0);
    const uint8_t iv[8] = {0xa0, 0xb0, 0xc0, 0xd0, 1, 2, 3, 4};
    EXPECT_EQ(std::memcmp(b.data() + 8, iv, 8), 0);
}

// CBC IVs must be unpredictable (RFC 3602 §2): they differ per packet and
// per SA (random IV key) even with the same cipher key and sequence number.
TEST(Transforms, CbcIvsAreUnpredictable)
{
    std::set<Bytes> ivs;
    for (int sa = 0; sa < 4; ++sa) {
        auto x = make(desc(EspCipher::aes_cbc, 16, EspInteg::hmac_sha256_128));
        ASSERT_TRUE(x);
        for (uint32_t seq = 1; seq <= 64; ++seq) {
            uint32_t len;
            Bytes b = esp_packet(x->t, seq, 20, len);
            x->t.seal(mgr(), x->t, *x->k, b.data(), len, 0);
            Bytes iv(b.begin() + 8, b.begin() + 24);
            EXPECT_NE(iv, Bytes(16, 0));
            ivs.insert(iv);
        }
    }
    EXPECT_EQ(ivs.size(), 4u * 64u);
}

// --- Wycheproof ------------------------------------------------------------------

// Runs the groups ESP can use: 96-bit nonce, 128-bit tag, the key sizes the
// cipher offers. Valid cases must encrypt to the vector and decrypt; invalid
// ones must be refused.
size_t run_wycheproof_aead(const std::string& file, EspCipher cipher)
{
    const json v = test::load_vectors(file);
    size_t ran = 0;
    for (const json& g : v.at("testGroups")) {
        const unsigned key_bits = g.at("keySize"), iv_bits = g.at("ivSize"), tag_bits = g.at("tagSize");
        if (iv_bits != 96 || tag_bits != 128 || !valid_cipher_key_len(cipher, key_bits / 8)) continue;
        for (const json& c : g.at("tests")) {
            SCOPED_TRACE(file + " tcId " + std::to_string(c.at("tcId").get<int>()));
            const Bytes key = unhex(c.at("key").get<std::string>()), iv = unhex(c.at("iv").get<std::string>());
            const Bytes aad = unhex(c.at("aad").get<std::string>()), msg = unhex(c.at("msg").get<std::string>());
            const Bytes ct = unhex(c.at("ct").get<std::string>()), tag = unhex(c.at("tag").get<std::string>());
            const bool valid = c.at("result") == "valid";
            auto x = make(desc_with_key(cipher, key));
            if (!x) {
                ADD_FAILURE() << "no transform";
                continue;
            }
            Bytes out(ct.size() + 1);
            uint8_t t[16];
            if (valid) {
                EXPECT_TRUE(test_hooks::aead_encrypt(mgr(), x->t, *x->k, iv.data(), aad.data(), uint32_t(aad.size()),
                                                     msg.data(), out.data(), uint32_t(msg.size()), t));
                EXPECT_EQ(Bytes(out.begin(), out.begin() + long(ct.size())), ct);
                EXPECT_EQ(Bytes(t, t + 16), tag);
            }
            const bool ok = test_hooks::aead_decrypt(mgr(), x->t, *x->k, iv.data(), aad.data(), uint32_t(aad.size()),
                                                     ct.data(), out.data(), uint32_t(ct.size()), tag.data());
            EXPECT_EQ(ok, valid);
            if (ok) {
                EXPECT_EQ(Bytes(out.begin(), out.begin() + long(msg.size())), msg);
            }
            ++ran;
        }
    }
    return ran;
}

TEST(Wycheproof, AesGcm)
{
    const size_t ran = run_wycheproof_aead("wycheproof/aes_gcm_test.json", EspCipher::aes_gcm16);
    EXPECT_GE(ran, 100u);
    std::printf("[          ] %zu AES-GCM cases run\n", ran);
}

TEST(Wycheproof, ChaCha20Poly1305)
{
    const size_t ran = run_wycheproof_aead("wycheproof/chacha20_poly1305_test.json", EspCipher::chacha20_poly1305);
    EXPECT_GE(ran, 100u);
    std::printf("[          ] %zu ChaCha20-Poly1305 cases run\n", ran);
}

TEST(Wycheproof, AesGmac)
{
    const json v = test::load_vectors("wycheproof/aes_gmac_test.json");
    size_t ran = 0;
    for (const json& g : v.at("testGroups")) {
        const unsigned key_bits = g.at("keySize"), iv_bits = g.at("ivSize"), tag_bits = g.at("tagSize");
        if (iv_bits != 96 || tag_bits != 128 || (key_bits != 128 && key_bits != 256)) continue;
        for (const json& c : g.at("tests")) {
            SCOPED_TRACE("tcId " + std::to_string(c.at("tcId").get<int>()));
            const Bytes key = unhex(c.at("key").get<std::string>()), iv = unhex(c.at("iv").get<std::string>());
            const Bytes msg = unhex(c.at("msg").get<std::string>()), tag = unhex(c.at("tag").get<std::string>());
            auto x = make(desc_with_key(EspCipher::null_aes_gmac, key));
            ASSERT_TRUE(x);
            uint8_t t[16];
            ASSERT_TRUE(test_hooks::gmac(mgr(), x->t, *x->k, iv.data(), msg.data(), uint32_t(msg.size()), t));
            EXPECT_EQ(Bytes(t, t + 16) == tag, c.at("result") == "valid");
            ++ran;
        }
    }
    EXPECT_GE(ran, 100u);
    std::printf("[          ] %zu AES-GMAC cases run\n", ran);
}

} // namespace
} // namespace ravelin::dp
