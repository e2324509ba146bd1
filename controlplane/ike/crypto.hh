// IKE cryptography on OpenSSL 3: PRFs and prf+, Diffie-Hellman with peer
// public-value validation, the SK payload's encryption and integrity, key
// derivation (RFC 7296 §2.13, §2.14, §2.17, §2.18) and hashes.
//
// Algorithm ids are IKEv2 transform ids (IANA "Transform Type Values").
// Nothing here throws; failures come back as std::nullopt / nullptr.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace ravelin::ike {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

// Transform ids.
namespace encr {
inline constexpr uint16_t des3 = 3;
inline constexpr uint16_t null_ = 11;
inline constexpr uint16_t aes_cbc = 12;
inline constexpr uint16_t aes_gcm_16 = 20;
inline constexpr uint16_t null_aes_gmac = 21;
inline constexpr uint16_t chacha20_poly1305 = 28;
} // namespace encr
namespace prf {
inline constexpr uint16_t hmac_sha1 = 2;
inline constexpr uint16_t hmac_sha2_256 = 5;
inline constexpr uint16_t hmac_sha2_384 = 6;
inline constexpr uint16_t hmac_sha2_512 = 7;
} // namespace prf
namespace integ {
inline constexpr uint16_t none = 0;
inline constexpr uint16_t hmac_sha1_96 = 2;
inline constexpr uint16_t hmac_sha2_256_128 = 12;
inline constexpr uint16_t hmac_sha2_384_192 = 13;
inline constexpr uint16_t hmac_sha2_512_256 = 14;
} // namespace integ
namespace dh {
inline constexpr uint16_t modp1024 = 2;
inline constexpr uint16_t modp2048 = 14;
inline constexpr uint16_t modp3072 = 15;
inline constexpr uint16_t modp4096 = 16;
inline constexpr uint16_t ecp256 = 19;
inline constexpr uint16_t ecp384 = 20;
inline constexpr uint16_t ecp521 = 21;
inline constexpr uint16_t curve25519 = 31;
} // namespace dh

bool is_aead(uint16_t encr_id);
// Key bytes the keying material holds for a cipher: AES key (+ 4-byte salt
// for GCM/GMAC in ESP and IKE), ChaCha20 key + 4-byte salt. 0 if unknown.
std::size_t encr_keymat_len(uint16_t encr_id, uint16_t key_bits);
std::size_t integ_key_len(uint16_t integ_id);   // HMAC key = full hash output
std::size_t integ_icv_len(uint16_t integ_id);   // truncated output
std::size_t prf_output_len(uint16_t prf_id);    // also its preferred key length
bool dh_supported(uint16_t group);

// Human names in strongSwan's spelling, as swanctl --list-sas --raw prints
// encr-alg=, prf-alg=, dh-group=: encr_name(20) is "AES_GCM_16"; the key size
// is the caller's to add ("AES_GCM_16-256" in swanctl --list-sas,
// "AES_GCM_16_256" in strongSwan's proposal strings). "UNKNOWN" otherwise.
std::string_view encr_name(uint16_t id);
std::string_view prf_name(uint16_t id);
std::string_view integ_name(uint16_t id);
std::string_view dh_name(uint16_t id);

// Cryptographic random bytes (RAND_bytes).
void random_bytes(std::span<uint8_t> out);

// --- PRF -------------------------------------------------------------------

Bytes prf_compute(uint16_t prf_id, ByteView key, ByteView data);
// prf+ (RFC 7296 §2.13): T1 | T2 | ..., at most 255 blocks; empty if `len` is too long.
Bytes prf_plus(uint16_t prf_id, ByteView key, ByteView seed, std::size_t len);

Bytes sha1(ByteView data);
Bytes sha256(ByteView data);

// --- Diffie-Hellman ----------------------------------------------------------

class DhKey {
public:
    virtual ~DhKey() = default;
    uint16_t group() const { return group_; }
    // Our public value in IKE's KE payload encoding (RFC 7296 §3.4, RFC 5903:
    // x || y for ECP, RFC 8031 for Curve25519, zero-padded to the prime's
    // length for MODP).
    virtual const Bytes& public_value() const = 0;
    // The shared secret g^ir, or nullopt when the peer's value is invalid:
    // wrong length, 1 / 0 / p-1 for MODP, not on the curve for ECP, an
    // all-zero result for Curve25519 (RFC 8031 §2).
    virtual std::optional<Bytes> shared_secret(ByteView peer_public) const = 0;

