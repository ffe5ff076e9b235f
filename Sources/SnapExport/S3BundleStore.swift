import BlockCipher
import Foundation
import HTTPTransport
import KeyVault
import Locking
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// A bundle under `s3://bucket/prefix` on any S3-compatible store (AWS S3,
/// MinIO, SeaweedFS, moto), path-style, signed with SigV4 using the standard
/// AWS credential chain. Every PUT carries its SHA-256 (x-amz-content-sha256,
/// which the store checks); objects over `multipartThreshold` go up in parts.
public final class S3BundleStore: BundleStore {
    let bucket: String
    let prefix: String
    let endpoint: (scheme: String, host: String)
    let region: String
    let credentials: AWSCredentials
    /// Idle connections (one HTTPClient each, used by one thread at a time):
    /// parallel uploads each take one, and give it back for reuse.
    private let idle = Locked<[HTTPClient]>([])
    private let tls: TLSOptions
    let retry: RetryPolicy
    /// Objects larger than this are sent with multipart upload, in parts of `partSize`.
    public var multipartThreshold = 16 << 20
    public var partSize = 8 << 20
    /// Objects are fetched into files (manifests) in ranges of this size.
    public var rangeSize = 8 << 20
    /// Room for an XML error answer on top of an object's expected size, in bytes: the
    /// per-request cap on the answer to a GET whose size is known.
    static let errorAnswerSlack = 64 << 10
    /// ListObjectsV2 pages followed before the listing is refused (1000 keys each), so a store
    /// that answers "truncated" forever cannot keep kmsfs looping and growing.
    static let maxListPages = 100_000
    private let counters = Locked((sent: UInt64(0), multipart: 0))
    public var bytesSent: UInt64 { counters.withLock { $0.sent } }
    public var multipartUploads: Int { counters.withLock { $0.multipart } }
    /// Parallel uploads of an export (connections at once); $KMSFS_S3_PARALLEL, default 8.
    public var uploadWidth = 8
    public let location: String

    /// - Parameter insecureHTTP: allow an http:// endpoint that is not a loopback address.
    public init(url: String, endpointURL: String?, profile: String?, insecureHTTP: Bool = false,
                environment: [String: String] = ProcessEnvironment.current) throws {
        let rest = url.dropFirst("s3://".count)
        let bucket = String(rest.prefix { $0 != "/" })
        guard !bucket.isEmpty else { throw BundleError.usage("\(url): expected s3://bucket/prefix") }
        self.bucket = bucket
        var prefix = String(rest.dropFirst(bucket.count)).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        if !prefix.isEmpty { prefix += "/" }
        self.prefix = prefix
        location = url
        let endpointText = endpointURL ?? environment["AWS_ENDPOINT_URL_S3"] ?? environment["AWS_ENDPOINT_URL"]
        region = AWSCredentialSource.region(profile: profile, environment: environment) ?? "us-east-1"
        let resolved = endpointText ?? "https://s3.\(region).amazonaws.com"
        guard let components = URLComponents(string: resolved), let scheme = components.scheme, scheme == "http" || scheme == "https",
              let host = components.host else {
            throw BundleError.usage("bad --endpoint-url \(resolved): expected http(s)://host[:port]")
        }
        endpoint = (scheme, components.port.map { "\(host):\($0)" } ?? host)
        if let refused = PlainHTTPPolicy.refusedHost(resolved, allowPlainHTTP: insecureHTTP) {
            throw BundleError.usage("refusing plain http:// to \(refused): S3 requests carry signed credentials; use https, or --insecure-http")
        }
        tls = TLSOptions(allowPlainHTTP: insecureHTTP)
        do { credentials = try AWSCredentialSource.resolve(profile: profile, environment: environment) } catch {
            throw BundleError.usage("no AWS credentials for \(url): \(error)")
        }
        let attempts = environment["KMSFS_S3_ATTEMPTS"].flatMap(Int.init) ?? 4
        retry = RetryPolicy(attempts: attempts, initialDelay: 0.5)
        // Tuning knobs (the tests shrink them to exercise multipart and ranged reads on small objects).
        if let v = environment["KMSFS_S3_MULTIPART_THRESHOLD"].flatMap(Int.init), v > 0 { multipartThreshold = v }
        if let v = environment["KMSFS_S3_PART_SIZE"].flatMap(Int.init), v > 0 { partSize = v }
        if let v = environment["KMSFS_S3_RANGE_SIZE"].flatMap(Int.init), v > 0 { rangeSize = v }
        if let v = environment["KMSFS_S3_PARALLEL"].flatMap(Int.init), v > 0 { uploadWidth = min(v, 64) }
    }

    // MARK: BundleStore

    public func exists(_ key: String, size: Int) throws -> Bool {
        let response = try call("HEAD", key: key)
        switch response.status {
        case 200: return Int(response.headers["content-length"] ?? "") == size
        case 404: return false
        default: throw failure(response, "HEAD \(key)")
        }
    }

