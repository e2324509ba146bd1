#include "keylog.hh"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "json_sink.hh"
#include "logging.hh"
#include "names.hh"

namespace ravelin::iked {

namespace {

std::string hex(const ike::Bytes& b) { return hex_string(b.data(), b.size()); }

// Wireshark's names (its IKEv2 UAT accepts exactly these strings).
std::optional<std::string> wireshark_encr(uint16_t id, uint16_t bits)
{
    switch (id) {
    case ike::encr::des3: return "3DES [RFC2451]";
    case ike::encr::null_: return "NULL [RFC2410]";
    case ike::encr::aes_cbc:
        if (bits == 128 || bits == 192 || bits == 256) return fmt::format("AES-CBC-{} [RFC3602]", bits);
        return std::nullopt;
    case ike::encr::aes_gcm_16:
        if (bits == 128 || bits == 192 || bits == 256)
            return fmt::format("AES-GCM-{} with 16 octet ICV [RFC5282]", bits);
        return std::nullopt;
    default: return std::nullopt;   // ChaCha20-Poly1305: not in Wireshark's IKEv2 table
    }
}

std::optional<std::string> wireshark_integ(uint16_t id)
{
    switch (id) {
    case ike::integ::none: return "NONE [RFC4306]";
    case ike::integ::hmac_sha1_96: return "HMAC_SHA1_96 [RFC2404]";
    case ike::integ::hmac_sha2_256_128: return "HMAC_SHA2_256_128 [RFC4868]";
    case ike::integ::hmac_sha2_384_192: return "HMAC_SHA2_384_192 [RFC4868]";
    case ike::integ::hmac_sha2_512_256: return "HMAC_SHA2_512_256 [RFC4868]";
    default: return std::nullopt;
    }
}

} // namespace

std::optional<std::string> keylog_line(uint64_t spi_i, uint64_t spi_r, const ike::IkeKeys& keys,
                                       const ike::IkeSuite& suite)
{
    auto encr = wireshark_encr(suite.encr, suite.encr_key_bits);
    auto integ = wireshark_integ(suite.integ);
    if (!encr || !integ) return std::nullopt;
    return fmt::format("{:016x},{:016x},{},{},\"{}\",{},{},\"{}\"", spi_i, spi_r, hex(keys.sk_ei),
                       hex(keys.sk_er), *encr, hex(keys.sk_ai), hex(keys.sk_ar), *integ);
}

std::unique_ptr<KeyLog> KeyLog::open(const std::string& path, std::string& error)
{
    int fd = open_secret_file(path, error);
    if (fd < 0) return nullptr;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size == 0)
        write_all(fd, "# ravelin-iked IKE SA keys: Wireshark ikev2_decryption_table format\n");
    logger("ike")->warn("writing IKE SA keys to {} (iked.keylog): for debugging only", path);
    return std::unique_ptr<KeyLog>(new KeyLog(fd, path));
}

KeyLog::~KeyLog()
{
    if (fd_ >= 0) ::close(fd_);
}

void KeyLog::write(uint64_t spi_i, uint64_t spi_r, const ike::IkeKeys& keys, const ike::IkeSuite& suite)
{
    auto line = keylog_line(spi_i, spi_r, keys, suite);
    if (!line) {
        ++skipped_;
        logger("ike")->info("keylog: IKE SA {:016x}_i {:016x}_r uses {}-{}/{}, which Wireshark cannot "
                            "decrypt; not logged",
                            spi_i, spi_r, encr_name(suite.encr), suite.encr_key_bits, integ_name(suite.integ));
        return;
    }
    *line += "\n";
    if (write_all(fd_, *line)) ++written_;
    else logger("ike")->error("keylog {}: write failed: {}", path_, std::strerror(errno));
    secure_wipe(line->data(), line->size());
}

} // namespace ravelin::iked
