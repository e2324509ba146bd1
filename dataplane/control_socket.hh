// The data plane's control socket: a unix stream socket on which a client
// (ravelinctl) sends one command line and gets one JSON document back.
//
// Served by its own thread, off the packet path; it only reads counters
// (relaxed atomics) and takes the SA table's writer lock while walking it.
#pragma once

#include <atomic>
#include <string>
#include <thread>

namespace ravelin::dp {

class Dataplane;

class ControlServer {
public:
    ControlServer(Dataplane& dp, std::string path) : dp_(dp), path_(std::move(path)) {}
    ~ControlServer() { stop(); }
    // Bind and start serving; false (with `error`) if the socket cannot be made.
    bool start(std::string& error);
    void stop();

private:
    void serve();
    std::string answer(const std::string& command);

    Dataplane& dp_;
    std::string path_;
    int fd_ = -1;
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

} // namespace ravelin::dp
