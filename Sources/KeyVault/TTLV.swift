/// KMIP's Tag-Type-Length-Value encoding (KMIP 1.2 specification, section 9.1):
/// a 3-byte tag, a 1-byte type, a 4-byte big-endian length, then the value
/// padded with zeros to a multiple of 8 bytes. Decoding is hostile-input code:
/// every length is bounds-checked, nesting and item counts are limited, and
/// malformed input is an error, never a crash.
public struct TTLV: Equatable, Sendable {
    public enum Value: Equatable, Sendable {
        case structure([TTLV])
        case integer(Int32)
        case longInteger(Int64)
        case bigInteger([UInt8])
        case enumeration(UInt32)
        case boolean(Bool)
        case text(String)
        case bytes([UInt8])
        case dateTime(Int64)
        case interval(UInt32)

        var typeCode: UInt8 {
            switch self {
            case .structure: return 0x01
            case .integer: return 0x02
            case .longInteger: return 0x03
            case .bigInteger: return 0x04
            case .enumeration: return 0x05
            case .boolean: return 0x06
            case .text: return 0x07
            case .bytes: return 0x08
            case .dateTime: return 0x09
            case .interval: return 0x0A
            }
        }
    }

    public var tag: UInt32
    public var value: Value

    public init(_ tag: UInt32, _ value: Value) {
        self.tag = tag
        self.value = value
    }

    /// Limits for decoding untrusted messages.
    public static let maxMessageSize = 1 << 20
    public static let maxDepth = 16
    public static let maxItems = 10_000

    // MARK: encoding

    public func encoded() -> [UInt8] {
        var out = [UInt8]()
        encode(into: &out)
        return out
    }

