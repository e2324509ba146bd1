// ESP cryptographic transforms on top of the Intel IPsec-MB API.
//
// One EspTransform per algorithm is chosen when an SA is installed (never per
// packet). Both functions work in place on a contiguous ESP packet:
//
//    esp                                                    esp + len
//    |  SPI  |  Seq  |  IV  | payload ... | pad | pl | nh |   ICV   |
//    <------------------- len --------------------------->
//
// seal() fills the IV slot itself (from the sequence number, or an
// unpredictable value for CBC), encrypts from the payload to the end of the
// trailer, and writes the ICV after it. open() verifies the ICV and, only if
// it is right, decrypts in place. `esn_hi` is the high 32 bits of the
// sequence number when the SA uses ESN (authenticated but not sent, RFC 4303
// §2.2.1, RFC 4106 §5), else ignored.
#pragma once

#include <cstdint>

#include <intel-ipsec-mb.h>

#include "ravelin/algorithms.hh"
#include "ravelin/sa_descriptor.hh"

namespace ravelin::dp {

// Expanded key material for one SA, computed once at install. Cache-aligned
// because IPsec-MB's GCM key data wants 64-byte alignment.
struct alignas(64) SaKeys {
    // AES-GCM / GMAC: round keys and GHASH tables.
    struct gcm_key_data gcm;
    // AES-CBC / 3DES: expanded encryption and decryption keys; CBC also
    // needs a key for making unpredictable IVs.
    alignas(16) uint32_t enc_keys[60];
    alignas(16) uint32_t dec_keys[60];
    alignas(16) uint32_t iv_keys[60];
    // 3DES key schedule pointers point into des_ks.
    uint64_t des_ks[3][16];
    const void* des_ptrs[3];
    // HMAC: the hash state after the ipad and the opad blocks.
    alignas(16) uint8_t ipad[64];
    alignas(16) uint8_t opad[64];
    // ChaCha20-Poly1305 raw key.
    alignas(16) uint8_t chacha_key[32];
};

struct EspTransform;

using SealFn = void (*)(IMB_MGR* mgr, const EspTransform& t, const SaKeys& k,
                        uint8_t* esp, uint32_t len, uint32_t esn_hi) noexcept;
using OpenFn = bool (*)(IMB_MGR* mgr, const EspTransform& t, const SaKeys& k,
                        uint8_t* esp, uint32_t len, uint32_t esn_hi) noexcept;

struct EspTransform {
    SealFn seal = nullptr;
    OpenFn open = nullptr;
    EspCipher cipher = EspCipher::aes_gcm16;
    EspInteg integ = EspInteg::none;
    uint8_t key_len = 0;   // cipher key bytes without salt
    uint8_t iv_len = 0;
    uint8_t icv_len = 0;
    uint8_t block_len = 4; // padding alignment of payload + trailer
    bool esn = false;
    // AEAD nonce salt (RFC 4106 §4, RFC 7634 §2): the last 4 octets of
    // the keying material. It lives here, in the SA's hot lines, rather
    // than after the key schedules: every packet reads it, and with many
    // tunnels a line of its own was one more cache miss per packet.
    // sa_free() wipes it with the keys.
    uint8_t salt[4] = {};
};

// AES-GCM-16's seal() and open() as make_transform() picks them (KeyBytes
// 16 or 32), for the ESP bodies specialised on AES-GCM at install
// (esp_out.cc, esp_in.cc), which call them directly instead of through the
// transform's pointers. Instantiated in crypto.cc.
template <unsigned KeyBytes, bool Esn>
void gcm_seal(IMB_MGR* mgr, const EspTransform& t, const SaKeys& k, uint8_t* esp, uint32_t len,
              uint32_t esn_hi) noexcept;
template <unsigned KeyBytes, bool Esn>
bool gcm_open(IMB_MGR* mgr, const EspTransform& t, const SaKeys& k, uint8_t* esp, uint32_t len,
              uint32_t esn_hi) noexcept;

// Pick the transform for an SA and expand its keys. Returns false for a
// combination IPsec-MB cannot do (the config loader rejects those earlier).
bool make_transform(IMB_MGR* mgr, const SaDescriptor& sa, EspTransform& t, SaKeys& keys) noexcept;

// Per-thread IPsec-MB manager: allocated and initialised with the best
// architecture (AVX-512 here) once per worker.
IMB_MGR* crypto_manager_create() noexcept;
void crypto_manager_free(IMB_MGR* mgr) noexcept;

} // namespace ravelin::dp
