// X.509 and the AUTH payload's signatures on OpenSSL 3 (see cert.hh).
//
// Everything a peer sends (certificates, AUTH data, ID data) is decoded with
// OpenSSL's bounded DER decoders, and each decode must use up its input
// exactly. Failures return false/nullopt and leave OpenSSL's error queue
// empty, so one failed check never colours the next.
//
// Choices worth knowing (the operator sees their effects):
// - A configured CA is a trust anchor even when it is not self-signed
//   (X509_V_FLAG_PARTIAL_CHAIN), as in strongSwan.
// - Revocation is checked (for every certificate of the chain) only against
//   loaded CRLs: a certificate whose issuer has no CRL loaded is not checked
//   for revocation; one whose issuer has a CRL must pass it (a CRL that is
//   expired or badly signed fails the chain).
// - FQDN and RFC822 identities fall back to the subject's CN and
//   emailAddress when the certificate has no subjectAltName of that type.
//   Names compare case-insensitively; no wildcards.
// - RFC 7427 signatures use SHA-2 only (hash ids 2, 3, 4) or Ed25519
//   (identity, 5); the classic RSA method (1) signs with SHA-1 as RFC 7296
//   §3.8 implies — legacy, used only when the peer announced no RFC 7427
//   hash we share.
#include "cert.hh"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

namespace ravelin::ike {
namespace {

template <auto Free>
struct Deleter {
    template <typename T>
    void operator()(T* p) const { Free(p); }
};
using UniqueX509 = std::unique_ptr<X509, Deleter<X509_free>>;
using UniquePkey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using UniqueBio = std::unique_ptr<BIO, Deleter<BIO_free>>;
using UniqueMdCtx = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX_free>>;
using UniqueAlgor = std::unique_ptr<X509_ALGOR, Deleter<X509_ALGOR_free>>;
using UniqueEcdsaSig = std::unique_ptr<ECDSA_SIG, Deleter<ECDSA_SIG_free>>;
using UniqueBn = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using UniqueCrl = std::unique_ptr<X509_CRL, Deleter<X509_CRL_free>>;
using UniqueStoreCtx = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
using UniqueNames = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;

struct X509StackFree {      // frees the stack, not the certificates it points to
    void operator()(STACK_OF(X509)* s) const { sk_X509_free(s); }
};

X509* x509_of(void* p) { return static_cast<X509*>(p); }
EVP_PKEY* pkey_of(void* p) { return static_cast<EVP_PKEY*>(p); }
X509_STORE* store_of(void* p) { return static_cast<X509_STORE*>(p); }

// Certificates, keys and CRLs are small; a bigger file is a mistake.
constexpr std::uintmax_t max_file_size = 1u << 20;
// More CERT payloads than this in one IKE_AUTH is not a real chain.
constexpr std::size_t max_intermediates = 16;
// RSASSA-PSS salt bound: far above any real salt, keeps the int cast safe.
constexpr long max_pss_salt = 1024;

// The first OpenSSL error in the queue as text; empties the queue.
std::string openssl_error()
{
    unsigned long code = ERR_get_error();
    ERR_clear_error();
    if (code == 0) return "no OpenSSL detail";
    std::array<char, 256> buf{};
    ERR_error_string_n(code, buf.data(), buf.size());
    return buf.data();
}

bool read_file(const std::string& path, Bytes& out, std::string& error)
{
    std::error_code ec;
    std::uintmax_t size = std::filesystem::file_size(path, ec);
    if (ec) {
        error = path + ": " + ec.message();
        return false;
    }
    if (size == 0 || size > max_file_size) {
        error = path + (size == 0 ? ": empty file" : ": larger than 1 MiB");
        return false;
    }
    out.assign(size, 0);        // one allocation: no stray copies of key bytes
    std::ifstream in(path, std::ios::binary);
    if (!in.read(reinterpret_cast<char*>(out.data()), std::streamsize(size))) {
        OPENSSL_cleanse(out.data(), out.size());
        error = path + ": read error";
        return false;
    }
    return true;
}

bool contains_text(const Bytes& data, std::string_view text)
{
    return std::search(data.begin(), data.end(), text.begin(), text.end()) != data.end();
}

bool is_pem(const Bytes& data) { return contains_text(data, "-----BEGIN "); }

UniqueBio memory_bio(const Bytes& data)
{
    return UniqueBio(BIO_new_mem_buf(data.data(), int(data.size())));
}

// d2i over exactly [data, data + len): trailing bytes are an error.
template <auto D2i, auto Free>
auto d2i_exact(const uint8_t* data, std::size_t len)
{
    using T = std::remove_pointer_t<decltype(D2i(nullptr, nullptr, 0))>;
    std::unique_ptr<T, Deleter<Free>> obj;
    if (len == 0 || len > max_file_size) return obj;
    const unsigned char* p = data;
    obj.reset(D2i(nullptr, &p, long(len)));
    if (obj && p != data + len) obj.reset();
    return obj;
}

// i2d into Bytes; empty on failure.
template <typename T, typename I2d>
Bytes i2d_bytes(I2d i2d, T* obj)
{
    unsigned char* der = nullptr;
    int len = obj ? i2d(obj, &der) : -1;
    if (len <= 0) {
        ERR_clear_error();
        return {};
    }
    Bytes out(der, der + len);
    OPENSSL_free(der);
    return out;
}

bool ascii_iequal(std::string_view a, std::string_view b)
{
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
               return lower(x) == lower(y);
           });
}