    public func put(_ key: String, bytes: UnsafeRawBufferPointer, sha256: [UInt8]) throws {
        if bytes.count > multipartThreshold {
            try multipartPut(key, size: bytes.count) { Array(UnsafeRawBufferPointer(rebasing: bytes[$0])) }
            counters.withLock { $0.sent += UInt64(bytes.count) }
        } else {
            try put(key, owned: Array(bytes), sha256: sha256)
        }
    }

    /// The request body is `bytes` itself (a parallel export's chunk copy), not another copy.
    public func put(_ key: String, owned bytes: [UInt8], sha256: [UInt8]) throws {
        guard bytes.count <= multipartThreshold else { return try bytes.withUnsafeBytes { try put(key, bytes: $0, sha256: sha256) } }
        let response = try call("PUT", key: key, body: bytes, payloadHash: sha256.hexString)
        guard response.status == 200 else { throw failure(response, "PUT \(key)") }
        counters.withLock { $0.sent += UInt64(bytes.count) }
    }

    /// Streams a local file (a manifest, whatever its size) in parts: memory stays one part.
    public func putFile(_ key: String, path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BundleError.io("cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let size = Int(fileSize(atPath: path))
        func read(_ range: Range<Int>) throws -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: range.count)
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, range.count, off_t(range.lowerBound)) }
            guard n == range.count else { throw BundleError.io("reading \(path) failed") }
            return bytes
        }
        if size > multipartThreshold {
            try multipartPut(key, size: size, part: read)
            counters.withLock { $0.sent += UInt64(size) }
        } else {
            try read(0..<size).withUnsafeBytes { try put(key, bytes: $0, sha256: SHA256.hash($0)) }
        }
    }

    /// The answer is capped at `expectedSize` plus room for an error body, so a store cannot
    /// send more than a chunk's worth into memory.
    public func get(_ key: String, expectedSize: Int) throws -> [UInt8] {
        let response = try call("GET", key: key, maxResponseBytes: expectedSize + Self.errorAnswerSlack)
        switch response.status {
        case 200:
            guard response.body.count <= expectedSize else { throw BundleError.oversized(key, at: location, expected: expectedSize) }
            return response.body
        case 404: throw BundleError.missing("\(key) is missing from \(location)")
        default: throw failure(response, "GET \(key)")
        }
    }

    /// Fetches an object into a local file in ranges of `rangeSize`: memory stays one range.
    public func getFile(_ key: String, path: String) throws {
        let head = try call("HEAD", key: key)
        guard head.status == 200 else {
            if head.status == 404 { throw BundleError.missing("\(key) is missing from \(location)") }
            throw failure(head, "HEAD \(key)")
        }
        guard let size = Int(head.headers["content-length"] ?? ""), size >= 0 else { throw BundleError.store("\(location): HEAD \(key) gave no valid Content-Length") }
        let fd = try createExclusive(path)
        defer { close(fd) }
        var offset = 0
        while offset < size {
            let end = min(size, offset + rangeSize)
            let response = try call("GET", key: key, headers: [("Range", "bytes=\(offset)-\(end - 1)")],
                                    maxResponseBytes: end - offset + Self.errorAnswerSlack)
            guard response.status == 206 || (response.status == 200 && offset == 0 && end == size), response.body.count == end - offset else {
                throw failure(response, "GET \(key) bytes \(offset)-\(end - 1)")
            }
            guard response.body.withUnsafeBytes({ pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }) == end - offset else {
                throw BundleError.io("writing \(path): \(String(cString: strerror(errno)))")
            }
            offset = end
        }
    }

    public func list(prefix keyPrefix: String) throws -> [String] {
        var keys: [String] = []
        var token: String?
        var pages = 0
        repeat {
            var query: [(name: String, value: String)] = [("list-type", "2"), ("prefix", prefix + keyPrefix)]
            if let token { query.append(("continuation-token", token)) }
            let response = try call("GET", key: nil, query: query)
            guard response.status == 200 else { throw failure(response, "list \(prefix + keyPrefix)") }
            let page = try Self.listPage(response.bodyText, prefix: prefix + keyPrefix, location: location)
            keys += page.keys.map { String($0.dropFirst(prefix.count)) }
            pages += 1
            guard page.next == nil || (page.next != token && pages < Self.maxListPages) else { throw BundleError.store("\(location): the listing of \(prefix + keyPrefix) does not end") }
            token = page.next
        } while token != nil
        return keys.sorted()
    }

    /// The keys and continuation token of one ListObjectsV2 answer. Only keys under `prefix`
    /// that are safe relative paths count (the names become local file names on import);
    /// others in the bucket are not kmsfs's and are passed over.
    static func listPage(_ text: String, prefix: String, location: String) throws -> (keys: [String], next: String?) {
        let keys = XMLElements.texts("Key", in: text).filter { $0.hasPrefix(prefix) && BundleKeys.isValid($0) }
        guard XMLElements.first("IsTruncated", in: text) == "true" else { return (keys, nil) }
        let next = XMLElements.first("NextContinuationToken", in: text)
        guard !next.isEmpty else { throw BundleError.store("\(location): a truncated listing gave no continuation token") }
        return (keys, next)
    }

    // MARK: multipart

    /// CreateMultipartUpload, UploadPart for each part, CompleteMultipartUpload;
    /// aborted on failure so no parts are left billed in the bucket.
    func multipartPut(_ key: String, size: Int, part read: (Range<Int>) throws -> [UInt8]) throws {
        let created = try call("POST", key: key, query: [("uploads", "")])
        let uploadID = XMLElements.first("UploadId", in: created.bodyText)
        guard created.status == 200, !uploadID.isEmpty else { throw failure(created, "CreateMultipartUpload \(key)") }
        do {
            var parts: [(Int, String)] = []
            var offset = 0
            var number = 1
            while offset < size {
                let end = min(size, offset + partSize)
                let part = try read(offset..<end)
                let response = try call("PUT", key: key, query: [("partNumber", "\(number)"), ("uploadId", uploadID)],
                                        body: part, payloadHash: SHA256.hash(part).hexString)
                guard response.status == 200, let etag = response.headers["etag"] else { throw failure(response, "UploadPart \(number) of \(key)") }
                parts.append((number, etag))
                offset = end
                number += 1
            }
            var xml = "<CompleteMultipartUpload>"
            for (n, etag) in parts { xml += "<Part><PartNumber>\(n)</PartNumber><ETag>\(XMLElements.escape(etag))</ETag></Part>" }
            xml += "</CompleteMultipartUpload>"
            let body = Array(xml.utf8)
            let done = try call("POST", key: key, query: [("uploadId", uploadID)], body: body, payloadHash: SHA256.hash(body).hexString)
            // S3 can answer 200 with an <Error> body for CompleteMultipartUpload.
            guard done.status == 200, !done.bodyText.contains("<Error>") else { throw failure(done, "CompleteMultipartUpload \(key)") }
            counters.withLock { $0.multipart += 1 }
        } catch {
            _ = try? call("DELETE", key: key, query: [("uploadId", uploadID)])
            throw error
        }
    }

    // MARK: requests

    /// One signed request with retries on transient failures and 5xx answers.
    /// `headers` are sent unsigned (Range).
    func call(_ method: String, key: String?, query: [(name: String, value: String)] = [], body: [UInt8] = [],
              payloadHash: String = SigV4.emptyPayloadHash, headers: [(name: String, value: String)] = [],
              maxResponseBytes: Int? = nil) throws -> HTTPResponse {
        func send(literalSlash: Bool) throws -> HTTPResponse {
            try self.send(method, key: key, query: query, body: body, payloadHash: payloadHash, headers: headers,
                          literalSlash: literalSlash, maxResponseBytes: maxResponseBytes)
        }
        let response = try send(literalSlash: false)
        if response.status == 403, XMLElements.first("Code", in: response.bodyText) == "SignatureDoesNotMatch", query.contains(where: { $0.value.contains("/") }) {
            return try send(literalSlash: true)
        }
        return response
    }

    private func send(_ method: String, key: String?, query: [(name: String, value: String)], body: [UInt8], payloadHash: String,
                      headers extra: [(name: String, value: String)], literalSlash: Bool, maxResponseBytes: Int?) throws -> HTTPResponse {
        let path = "/\(bucket)/" + (key.map { prefix + $0 } ?? "")
        let http = idle.withLock { $0.popLast() } ?? HTTPClient(tls: tls, connectTimeout: 5, totalTimeout: 600)
        defer { idle.withLock { $0.append(http) } }
        do {
            return try retry.send(http, provider: "s3", address: "\(endpoint.scheme)://\(endpoint.host)", caHint: "check --endpoint-url", request: {
                var request = SigV4Request(method: method, scheme: endpoint.scheme, host: endpoint.host, path: path, query: query,
                                           headers: [("x-amz-content-sha256", payloadHash)], payloadHash: payloadHash)
                request.literalSlashInQuery = literalSlash
                let headers = SigV4.sign(request, credentials: credentials, region: region, service: "s3", amzDate: SigV4.amzDate(Int(time(nil))))
                return HTTPRequest(method: method, url: SigV4.url(for: request), headers: headers + extra + [("Content-Type", "application/octet-stream")],
                                   body: body, maxResponseBytes: maxResponseBytes)
            }) { response in
                response.status >= 500 ? "HTTP \(response.status) \(XMLElements.first("Code", in: response.bodyText))" : nil
            }
        } catch let e as KeyVaultError {
            throw BundleError.store(e.description)
        }
    }

    func failure(_ response: HTTPResponse, _ what: String) -> BundleError {
        let text = response.bodyText
        let found = XMLElements.first("Code", in: text)
        let code = found.isEmpty ? "HTTP \(response.status)" : HTTPResponse.excerpt(found)
        let message = HTTPResponse.excerpt(XMLElements.first("Message", in: text))
        switch code {
        case "NoSuchBucket": return .store("\(location): bucket \(bucket) does not exist")
        case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken":
            return .store("\(location): \(what) was refused (\(code)): \(message.isEmpty ? "check the AWS credentials" : message)")
        default: return .store("\(location): \(what) failed: \(code) \(message)")
        }
    }
}
