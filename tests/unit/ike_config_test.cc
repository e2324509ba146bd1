// The swanctl.conf-shaped configuration (controlplane/ike/config.hh): syntax,
// every key, errors with file:line, includes, identities, selectors, secrets,
// reload equality, and strongSwan's own testbed configurations.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "config.hh"
#include "crypto.hh"

namespace ravelin::ike {
namespace {

namespace fs = std::filesystem;

IkeConfig parse_ok(std::string_view text, const std::string& name = "t.conf")
{
    std::string err;
    auto cfg = parse_ike_config(text, name, err);
    EXPECT_TRUE(cfg) << err;
    return cfg.value_or(IkeConfig{});
}

std::string parse_err(std::string_view text)
{
    std::string err;
    auto cfg = parse_ike_config(text, "t.conf", err);
    EXPECT_FALSE(cfg) << "parsed:\n" << text;
    return err;
}

// Wrappers that put `body` at a known line.
std::string conn(const std::string& body) { return "connections {\n gw {\n" + body + " }\n}\n"; }    // body at line 3
std::string child(const std::string& body)                                                             // body at line 5
{
    return conn("  children {\n   net {\n" + body + "   }\n  }\n");
}
std::string iked(const std::string& body) { return "iked {\n" + body + "}\n"; }                          // line 2
std::string secrets(const std::string& body) { return "secrets {\n" + body + "}\n"; }                    // line 2

IpAddress ip(const char* text)
{
    std::string err;
    auto ts = parse_ts(text, err);
    EXPECT_TRUE(ts) << err;
    return ts ? ts->ts.start : IpAddress{};
}

// --- errors ------------------------------------------------------------------------------

TEST(IkeConfig, BadConfigsNameFileLineAndReason)
{
    struct Case {
        std::string text;
        std::string error;
    };
    const std::string nest_17 = [] {
        std::string s;
        for (int i = 0; i < 17; ++i) s += "a {\n";
        return s;
    }();
    const Case cases[] = {
        // syntax
        {"foo = bar\n", "t.conf:1: unknown key 'foo'"},
        {"bogus {\n}\n", "t.conf:1: unknown section 'bogus'"},
        {"connections = x\n", "t.conf:1: 'connections' must be a section, not a key"},
        {"connections {\n gw {\n  version = 2\n", "t.conf:2: section 'gw' has no closing '}'"},
        {"}\n", "t.conf:1: unexpected '}'"},
        {"\n\n= x\n", "t.conf:3: unexpected '=' (a key name must come first)"},
        {"{\n}\n", "t.conf:1: unexpected '{' (a section name must come first)"},
        {iked(" keylog = \"unterminated\n"), "t.conf:2: unterminated string"},
        {"\"quoted\" = 1\n", "t.conf:1: unexpected quoted string (only values may be quoted)"},
        {"iked\nfoo {\n}\n", "t.conf:1: expected '=' or '{' after 'iked'"},
        {"iked foo\n", "t.conf:1: expected '=' or '{' after 'iked'"},
        {"include missing.conf\n", "t.conf:1: cannot open include file 'missing.conf'"},
        {nest_17, "t.conf:17: sections nested too deeply"},
        // connections
        {"connections {\n x = 1\n}\n", "t.conf:2: unknown key 'connections.x'"},
        {conn("  rekey_tme = 1h\n"), "t.conf:3: unknown key 'connections.gw.rekey_tme'"},
        {conn("  locl {\n  }\n"), "t.conf:3: unknown section 'connections.gw.locl'"},
        {conn("  proposals {\n  }\n"), "t.conf:3: 'connections.gw.proposals' must be a key = value, not a section"},
        {conn("  local = psk\n"), "t.conf:3: 'connections.gw.local' must be a section, not a key"},
        {conn("  version = 1\n"), "t.conf:3: version: IKEv1 is not supported"},
        {conn("  version = 3\n"), "t.conf:3: version: bad value '3' (0 or 2)"},
        {conn("  local_addrs = 198.18.0.300\n"),
         "t.conf:3: local_addrs: bad address '198.18.0.300' (literal IPv4 or IPv6 address or %any)"},
        {conn("  remote_addrs = %any, 198.18.0.2\n"), "t.conf:3: remote_addrs: %any cannot be combined with addresses"},
        {conn("  local_addrs = 198.18.0.1,,198.18.0.2\n"),
         "t.conf:3: local_addrs: empty entry in list '198.18.0.1,,198.18.0.2'"},
        {conn("  local_port = 0\n"), "t.conf:3: local_port: bad port '0' (1..65535)"},
        {conn("  remote_port = 70000\n"), "t.conf:3: remote_port: bad port '70000' (1..65535)"},
        {conn("  proposals = aes256gcm16-prfsha256-x25519-foo\n"),
         "t.conf:3: proposals: unknown algorithm 'foo' in proposal 'aes256gcm16-prfsha256-x25519-foo'"},
        {conn("  proposals = aes128-sha1-modp2048\n"),
         "t.conf:3: proposals: 'sha1' is a legacy algorithm: it needs allow_legacy = yes"},
        {conn("  encap = maybe\n"), "t.conf:3: encap: bad boolean 'maybe' (yes, no, true, false)"},
        {conn("  mobike = yes\n"), "t.conf:3: mobike: MOBIKE is not supported (set mobike = no)"},
        {conn("  fragmentation = sometimes\n"),
         "t.conf:3: fragmentation: bad value 'sometimes' (yes, no, accept, force)"},
        {conn("  dpd_delay = 30x\n"), "t.conf:3: dpd_delay: bad duration '30x' (30, 30s, 10m, 4h, 1d)"},
        {conn("  rekey_time = -1h\n"), "t.conf:3: rekey_time: bad duration '-1h' (30, 30s, 10m, 4h, 1d)"},
        {conn("  over_time = 99999999999999999999999s\n"),
         "t.conf:3: over_time: bad duration '99999999999999999999999s' (30, 30s, 10m, 4h, 1d)"},
        {conn("  keyingtries = many\n"), "t.conf:3: keyingtries: bad number 'many' (0..4294967295)"},
        {conn("  send_cert = sometimes\n"), "t.conf:3: send_cert: bad value 'sometimes' (ifasked, always, never)"},
        {conn("  unique = replace\n"), "t.conf:3: unique: only unique = no is supported"},
        // authentication rounds
        {conn("  local {\n   auth = eap-md5\n  }\n"), "t.conf:4: auth: bad value 'eap-md5' (psk, pubkey)"},
        {conn("  local {\n   id = C=DE, XX=foo\n  }\n"),
         "t.conf:4: id: identity 'C=DE, XX=foo': unknown DN attribute 'XX'"},
        {conn("  remote {\n   id = gw b\n  }\n"),
         "t.conf:4: id: identity 'gw b' contains white space (a DN needs ATTR=value)"},
        {conn("  local {\n   id = %any\n  }\n"), "t.conf:4: id: our own identity cannot be %any"},
        {conn("  remote {\n   certs = peer.pem\n  }\n"),
         "t.conf:4: certs: only valid in local (our certificates); use cacerts to restrict the peer"},
        {conn("  local {\n   cacerts = ca.pem\n  }\n"), "t.conf:4: cacerts: only valid in remote"},
        {conn("  remote {\n   private_key = k.pem\n  }\n"), "t.conf:4: private_key: only valid in local"},
        {conn("  local {\n   auth = pubkey\n  }\n"), "t.conf:3: 'connections.gw.local': auth = pubkey needs certs"},
        {conn("  local {\n  }\n  local-2 {\n  }\n"),
         "t.conf:5: more than one local authentication round ('local' and 'local-2'): not supported"},
        {conn("  remote-1 {\n  }\n  remote-2 {\n  }\n"),
         "t.conf:5: more than one remote authentication round ('remote-1' and 'remote-2'): not supported"},
        {conn("  local {\n   eap_id = x\n  }\n"), "t.conf:4: unknown key 'connections.gw.local.eap_id'"},
        // children
        {conn("  children {\n   x = 1\n  }\n"), "t.conf:4: unknown key 'connections.gw.children.x'"},
        {child("    local_ts = 198.19.1.0/33\n"), "t.conf:5: local_ts: bad subnet '198.19.1.0/33'"},
        {child("    remote_ts = 198.19.1.1/24\n"), "t.conf:5: remote_ts: host bits set in '198.19.1.1/24'"},
        {child("    local_ts = 198.19.1.9-198.19.1.1\n"),
         "t.conf:5: local_ts: bad address range '198.19.1.9-198.19.1.1'"},
        {child("    local_ts = 10.0.0.0/8[foo]\n"),
         "t.conf:5: local_ts: traffic selector '10.0.0.0/8[foo]': bad protocol 'foo'"},
        {child("    local_ts = 10.0.0.0/8[tcp/99999]\n"),
         "t.conf:5: local_ts: traffic selector '10.0.0.0/8[tcp/99999]': bad port '99999'"},
        {child("    local_ts = 10.0.0.0/8[tcp/80\n"),
         "t.conf:5: local_ts: bad traffic selector '10.0.0.0/8[tcp/80' (missing ']')"},
        {child("    remote_ts = 10.0.0.0/8[/53]\n"),
         "t.conf:5: remote_ts: traffic selector '10.0.0.0/8[/53]': a port needs a protocol"},
        {child("    remote_ts = gateway.example\n"), "t.conf:5: remote_ts: bad traffic selector 'gateway.example'"},
        {child("    esp_proposals = aes256\n"),
         "t.conf:5: esp_proposals: no integrity algorithm for the classic cipher in ESP proposal 'aes256'"},
        {child("    esp_proposals = aes256gcm16-prfsha256-esn-bogus\n"),
         "t.conf:5: esp_proposals: unknown algorithm 'bogus' in proposal 'aes256gcm16-prfsha256-esn-bogus'"},
        {child("    mode = beet\n"), "t.conf:5: mode: bad value 'beet' (tunnel, transport)"},
        {child("    start_action = route\n"), "t.conf:5: start_action: bad value 'route' (none, trap, start)"},
        {child("    close_action = hold\n"), "t.conf:5: close_action: bad value 'hold' (none, trap, start)"},
        {child("    dpd_action = hold\n"), "t.conf:5: dpd_action: bad value 'hold' (clear, trap, restart)"},
        {child("    rekey_time = 1h\n    life_time = 1h\n"),
         "t.conf:6: life_time (3600) must be greater than rekey_time (3600)"},
        {child("    life_time = 30m\n"), "t.conf:5: life_time (1800) must be greater than rekey_time (3600)"},
        {child("    rekey_bytes = 1M\n    life_bytes = 512k\n"),
         "t.conf:6: life_bytes (524288) must be greater than rekey_bytes (1048576)"},
        {child("    life_packets = 1000\n    rekey_packets = 1000\n"),
         "t.conf:5: life_packets (1000) must be greater than rekey_packets (1000)"},
        {child("    rand_time = 2h\n"), "t.conf:5: rand_time (7200) must be less than rekey_time (3600)"},
        {child("    rekey_bytes = 10X\n"), "t.conf:5: rekey_bytes: bad count '10X' (1000, 64k, 512M, 4G)"},
        {child("    replay_window = 99999999\n"), "t.conf:5: replay_window: bad number '99999999' (0..1048576)"},
        {child("    copy_dscp = out\n"), "t.conf:5: copy_dscp: bad boolean 'out' (yes, no, true, false)"},
        {child("    hostaccess = yes\n"), "t.conf:5: unknown key 'connections.gw.children.net.hostaccess'"},
        // secrets and authorities
        {secrets(" ike-x {\n  id = a\n }\n"), "t.conf:2: 'secrets.ike-x' has no secret"},
        {secrets(" eap-x {\n  secret = a\n }\n"),
         "t.conf:2: unsupported secret type 'secrets.eap-x' (ike<suffix> or private<suffix>)"},
        {secrets(" ike-x {\n  secret = 0xabc\n }\n"), "t.conf:3: secret: bad hex after 0x"},
        {secrets(" ike-x {\n  secret = 0s!!!!\n }\n"), "t.conf:3: secret: bad base64 after 0s"},
        {secrets(" ike-x {\n  secret = \"\"\n }\n"), "t.conf:3: secret: empty secret"},
        {secrets(" ike-x {\n  id-1 = C=DE, CN\n  secret = x\n }\n"),
         "t.conf:3: id-1: identity 'C=DE, CN': bad DN component 'CN' (want ATTR=value)"},
        {secrets(" ike-x {\n  foo = 1\n }\n"), "t.conf:3: unknown key 'secrets.ike-x.foo'"},
        {secrets(" private-x {\n  secret = pw\n }\n"), "t.conf:2: 'secrets.private-x' has no file"},
        {"authorities {\n ca {\n  crl = a.crl\n }\n}\n", "t.conf:2: authority 'ca' has no cacert"},
        {"authorities {\n ca {\n  cacert = a.pem\n  crl_uris = x\n }\n}\n",
         "t.conf:4: unknown key 'authorities.ca.crl_uris'"},
        // iked
        {iked(" port = abc\n"), "t.conf:2: port: bad port 'abc' (1..65535)"},
        {iked(" allow_legacy = 1\n"), "t.conf:2: allow_legacy: bad boolean '1' (yes, no, true, false)"},
        {iked(" retransmit_timeout = 0\n"), "t.conf:2: retransmit_timeout: bad time '0' (4, 4s, 2.5, 500ms)"},
        {iked(" retransmit_timeout = 1.2345\n"),
         "t.conf:2: retransmit_timeout: bad time '1.2345' (4, 4s, 2.5, 500ms)"},
        {iked(" retransmit_base = 0.5\n"), "t.conf:2: retransmit_base: bad number '0.5' (1.0..10.0)"},
        {iked(" retransmit_tries = 101\n"), "t.conf:2: retransmit_tries: bad number '101' (0..100)"},
        {iked(" fragment_size = 100\n"), "t.conf:2: fragment_size: bad number '100' (576..65535)"},
        {iked(" half_open_limit = 0\n"), "t.conf:2: half_open_limit: bad number '0' (1..4294967295)"},
        {iked(" control_socket =\n"), "t.conf:2: control_socket: needs a value"},
        {iked(" keepalive = 2d\n"), "t.conf:2: keepalive: keepalive longer than a day"},
        {iked(" listen = %any\n"), "t.conf:2: listen: bad address '%any' (literal IPv4 or IPv6 address)"},
        {iked(" log {\n  ike = loud\n }\n"),
         "t.conf:3: ike: bad level 'loud' (trace, debug, info, warning, error, critical, off)"},
        {iked(" log {\n  xyz = debug\n }\n"),
         "t.conf:3: unknown key 'iked.log.xyz' (default or a subsystem: ike, chd, cfg, net, enc, ...)"},
        {iked(" log = debug\n"), "t.conf:2: 'iked.log' must be a section, not a key"},
        {iked(" port {\n }\n"), "t.conf:2: 'iked.port' must be a key = value, not a section"},
        {iked(" charon {\n }\n"), "t.conf:2: unknown section 'iked.charon'"},
    };
    static_assert(std::size(cases) >= 40);
    for (const Case& c : cases) EXPECT_EQ(parse_err(c.text), c.error) << c.text;
}

TEST(IkeConfig, MissingFileIsAnError)
{
    std::string err;
    EXPECT_FALSE(load_ike_config("/nonexistent/ravelin-iked.conf", err));
    EXPECT_EQ(err, "/nonexistent/ravelin-iked.conf: cannot open (not a readable file)");
    EXPECT_FALSE(load_ike_config("/tmp", err));   // a directory is not a file
}

// --- a configuration with every key ---------------------------------------------------------

constexpr std::string_view full_config = R"(# every key once
iked {
    listen = 198.18.0.1, 2001:db8::1
    port = 1500
    port_nat_t = 14500
    control_socket = /run/ravelin/test.sock
    allow_legacy = yes
    cookie_threshold = 0
    half_open_limit = 100
    retransmit_timeout = 2.5
    retransmit_base = 1.5
    retransmit_tries = 3
    fragment_size = 1400
    keepalive = 30s
    keylog = /tmp/keys.log
    sa_sink = /tmp/sas.jsonl
    log {
        default = warning
        ike = debug
        chd = trace
    }
}
connections {
    gw {
        version = 2
        local_addrs = 198.18.0.1
        remote_addrs = 198.18.0.2, 198.18.0.3
        local_port = 4501
        remote_port = 4502
        proposals = aes256gcm16-prfsha384-ecp384, 3des-sha1-modp1024
        encap = yes
        mobike = no
        fragmentation = force
        dpd_delay = 30s
        dpd_timeout = 2m
        rekey_time = 8h
        reauth_time = 1d
        over_time = 10m
        rand_time = 5m
        keyingtries = 0
        send_certreq = no
        send_cert = always
        unique = no
        local-1 {
            auth = pubkey
            id = "C=DE, O=Ravelin, CN=gw-a"   # quoted: the comma stays
            certs = gw-a.pem, /etc/ravelin/x509/intermediate.pem
            private_key = private/gw-a.key
        }
        remote {
            auth = pubkey
            id = @gw-b.example.net
            cacerts = ca.pem
        }
        children {
            net {
                local_ts = 198.19.1.0/24, 2001:db8:1::/48
                remote_ts = 198.19.2.0/24[udp/53], 198.19.3.1-198.19.3.9
                esp_proposals = aes256gcm16-x25519-esn-noesn, aes128-sha256
                mode = transport
                start_action = start
                close_action = trap
                dpd_action = restart
                rekey_time = 20m
                life_time = 30m
                rand_time = 1m
                rekey_bytes = 1G
                life_bytes = 2G
                rand_bytes = 1M
                rekey_packets = 1000000
                life_packets = 2000000
                rand_packets = 1000
                replay_window = 4096
                copy_dscp = false
                reqid = 7
            }
        }
    }
}
secrets {
    ike-gw {
        id-a = C=DE, O=Ravelin, CN=gw-a
        id-b = @gw-b.example.net
        secret = 0x0102030405
    }
    private-gw {
        file = gw-a.key
        secret = "key passphrase"
    }
}
authorities {
    ca {
        cacert = ca.pem
        crl = ca.crl, /var/lib/ravelin/extra.crl
    }
}
)";

TEST(IkeConfig, EveryKey)
{
    const IkeConfig cfg = parse_ok(full_config, "/etc/ravelin/iked.conf");
    EXPECT_EQ(cfg.path, "/etc/ravelin/iked.conf");

    const DaemonConfig& d = cfg.daemon;
    EXPECT_EQ(d.listen, (std::vector<std::string>{"198.18.0.1", "2001:db8::1"}));
    EXPECT_EQ(d.port, 1500);
    EXPECT_EQ(d.port_nat_t, 14500);
    EXPECT_EQ(d.control_socket, "/run/ravelin/test.sock");
    EXPECT_TRUE(d.allow_legacy);
    EXPECT_EQ(d.cookie_threshold, 0u);
    EXPECT_EQ(d.half_open_limit, 100u);
    EXPECT_EQ(d.retransmit_timeout_ms, 2500u);
    EXPECT_DOUBLE_EQ(d.retransmit_base, 1.5);
    EXPECT_EQ(d.retransmit_tries, 3u);
    EXPECT_EQ(d.fragment_size, 1400u);
    EXPECT_EQ(d.keepalive_s, 30u);
    EXPECT_EQ(d.keylog, "/tmp/keys.log");
    EXPECT_EQ(d.sa_sink, "/tmp/sas.jsonl");
    EXPECT_EQ(d.log.default_level, "warning");
    EXPECT_EQ(d.log.subsystems, (std::map<std::string, std::string>{{"ike", "debug"}, {"chd", "trace"}}));

    ASSERT_EQ(cfg.connections.size(), 1u);
    const ConnectionConfig& c = cfg.connections[0];
    EXPECT_EQ(cfg.find("gw"), &c);
    EXPECT_EQ(cfg.find("nope"), nullptr);
    EXPECT_EQ(c.name, "gw");
    EXPECT_EQ(c.line, 24);
    EXPECT_EQ(c.local_addrs, std::vector<std::string>{"198.18.0.1"});
    EXPECT_EQ(c.remote_addrs, (std::vector<std::string>{"198.18.0.2", "198.18.0.3"}));
    EXPECT_EQ(c.local_port, 4501);
    EXPECT_EQ(c.remote_port, 4502);
    ASSERT_EQ(c.proposals.size(), 2u);
    EXPECT_EQ(c.proposals[0].encr, (std::vector<Transform>{{TransformType::encr, encr::aes_gcm_16, 256}}));
    EXPECT_EQ(c.proposals[0].prf, (std::vector<Transform>{{TransformType::prf, prf::hmac_sha2_384, 0}}));
    EXPECT_EQ(c.proposals[0].dh, (std::vector<Transform>{{TransformType::dh, dh::ecp384, 0}}));
    EXPECT_EQ(c.proposals[1].encr, (std::vector<Transform>{{TransformType::encr, encr::des3, 0}}));   // legacy allowed
    EXPECT_TRUE(c.encap);
    EXPECT_FALSE(c.mobike);
    EXPECT_EQ(c.fragmentation, Fragmentation::force);
    EXPECT_EQ(c.dpd_delay_s, 30u);
    EXPECT_EQ(c.dpd_timeout_s, 120u);
    EXPECT_EQ(c.rekey_time_s, 8 * 3600u);
    EXPECT_EQ(c.reauth_time_s, 86400u);
    EXPECT_EQ(c.over_time_s, 600u);
    EXPECT_EQ(c.rand_time_s, 300u);
    EXPECT_EQ(c.keyingtries, 0u);
    EXPECT_FALSE(c.send_certreq);
    EXPECT_EQ(c.send_cert, ConnectionConfig::SendCert::always);

    EXPECT_EQ(c.local.auth, AuthKind::pubkey);
    EXPECT_EQ(c.local.id.id.type, IdType::der_asn1_dn);
    EXPECT_EQ(c.local.id.text, "C=DE, O=Ravelin, CN=gw-a");
    // Relative file names are relative to the file that names them.
    EXPECT_EQ(c.local.certs, (std::vector<std::string>{"/etc/ravelin/gw-a.pem",
                                                       "/etc/ravelin/x509/intermediate.pem"}));
    EXPECT_EQ(c.local.private_key, "/etc/ravelin/private/gw-a.key");
    EXPECT_EQ(c.remote.auth, AuthKind::pubkey);
    EXPECT_EQ(c.remote.id.id.type, IdType::fqdn);
    EXPECT_EQ(std::string(c.remote.id.id.data.begin(), c.remote.id.id.data.end()), "gw-b.example.net");
    EXPECT_EQ(c.remote.cacerts, std::vector<std::string>{"/etc/ravelin/ca.pem"});

    ASSERT_EQ(c.children.size(), 1u);
    const ChildConfig& ch = c.children[0];
    EXPECT_EQ(ch.name, "net");
    EXPECT_EQ(ch.line, 56);
    ASSERT_EQ(ch.local_ts.size(), 2u);
    EXPECT_EQ(ch.local_ts[1].ts.start, ip("2001:db8:1::"));
    EXPECT_EQ(ch.local_ts[1].ts.end, ip("2001:db8:1:ffff:ffff:ffff:ffff:ffff"));
    ASSERT_EQ(ch.remote_ts.size(), 2u);
    EXPECT_EQ(ch.remote_ts[0].ts.protocol, 17);
    EXPECT_EQ(ch.remote_ts[0].ts.start_port, 53);
    EXPECT_EQ(ch.remote_ts[0].ts.end_port, 53);
    EXPECT_EQ(ch.remote_ts[1].ts.start, ip("198.19.3.1"));
    EXPECT_EQ(ch.remote_ts[1].ts.end, ip("198.19.3.9"));
    ASSERT_EQ(ch.esp_proposals.size(), 2u);
    EXPECT_EQ(ch.esp_proposals[0].esn, (std::vector<Transform>{{TransformType::esn, 1, 0}, {TransformType::esn, 0, 0}}));
    EXPECT_EQ(ch.esp_proposals[0].dh, (std::vector<Transform>{{TransformType::dh, dh::curve25519, 0}}));
    EXPECT_EQ(ch.esp_proposals[1].integ,
              (std::vector<Transform>{{TransformType::integ, integ::hmac_sha2_256_128, 0}}));
    EXPECT_EQ(ch.mode, ChildMode::transport);
    EXPECT_EQ(ch.start_action, StartAction::start);
    EXPECT_EQ(ch.close_action, CloseAction::trap);
    EXPECT_EQ(ch.dpd_action, DpdAction::restart);
    EXPECT_EQ(ch.rekey_time_s, 1200u);
    EXPECT_EQ(ch.life_time_s, 1800u);
    EXPECT_EQ(ch.rand_time_s, 60u);
    EXPECT_EQ(ch.rekey_bytes, 1ull << 30);
    EXPECT_EQ(ch.life_bytes, 2ull << 30);
    EXPECT_EQ(ch.rand_bytes, 1ull << 20);
    EXPECT_EQ(ch.rekey_packets, 1000000u);
    EXPECT_EQ(ch.life_packets, 2000000u);
    EXPECT_EQ(ch.rand_packets, 1000u);
    EXPECT_EQ(ch.replay_window, 4096u);
    EXPECT_FALSE(ch.copy_dscp);
    EXPECT_EQ(ch.reqid, 7u);

    ASSERT_EQ(cfg.secrets.size(), 1u);
    const SharedSecret& s = cfg.secrets[0];
    EXPECT_EQ(s.line, 81);
    ASSERT_EQ(s.ids.size(), 2u);
    EXPECT_EQ(s.ids[0].id.data, c.local.id.id.data);   // the same DN, quoted or not
    EXPECT_EQ(s.ids[1].id.type, IdType::fqdn);
    EXPECT_EQ(s.secret, (Bytes{1, 2, 3, 4, 5}));
    ASSERT_EQ(cfg.private_keys.size(), 1u);
    EXPECT_EQ(cfg.private_keys[0].name, "private-gw");
    EXPECT_EQ(cfg.private_keys[0].file, "/etc/ravelin/gw-a.key");
    EXPECT_EQ(cfg.private_keys[0].passphrase, Bytes(std::string_view("key passphrase").begin(),
                                                    std::string_view("key passphrase").end()));

    ASSERT_EQ(cfg.authorities.size(), 1u);
    EXPECT_EQ(cfg.authorities[0].name, "ca");
    EXPECT_EQ(cfg.authorities[0].cacert, "/etc/ravelin/ca.pem");
    EXPECT_EQ(cfg.authorities[0].crls,
              (std::vector<std::string>{"/etc/ravelin/ca.crl", "/var/lib/ravelin/extra.crl"}));
}

TEST(IkeConfig, Defaults)
{
    const IkeConfig cfg = parse_ok(R"(
connections {
    gw {
        local_addrs = 198.18.0.1
        children {
            net {
            }
        }
    }
    ikeonly {
    }
}
)");
    EXPECT_EQ(cfg.daemon.port, 500);
    EXPECT_EQ(cfg.daemon.port_nat_t, 4500);
    EXPECT_FALSE(cfg.daemon.allow_legacy);
    EXPECT_EQ(cfg.daemon.log.default_level, "info");
    ASSERT_EQ(cfg.connections.size(), 2u);
    const ConnectionConfig& c = cfg.connections[0];
    EXPECT_EQ(c.proposals.size(), default_ike_proposals().size());
    EXPECT_EQ(c.proposals[0].encr, default_ike_proposals()[0].encr);
    EXPECT_EQ(c.rekey_time_s, 14400u);
    EXPECT_EQ(c.fragmentation, Fragmentation::yes);
    EXPECT_EQ(c.local.auth, AuthKind::psk);
    // Local id: our only address. Remote id: anything the peer proves.
    EXPECT_EQ(c.local.id.id.type, IdType::ipv4);
    EXPECT_EQ(c.local.id.id.data, (Bytes{198, 18, 0, 1}));
    EXPECT_TRUE(c.remote.id.any);
    const ChildConfig& ch = c.children[0];
    EXPECT_EQ(ch.rekey_time_s, 3600u);
    EXPECT_EQ(ch.life_time_s, 3960u);
    EXPECT_EQ(ch.rand_time_s, 360u);
    EXPECT_EQ(ch.rekey_bytes, 0u);
    EXPECT_EQ(ch.life_bytes, 0u);
    EXPECT_EQ(ch.rand_packets, 0u);
    EXPECT_EQ(ch.mode, ChildMode::tunnel);
    EXPECT_TRUE(ch.copy_dscp);
    ASSERT_EQ(ch.local_ts.size(), 1u);
    EXPECT_TRUE(ch.local_ts[0].dynamic);
    ASSERT_EQ(ch.remote_ts.size(), 1u);
    EXPECT_TRUE(ch.remote_ts[0].dynamic);
    EXPECT_EQ(ch.esp_proposals.size(), default_esp_proposals().size());
    // An IKE-only connection is legal, as in swanctl; without an address
    // its local id is filled in at run time.
    EXPECT_TRUE(cfg.connections[1].children.empty());
    EXPECT_TRUE(cfg.connections[1].local.id.any);
}

TEST(IkeConfig, LifetimeRules)
{
    auto child_of = [](const std::string& body) {
        IkeConfig cfg = parse_ok(child(body));
        return cfg.connections.empty() || cfg.connections[0].children.empty()
                   ? ChildConfig{} : cfg.connections[0].children[0];
    };
    // Only rekey: life 110 %, rand the difference.
    ChildConfig c = child_of("    rekey_time = 10m\n    rekey_bytes = 100M\n    rekey_packets = 1000\n");
    EXPECT_EQ(c.rekey_time_s, 600u);
    EXPECT_EQ(c.life_time_s, 660u);
    EXPECT_EQ(c.rand_time_s, 60u);
    EXPECT_EQ(c.life_bytes, (100ull << 20) * 110 / 100);
    EXPECT_EQ(c.rand_bytes, c.life_bytes - (100ull << 20));
    EXPECT_EQ(c.life_packets, 1100u);
    EXPECT_EQ(c.rand_packets, 100u);
    // Rekey and life: rand is the difference.
    c = child_of("    rekey_time = 1h\n    life_time = 2h\n");
    EXPECT_EQ(c.rand_time_s, 3600u);
    // rekey 0 = never: no hard limit from it either.
    c = child_of("    rekey_time = 0\n");
    EXPECT_EQ(c.rekey_time_s, 0u);
    EXPECT_EQ(c.life_time_s, 0u);
    EXPECT_EQ(c.rand_time_s, 0u);
    // Only a hard limit.
    c = child_of("    rekey_time = 0\n    life_time = 1h\n");
    EXPECT_EQ(c.life_time_s, 3600u);
    EXPECT_EQ(c.rand_time_s, 0u);
    // Hard limit off, soft kept.
    c = child_of("    life_time = 0\n");
    EXPECT_EQ(c.rekey_time_s, 3600u);
    EXPECT_EQ(c.life_time_s, 0u);
    // Explicit rand wins.
    c = child_of("    rekey_time = 1h\n    rand_time = 0\n");
    EXPECT_EQ(c.life_time_s, 3960u);
    EXPECT_EQ(c.rand_time_s, 0u);
}

TEST(IkeConfig, DurationsAndCounts)
{
    struct Case {
        const char* text;
        uint64_t seconds;
    };
    for (const Case& c : {Case{"30", 30}, Case{"30s", 30}, Case{"10m", 600}, Case{"4h", 14400},
                          Case{"1d", 86400}, Case{"0s", 0}, Case{"0", 0}}) {
        IkeConfig cfg = parse_ok(conn(std::string("  dpd_delay = ") + c.text + "\n"));
        ASSERT_EQ(cfg.connections.size(), 1u);
        EXPECT_EQ(cfg.connections[0].dpd_delay_s, c.seconds) << c.text;
    }
    for (const char* bad : {"", "s", "1.5h", "1w", "h1", "1 h", "0x10"}) {
        std::string e = parse_err(conn(std::string("  dpd_delay = ") + bad + "\n"));
        EXPECT_NE(e.find("dpd_delay: bad duration"), std::string::npos) << bad << ": " << e;
    }
    struct Count {
        const char* text;
        uint64_t n;
    };
    for (const Count& c : {Count{"1000", 1000}, Count{"64k", 65536}, Count{"64K", 65536},
                           Count{"3M", 3ull << 20}, Count{"2G", 2ull << 30}}) {
        IkeConfig cfg = parse_ok(child(std::string("    rekey_packets = ") + c.text + "\n"));
        ASSERT_EQ(cfg.connections.size(), 1u);
        EXPECT_EQ(cfg.connections[0].children[0].rekey_packets, c.n) << c.text;
    }
    std::string e = parse_err(child("    life_bytes = 99999999999G\n"));
    EXPECT_EQ(e, "t.conf:5: life_bytes: bad count '99999999999G' (1000, 64k, 512M, 4G)");
    for (const char* ms : {"4", "4s", "500ms", "2.5", "0.25s"}) {
        IkeConfig cfg = parse_ok(iked(std::string(" retransmit_timeout = ") + ms + "\n"));
        const uint32_t expect = std::string(ms) == "500ms" ? 500 : std::string(ms) == "2.5" ? 2500
                              : std::string(ms) == "0.25s" ? 250 : 4000;
        EXPECT_EQ(cfg.daemon.retransmit_timeout_ms, expect) << ms;
    }
}

TEST(IkeConfig, SyntaxDetails)
{
    // Values run to the end of the line, a '#' or a '}'; quotes keep all
    // three and escapes; "name\n{" opens a section; CRLF line ends work.
    const IkeConfig cfg = parse_ok(
        "secrets\n{\r\n"
        "  ike-a { secret = one two   three }\n"
        "  ike-b {\n    secret = \"with # hash } brace \\\"q\\\" \\t tab\"  # comment\n  }\n"
        "  ike-c {\n    secret = \"line\\\n continued\"\n    id = gw-c\n  }\n"
        "}\n");
    ASSERT_EQ(cfg.secrets.size(), 3u);
    auto text = [](const Bytes& b) { return std::string(b.begin(), b.end()); };
    EXPECT_EQ(text(cfg.secrets[0].secret), "one two three");
    EXPECT_EQ(text(cfg.secrets[1].secret), "with # hash } brace \"q\" \t tab");
    EXPECT_EQ(text(cfg.secrets[2].secret), "line continued");
    EXPECT_EQ(cfg.secrets[2].line, 7);
    // The string spanned a line break: the next key's line is still right.
    EXPECT_EQ(parse_err("secrets {\n ike-c {\n  secret = \"a\\\nb\"\n  bad = 1\n }\n}\n"),
              "t.conf:5: unknown key 'secrets.ike-c.bad'");
    // A key named include is a key, not an include.
    EXPECT_EQ(parse_err("include = x\n"), "t.conf:1: unknown key 'include'");
    // Binary junk is refused, not looped over.
    EXPECT_EQ(parse_err(std::string_view("iked {\n port = 5\0\n}\n", 19)), "t.conf:2: NUL byte in a text file");
    EXPECT_EQ(parse_err("\x01\x02 = 1\n"), "t.conf:1: unknown key '\x01\x02'");
    // Empty input and comments only are an empty configuration.
    EXPECT_TRUE(parse_ok("").connections.empty());
    EXPECT_TRUE(parse_ok("# nothing\n\n   # here\n").connections.empty());
}

TEST(IkeConfig, SameNamedSectionsMergeAndLaterKeysWin)
{
    const IkeConfig cfg = parse_ok(R"(
connections {
    gw {
        remote_addrs = 198.18.0.2
        remote {
            auth = psk
        }
        rekey_time = 4h
    }
}
connections {
    gw {
        rekey_time = 2h
        remote {
            id = gw-b
        }
        children {
            a {
            }
        }
    }
    second {
    }
}
)");
    ASSERT_EQ(cfg.connections.size(), 2u);
    const ConnectionConfig& c = cfg.connections[0];
    EXPECT_EQ(c.name, "gw");
    EXPECT_EQ(c.line, 3);   // first definition
    EXPECT_EQ(c.remote_addrs, std::vector<std::string>{"198.18.0.2"});
    EXPECT_EQ(c.rekey_time_s, 7200u);
    EXPECT_EQ(c.remote.auth, AuthKind::psk);
    EXPECT_EQ(std::string(c.remote.id.id.data.begin(), c.remote.id.id.data.end()), "gw-b");
    EXPECT_EQ(c.children.size(), 1u);
    EXPECT_EQ(cfg.connections[1].name, "second");
}

TEST(IkeConfig, AllowLegacyMayFollowTheConnections)
{
    const IkeConfig cfg = parse_ok(conn("  proposals = aes128-sha1-modp1024\n") + iked(" allow_legacy = yes\n"));
    ASSERT_EQ(cfg.connections.size(), 1u);
    EXPECT_EQ(cfg.connections[0].proposals[0].dh[0].id, dh::modp1024);
}

// --- includes -------------------------------------------------------------------------------

class IkeConfigFiles : public ::testing::Test {
protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/ravelin-ike-config-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override
    {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    std::string write(const std::string& rel, const std::string& text)
    {
        const fs::path p = fs::path(dir_) / rel;
        fs::create_directories(p.parent_path());
        std::ofstream(p) << text;
        return p.string();
    }
    std::string dir_;
};

TEST_F(IkeConfigFiles, IncludesAreRelativeToTheIncludingFileAndGlob)
{
    const std::string main = write("iked.conf", "iked {\n  port = 1500\n}\ninclude conf.d/*.conf\n"
                                                "connections {\n  include conns/gw.inc\n}\n"
                                                "include empty.d/*.conf\n");
    write("conf.d/10-secrets.conf", "secrets {\n  ike-1 {\n    secret = one\n  }\n}\n");
    write("conf.d/20-secrets.conf", "secrets {\n  ike-2 {\n    secret = two\n  }\n}\n");
    write("conf.d/ignored.txt", "this is not = read\n");
    // Inside a section: the included file's keys land in that section.
    write("conns/gw.inc", "gw {\n  remote_addrs = 198.18.0.2\n  include ../child.inc\n}\n");
    write("child.inc", "children {\n  net {\n    local_ts = 198.19.1.0/24\n  }\n}\n");
    std::string err;
    auto cfg = load_ike_config(main, err);
    ASSERT_TRUE(cfg) << err;
    EXPECT_EQ(cfg->daemon.port, 1500);
    ASSERT_EQ(cfg->secrets.size(), 2u);   // glob order: 10- then 20-
    EXPECT_EQ(cfg->secrets[0].secret, (Bytes{'o', 'n', 'e'}));
    EXPECT_EQ(cfg->secrets[1].secret, (Bytes{'t', 'w', 'o'}));
    ASSERT_EQ(cfg->connections.size(), 1u);
    EXPECT_EQ(cfg->connections[0].remote_addrs, std::vector<std::string>{"198.18.0.2"});
    ASSERT_EQ(cfg->connections[0].children.size(), 1u);
    EXPECT_EQ(cfg->connections[0].children[0].local_ts[0].ts.start, ip("198.19.1.0"));
}

TEST_F(IkeConfigFiles, ErrorsNameTheIncludedFile)
{
    const std::string main = write("main.conf", "# a comment\ninclude sub.conf\n");
    const std::string sub = write("sub.conf", "connections {\n  gw {\n    encap = perhaps\n  }\n}\n");
    std::string err;
    EXPECT_FALSE(load_ike_config(main, err));
    EXPECT_EQ(err, sub + ":3: encap: bad boolean 'perhaps' (yes, no, true, false)");

    write("unbalanced.conf", "include open.conf\n}\n");
    const std::string open = write("open.conf", "connections {\n");
    EXPECT_FALSE(load_ike_config(dir_ + "/unbalanced.conf", err));
    EXPECT_EQ(err, open + ":1: section 'connections' has no closing '}'");

    write("missing.conf", "\n\ninclude nothere.conf\n");
    EXPECT_FALSE(load_ike_config(dir_ + "/missing.conf", err));
    EXPECT_EQ(err, dir_ + "/missing.conf:3: cannot open include file '" + dir_ + "/nothere.conf'");

    // A file that includes itself stops at the depth limit.
    const std::string loop = write("loop.conf", "include loop.conf\n");
    EXPECT_FALSE(load_ike_config(loop, err));
    EXPECT_EQ(err, loop + ":1: includes nested too deeply");

    // Quoted include names may hold spaces.
    write("with space.conf", "iked {\n  port = 600\n}\n");
    write("quoted.conf", "include \"with space.conf\"\n");
    auto cfg = load_ike_config(dir_ + "/quoted.conf", err);
    ASSERT_TRUE(cfg) << err;
    EXPECT_EQ(cfg->daemon.port, 600);

    // Files larger than the bound are refused before they are parsed.
    write("huge.conf", std::string((1 << 20) + 1, '#'));
    EXPECT_FALSE(load_ike_config(dir_ + "/huge.conf", err));
    EXPECT_EQ(err, dir_ + "/huge.conf:1: file is larger than 1048576 bytes");
}

// --- identities ------------------------------------------------------------------------------

std::string str(const Bytes& b) { return std::string(b.begin(), b.end()); }

TEST(IkeConfig, IdentitiesOfEveryType)
{
    std::string err;
    auto v4 = parse_identity("198.18.0.1", err);
    ASSERT_TRUE(v4) << err;
    EXPECT_EQ(v4->id.type, IdType::ipv4);
    EXPECT_EQ(v4->id.data, (Bytes{198, 18, 0, 1}));

    auto v6 = parse_identity("2001:db8::1", err);
    ASSERT_TRUE(v6) << err;
    EXPECT_EQ(v6->id.type, IdType::ipv6);
    Bytes six(16, 0);
    six[0] = 0x20, six[1] = 0x01, six[2] = 0x0d, six[3] = 0xb8, six[15] = 1;
    EXPECT_EQ(v6->id.data, six);

    auto fqdn = parse_identity("gw.example.net", err);
    ASSERT_TRUE(fqdn) << err;
    EXPECT_EQ(fqdn->id.type, IdType::fqdn);
    EXPECT_EQ(str(fqdn->id.data), "gw.example.net");
    EXPECT_EQ(fqdn->text, "gw.example.net");

    auto at = parse_identity("@gw", err);
    ASSERT_TRUE(at) << err;
    EXPECT_EQ(at->id.type, IdType::fqdn);
    EXPECT_EQ(str(at->id.data), "gw");
    EXPECT_EQ(at->text, "@gw");

    auto mail = parse_identity("user@example.net", err);
    ASSERT_TRUE(mail) << err;
    EXPECT_EQ(mail->id.type, IdType::rfc822);
    EXPECT_EQ(str(mail->id.data), "user@example.net");

    auto keyid = parse_identity("@#0a0B", err);
    ASSERT_TRUE(keyid) << err;
    EXPECT_EQ(keyid->id.type, IdType::key_id);
    EXPECT_EQ(keyid->id.data, (Bytes{0x0a, 0x0b}));

    auto any = parse_identity("%any", err);
    ASSERT_TRUE(any) << err;
    EXPECT_TRUE(any->any);

    for (auto [bad, msg] : {std::pair{"", "empty identity"},
                            std::pair{"@", "identity '@' names nothing"},
                            std::pair{"@#xyz", "identity '@#xyz': bad hex key id"},
                            std::pair{"CN=", "identity 'CN=': bad DN component 'CN=' (want ATTR=value)"},
                            std::pair{"C=DE,,CN=x", "identity 'C=DE,,CN=x': bad DN component '' (want ATTR=value)"}}) {
        EXPECT_FALSE(parse_identity(bad, err)) << bad;
        EXPECT_EQ(err, msg);
    }
    EXPECT_FALSE(parse_identity(std::string(1025, 'a'), err));
    EXPECT_EQ(err, "identity longer than 1024 characters");
}

// Decodes DER with OpenSSL and returns (short name, value, ASN.1 string type) per RDN.
std::vector<std::tuple<std::string, std::string, int>> decode_dn(const Bytes& der)
{
    const unsigned char* p = der.data();
    std::unique_ptr<X509_NAME, decltype(&X509_NAME_free)> name(d2i_X509_NAME(nullptr, &p, long(der.size())),
                                                               X509_NAME_free);
    EXPECT_TRUE(name);
    EXPECT_EQ(p, der.data() + der.size());   // all of it consumed
    std::vector<std::tuple<std::string, std::string, int>> out;
    if (!name) return out;
    for (int i = 0; i < X509_NAME_entry_count(name.get()); ++i) {
        X509_NAME_ENTRY* e = X509_NAME_get_entry(name.get(), i);
        ASN1_STRING* d = X509_NAME_ENTRY_get_data(e);
        out.emplace_back(OBJ_nid2sn(OBJ_obj2nid(X509_NAME_ENTRY_get_object(e))),
                         std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(d)),
                                     std::size_t(ASN1_STRING_length(d))),
                         ASN1_STRING_type(d));
    }
    return out;
}

