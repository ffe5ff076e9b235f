@testable import KeyVault
import TestSupport
import Testing

/// TTLV against the byte examples of the KMIP 1.2 specification (section 9.1.2)
/// and a seeded mutation loop over hostile input.
@Suite struct TTLVTests {
    static func hex(_ s: String) -> [UInt8] {
        let digits = s.filter { $0.isHexDigit }
        return stride(from: 0, to: digits.count, by: 2).map {
            UInt8(digits[digits.index(digits.startIndex, offsetBy: $0)...].prefix(2), radix: 16)!
        }
    }

    @Test(arguments: [
        (TTLV(0x420020, .integer(8)), "42 00 20 | 02 | 00 00 00 04 | 00 00 00 08 00 00 00 00"),
        (TTLV(0x420020, .longInteger(123_456_789_000_000_000)), "42 00 20 | 03 | 00 00 00 08 | 01 B6 9B 4B A5 74 92 00"),
        (TTLV(0x420020, .enumeration(255)), "42 00 20 | 05 | 00 00 00 04 | 00 00 00 FF 00 00 00 00"),
        (TTLV(0x420020, .boolean(true)), "42 00 20 | 06 | 00 00 00 08 | 00 00 00 00 00 00 00 01"),
        (TTLV(0x420020, .text("Hello World")), "42 00 20 | 07 | 00 00 00 0B | 48 65 6C 6C 6F 20 57 6F 72 6C 64 00 00 00 00 00"),
        (TTLV(0x420020, .bytes([1, 2, 3])), "42 00 20 | 08 | 00 00 00 03 | 01 02 03 00 00 00 00 00"),
        (TTLV(0x420020, .dateTime(0x47DA67F8)), "42 00 20 | 09 | 00 00 00 08 | 00 00 00 00 47 DA 67 F8"),
        (TTLV(0x420020, .interval(864_000)), "42 00 20 | 0A | 00 00 00 04 | 00 0D 2F 00 00 00 00 00"),
        (TTLV(0x420020, .structure([TTLV(0x420004, .enumeration(254)), TTLV(0x420005, .integer(255))])),
         "42 00 20 | 01 | 00 00 00 20 | 42 00 04 | 05 | 00 00 00 04 | 00 00 00 FE 00 00 00 00 | 42 00 05 | 02 | 00 00 00 04 | 00 00 00 FF 00 00 00 00"),
    ] as [(TTLV, String)])
    func specificationExample(item: TTLV, bytes: String) throws {
        #expect(item.encoded() == Self.hex(bytes))
        #expect(try TTLV(decoding: Self.hex(bytes)) == item)
    }

    @Test func hostileInputIsRefusedNeverCrashes() {
        var rng = SplitMix(seed: 0x6b6d6970)
        let valid = TTLV(KMIPTag.responseMessage, .structure([
            TTLV(KMIPTag.batchItem, .structure([
                TTLV(KMIPTag.resultStatus, .enumeration(0)),
                TTLV(KMIPTag.responsePayload, .structure([TTLV(KMIPTag.data, .bytes([UInt8](repeating: 7, count: 48))),
                                                          TTLV(KMIPTag.uniqueIdentifier, .text("1"))])),
            ])),
        ])).encoded()
        #expect((try? TTLV(decoding: valid)) != nil)
        var refused = 0
        for round in 0..<20_000 {
            var bytes = valid
            switch round % 4 {
            case 0: bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count))))          // truncation
            case 1: for _ in 0...(rng.next() % 4) { bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(truncatingIfNeeded: rng.next() | 1) }
            case 2: bytes = (0..<Int(rng.next() % 96)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }  // noise
            default: // lengths claiming huge sizes
                let at = Int(rng.next() % UInt64(max(1, bytes.count / 8))) * 8
                if at + 8 <= bytes.count { bytes[at + 4] = 0x7f; bytes[at + 5] = 0xff }
            }
            if (try? TTLV(decoding: bytes)) == nil { refused += 1 }
        }
        #expect(refused > 10_000, "most mutations must be refused")
        // Deep nesting and oversize messages are refused by the limits.
        var deep = TTLV(0x420001, .integer(1))
        for _ in 0..<40 { deep = TTLV(0x420001, .structure([deep])) }
        #expect(throws: KeyVaultError.self) { try TTLV(decoding: deep.encoded()) }
        #expect(throws: KeyVaultError.self) { try TTLV.messageLength(header: [0x42, 0, 0x7b, 1, 0x7f, 0xff, 0xff, 0xff]) }
    }
}

