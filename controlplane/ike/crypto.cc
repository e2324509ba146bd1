// IKE cryptography on OpenSSL 3 (see crypto.hh).
//
// Choices the header leaves open, fixed here:
// - Deterministic DH (tests): MODP takes the seed as a big-endian exponent
//   reduced mod q = (p-1)/2, the order of g = 2; ECP as a scalar reduced mod
//   the group order (RFC 5903 §8's private keys reproduce its public values);
//   X25519 the seed's first 32 bytes as the raw private key. A seed that reduces to an unusable value
//   (exponent 0 or 1, scalar 0) or an X25519 seed under 32 bytes gives nullptr.
//   Fresh keys go through the same code with random bytes: 64 for MODP (a
//   512-bit exponent, twice the strength of the largest group here), the
//   order's length + 8 for ECP (negligible bias after reduction), 32 for X25519.
// - SK payload padding: CBC pads with zero bytes to the block size; AEAD adds
//   no padding, only the Pad Length byte (0), as strongSwan does.
// - AEAD IVs: a 64-bit counter that starts at a random value and stops (seal()
//   returns an empty body) before it would come back to its start. The random
//   start keeps two SkCiphers mistakenly built on the same key from repeating
//   each other's nonces.
// - seal() returns an empty body on failure (OpenSSL error, IV space spent);
//   derive_* return empty keys for an unknown or inconsistent suite.
#include "crypto.hh"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/dh.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace ravelin::ike {
namespace {

// --- OpenSSL ownership -------------------------------------------------------

template <auto Free>
struct Freer {
    template <class T>
    void operator()(T* p) const { Free(p); }
};
using MacPtr = std::unique_ptr<EVP_MAC, Freer<EVP_MAC_free>>;
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, Freer<EVP_MAC_CTX_free>>;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, Freer<EVP_CIPHER_CTX_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Freer<EVP_PKEY_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Freer<EVP_PKEY_CTX_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Freer<BN_clear_free>>;     // may hold secrets
using BnCtxPtr = std::unique_ptr<BN_CTX, Freer<BN_CTX_free>>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, Freer<OSSL_PARAM_BLD_free>>;
using ParamsPtr = std::unique_ptr<OSSL_PARAM, Freer<OSSL_PARAM_free>>;
using EcGroupPtr = std::unique_ptr<EC_GROUP, Freer<EC_GROUP_free>>;
using EcPointPtr = std::unique_ptr<EC_POINT, Freer<EC_POINT_clear_free>>;

// Failures leave entries on OpenSSL's per-thread error queue; they would be
// reported against whatever OpenSSL call the thread makes next.
template <class T>
T failed(T value)
{
    ERR_clear_error();
    return value;
}

// OpenSSL's cipher and MAC calls take int lengths; IKE messages are < 64 KiB.
constexpr std::size_t max_len = std::size_t(1) << 30;

void put_be64(uint8_t* out, uint64_t v)
{
    for (int i = 7; i >= 0; --i) {
        out[i] = uint8_t(v);
        v >>= 8;
    }
}

// --- HMAC ----------------------------------------------------------------------

// The HMAC-based transforms: PRFs (output = preferred key length) and
// integrity algorithms (key = full hash output, ICV = truncated output).
struct HmacAlg {
    uint16_t id;
    const char* digest;
    std::size_t out_len;
    std::size_t icv_len;
    std::string_view name;   // strongSwan's spelling
};
constexpr HmacAlg prf_algs[] = {
    {prf::hmac_sha1, "SHA1", 20, 20, "PRF_HMAC_SHA1"},
    {prf::hmac_sha2_256, "SHA256", 32, 32, "PRF_HMAC_SHA2_256"},
    {prf::hmac_sha2_384, "SHA384", 48, 48, "PRF_HMAC_SHA2_384"},
    {prf::hmac_sha2_512, "SHA512", 64, 64, "PRF_HMAC_SHA2_512"},
};
constexpr HmacAlg integ_algs[] = {
    {integ::hmac_sha1_96, "SHA1", 20, 12, "HMAC_SHA1_96"},
    {integ::hmac_sha2_256_128, "SHA256", 32, 16, "HMAC_SHA2_256_128"},
    {integ::hmac_sha2_384_192, "SHA384", 48, 24, "HMAC_SHA2_384_192"},
    {integ::hmac_sha2_512_256, "SHA512", 64, 32, "HMAC_SHA2_512_256"},
};

const HmacAlg* find_alg(std::span<const HmacAlg> table, uint16_t id)
{
    for (const HmacAlg& a : table)
        if (a.id == id) return &a;
    return nullptr;
}

const char* prf_digest(uint16_t id)
{
    const HmacAlg* a = find_alg(prf_algs, id);
    return a ? a->digest : nullptr;
}

const char* integ_digest(uint16_t id)
{
    const HmacAlg* a = find_alg(integ_algs, id);
    return a ? a->digest : nullptr;
}

// The HMAC implementation, fetched once: fetching is a locked provider lookup
// and the object is immutable and shareable between threads.
EVP_MAC* hmac_impl()
{
    static const MacPtr mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
    return mac.get();
}

// HMAC of the concatenation of `parts`; empty on failure.
Bytes hmac(const char* digest, ByteView key, std::initializer_list<ByteView> parts)
{
    if (!digest || !hmac_impl()) return failed(Bytes{});
    MacCtxPtr ctx(EVP_MAC_CTX_new(hmac_impl()));
    if (!ctx) return failed(Bytes{});
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>(digest), 0),
        OSSL_PARAM_construct_end(),
    };
    // A null key means "keep the previous key" to EVP_MAC_init; an empty
    // key must still be set.
    static const uint8_t no_key = 0;
    if (EVP_MAC_init(ctx.get(), key.empty() ? &no_key : key.data(), key.size(), params) != 1)
        return failed(Bytes{});
    for (ByteView part : parts) {
        if (!part.empty() && EVP_MAC_update(ctx.get(), part.data(), part.size()) != 1)
            return failed(Bytes{});
    }
    Bytes out(EVP_MAC_CTX_get_mac_size(ctx.get()));
    std::size_t len = 0;
    if (out.empty() || EVP_MAC_final(ctx.get(), out.data(), &len, out.size()) != 1) {
        wipe(out);
        return failed(Bytes{});
    }
    out.resize(len);
    return out;
}