TEST(IkeConfig, DistinguishedNamesEncodeToDer)
{
    std::string err;
    auto dn = parse_identity("C=DE, O=Ravelin Test, OU=Gateways, CN=gw-a.example.net", err);
    ASSERT_TRUE(dn) << err;
    EXPECT_EQ(dn->id.type, IdType::der_asn1_dn);
    using E = std::tuple<std::string, std::string, int>;
    EXPECT_EQ(decode_dn(dn->id.data),
              (std::vector<E>{{"C", "DE", V_ASN1_PRINTABLESTRING},
                              {"O", "Ravelin Test", V_ASN1_PRINTABLESTRING},
                              {"OU", "Gateways", V_ASN1_PRINTABLESTRING},
                              {"CN", "gw-a.example.net", V_ASN1_PRINTABLESTRING}}));
    // The DER starts with a SEQUENCE of SETs.
    EXPECT_EQ(dn->id.data[0], 0x30);

    // Slash form gives the same bytes; non-printable text becomes UTF8String;
    // long attribute names and numeric OIDs work too.
    auto slash = parse_identity("/C=DE/O=Ravelin Test/OU=Gateways/CN=gw-a.example.net", err);
    ASSERT_TRUE(slash) << err;
    EXPECT_EQ(slash->id.data, dn->id.data);
    auto utf8 = parse_identity("CN=J\xc3\xbcrgen_gw, emailAddress=ops@example.net, 2.5.4.5=42", err);
    ASSERT_TRUE(utf8) << err;
    EXPECT_EQ(decode_dn(utf8->id.data),
              (std::vector<E>{{"CN", "J\xc3\xbcrgen_gw", V_ASN1_UTF8STRING},
                              {"emailAddress", "ops@example.net", V_ASN1_UTF8STRING},
                              {"serialNumber", "42", V_ASN1_PRINTABLESTRING}}));
}

