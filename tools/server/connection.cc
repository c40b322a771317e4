#include "connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace hymba::server {
namespace {

// The address and port of a socket address, in the forms httplib reports.
std::optional<std::pair<std::string, int>> Endpoint(const sockaddr_storage& address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(address);
    if (inet_ntop(AF_INET, &v4.sin_addr, text, sizeof text) == nullptr) return std::nullopt;
    return std::make_pair(std::string(text), static_cast<int>(ntohs(v4.sin_port)));
  }
  if (address.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(address);
    if (inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text) == nullptr) return std::nullopt;
    return std::make_pair(std::string(text), static_cast<int>(ntohs(v6.sin6_port)));
  }
  return std::nullopt;
}

}  // namespace

PeerProbe::PeerProbe(const std::string& remote_address, int remote_port, int local_port) {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", error)) {
    const std::string name = entry.path().filename().string();
    const int fd = std::atoi(name.c_str());
    sockaddr_storage peer{}, local{};
    socklen_t peer_size = sizeof peer, local_size = sizeof local;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_size) != 0) continue;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_size) != 0) continue;
    const auto peer_endpoint = Endpoint(peer);
    const auto local_endpoint = Endpoint(local);
    if (peer_endpoint && local_endpoint && peer_endpoint->first == remote_address &&
        peer_endpoint->second == remote_port && local_endpoint->second == local_port) {
      socket_ = fd;
      return;
    }
  }
}

bool PeerProbe::Closed() const {
  if (!socket_) return false;
  pollfd watch{*socket_, POLLRDHUP, 0};
  return poll(&watch, 1, 0) > 0 && (watch.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace hymba::server
