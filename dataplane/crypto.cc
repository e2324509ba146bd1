// ESP transforms on Intel IPsec-MB.
//
// Flow: make_transform() runs once per SA at install. It expands the keys
// into SaKeys and picks one seal/open pair, a template instance specialised
// on algorithm × key size × ESN, so the per-packet functions have no
// branches on things known at install. Per packet:
//
//   AES-GCM     direct API (IMB_AES{128,256}_GCM_ENC/DEC), stack context
//   AES-GMAC    direct GMAC API: AAD is the whole ESP packet, nothing encrypted
//   ChaCha20    direct init/update/finalize API
//   CBC / 3DES / NULL + HMAC   one chained job (cipher then hash on seal,
//               hash then cipher on open), submitted and flushed at once
//
// open() compares the ICV in constant time. The AEAD and chained-job paths
// decrypt in place while they authenticate; when the ICV is wrong the
// decrypted bytes are wiped before returning, so no plaintext of a forged
// packet survives in the buffer (the caller drops it anyway).
#include "crypto.hh"

#include <cstring>

#include <emmintrin.h>
#include <openssl/rand.h>
#include <rte_branch_prediction.h>

#include "byteorder.hh"

namespace ravelin::dp {
namespace {

constexpr uint32_t esp_hdr_len = 8;   // SPI + sequence number
constexpr uint32_t aead_iv_len = 8;
constexpr uint32_t aead_tag_len = 16;

// Constant-time equality: the time taken does not depend on where the
// first difference is, so a forger learns nothing from timing.
inline bool ct_equal(const uint8_t* a, const uint8_t* b, unsigned n) noexcept
{
    uint8_t d = 0;
    for (unsigned i = 0; i < n; ++i) d |= uint8_t(a[i] ^ b[i]);
    return d == 0;
}

inline bool ct_equal16(const uint8_t* a, const uint8_t* b) noexcept
{
    uint64_t a0, a1, b0, b1;
    std::memcpy(&a0, a, 8);
    std::memcpy(&a1, a + 8, 8);
    std::memcpy(&b0, b, 8);
    std::memcpy(&b1, b + 8, 8);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
}

// Forged packet: do not leave its decryption behind.
[[gnu::cold]] void wipe(uint8_t* p, uint32_t n) noexcept { secure_wipe(p, n); }

// ---------------------------------------------------------------------------
// AEAD layout (RFC 4106 §3-5, RFC 4543 §3, RFC 7634 §2-3)
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |               Security Parameter Index (SPI)                  |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                    Sequence Number (low 32)                   |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                 Initialization Vector (8 octets)              |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   ~          Payload, Padding, Pad Length, Next Header            ~
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                 ICV (16 octets)                               |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//   nonce = salt (4, from the keying material) || IV (8)
//   AAD   = SPI || Seq              (8 octets)
//         = SPI || Seq hi || Seq lo (12 octets, ESN)
// ---------------------------------------------------------------------------

// The IV only has to be unique per key (RFC 4106 §3.1), and the 64-bit
// sequence number is, so it costs nothing to make. Without ESN the high half
// is 0; with ESN it is `esn_hi`.
template <bool Esn>
inline void write_seq_iv(uint8_t* esp, uint32_t esn_hi) noexcept
{
    store_be32(esp + 8, Esn ? esn_hi : 0);
    std::memcpy(esp + 12, esp + 4, 4);
}

inline void make_nonce(const EspTransform& t, const uint8_t* iv, uint8_t* nonce) noexcept
{
    std::memcpy(nonce, t.salt, 4);
    std::memcpy(nonce + 4, iv, 8);
}

// Without ESN the AAD is the ESP header itself; with ESN it is built on the
// stack because seq_hi is not on the wire.
template <bool Esn>
inline const uint8_t* make_aad(const uint8_t* esp, uint32_t esn_hi, uint8_t* buf) noexcept
{
    if constexpr (!Esn) {
        return esp;
    } else {
        std::memcpy(buf, esp, 4);
        store_be32(buf + 4, esn_hi);
        std::memcpy(buf + 8, esp + 4, 4);
        return buf;
    }
}

// The GCM fast path builds the nonce and the AAD in registers and writes
// each with one 16-octet store. IPsec-MB reads them with wide loads right
// away; a load that spans several smaller stores still in the store
// buffer cannot be forwarded and stalls until they reach the cache, on the
// critical path of a short packet. For the same reason seal() writes the
// IV with one 8-octet store and reads nothing back that it has just
// written in pieces.
inline void store16(uint8_t* p, uint64_t lo, uint64_t hi) noexcept
{
    _mm_store_si128(reinterpret_cast<__m128i*>(p), _mm_set_epi64x(int64_t(hi), int64_t(lo)));
}

// nonce = salt || IV; `iv` is the IV's 8 octets as a little-endian load
// of them would give.
inline void make_nonce16(const EspTransform& t, uint64_t iv, uint8_t* nonce) noexcept
{
    uint32_t salt;
    std::memcpy(&salt, t.salt, 4);
    store16(nonce, salt | iv << 32, iv >> 32);
}

// AAD = SPI || [seq hi] || seq lo, from the header words as on the wire.
template <bool Esn>
inline void make_aad16(uint32_t spi_wire, uint32_t seq_lo_wire, uint32_t esn_hi, uint8_t* aad) noexcept
{
    if constexpr (Esn)
        store16(aad, spi_wire | uint64_t(net32(esn_hi)) << 32, seq_lo_wire);
    else
        store16(aad, spi_wire | uint64_t(seq_lo_wire) << 32, 0);
}

template <bool Esn>
constexpr uint32_t aad_len = Esn ? 12 : 8;

// The key size picks the IPsec-MB entry points at compile time.
template <unsigned KeyBytes>
struct Gcm {
    static void enc(IMB_MGR* m, const SaKeys& k, const uint8_t* nonce, const uint8_t* aad, uint32_t aad_len,
                    const uint8_t* in, uint8_t* out, uint32_t len, uint8_t* tag) noexcept
    {
        struct gcm_context_data ctx;
        if constexpr (KeyBytes == 16)
            IMB_AES128_GCM_ENC(m, &k.gcm, &ctx, out, in, len, nonce, aad, aad_len, tag, aead_tag_len);
        else
            IMB_AES256_GCM_ENC(m, &k.gcm, &ctx, out, in, len, nonce, aad, aad_len, tag, aead_tag_len);
    }
    static void dec(IMB_MGR* m, const SaKeys& k, const uint8_t* nonce, const uint8_t* aad, uint32_t aad_len,
                    const uint8_t* in, uint8_t* out, uint32_t len, uint8_t* tag) noexcept
    {
        struct gcm_context_data ctx;
        if constexpr (KeyBytes == 16)
            IMB_AES128_GCM_DEC(m, &k.gcm, &ctx, out, in, len, nonce, aad, aad_len, tag, aead_tag_len);
        else
            IMB_AES256_GCM_DEC(m, &k.gcm, &ctx, out, in, len, nonce, aad, aad_len, tag, aead_tag_len);
    }
    // GMAC over a message given in one or two pieces; only the last piece
    // may end in a partial block (IPsec-MB's GMAC update rule).
    static void gmac(IMB_MGR* m, const SaKeys& k, const uint8_t* nonce, const uint8_t* a, uint32_t alen,
                     const uint8_t* b, uint32_t blen, uint8_t* tag) noexcept
    {
        struct gcm_context_data ctx;
        if constexpr (KeyBytes == 16) {
            IMB_AES128_GMAC_INIT(m, &k.gcm, &ctx, nonce, 12);
            if (alen) IMB_AES128_GMAC_UPDATE(m, &k.gcm, &ctx, a, alen);
            if (blen) IMB_AES128_GMAC_UPDATE(m, &k.gcm, &ctx, b, blen);
            IMB_AES128_GMAC_FINALIZE(m, &k.gcm, &ctx, tag, aead_tag_len);
        } else {
            IMB_AES256_GMAC_INIT(m, &k.gcm, &ctx, nonce, 12);
            if (alen) IMB_AES256_GMAC_UPDATE(m, &k.gcm, &ctx, a, alen);
            if (blen) IMB_AES256_GMAC_UPDATE(m, &k.gcm, &ctx, b, blen);
            IMB_AES256_GMAC_FINALIZE(m, &k.gcm, &ctx, tag, aead_tag_len);
        }
    }
};

} // namespace

// Declared in crypto.hh: the ESP bodies specialised on AES-GCM call these
// directly instead of through EspTransform.
template <unsigned KeyBytes, bool Esn>
void gcm_seal(IMB_MGR* m, const EspTransform& t, const SaKeys& k, uint8_t* esp, uint32_t len,
              uint32_t esn_hi) noexcept
{
    uint32_t spi_wire, seq_lo_wire;
    std::memcpy(&spi_wire, esp, 4);
    std::memcpy(&seq_lo_wire, esp + 4, 4);
    // IV = seq hi (0 without ESN) || seq lo, as the 64-bit sequence number
    // on the wire (see write_seq_iv).
    const uint64_t iv = uint64_t(net32(Esn ? esn_hi : 0)) | uint64_t(seq_lo_wire) << 32;
    std::memcpy(esp + esp_hdr_len, &iv, 8);
    alignas(16) uint8_t nonce[16];
    alignas(16) uint8_t aad[16];
    make_nonce16(t, iv, nonce);
    make_aad16<Esn>(spi_wire, seq_lo_wire, esn_hi, aad);
    uint8_t* data = esp + esp_hdr_len + aead_iv_len;
    Gcm<KeyBytes>::enc(m, k, nonce, aad, aad_len<Esn>, data, data, len - esp_hdr_len - aead_iv_len, esp + len);
}

template <unsigned KeyBytes, bool Esn>
bool gcm_open(IMB_MGR* m, const EspTransform& t, const SaKeys& k, uint8_t* esp, uint32_t len,
              uint32_t esn_hi) noexcept
{
    uint64_t iv;
    std::memcpy(&iv, esp + esp_hdr_len, 8);
    alignas(16) uint8_t nonce[16];
    alignas(16) uint8_t aad_buf[16];
    alignas(16) uint8_t tag[aead_tag_len];
    make_nonce16(t, iv, nonce);
    const uint8_t* aad = esp;   // without ESN: the received header as it lies
    if constexpr (Esn) {
        uint32_t spi_wire, seq_lo_wire;
        std::memcpy(&spi_wire, esp, 4);
        std::memcpy(&seq_lo_wire, esp + 4, 4);
        make_aad16<Esn>(spi_wire, seq_lo_wire, esn_hi, aad_buf);
        aad = aad_buf;
    }
    uint8_t* data = esp + esp_hdr_len + aead_iv_len;
    uint32_t dlen = len - esp_hdr_len - aead_iv_len;
    Gcm<KeyBytes>::dec(m, k, nonce, aad, aad_len<Esn>, data, data, dlen, tag);
    if (likely(ct_equal16(tag, esp + len))) return true;
    wipe(data, dlen);
    return false;
}

namespace {

// RFC 4543 §3.1: with ENCR_NULL_AUTH_AES_GMAC nothing is encrypted and the
// AAD is SPI || [seq hi] || seq lo || IV || payload || trailer. Without ESN
// that is the packet as it lies; with ESN the first 16 octets (SPI, seq hi,
// seq lo, IV[0..4)) are put together on the stack so that only the second
// GMAC update ends in a partial block.
template <unsigned KeyBytes, bool Esn>
void gmac_tag(IMB_MGR* m, const EspTransform& t, const SaKeys& k, const uint8_t* esp, uint32_t len, uint32_t esn_hi,
              uint8_t* tag) noexcept
{
    alignas(16) uint8_t nonce[16];
    make_nonce(t, esp + esp_hdr_len, nonce);
    if constexpr (!Esn) {
        Gcm<KeyBytes>::gmac(m, k, nonce, esp, len, nullptr, 0, tag);
    } else {
        alignas(16) uint8_t head[16];
        std::memcpy(head, esp, 4);
        store_be32(head + 4, esn_hi);
        std::memcpy(head + 8, esp + 4, 8);   // seq lo and the first half of the IV
        Gcm<KeyBytes>::gmac(m, k, nonce, head, 16, esp + 12, len - 12, tag);
    }
}

template <unsigned KeyBytes, bool Esn>
void gmac_seal(IMB_MGR* m, const EspTransform& t, const SaKeys& k, uint8_t* esp, uint32_t len,
               uint32_t esn_hi) noexcept
{
    write_seq_iv<Esn>(esp, esn_hi);
    gmac_tag<KeyBytes, Esn>(m, t, k, esp, len, esn_hi, esp + len);
}

template <unsigned KeyBytes, bool Esn>
bool gmac_open(IMB_MGR* m, const EspTransform& t, const SaKeys& k, uint8_t* esp, uint32_t len,
               uint32_t esn_hi) noexcept
{
    alignas(16) uint8_t tag[aead_tag_len];
    gmac_tag<KeyBytes, Esn>(m, t, k, esp, len, esn_hi, tag);
    return ct_equal16(tag, esp + len);
}

// ChaCha20-Poly1305 (RFC 7634): same nonce and AAD layout as GCM.
void chacha_enc(IMB_MGR* m, const SaKeys& k, const uint8_t* nonce, const uint8_t* aad, uint32_t aad_len,
                const uint8_t* in, uint8_t* out, uint32_t len, uint8_t* tag) noexcept
{
    struct chacha20_poly1305_context_data ctx;
    IMB_CHACHA20_POLY1305_INIT(m, k.chacha_key, &ctx, nonce, aad, aad_len);
    IMB_CHACHA20_POLY1305_ENC_UPDATE(m, k.chacha_key, &ctx, out, in, len);
    IMB_CHACHA20_POLY1305_ENC_FINALIZE(m, &ctx, tag, aead_tag_len);
}

void chacha_dec(IMB_MGR* m, const SaKeys& k, const uint8_t* nonce, const uint8_t* aad, uint32_t aad_len,
                const uint8_t* in, uint8_t* out, uint32_t len, uint8_t* tag) noexcept
{
    struct chacha20_poly1305_context_data ctx;
    IMB_CHACHA20_POLY1305_INIT(m, k.chacha_key, &ctx, nonce, aad, aad_len);
    IMB_CHACHA20_POLY1305_DEC_UPDATE(m, k.chacha_key, &ctx, out, in, len);
    IMB_CHACHA20_POLY1305_DEC_FINALIZE(m, &ctx, tag, aead_tag_len);
}

template <bool Esn>
void chacha_seal(IMB_MGR* m, const EspTransform& t, const SaKeys& k, uint8_t* esp, uint32_t len,
                 uint32_t esn_hi) noexcept
{
    write_seq_iv<Esn>(esp, esn_hi);
    alignas(16) uint8_t nonce[16];
    alignas(16) uint8_t aad_buf[16];
    make_nonce(t, esp + esp_hdr_len, nonce);
    const uint8_t* aad = make_aad<Esn>(esp, esn_hi, aad_buf);
    uint8_t* data = esp + esp_hdr_len + aead_iv_len;
    chacha_enc(m, k, nonce, aad, aad_len<Esn>, data, data, len - esp_hdr_len - aead_iv_len, esp + len);
}

template <bool Esn>
bool chacha_open(IMB_MGR* m, const EspTransform& t, const SaKeys& k, uint8_t* esp, uint32_t len,
                 uint32_t esn_hi) noexcept
{
    alignas(16) uint8_t nonce[16];
    alignas(16) uint8_t aad_buf[16];
    alignas(16) uint8_t tag[aead_tag_len];
    make_nonce(t, esp + esp_hdr_len, nonce);
    const uint8_t* aad = make_aad<Esn>(esp, esn_hi, aad_buf);
    uint8_t* data = esp + esp_hdr_len + aead_iv_len;
    uint32_t dlen = len - esp_hdr_len - aead_iv_len;
    chacha_dec(m, k, nonce, aad, aad_len<Esn>, data, data, dlen, tag);
    if (likely(ct_equal16(tag, esp + len))) return true;
    wipe(data, dlen);
    return false;
}

// ---------------------------------------------------------------------------
// CBC (AES, 3DES) or NULL with HMAC: encrypt-then-MAC (RFC 4303 §3.3.2).
//
//   | SPI | Seq | IV | ciphertext (payload, pad, pl, nh) | ICV |
//   <--------------- HMAC input ----------------------->
//   with ESN the HMAC input continues with Seq hi (4 octets, not sent);
//   they are written into the ICV slot, which the ICV then overwrites.
// ---------------------------------------------------------------------------

template <IMB_CIPHER_MODE Mode>
constexpr uint32_t cbc_iv_len = Mode == IMB_CIPHER_CBC ? 16 : Mode == IMB_CIPHER_DES3 ? 8 : 0;

template <IMB_HASH_ALG Hash>
constexpr uint32_t hmac_icv_len = Hash == IMB_AUTH_HMAC_SHA_1        ? 12
                                  : Hash == IMB_AUTH_HMAC_SHA_256    ? 16
                                  : Hash == IMB_AUTH_HMAC_SHA_384    ? 24
                                                                     : 32;

// Cipher keys for the job: AES takes the expanded key schedules, 3DES an
// array of three schedule pointers, NULL nothing.
template <IMB_CIPHER_MODE Mode, unsigned KeyBytes>
inline void set_cipher_keys(IMB_JOB* job, const SaKeys& k) noexcept
{
    if constexpr (Mode == IMB_CIPHER_DES3) {
        job->enc_keys = k.des_ptrs;
        job->dec_keys = k.des_ptrs;
    } else {
        job->enc_keys = k.enc_keys;
        job->dec_keys = k.dec_keys;
    }
    job->key_len_in_bytes = KeyBytes;
}

// One job, one packet: submit, and flush if the multi-buffer manager kept
// it waiting for more lanes. Only this packet is ever in flight.
inline bool run_job(IMB_MGR* m, IMB_JOB* job) noexcept
{
    job = IMB_SUBMIT_JOB(m);
    if (!job) job = IMB_FLUSH_JOB(m);
    return job && job->status == IMB_STATUS_COMPLETED;
}

// `hash_len` covers the HMAC input (len, +4 with ESN); `tag` receives the
// truncated ICV. Hash == IMB_AUTH_NULL runs the cipher alone (test hook).
template <IMB_CIPHER_MODE Mode, unsigned KeyBytes, IMB_HASH_ALG Hash>
bool cbc_job(IMB_MGR* m, const SaKeys& k, IMB_CIPHER_DIRECTION dir, uint8_t* esp, uint32_t len,
             uint32_t hash_len, uint8_t* tag) noexcept
{
    constexpr uint32_t off = esp_hdr_len + cbc_iv_len<Mode>;
    IMB_JOB* job = IMB_GET_NEXT_JOB(m);
    job->cipher_mode = Mode;
    job->cipher_direction = dir;
    job->chain_order = dir == IMB_DIR_ENCRYPT ? IMB_ORDER_CIPHER_HASH : IMB_ORDER_HASH_CIPHER;
    set_cipher_keys<Mode, KeyBytes>(job, k);
    job->src = esp;
    job->dst = esp + off;
    job->cipher_start_src_offset_in_bytes = off;
    job->msg_len_to_cipher_in_bytes = len - off;
    job->iv = esp + esp_hdr_len;
    job->iv_len_in_bytes = cbc_iv_len<Mode>;
    job->hash_alg = Hash;
    job->hash_start_src_offset_in_bytes = 0;
    job->msg_len_to_hash_in_bytes = hash_len;
    job->auth_tag_output = tag;
    if constexpr (Hash == IMB_AUTH_NULL) {
        job->auth_tag_output_len_in_bytes = 0;
    } else {
        job->auth_tag_output_len_in_bytes = hmac_icv_len<Hash>;
        job->u.HMAC._hashed_auth_key_xor_ipad = k.ipad;
        job->u.HMAC._hashed_auth_key_xor_opad = k.opad;
    }
    return run_job(m, job);
}

// Seal once the IV is in place: shared by seal() and the forced-IV test hook.
template <IMB_CIPHER_MODE Mode, unsigned KeyBytes, IMB_HASH_ALG Hash, bool Esn>
void cbc_seal_body(IMB_MGR* m, const EspTransform&, const SaKeys& k, uint8_t* esp, uint32_t len,
                   uint32_t esn_hi) noexcept
{
    alignas(16) uint8_t tag[64];
    if constexpr (Esn) store_be32(esp + len, esn_hi);
    cbc_job<Mode, KeyBytes, Hash>(m, k, IMB_DIR_ENCRYPT, esp, len, len + (Esn ? 4 : 0), tag);
    std::memcpy(esp + len, tag, hmac_icv_len<Hash>);
}

// CBC needs an IV the attacker cannot predict (RFC 3602 §2; a counter is not
// enough for CBC). IV = AES-128(iv_key, SPI || seq hi || seq lo || 0): one
// block cipher call, no RNG on the fast path, unique per packet because the
// input is. AES-CFB over a zero block is exactly one AES encryption of the
// "IV", which is the direct one-block call IPsec-MB 1.3 offers.
template <IMB_CIPHER_MODE Mode>
inline void write_cbc_iv(IMB_MGR* m, const SaKeys& k, uint8_t* esp, uint32_t esn_hi) noexcept
{
    if constexpr (Mode != IMB_CIPHER_NULL) {
        alignas(16) uint8_t block[16];
        alignas(16) static constexpr uint8_t zero[16] = {};
        alignas(16) uint8_t out[16];
        std::memcpy(block, esp, 4);
        store_be32(block + 4, esn_hi);
        std::memcpy(block + 8, esp + 4, 4);
        std::memset(block + 12, 0, 4);
        IMB_AES128_CFB_ONE(m, out, zero, block, k.iv_keys, 16);
        std::memcpy(esp + esp_hdr_len, out, cbc_iv_len<Mode>);
    }
}

template <IMB_CIPHER_MODE Mode, unsigned KeyBytes, IMB_HASH_ALG Hash, bool Esn>
void cbc_seal(IMB_MGR* m, const EspTransform& t, const SaKeys& k, uint8_t* esp, uint32_t len,
              uint32_t esn_hi) noexcept
{
    write_cbc_iv<Mode>(m, k, esp, Esn ? esn_hi : 0);
    cbc_seal_body<Mode, KeyBytes, Hash, Esn>(m, t, k, esp, len, esn_hi);
}

template <IMB_CIPHER_MODE Mode, unsigned KeyBytes, IMB_HASH_ALG Hash, bool Esn>
bool cbc_open(IMB_MGR* m, const EspTransform&, const SaKeys& k, uint8_t* esp, uint32_t len,
              uint32_t esn_hi) noexcept
{
    constexpr uint32_t icv = hmac_icv_len<Hash>;
    constexpr uint32_t off = esp_hdr_len + cbc_iv_len<Mode>;
    constexpr uint32_t block = Mode == IMB_CIPHER_NULL ? 1 : cbc_iv_len<Mode>;
    if (unlikely(len < off || (len - off) % block != 0)) return false;
    alignas(16) uint8_t received[icv];
    alignas(16) uint8_t tag[64];
    std::memcpy(received, esp + len, icv);
    if constexpr (Esn) store_be32(esp + len, esn_hi);
    bool done = cbc_job<Mode, KeyBytes, Hash>(m, k, IMB_DIR_DECRYPT, esp, len, len + (Esn ? 4 : 0), tag);
    std::memcpy(esp + len, received, icv);
    if (likely(done && ct_equal(tag, received, icv))) return true;
    wipe(esp + off, len - off);
    return false;
}

// ---------------------------------------------------------------------------
// Selection: one place maps (cipher, key size, integrity, ESN) to functions.
// ---------------------------------------------------------------------------

struct Fns {
    SealFn seal = nullptr;
    OpenFn open = nullptr;
    SealFn seal_body = nullptr;   // CBC: seal with the IV already in place
};

template <bool Esn>
Fns aead_fns(EspCipher c, unsigned key_len) noexcept
{
    switch (c) {
    case EspCipher::aes_gcm16:
        if (key_len == 16) return {gcm_seal<16, Esn>, gcm_open<16, Esn>};
        return {gcm_seal<32, Esn>, gcm_open<32, Esn>};
    case EspCipher::null_aes_gmac:
        if (key_len == 16) return {gmac_seal<16, Esn>, gmac_open<16, Esn>};
        return {gmac_seal<32, Esn>, gmac_open<32, Esn>};
    case EspCipher::chacha20_poly1305: return {chacha_seal<Esn>, chacha_open<Esn>};
    default: return {};
    }
}

template <IMB_CIPHER_MODE Mode, unsigned KeyBytes, IMB_HASH_ALG Hash, bool Esn>
Fns cbc_fns() noexcept
{
    return {cbc_seal<Mode, KeyBytes, Hash, Esn>, cbc_open<Mode, KeyBytes, Hash, Esn>,
            cbc_seal_body<Mode, KeyBytes, Hash, Esn>};
}

template <IMB_CIPHER_MODE Mode, unsigned KeyBytes, bool Esn>
Fns hmac_fns(EspInteg i) noexcept
{
    switch (i) {
    case EspInteg::hmac_sha1_96: return cbc_fns<Mode, KeyBytes, IMB_AUTH_HMAC_SHA_1, Esn>();
    case EspInteg::hmac_sha256_128: return cbc_fns<Mode, KeyBytes, IMB_AUTH_HMAC_SHA_256, Esn>();
    case EspInteg::hmac_sha384_192: return cbc_fns<Mode, KeyBytes, IMB_AUTH_HMAC_SHA_384, Esn>();
    case EspInteg::hmac_sha512_256: return cbc_fns<Mode, KeyBytes, IMB_AUTH_HMAC_SHA_512, Esn>();
    case EspInteg::none: return {};   // confidentiality-only ESP is not offered
    }
    return {};
}

template <bool Esn>
Fns select_esn(EspCipher c, unsigned key_len, EspInteg i) noexcept
{
    if (is_aead(c)) return i == EspInteg::none ? aead_fns<Esn>(c, key_len) : Fns{};
    switch (c) {
    case EspCipher::aes_cbc:
        if (key_len == 16) return hmac_fns<IMB_CIPHER_CBC, 16, Esn>(i);
        return hmac_fns<IMB_CIPHER_CBC, 32, Esn>(i);
    case EspCipher::des3_cbc: return hmac_fns<IMB_CIPHER_DES3, 24, Esn>(i);
    case EspCipher::null: return hmac_fns<IMB_CIPHER_NULL, 0, Esn>(i);
    default: return {};
    }
}

Fns select_fns(EspCipher c, unsigned key_len, EspInteg i, bool esn) noexcept
{
    if (!valid_cipher_key_len(c, key_len)) return {};
    return esn ? select_esn<true>(c, key_len, i) : select_esn<false>(c, key_len, i);
}

// ---------------------------------------------------------------------------
// Key expansion (install time only).
// ---------------------------------------------------------------------------

// HMAC (RFC 2104): store the hash state after one block of key ^ ipad and
// key ^ opad, so per packet only the message and the outer block are hashed.
// Keys are at most 64 octets, never longer than the hash block (64 or 128),
// so they never need hashing first.
bool hmac_precompute(IMB_MGR* m, EspInteg i, const uint8_t* key, unsigned key_len, SaKeys& k) noexcept
{
    const unsigned block = (i == EspInteg::hmac_sha384_192 || i == EspInteg::hmac_sha512_256) ? 128 : 64;
    if (key_len > block) return false;
    alignas(16) uint8_t ipad[128];
    alignas(16) uint8_t opad[128];
    std::memset(ipad, 0x36, sizeof ipad);
    std::memset(opad, 0x5c, sizeof opad);
    for (unsigned n = 0; n < key_len; ++n) {
        ipad[n] ^= key[n];
        opad[n] ^= key[n];
    }
    switch (i) {
    case EspInteg::hmac_sha1_96:
        IMB_SHA1_ONE_BLOCK(m, ipad, k.ipad);
        IMB_SHA1_ONE_BLOCK(m, opad, k.opad);
        break;
    case EspInteg::hmac_sha256_128:
        IMB_SHA256_ONE_BLOCK(m, ipad, k.ipad);
        IMB_SHA256_ONE_BLOCK(m, opad, k.opad);
        break;
    case EspInteg::hmac_sha384_192:
        IMB_SHA384_ONE_BLOCK(m, ipad, k.ipad);
        IMB_SHA384_ONE_BLOCK(m, opad, k.opad);
        break;
    case EspInteg::hmac_sha512_256:
        IMB_SHA512_ONE_BLOCK(m, ipad, k.ipad);
        IMB_SHA512_ONE_BLOCK(m, opad, k.opad);
        break;
    case EspInteg::none: break;
    }
    secure_wipe(ipad, sizeof ipad);
    secure_wipe(opad, sizeof opad);
    return true;
}

bool expand_cipher_keys(IMB_MGR* m, const SaDescriptor& sa, EspTransform& t, SaKeys& k) noexcept
{
    const uint8_t* key = sa.cipher_key.data();
    switch (sa.cipher) {
    case EspCipher::aes_gcm16:
    case EspCipher::null_aes_gmac:
        if (sa.cipher_key_len == 16) IMB_AES128_GCM_PRE(m, key, &k.gcm);
        else IMB_AES256_GCM_PRE(m, key, &k.gcm);
        std::memcpy(t.salt, key + sa.cipher_key_len, 4);
        return true;
    case EspCipher::chacha20_poly1305:
        std::memcpy(k.chacha_key, key, 32);
        std::memcpy(t.salt, key + 32, 4);
        return true;
    case EspCipher::aes_cbc:
        if (sa.cipher_key_len == 16) IMB_AES_KEYEXP_128(m, key, k.enc_keys, k.dec_keys);
        else IMB_AES_KEYEXP_256(m, key, k.enc_keys, k.dec_keys);
        return true;
    case EspCipher::des3_cbc:
        // des_ptrs point into this SaKeys, so it must stay where it is
        // (sa_create() expands the keys in place inside the DpSa).
        for (unsigned n = 0; n < 3; ++n) {
            if (IMB_DES_KEYSCHED(m, k.des_ks[n], key + 8 * n) != 0) return false;
            k.des_ptrs[n] = k.des_ks[n];
        }
        return true;
    case EspCipher::null: return true;
    }
    return false;
}

// Random per-SA key for CBC IV generation (see write_cbc_iv). Only the
// encryption schedule is used; the decryption one goes to a scratch buffer.
bool make_iv_key(IMB_MGR* m, SaKeys& k) noexcept
{
    alignas(16) uint8_t key[16];
    alignas(16) uint32_t scratch[60];
    if (RAND_bytes(key, sizeof key) != 1) return false;
    IMB_AES_KEYEXP_128(m, key, k.iv_keys, scratch);
    secure_wipe(key, sizeof key);
    secure_wipe(scratch, sizeof scratch);
    return true;
}

} // namespace

bool make_transform(IMB_MGR* mgr, const SaDescriptor& sa, EspTransform& t, SaKeys& keys) noexcept
{
    const Fns fns = select_fns(sa.cipher, sa.cipher_key_len, sa.integ, sa.esn);
    if (!fns.seal || !mgr) return false;
    if (sa.integ_key_len != integ_key_len(sa.integ)) return false;

    t.seal = fns.seal;
    t.open = fns.open;
    t.cipher = sa.cipher;
    t.integ = sa.integ;
    t.key_len = sa.cipher_key_len;
    t.iv_len = uint8_t(iv_len(sa.cipher));
    t.icv_len = uint8_t(icv_len(sa.cipher, sa.integ));
    t.block_len = uint8_t(block_len(sa.cipher));
    t.esn = sa.esn;

    if (!expand_cipher_keys(mgr, sa, t, keys)) return false;
    if (sa.integ != EspInteg::none &&
        !hmac_precompute(mgr, sa.integ, sa.integ_key.data(), sa.integ_key_len, keys))
        return false;
    if (sa.cipher == EspCipher::aes_cbc || sa.cipher == EspCipher::des3_cbc) return make_iv_key(mgr, keys);
    return true;
}

IMB_MGR* crypto_manager_create() noexcept
{
    IMB_MGR* mgr = alloc_mb_mgr(0);
    if (!mgr) return nullptr;
    IMB_ARCH arch;
    init_mb_mgr_auto(mgr, &arch);
    if (imb_get_errno(mgr) != 0) {
        free_mb_mgr(mgr);
        return nullptr;
    }
    return mgr;
}

void crypto_manager_free(IMB_MGR* mgr) noexcept
{
    if (mgr) free_mb_mgr(mgr);
}

// ---------------------------------------------------------------------------
// Test hooks (declared in tests/unit/crypto_test_hooks.hh). They run the very
// primitives the transforms use, on caller-chosen nonces, AAD and IVs, so the
// unit tests can check them against published vectors. Not used by the data
// plane.
// ---------------------------------------------------------------------------
namespace test_hooks {

bool aead_encrypt(IMB_MGR* m, const EspTransform& t, const SaKeys& k, const uint8_t* nonce, const uint8_t* aad,
                  uint32_t aad_len, const uint8_t* in, uint8_t* out, uint32_t len, uint8_t* tag) noexcept
{
    switch (t.cipher) {
    case EspCipher::aes_gcm16:
        if (t.key_len == 16) Gcm<16>::enc(m, k, nonce, aad, aad_len, in, out, len, tag);
        else Gcm<32>::enc(m, k, nonce, aad, aad_len, in, out, len, tag);
        return true;
    case EspCipher::chacha20_poly1305: chacha_enc(m, k, nonce, aad, aad_len, in, out, len, tag); return true;
    default: return false;
    }
}

bool aead_decrypt(IMB_MGR* m, const EspTransform& t, const SaKeys& k, const uint8_t* nonce, const uint8_t* aad,
                  uint32_t aad_len, const uint8_t* in, uint8_t* out, uint32_t len, const uint8_t* tag) noexcept
{
    alignas(16) uint8_t computed[aead_tag_len];
    switch (t.cipher) {
    case EspCipher::aes_gcm16:
        if (t.key_len == 16) Gcm<16>::dec(m, k, nonce, aad, aad_len, in, out, len, computed);
        else Gcm<32>::dec(m, k, nonce, aad, aad_len, in, out, len, computed);
        break;
    case EspCipher::chacha20_poly1305: chacha_dec(m, k, nonce, aad, aad_len, in, out, len, computed); break;
    default: return false;
    }
    return ct_equal16(computed, tag);
}

bool gmac(IMB_MGR* m, const EspTransform& t, const SaKeys& k, const uint8_t* nonce, const uint8_t* msg,
          uint32_t len, uint8_t* tag) noexcept
{
    if (t.cipher != EspCipher::null_aes_gmac) return false;
    if (t.key_len == 16) Gcm<16>::gmac(m, k, nonce, msg, len, nullptr, 0, tag);
    else Gcm<32>::gmac(m, k, nonce, msg, len, nullptr, 0, tag);
    return true;
}

// CBC cipher alone on `len` octets (a multiple of the block) with a given
// IV, for the RFC 3602 vectors, which have no ICV.
bool cbc_cipher(IMB_MGR* m, const EspTransform& t, const SaKeys& k, const uint8_t* iv, uint8_t* data,
                uint32_t len, bool encrypt) noexcept
{
    // Lay the data out as an ESP packet in a scratch buffer so the same job
    // code runs: header (unused), IV, data.
    alignas(16) static thread_local uint8_t buf[2048];
    const uint32_t ivl = t.iv_len;
    if (len + esp_hdr_len + ivl > sizeof buf) return false;
    std::memcpy(buf + esp_hdr_len, iv, ivl);
    std::memcpy(buf + esp_hdr_len + ivl, data, len);
    const auto dir = encrypt ? IMB_DIR_ENCRYPT : IMB_DIR_DECRYPT;
    bool ok = false;
    const uint32_t total = esp_hdr_len + ivl + len;
    if (t.cipher == EspCipher::aes_cbc && t.key_len == 16)
        ok = cbc_job<IMB_CIPHER_CBC, 16, IMB_AUTH_NULL>(m, k, dir, buf, total, 0, nullptr);
    else if (t.cipher == EspCipher::aes_cbc)
        ok = cbc_job<IMB_CIPHER_CBC, 32, IMB_AUTH_NULL>(m, k, dir, buf, total, 0, nullptr);
    else if (t.cipher == EspCipher::des3_cbc)
        ok = cbc_job<IMB_CIPHER_DES3, 24, IMB_AUTH_NULL>(m, k, dir, buf, total, 0, nullptr);
    std::memcpy(data, buf + esp_hdr_len + ivl, len);
    return ok;
}

// seal() with the IV forced instead of derived: the same body runs after
// the IV is written. For CBC transforms only.
bool seal_with_iv(IMB_MGR* m, const EspTransform& t, const SaKeys& k, uint8_t* esp, uint32_t len,
                  uint32_t esn_hi, const uint8_t* iv) noexcept
{
    const Fns fns = select_fns(t.cipher, t.key_len, t.integ, t.esn);
    if (!fns.seal_body) return false;
    std::memcpy(esp + esp_hdr_len, iv, t.iv_len);
    fns.seal_body(m, t, k, esp, len, esn_hi);
    return true;
}

} // namespace test_hooks

template void gcm_seal<16, false>(IMB_MGR*, const EspTransform&, const SaKeys&, uint8_t*, uint32_t, uint32_t) noexcept;
template void gcm_seal<16, true>(IMB_MGR*, const EspTransform&, const SaKeys&, uint8_t*, uint32_t, uint32_t) noexcept;
template void gcm_seal<32, false>(IMB_MGR*, const EspTransform&, const SaKeys&, uint8_t*, uint32_t, uint32_t) noexcept;
template void gcm_seal<32, true>(IMB_MGR*, const EspTransform&, const SaKeys&, uint8_t*, uint32_t, uint32_t) noexcept;
template bool gcm_open<16, false>(IMB_MGR*, const EspTransform&, const SaKeys&, uint8_t*, uint32_t, uint32_t) noexcept;
template bool gcm_open<16, true>(IMB_MGR*, const EspTransform&, const SaKeys&, uint8_t*, uint32_t, uint32_t) noexcept;
template bool gcm_open<32, false>(IMB_MGR*, const EspTransform&, const SaKeys&, uint8_t*, uint32_t, uint32_t) noexcept;
template bool gcm_open<32, true>(IMB_MGR*, const EspTransform&, const SaKeys&, uint8_t*, uint32_t, uint32_t) noexcept;

} // namespace ravelin::dp
