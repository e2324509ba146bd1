// Tests for controlplane/ike/cert.hh. Every key, certificate and CRL is made
// at test time with OpenSSL in a temporary directory (nothing private is
// committed): a root CA (P-384), an intermediate (P-256), end-entity
// certificates for RSA-2048/3072, ECDSA P-256/384/521 and Ed25519 keys,
// certificates with each kind of subjectAltName, an expired one, a revoked
// one with its CRL, and a second, untrusted root (Ed25519). The last test
// repeats the essentials with certificates made by strongSwan's `pki`.
#include "cert.hh"

#include <gtest/gtest.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sys/wait.h>

namespace ravelin::ike {
namespace {

namespace fs = std::filesystem;

template <auto Free>
struct Del {
    template <typename T>
    void operator()(T* p) const { Free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, Del<EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Del<X509_free>>;
using CrlPtr = std::unique_ptr<X509_CRL, Del<X509_CRL_free>>;
using BioPtr = std::unique_ptr<BIO, Del<BIO_free>>;
using AlgorPtr = std::unique_ptr<X509_ALGOR, Del<X509_ALGOR_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Del<EVP_MD_CTX_free>>;

// RFC 7427 Appendix A and RFC 8420 §2: the AlgorithmIdentifiers on the wire.
const Bytes alg_rsa_sha256{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00};
const Bytes alg_rsa_sha384{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05, 0x00};
const Bytes alg_rsa_sha512{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05, 0x00};
const Bytes alg_rsa_sha1{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00};
const Bytes alg_ecdsa_sha256{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
const Bytes alg_ecdsa_sha384{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03};
const Bytes alg_ecdsa_sha512{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04};
const Bytes alg_ed25519{0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70};

const std::vector<std::string> key_kinds{"rsa2048", "rsa3072", "p256", "p384", "p521", "ed25519"};

// --- files and OpenSSL objects ---------------------------------------------------

struct TempDir {
    fs::path path;
    TempDir()
    {
        std::string tmpl = (fs::temp_directory_path() / "ravelin-cert-XXXXXX").string();
        if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        path = tmpl;
    }
    ~TempDir()
    {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_file(const std::string& path, const Bytes& data)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
    if (!out) throw std::runtime_error("cannot write " + path);
}

template <typename F>
Bytes bio_bytes(F write)
{
    BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || write(bio.get()) != 1) throw std::runtime_error("OpenSSL write failed");
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    return Bytes(data, data + len);
}

Bytes der_of(X509* x)
{
    return bio_bytes([&](BIO* b) { return i2d_X509_bio(b, x); });
}
Bytes pem_of(X509* x)
{
    return bio_bytes([&](BIO* b) { return PEM_write_bio_X509(b, x); });
}
Bytes pkcs8_pem_of(EVP_PKEY* k)
{
    return bio_bytes([&](BIO* b) { return PEM_write_bio_PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr); });
}

Bytes sha1(const Bytes& data)
{
    Bytes out(20);
    unsigned len = 0;
    EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha1(), nullptr);
    return out;
}

Pkey gen_key(const std::string& kind)
{
    EVP_PKEY* k = nullptr;
    if (kind == "rsa1024") k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t(1024));
    if (kind == "rsa2048") k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t(2048));
    if (kind == "rsa3072") k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t(3072));
    if (kind == "p256") k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    if (kind == "p384") k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
    if (kind == "p521") k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-521");
    if (kind == "secp256k1") k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "secp256k1");
    if (kind == "ed25519") k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    if (kind == "x25519") k = EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519");
    if (!k) throw std::runtime_error("key generation failed: " + kind);
    return Pkey(k);
}

const EVP_MD* md_for(EVP_PKEY* k)
{
    return EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
}

struct CertSpec {
    std::string cn;
    std::string san;                // OpenSSL config syntax; empty = no subjectAltName
    std::string email;              // subject emailAddress; empty = none
    long serial = 1;
    long not_before_days = -1;
    long not_after_days = 30;
    bool ca = false;
};

void add_ext(X509* x, X509V3_CTX& ctx, int nid, const std::string& value)
{
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    if (!ext || X509_add_ext(x, ext, -1) != 1) throw std::runtime_error("extension " + value);
    X509_EXTENSION_free(ext);
}

void add_name(X509_NAME* name, const char* field, const std::string& value)
{
    X509_NAME_add_entry_by_txt(name, field, MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0);
}

// Self-signed when `issuer` is null.
X509Ptr make_cert(const CertSpec& spec, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key)
{
    X509Ptr x(X509_new());
    X509_set_version(x.get(), X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x.get()), spec.serial);
    X509_NAME* name = X509_get_subject_name(x.get());
    add_name(name, "C", "CH");
    add_name(name, "O", "Ravelin Test");
    add_name(name, "CN", spec.cn);
    if (!spec.email.empty()) add_name(name, "emailAddress", spec.email);
    X509_set_issuer_name(x.get(), issuer ? X509_get_subject_name(issuer) : name);
    X509_gmtime_adj(X509_getm_notBefore(x.get()), spec.not_before_days * 86400);
    X509_gmtime_adj(X509_getm_notAfter(x.get()), spec.not_after_days * 86400);
    X509_set_pubkey(x.get(), key);

    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x.get(), x.get(), nullptr, nullptr, 0);
    add_ext(x.get(), ctx, NID_basic_constraints, spec.ca ? "critical,CA:TRUE" : "CA:FALSE");
    add_ext(x.get(), ctx, NID_key_usage,
            spec.ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    add_ext(x.get(), ctx, NID_subject_key_identifier, "hash");
    add_ext(x.get(), ctx, NID_authority_key_identifier, "keyid:always");
    if (!spec.san.empty()) add_ext(x.get(), ctx, NID_subject_alt_name, spec.san);
    EVP_PKEY* signer = issuer ? issuer_key : key;
    if (X509_sign(x.get(), signer, md_for(signer)) <= 0) throw std::runtime_error("X509_sign");
    return x;
}

CrlPtr make_crl(X509* issuer, EVP_PKEY* key, const std::vector<long>& revoked, long next_update_days = 7)
{
    CrlPtr crl(X509_CRL_new());
    X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2);
    X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(issuer));
    ASN1_TIME* now = X509_gmtime_adj(nullptr, std::min(-3600L, (next_update_days - 1) * 86400));
    ASN1_TIME* next = X509_gmtime_adj(nullptr, next_update_days * 86400);
    X509_CRL_set1_lastUpdate(crl.get(), now);
    X509_CRL_set1_nextUpdate(crl.get(), next);
    for (long serial : revoked) {
        X509_REVOKED* r = X509_REVOKED_new();
        ASN1_INTEGER* s = ASN1_INTEGER_new();
        ASN1_INTEGER_set(s, serial);
        X509_REVOKED_set_serialNumber(r, s);
        X509_REVOKED_set_revocationDate(r, now);
        ASN1_INTEGER_free(s);
        X509_CRL_add0_revoked(crl.get(), r);
    }
    ASN1_TIME_free(now);
    ASN1_TIME_free(next);
    X509_CRL_sort(crl.get());
    if (X509_CRL_sign(crl.get(), key, md_for(key)) <= 0) throw std::runtime_error("X509_CRL_sign");
    return crl;
}