    func encode(into out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: tag >> 16))
        out.append(UInt8(truncatingIfNeeded: tag >> 8))
        out.append(UInt8(truncatingIfNeeded: tag))
        out.append(value.typeCode)
        let lengthAt = out.count
        out.append(contentsOf: [0, 0, 0, 0])
        let start = out.count
        switch value {
        case .structure(let items): for item in items { item.encode(into: &out) }
        case .integer(let v): Self.be(UInt64(UInt32(bitPattern: v)), 4, &out)
        case .enumeration(let v), .interval(let v): Self.be(UInt64(v), 4, &out)
        case .longInteger(let v), .dateTime(let v): Self.be(UInt64(bitPattern: v), 8, &out)
        case .boolean(let v): Self.be(v ? 1 : 0, 8, &out)
        case .text(let s): out.append(contentsOf: Array(s.utf8))
        case .bytes(let b), .bigInteger(let b): out.append(contentsOf: b)
        }
        let length = out.count - start
        for i in 0..<4 { out[lengthAt + i] = UInt8(truncatingIfNeeded: length >> (24 - 8 * i)) }
        out.append(contentsOf: [UInt8](repeating: 0, count: (8 - length % 8) % 8))
    }

    static func be(_ v: UInt64, _ n: Int, _ out: inout [UInt8]) {
        for i in (0..<n).reversed() { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    // MARK: decoding

    /// Decodes exactly one item that spans all of `bytes`.
    public init(decoding bytes: [UInt8]) throws {
        guard bytes.count <= Self.maxMessageSize else { throw KeyVaultError.malformedKMIP(reason: "message of \(bytes.count) bytes exceeds \(Self.maxMessageSize)") }
        var reader = TTLVReader(bytes: bytes)
        self = try reader.item(depth: 0)
        guard reader.offset == bytes.count else { throw KeyVaultError.malformedKMIP(reason: "\(bytes.count - reader.offset) trailing bytes") }
    }

    /// The total length of the message whose first 8 bytes are `header`.
    public static func messageLength(header: [UInt8]) throws -> Int {
        guard header.count >= 8 else { throw KeyVaultError.malformedKMIP(reason: "short header") }
        let length = header[4..<8].reduce(0) { $0 << 8 | Int($1) }
        guard header[3] == 0x01, length <= maxMessageSize - 8 else { throw KeyVaultError.malformedKMIP(reason: "not a structure, or a length of \(length)") }
        return 8 + length
    }

    // MARK: access

    /// The first child with `tag` (for structures).
    public subscript(_ tag: UInt32) -> TTLV? {
        if case .structure(let items) = value { return items.first { $0.tag == tag } }
        return nil
    }

    public func all(_ tag: UInt32) -> [TTLV] {
        if case .structure(let items) = value { return items.filter { $0.tag == tag } }
        return []
    }

    public var enumValue: UInt32? { if case .enumeration(let v) = value { return v }; if case .integer(let v) = value { return UInt32(bitPattern: v) }; return nil }
    public var intValue: Int32? { if case .integer(let v) = value { return v }; return nil }
    public var textValue: String? { if case .text(let v) = value { return v }; return nil }
    public var bytesValue: [UInt8]? { if case .bytes(let v) = value { return v }; return nil }
}

private struct TTLVReader {
    let bytes: [UInt8]
    var offset = 0
    var items = 0

    mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, bytes.count - offset >= n else { throw KeyVaultError.malformedKMIP(reason: "truncated at byte \(offset)") }
        defer { offset += n }
        return bytes[offset..<offset + n]
    }

    mutating func item(depth: Int) throws -> TTLV {
        guard depth <= TTLV.maxDepth else { throw KeyVaultError.malformedKMIP(reason: "nesting deeper than \(TTLV.maxDepth)") }
        items += 1
        guard items <= TTLV.maxItems else { throw KeyVaultError.malformedKMIP(reason: "more than \(TTLV.maxItems) items") }
        let head = try take(8)
        let tag = head.prefix(3).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard tag >> 16 == 0x42 || tag >> 16 == 0x54 else { throw KeyVaultError.malformedKMIP(reason: "tag 0x\(String(tag, radix: 16)) is outside the KMIP ranges") }
        let type = head[head.startIndex + 3]
        let length = head.suffix(4).reduce(0) { $0 << 8 | Int($1) }
        let padded = length + (8 - length % 8) % 8
        guard padded <= bytes.count - offset else { throw KeyVaultError.malformedKMIP(reason: "length \(length) runs past the end") }
        func fixed(_ n: Int) throws -> UInt64 {
            guard length == n else { throw KeyVaultError.malformedKMIP(reason: "type 0x\(String(type, radix: 16)) with length \(length)") }
            let raw = try take(padded)
            return raw.prefix(n).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        }
        let value: TTLV.Value
        switch type {
        case 0x01:
            let end = offset + length
            var children: [TTLV] = []
            while offset < end { children.append(try item(depth: depth + 1)) }
            guard offset == end else { throw KeyVaultError.malformedKMIP(reason: "structure children overrun its length") }
            _ = try take(padded - length)
            value = .structure(children)
        case 0x02: value = .integer(Int32(bitPattern: UInt32(truncatingIfNeeded: try fixed(4))))
        case 0x03: value = .longInteger(Int64(bitPattern: try fixed(8)))
        case 0x05: value = .enumeration(UInt32(truncatingIfNeeded: try fixed(4)))
        case 0x06:
            let v = try fixed(8)
            guard v <= 1 else { throw KeyVaultError.malformedKMIP(reason: "boolean value \(v)") }
            value = .boolean(v == 1)
        case 0x09: value = .dateTime(Int64(bitPattern: try fixed(8)))
        case 0x0A: value = .interval(UInt32(truncatingIfNeeded: try fixed(4)))
        case 0x04, 0x07, 0x08:
            let raw = Array(try take(padded).prefix(length))
            if type == 0x07 {
                guard let s = String(validating: raw, as: UTF8.self) else { throw KeyVaultError.malformedKMIP(reason: "text string is not UTF-8") }
                value = .text(s)
            } else {
                value = type == 0x04 ? .bigInteger(raw) : .bytes(raw)
            }
        default:
            throw KeyVaultError.malformedKMIP(reason: "unknown item type 0x\(String(type, radix: 16))")
        }
        return TTLV(tag, value)
    }
}
