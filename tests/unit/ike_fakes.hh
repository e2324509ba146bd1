// Test doubles for the IKE engine's interfaces, shared by the engine's and
// the daemon's tests: an in-memory wire and a seeded, deterministic Rng
// (which also makes the DH keys reproducible).
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <span>

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

} // namespace ravelin::ike::fakes