Certificate cert_of(X509* x) { return Certificate::from_der(der_of(x)).value(); }

// --- the test PKI, made once ----------------------------------------------------------

struct TestPki {
    TempDir dir;
    Pkey root_key = gen_key("p384");
    Pkey inter_key = gen_key("p256");
    Pkey other_root_key = gen_key("ed25519");
    X509Ptr root, inter, other_root;
    std::map<std::string, Pkey> leaf_keys;
    std::map<std::string, X509Ptr> leaves;
    X509Ptr ids, cn_only, ip_only, expired, revoked, good, other_leaf;
    std::string crl_pem, crl_der, bad_crl, stale_crl;

    TestPki()
    {
        root = make_cert({"Ravelin Test Root", "", "", 1, -1, 3650, true}, root_key.get(), nullptr, nullptr);
        inter = make_cert({"Ravelin Test Intermediate", "", "", 2, -1, 1800, true}, inter_key.get(),
                          root.get(), root_key.get());
        other_root = make_cert({"Other Root", "", "", 1, -1, 3650, true}, other_root_key.get(), nullptr, nullptr);
        long serial = 100;
        for (const auto& kind : key_kinds) {
            leaf_keys[kind] = gen_key(kind);
            leaves[kind] = make_cert({"leaf-" + kind + ".example.org", "DNS:leaf-" + kind + ".example.org",
                                      "", serial++}, leaf_keys[kind].get(), inter.get(), inter_key.get());
            write_file(dir.file(kind + ".key"), pkcs8_pem_of(leaf_keys[kind].get()));
        }
        EVP_PKEY* k = leaf_keys["p256"].get();
        ids = make_cert({"ignored-cn.example.com",
                         "DNS:gw.example.org,DNS:alt.example.net,IP:198.18.0.1,IP:2001:db8::1,"
                         "email:admin@example.org",
                         "subject@example.org", 200},
                        k, inter.get(), inter_key.get());
        cn_only = make_cert({"cn-only.example.org", "", "cn@example.org", 201}, k, inter.get(), inter_key.get());
        ip_only = make_cert({"fallback.example.org", "IP:198.18.0.9", "", 202}, k, inter.get(), inter_key.get());
        expired = make_cert({"expired.example.org", "", "", 203, -30, -1}, k, inter.get(), inter_key.get());
        revoked = make_cert({"revoked.example.org", "", "", 204}, k, inter.get(), inter_key.get());
        good = make_cert({"good.example.org", "", "", 205}, k, inter.get(), inter_key.get());
        other_leaf = make_cert({"other.example.org", "", "", 2}, k, other_root.get(), other_root_key.get());

        CrlPtr crl = make_crl(inter.get(), inter_key.get(), {204});
        crl_pem = dir.file("inter.crl.pem");
        crl_der = dir.file("inter.crl.der");
        write_file(crl_pem, bio_bytes([&](BIO* b) { return PEM_write_bio_X509_CRL(b, crl.get()); }));
        write_file(crl_der, bio_bytes([&](BIO* b) { return i2d_X509_CRL_bio(b, crl.get()); }));
        // Names the intermediate as issuer but is signed by another key.
        CrlPtr forged = make_crl(inter.get(), root_key.get(), {});
        bad_crl = dir.file("forged.crl");
        write_file(bad_crl, bio_bytes([&](BIO* b) { return PEM_write_bio_X509_CRL(b, forged.get()); }));
        CrlPtr stale = make_crl(inter.get(), inter_key.get(), {}, -1);
        stale_crl = dir.file("stale.crl");
        write_file(stale_crl, bio_bytes([&](BIO* b) { return PEM_write_bio_X509_CRL(b, stale.get()); }));
    }

    PrivateKey private_key(const std::string& kind) const
    {
        std::string error;
        auto key = PrivateKey::load(dir.file(kind + ".key"), error);
        if (!key) throw std::runtime_error(error);
        return std::move(*key);
    }
    TrustStore store_with_root() const
    {
        TrustStore store;
        if (!store.add_ca(cert_of(root.get()))) throw std::runtime_error("add_ca(root)");
        return store;
    }
};

const TestPki& pki()
{
    static TestPki instance;
    return instance;
}

Bytes octets(std::size_t n = 300)
{
    Bytes b(n);
    for (std::size_t i = 0; i < n; ++i) b[i] = uint8_t(i * 7 + 3);
    return b;
}

ByteView alg_of(const AuthPayload& auth)
{
    if (auth.data.empty() || auth.data[0] + 1u > auth.data.size()) return {};
    return ByteView(auth.data).subspan(1, auth.data[0]);
}

Bytes bytes_of(ByteView v) { return Bytes(v.begin(), v.end()); }

// RFC 7427 AUTH data from parts.
Bytes auth_data(const Bytes& alg, const Bytes& sig)
{
    Bytes out{uint8_t(alg.size())};
    out.insert(out.end(), alg.begin(), alg.end());
    out.insert(out.end(), sig.begin(), sig.end());
    return out;
}

IdPayload id(IdType type, const std::string& text)
{
    return {type, Bytes(text.begin(), text.end())};
}

IdPayload id(IdType type, std::initializer_list<uint8_t> raw) { return {type, Bytes(raw)}; }

// --- loading and accessors ------------------------------------------------------------

TEST(IkeCert, LoadsPemAndDerAlike)
{
    const auto& p = pki();
    Bytes der = der_of(p.ids.get());
    write_file(p.dir.file("ids.pem"), pem_of(p.ids.get()));
    write_file(p.dir.file("ids.der"), der);
    std::string error;
    auto from_pem = Certificate::load(p.dir.file("ids.pem"), error);
    ASSERT_TRUE(from_pem) << error;
    auto from_der = Certificate::load(p.dir.file("ids.der"), error);
    ASSERT_TRUE(from_der) << error;
    EXPECT_EQ(from_pem->der(), der);
    EXPECT_EQ(from_der->der(), der);
}

TEST(IkeCert, RefusesWhatIsNotACertificate)
{
    const auto& p = pki();
    std::string error;
    EXPECT_FALSE(Certificate::load(p.dir.file("missing.pem"), error));
    EXPECT_NE(error.find("missing.pem"), std::string::npos) << error;

    Bytes der = der_of(p.ids.get());
    Bytes trailing = der;
    trailing.push_back(0);
    write_file(p.dir.file("trailing.der"), trailing);
    error.clear();
    EXPECT_FALSE(Certificate::load(p.dir.file("trailing.der"), error));
    EXPECT_FALSE(error.empty());

    write_file(p.dir.file("garbage.pem"), Bytes{'-', '-', '-', '-', '-', 'B', 'E', 'G', 'I', 'N', ' ', 'x'});
    error.clear();
    EXPECT_FALSE(Certificate::load(p.dir.file("garbage.pem"), error));
    EXPECT_FALSE(error.empty());

    write_file(p.dir.file("empty"), {});
    EXPECT_FALSE(Certificate::load(p.dir.file("empty"), error));

    EXPECT_FALSE(Certificate::from_der({}));
    EXPECT_FALSE(Certificate::from_der(ByteView(der).first(der.size() - 1)));
    EXPECT_FALSE(Certificate::from_der(trailing));
    EXPECT_EQ(ERR_peek_error(), 0u) << "OpenSSL error queue left non-empty";
}

