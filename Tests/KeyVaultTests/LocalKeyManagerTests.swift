import Foundation
@testable import KeyVault
import Testing

private func tempDir() throws -> String {
    let path = NSTemporaryDirectory() + "kv-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

private func material(_ bytes: [UInt8]) -> KeyMaterial { KeyMaterial(copying: bytes.withUnsafeBytes { $0 }) }

@Suite("Local KMS (key file and passphrase)")
struct LocalKeyManagerTests {
    let context = WrapContext(filesystemUUID: Array(0..<16))
    let secret: [UInt8] = (0..<32).map { UInt8($0 * 7 & 0xff) }

    @Test("key file: created 0600, wraps and unwraps, envelope round-trips")
    func keyFile() throws {
        let dir = try tempDir()
        let path = dir + "/local.key"
        try LocalKeyManager.createKeyFile(path)
        let attrs = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attrs[.posixPermissions] as? Int) == 0o600)
        #expect(throws: KeyVaultError.self) { try LocalKeyManager.createKeyFile(path) }
        let manager = LocalKeyManager(source: .keyFile(path: path))
        let wrapped = try manager.wrap(material(secret), context: context)
        #expect(!wrapped.ciphertext.contains(secret[0..<8]))
        let decoded = try WrappedKey(decoding: wrapped.encoded())
        #expect(decoded == wrapped)
        let back = try manager.unwrap(decoded, context: context)
        #expect(back.withUnsafeBytes { Array($0) } == secret)
        try manager.roundTripCheck()
    }

    @Test("another key file, another filesystem UUID, or a flipped byte: unwrap denied")
    func wrongKey() throws {
        let dir = try tempDir()
        try LocalKeyManager.createKeyFile(dir + "/a.key")
        try LocalKeyManager.createKeyFile(dir + "/b.key")
        let a = LocalKeyManager(source: .keyFile(path: dir + "/a.key"))
        let b = LocalKeyManager(source: .keyFile(path: dir + "/b.key"))
        let wrapped = try a.wrap(material(secret), context: context)
        #expect(throws: KeyVaultError.unwrapDenied(provider: "local", keyID: "keyfile")) { try b.unwrap(wrapped, context: context) }
        #expect(throws: KeyVaultError.self) { try a.unwrap(wrapped, context: WrapContext(filesystemUUID: Array(repeating: 9, count: 16))) }
        var tampered = wrapped
        tampered.ciphertext[3] ^= 0x80
        #expect(throws: KeyVaultError.self) { try a.unwrap(tampered, context: context) }
    }

    @Test("missing key file and a world-readable key file are refused with the path")
    func keyFileProblems() throws {
        let dir = try tempDir()
        let missing = LocalKeyManager(source: .keyFile(path: dir + "/none.key"))
        #expect(throws: KeyVaultError.self) { try missing.wrap(material(secret), context: context) }
        try LocalKeyManager.createKeyFile(dir + "/open.key")
        chmod(dir + "/open.key", 0o644)
        do {
            _ = try LocalKeyManager(source: .keyFile(path: dir + "/open.key")).health()
            Issue.record("expected a refusal")
        } catch let error as KeyVaultError {
            #expect(error.description.contains("open.key"))
            #expect(error.description.contains("chmod 600"))
        }
    }

    @Test("passphrase: right one unwraps, wrong one is denied, key-file manager asks for it")
    func passphrase() throws {
        let good = LocalKeyManager(source: .passphrase(material(Array("correct horse".utf8))))
        let bad = LocalKeyManager(source: .passphrase(material(Array("battery staple".utf8))))
        let wrapped = try good.wrap(material(secret), context: context)
        #expect(wrapped.keyIdentifier == "passphrase")
        #expect(try good.unwrap(wrapped, context: context).withUnsafeBytes { Array($0) } == secret)
        #expect(throws: KeyVaultError.unwrapDenied(provider: "local", keyID: "passphrase")) { try bad.unwrap(wrapped, context: context) }
        let dir = try tempDir()
        try LocalKeyManager.createKeyFile(dir + "/k")
        #expect(throws: KeyVaultError.passphraseRequired) { try LocalKeyManager(source: .keyFile(path: dir + "/k")).unwrap(wrapped, context: context) }
    }

    @Test("a hostile scrypt cost in the envelope is refused before any work")
    func hostileCost() throws {
        let good = LocalKeyManager(source: .passphrase(material(Array("pw".utf8))))
        var wrapped = try good.wrap(material(secret), context: context)
        #expect(wrapped.parameters["scrypt"] == [17, 8, 1], "new wraps cost N = 2^17, r = 8, p = 1")
        // 2 GiB (N = 2^20, r = 16) is over the 1 GiB bound; so is an absurd N.
        for cost: [UInt8] in [[40, 8, 1], [20, 16, 1], [21, 8, 1], [9, 8, 1], [17, 8, 5]] {
            wrapped.parameters["scrypt"] = cost
            #expect(throws: KeyVaultError.malformedEnvelope(reason: "scrypt cost out of bounds"), "\(cost)") { try good.unwrap(wrapped, context: context) }
        }
    }

    @Test("the scrypt bound is 1 GiB of memory: N = 2^20 with r = 8 is the largest accepted at r = 8")
    func costBound() {
        #expect(ScryptParameters(logN: 20, r: 8, p: 1).isAcceptable)
        #expect(ScryptParameters(logN: 20, r: 8, p: 1).memoryBytes == 1 << 30)
        #expect(!ScryptParameters(logN: 20, r: 9, p: 1).isAcceptable)
        #expect(ScryptParameters(logN: 16, r: 8, p: 1).isAcceptable, "envelopes made with the earlier default still open")
    }
}

@Suite("Wrapped-key envelope codec")
struct WrappedKeyCodecTests {
    @Test("truncations and random mutations never crash and are rejected or decode consistently")
    func fuzz() throws {
        let sample = WrappedKey(provider: .vault, keyIdentifier: "kmsfs-key", keyVersion: "2",
                                ciphertext: Array("vault:v2:abcdef".utf8), parameters: ["iv": [1, 2, 3]])
        let bytes = sample.encoded()
        #expect(try WrappedKey(decoding: bytes) == sample)
        for cut in 0..<bytes.count {
            #expect(throws: KeyVaultError.self) { try WrappedKey(decoding: Array(bytes.prefix(cut))) }
        }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            var mutated = bytes
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                mutated[Int.random(in: 0..<mutated.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if let decoded = try? WrappedKey(decoding: mutated) {
                #expect(decoded.encoded() == mutated)
            }
        }
        for _ in 0..<2000 {
            let junk = (0..<Int.random(in: 0..<200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = try? WrappedKey(decoding: junk)
        }
        #expect(throws: KeyVaultError.self) { try WrappedKey(decoding: [UInt8](repeating: 0, count: WrappedKey.maxEncodedSize + 1)) }
    }
}