// --- traffic selectors ------------------------------------------------------------------------

TEST(IkeConfig, TrafficSelectorSyntax)
{
    struct Case {
        const char* text;
        const char* start;
        const char* end;
        uint8_t proto;
        uint16_t lo, hi;
    };
    const Case cases[] = {
        {"198.19.1.0/24", "198.19.1.0", "198.19.1.255", 0, 0, 65535},
        {"198.19.1.7", "198.19.1.7", "198.19.1.7", 0, 0, 65535},
        {"198.19.1.7/32", "198.19.1.7", "198.19.1.7", 0, 0, 65535},
        {"0.0.0.0/0", "0.0.0.0", "255.255.255.255", 0, 0, 65535},
        {"198.19.1.10-198.19.1.20", "198.19.1.10", "198.19.1.20", 0, 0, 65535},
        {"2001:db8::/32", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 0, 0, 65535},
        {"::/0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0, 0, 65535},
        {"2001:db8::1-2001:db8::9", "2001:db8::1", "2001:db8::9", 0, 0, 65535},
        {"0.0.0.0/0[udp/53]", "0.0.0.0", "255.255.255.255", 17, 53, 53},
        {"198.19.0.0/16[tcp]", "198.19.0.0", "198.19.255.255", 6, 0, 65535},
        {"198.19.0.0/16[tcp/1000-2000]", "198.19.0.0", "198.19.255.255", 6, 1000, 2000},
        {"198.19.0.0/16[tcp/%any]", "198.19.0.0", "198.19.255.255", 6, 0, 65535},
        {"198.19.0.0/16[6/https]", "198.19.0.0", "198.19.255.255", 6, 443, 443},
        {"198.19.0.0/16[udp/domain]", "198.19.0.0", "198.19.255.255", 17, 53, 53},
        {"198.19.0.0/16[sctp/5000]", "198.19.0.0", "198.19.255.255", 132, 5000, 5000},
        {"198.19.0.0/16[any]", "198.19.0.0", "198.19.255.255", 0, 0, 65535},
        {"198.19.0.0/16[%any]", "198.19.0.0", "198.19.255.255", 0, 0, 65535},
        {"198.19.0.0/16[icmp/8]", "198.19.0.0", "198.19.255.255", 1, 0x0800, 0x08ff},
        {"2001:db8::/32[icmpv6/128]", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 58, 0x8000, 0x80ff},
        {"198.19.0.0/16[47]", "198.19.0.0", "198.19.255.255", 47, 0, 65535},
    };
    for (const Case& c : cases) {
        std::string err;
        auto ts = parse_ts(c.text, err);
        ASSERT_TRUE(ts) << c.text << ": " << err;
        EXPECT_FALSE(ts->dynamic) << c.text;
        EXPECT_EQ(ts->ts.start, ip(c.start)) << c.text;
        EXPECT_EQ(ts->ts.end, ip(c.end)) << c.text;
        EXPECT_EQ(ts->ts.protocol, c.proto) << c.text;
        EXPECT_EQ(ts->ts.start_port, c.lo) << c.text;
        EXPECT_EQ(ts->ts.end_port, c.hi) << c.text;
    }
    std::string err;
    auto dyn = parse_ts("dynamic", err);
    ASSERT_TRUE(dyn) << err;
    EXPECT_TRUE(dyn->dynamic);
    auto dyn_tcp = parse_ts("dynamic[tcp/22]", err);
    ASSERT_TRUE(dyn_tcp) << err;
    EXPECT_TRUE(dyn_tcp->dynamic);
    EXPECT_EQ(dyn_tcp->ts.protocol, 6);
    EXPECT_EQ(dyn_tcp->ts.start_port, 22);
    EXPECT_TRUE(parse_ts("%dynamic", err));

    for (auto [bad, msg] : {
             std::pair{"198.19.1.0-2001:db8::1", "bad address range '198.19.1.0-2001:db8::1'"},
             std::pair{"2001:db8::/129", "bad subnet '2001:db8::/129'"},
             std::pair{"198.19.1.0/", "bad subnet '198.19.1.0/'"},
             std::pair{"198.19.0.0/16[udp/]", "traffic selector '198.19.0.0/16[udp/]': empty port after '/'"},
             std::pair{"198.19.0.0/16[256]", "traffic selector '198.19.0.0/16[256]': bad protocol '256'"},
             std::pair{"198.19.0.0/16[tcp/2000-1000]", "traffic selector '198.19.0.0/16[tcp/2000-1000]': bad port '2000-1000'"},
             std::pair{"198.19.0.0/16[icmp/300]", "traffic selector '198.19.0.0/16[icmp/300]': bad ICMP type '300'"},
             std::pair{"", "bad traffic selector ''"}}) {
        EXPECT_FALSE(parse_ts(bad, err)) << bad;
        EXPECT_EQ(err, msg) << bad;
    }
}

// --- secrets ---------------------------------------------------------------------------------------

TEST(IkeConfig, SecretEncodings)
{
    const IkeConfig cfg = parse_ok(secrets(
        " ike-hex {\n  secret = 0xDEADbeef\n }\n"
        " ike-b64 {\n  secret = 0sAQIDBA==\n }\n"
        " ike-b64b {\n  secret = 0sAQID\n }\n"
        " ike-b64c {\n  secret = 0sAQIDBAU=\n }\n"
        " ike-text {\n  secret = \"text with 0x: a prefix only where it leads\"\n }\n"
        " ike-plain {\n  secret = plain-text\n  id = %any\n }\n"
        " ike {\n  secret = \"quoted text\"\n }\n"));
    ASSERT_EQ(cfg.secrets.size(), 7u);
    EXPECT_EQ(cfg.secrets[0].secret, (Bytes{0xde, 0xad, 0xbe, 0xef}));
    EXPECT_EQ(cfg.secrets[1].secret, (Bytes{1, 2, 3, 4}));
    EXPECT_EQ(cfg.secrets[2].secret, (Bytes{1, 2, 3}));
    EXPECT_EQ(cfg.secrets[3].secret, (Bytes{1, 2, 3, 4, 5}));
    EXPECT_EQ(str(cfg.secrets[4].secret), "text with 0x: a prefix only where it leads");
    EXPECT_EQ(str(cfg.secrets[5].secret), "plain-text");
    ASSERT_EQ(cfg.secrets[5].ids.size(), 1u);
    EXPECT_TRUE(cfg.secrets[5].ids[0].any);
    EXPECT_TRUE(cfg.secrets[6].ids.empty());
    EXPECT_EQ(str(cfg.secrets[6].secret), "quoted text");
    for (const char* bad : {"0sAQI", "0sA===", "0s====", "0sAQ=D"}) {
        EXPECT_EQ(parse_err(secrets(std::string(" ike-x {\n  secret = ") + bad + "\n }\n")),
                  "t.conf:3: secret: bad base64 after 0s") << bad;
    }
    EXPECT_EQ(parse_err(secrets(" ike-x {\n  secret = 0xzz\n }\n")), "t.conf:3: secret: bad hex after 0x");
}

TEST(IkeConfig, PskWithoutMatchingSecretLoads)
{
    // strongSwan looks the PSK up when it authenticates; so does the engine.
    const IkeConfig cfg = parse_ok(conn("  local {\n   auth = psk\n   id = gw-a\n  }\n"));
    EXPECT_TRUE(cfg.secrets.empty());
    ASSERT_EQ(cfg.connections.size(), 1u);
}

// --- reload equality ----------------------------------------------------------------------------------

TEST(IkeConfig, SameConnection)
{
    const std::string base = std::string(full_config);
    const IkeConfig a = parse_ok(base);
    // Comments and blank lines move every line number: still the same.
    const IkeConfig moved = parse_ok("# new header\n\n\n" + base);
    ASSERT_EQ(a.connections.size(), 1u);
    ASSERT_EQ(moved.connections.size(), 1u);
    EXPECT_NE(a.connections[0].line, moved.connections[0].line);
    EXPECT_TRUE(same_connection(a.connections[0], moved.connections[0]));
    EXPECT_TRUE(same_connection(a.connections[0], a.connections[0]));

    auto changed = [&](const std::string& from, const std::string& to) {
        std::string text = base;
        const auto pos = text.find(from);
        EXPECT_NE(pos, std::string::npos) << from;
        text.replace(pos, from.size(), to);
        IkeConfig b = parse_ok(text);
        EXPECT_EQ(b.connections.size(), 1u) << to;
        return !b.connections.empty() && !same_connection(a.connections[0], b.connections[0]);
    };
    EXPECT_TRUE(changed("remote_addrs = 198.18.0.2, 198.18.0.3", "remote_addrs = 198.18.0.3, 198.18.0.2"));
    EXPECT_TRUE(changed("local_port = 4501", "local_port = 4500"));
    EXPECT_TRUE(changed("aes256gcm16-prfsha384-ecp384", "aes256gcm16-prfsha384-ecp521"));
    EXPECT_TRUE(changed("fragmentation = force", "fragmentation = yes"));
    EXPECT_TRUE(changed("dpd_delay = 30s", "dpd_delay = 31s"));
    EXPECT_TRUE(changed("keyingtries = 0", "keyingtries = 3"));
    EXPECT_TRUE(changed("send_cert = always", "send_cert = never"));
    EXPECT_TRUE(changed("id = @gw-b.example.net", "id = @gw-c.example.net"));
    EXPECT_TRUE(changed("cacerts = ca.pem", "cacerts = other-ca.pem"));
    EXPECT_TRUE(changed("private_key = private/gw-a.key", "private_key = private/gw-b.key"));
    EXPECT_TRUE(changed("198.19.2.0/24[udp/53]", "198.19.2.0/24[udp/54]"));
    EXPECT_TRUE(changed("esp_proposals = aes256gcm16-x25519-esn-noesn", "esp_proposals = aes256gcm16-x25519-esn"));
    EXPECT_TRUE(changed("mode = transport", "mode = tunnel"));
    EXPECT_TRUE(changed("life_time = 30m", "life_time = 31m"));
    EXPECT_TRUE(changed("rand_packets = 1000", "rand_packets = 1001"));
    EXPECT_TRUE(changed("replay_window = 4096", "replay_window = 64"));
    EXPECT_TRUE(changed("reqid = 7", "reqid = 8"));
    EXPECT_TRUE(changed("        net {\n", "        net2 {\n"));
    // Spelling of an identity or of a time that means the same is no change.
    EXPECT_FALSE(changed("id = @gw-b.example.net", "id = gw-b.example.net"));
    EXPECT_FALSE(changed("rekey_time = 8h", "rekey_time = 480m"));
    EXPECT_FALSE(changed("secret = 0x0102030405", "secret = 0sAQIDBAU="));
}

// --- strongSwan's testbed configurations ---------------------------------------------------------------

std::string vector_path(const std::string& rel)
{
    const char* dir = std::getenv("RAVELIN_VECTORS");
    if (!dir || !*dir) throw std::runtime_error("RAVELIN_VECTORS is not set (point it at tests/vectors)");
    return std::string(dir) + "/" + rel;
}

TEST(IkeConfig, StrongSwanTestbedConfigsParse)
{
    for (const char side : {'a', 'b'}) {
        std::string err;
        auto cfg = load_ike_config(vector_path(std::string("ike/swanctl-") + side + ".conf"), err);
        ASSERT_TRUE(cfg) << err;
        const std::string self = side == 'a' ? "198.18.0.1" : "198.18.0.2";
        const std::string peer = side == 'a' ? "198.18.0.2" : "198.18.0.1";
        ASSERT_EQ(cfg->connections.size(), 1u);
        const ConnectionConfig& c = cfg->connections[0];
        EXPECT_EQ(c.name, "ipgw");
        EXPECT_EQ(c.local_addrs, std::vector<std::string>{self});
        EXPECT_EQ(c.remote_addrs, std::vector<std::string>{peer});
        ASSERT_EQ(c.proposals.size(), 1u);
        EXPECT_EQ(c.proposals[0].encr, (std::vector<Transform>{{TransformType::encr, encr::aes_gcm_16, 256}}));
        EXPECT_EQ(c.proposals[0].prf, (std::vector<Transform>{{TransformType::prf, prf::hmac_sha2_256, 0}}));
        EXPECT_TRUE(c.proposals[0].integ.empty());
        EXPECT_EQ(c.proposals[0].dh, (std::vector<Transform>{{TransformType::dh, dh::curve25519, 0}}));
        EXPECT_FALSE(c.encap);
        EXPECT_FALSE(c.mobike);
        EXPECT_EQ(c.fragmentation, Fragmentation::yes);
        EXPECT_EQ(c.dpd_delay_s, 0u);
        EXPECT_EQ(c.keyingtries, 1u);
        EXPECT_EQ(c.rekey_time_s, 4 * 3600u);
        EXPECT_EQ(c.reauth_time_s, 0u);
        EXPECT_EQ(c.local.auth, AuthKind::psk);
        EXPECT_EQ(c.local.id.id.type, IdType::ipv4);
        EXPECT_EQ(c.local.id.text, self);
        EXPECT_EQ(c.remote.auth, AuthKind::psk);
        EXPECT_EQ(c.remote.id.text, peer);
        EXPECT_EQ(c.remote.id.id.type, IdType::ipv4);

        ASSERT_EQ(c.children.size(), 1u);
        const ChildConfig& ch = c.children[0];
        EXPECT_EQ(ch.name, "net");
        EXPECT_EQ(ch.mode, ChildMode::tunnel);
        const char* mine = side == 'a' ? "198.19.1.0" : "198.19.2.0";
        const char* theirs = side == 'a' ? "198.19.2.0" : "198.19.1.0";
        ASSERT_EQ(ch.local_ts.size(), 1u);
        ASSERT_EQ(ch.remote_ts.size(), 1u);
        EXPECT_EQ(ch.local_ts[0].ts.start, ip(mine));
        EXPECT_EQ(ch.local_ts[0].ts.end.bytes[3], 255);
        EXPECT_EQ(ch.remote_ts[0].ts.start, ip(theirs));
        ASSERT_EQ(ch.esp_proposals.size(), 1u);
        EXPECT_EQ(ch.esp_proposals[0].encr, (std::vector<Transform>{{TransformType::encr, encr::aes_gcm_16, 256}}));
        EXPECT_EQ(ch.esp_proposals[0].dh, (std::vector<Transform>{{TransformType::dh, dh::curve25519, 0}}));
        EXPECT_EQ(ch.esp_proposals[0].esn, (std::vector<Transform>{{TransformType::esn, 0, 0}}));
        EXPECT_EQ(ch.rekey_time_s, 3600u);
        EXPECT_EQ(ch.life_time_s, 66 * 60u);
        EXPECT_EQ(ch.rand_time_s, 6 * 60u);
        EXPECT_EQ(ch.start_action, StartAction::none);
        EXPECT_EQ(ch.close_action, CloseAction::none);
        EXPECT_EQ(ch.dpd_action, DpdAction::clear);

        ASSERT_EQ(cfg->secrets.size(), 1u);
        const SharedSecret& s = cfg->secrets[0];
        ASSERT_EQ(s.ids.size(), 2u);
        EXPECT_EQ(s.ids[0].text, "198.18.0.1");
        EXPECT_EQ(s.ids[1].id.data, (Bytes{198, 18, 0, 2}));
        EXPECT_EQ(str(s.secret), "ipgw-interop-psk-0123456789abcdef");
    }
}

} // namespace
} // namespace ravelin::ike