TEST(IkeCert, SubjectTextAndDer)
{
    const auto& p = pki();
    Certificate c = cert_of(p.leaves.at("p256").get());
    EXPECT_EQ(c.subject(), "CN=leaf-p256.example.org,O=Ravelin Test,C=CH");
    unsigned char* der = nullptr;
    int len = i2d_X509_NAME(X509_get_subject_name(p.leaves.at("p256").get()), &der);
    ASSERT_GT(len, 0);
    EXPECT_EQ(c.subject_der(), Bytes(der, der + len));
    OPENSSL_free(der);
}

TEST(IkeCert, PublicKeySha1IsSha1OfSubjectPublicKeyInfo)
{
    const auto& p = pki();
    for (const auto& kind : key_kinds) {
        X509* x = p.leaves.at(kind).get();
        unsigned char* spki = nullptr;
        int len = i2d_PUBKEY(X509_get0_pubkey(x), &spki);
        ASSERT_GT(len, 0);
        Bytes expected = sha1(Bytes(spki, spki + len));
        OPENSSL_free(spki);
        EXPECT_EQ(cert_of(x).public_key_sha1(), expected) << kind;
    }
}

TEST(IkeCert, MovedFromCertificateIsEmpty)
{
    Certificate a = cert_of(pki().ids.get());
    Certificate b = std::move(a);
    EXPECT_FALSE(b.der().empty());
    EXPECT_EQ(a.native(), nullptr);
    EXPECT_EQ(a.subject(), "");
    EXPECT_FALSE(a.matches(id(IdType::fqdn, "gw.example.org")));
    EXPECT_TRUE(b.matches(id(IdType::fqdn, "gw.example.org")));
}

// --- identities --------------------------------------------------------------------------

TEST(IkeCert, MatchesSubjectAltNames)
{
    Certificate c = cert_of(pki().ids.get());
    EXPECT_TRUE(c.matches(id(IdType::fqdn, "gw.example.org")));
    EXPECT_TRUE(c.matches(id(IdType::fqdn, "GW.Example.ORG")));
    EXPECT_TRUE(c.matches(id(IdType::fqdn, "alt.example.net")));
    EXPECT_FALSE(c.matches(id(IdType::fqdn, "example.org")));
    EXPECT_FALSE(c.matches(id(IdType::fqdn, "")));
    EXPECT_FALSE(c.matches(id(IdType::fqdn, std::string("gw.example.org\0", 15))));
    // A dNSName exists, so the CN is not consulted.
    EXPECT_FALSE(c.matches(id(IdType::fqdn, "ignored-cn.example.com")));

    EXPECT_TRUE(c.matches(id(IdType::ipv4, {198, 18, 0, 1})));
    EXPECT_FALSE(c.matches(id(IdType::ipv4, {198, 18, 0, 2})));
    EXPECT_FALSE(c.matches(id(IdType::ipv4, {198, 18, 0})));
    EXPECT_TRUE(c.matches(id(IdType::ipv6, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})));
    EXPECT_FALSE(c.matches(id(IdType::ipv6, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2})));
    EXPECT_FALSE(c.matches(id(IdType::ipv6, {198, 18, 0, 1})));

    EXPECT_TRUE(c.matches(id(IdType::rfc822, "admin@example.org")));
    EXPECT_TRUE(c.matches(id(IdType::rfc822, "ADMIN@example.org")));
    EXPECT_FALSE(c.matches(id(IdType::rfc822, "root@example.org")));
    // An rfc822Name exists, so the subject's emailAddress is not consulted.
    EXPECT_FALSE(c.matches(id(IdType::rfc822, "subject@example.org")));

    EXPECT_FALSE(c.matches(id(IdType::key_id, "gw.example.org")));
    EXPECT_FALSE(c.matches(id(IdType::der_asn1_gn, {0x82, 0x02, 'g', 'w'})));
}

TEST(IkeCert, FallsBackToSubjectWithoutSanOfThatType)
{
    const auto& p = pki();
    Certificate cn = cert_of(p.cn_only.get());
    EXPECT_TRUE(cn.matches(id(IdType::fqdn, "cn-only.example.org")));
    EXPECT_TRUE(cn.matches(id(IdType::fqdn, "CN-ONLY.example.org")));
    EXPECT_FALSE(cn.matches(id(IdType::fqdn, "other.example.org")));
    EXPECT_TRUE(cn.matches(id(IdType::rfc822, "cn@example.org")));
    EXPECT_FALSE(cn.matches(id(IdType::rfc822, "other@example.org")));
    EXPECT_FALSE(cn.matches(id(IdType::ipv4, {198, 18, 0, 1})));   // addresses never fall back

    Certificate ip = cert_of(p.ip_only.get());
    EXPECT_TRUE(ip.matches(id(IdType::ipv4, {198, 18, 0, 9})));
    EXPECT_TRUE(ip.matches(id(IdType::fqdn, "fallback.example.org")));
}

TEST(IkeCert, MatchesDistinguishedName)
{
    const auto& p = pki();
    Certificate c = cert_of(p.ids.get());
    EXPECT_TRUE(c.matches({IdType::der_asn1_dn, c.subject_der()}));
    EXPECT_FALSE(c.matches({IdType::der_asn1_dn, cert_of(p.inter.get()).subject_der()}));
    Bytes trailing = c.subject_der();
    trailing.push_back(0);
    EXPECT_FALSE(c.matches({IdType::der_asn1_dn, trailing}));
    EXPECT_FALSE(c.matches({IdType::der_asn1_dn, Bytes{0x30, 0x82, 0xff, 0xff, 0x31}}));
    EXPECT_FALSE(c.matches({IdType::der_asn1_dn, {}}));

    // X509_NAME_cmp compares canonical forms: case in a string value does not matter.
    std::unique_ptr<X509_NAME, Del<X509_NAME_free>> name(X509_NAME_new());
    add_name(name.get(), "C", "CH");
    add_name(name.get(), "O", "RAVELIN TEST");
    add_name(name.get(), "CN", "Ignored-CN.example.com");
    add_name(name.get(), "emailAddress", "subject@example.org");
    unsigned char* der = nullptr;
    int len = i2d_X509_NAME(name.get(), &der);
    ASSERT_GT(len, 0);
    EXPECT_TRUE(c.matches({IdType::der_asn1_dn, Bytes(der, der + len)}));
    OPENSSL_free(der);
    EXPECT_EQ(ERR_peek_error(), 0u);
}

// --- private keys -----------------------------------------------------------------------

TEST(IkePrivateKey, LoadsEveryFormat)
{
    const auto& p = pki();
    Bytes msg = octets();
    for (const auto& kind : key_kinds) {
        EVP_PKEY* k = p.leaf_keys.at(kind).get();
        std::vector<std::pair<std::string, Bytes>> forms{
            {"pkcs8.der", bio_bytes([&](BIO* b) { return i2d_PKCS8PrivateKey_bio(b, k, nullptr, nullptr, 0, nullptr, nullptr); })},
            {"native.der", bio_bytes([&](BIO* b) { return i2d_PrivateKey_bio(b, k); })},
        };
        if (kind != "ed25519")      // PKCS#1 / SEC1 PEM ("RSA/EC PRIVATE KEY")
            forms.emplace_back("traditional.pem", bio_bytes([&](BIO* b) {
                return PEM_write_bio_PrivateKey_traditional(b, k, nullptr, nullptr, 0, nullptr, nullptr);
            }));
        for (const auto& [suffix, data] : forms) {
            std::string path = p.dir.file(kind + "." + suffix);
            write_file(path, data);
            std::string error;
            auto key = PrivateKey::load(path, error);
            ASSERT_TRUE(key) << kind << " " << suffix << ": " << error;
            EXPECT_EQ(EVP_PKEY_eq(static_cast<EVP_PKEY*>(key->native()), k), 1) << kind << " " << suffix;
        }
    }
}

