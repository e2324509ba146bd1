// IKE SA keys for Wireshark (iked.keylog): lines in the format of
// Wireshark's "IKEv2 Decryption Table" (the ikev2_decryption_table file in
// a Wireshark profile):
//
//   SPIi,SPIr,SK_ei,SK_er,"encryption algorithm",SK_ai,SK_ar,"integrity algorithm"
//
// SPIs as 16 hex digits, keys in hex (SK_e of an AEAD cipher is key then
// salt), the algorithm names exactly as Wireshark's table spells them
// ("AES-GCM-256 with 16 octet ICV [RFC5282]", "HMAC_SHA2_256_128 [RFC4868]",
// "NONE [RFC4306]" with AEAD and empty SK_a fields).
//
// Only when configured: the file is created 0600, and nothing else in the
// daemon ever writes a secret. An IKE SA whose cipher Wireshark cannot
// decrypt (ChaCha20-Poly1305) is skipped with a log line.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "crypto.hh"

namespace ravelin::iked {

// The table line (without newline), or nullopt if Wireshark has no name
// for the suite's encryption or integrity algorithm.
std::optional<std::string> keylog_line(uint64_t spi_i, uint64_t spi_r, const ike::IkeKeys& keys,
                                       const ike::IkeSuite& suite);

class KeyLog {
public:
    static std::unique_ptr<KeyLog> open(const std::string& path, std::string& error);
    ~KeyLog();
    KeyLog(const KeyLog&) = delete;
    KeyLog& operator=(const KeyLog&) = delete;

    void write(uint64_t spi_i, uint64_t spi_r, const ike::IkeKeys& keys, const ike::IkeSuite& suite);
    uint64_t written() const { return written_; }
    uint64_t skipped() const { return skipped_; }

private:
    KeyLog(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
    int fd_;
    std::string path_;
    uint64_t written_ = 0, skipped_ = 0;
};

} // namespace ravelin::iked
