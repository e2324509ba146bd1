// ravelin-iked's configuration: strongSwan's swanctl.conf shape and syntax
// (sections in braces, "key = value", comma lists, # comments, include), so
// an operator can bring a swanctl.conf over nearly unchanged, plus an
// `iked { }` section for the daemon's own settings.
//
//   iked {
//     listen = 198.18.0.1
//   }
//   connections {
//     gw {
//       local_addrs = 198.18.0.1
//       remote_addrs = 198.18.0.2
//       proposals = aes256gcm16-prfsha256-x25519
//       local {
//         auth = psk
//         id = gw-a
//       }
//       remote {
//         auth = psk
//         id = gw-b
//       }
//       children {
//         net {
//           local_ts = 198.19.1.0/24
//           remote_ts = 198.19.2.0/24
//           esp_proposals = aes256gcm16
//           start_action = start
//         }
//       }
//     }
//   }
//   secrets {
//     ike-gw {
//       id-a = gw-a
//       id-b = gw-b
//       secret = "..."
//     }
//   }
//   authorities {
//     ca {
//       cacert = /etc/ravelin/x509ca/ca.pem
//       crl = /etc/ravelin/x509crl/ca.crl
//     }
//   }
//
// A value runs to the end of its line (or a `#` or `}`), as in strongSwan,
// so one key per line.
//
// Every error carries "file:line: reason"; unknown keys are errors (a typo
// must not silently change a tunnel).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "message.hh"
#include "proposal.hh"