TEST(IkePrivateKey, RefusesUnusableKeys)
{
    const auto& p = pki();
    auto refused = [&](const std::string& name, const Bytes& data, const std::string& why) {
        write_file(p.dir.file(name), data);
        std::string error;
        EXPECT_FALSE(PrivateKey::load(p.dir.file(name), error)) << name;
        EXPECT_NE(error.find(why), std::string::npos) << name << ": " << error;
    };
    EVP_PKEY* p256 = p.leaf_keys.at("p256").get();
    Bytes encrypted = bio_bytes([&](BIO* b) {
        return PEM_write_bio_PrivateKey(b, p256, EVP_aes_256_cbc(),
                                        reinterpret_cast<const unsigned char*>("secret"), 6,
                                        nullptr, nullptr);
    });
    refused("encrypted.pem", encrypted, "no passphrase");
    {
        // With its passphrase (secrets.private-* secret) it opens; with another it does not.
        std::string error;
        const std::string good = "secret", bad = "Secret";
        auto key = PrivateKey::load(p.dir.file("encrypted.pem"), error,
                                    ByteView(reinterpret_cast<const uint8_t*>(good.data()), good.size()));
        ASSERT_TRUE(key) << error;
        EXPECT_EQ(EVP_PKEY_eq(static_cast<EVP_PKEY*>(key->native()), p256), 1);
        EXPECT_FALSE(PrivateKey::load(p.dir.file("encrypted.pem"), error,
                                      ByteView(reinterpret_cast<const uint8_t*>(bad.data()), bad.size())));
        EXPECT_NE(error.find("wrong passphrase"), std::string::npos) << error;
        ERR_clear_error();
    }
    refused("rsa1024.pem", pkcs8_pem_of(gen_key("rsa1024").get()), "2048");
    refused("x25519.pem", pkcs8_pem_of(gen_key("x25519").get()), "not supported");
    refused("secp256k1.pem", pkcs8_pem_of(gen_key("secp256k1").get()), "not supported");
    refused("cert-as-key.pem", pem_of(p.ids.get()), "no private key");
    refused("garbage.der", Bytes(100, 0x42), "no private key");
    refused("huge.der", Bytes((1u << 20) + 1, 0x30), "1 MiB");
    std::string error;
    EXPECT_FALSE(PrivateKey::load(p.dir.file("missing.key"), error));
    EXPECT_NE(error.find("missing.key"), std::string::npos) << error;
    EXPECT_EQ(ERR_peek_error(), 0u);
}

// --- signatures: round trips --------------------------------------------------------------

struct SignCase {
    std::string kind;
    uint16_t hash;                  // 0 = classic method (no SIGNATURE_HASH_ALGORITHMS)
};

std::string case_name(const testing::TestParamInfo<SignCase>& info)
{
    return info.param.kind + "_" + (info.param.hash ? "hash" + std::to_string(info.param.hash) : "classic");
}

std::vector<SignCase> sign_cases()
{
    std::vector<SignCase> cases;
    for (const auto& kind : key_kinds) {
        if (kind == "ed25519") {
            cases.push_back({kind, sig_hash::identity});
            continue;
        }
        for (uint16_t h : {0, 2, 3, 4}) cases.push_back({kind, h});
    }
    return cases;
}

Bytes expected_alg(const std::string& kind, uint16_t hash)
{
    if (kind == "ed25519") return alg_ed25519;
    bool rsa = kind.starts_with("rsa");
    switch (hash) {
    case sig_hash::sha2_256: return rsa ? alg_rsa_sha256 : alg_ecdsa_sha256;
    case sig_hash::sha2_384: return rsa ? alg_rsa_sha384 : alg_ecdsa_sha384;
    default: return rsa ? alg_rsa_sha512 : alg_ecdsa_sha512;
    }
}

class IkeSignRoundTrip : public testing::TestWithParam<SignCase> {};

TEST_P(IkeSignRoundTrip, SignsVerifiesAndRejectsTampering)
{
    const auto& p = pki();
    const SignCase& c = GetParam();
    PrivateKey key = p.private_key(c.kind);
    Certificate cert = cert_of(p.leaves.at(c.kind).get());
    Bytes msg = octets();
    std::vector<uint16_t> peer;
    if (c.hash) peer.push_back(c.hash);

    auto auth = key.sign(msg, peer);
    ASSERT_TRUE(auth);
    if (c.hash) {
        EXPECT_EQ(auth->method, AuthMethod::digital_signature);
        EXPECT_EQ(bytes_of(alg_of(*auth)), expected_alg(c.kind, c.hash));
    } else {
        static const std::map<std::string, std::pair<AuthMethod, std::size_t>> classic{
            {"rsa2048", {AuthMethod::rsa_signature, 256}}, {"rsa3072", {AuthMethod::rsa_signature, 384}},
            {"p256", {AuthMethod::ecdsa_p256, 64}}, {"p384", {AuthMethod::ecdsa_p384, 96}},
            {"p521", {AuthMethod::ecdsa_p521, 132}}};
        EXPECT_EQ(auth->method, classic.at(c.kind).first);
        EXPECT_EQ(auth->data.size(), classic.at(c.kind).second);
    }
    EXPECT_TRUE(verify_auth(cert, *auth, msg));

    Bytes tampered_msg = msg;
    tampered_msg[17] ^= 0x01;
    EXPECT_FALSE(verify_auth(cert, *auth, tampered_msg));
    EXPECT_FALSE(verify_auth(cert, *auth, ByteView(msg).first(msg.size() - 1)));

    AuthPayload tampered_sig = *auth;
    tampered_sig.data.back() ^= 0x80;
    EXPECT_FALSE(verify_auth(cert, tampered_sig, msg));
    AuthPayload truncated = *auth;
    truncated.data.pop_back();
    EXPECT_FALSE(verify_auth(cert, truncated, msg));

    // Another certificate's key (the root's) does not verify it.
    EXPECT_FALSE(verify_auth(cert_of(p.root.get()), *auth, msg));
    EXPECT_EQ(ERR_peek_error(), 0u);
}

INSTANTIATE_TEST_SUITE_P(EveryKeyAndHash, IkeSignRoundTrip, testing::ValuesIn(sign_cases()), case_name);