Bytes digest(const EVP_MD* md, ByteView data)
{
    Bytes out(EVP_MAX_MD_SIZE);
    unsigned len = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1)
        return failed(Bytes{});
    out.resize(len);
    return out;
}

// --- BIGNUM helpers ------------------------------------------------------------

BnPtr bn_from(ByteView bytes)
{
    return BnPtr(BN_bin2bn(bytes.data(), int(std::min(bytes.size(), max_len)), nullptr));
}

// Builds an EVP_PKEY of `type` ("DH", "EC") from the parameters in `bld`.
PkeyPtr pkey_from_params(const char* type, OSSL_PARAM_BLD* bld, int selection)
{
    ParamsPtr params(OSSL_PARAM_BLD_to_param(bld));
    PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
    EVP_PKEY* key = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &key, selection, params.get()) != 1)
        return nullptr;
    return PkeyPtr(key);
}

// ECDH / DH / X25519 between our key and the peer's; `len` is the expected
// secret length, shorter results are left-padded with zeros.
std::optional<Bytes> derive(EVP_PKEY* ours, EVP_PKEY* peer, std::size_t len, bool dh_pad)
{
    PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, ours, nullptr));
    if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1) return failed(std::nullopt);
    if (dh_pad && EVP_PKEY_CTX_set_dh_pad(ctx.get(), 1) != 1) return failed(std::nullopt);
    if (EVP_PKEY_derive_set_peer(ctx.get(), peer) != 1) return failed(std::nullopt);
    std::size_t raw_len = 0;
    if (EVP_PKEY_derive(ctx.get(), nullptr, &raw_len) != 1 || raw_len == 0 || raw_len > max_len)
        return failed(std::nullopt);
    Bytes raw(raw_len);
    if (EVP_PKEY_derive(ctx.get(), raw.data(), &raw_len) != 1 || raw_len > len) {
        wipe(raw);
        return failed(std::nullopt);
    }
    Bytes out(len, 0);
    std::copy_n(raw.begin(), raw_len, out.begin() + std::ptrdiff_t(len - raw_len));
    wipe(raw);
    return out;
}

// --- MODP groups (RFC 2409 §6.2, RFC 3526) ------------------------------------

class ModpKey final : public DhKey {
public:
    static std::unique_ptr<DhKey> make(uint16_t group, ByteView seed)
    {
        BnPtr p;
        switch (group) {
        case dh::modp1024: p.reset(BN_get_rfc2409_prime_1024(nullptr)); break;
        case dh::modp2048: p.reset(BN_get_rfc3526_prime_2048(nullptr)); break;
        case dh::modp3072: p.reset(BN_get_rfc3526_prime_3072(nullptr)); break;
        case dh::modp4096: p.reset(BN_get_rfc3526_prime_4096(nullptr)); break;
        default: return nullptr;
        }
        BnPtr q(BN_new());
        if (!p || !q || BN_rshift1(q.get(), p.get()) != 1) return failed(nullptr);
        std::unique_ptr<ModpKey> key(new ModpKey(group, std::move(p), std::move(q)));
        if (!seed.empty()) return key->init(seed) ? std::move(key) : nullptr;
        std::array<uint8_t, 64> random{};
        bool ok = false;
        for (int attempt = 0; attempt < 4 && !ok; ++attempt) {   // x <= 1: p ~ 2^-1000
            random_bytes(random);
            ok = key->init(random);
        }
        OPENSSL_cleanse(random.data(), random.size());
        return ok ? std::move(key) : nullptr;
    }

    const Bytes& public_value() const override { return public_; }

    std::optional<Bytes> shared_secret(ByteView peer_public) const override
    {
        if (peer_public.size() != len_) return std::nullopt;
        BnPtr y = bn_from(peer_public);
        BnPtr p_minus_1(BN_dup(p_.get()));
        if (!y || !p_minus_1 || BN_sub_word(p_minus_1.get(), 1) != 1) return failed(std::nullopt);
        // 1 < y < p-1 is what RFC 6989 §2 asks for these safe-prime groups.
        // With q in the key, OpenSSL's derive also checks y^q = 1 (y in g's
        // subgroup), which no honest peer's 2^x fails; without q it would do
        // so only for the groups it knows by name (14, 15, 16), not for 2.
        if (BN_cmp(y.get(), BN_value_one()) <= 0 || BN_cmp(y.get(), p_minus_1.get()) >= 0)
            return std::nullopt;
        PkeyPtr peer = make_pkey(nullptr, y.get());
        if (!peer) return failed(std::nullopt);
        return derive(key_.get(), peer.get(), len_, true);
    }

private:
    ModpKey(uint16_t group, BnPtr p, BnPtr q)
        : DhKey(group), p_(std::move(p)), q_(std::move(q)), len_(std::size_t(BN_num_bytes(p_.get())))
    {
    }

