import Foundation
import HTTPTransport
@testable import KeyVault
import TestSupport
import Testing

/// Damaged and hostile JSON answers of AWS KMS and Vault fed to the parsers
/// the key managers use: each gives a value or a KeyVaultError, never a trap,
/// and error texts stay one bounded line. Seeds are printed.
@Suite("KMS answers under mutation")
struct KMSAnswerFuzzTests {
    static let blob = Base64.encodeString([UInt8](repeating: 0x5a, count: 180))
    static let samples = [
        #"{"CiphertextBlob":"\#(blob)","KeyId":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab","EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}"#,
        #"{"KeyMetadata":{"Arn":"arn:aws:kms:us-east-1:111122223333:key/1234abcd","KeyState":"Enabled","KeySpec":"SYMMETRIC_DEFAULT","KeyUsage":"ENCRYPT_DECRYPT","KeyManager":"CUSTOMER","Enabled":true}}"#,
        #"{"KeyId":"arn:aws:kms:us-east-1:111122223333:key/1234abcd","Plaintext":"\#(Base64.encodeString([UInt8](repeating: 7, count: 32)))"}"#,
        #"{"__type":"com.amazonaws.kms#NotFoundException:http://internal","message":"Alias arn:aws:kms:us-east-1:111122223333:alias/x is not found."}"#,
        #"<ErrorResponse><Error><Code>InvalidSignatureException</Code><Message>The request signature we calculated does not match</Message></Error></ErrorResponse>"#,
        #"{"data":{"ciphertext":"vault:v3:\#(blob)","key_version":3},"lease_duration":0,"renewable":false}"#,
        #"{"data":{"plaintext":"\#(Base64.encodeString([UInt8](repeating: 9, count: 48)))"}}"#,
        #"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#,
    ]

    /// Runs every answer parser over `body` with the status a failure would have.
    static func feed(_ body: [UInt8], round: Int) {
        let ok = HTTPResponse(status: 200, body: body), failed = HTTPResponse(status: 400, headers: ["x-amzn-errortype": "Throttling"], body: body)
        func allowed(_ what: String, _ run: () throws -> Void) {
            do { try run() } catch { #expect(error is KeyVaultError, "round \(round) \(what): \(error)") }
        }
        allowed("aws envelope") {
            let wrapped = try AWSKMSKeyManager.envelope(from: ok)
            #expect(wrapped.encoded().count <= WrappedKey.maxEncodedSize)
        }
        allowed("aws describe") { _ = try AWSKMSKeyManager.keyInfo(from: ok, key: "alias/k") }
        allowed("vault envelope") { _ = try VaultKeyManager.envelope(from: ok, keyName: "k") }
        allowed("vault data") { _ = try VaultClient.data(ok) }
        let (type, message) = AWSKMSKeyManager.error(in: failed)
        for text in [type, message, VaultClient.errors(in: failed)] {
            #expect(!text.contains("\n") && text.count <= HTTPResponse.excerptLength, "round \(round): \(text.debugDescription)")
        }
        for name in ["Plaintext", "plaintext"] {
            if let field = JSONSecretField.value(named: name, in: body) { _ = Base64.decode(field) }
        }
    }

    static let inserts = [#"""#, "\\", "{", "}", "[", "]", ":", ",", "null", "1e999", "-0", #""\u0000""#, "\u{ff}", #"{"a":"#,
                          String(repeating: "[", count: 600), String(repeating: "{\"a\":", count: 600), #""\#(String(repeating: "QUFB", count: 2000))""#]

    @Test("the intact answers parse")
    func intact() throws {
        let arn = try AWSKMSKeyManager.envelope(from: HTTPResponse(status: 200, body: Array(Self.samples[0].utf8))).keyIdentifier
        #expect(arn.hasPrefix("arn:aws:kms:"))
        #expect(try AWSKMSKeyManager.keyInfo(from: HTTPResponse(status: 200, body: Array(Self.samples[1].utf8)), key: "k").state == "Enabled")
        #expect(AWSKMSKeyManager.error(in: HTTPResponse(status: 400, body: Array(Self.samples[3].utf8))).type == "NotFoundException")
        #expect(try VaultKeyManager.envelope(from: HTTPResponse(status: 200, body: Array(Self.samples[5].utf8)), keyName: "k").keyVersion == "3")
        #expect(VaultClient.errors(in: HTTPResponse(status: 403, body: Array(Self.samples[7].utf8))) == "1 error occurred: \t* permission denied")
    }

    @Test("an answer whose key id or ciphertext cannot fit an envelope is a KMS error, not a trap")
    func oversizedEnvelope() {
        let huge = Base64.encodeString([UInt8](repeating: 1, count: 70_000))
        let answers = [#"{"CiphertextBlob":"\#(huge)","KeyId":"arn"}"#, #"{"CiphertextBlob":"AAAA","KeyId":"\#(String(repeating: "k", count: 70_000))"}"#]
        for answer in answers {
            #expect(throws: KeyVaultError.self) { try AWSKMSKeyManager.envelope(from: HTTPResponse(status: 200, body: Array(answer.utf8))) }
        }
        let vault = #"{"data":{"ciphertext":"vault:v1:\#(huge)"}}"#
        #expect(throws: KeyVaultError.self) { try VaultKeyManager.envelope(from: HTTPResponse(status: 200, body: Array(vault.utf8)), keyName: "k") }
    }

    @Test("2,000 seeded mutations of AWS KMS and Vault answers give a value or a KeyVaultError")
    func mutations() {
        let seed: UInt64 = 0x0c0f_fee5
        print("KMSAnswerFuzzTests.mutations seed \(seed)")
        var rng = SplitMix(seed: seed)
        for round in 0..<2000 {
            var body = Array(Self.samples[round % Self.samples.count].utf8)
            for _ in 0..<(1 + rng.next() % 3) { body = rng.mutated(body, inserting: Self.inserts) }
            Self.feed(body, round: round)
        }
    }

    @Test("deeply nested and huge JSON inside the 1 MiB cap is refused without a trap")
    func nesting() {
        for body in [String(repeating: "[", count: 1 << 19), String(repeating: #"{"data":"#, count: 100_000), "\"" + String(repeating: "a", count: 1 << 20)] {
            Self.feed(Array(body.utf8), round: -1)
        }
    }
}