std::string_view view_of(const ASN1_STRING* s)
{
    return {reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
            std::size_t(ASN1_STRING_length(s))};
}

// --- key types and hashes ----------------------------------------------------

enum class KeyKind { rsa, rsa_pss, ec_p256, ec_p384, ec_p521, ed25519, unsupported };

KeyKind key_kind(const EVP_PKEY* pkey)
{
    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA: return KeyKind::rsa;
    case EVP_PKEY_RSA_PSS: return KeyKind::rsa_pss;
    case EVP_PKEY_ED25519: return KeyKind::ed25519;
    case EVP_PKEY_EC: break;
    default: return KeyKind::unsupported;
    }
    std::array<char, 64> name{};
    std::size_t len = 0;
    if (EVP_PKEY_get_group_name(pkey, name.data(), name.size(), &len) != 1) {
        ERR_clear_error();
        return KeyKind::unsupported;
    }
    int nid = OBJ_sn2nid(name.data());
    if (nid == NID_undef) nid = EC_curve_nist2nid(name.data());
    switch (nid) {
    case NID_X9_62_prime256v1: return KeyKind::ec_p256;
    case NID_secp384r1: return KeyKind::ec_p384;
    case NID_secp521r1: return KeyKind::ec_p521;
    default: return KeyKind::unsupported;
    }
}

bool is_ec(KeyKind k) { return k == KeyKind::ec_p256 || k == KeyKind::ec_p384 || k == KeyKind::ec_p521; }

struct HashInfo {
    uint16_t id;                    // RFC 7427 hash algorithm id
    int nid;
    const EVP_MD* (*md)();
    int rsa_nid;                    // shaXWithRSAEncryption
    int ecdsa_nid;                  // ecdsa-with-SHAX
};

constexpr std::array<HashInfo, 3> sha2_hashes{{
    {sig_hash::sha2_256, NID_sha256, EVP_sha256, NID_sha256WithRSAEncryption, NID_ecdsa_with_SHA256},
    {sig_hash::sha2_384, NID_sha384, EVP_sha384, NID_sha384WithRSAEncryption, NID_ecdsa_with_SHA384},
    {sig_hash::sha2_512, NID_sha512, EVP_sha512, NID_sha512WithRSAEncryption, NID_ecdsa_with_SHA512},
}};

const HashInfo* hash_by_id(uint16_t id)
{
    for (const auto& h : sha2_hashes)
        if (h.id == id) return &h;
    return nullptr;
}

// The hash that matches the key's strength first, then stronger ones, then
// weaker (strongSwan orders RSA the same way: up to 3072 bits SHA-256, up to
// 7680 SHA-384, above SHA-512).
std::array<uint16_t, 3> hash_preference(KeyKind kind, int bits)
{
    using namespace sig_hash;
    bool mid = kind == KeyKind::ec_p384 || (kind == KeyKind::rsa && bits > 3072 && bits <= 7680);
    bool high = kind == KeyKind::ec_p521 || (kind == KeyKind::rsa && bits > 7680);
    if (high) return {sha2_512, sha2_384, sha2_256};
    if (mid) return {sha2_384, sha2_512, sha2_256};
    return {sha2_256, sha2_384, sha2_512};
}

// The classic (pre-RFC 7427) AUTH method of a key: RFC 7296 §3.8, RFC 4754.
struct ClassicScheme {
    AuthMethod method;
    const EVP_MD* md;
    std::size_t ecdsa_half;         // r and s length for r||s; 0 = RSA
};