    // x = seed mod q, 1 < x. Public value g^x mod p with g = 2.
    bool init(ByteView seed)
    {
        BnCtxPtr ctx(BN_CTX_secure_new());
        BnPtr x(BN_secure_new());
        BnPtr s = bn_from(seed);
        BnPtr g(BN_new());
        BnPtr y(BN_new());
        if (!ctx || !x || !s || !g || !y || BN_set_word(g.get(), 2) != 1 || BN_nnmod(x.get(), s.get(), q_.get(), ctx.get()) != 1)
            return failed(false);
        if (BN_cmp(x.get(), BN_value_one()) <= 0) return false;
        BN_set_flags(x.get(), BN_FLG_CONSTTIME);
        if (BN_mod_exp_mont_consttime(y.get(), g.get(), x.get(), p_.get(), ctx.get(), nullptr) != 1)
            return failed(false);
        public_.assign(len_, 0);
        if (BN_bn2binpad(y.get(), public_.data(), int(len_)) != int(len_)) return failed(false);
        key_ = make_pkey(x.get(), y.get());
        return key_ ? true : failed(false);
    }

    // A DH EVP_PKEY over our group: a key pair when `x` is given, else a
    // public key.
    PkeyPtr make_pkey(const BIGNUM* x, const BIGNUM* y) const
    {
        ParamBldPtr bld(OSSL_PARAM_BLD_new());
        BnPtr g(BN_new());
        if (!bld || !g || BN_set_word(g.get(), 2) != 1 ||
            OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_FFC_P, p_.get()) != 1 ||
            OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_FFC_G, g.get()) != 1 ||
            OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_FFC_Q, q_.get()) != 1 ||
            OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, y) != 1 ||
            (x && OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, x) != 1))
            return nullptr;
        return pkey_from_params("DH", bld.get(), x ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY);
    }

    BnPtr p_;
    BnPtr q_;   // (p-1)/2: the primes are safe primes
    std::size_t len_;
    Bytes public_;
    PkeyPtr key_;
};

// --- ECP groups (RFC 5903) -------------------------------------------------------

class EcpKey final : public DhKey {
public:
    static std::unique_ptr<DhKey> make(uint16_t group, ByteView seed)
    {
        int nid = 0;
        const char* name = nullptr;
        switch (group) {
        case dh::ecp256: nid = NID_X9_62_prime256v1; name = "P-256"; break;
        case dh::ecp384: nid = NID_secp384r1; name = "P-384"; break;
        case dh::ecp521: nid = NID_secp521r1; name = "P-521"; break;
        default: return nullptr;
        }
        EcGroupPtr curve(EC_GROUP_new_by_curve_name(nid));
        if (!curve) return failed(nullptr);
        std::unique_ptr<EcpKey> key(new EcpKey(group, name, std::move(curve)));
        if (!seed.empty()) return key->init(seed) ? std::move(key) : nullptr;
        const std::size_t order_len = std::size_t(BN_num_bytes(EC_GROUP_get0_order(key->curve_.get())));
        Bytes random(order_len + 8);
        bool ok = false;
        for (int attempt = 0; attempt < 4 && !ok; ++attempt) {   // d = 0: p ~ 2^-256
            random_bytes(random);
            ok = key->init(random);
        }
        wipe(random);
        return ok ? std::move(key) : nullptr;
    }

    const Bytes& public_value() const override { return public_; }

    std::optional<Bytes> shared_secret(ByteView peer_public) const override
    {
        if (peer_public.size() != 2 * coord_len_) return std::nullopt;
        // RFC 5903 §7 sends x || y; OpenSSL takes the SEC 1 form 04 || x || y.
        Bytes encoded(1 + peer_public.size());
        encoded[0] = POINT_CONVERSION_UNCOMPRESSED;
        std::copy(peer_public.begin(), peer_public.end(), encoded.begin() + 1);
        // oct2point refuses coordinates >= p and points off the curve; the
        // explicit checks keep that true whatever the OpenSSL version. The
        // curves have cofactor 1, so any other point generates the group.
        EcPointPtr point(EC_POINT_new(curve_.get()));
        BnCtxPtr ctx(BN_CTX_new());
        if (!point || !ctx ||
            EC_POINT_oct2point(curve_.get(), point.get(), encoded.data(), encoded.size(), ctx.get()) != 1 ||
            EC_POINT_is_at_infinity(curve_.get(), point.get()) ||
            EC_POINT_is_on_curve(curve_.get(), point.get(), ctx.get()) != 1)
            return failed(std::nullopt);
        PkeyPtr peer = make_pkey(nullptr, encoded);
        if (!peer) return failed(std::nullopt);
        // RFC 5903 §7: the shared secret is the x coordinate, field-sized.
        return derive(key_.get(), peer.get(), coord_len_, false);
    }

private:
    EcpKey(uint16_t group, const char* name, EcGroupPtr curve)
        : DhKey(group), name_(name), curve_(std::move(curve)),
          coord_len_((std::size_t(EC_GROUP_get_degree(curve_.get())) + 7) / 8)
    {
    }

