internal import COpenSSL

/// AES-256-XTS over fixed-size data units (IEEE 1619), through OpenSSL EVP.
///
/// Tweak packing (docs/FORMAT.md "Data units"): bytes 0–7 are the block index,
/// bytes 8–15 the file id, both little-endian, so block index alone in the
/// first half reproduces the IEEE 1619 "data unit sequence number" vectors.
/// XTS gives confidentiality only, no integrity.
public final class XTSCipher: Sendable {
    /// Key size: two 256-bit AES keys.
    public static let keyByteCount = 64
    /// Size of one data unit in bytes.
    public let unitSize: Int
    private let encryptors: CipherContextPool
    private let decryptors: CipherContextPool

    /// - Parameter key: 64 bytes whose halves must differ.
    public init(key: SecretBytes, unitSize: Int = 4096) throws {
        guard key.count == Self.keyByteCount else { throw BlockCipherError.badKeyLength(expected: Self.keyByteCount, actual: key.count) }
        let halvesEqual = key.withUnsafeBytes { CRYPTO_memcmp($0.baseAddress!, $0.baseAddress! + 32, 32) == 0 }
        guard !halvesEqual else { throw BlockCipherError.xtsKeyHalvesEqual }
        guard unitSize >= 16, unitSize % 16 == 0 else { throw BlockCipherError.badUnitLength(expected: 4096, actual: unitSize) }
        self.unitSize = unitSize
        let cipher = try FetchedCipher("AES-256-XTS")
        encryptors = CipherContextPool(cipher: cipher, key: key, encrypt: true)
        decryptors = CipherContextPool(cipher: cipher, key: key, encrypt: false)
    }

    /// The 16-byte tweak for one data unit.
    public static func tweak(fileID: FileID, block: BlockIndex) -> (UInt64, UInt64) {
        (block.rawValue.littleEndian, fileID.rawValue.littleEndian)
    }

    /// Encrypts consecutive whole units starting at `firstBlock`. `input` and
    /// `output` have equal length, a multiple of `unitSize`; they may be the same memory.
    public func encrypt(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, fileID: FileID, firstBlock: BlockIndex) throws {
        try run(encryptors, input, output, fileID, firstBlock)
    }

    /// Decrypts consecutive whole units starting at `firstBlock` (see `encrypt`).
    public func decrypt(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, fileID: FileID, firstBlock: BlockIndex) throws {
        try run(decryptors, input, output, fileID, firstBlock)
    }

    private func run(_ pool: CipherContextPool, _ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer,
                     _ fileID: FileID, _ firstBlock: BlockIndex) throws {
        guard input.count == output.count, input.count % unitSize == 0 else {
            throw BlockCipherError.badUnitLength(expected: unitSize, actual: input.count % unitSize)
        }
        let units = input.count / unitSize
        guard units > 0 else { return }
        let unitSize = self.unitSize
        try pool.with { context in
            var tweak = Self.tweak(fileID: fileID, block: firstBlock)
            for unit in 0..<units {
                tweak.0 = (firstBlock.rawValue &+ UInt64(unit)).littleEndian
                let offset = unit * unitSize
                var outLength: Int32 = 0
                let ok = withUnsafeBytes(of: &tweak) { iv in
                    EVP_CipherInit_ex(context.ctx, nil, nil, nil, iv.baseAddress!.assumingMemoryBound(to: UInt8.self), -1) == 1
                        && EVP_CipherUpdate(context.ctx, (output.baseAddress! + offset).assumingMemoryBound(to: UInt8.self), &outLength,
                                            (input.baseAddress! + offset).assumingMemoryBound(to: UInt8.self), Int32(unitSize)) == 1
                }
                guard ok, outLength == Int32(unitSize) else { throw BlockCipherError.lastOpenSSL("EVP_CipherUpdate(AES-256-XTS)") }
            }
        }
    }

    /// Byte-array convenience for tests and small callers.
    public func encrypt(_ input: [UInt8], fileID: FileID, firstBlock: BlockIndex) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: input.count)
        try input.withUnsafeBytes { i in try out.withUnsafeMutableBytes { try encrypt(i, into: $0, fileID: fileID, firstBlock: firstBlock) } }
        return out
    }

    /// Byte-array convenience for tests and small callers.
    public func decrypt(_ input: [UInt8], fileID: FileID, firstBlock: BlockIndex) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: input.count)
        try input.withUnsafeBytes { i in try out.withUnsafeMutableBytes { try decrypt(i, into: $0, fileID: fileID, firstBlock: firstBlock) } }
        return out
    }
}