TEST(IkeSign, ClassicEcdsaKeepsFixedLengthRAndS)
{
    // r or s shorter than the field (leading zero bytes) happen every few
    // hundred signatures on P-256/384 and nearly always on P-521.
    const auto& p = pki();
    for (const std::string kind : {"p256", "p384", "p521"}) {
        PrivateKey key = p.private_key(kind);
        Certificate cert = cert_of(p.leaves.at(kind).get());
        for (int i = 0; i < 300; ++i) {
            Bytes msg = octets(40 + i);
            auto auth = key.sign(msg, {});
            ASSERT_TRUE(auth);
            ASSERT_TRUE(verify_auth(cert, *auth, msg)) << kind << " signature " << i;
        }
    }
}

TEST(IkeSign, ChoosesHashByKeyStrengthAndPeer)
{
    const auto& p = pki();
    Bytes msg = octets();
    auto alg = [&](const std::string& kind, std::vector<uint16_t> peer) -> Bytes {
        auto auth = p.private_key(kind).sign(msg, peer);
        if (!auth || auth->method != AuthMethod::digital_signature) return {};
        return bytes_of(alg_of(*auth));
    };
    const std::vector<uint16_t> all{2, 3, 4, 5};
    EXPECT_EQ(alg("rsa2048", all), alg_rsa_sha256);
    EXPECT_EQ(alg("rsa3072", all), alg_rsa_sha256);
    EXPECT_EQ(alg("p256", all), alg_ecdsa_sha256);
    EXPECT_EQ(alg("p384", all), alg_ecdsa_sha384);
    EXPECT_EQ(alg("p521", all), alg_ecdsa_sha512);
    EXPECT_EQ(alg("ed25519", all), alg_ed25519);
    EXPECT_EQ(alg("p384", {2}), alg_ecdsa_sha256);          // weaker only when nothing else is shared
    EXPECT_EQ(alg("p256", {4, 3}), alg_ecdsa_sha384);       // next stronger first
    EXPECT_EQ(alg("rsa2048", {5, 4}), alg_rsa_sha512);

    // The peer announced only hashes we do not use for this key: classic method.
    auto rsa = p.private_key("rsa2048").sign(msg, std::vector<uint16_t>{1});
    ASSERT_TRUE(rsa);
    EXPECT_EQ(rsa->method, AuthMethod::rsa_signature);
    auto ec = p.private_key("p256").sign(msg, std::vector<uint16_t>{5});
    ASSERT_TRUE(ec);
    EXPECT_EQ(ec->method, AuthMethod::ecdsa_p256);

    // Ed25519 exists only as RFC 7427 with the identity hash (RFC 8420).
    PrivateKey ed = p.private_key("ed25519");
    EXPECT_FALSE(ed.sign(msg, {}));
    EXPECT_FALSE(ed.sign(msg, std::vector<uint16_t>{2, 3, 4}));

    auto supported = supported_signature_hashes();
    EXPECT_EQ(std::vector<uint16_t>(supported.begin(), supported.end()), (std::vector<uint16_t>{2, 3, 4, 5}));
}

// --- signatures: what must fail ------------------------------------------------------------

// `auth` with its AlgorithmIdentifier replaced.
AuthPayload with_alg(const AuthPayload& auth, const Bytes& alg)
{
    ByteView old = alg_of(auth);
    Bytes sig(auth.data.begin() + 1 + std::ptrdiff_t(old.size()), auth.data.end());
    return {AuthMethod::digital_signature, auth_data(alg, sig)};
}