    // d = seed mod n, d != 0; public value d·G as x || y.
    bool init(ByteView seed)
    {
        BnCtxPtr ctx(BN_CTX_secure_new());
        BnPtr s = bn_from(seed);
        BnPtr d(BN_secure_new());
        EcPointPtr q(EC_POINT_new(curve_.get()));
        if (!ctx || !s || !d || !q ||
            BN_nnmod(d.get(), s.get(), EC_GROUP_get0_order(curve_.get()), ctx.get()) != 1)
            return failed(false);
        if (BN_is_zero(d.get())) return false;
        BN_set_flags(d.get(), BN_FLG_CONSTTIME);
        Bytes encoded(1 + 2 * coord_len_);
        if (EC_POINT_mul(curve_.get(), q.get(), d.get(), nullptr, nullptr, ctx.get()) != 1 ||
            EC_POINT_point2oct(curve_.get(), q.get(), POINT_CONVERSION_UNCOMPRESSED, encoded.data(),
                               encoded.size(), ctx.get()) != encoded.size())
            return failed(false);
        public_.assign(encoded.begin() + 1, encoded.end());
        key_ = make_pkey(d.get(), encoded);
        return key_ ? true : failed(false);
    }

    // An EC EVP_PKEY on our curve from a SEC 1 uncompressed point, with the
    // private scalar when `d` is given.
    PkeyPtr make_pkey(const BIGNUM* d, const Bytes& encoded_point) const
    {
        ParamBldPtr bld(OSSL_PARAM_BLD_new());
        if (!bld ||
            OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, name_, 0) != 1 ||
            OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, encoded_point.data(),
                                             encoded_point.size()) != 1 ||
            (d && OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, d) != 1))
            return nullptr;
        return pkey_from_params("EC", bld.get(), d ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY);
    }

    const char* name_;
    EcGroupPtr curve_;
    std::size_t coord_len_;
    Bytes public_;
    PkeyPtr key_;
};

// --- Curve25519 (RFC 7748, RFC 8031) -----------------------------------------------

class X25519Key final : public DhKey {
public:
    static constexpr std::size_t key_len = 32;

    static std::unique_ptr<DhKey> make(ByteView seed)
    {
        std::array<uint8_t, key_len> random{};
        if (seed.empty()) {
            random_bytes(random);
            seed = random;
        } else if (seed.size() < key_len) {
            return nullptr;
        }
        // Clamping (RFC 7748 §5) is OpenSSL's, inside X25519.
        PkeyPtr pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, seed.data(), key_len));
        OPENSSL_cleanse(random.data(), random.size());
        std::unique_ptr<X25519Key> key(new X25519Key());
        key->public_.assign(key_len, 0);
        std::size_t len = key_len;
        if (!pkey || EVP_PKEY_get_raw_public_key(pkey.get(), key->public_.data(), &len) != 1 || len != key_len)
            return failed(nullptr);
        key->key_ = std::move(pkey);
        return key;
    }

    const Bytes& public_value() const override { return public_; }

    std::optional<Bytes> shared_secret(ByteView peer_public) const override
    {
        if (peer_public.size() != key_len) return std::nullopt;
        PkeyPtr peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public.data(), key_len));
        if (!peer) return failed(std::nullopt);
        // OpenSSL already refuses an all-zero result (a low-order peer
        // point); RFC 8031 §2 makes it our check too.
        std::optional<Bytes> secret = derive(key_.get(), peer.get(), key_len, false);
        static const std::array<uint8_t, key_len> zeros{};
        if (!secret || secret->size() != key_len || CRYPTO_memcmp(secret->data(), zeros.data(), key_len) == 0) {
            if (secret) wipe(*secret);
            return std::nullopt;
        }
        return secret;
    }

private:
    X25519Key() : DhKey(dh::curve25519) {}

    Bytes public_;
    PkeyPtr key_;
};

// --- SK payload ciphers ---------------------------------------------------------------

// Decrypted SK contents end in padding and the Pad Length byte; nullopt when
// that length claims more than there is.
std::optional<Bytes> strip_padding(Bytes plain)
{
    const std::size_t pad = plain.empty() ? 0 : plain.back();
    if (plain.empty() || pad + 1 > plain.size()) {
        wipe(plain);
        return std::nullopt;
    }
    OPENSSL_cleanse(plain.data() + (plain.size() - pad - 1), pad + 1);
    plain.resize(plain.size() - pad - 1);
    return plain;
}

// RFC 7296 §3.14: IV || E(plaintext || padding || pad length) || ICV, with
// ICV = HMAC(SK_a, prefix || IV || ciphertext) truncated.
class CbcHmacCipher final : public SkCipher {
public:
    CbcHmacCipher(const EVP_CIPHER* cipher, const char* digest, std::size_t icv_len, ByteView encr_key,
                  ByteView integ_key)
        : cipher_(cipher), block_(std::size_t(EVP_CIPHER_get_block_size(cipher))), digest_(digest),
          icv_len_(icv_len), encr_key_(encr_key.begin(), encr_key.end()),
          integ_key_(integ_key.begin(), integ_key.end())
    {
    }
    ~CbcHmacCipher() override
    {
        wipe(encr_key_);
        wipe(integ_key_);
    }