std::optional<ClassicScheme> classic_scheme(KeyKind kind)
{
    switch (kind) {
    case KeyKind::rsa: return ClassicScheme{AuthMethod::rsa_signature, EVP_sha1(), 0};
    case KeyKind::ec_p256: return ClassicScheme{AuthMethod::ecdsa_p256, EVP_sha256(), 32};
    case KeyKind::ec_p384: return ClassicScheme{AuthMethod::ecdsa_p384, EVP_sha384(), 48};
    case KeyKind::ec_p521: return ClassicScheme{AuthMethod::ecdsa_p521, EVP_sha512(), 66};
    default: return std::nullopt;
    }
}

// --- signing and verifying primitives ---------------------------------------

// `md` null for Ed25519 (it hashes internally).
std::optional<Bytes> digest_sign(EVP_PKEY* pkey, const EVP_MD* md, ByteView msg)
{
    UniqueMdCtx ctx(EVP_MD_CTX_new());
    std::size_t len = 0;
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, pkey) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &len, msg.data(), msg.size()) != 1) {
        ERR_clear_error();
        return std::nullopt;
    }
    Bytes sig(len);
    if (EVP_DigestSign(ctx.get(), sig.data(), &len, msg.data(), msg.size()) != 1) {
        ERR_clear_error();
        return std::nullopt;
    }
    sig.resize(len);
    return sig;
}

struct VerifyScheme {
    enum class Alg { rsa_pkcs1, rsa_pss, ecdsa, ed25519 } alg;
    const EVP_MD* md = nullptr;     // null for Ed25519
    const EVP_MD* mgf1 = nullptr;   // RSASSA-PSS only
    int salt = 0;                   // RSASSA-PSS only
};

bool digest_verify(EVP_PKEY* pkey, const VerifyScheme& s, ByteView msg, ByteView sig)
{
    if (sig.empty()) return false;
    UniqueMdCtx ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;
    bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), &pctx, s.md, nullptr, pkey) == 1;
    if (ok && s.alg == VerifyScheme::Alg::rsa_pss)
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, s.mgf1) > 0 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, s.salt) > 0;
    ok = ok && EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), msg.data(), msg.size()) == 1;
    ERR_clear_error();
    return ok;
}

// RFC 4754 §7: ECDSA signatures in AUTH are r || s, each as long as the field.
std::optional<Bytes> ecdsa_der_to_fixed(const Bytes& der, std::size_t half)
{
    auto sig = d2i_exact<d2i_ECDSA_SIG, ECDSA_SIG_free>(der.data(), der.size());
    if (!sig) return std::nullopt;
    const BIGNUM* r = nullptr;
    const BIGNUM* s = nullptr;
    ECDSA_SIG_get0(sig.get(), &r, &s);
    Bytes out(2 * half);
    if (BN_bn2binpad(r, out.data(), int(half)) < 0 || BN_bn2binpad(s, out.data() + half, int(half)) < 0)
        return std::nullopt;
    return out;
}

std::optional<Bytes> ecdsa_fixed_to_der(ByteView fixed, std::size_t half)
{
    if (fixed.size() != 2 * half) return std::nullopt;
    UniqueBn r(BN_bin2bn(fixed.data(), int(half), nullptr));
    UniqueBn s(BN_bin2bn(fixed.data() + half, int(half), nullptr));
    UniqueEcdsaSig sig(ECDSA_SIG_new());
    if (!r || !s || !sig || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) return std::nullopt;
    r.release();                    // owned by sig now
    s.release();
    Bytes der = i2d_bytes(i2d_ECDSA_SIG, sig.get());
    if (der.empty()) return std::nullopt;
    return der;
}

// --- RFC 7427 AUTH data --------------------------------------------------------
//
//  Authentication Data of Auth Method 14 (RFC 7427 §3):
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |  ASN.1 Length | AlgorithmIdentifier (DER, ASN.1 Length bytes) ~
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  ~                     Signature Value                           ~
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

// AlgorithmIdentifier DER; RSA PKCS#1 v1.5 carries NULL parameters (RFC
// 4055), ECDSA (RFC 5758) and Ed25519 (RFC 8410) none.
Bytes encode_algorithm_id(int nid, bool null_params)
{
    UniqueAlgor alg(X509_ALGOR_new());
    if (!alg || X509_ALGOR_set0(alg.get(), OBJ_nid2obj(nid), null_params ? V_ASN1_NULL : V_ASN1_UNDEF,
                                nullptr) != 1)
        return {};
    return i2d_bytes(i2d_X509_ALGOR, alg.get());
}

