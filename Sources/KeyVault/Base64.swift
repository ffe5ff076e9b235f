/// Base64 (RFC 4648, standard alphabet, padded) on byte arrays. Foundation's
/// version goes through Data and String, leaving copies of a key we cannot
/// wipe; these work in place on arrays the caller wipes.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func encode<Bytes: Collection>(_ input: Bytes) -> [UInt8] where Bytes.Element == UInt8 {
        var out = [UInt8]()
        out.reserveCapacity((input.count + 2) / 3 * 4)
        var iterator = input.makeIterator()
        while let a = iterator.next() {
            let b = iterator.next(), c = iterator.next()
            out.append(alphabet[Int(a >> 2)])
            out.append(alphabet[Int((a & 0x03) << 4 | (b ?? 0) >> 4)])
            out.append(b == nil ? UInt8(ascii: "=") : alphabet[Int((b! & 0x0f) << 2 | (c ?? 0) >> 6)])
            out.append(c == nil ? UInt8(ascii: "=") : alphabet[Int(c! & 0x3f)])
        }
        return out
    }

    static func encodeString<Bytes: Collection>(_ input: Bytes) -> String where Bytes.Element == UInt8 {
        String(decoding: encode(input), as: UTF8.self)
    }

    /// Decodes; nil on any character outside the alphabet or bad padding.
    public static func decode<Bytes: Collection>(_ input: Bytes) -> [UInt8]? where Bytes.Element == UInt8 {
        guard input.count % 4 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(input.count / 4 * 3)
        var quad = [UInt8](repeating: 0, count: 4)
        var index = 0, padding = 0
        for ch in input {
            let v: UInt8
            switch ch {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = ch - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = ch - UInt8(ascii: "a") + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = ch - UInt8(ascii: "0") + 52
            case UInt8(ascii: "+"): v = 62
            case UInt8(ascii: "/"): v = 63
            case UInt8(ascii: "="): v = 0; padding += 1
            default: return nil
            }
            if padding > 0 && ch != UInt8(ascii: "=") { return nil }
            quad[index % 4] = v
            index += 1
            if index % 4 == 0 {
                out.append(quad[0] << 2 | quad[1] >> 4)
                out.append(quad[1] << 4 | quad[2] >> 2)
                out.append(quad[2] << 6 | quad[3])
            }
        }
        guard padding <= 2 else { return nil }
        out.removeLast(padding)
        quad.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) }
        return out
    }
}

/// Finds the string value of `"name":"..."` in a JSON object's bytes without
/// building Strings, for responses that carry a secret (Vault's plaintext, AWS's
/// Plaintext). The values in question are base64, so no escapes occur; a value
/// with a backslash is refused rather than half-parsed.
enum JSONSecretField {
    static func value(named name: String, in json: [UInt8]) -> ArraySlice<UInt8>? {
        range(named: name, in: json).map { json[$0] }
    }

    /// Overwrites the value of every `"name":"..."` with '*' in place, so that
    /// a parser run afterwards (JSONSerialization) never copies the secret.
    static func redact(named name: String, in json: inout [UInt8]) {
        var from = 0
        while let r = range(named: name, in: json, from: from) {
            for i in r { json[i] = UInt8(ascii: "*") }
            from = r.upperBound
        }
    }

    static func range(named name: String, in json: [UInt8], from: Int = 0) -> Range<Int>? {
        let needle = Array("\"\(name)\"".utf8)
        guard needle.count <= json.count else { return nil }
        var i = from
        while i + needle.count <= json.count {
            if json[i] == needle[0] && json[i..<i + needle.count].elementsEqual(needle) {
                var j = i + needle.count
                while j < json.count, json[j] == UInt8(ascii: " ") || json[j] == UInt8(ascii: "\n") { j += 1 }
                guard j < json.count, json[j] == UInt8(ascii: ":") else { i += 1; continue }
                j += 1
                while j < json.count, json[j] == UInt8(ascii: " ") || json[j] == UInt8(ascii: "\n") { j += 1 }
                guard j < json.count, json[j] == UInt8(ascii: "\"") else { return nil }
                let start = j + 1
                var end = start
                while end < json.count, json[end] != UInt8(ascii: "\"") {
                    if json[end] == UInt8(ascii: "\\") { return nil }
                    end += 1
                }
                guard end < json.count else { return nil }
                return start..<end
            }
            i += 1
        }
        return nil
    }
}
