import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A tiny HTTP/1.1 server on 127.0.0.1 for the response-limit tests: a real
/// socket that libcurl talks to, serving answers too large to accept. Each
/// connection gets one answer chosen by the request path, then is closed.
final class LoopbackHTTPServer: @unchecked Sendable {
    let port: UInt16
    private let listener: Int32

    /// What each path answers with.
    enum Answer {
        /// 200 with a Content-Length of `n` bytes ("x" repeated).
        case exact(Int)
        /// 200 chunked, streaming 64 KiB chunks until the client hangs up (or 1 GiB).
        case endless
        /// 200 whose Content-Length claims `n` bytes (the server sends 1 KiB and closes).
        case claims(Int)
        /// 200 with `lines` header lines of 100 bytes each.
        case headers(lines: Int)
        /// `status` with this body.
        case text(status: Int, body: String)
    }

    init(answer: @escaping @Sendable (String) -> Answer) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound, listen(fd, 16) == 0 else { close(fd); throw POSIXError(.EADDRNOTAVAIL) }
        listener = fd
        port = UInt16(bigEndian: address.sin_port)
        Thread.detachNewThread {
            while true {
                let client = accept(fd, nil, nil)
                guard client >= 0 else { return }  // closed by deinit
                Self.serve(client, answer)
                close(client)
            }
        }
    }

    deinit { shutdown(listener, Int32(SHUT_RDWR)); close(listener) }

    var url: String { "http://127.0.0.1:\(port)" }

    private static func serve(_ client: Int32, _ answer: (String) -> Answer) {
        guard let path = readRequestPath(client) else { return }
        switch answer(path) {
        case .exact(let n):
            _ = send(client, "HTTP/1.1 200 OK\r\nContent-Length: \(n)\r\nConnection: close\r\n\r\n" + String(repeating: "x", count: n))
        case .endless:
            guard send(client, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n") else { return }
            let chunk = String(65536, radix: 16) + "\r\n" + String(repeating: "x", count: 65536) + "\r\n"
            for _ in 0..<(1 << 14) {
                guard send(client, chunk) else { return }
            }
        case .claims(let n):
            _ = send(client, "HTTP/1.1 200 OK\r\nContent-Length: \(n)\r\nConnection: close\r\n\r\n" + String(repeating: "x", count: 1024))
        case .headers(let lines):
            let header = (0..<lines).map { "X-Filler-\($0): " + String(repeating: "h", count: 80) + "\r\n" }.joined()
            _ = send(client, "HTTP/1.1 200 OK\r\n" + header + "Content-Length: 0\r\nConnection: close\r\n\r\n")
        case .text(let status, let body):
            _ = send(client, "HTTP/1.1 \(status) Answer\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body)
        }
    }

    /// The path of the request line, after reading the headers and any Content-Length body.
    private static func readRequestPath(_ client: Int32) -> String? {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(client, &buffer, buffer.count, 0)
            guard n > 0 else { return nil }
            data += buffer[0..<n]
            let text = String(decoding: data, as: UTF8.self)
            guard let end = text.range(of: "\r\n\r\n") else { continue }
            let head = text[..<end.lowerBound]
            let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            guard text.utf8.count - text[..<end.upperBound].utf8.count >= length else { continue }
            return head.split(separator: " ").dropFirst().first.map(String.init)
        }
    }

    /// Sends all of `text`; false once the client has gone (MSG_NOSIGNAL: no SIGPIPE).
    private static func send(_ client: Int32, _ text: String) -> Bool {
        let bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return false }
            done += n
        }
        return true
    }
}