std::optional<AuthPayload> sign_rfc7427(EVP_PKEY* pkey, int alg_nid, bool null_params,
                                        const EVP_MD* md, ByteView octets)
{
    Bytes alg = encode_algorithm_id(alg_nid, null_params);
    if (alg.empty() || alg.size() > 255) return std::nullopt;
    auto sig = digest_sign(pkey, md, octets);
    if (!sig) return std::nullopt;
    AuthPayload auth{AuthMethod::digital_signature, {}};
    auth.data.reserve(1 + alg.size() + sig->size());
    auth.data.push_back(uint8_t(alg.size()));
    auth.data.insert(auth.data.end(), alg.begin(), alg.end());
    auth.data.insert(auth.data.end(), sig->begin(), sig->end());
    return auth;
}

// A hash AlgorithmIdentifier (inside RSASSA-PSS parameters): SHA-2 only,
// parameters absent or NULL.
const EVP_MD* sha2_of(const X509_ALGOR* alg)
{
    const ASN1_OBJECT* obj = nullptr;
    int ptype = V_ASN1_UNDEF;
    X509_ALGOR_get0(&obj, &ptype, nullptr, alg);
    if (ptype != V_ASN1_UNDEF && ptype != V_ASN1_NULL) return nullptr;
    int nid = OBJ_obj2nid(obj);
    for (const auto& h : sha2_hashes)
        if (h.nid == nid) return h.md();
    return nullptr;
}

// RSASSA-PSS-params (RFC 4055 §3.1). Absent fields take the defaults, and
// the default hash (SHA-1) is refused like any hash outside SHA-2.
std::optional<VerifyScheme> parse_pss_params(const ASN1_STRING* seq)
{
    auto pss = d2i_exact<d2i_RSA_PSS_PARAMS, RSA_PSS_PARAMS_free>(
        ASN1_STRING_get0_data(seq), std::size_t(ASN1_STRING_length(seq)));
    if (!pss || !pss->hashAlgorithm || !pss->maskGenAlgorithm) return std::nullopt;
    VerifyScheme s{VerifyScheme::Alg::rsa_pss};
    s.md = sha2_of(pss->hashAlgorithm);

    const ASN1_OBJECT* mgf = nullptr;
    int mgf_ptype = V_ASN1_UNDEF;
    const void* mgf_param = nullptr;
    X509_ALGOR_get0(&mgf, &mgf_ptype, &mgf_param, pss->maskGenAlgorithm);
    if (OBJ_obj2nid(mgf) != NID_mgf1 || mgf_ptype != V_ASN1_SEQUENCE) return std::nullopt;
    const auto* mgf_seq = static_cast<const ASN1_STRING*>(mgf_param);
    auto mgf_hash = d2i_exact<d2i_X509_ALGOR, X509_ALGOR_free>(
        ASN1_STRING_get0_data(mgf_seq), std::size_t(ASN1_STRING_length(mgf_seq)));
    s.mgf1 = mgf_hash ? sha2_of(mgf_hash.get()) : nullptr;

    long salt = pss->saltLength ? ASN1_INTEGER_get(pss->saltLength) : 20;
    long trailer = pss->trailerField ? ASN1_INTEGER_get(pss->trailerField) : 1;
    if (!s.md || !s.mgf1 || salt < 0 || salt > max_pss_salt || trailer != 1) return std::nullopt;
    s.salt = int(salt);
    return s;
}

// The signature scheme an AlgorithmIdentifier names; nullopt for anything
// else, including well-formed identifiers we do not accept.
std::optional<VerifyScheme> parse_algorithm_id(ByteView der)
{
    auto alg = d2i_exact<d2i_X509_ALGOR, X509_ALGOR_free>(der.data(), der.size());
    if (!alg) return std::nullopt;
    const ASN1_OBJECT* obj = nullptr;
    int ptype = V_ASN1_UNDEF;
    const void* param = nullptr;
    X509_ALGOR_get0(&obj, &ptype, &param, alg.get());
    int nid = OBJ_obj2nid(obj);
    bool absent = ptype == V_ASN1_UNDEF;
    for (const auto& h : sha2_hashes) {
        if (nid == h.rsa_nid && (absent || ptype == V_ASN1_NULL))
            return VerifyScheme{VerifyScheme::Alg::rsa_pkcs1, h.md()};
        if (nid == h.ecdsa_nid && absent) return VerifyScheme{VerifyScheme::Alg::ecdsa, h.md()};
    }
    if (nid == NID_ED25519 && absent) return VerifyScheme{VerifyScheme::Alg::ed25519};
    if (nid == NID_rsassaPss && ptype == V_ASN1_SEQUENCE)
        return parse_pss_params(static_cast<const ASN1_STRING*>(param));
    return std::nullopt;
}