    std::size_t sealed_len(std::size_t n) const override
    {
        return block_ + (n + 1 + block_ - 1) / block_ * block_ + icv_len_;
    }

    std::size_t max_plaintext(std::size_t body_len) const override
    {
        if (body_len < block_ + block_ + icv_len_) return 0;
        return (body_len - block_ - icv_len_) / block_ * block_ - 1;
    }

    Bytes seal(ByteView prefix, ByteView plaintext) override
    {
        if (plaintext.size() > max_len || prefix.size() > max_len) return {};
        const std::size_t body_len = sealed_len(plaintext.size());
        const std::size_t ct_len = body_len - block_ - icv_len_;
        Bytes body(body_len, 0);
        uint8_t* iv = body.data();
        uint8_t* ct = iv + block_;
        random_bytes({iv, block_});
        std::copy(plaintext.begin(), plaintext.end(), ct);
        ct[ct_len - 1] = uint8_t(ct_len - plaintext.size() - 1);   // zero padding, then its length
        if (!crypt(true, iv, ct, ct_len)) {
            wipe(body);
            return {};
        }
        const Bytes mac = hmac(digest_, integ_key_, {prefix, ByteView(body.data(), block_ + ct_len)});
        if (mac.size() < icv_len_) return failed(Bytes{});
        std::copy_n(mac.begin(), icv_len_, ct + ct_len);
        return body;
    }

    std::optional<Bytes> open(ByteView prefix, ByteView body) const override
    {
        if (body.size() < block_ + block_ + icv_len_ || body.size() > max_len || prefix.size() > max_len)
            return std::nullopt;
        const std::size_t ct_len = body.size() - block_ - icv_len_;
        if (ct_len % block_ != 0) return std::nullopt;
        // Authenticate before touching the ciphertext.
        const Bytes mac = hmac(digest_, integ_key_, {prefix, body.first(block_ + ct_len)});
        if (mac.size() < icv_len_ ||
            CRYPTO_memcmp(mac.data(), body.data() + block_ + ct_len, icv_len_) != 0)
            return std::nullopt;
        Bytes plain(body.begin() + std::ptrdiff_t(block_), body.begin() + std::ptrdiff_t(block_ + ct_len));
        if (!crypt(false, body.data(), plain.data(), ct_len)) {
            wipe(plain);
            return std::nullopt;
        }
        return strip_padding(std::move(plain));
    }

private:
    // CBC over whole blocks, in place, no OpenSSL padding.
    bool crypt(bool encrypt, const uint8_t* iv, uint8_t* data, std::size_t len) const
    {
        CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
        int out_len = 0;
        int final_len = 0;
        if (!ctx || EVP_CipherInit_ex(ctx.get(), cipher_, nullptr, encr_key_.data(), iv, encrypt ? 1 : 0) != 1 ||
            EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1 ||
            EVP_CipherUpdate(ctx.get(), data, &out_len, data, int(len)) != 1 ||
            EVP_CipherFinal_ex(ctx.get(), data + out_len, &final_len) != 1 ||
            std::size_t(out_len + final_len) != len)
            return failed(false);
        return true;
    }

    const EVP_CIPHER* cipher_;
    std::size_t block_;
    const char* digest_;
    std::size_t icv_len_;
    Bytes encr_key_, integ_key_;
};

// RFC 5282 (AES-GCM) and RFC 7634 (ChaCha20-Poly1305) for IKE: body =
// IV(8) || ciphertext || ICV(16), nonce = salt(4) || IV, AAD = prefix.
class AeadCipher final : public SkCipher {
public:
    static constexpr std::size_t iv_len = 8;
    static constexpr std::size_t salt_len = 4;
    static constexpr std::size_t icv_len = 16;

    AeadCipher(const EVP_CIPHER* cipher, ByteView keymat)
        : cipher_(cipher), key_(keymat.begin(), keymat.end() - salt_len)
    {
        std::copy(keymat.end() - salt_len, keymat.end(), salt_.begin());
        std::array<uint8_t, 8> start{};
        random_bytes(start);
        for (uint8_t b : start) next_iv_ = next_iv_ << 8 | b;
        first_iv_ = next_iv_;
    }
    ~AeadCipher() override
    {
        wipe(key_);
        OPENSSL_cleanse(salt_.data(), salt_.size());
    }

    std::size_t sealed_len(std::size_t n) const override { return iv_len + n + 1 + icv_len; }

    std::size_t max_plaintext(std::size_t body_len) const override
    {
        return body_len < iv_len + 1 + icv_len ? 0 : body_len - iv_len - 1 - icv_len;
    }

