// X.509 for IKE_AUTH on OpenSSL 3: private keys and certificates from PEM or
// DER files, chain validation against configured CAs and CRLs, identity
// matching, and the AUTH payload's signatures — RFC 7427 digital signatures
// (RSA PKCS#1 v1.5 and RSASSA-PSS, ECDSA, Ed25519) and the classic methods
// (RSA = 1, ECDSA with SHA-256/384/512 on P-256/384/521 = 9/10/11, RFC 4754).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "message.hh"

namespace ravelin::ike {

// RFC 7427 hash algorithm ids (SIGNATURE_HASH_ALGORITHMS notify).
namespace sig_hash {
inline constexpr uint16_t sha1 = 1;
inline constexpr uint16_t sha2_256 = 2;
inline constexpr uint16_t sha2_384 = 3;
inline constexpr uint16_t sha2_512 = 4;
inline constexpr uint16_t identity = 5;     // Ed25519 (RFC 8420)
} // namespace sig_hash

class Certificate {
public:
    ~Certificate();
    Certificate(Certificate&&) noexcept;
    Certificate& operator=(Certificate&&) noexcept;

    static std::optional<Certificate> from_der(ByteView der);
    // PEM or DER; `error` says why not.
    static std::optional<Certificate> load(const std::string& path, std::string& error);

    const Bytes& der() const;
    std::string subject() const;            // RFC 2253 text, for logs
    Bytes subject_der() const;              // DER of the subject name (ID_DER_ASN1_DN)
    // SHA-1 of the subjectPublicKeyInfo: what CERTREQ payloads carry (RFC 7296 §3.7).
    Bytes public_key_sha1() const;

    // Does the IKE identity name this certificate: IPv4/IPv6/FQDN/RFC822
    // against subjectAltName entries (and the subject's CN/email when there
    // are none), DER_ASN1_DN against the subject (byte-exact after DER).
    bool matches(const IdPayload& id) const;

    void* native() const { return x509_; }  // X509*

private:
    explicit Certificate(void* x509) : x509_(x509) {}
    void* x509_ = nullptr;
    Bytes der_;                             // what der() returns, encoded once
};

class PrivateKey {
public:
    ~PrivateKey();
    PrivateKey(PrivateKey&&) noexcept;
    PrivateKey& operator=(PrivateKey&&) noexcept;
    // `passphrase` opens an encrypted PEM key (secrets.private-* secret);
    // without one, encrypted keys are refused with a clear error.
    static std::optional<PrivateKey> load(const std::string& path, std::string& error,
                                          ByteView passphrase = {});

    // The AUTH method and data for `signed_octets`, choosing RFC 7427 with
    // the strongest hash both sides support (`peer_hashes` from the peer's
    // SIGNATURE_HASH_ALGORITHMS; empty = peer did not send one, use the
    // classic method for the key type).
    std::optional<AuthPayload> sign(ByteView signed_octets,
                                    std::span<const uint16_t> peer_hashes) const;

    void* native() const { return pkey_; }  // EVP_PKEY*

private:
    explicit PrivateKey(void* pkey) : pkey_(pkey) {}
    void* pkey_ = nullptr;
};

// Verify an AUTH payload made with `cert`'s key over `signed_octets`.
bool verify_auth(const Certificate& cert, const AuthPayload& auth, ByteView signed_octets);

// Hash algorithms we accept (and announce) for RFC 7427.
std::span<const uint16_t> supported_signature_hashes();

// Trust anchors, intermediates and CRLs.
class TrustStore {
public:
    TrustStore();
    ~TrustStore();
    TrustStore(TrustStore&&) noexcept;
    TrustStore& operator=(TrustStore&&) noexcept;
    bool add_ca(const Certificate& ca);
    bool add_crl_file(const std::string& path, std::string& error);
    // SHA-1 key hashes of the CAs, for CERTREQ.
    std::vector<Bytes> ca_key_hashes() const;

    // Validates `end_entity` up to a configured CA, using `intermediates`
    // from the peer's CERT payloads; checks validity periods and, when a CRL
    // for the issuer is loaded, revocation. `error` says why not.
    bool verify(const Certificate& end_entity, const std::vector<Certificate>& intermediates,
                std::string& error) const;

private:
    void* store_ = nullptr;                 // X509_STORE*
    std::vector<Bytes> ca_hashes_;
};

} // namespace ravelin::ike
