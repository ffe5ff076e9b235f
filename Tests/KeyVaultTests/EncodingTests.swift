@testable import KeyVault
import Testing

/// The byte-level codecs the KMS clients use on secret-bearing messages.
@Suite struct EncodingTests {
    /// RFC 4648 section 10 test vectors.
    @Test func base64RFC4648Vectors() {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors {
            #expect(Base64.encodeString(Array(plain.utf8)) == encoded)
            #expect(Base64.decode(Array(encoded.utf8)) == Array(plain.utf8))
        }
    }

    @Test func base64RoundTripsEveryByteAndRejectsJunk() {
        let all = (0...255).map { UInt8($0) }
        for n in 0...all.count where n % 7 == 0 || n > 250 {
            #expect(Base64.decode(Base64.encode(all.prefix(n))) == Array(all.prefix(n)))
        }
        for bad in ["Zg=", "Z===", "Zg=a", "Zm9v!A==", "Zm 9v", "=Zm9"] {
            #expect(Base64.decode(Array(bad.utf8)) == nil, "\(bad)")
        }
    }

    @Test func secretFieldExtraction() {
        let json = Array(#"{"request_id":"x","data" : {"plaintext" : "c2VjcmV0","other":"plaintext"}}"#.utf8)
        #expect(JSONSecretField.value(named: "plaintext", in: json).map(Array.init) == Array("c2VjcmV0".utf8))
        #expect(JSONSecretField.value(named: "missing", in: json) == nil)
        #expect(JSONSecretField.value(named: "plaintext", in: Array(#"{"plaintext":"ab\"c"}"#.utf8)) == nil)
        #expect(JSONSecretField.value(named: "plaintext", in: Array(#"{"plaintext":"unterminated"#.utf8)) == nil)
        #expect(JSONSecretField.value(named: "plaintext", in: Array(#"{"plaintext":5}"#.utf8)) == nil)
    }
}
