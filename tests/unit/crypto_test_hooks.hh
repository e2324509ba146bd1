// Test-only entry points into dataplane/crypto.cc.
//
// They run the same IPsec-MB primitives and key schedules as the ESP
// transforms, but on caller-chosen nonces, AAD and IVs, so published vectors
// (Wycheproof, RFC 3602) that do not come as "our" ESP packets can still be
// checked. The data plane never calls them; only the unit tests include this.
#pragma once

#include <cstdint>

#include "crypto.hh"

namespace ravelin::dp::test_hooks {

// AES-GCM or ChaCha20-Poly1305 with a 12-octet nonce and a 16-octet tag.
// aead_decrypt returns whether the tag verified.
bool aead_encrypt(IMB_MGR* m, const EspTransform& t, const SaKeys& k, const uint8_t* nonce, const uint8_t* aad,
                  uint32_t aad_len, const uint8_t* in, uint8_t* out, uint32_t len, uint8_t* tag) noexcept;
bool aead_decrypt(IMB_MGR* m, const EspTransform& t, const SaKeys& k, const uint8_t* nonce, const uint8_t* aad,
                  uint32_t aad_len, const uint8_t* in, uint8_t* out, uint32_t len, const uint8_t* tag) noexcept;

// AES-GMAC tag (16 octets) of `msg` with a 12-octet nonce.
bool gmac(IMB_MGR* m, const EspTransform& t, const SaKeys& k, const uint8_t* nonce, const uint8_t* msg,
          uint32_t len, uint8_t* tag) noexcept;

// The CBC (AES or 3DES) cipher alone, in place, with an explicit IV.
bool cbc_cipher(IMB_MGR* m, const EspTransform& t, const SaKeys& k, const uint8_t* iv, uint8_t* data,
                uint32_t len, bool encrypt) noexcept;

// seal() of a CBC transform with the IV given instead of derived.
bool seal_with_iv(IMB_MGR* m, const EspTransform& t, const SaKeys& k, uint8_t* esp, uint32_t len,
                  uint32_t esn_hi, const uint8_t* iv) noexcept;

} // namespace ravelin::dp::test_hooks