bool scheme_fits_key(VerifyScheme::Alg alg, KeyKind kind)
{
    switch (alg) {
    case VerifyScheme::Alg::rsa_pkcs1: return kind == KeyKind::rsa;
    case VerifyScheme::Alg::rsa_pss: return kind == KeyKind::rsa || kind == KeyKind::rsa_pss;
    case VerifyScheme::Alg::ecdsa: return is_ec(kind);
    case VerifyScheme::Alg::ed25519: return kind == KeyKind::ed25519;
    }
    return false;
}

bool verify_rfc7427(EVP_PKEY* pkey, KeyKind kind, ByteView data, ByteView octets)
{
    if (data.empty()) return false;
    std::size_t alg_len = data[0];
    if (alg_len == 0 || 1 + alg_len >= data.size()) return false;     // no room for a signature
    auto scheme = parse_algorithm_id(data.subspan(1, alg_len));
    ERR_clear_error();
    if (!scheme || !scheme_fits_key(scheme->alg, kind)) return false;
    return digest_verify(pkey, *scheme, octets, data.subspan(1 + alg_len));
}

bool verify_classic(EVP_PKEY* pkey, KeyKind kind, const AuthPayload& auth, ByteView octets)
{
    auto classic = classic_scheme(kind);
    if (!classic || classic->method != auth.method) return false;
    if (classic->ecdsa_half == 0)
        return digest_verify(pkey, {VerifyScheme::Alg::rsa_pkcs1, classic->md}, octets, auth.data);
    auto der = ecdsa_fixed_to_der(auth.data, classic->ecdsa_half);
    return der && digest_verify(pkey, {VerifyScheme::Alg::ecdsa, classic->md}, octets, *der);
}

// --- identities ----------------------------------------------------------------

// Whether a subjectAltName entry of `gen_type` equals `value`; nullopt when
// the certificate has no entry of that type. A subjectAltName extension that
// does not decode (or appears twice) matches nothing and allows no fallback.
std::optional<bool> san_matches(X509* x, int gen_type, std::string_view value, bool ignore_case)
{
    int crit = -1;
    UniqueNames names(static_cast<GENERAL_NAMES*>(
        X509_get_ext_d2i(x, NID_subject_alt_name, &crit, nullptr)));
    if (!names) {
        ERR_clear_error();
        return crit == -1 ? std::nullopt : std::optional<bool>(false);
    }
    bool seen = false;
    for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
        const GENERAL_NAME* gen = sk_GENERAL_NAME_value(names.get(), i);
        int type = 0;
        const auto* str = static_cast<const ASN1_STRING*>(GENERAL_NAME_get0_value(gen, &type));
        if (type != gen_type || !str) continue;
        seen = true;
        std::string_view entry = view_of(str);
        if (ignore_case ? ascii_iequal(entry, value) : entry == value) return true;
    }
    return seen ? std::optional<bool>(false) : std::nullopt;
}

// Any subject attribute `nid` (as UTF-8) equal to `value`, ignoring ASCII case.
bool subject_attribute_matches(X509* x, int nid, std::string_view value)
{
    const X509_NAME* name = X509_get_subject_name(x);
    for (int i = X509_NAME_get_index_by_NID(name, nid, -1); i >= 0;
         i = X509_NAME_get_index_by_NID(name, nid, i)) {
        const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
        unsigned char* utf8 = nullptr;
        int len = ASN1_STRING_to_UTF8(&utf8, data);
        if (len < 0) {
            ERR_clear_error();
            continue;
        }
        bool equal = ascii_iequal({reinterpret_cast<char*>(utf8), std::size_t(len)}, value);
        OPENSSL_free(utf8);
        if (equal) return true;
    }
    return false;
}

bool name_matches(X509* x, int gen_type, int subject_nid, ByteView id)
{
    std::string_view value(reinterpret_cast<const char*>(id.data()), id.size());
    if (value.empty()) return false;
    if (auto san = san_matches(x, gen_type, value, true)) return *san;
    return subject_attribute_matches(x, subject_nid, value);
}

// Revocation is checked only where a CRL is loaded: "unable to get CRL" is
// forgiven when the store holds no CRL at all from the certificate's issuer.
int verify_callback(int ok, X509_STORE_CTX* ctx)
{
    if (ok || X509_STORE_CTX_get_error(ctx) != X509_V_ERR_UNABLE_TO_GET_CRL) return ok;
    X509* cert = X509_STORE_CTX_get_current_cert(ctx);
    if (!cert) return ok;
    STACK_OF(X509_CRL)* crls = X509_STORE_CTX_get1_crls(ctx, X509_get_issuer_name(cert));
    bool issuer_has_crl = crls && sk_X509_CRL_num(crls) > 0;
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    ERR_clear_error();
    return issuer_has_crl ? 0 : 1;
}

