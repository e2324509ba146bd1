// Test doubles for the IKE engine's interfaces, shared by the engine's and
// the daemon's tests: an in-memory wire, a seeded, deterministic Rng
// (which also makes the DH keys reproducible), and the configuration of one
// side of a PSK tunnel between two test engines.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "config.hh"
#include "engine.hh"

namespace ravelin::ike::fakes {

struct Datagram {
    Endpoint from, to;
    Bytes data;
};

// Collects what an engine sends; the test delivers it.
class Wire final : public Transport {
public:
    std::deque<Datagram> out;
    unsigned keepalives = 0;
    void send(const Endpoint& local, const Endpoint& remote, ByteView m) override
    {
        out.push_back({local, remote, Bytes(m.begin(), m.end())});
    }
    void send_keepalive(const Endpoint&, const Endpoint&) override { ++keepalives; }
};

class SeededRng final : public Rng {
public:
    explicit SeededRng(uint64_t seed) : g_(seed) {}
    void fill(std::span<uint8_t> o) override
    {
        for (auto& b : o) b = uint8_t(g_());
    }
    bool deterministic() const override { return true; }

private:
    std::mt19937_64 g_;
};

// Delivers what two engines send each other until both wires are quiet (at
// most `rounds` rounds), at `now`.
inline void pump(Wire& wire_a, Engine& a, Wire& wire_b, Engine& b, TimePoint now, int rounds = 100)
{
    for (int round = 0; round < rounds && (!wire_a.out.empty() || !wire_b.out.empty()); ++round) {
        while (!wire_a.out.empty()) {
            Datagram d = std::move(wire_a.out.front());
            wire_a.out.pop_front();
            b.receive(now, d.to, d.from, d.data);
        }
        while (!wire_b.out.empty()) {
            Datagram d = std::move(wire_b.out.front());
            wire_b.out.pop_front();
            a.receive(now, d.to, d.from, d.data);
        }
    }
}

// One side of a PSK tunnel (connection "gw") as ravelin-iked config text.
// Every test file fills in what it varies; the rest is the same everywhere.
struct PskSide {
    struct Child {
        std::string name = "net";
        std::string local_ts, remote_ts;
        std::string esp = "aes256gcm16-x25519";
        std::string extra;        // more lines inside the child
    };
    std::string me, peer, my_id, peer_id;
    std::string ike = "aes256gcm16-prfsha256-x25519";
    std::string psk = "a shared secret of some length";
    std::string secret_ids;       // the secret's id lines; empty: id-a = my_id, id-b = peer_id
    std::string daemon;           // lines inside iked { }; empty: no iked section
    std::string conn_extra;       // more lines inside the connection
    std::vector<Child> children;

    std::string text() const
    {
        std::string out;
        if (!daemon.empty()) out += "iked {\n" + daemon + "\n}\n";
        out += fmt::format("connections {{\n  gw {{\n    local_addrs = {}\n    remote_addrs = {}\n"
                           "    proposals = {}\n{}\n"
                           "    local {{\n      auth = psk\n      id = {}\n    }}\n"
                           "    remote {{\n      auth = psk\n      id = {}\n    }}\n    children {{\n",
                           me, peer, ike, conn_extra, my_id, peer_id);
        for (const Child& c : children)
            out += fmt::format("      {} {{\n        local_ts = {}\n        remote_ts = {}\n"
                               "        esp_proposals = {}\n{}\n      }}\n",
                               c.name, c.local_ts, c.remote_ts, c.esp, c.extra);
        out += fmt::format("    }}\n  }}\n}}\nsecrets {{\n  ike-gw {{\n{}\n    secret = \"{}\"\n  }}\n}}\n",
                           secret_ids.empty() ? "    id-a = " + my_id + "\n    id-b = " + peer_id : secret_ids,
                           psk);
        return out;
    }
};

// The parsed config, or an empty one and a test failure with the reason.
inline IkeConfig parse_config(const std::string& text)
{
    std::string error;
    auto c = parse_ike_config(text, "test.conf", error);
    EXPECT_TRUE(c) << error;
    return c ? *c : IkeConfig{};
}

} // namespace ravelin::ike::fakes