TEST(IkeVerify, MethodMustFitTheKey)
{
    const auto& p = pki();
    Bytes msg = octets();
    Certificate rsa = cert_of(p.leaves.at("rsa2048").get());
    Certificate p256 = cert_of(p.leaves.at("p256").get());
    Certificate p384 = cert_of(p.leaves.at("p384").get());
    Certificate ed = cert_of(p.leaves.at("ed25519").get());

    auto rsa_classic = p.private_key("rsa2048").sign(msg, {}).value();
    auto p256_classic = p.private_key("p256").sign(msg, {}).value();
    auto p384_classic = p.private_key("p384").sign(msg, {}).value();
    auto relabel = [](AuthPayload a, AuthMethod m) { a.method = m; return a; };
    EXPECT_FALSE(verify_auth(rsa, relabel(rsa_classic, AuthMethod::ecdsa_p256), msg));
    EXPECT_FALSE(verify_auth(p256, relabel(p256_classic, AuthMethod::rsa_signature), msg));
    EXPECT_FALSE(verify_auth(p256, relabel(p256_classic, AuthMethod::ecdsa_p384), msg));
    EXPECT_FALSE(verify_auth(p384, relabel(p384_classic, AuthMethod::ecdsa_p256), msg));
    EXPECT_FALSE(verify_auth(p256, relabel(p256_classic, AuthMethod::shared_key), msg));
    EXPECT_FALSE(verify_auth(rsa, relabel(rsa_classic, AuthMethod::dss), msg));
    EXPECT_FALSE(verify_auth(ed, relabel(p256_classic, AuthMethod::ecdsa_p256), msg));

    auto rsa_7427 = p.private_key("rsa2048").sign(msg, std::vector<uint16_t>{2}).value();
    auto p256_7427 = p.private_key("p256").sign(msg, std::vector<uint16_t>{2}).value();
    auto ed_7427 = p.private_key("ed25519").sign(msg, std::vector<uint16_t>{5}).value();
    EXPECT_FALSE(verify_auth(rsa, with_alg(rsa_7427, alg_ecdsa_sha256), msg));
    EXPECT_FALSE(verify_auth(p256, with_alg(p256_7427, alg_rsa_sha256), msg));
    EXPECT_FALSE(verify_auth(p256, with_alg(p256_7427, alg_ed25519), msg));
    EXPECT_FALSE(verify_auth(ed, with_alg(ed_7427, alg_ecdsa_sha256), msg));
    EXPECT_FALSE(verify_auth(p256, with_alg(p256_7427, alg_ecdsa_sha384), msg));   // hash mismatch
    // Right signature, wrong key type in the certificate.
    EXPECT_FALSE(verify_auth(p256, rsa_7427, msg));
    EXPECT_FALSE(verify_auth(rsa, ed_7427, msg));
    // Sanity: unchanged they verify.
    EXPECT_TRUE(verify_auth(p256, p256_7427, msg));
    EXPECT_TRUE(verify_auth(ed, ed_7427, msg));
    EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(IkeVerify, MalformedAuthDataFailsCleanly)
{
    const auto& p = pki();
    Bytes msg = octets();
    Certificate rsa = cert_of(p.leaves.at("rsa2048").get());
    auto good = p.private_key("rsa2048").sign(msg, std::vector<uint16_t>{2}).value();
    ASSERT_TRUE(verify_auth(rsa, good, msg));
    Bytes sig(good.data.begin() + 1 + std::ptrdiff_t(alg_rsa_sha256.size()), good.data.end());

    auto bad = [&](Bytes data) { return !verify_auth(rsa, {AuthMethod::digital_signature, std::move(data)}, msg); };
    EXPECT_TRUE(bad({}));
    EXPECT_TRUE(bad({0x00}));
    EXPECT_TRUE(bad(Bytes{0xff, 0x30, 0x0d, 0x06}));                    // length beyond the data
    EXPECT_TRUE(bad(auth_data(alg_rsa_sha256, {})));                     // no signature
    EXPECT_TRUE(bad(Bytes(good.data.begin(), good.data.begin() + 1 + 15))); // exactly the AlgorithmIdentifier
    Bytes garbage(15, 0xa5);
    EXPECT_TRUE(bad(auth_data(garbage, sig)));
    Bytes padded = alg_rsa_sha256;                                       // trailing byte inside the length
    padded.push_back(0x00);
    EXPECT_TRUE(bad(auth_data(padded, sig)));
    Bytes short_len = good.data;                                         // length one short
    short_len[0] -= 1;
    EXPECT_TRUE(bad(short_len));
    Bytes wrong_params = alg_rsa_sha256;                                 // INTEGER 0 instead of NULL
    wrong_params[13] = 0x02;
    wrong_params[14] = 0x00;
    wrong_params.push_back(0x00);
    wrong_params[1] += 1;
    EXPECT_TRUE(bad(auth_data(wrong_params, sig)));
    Bytes ecdsa_with_null = alg_ecdsa_sha256;                            // ECDSA must omit parameters
    ecdsa_with_null.insert(ecdsa_with_null.end(), {0x05, 0x00});
    ecdsa_with_null[1] += 2;
    Certificate p256 = cert_of(p.leaves.at("p256").get());
    auto ec = p.private_key("p256").sign(msg, std::vector<uint16_t>{2}).value();
    ASSERT_TRUE(verify_auth(p256, ec, msg));
    EXPECT_FALSE(verify_auth(p256, with_alg(ec, ecdsa_with_null), msg));

    // A genuine sha1WithRSAEncryption signature: SHA-1 is not an RFC 7427 hash here.
    MdCtxPtr ctx(EVP_MD_CTX_new());
    std::size_t len = 512;
    Bytes sha1_sig(len);
    EVP_PKEY* k = p.leaf_keys.at("rsa2048").get();
    ASSERT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha1(), nullptr, k), 1);
    ASSERT_EQ(EVP_DigestSign(ctx.get(), sha1_sig.data(), &len, msg.data(), msg.size()), 1);
    sha1_sig.resize(len);
    EXPECT_TRUE(bad(auth_data(alg_rsa_sha1, sha1_sig)));
    EXPECT_TRUE(verify_auth(rsa, {AuthMethod::rsa_signature, sha1_sig}, msg));  // but fine as method 1
    EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(IkeVerify, RandomCorruptionNeverVerifies)
{
    const auto& p = pki();
    Bytes msg = octets();
    Certificate cert = cert_of(p.leaves.at("p256").get());
    auto good = p.private_key("p256").sign(msg, std::vector<uint16_t>{2}).value();
    std::mt19937 rng(7427);
    for (int i = 0; i < 3000; ++i) {
        AuthPayload a = good;
        if (i % 4 == 0) {
            a.data.resize(rng() % a.data.size());
        } else {
            for (int n = 1 + int(rng() % 3); n > 0; --n) {
                std::size_t at = rng() % a.data.size();
                a.data[at] ^= uint8_t(1 + rng() % 255);
            }
            if (a.data == good.data) continue;
        }
        ASSERT_FALSE(verify_auth(cert, a, msg)) << "iteration " << i;
    }
    EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(IkeCert, CorruptedCertificatesDecodeOrFailCleanly)
{
    // Hostile CERT payloads: each mutation either fails to decode or gives a
    // certificate whose accessors and checks still behave (run under ASan).
    const auto& p = pki();
    Bytes der = der_of(p.ids.get());
    TrustStore store = p.store_with_root();
    std::vector<Certificate> chain;
    chain.push_back(cert_of(p.inter.get()));
    std::string error;
    ASSERT_TRUE(store.verify(cert_of(p.ids.get()), chain, error)) << error;
    std::mt19937 rng(5280);
    int decoded = 0;
    for (int i = 0; i < 2000; ++i) {
        Bytes bad = der;
        for (int n = 1 + int(rng() % 4); n > 0; --n) bad[rng() % bad.size()] ^= uint8_t(1 + rng() % 255);
        auto c = Certificate::from_der(bad);
        if (!c) continue;
        ++decoded;
        c->subject();
        c->public_key_sha1();
        c->matches(id(IdType::fqdn, "gw.example.org"));
        c->matches({IdType::der_asn1_dn, c->subject_der()});
        EXPECT_FALSE(store.verify(*c, chain, error)) << "mutation " << i;   // the signature no longer holds
    }
    EXPECT_GT(decoded, 0);
    EXPECT_EQ(ERR_peek_error(), 0u);
}

// --- RSASSA-PSS (verify only; we sign PKCS#1 v1.5) -------------------------------------------

// AlgorithmIdentifier for id-RSASSA-PSS (RFC 4055 §3.1) with the given fields;
// a null `hash` or `mgf_hash` leaves that field out (its default is SHA-1).
Bytes pss_alg(const EVP_MD* hash, const EVP_MD* mgf_hash, int salt)
{
    auto hash_alg = [](const EVP_MD* md) {
        X509_ALGOR* a = X509_ALGOR_new();
        X509_ALGOR_set0(a, OBJ_nid2obj(EVP_MD_get_type(md)), V_ASN1_NULL, nullptr);
        return a;
    };
    RSA_PSS_PARAMS* params = RSA_PSS_PARAMS_new();
    if (hash) params->hashAlgorithm = hash_alg(hash);
    if (mgf_hash) {
        AlgorPtr inner(hash_alg(mgf_hash));
        unsigned char* der = nullptr;
        int len = i2d_X509_ALGOR(inner.get(), &der);
        ASN1_STRING* seq = ASN1_STRING_new();
        ASN1_STRING_set(seq, der, len);
        OPENSSL_free(der);
        params->maskGenAlgorithm = X509_ALGOR_new();
        X509_ALGOR_set0(params->maskGenAlgorithm, OBJ_nid2obj(NID_mgf1), V_ASN1_SEQUENCE, seq);
    }
    params->saltLength = ASN1_INTEGER_new();
    ASN1_INTEGER_set(params->saltLength, salt);
    unsigned char* der = nullptr;
    int len = i2d_RSA_PSS_PARAMS(params, &der);
    RSA_PSS_PARAMS_free(params);
    ASN1_STRING* seq = ASN1_STRING_new();
    ASN1_STRING_set(seq, der, len);
    OPENSSL_free(der);
    AlgorPtr alg(X509_ALGOR_new());
    X509_ALGOR_set0(alg.get(), OBJ_nid2obj(NID_rsassaPss), V_ASN1_SEQUENCE, seq);
    der = nullptr;
    len = i2d_X509_ALGOR(alg.get(), &der);
    Bytes out(der, der + len);
    OPENSSL_free(der);
    return out;
}

Bytes pss_sign(EVP_PKEY* k, const EVP_MD* md, int salt, const Bytes& msg)
{
    MdCtxPtr ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;
    std::size_t len = 1024;
    Bytes sig(len);
    if (EVP_DigestSignInit(ctx.get(), &pctx, md, nullptr, k) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) <= 0 || EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, salt) <= 0 ||
        EVP_DigestSign(ctx.get(), sig.data(), &len, msg.data(), msg.size()) != 1)
        throw std::runtime_error("PSS signing failed");
    sig.resize(len);
    return sig;
}

