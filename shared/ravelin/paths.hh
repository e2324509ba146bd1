// Where the processes find each other on the local machine.
#pragma once

#include <string>

namespace ravelin {

// The data plane's control socket for the instance with this DPDK file prefix.
inline std::string dataplane_socket_path(const std::string& file_prefix)
{
    return "/run/ravelin/" + file_prefix + ".dataplane.sock";
}

} // namespace ravelin
