// The IKEv2 initiator side of ravelin-ike-loadgen: one IKE SA + first Child
// SA setup (IKE_SA_INIT, IKE_AUTH with PSK, optional INFORMATIONAL delete),
// written directly on the codec and crypto of controlplane/ike and not on the
// Engine, so that one setup costs the load generator as little as possible
// and the responder is what the measurement measures.
//
// What is shared between setups (and why that is fair to the responder):
// one X25519 key pair (the responder still makes its own key and computes
// g^ir for every setup: its work is unchanged), the PSK's key pad
// prf(PSK, "Key Pad for IKEv2"), and the proposal payloads. What is per
// setup: SPIi, the nonce, the identity "client-N.bench", g^ir, all keys, the
// AUTH in both directions (the responder's AUTH is verified, so a responder
// that skips work cannot look fast), the ESP SPI.
//
// Nothing here touches sockets or clocks: the caller (ike_loadgen.cc) owns
// the window, retransmission and the datagrams' travel.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "crypto.hh"
#include "message.hh"

namespace ravelin::ike::loadgen {

// What every setup proposes and authenticates with.
struct InitiatorConfig {
    std::string psk;
    std::string id_prefix = "client-";      // identity = prefix + number + suffix (FQDN)
    std::string id_suffix = ".bench";
    bool nat_detection = true;              // send NAT_DETECTION_* (and float to 4500 on NAT)
    bool tsi_per_client = false;            // TSi = 198.19.x.y/32 from the number, else our address
    TrafficSelector tsr;                    // what we ask for on the responder's side
};

// Addresses as the NAT detection hashes see them (network byte order bytes).
struct Endpoint {
    std::array<uint8_t, 4> addr{};
    uint16_t port = 0;
};

enum class Phase : uint8_t { idle, init, auth, del };

// Why a setup did not complete; the names go into the JSON report.
enum class Failure : uint8_t {
    init_notify,            // IKE_SA_INIT answered with an error notify
    init_bad,               // IKE_SA_INIT response unusable (proposal, KE, nonce, SPI)
    dh_invalid,             // the responder's KE is not a valid X25519 value
    auth_notify,            // IKE_AUTH answered with an error notify and no AUTH
    auth_decrypt,           // IKE_AUTH response did not decrypt
    auth_bad,               // IKE_AUTH response without IDr/AUTH, or malformed
    auth_mismatch,          // the responder's AUTH does not verify
    no_child,               // IKE SA up but no Child SA (SA/TSi/TSr missing)
    timeout_init,
    timeout_auth,
    count_,
};
std::string_view to_string(Failure);

// The state of one setup: one slot of the window. Reused slot by slot.
struct Setup {
    Phase phase = Phase::idle;
    uint32_t number = 0;                    // identity number
    uint64_t spi_i = 0, spi_r = 0;
    uint32_t esp_spi = 0;
    bool floated = false;                   // talking to the NAT-T port with the marker
    uint8_t tries = 0;                      // retransmissions of `request` (the caller's)
    uint8_t cookie_rounds = 0;
    uint16_t last_notify = 0;               // error notify that failed it, for the report
    Endpoint local;                         // our socket's address and port
    std::array<uint8_t, 32> ni{};
    Bytes nr;
    Bytes cookie;
    Bytes init_request;                     // AUTH octets (ours) ...
    Bytes init_response;                    // ... and the responder's
    Bytes sk_pr;
    std::unique_ptr<SkCipher> sk_out, sk_in;
    Bytes request;                          // last request as sent (retransmitted as is)

    void reset();
};

// What to do after a response.
struct Step {
    enum class Kind : uint8_t { ignore, send, established, deleted, failed } kind = Kind::ignore;
    Failure failure = Failure::init_bad;
};

class Initiator {
public:
    // `responder` is where requests go (port 500); its NAT-T port is 4500.
    Initiator(InitiatorConfig cfg, Endpoint responder);

    // Starts a setup: fills s (SPIs, nonce) and s.request with IKE_SA_INIT.
    void start(Setup& s, uint32_t number, uint64_t spi_i, const Endpoint& local);
    // A datagram for s (non-ESP marker already removed). On Kind::send,
    // s.request holds the next request.
    Step on_response(Setup& s, ByteView datagram);
    // After `established`: s.request becomes the INFORMATIONAL delete.
    void start_delete(Setup& s);

    // The port the next request of s goes to.
    uint16_t port_for(const Setup& s) const { return s.floated ? 4500 : responder_.port; }
    uint64_t cookies_seen() const { return cookies_; }

private:
    Step on_init_response(Setup& s, const Message& m, ByteView datagram);
    Step on_auth_response(Setup& s, const Message& m, ByteView datagram);
    void build_init(Setup& s);
    Bytes natd_hash(uint64_t spi_i, uint64_t spi_r, const Endpoint& e) const;
    Bytes seal(Setup& s, ExchangeType ex, uint32_t message_id, const std::vector<Payload>& inner);
    std::optional<std::vector<Payload>> open(Setup& s, const Message& m, ByteView datagram);

    InitiatorConfig cfg_;
    Endpoint responder_;
    IkeSuite suite_;
    std::unique_ptr<DhKey> dh_;             // one key pair for every setup
    Bytes key_pad_;                         // prf(PSK, "Key Pad for IKEv2")
    Payload ike_sa_;                        // the IKE proposal, built once
    uint64_t cookies_ = 0;
};

} // namespace ravelin::ike::loadgen