    // A new key pair. `private_seed`, when not empty, makes it deterministic
    // for tests: the private key is derived from these bytes (reduced as the
    // group needs); empty means fresh random.
    static std::unique_ptr<DhKey> create(uint16_t group, ByteView private_seed = {});

protected:
    explicit DhKey(uint16_t group) : group_(group) {}

private:
    uint16_t group_;
};

// --- the SK payload ------------------------------------------------------------

// Encrypts and authenticates SK/SKF bodies for one direction of an IKE SA.
// `prefix` is everything in the message before the body (IKE header and the
// SK or SKF payload header): the AAD for AEAD ciphers (RFC 5282 §5.1), the
// first part of the ICV input for the others (RFC 7296 §3.14).
class SkCipher {
public:
    virtual ~SkCipher() = default;

    // The body length seal() will produce for this much plaintext
    // (IV + padded ciphertext with the Pad Length byte + ICV).
    virtual std::size_t sealed_len(std::size_t plaintext_len) const = 0;
    // Plaintext bytes that fit in a body of at most `body_len` (for fragments).
    virtual std::size_t max_plaintext(std::size_t body_len) const = 0;

    // IV || ciphertext || ICV, with padding and the Pad Length byte added.
    // The IV comes from random_bytes (CBC) or a counter (AEAD; never repeats
    // for one key).
    virtual Bytes seal(ByteView prefix, ByteView plaintext) = 0;
    // Plaintext without padding, or nullopt if the ICV does not verify or
    // the padding is inconsistent.
    virtual std::optional<Bytes> open(ByteView prefix, ByteView body) const = 0;

    // `encr_key` is SK_e (with salt for AEAD), `integ_key` SK_a (empty for AEAD).
    static std::unique_ptr<SkCipher> create(uint16_t encr_id, uint16_t key_bits,
                                            uint16_t integ_id, ByteView encr_key,
                                            ByteView integ_key);
};

// --- key derivation ------------------------------------------------------------

struct IkeKeys {
    Bytes sk_d, sk_ai, sk_ar, sk_ei, sk_er, sk_pi, sk_pr;
    void wipe();
};

struct IkeSuite {
    uint16_t encr = 0;
    uint16_t encr_key_bits = 0;
    uint16_t prf = 0;
    uint16_t integ = 0;             // integ::none with AEAD
    uint16_t dh = 0;
};

// IKE_SA_INIT: SKEYSEED = prf(Ni | Nr, g^ir), then prf+ (RFC 7296 §2.14).
// For PRFs with fixed-size keys (none among ours) the nonce halves would be
// used; HMAC takes any length.
IkeKeys derive_ike_keys(const IkeSuite& suite, ByteView ni, ByteView nr,
                        ByteView shared, uint64_t spi_i, uint64_t spi_r);

// IKE SA rekey: SKEYSEED = prf(SK_d(old), g^ir(new) | Ni | Nr) (RFC 7296 §2.18),
// with the old SA's PRF; the new SA's suite sizes the keys.
IkeKeys derive_rekeyed_ike_keys(uint16_t old_prf, ByteView old_sk_d,
                                const IkeSuite& suite, ByteView ni, ByteView nr,
                                ByteView shared, uint64_t spi_i, uint64_t spi_r);

// Child SA keying material: KEYMAT = prf+(SK_d, [g^ir (new)] | Ni | Nr)
// (RFC 7296 §2.17). Taken in the order: encr(i->r), integ(i->r), encr(r->i),
// integ(r->i).
struct ChildKeys {
    Bytes encr_i, integ_i;          // initiator -> responder
    Bytes encr_r, integ_r;          // responder -> initiator
    void wipe();
};

ChildKeys derive_child_keys(uint16_t prf_id, ByteView sk_d, ByteView shared_or_empty,
                            ByteView ni, ByteView nr, uint16_t encr_id,
                            uint16_t encr_key_bits, uint16_t integ_id);

// Wipe with OPENSSL_cleanse.
void wipe(Bytes& b);

} // namespace ravelin::ike