// --- iked.metrics ------------------------------------------------------------------------------

namespace ravelin::ike {
namespace {

TEST(IkeConfig, MetricsSectionDefaultsAndKeys)
{
    const IkeConfig none = parse_ok(iked(" port = 500\n"));
    EXPECT_FALSE(none.daemon.metrics.enabled);
    EXPECT_EQ(none.daemon.metrics.listen, "127.0.0.1");
    EXPECT_EQ(none.daemon.metrics.port, 9814);
    EXPECT_EQ(none.daemon.metrics.dataplane, "");

    const IkeConfig all = parse_ok(iked(" metrics {\n  enabled = yes\n  listen = 2001:db8::7\n  port = 19814\n"
                                        "  dataplane = gw-1.a_b\n }\n"));
    EXPECT_TRUE(all.daemon.metrics.enabled);
    EXPECT_EQ(all.daemon.metrics.listen, "2001:db8::7");
    EXPECT_EQ(all.daemon.metrics.port, 19814);
    EXPECT_EQ(all.daemon.metrics.dataplane, "gw-1.a_b");
}

TEST(IkeConfig, BadMetricsSettingsNameTheLine)
{
    EXPECT_EQ(parse_err(iked(" metrics {\n  listen = localhost\n }\n")),
              "t.conf:3: listen: 'localhost' is not a numeric IPv4 or IPv6 address");
    EXPECT_EQ(parse_err(iked(" metrics {\n  port = 0\n }\n")), "t.conf:3: port: bad port '0' (1..65535)");
    EXPECT_EQ(parse_err(iked(" metrics {\n  enabled = maybe\n }\n")).substr(0, 18), "t.conf:3: enabled:");
    EXPECT_EQ(parse_err(iked(" metrics {\n  dataplane = ../etc/x\n }\n")),
              "t.conf:3: dataplane: bad file prefix '../etc/x' (up to 64 of A-Z a-z 0-9 _ - .)");
    EXPECT_EQ(parse_err(iked(" metrics {\n  color = red\n }\n")), "t.conf:3: unknown key 'iked.metrics.color'");
    EXPECT_EQ(parse_err(iked(" metrics {\n  inner {\n  }\n }\n")), "t.conf:3: unknown section 'iked.metrics.inner'");
    EXPECT_EQ(parse_err(iked(" metrics = yes\n")), "t.conf:2: 'iked.metrics' must be a section, not a key");
}

} // namespace
} // namespace ravelin::ike