    Bytes seal(ByteView prefix, ByteView plaintext) override
    {
        if (exhausted_ || plaintext.size() > max_len || prefix.size() > max_len) return {};
        const uint64_t counter = next_iv_++;
        exhausted_ = next_iv_ == first_iv_;
        Bytes body(sealed_len(plaintext.size()), 0);
        put_be64(body.data(), counter);
        uint8_t* ct = body.data() + iv_len;
        const std::size_t ct_len = plaintext.size() + 1;       // Pad Length byte 0, no padding
        std::copy(plaintext.begin(), plaintext.end(), ct);
        CipherCtxPtr ctx = start(true, body.data(), prefix);
        int out_len = 0;
        int final_len = 0;
        if (!ctx || EVP_EncryptUpdate(ctx.get(), ct, &out_len, ct, int(ct_len)) != 1 ||
            EVP_EncryptFinal_ex(ctx.get(), ct + out_len, &final_len) != 1 ||
            std::size_t(out_len + final_len) != ct_len ||
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, int(icv_len), ct + ct_len) != 1) {
            wipe(body);
            return failed(Bytes{});
        }
        return body;
    }

    std::optional<Bytes> open(ByteView prefix, ByteView body) const override
    {
        if (body.size() < iv_len + 1 + icv_len || body.size() > max_len || prefix.size() > max_len)
            return std::nullopt;
        const std::size_t ct_len = body.size() - iv_len - icv_len;
        Bytes plain(ct_len);
        CipherCtxPtr ctx = start(false, body.data(), prefix);
        // The tag goes in before the final call, which verifies it;
        // nothing of `plain` leaves unless it does.
        int out_len = 0;
        int final_len = 0;
        uint8_t tag[icv_len];
        std::copy_n(body.data() + iv_len + ct_len, icv_len, tag);
        if (!ctx || EVP_DecryptUpdate(ctx.get(), plain.data(), &out_len, body.data() + iv_len, int(ct_len)) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, int(icv_len), tag) != 1 ||
            EVP_DecryptFinal_ex(ctx.get(), plain.data() + out_len, &final_len) != 1 ||
            std::size_t(out_len + final_len) != ct_len) {
            wipe(plain);
            return failed(std::nullopt);
        }
        return strip_padding(std::move(plain));
    }

private:
    // A context keyed with nonce = salt || iv and fed the AAD.
    CipherCtxPtr start(bool encrypt, const uint8_t* iv, ByteView aad) const
    {
        std::array<uint8_t, salt_len + iv_len> nonce{};
        std::copy(salt_.begin(), salt_.end(), nonce.begin());
        std::copy_n(iv, iv_len, nonce.begin() + salt_len);
        CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
        int out_len = 0;
        if (!ctx || EVP_CipherInit_ex(ctx.get(), cipher_, nullptr, nullptr, nullptr, encrypt ? 1 : 0) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_IVLEN, int(nonce.size()), nullptr) != 1 ||
            EVP_CipherInit_ex(ctx.get(), nullptr, nullptr, key_.data(), nonce.data(), encrypt ? 1 : 0) != 1 ||
            (!aad.empty() && EVP_CipherUpdate(ctx.get(), nullptr, &out_len, aad.data(), int(aad.size())) != 1))
            return failed(CipherCtxPtr{});
        return ctx;
    }

    const EVP_CIPHER* cipher_;
    Bytes key_;
    std::array<uint8_t, salt_len> salt_{};
    uint64_t next_iv_ = 0;
    uint64_t first_iv_ = 0;
    bool exhausted_ = false;
};

// --- key derivation ---------------------------------------------------------------

// prf+ over the concatenation of `seed_parts`.
Bytes prf_plus_parts(uint16_t prf_id, ByteView key, std::initializer_list<ByteView> seed_parts,
                     std::size_t len)
{
    const char* md = prf_digest(prf_id);
    const std::size_t block = prf_output_len(prf_id);
    if (!md || len == 0 || len > 255 * block) return {};
    Bytes seed;
    for (ByteView part : seed_parts) seed.insert(seed.end(), part.begin(), part.end());
    Bytes out;
    out.reserve(len + block);   // no reallocation leaving key bytes behind
    Bytes t;
    for (unsigned i = 1; out.size() < len; ++i) {
        const uint8_t counter = uint8_t(i);
        Bytes next = hmac(md, key, {t, seed, ByteView(&counter, 1)});
        wipe(t);
        if (next.size() != block) {
            wipe(next);
            wipe(out);
            wipe(seed);
            return {};
        }
        t = std::move(next);
        out.insert(out.end(), t.begin(), t.end());
    }
    wipe(t);
    wipe(seed);
    OPENSSL_cleanse(out.data() + len, out.size() - len);
    out.resize(len);
    return out;
}

// Cuts `keymat` into consecutive pieces of the given lengths.
class KeymatReader {
public:
    explicit KeymatReader(const Bytes& keymat) : keymat_(keymat) {}
    Bytes take(std::size_t n)
    {
        Bytes out(keymat_.begin() + std::ptrdiff_t(pos_), keymat_.begin() + std::ptrdiff_t(pos_ + n));
        pos_ += n;
        return out;
    }

private:
    const Bytes& keymat_;
    std::size_t pos_ = 0;
};

// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED,
// Ni | Nr | SPIi | SPIr) with the new SA's suite.
IkeKeys expand_ike_keys(const IkeSuite& suite, ByteView skeyseed, ByteView ni, ByteView nr,
                        uint64_t spi_i, uint64_t spi_r)
{
    const std::size_t prf_len = prf_output_len(suite.prf);
    const std::size_t e_len = encr_keymat_len(suite.encr, suite.encr_key_bits);
    const std::size_t a_len = is_aead(suite.encr) ? 0 : integ_key_len(suite.integ);
    if (prf_len == 0 || e_len == 0 || (!is_aead(suite.encr) && a_len == 0) || skeyseed.empty())
        return {};
    std::array<uint8_t, 16> spis{};
    put_be64(spis.data(), spi_i);
    put_be64(spis.data() + 8, spi_r);
    Bytes keymat = prf_plus_parts(suite.prf, skeyseed, {ni, nr, spis},
                                  3 * prf_len + 2 * a_len + 2 * e_len);
    if (keymat.empty()) return {};
    KeymatReader r(keymat);
    IkeKeys k;
    k.sk_d = r.take(prf_len);
    k.sk_ai = r.take(a_len);
    k.sk_ar = r.take(a_len);
    k.sk_ei = r.take(e_len);
    k.sk_er = r.take(e_len);
    k.sk_pi = r.take(prf_len);
    k.sk_pr = r.take(prf_len);
    wipe(keymat);
    return k;
}

} // namespace

// --- algorithm tables ------------------------------------------------------------

bool is_aead(uint16_t encr_id)
{
    return encr_id == encr::aes_gcm_16 || encr_id == encr::null_aes_gmac ||
           encr_id == encr::chacha20_poly1305;
}

std::size_t encr_keymat_len(uint16_t encr_id, uint16_t key_bits)
{
    const bool aes_bits = key_bits == 128 || key_bits == 192 || key_bits == 256;
    switch (encr_id) {
    case encr::des3: return key_bits == 0 || key_bits == 192 ? 24 : 0;
    case encr::aes_cbc: return aes_bits ? key_bits / 8 : 0;
    case encr::aes_gcm_16:
    case encr::null_aes_gmac: return aes_bits ? key_bits / 8 + 4 : 0;
    case encr::chacha20_poly1305: return key_bits == 0 || key_bits == 256 ? 32 + 4 : 0;
    default: return 0;   // also ENCR_NULL: no key
    }
}

std::size_t integ_key_len(uint16_t integ_id)
{
    const HmacAlg* a = find_alg(integ_algs, integ_id);
    return a ? a->out_len : 0;
}

std::size_t integ_icv_len(uint16_t integ_id)
{
    const HmacAlg* a = find_alg(integ_algs, integ_id);
    return a ? a->icv_len : 0;
}

std::size_t prf_output_len(uint16_t prf_id)
{
    const HmacAlg* a = find_alg(prf_algs, prf_id);
    return a ? a->out_len : 0;
}

bool dh_supported(uint16_t group)
{
    switch (group) {
    case dh::modp1024:
    case dh::modp2048:
    case dh::modp3072:
    case dh::modp4096:
    case dh::ecp256:
    case dh::ecp384:
    case dh::ecp521:
    case dh::curve25519: return true;
    default: return false;
    }
}

// strongSwan's enum names (libstrongswan crypter/signer/prf/key exchange),
// as swanctl --list-sas --raw prints them in encr-alg=, integ-alg=, prf-alg=
// and dh-group=.
std::string_view encr_name(uint16_t id)
{
    switch (id) {
    case encr::des3: return "3DES_CBC";
    case encr::null_: return "NULL";
    case encr::aes_cbc: return "AES_CBC";
    case encr::aes_gcm_16: return "AES_GCM_16";
    case encr::null_aes_gmac: return "NULL_AES_GMAC";
    case encr::chacha20_poly1305: return "CHACHA20_POLY1305";
    default: return "UNKNOWN";
    }
}

std::string_view prf_name(uint16_t id)
{
    const HmacAlg* a = find_alg(prf_algs, id);
    return a ? a->name : "UNKNOWN";
}

std::string_view integ_name(uint16_t id)
{
    if (id == integ::none) return "NONE";
    const HmacAlg* a = find_alg(integ_algs, id);
    return a ? a->name : "UNKNOWN";
}

std::string_view dh_name(uint16_t id)
{
    switch (id) {
    case dh::modp1024: return "MODP_1024";
    case dh::modp2048: return "MODP_2048";
    case dh::modp3072: return "MODP_3072";
    case dh::modp4096: return "MODP_4096";
    case dh::ecp256: return "ECP_256";
    case dh::ecp384: return "ECP_384";
    case dh::ecp521: return "ECP_521";
    case dh::curve25519: return "CURVE_25519";
    default: return "UNKNOWN";
    }
}

void random_bytes(std::span<uint8_t> out)
{
    // Without working randomness every key and nonce would be predictable:
    // no caller could recover from that, so it is fatal.
    while (!out.empty()) {
        const std::size_t n = std::min<std::size_t>(out.size(), INT_MAX);
        if (RAND_bytes(out.data(), int(n)) != 1) std::abort();
        out = out.subspan(n);
    }
}

// --- PRF -----------------------------------------------------------------------------

Bytes prf_compute(uint16_t prf_id, ByteView key, ByteView data)
{
    return hmac(prf_digest(prf_id), key, {data});
}

Bytes prf_plus(uint16_t prf_id, ByteView key, ByteView seed, std::size_t len)
{
    return prf_plus_parts(prf_id, key, {seed}, len);
}

Bytes sha1(ByteView data) { return digest(EVP_sha1(), data); }
Bytes sha256(ByteView data) { return digest(EVP_sha256(), data); }