namespace ravelin::ike {

// A configured identity in swanctl's notation: "198.18.0.1", "2001:db8::1",
// "gw.example.net", "@gw" (FQDN, never resolved), "user@example.net",
// "C=DE, O=Ravelin, CN=gw" (DN, encoded to DER), "%any" (peer: anything the
// authentication proves).
struct Identity {
    bool any = false;
    IdPayload id;
    std::string text;               // as written, for logs and list-sas
};

enum class AuthKind : uint8_t { psk, pubkey };

struct AuthConfig {
    AuthKind auth = AuthKind::psk;
    Identity id;                    // local: default is the local address
    std::vector<std::string> certs; // local: our certificate then intermediates (files)
    std::vector<std::string> cacerts; // remote: CAs for this peer (files), trusted with `authorities`
    std::string private_key;        // local pubkey: key file (else found in secrets)
};

// A traffic selector as configured: a TrafficSelector, or "dynamic" (the
// tunnel endpoint address of that side, filled in when the SA is set up).
struct TsConfig {
    bool dynamic = false;
    TrafficSelector ts;
};

enum class StartAction : uint8_t { none, trap, start };
enum class CloseAction : uint8_t { none, trap, start };
enum class DpdAction : uint8_t { clear, trap, restart };
enum class ChildMode : uint8_t { tunnel, transport };
enum class Fragmentation : uint8_t { no, accept, yes, force };

struct ChildConfig {
    std::string name;
    int line = 0;                   // where it was defined, for messages
    std::vector<TsConfig> local_ts;  // default: dynamic
    std::vector<TsConfig> remote_ts; // default: dynamic
    std::vector<ProposalSpec> esp_proposals;
    ChildMode mode = ChildMode::tunnel;
    StartAction start_action = StartAction::none;
    CloseAction close_action = CloseAction::none;
    DpdAction dpd_action = DpdAction::clear;
    // 0 = never. Defaults as strongSwan: rekey 1 h, life = rekey * 1.1, rand = life - rekey.
    uint64_t rekey_time_s = 3600;
    uint64_t life_time_s = 3960;
    uint64_t rand_time_s = 360;
    uint64_t rekey_bytes = 0, life_bytes = 0, rand_bytes = 0;
    uint64_t rekey_packets = 0, life_packets = 0, rand_packets = 0;
    uint32_t replay_window = 1024;
    bool copy_dscp = true;
    uint32_t reqid = 0;             // 0 = assigned by the daemon
};

struct ConnectionConfig {
    std::string name;
    int line = 0;
    std::vector<std::string> local_addrs;   // literal addresses (empty = any)
    std::vector<std::string> remote_addrs;  // literal addresses or "%any"
    uint16_t local_port = 500;
    uint16_t remote_port = 500;
    std::vector<ProposalSpec> proposals;     // IKE
    AuthConfig local;
    AuthConfig remote;
    std::vector<ChildConfig> children;
    bool encap = false;             // force UDP encapsulation (fake NAT-D)
    Fragmentation fragmentation = Fragmentation::yes;
    uint64_t dpd_delay_s = 0;       // 0 = no liveness checks
    uint64_t dpd_timeout_s = 0;     // informational; retransmission decides
    uint64_t rekey_time_s = 14400;  // IKE SA rekey (4 h)
    uint64_t reauth_time_s = 0;
    uint64_t over_time_s = 0;       // 0 = 10 % of the larger of rekey/reauth
    uint64_t rand_time_s = 0;       // 0 = over_time
    uint32_t keyingtries = 1;       // 0 = forever
    bool send_certreq = true;
    enum class SendCert : uint8_t { ifasked, always, never } send_cert = SendCert::ifasked;
    bool mobike = false;            // accepted only as "no"
};

struct SharedSecret {
    std::vector<Identity> ids;      // empty = any
    Bytes secret;                   // "0x..." hex, "0s..." base64, or text
    int line = 0;
};

// secrets.private-<name> { file = ..., secret = ... }: a private key for
// pubkey authentication (optionally encrypted with `secret`). Connections
// whose local section names no private_key use the one matching their
// certificate.
struct PrivateKeyConfig {
    std::string name;
    std::string file;
    Bytes passphrase;               // empty = not encrypted
    int line = 0;
};

struct Authority {
    std::string name;
    std::string cacert;
    std::vector<std::string> crls;
};

struct LogLevels {
    std::string default_level = "info";
    std::map<std::string, std::string> subsystems;  // "ike" -> "debug"
};

// ravelin-iked's Prometheus endpoint (docs/metrics.md).
struct MetricsConfig {
    bool enabled = false;
    std::string listen = "127.0.0.1";        // one numeric IPv4 or IPv6 address
    uint16_t port = 9814;
    std::string dataplane;                   // DPDK file prefix of the data plane to read; empty = none
    bool operator==(const MetricsConfig&) const = default;
};

struct DaemonConfig {
    std::vector<std::string> listen;        // addresses for standalone mode; empty = any
    uint16_t port = 500;
    uint16_t port_nat_t = 4500;
    std::string control_socket = "/run/ravelin/iked.sock";
    bool allow_legacy = false;
    uint32_t cookie_threshold = 10;          // half-open SAs before COOKIEs are demanded
    uint32_t half_open_limit = 5000;         // beyond this, IKE_SA_INIT is dropped
    uint32_t retransmit_timeout_ms = 4000;
    double retransmit_base = 1.8;
    uint32_t retransmit_tries = 5;
    uint32_t fragment_size = 1280;           // largest IKE datagram before fragmenting
    uint32_t keepalive_s = 20;               // NAT-T keepalive interval
    std::string keylog;                      // Wireshark key log file (empty = off)
    std::string sa_sink;                     // standalone: JSON lines of installed SAs
    LogLevels log;
    MetricsConfig metrics;
};

struct IkeConfig {
    DaemonConfig daemon;
    std::vector<ConnectionConfig> connections;
    std::vector<SharedSecret> secrets;
    std::vector<PrivateKeyConfig> private_keys;
    std::vector<Authority> authorities;
    std::string path;                        // file it came from

    const ConnectionConfig* find(std::string_view name) const;
};

// "file:line: reason" in `error` on failure.
std::optional<IkeConfig> load_ike_config(const std::string& path, std::string& error);
std::optional<IkeConfig> parse_ike_config(std::string_view text, const std::string& name,
                                          std::string& error);

// Identity parsing on its own (also used for ravelinctl arguments and tests).
std::optional<Identity> parse_identity(std::string_view text, std::string& error);
// "10.0.0.0/24", "10.0.0.1-10.0.0.9", "0.0.0.0/0[udp/53]", "dynamic[tcp]", ...
std::optional<TsConfig> parse_ts(std::string_view text, std::string& error);

// Equality for reload: a connection whose config is unchanged is left alone.
bool same_connection(const ConnectionConfig& a, const ConnectionConfig& b);

} // namespace ravelin::ike
