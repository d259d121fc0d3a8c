import Foundation

/// A tiny TCP server on 127.0.0.1 the network drills talk to, so they need no network beyond
/// the host: an HTTP `GET` gets a harmless shell script (`exit 0`), anything else is read
/// and closed. One thread, blocking accept; `stop()` closes the socket.
final class LoopbackServer: Sendable {
    let port: Int
    private let fd: Int32

    static let script = "exit 0\n"

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw DrillError("loopback server: socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw DrillError("loopback server: bind/listen on 127.0.0.1: \(reason)")
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.fd = fd
        self.port = Int(UInt16(bigEndian: addr.sin_port))
        let thread = Thread { Self.serve(fd) }
        thread.name = "vigil-drill-server"
        thread.start()
    }

    private static func serve(_ fd: Int32) {
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return  // closed by stop()
            }
            var timeout = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = read(client, &buffer, buffer.count)
            if n >= 4, buffer[0..<4] == Array("GET ".utf8)[...] {
                let response =
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: \(script.utf8.count)\r\n"
                    + "Connection: close\r\n\r\n" + script
                _ = response.withCString { write(client, $0, strlen($0)) }
            }
            close(client)
        }
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}