int refuse_passphrase(char*, int, int, void*) { return -1; }

// OpenSSL's pem_password_cb: copies the passphrase (a ByteView*) into `buf`.
int give_passphrase(char* buf, int size, int, void* u)
{
    const auto* p = static_cast<const ByteView*>(u);
    if (!p || p->size() > std::size_t(size)) return -1;
    std::memcpy(buf, p->data(), p->size());
    return int(p->size());
}

// RFC 2253 text of a name, for logs and error messages.
std::string name_text(const X509_NAME* name)
{
    UniqueBio bio(BIO_new(BIO_s_mem()));
    if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) {
        ERR_clear_error();
        return {};
    }
    char* text = nullptr;
    long len = BIO_get_mem_data(bio.get(), &text);
    return len > 0 ? std::string(text, std::size_t(len)) : std::string();
}

} // namespace

// --- Certificate -----------------------------------------------------------------

Certificate::~Certificate() { X509_free(x509_of(x509_)); }

Certificate::Certificate(Certificate&& o) noexcept
    : x509_(std::exchange(o.x509_, nullptr)), der_(std::move(o.der_))
{
}

Certificate& Certificate::operator=(Certificate&& o) noexcept
{
    if (this != &o) {
        X509_free(x509_of(x509_));
        x509_ = std::exchange(o.x509_, nullptr);
        der_ = std::move(o.der_);
    }
    return *this;
}

std::optional<Certificate> Certificate::from_der(ByteView der)
{
    auto x = d2i_exact<d2i_X509, X509_free>(der.data(), der.size());
    if (!x) {
        ERR_clear_error();
        return std::nullopt;
    }
    Certificate cert(x.release());
    cert.der_.assign(der.begin(), der.end());
    return cert;
}

std::optional<Certificate> Certificate::load(const std::string& path, std::string& error)
{
    Bytes data;
    if (!read_file(path, data, error)) return std::nullopt;
    if (!is_pem(data)) {
        auto cert = from_der(data);
        if (!cert) error = path + ": not a DER certificate";
        return cert;
    }
    UniqueBio bio = memory_bio(data);
    UniqueX509 x(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!x) {
        error = path + ": no PEM certificate (" + openssl_error() + ")";
        return std::nullopt;
    }
    Bytes der = i2d_bytes(i2d_X509, x.get());
    if (der.empty()) {
        error = path + ": cannot encode the certificate";
        return std::nullopt;
    }
    Certificate cert(x.release());
    cert.der_ = std::move(der);
    return cert;
}

const Bytes& Certificate::der() const { return der_; }

std::string Certificate::subject() const
{
    return x509_ ? name_text(X509_get_subject_name(x509_of(x509_))) : std::string();
}

Bytes Certificate::subject_der() const
{
    return x509_ ? i2d_bytes(i2d_X509_NAME, X509_get_subject_name(x509_of(x509_))) : Bytes();
}

Bytes Certificate::public_key_sha1() const
{
    Bytes spki = x509_ ? i2d_bytes(i2d_X509_PUBKEY, X509_get_X509_PUBKEY(x509_of(x509_))) : Bytes();
    Bytes digest(20);
    unsigned int digest_len = 0;
    if (spki.empty() ||
        EVP_Digest(spki.data(), spki.size(), digest.data(), &digest_len, EVP_sha1(), nullptr) != 1) {
        ERR_clear_error();
        return {};
    }
    return digest;
}

bool Certificate::matches(const IdPayload& id) const
{
    X509* x = x509_of(x509_);
    if (!x) return false;
    std::string_view value(reinterpret_cast<const char*>(id.data.data()), id.data.size());
    switch (id.type) {
    case IdType::ipv4:
        return id.data.size() == 4 && san_matches(x, GEN_IPADD, value, false).value_or(false);
    case IdType::ipv6:
        return id.data.size() == 16 && san_matches(x, GEN_IPADD, value, false).value_or(false);
    case IdType::fqdn:
        return name_matches(x, GEN_DNS, NID_commonName, id.data);
    case IdType::rfc822:
        return name_matches(x, GEN_EMAIL, NID_pkcs9_emailAddress, id.data);
    case IdType::der_asn1_dn: {
        auto name = d2i_exact<d2i_X509_NAME, X509_NAME_free>(id.data.data(), id.data.size());
        bool equal = name && X509_NAME_cmp(name.get(), X509_get_subject_name(x)) == 0;
        ERR_clear_error();
        return equal;
    }
    default:
        return false;
    }
}