TEST(IkeVerify, AcceptsRsassaPssWithItsParameters)
{
    const auto& p = pki();
    Bytes msg = octets();
    EVP_PKEY* k = p.leaf_keys.at("rsa2048").get();
    Certificate rsa = cert_of(p.leaves.at("rsa2048").get());
    auto auth = [](const Bytes& alg, const Bytes& sig) {
        return AuthPayload{AuthMethod::digital_signature, auth_data(alg, sig)};
    };
    Bytes s256 = pss_sign(k, EVP_sha256(), 32, msg);
    Bytes s384 = pss_sign(k, EVP_sha384(), 48, msg);
    Bytes s512_0 = pss_sign(k, EVP_sha512(), 0, msg);
    EXPECT_TRUE(verify_auth(rsa, auth(pss_alg(EVP_sha256(), EVP_sha256(), 32), s256), msg));
    EXPECT_TRUE(verify_auth(rsa, auth(pss_alg(EVP_sha384(), EVP_sha384(), 48), s384), msg));
    EXPECT_TRUE(verify_auth(rsa, auth(pss_alg(EVP_sha512(), EVP_sha512(), 0), s512_0), msg));

    EXPECT_FALSE(verify_auth(rsa, auth(pss_alg(EVP_sha256(), EVP_sha256(), 20), s256), msg));   // salt
    EXPECT_FALSE(verify_auth(rsa, auth(pss_alg(EVP_sha384(), EVP_sha384(), 32), s256), msg));   // hash
    EXPECT_FALSE(verify_auth(rsa, auth(pss_alg(EVP_sha256(), EVP_sha384(), 32), s256), msg));   // MGF1 hash
    EXPECT_FALSE(verify_auth(rsa, auth(pss_alg(nullptr, EVP_sha256(), 32), s256), msg));        // SHA-1 default
    EXPECT_FALSE(verify_auth(rsa, auth(pss_alg(EVP_sha256(), nullptr, 32), s256), msg));        // MGF1-SHA-1 default
    EXPECT_FALSE(verify_auth(rsa, auth(pss_alg(EVP_sha256(), EVP_sha256(), 100000), s256), msg));
    Bytes no_params = pss_alg(EVP_sha256(), EVP_sha256(), 32);       // id-RSASSA-PSS alone
    no_params.resize(2 + 11);
    no_params[1] = 11;
    EXPECT_FALSE(verify_auth(rsa, auth(no_params, s256), msg));
    // A PKCS#1 v1.5 signature presented as PSS.
    auto v15 = p.private_key("rsa2048").sign(msg, std::vector<uint16_t>{2}).value();
    EXPECT_FALSE(verify_auth(rsa, with_alg(v15, pss_alg(EVP_sha256(), EVP_sha256(), 32)), msg));
    // PSS on a non-RSA key.
    Certificate ec = cert_of(p.leaves.at("p256").get());
    EXPECT_FALSE(verify_auth(ec, auth(pss_alg(EVP_sha256(), EVP_sha256(), 32), s256), msg));
    EXPECT_EQ(ERR_peek_error(), 0u);
}

// --- chains ----------------------------------------------------------------------------------

TEST(IkeTrust, VerifiesThroughIntermediate)
{
    const auto& p = pki();
    TrustStore store = p.store_with_root();
    std::vector<Certificate> chain;
    chain.push_back(cert_of(p.inter.get()));
    std::string error;
    for (const auto& kind : key_kinds)
        EXPECT_TRUE(store.verify(cert_of(p.leaves.at(kind).get()), chain, error)) << kind << ": " << error;
    EXPECT_TRUE(store.verify(cert_of(p.ids.get()), chain, error)) << error;
}