// --- Diffie-Hellman ------------------------------------------------------------------

std::unique_ptr<DhKey> DhKey::create(uint16_t group, ByteView private_seed)
{
    switch (group) {
    case dh::modp1024:
    case dh::modp2048:
    case dh::modp3072:
    case dh::modp4096: return ModpKey::make(group, private_seed);
    case dh::ecp256:
    case dh::ecp384:
    case dh::ecp521: return EcpKey::make(group, private_seed);
    case dh::curve25519: return X25519Key::make(private_seed);
    default: return nullptr;
    }
}

// --- SK payload ------------------------------------------------------------------------

std::unique_ptr<SkCipher> SkCipher::create(uint16_t encr_id, uint16_t key_bits, uint16_t integ_id,
                                           ByteView encr_key, ByteView integ_key)
{
    const std::size_t keymat_len = encr_keymat_len(encr_id, key_bits);
    if (keymat_len == 0 || encr_key.size() != keymat_len) return nullptr;

    if (encr_id == encr::aes_gcm_16 || encr_id == encr::chacha20_poly1305) {
        if (integ_id != integ::none || !integ_key.empty()) return nullptr;   // RFC 5282 §8
        const EVP_CIPHER* cipher = nullptr;
        if (encr_id == encr::chacha20_poly1305) cipher = EVP_chacha20_poly1305();
        else if (key_bits == 128) cipher = EVP_aes_128_gcm();
        else if (key_bits == 192) cipher = EVP_aes_192_gcm();
        else cipher = EVP_aes_256_gcm();
        if (!cipher) return nullptr;
        return std::make_unique<AeadCipher>(cipher, encr_key);
    }

    const EVP_CIPHER* cipher = nullptr;
    if (encr_id == encr::des3) cipher = EVP_des_ede3_cbc();
    else if (encr_id == encr::aes_cbc && key_bits == 128) cipher = EVP_aes_128_cbc();
    else if (encr_id == encr::aes_cbc && key_bits == 192) cipher = EVP_aes_192_cbc();
    else if (encr_id == encr::aes_cbc && key_bits == 256) cipher = EVP_aes_256_cbc();
    const char* md = integ_digest(integ_id);
    if (!cipher || !md || integ_key.size() != integ_key_len(integ_id)) return nullptr;
    return std::make_unique<CbcHmacCipher>(cipher, md, integ_icv_len(integ_id), encr_key, integ_key);
}

// --- key derivation ---------------------------------------------------------------------

void IkeKeys::wipe()
{
    for (Bytes* b : {&sk_d, &sk_ai, &sk_ar, &sk_ei, &sk_er, &sk_pi, &sk_pr}) ike::wipe(*b);
}

void ChildKeys::wipe()
{
    for (Bytes* b : {&encr_i, &integ_i, &encr_r, &integ_r}) ike::wipe(*b);
}

IkeKeys derive_ike_keys(const IkeSuite& suite, ByteView ni, ByteView nr, ByteView shared,
                        uint64_t spi_i, uint64_t spi_r)
{
    if (shared.empty()) return {};
    Bytes nonces(ni.begin(), ni.end());
    nonces.insert(nonces.end(), nr.begin(), nr.end());
    Bytes skeyseed = prf_compute(suite.prf, nonces, shared);
    IkeKeys keys = expand_ike_keys(suite, skeyseed, ni, nr, spi_i, spi_r);
    wipe(skeyseed);
    return keys;
}

IkeKeys derive_rekeyed_ike_keys(uint16_t old_prf, ByteView old_sk_d, const IkeSuite& suite, ByteView ni,
                                ByteView nr, ByteView shared, uint64_t spi_i, uint64_t spi_r)
{
    if (old_sk_d.empty() || shared.empty()) return {};
    Bytes skeyseed = hmac(prf_digest(old_prf), old_sk_d, {shared, ni, nr});
    IkeKeys keys = expand_ike_keys(suite, skeyseed, ni, nr, spi_i, spi_r);
    wipe(skeyseed);
    return keys;
}

ChildKeys derive_child_keys(uint16_t prf_id, ByteView sk_d, ByteView shared_or_empty, ByteView ni,
                            ByteView nr, uint16_t encr_id, uint16_t encr_key_bits, uint16_t integ_id)
{
    const std::size_t e_len = encr_keymat_len(encr_id, encr_key_bits);
    const std::size_t a_len = is_aead(encr_id) ? 0 : integ_key_len(integ_id);
    if ((e_len == 0 && encr_id != encr::null_) || (!is_aead(encr_id) && integ_id != integ::none && a_len == 0) ||
        e_len + a_len == 0 || sk_d.empty())
        return {};
    Bytes keymat = prf_plus_parts(prf_id, sk_d, {shared_or_empty, ni, nr}, 2 * (e_len + a_len));
    if (keymat.empty()) return {};
    KeymatReader r(keymat);
    ChildKeys k;
    k.encr_i = r.take(e_len);
    k.integ_i = r.take(a_len);
    k.encr_r = r.take(e_len);
    k.integ_r = r.take(a_len);
    wipe(keymat);
    return k;
}

void wipe(Bytes& b)
{
    if (!b.empty()) OPENSSL_cleanse(b.data(), b.size());
    b.clear();
}

} // namespace ravelin::ike
