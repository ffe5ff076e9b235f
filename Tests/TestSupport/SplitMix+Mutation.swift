extension SplitMix {
    /// A number in 0..<bound (bound > 0).
    public mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }

    /// One seeded mutation of `input` for fuzz tests of text answers: flip 1-4 bytes, cut it
    /// short, insert one of `inserts`, duplicate a range, or delete a range. Never empty.
    public mutating func mutated(_ input: [UInt8], inserting inserts: [String]) -> [UInt8] {
        var bytes = input.isEmpty ? [0x3c] : input
        switch next() % 5 {
        case 0:
            for _ in 0..<(1 + next() % 4) { bytes[below(bytes.count)] ^= UInt8(truncatingIfNeeded: next() | 1) }
        case 1:
            bytes = Array(bytes.prefix(below(bytes.count)))
        case 2:
            bytes.insert(contentsOf: Array(inserts[below(inserts.count)].utf8), at: below(bytes.count + 1))
        case 3:
            let a = below(bytes.count), b = below(bytes.count)
            bytes.insert(contentsOf: bytes[min(a, b)..<max(a, b)], at: below(bytes.count))
        default:
            let a = below(bytes.count), b = below(bytes.count)
            bytes.removeSubrange(min(a, b)..<max(a, b))
        }
        return bytes
    }
}