TEST(IkeTrust, RejectsBrokenChains)
{
    const auto& p = pki();
    TrustStore store = p.store_with_root();
    std::vector<Certificate> chain;
    chain.push_back(cert_of(p.inter.get()));
    std::string error;

    EXPECT_FALSE(store.verify(cert_of(p.good.get()), {}, error));     // intermediate missing
    EXPECT_NE(error.find("unable to get local issuer certificate"), std::string::npos) << error;

    error.clear();
    std::vector<Certificate> other_chain;
    other_chain.push_back(cert_of(p.other_root.get()));
    EXPECT_FALSE(store.verify(cert_of(p.other_leaf.get()), other_chain, error));   // untrusted root
    EXPECT_FALSE(error.empty());
    error.clear();
    EXPECT_FALSE(store.verify(cert_of(p.other_leaf.get()), {}, error));
    EXPECT_FALSE(error.empty());

    error.clear();
    EXPECT_FALSE(store.verify(cert_of(p.expired.get()), chain, error));
    EXPECT_NE(error.find("certificate has expired"), std::string::npos) << error;
    EXPECT_NE(error.find("depth 0"), std::string::npos) << error;
    EXPECT_NE(error.find("CN=expired.example.org"), std::string::npos) << error;

    std::vector<Certificate> too_many;
    for (int i = 0; i < 17; ++i) too_many.push_back(cert_of(p.inter.get()));
    EXPECT_FALSE(store.verify(cert_of(p.good.get()), too_many, error));
    EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(IkeTrust, AnyConfiguredCaIsAnAnchor)
{
    const auto& p = pki();
    TrustStore store;
    ASSERT_TRUE(store.add_ca(cert_of(p.inter.get())));
    std::string error;
    EXPECT_TRUE(store.verify(cert_of(p.good.get()), {}, error)) << error;

    TrustStore ed_store;        // an Ed25519-signed chain
    ASSERT_TRUE(ed_store.add_ca(cert_of(p.other_root.get())));
    EXPECT_TRUE(ed_store.verify(cert_of(p.other_leaf.get()), {}, error)) << error;
}

TEST(IkeTrust, CaKeyHashesAndNonCas)
{
    const auto& p = pki();
    TrustStore store;
    EXPECT_TRUE(store.ca_key_hashes().empty());
    Certificate root = cert_of(p.root.get());
    Certificate inter = cert_of(p.inter.get());
    ASSERT_TRUE(store.add_ca(root));
    ASSERT_TRUE(store.add_ca(inter));
    ASSERT_TRUE(store.add_ca(root));                  // again: no duplicate hash
    EXPECT_FALSE(store.add_ca(cert_of(p.good.get())));  // CA:FALSE
    EXPECT_EQ(store.ca_key_hashes(), (std::vector<Bytes>{root.public_key_sha1(), inter.public_key_sha1()}));
}

TEST(IkeTrust, CrlRevokesAndOnlyWhereLoaded)
{
    const auto& p = pki();
    std::vector<Certificate> chain;
    chain.push_back(cert_of(p.inter.get()));
    std::string error;
    {
        // No CRL loaded: revocation is not checked at all.
        TrustStore store = p.store_with_root();
        EXPECT_TRUE(store.verify(cert_of(p.revoked.get()), chain, error)) << error;
    }
    for (const std::string& crl : {p.crl_pem, p.crl_der}) {
        TrustStore store = p.store_with_root();
        ASSERT_TRUE(store.add_crl_file(crl, error)) << error;
        // The root has no CRL: the intermediate is accepted unchecked.
        EXPECT_TRUE(store.verify(cert_of(p.good.get()), chain, error)) << crl << ": " << error;
        error.clear();
        EXPECT_FALSE(store.verify(cert_of(p.revoked.get()), chain, error)) << crl;
        EXPECT_NE(error.find("certificate revoked"), std::string::npos) << error;
    }
    // A CRL naming the intermediate but signed by another key, or one past
    // its nextUpdate, fails closed.
    for (const auto& [crl, why] : {std::pair{p.bad_crl, "CRL signature failure"},
                                    std::pair{p.stale_crl, "CRL has expired"}}) {
        TrustStore store = p.store_with_root();
        ASSERT_TRUE(store.add_crl_file(crl, error)) << error;
        error.clear();
        EXPECT_FALSE(store.verify(cert_of(p.good.get()), chain, error)) << crl;
        EXPECT_NE(error.find(why), std::string::npos) << error;
    }
    TrustStore store;
    EXPECT_FALSE(store.add_crl_file(p.dir.file("missing.crl"), error));
    write_file(p.dir.file("not-a-crl.pem"), pem_of(p.root.get()));
    error.clear();
    EXPECT_FALSE(store.add_crl_file(p.dir.file("not-a-crl.pem"), error));
    EXPECT_FALSE(error.empty());
    EXPECT_EQ(ERR_peek_error(), 0u);
}

// --- interoperability with strongSwan's pki ---------------------------------------------------

std::string find_in_path(const std::string& name)
{
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    for (std::size_t start = 0; start <= dirs.size();) {
        std::size_t end = dirs.find(':', start);
        if (end == std::string::npos) end = dirs.size();
        fs::path candidate = fs::path(dirs.substr(start, end - start)) / name;
        if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
        start = end + 1;
    }
    return {};
}

// Runs `command` in `dir`, stdout to `out_file`; true on exit status 0.
bool run_in(const TempDir& dir, const std::string& command, const std::string& out_file)
{
    std::string full = "cd '" + dir.path.string() + "' && " + command + " > '" + out_file + "' 2>>pki.log";
    int status = std::system(full.c_str());
    return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string read_text(const std::string& path)
{
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(IkeCertInterop, StrongswanPkiCertificatesAndKeys)
{
    std::string pki_tool = find_in_path("pki");
    ASSERT_FALSE(pki_tool.empty())
        << "strongSwan's `pki` tool is not installed (apt-get install strongswan-pki); "
           "this interoperability test needs it and does not skip";
    TempDir dir;
    const std::string pki = "'" + pki_tool + "'";
    auto step = [&](const std::string& command, const std::string& out) {
        bool ok = run_in(dir, pki + " " + command, out);
        EXPECT_TRUE(ok) << "pki " << command << "\n" << read_text(dir.file("pki.log"));
        return ok;
    };
    const std::string dn = "\"C=CH, O=Ravelin Interop, CN=";
    ASSERT_TRUE(step("--gen --type ecdsa --size 384 --outform pem", "ca.key"));
    ASSERT_TRUE(step("--self --ca --lifetime 30 --in ca.key --dn " + dn + "pki CA\" --outform pem", "ca.crt"));
    ASSERT_TRUE(step("--gen --type rsa --size 2048 --outform pem", "gw.key"));
    ASSERT_TRUE(step("--issue --cacert ca.crt --cakey ca.key --type priv --in gw.key --lifetime 30 --dn " + dn +
                     "gw.pki.example.org\" --san gw.pki.example.org --san 198.18.0.7 --san 2001:db8::7 "
                     "--san gw@pki.example.org --outform der", "gw.der"));
    ASSERT_TRUE(step("--gen --type ed25519 --outform der", "ed.key"));
    ASSERT_TRUE(step("--issue --cacert ca.crt --cakey ca.key --type priv --in ed.key --lifetime 30 --dn " + dn +
                     "ed.pki.example.org\" --san ed.pki.example.org --outform pem", "ed.crt"));
    ASSERT_TRUE(step("--keyid --in ca.crt --type x509 --id spki --format hex", "ca.keyid"));

    std::string error;
    auto ca = Certificate::load(dir.file("ca.crt"), error);
    ASSERT_TRUE(ca) << error;
    auto gw = Certificate::load(dir.file("gw.der"), error);
    ASSERT_TRUE(gw) << error;
    auto ed = Certificate::load(dir.file("ed.crt"), error);
    ASSERT_TRUE(ed) << error;

    // CERTREQ hash: pki's "keyid (SHA-1 of subjectPublicKeyInfo)".
    std::string keyid = read_text(dir.file("ca.keyid"));
    std::string ours;
    for (uint8_t b : ca->public_key_sha1()) ours += "0123456789abcdef"[b >> 4], ours += "0123456789abcdef"[b & 15];
    EXPECT_EQ(keyid.substr(0, 40), ours);

    TrustStore store;
    ASSERT_TRUE(store.add_ca(*ca));
    EXPECT_TRUE(store.verify(*gw, {}, error)) << error;
    EXPECT_TRUE(store.verify(*ed, {}, error)) << error;

    EXPECT_TRUE(gw->matches(id(IdType::fqdn, "gw.pki.example.org")));
    EXPECT_TRUE(gw->matches(id(IdType::ipv4, {198, 18, 0, 7})));
    EXPECT_TRUE(gw->matches(id(IdType::ipv6, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7})));
    EXPECT_TRUE(gw->matches(id(IdType::rfc822, "gw@pki.example.org")));
    EXPECT_TRUE(gw->matches({IdType::der_asn1_dn, gw->subject_der()}));
    EXPECT_FALSE(gw->matches(id(IdType::fqdn, "ed.pki.example.org")));
    EXPECT_FALSE(gw->matches({IdType::der_asn1_dn, ed->subject_der()}));
    EXPECT_EQ(gw->subject(), "CN=gw.pki.example.org,O=Ravelin Interop,C=CH");

    // pki's keys (PKCS#1 PEM RSA, PKCS#8 DER Ed25519) sign for its certificates.
    Bytes msg = octets();
    auto gw_key = PrivateKey::load(dir.file("gw.key"), error);
    ASSERT_TRUE(gw_key) << error;
    for (std::vector<uint16_t> peer : {std::vector<uint16_t>{}, std::vector<uint16_t>{2, 3, 4, 5}}) {
        auto auth = gw_key->sign(msg, peer);
        ASSERT_TRUE(auth);
        EXPECT_TRUE(verify_auth(*gw, *auth, msg));
    }
    auto ed_key = PrivateKey::load(dir.file("ed.key"), error);
    ASSERT_TRUE(ed_key) << error;
    auto ed_auth = ed_key->sign(msg, std::vector<uint16_t>{2, 5});
    ASSERT_TRUE(ed_auth);
    EXPECT_TRUE(verify_auth(*ed, *ed_auth, msg));
    EXPECT_FALSE(verify_auth(*gw, *ed_auth, msg));

    // A CRL from pki revokes the Ed25519 certificate and leaves the other.
    ASSERT_TRUE(step("--signcrl --cacert ca.crt --cakey ca.key --reason key-compromise --cert ed.crt "
                     "--outform der", "ca.crl"));
    ASSERT_TRUE(store.add_crl_file(dir.file("ca.crl"), error)) << error;
    EXPECT_TRUE(store.verify(*gw, {}, error)) << error;
    EXPECT_FALSE(store.verify(*ed, {}, error));
    EXPECT_NE(error.find("certificate revoked"), std::string::npos) << error;
}

} // namespace
} // namespace ravelin::ike