// --- PrivateKey --------------------------------------------------------------------

PrivateKey::~PrivateKey() { EVP_PKEY_free(pkey_of(pkey_)); }

PrivateKey::PrivateKey(PrivateKey&& o) noexcept : pkey_(std::exchange(o.pkey_, nullptr)) {}

PrivateKey& PrivateKey::operator=(PrivateKey&& o) noexcept
{
    if (this != &o) {
        EVP_PKEY_free(pkey_of(pkey_));
        pkey_ = std::exchange(o.pkey_, nullptr);
    }
    return *this;
}

std::optional<PrivateKey> PrivateKey::load(const std::string& path, std::string& error, ByteView passphrase)
{
    Bytes data;
    if (!read_file(path, data, error)) return std::nullopt;
    struct Wipe {
        Bytes& b;
        ~Wipe() { OPENSSL_cleanse(b.data(), b.size()); }
    } wipe{data};

    UniquePkey pkey;
    bool pem = is_pem(data);
    if (pem) {
        UniqueBio bio = memory_bio(data);
        if (bio && passphrase.empty())
            pkey.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, refuse_passphrase, nullptr));
        else if (bio)
            pkey.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, give_passphrase,
                                               const_cast<ByteView*>(&passphrase)));
    } else {
        pkey = d2i_exact<d2i_AutoPrivateKey, EVP_PKEY_free>(data.data(), data.size());
    }
    if (!pkey) {
        error = path + (pem && contains_text(data, "ENCRYPTED")
                            ? (passphrase.empty() ? ": encrypted private key and no passphrase (secrets.private-* secret)"
                                                  : ": encrypted private key: wrong passphrase")
                            : ": no private key (" + openssl_error() + ")");
        ERR_clear_error();
        return std::nullopt;
    }
    switch (key_kind(pkey.get())) {
    case KeyKind::rsa:
        if (EVP_PKEY_get_bits(pkey.get()) < 2048) {
            error = path + ": RSA key shorter than 2048 bits";
            return std::nullopt;
        }
        break;
    case KeyKind::ec_p256:
    case KeyKind::ec_p384:
    case KeyKind::ec_p521:
    case KeyKind::ed25519:
        break;
    default:
        error = path + ": key type not supported (RSA, ECDSA P-256/384/521 or Ed25519)";
        return std::nullopt;
    }
    return PrivateKey(pkey.release());
}

std::optional<AuthPayload> PrivateKey::sign(ByteView signed_octets,
                                            std::span<const uint16_t> peer_hashes) const
{
    EVP_PKEY* pkey = pkey_of(pkey_);
    if (!pkey) return std::nullopt;
    KeyKind kind = key_kind(pkey);
    auto peer_has = [&](uint16_t h) {
        return std::find(peer_hashes.begin(), peer_hashes.end(), h) != peer_hashes.end();
    };
    if (kind == KeyKind::ed25519) {     // RFC 8420: RFC 7427 only, hash "identity"
        if (!peer_has(sig_hash::identity)) return std::nullopt;
        return sign_rfc7427(pkey, NID_ED25519, false, nullptr, signed_octets);
    }
    if (!peer_hashes.empty())
        for (uint16_t id : hash_preference(kind, EVP_PKEY_get_bits(pkey))) {
            if (!peer_has(id)) continue;
            const HashInfo* h = hash_by_id(id);
            bool rsa = kind == KeyKind::rsa;
            return sign_rfc7427(pkey, rsa ? h->rsa_nid : h->ecdsa_nid, rsa, h->md(), signed_octets);
        }
    // No SIGNATURE_HASH_ALGORITHMS, or none we share: the classic method.
    auto classic = classic_scheme(kind);
    if (!classic) return std::nullopt;
    auto sig = digest_sign(pkey, classic->md, signed_octets);
    if (sig && classic->ecdsa_half) sig = ecdsa_der_to_fixed(*sig, classic->ecdsa_half);
    if (!sig) return std::nullopt;
    return AuthPayload{classic->method, std::move(*sig)};
}

// --- verification ------------------------------------------------------------------

bool verify_auth(const Certificate& cert, const AuthPayload& auth, ByteView signed_octets)
{
    X509* x = x509_of(cert.native());
    EVP_PKEY* pkey = x ? X509_get0_pubkey(x) : nullptr;
    if (!pkey) {
        ERR_clear_error();
        return false;
    }
    KeyKind kind = key_kind(pkey);
    switch (auth.method) {
    case AuthMethod::digital_signature:
        return verify_rfc7427(pkey, kind, auth.data, signed_octets);
    case AuthMethod::rsa_signature:
    case AuthMethod::ecdsa_p256:
    case AuthMethod::ecdsa_p384:
    case AuthMethod::ecdsa_p521:
        return verify_classic(pkey, kind, auth, signed_octets);
    default:
        return false;
    }
}

