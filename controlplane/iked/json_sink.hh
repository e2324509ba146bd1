// SA sinks for standalone mode, where there is no data plane to take the
// Child SAs:
//
//   LoggingSaSink  logs each install/remove (names, SPIs, algorithms; never keys)
//   JsonSaSink     also appends one JSON object per event to a file, keys
//                  included, for tests and debugging (e.g. to decrypt ESP
//                  captured next to a standalone iked). The file is created
//                  0600 and each line is flushed when written.
//
// One line per SA direction and event, keys in this order:
//   {"event":"install","connection":"gw","child":"net","reqid":1,
//    "direction":"in","spi":"0xc6ebc868","mode":"tunnel","encr":"AES_GCM_16",
//    "encr_key_bits":256,"encr_key":"<key then 4-byte salt, hex>",
//    "integ":null,"integ_key":null,"esn":false,"local":"198.18.0.1",
//    "remote":"198.18.0.2","udp_encap":true,"local_port":4500,
//    "remote_port":4500,"local_ts":["198.19.1.0/24"],"remote_ts":["198.19.2.0/24"]}
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "engine.hh"

namespace ravelin::iked {

// The JSON line (without newline) for one direction of a Child SA.
std::string sa_event_json(std::string_view event, const ike::ChildSaRecord& record,
                          const SaDescriptor& sa);

class LoggingSaSink : public ike::SaSink {
public:
    void install_inbound(const ike::ChildSaRecord& sa) override;
    void install_outbound(const ike::ChildSaRecord& sa) override;
    void remove_inbound(const ike::ChildSaRecord& sa) override;
    void remove_outbound(const ike::ChildSaRecord& sa) override;

    uint64_t installed() const { return installed_; }
    uint64_t removed() const { return removed_; }

protected:
    virtual void event(std::string_view what, const ike::ChildSaRecord& record, const SaDescriptor& sa);

private:
    uint64_t installed_ = 0, removed_ = 0;
};

class JsonSaSink final : public LoggingSaSink {
public:
    // Opens `path` for appending (created 0600; an existing file is
    // tightened to 0600). nullptr with `error` on failure.
    static std::unique_ptr<JsonSaSink> open(const std::string& path, std::string& error);
    ~JsonSaSink() override;

    uint64_t write_errors() const { return write_errors_; }

private:
    JsonSaSink(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
    void event(std::string_view what, const ike::ChildSaRecord& record, const SaDescriptor& sa) override;

    int fd_;
    std::string path_;
    uint64_t write_errors_ = 0;
};

// Creates or opens `path` for appending with mode 0600 (used for every file
// that holds keys).
int open_secret_file(const std::string& path, std::string& error);

// Writes all of `line` to fd; false on error.
bool write_all(int fd, std::string_view line);

} // namespace ravelin::iked
