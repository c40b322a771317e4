// Noticing that an HTTP client has gone away while its request still runs.
//
// cpp-httplib 0.11 does not tell a handler when its client disconnects, and a
// write to a closed socket only fails some time after the fact. The handler
// knows the connection's addresses, which name exactly one socket of this
// process: PeerProbe finds that socket and asks the kernel whether the peer
// has hung up (POLLRDHUP), without reading anything from it.
#pragma once

#include <optional>
#include <string>

namespace hymba::server {

class PeerProbe {
 public:
  PeerProbe(const std::string& remote_address, int remote_port, int local_port);
  // True once the client has closed or reset the connection. A client that
  // only shut down its sending side also counts; HTTP clients do not do that
  // while they wait for a response.
  bool Closed() const;
  bool found() const { return socket_.has_value(); }

 private:
  std::optional<int> socket_;
};

}  // namespace hymba::server