std::span<const uint16_t> supported_signature_hashes()
{
    static constexpr std::array<uint16_t, 4> hashes{sig_hash::sha2_256, sig_hash::sha2_384,
                                                    sig_hash::sha2_512, sig_hash::identity};
    return hashes;
}

// --- TrustStore ----------------------------------------------------------------------

TrustStore::TrustStore() : store_(X509_STORE_new())
{
    if (!store_) throw std::bad_alloc();
    X509_STORE_set_flags(store_of(store_), X509_V_FLAG_PARTIAL_CHAIN);
    X509_STORE_set_verify_cb(store_of(store_), verify_callback);
}

TrustStore::~TrustStore() { X509_STORE_free(store_of(store_)); }

TrustStore::TrustStore(TrustStore&& o) noexcept
    : store_(std::exchange(o.store_, nullptr)), ca_hashes_(std::move(o.ca_hashes_))
{
}

TrustStore& TrustStore::operator=(TrustStore&& o) noexcept
{
    if (this != &o) {
        X509_STORE_free(store_of(store_));
        store_ = std::exchange(o.store_, nullptr);
        ca_hashes_ = std::move(o.ca_hashes_);
    }
    return *this;
}

bool TrustStore::add_ca(const Certificate& ca)
{
    X509* x = x509_of(ca.native());
    if (!store_ || !x || X509_check_ca(x) == 0) return false;
    Bytes hash = ca.public_key_sha1();
    if (hash.empty() || X509_STORE_add_cert(store_of(store_), x) != 1) {
        ERR_clear_error();
        return false;
    }
    if (std::find(ca_hashes_.begin(), ca_hashes_.end(), hash) == ca_hashes_.end())
        ca_hashes_.push_back(std::move(hash));
    return true;
}

bool TrustStore::add_crl_file(const std::string& path, std::string& error)
{
    if (!store_) {
        error = "trust store was moved from";
        return false;
    }
    Bytes data;
    if (!read_file(path, data, error)) return false;
    UniqueCrl crl;
    if (is_pem(data)) {
        UniqueBio bio = memory_bio(data);
        if (bio) crl.reset(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
    } else {
        crl = d2i_exact<d2i_X509_CRL, X509_CRL_free>(data.data(), data.size());
    }
    if (!crl || X509_STORE_add_crl(store_of(store_), crl.get()) != 1) {
        error = path + ": no usable CRL (" + openssl_error() + ")";
        return false;
    }
    // From now on every certificate is checked against its issuer's CRL
    // when there is one (verify_callback forgives issuers without).
    X509_STORE_set_flags(store_of(store_), X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    return true;
}

std::vector<Bytes> TrustStore::ca_key_hashes() const { return ca_hashes_; }

bool TrustStore::verify(const Certificate& end_entity, const std::vector<Certificate>& intermediates,
                        std::string& error) const
{
    X509* leaf = x509_of(end_entity.native());
    if (!store_ || !leaf) {
        error = store_ ? "no certificate" : "trust store was moved from";
        return false;
    }
    if (intermediates.size() > max_intermediates) {
        error = "more than " + std::to_string(max_intermediates) + " intermediate certificates";
        return false;
    }
    std::unique_ptr<STACK_OF(X509), X509StackFree> untrusted(sk_X509_new_null());
    UniqueStoreCtx ctx(X509_STORE_CTX_new());
    bool ready = untrusted && ctx;
    for (const auto& c : intermediates)
        if (ready && c.native()) ready = sk_X509_push(untrusted.get(), x509_of(c.native())) > 0;
    if (!ready || X509_STORE_CTX_init(ctx.get(), store_of(store_), leaf, untrusted.get()) != 1) {
        error = "cannot set up verification (" + openssl_error() + ")";
        return false;
    }
    if (X509_verify_cert(ctx.get()) == 1) {
        ERR_clear_error();
        return true;
    }
    int code = X509_STORE_CTX_get_error(ctx.get());
    error = X509_verify_cert_error_string(code);
    error += " at depth " + std::to_string(X509_STORE_CTX_get_error_depth(ctx.get()));
    if (const X509* at = X509_STORE_CTX_get_current_cert(ctx.get()))
        error += " (" + name_text(X509_get_subject_name(at)) + ")";
    ERR_clear_error();
    return false;
}

} // namespace ravelin::ike
