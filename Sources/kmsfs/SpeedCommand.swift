import ArgumentParser
import BlockCipher
import Foundation

/// `kmsfs speed`: AES-256-XTS throughput of this machine through BlockCipher
/// at 4 KiB data units, single- and multi-threaded: the crypto ceiling of a mount.
struct SpeedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "speed", abstract: "Measure AES-256-XTS MB/s on 4 KiB data units (one thread and all cores).")

    @Option(help: "Seconds per measurement.") var seconds = 1.0

    func run() throws {
        try userErrors {
            let cipher = try XTSCipher(key: SecretBytes.random(count: XTSCipher.keyByteCount))
            let threads = ProcessInfo.processInfo.activeProcessorCount
            for (label, n) in [("1 thread", 1), ("\(threads) threads", threads)] {
                for encrypt in [true, false] {
                    let mbps = try measure(cipher, threads: n, encrypt: encrypt)
                    writeStdout(String(format: "AES-256-XTS %@ %@: %8.1f MB/s\n", encrypt ? "encrypt" : "decrypt", label, mbps))
                }
            }
        }
    }

    /// Encrypts 1 MiB batches (256 units, as a large FUSE write does) for `seconds`.
    func measure(_ cipher: XTSCipher, threads: Int, encrypt: Bool) throws -> Double {
        let batch = 1 << 20
        let deadline = Date().addingTimeInterval(seconds)
        let start = Date()
        let total = try (0..<threads).map { index in
            try Thread.runDetachedAndWait {
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: batch, alignment: 4096)
                defer { buffer.deallocate() }
                buffer.initializeMemory(as: UInt8.self, repeating: UInt8(index))
                var bytes = 0
                var block: UInt64 = 0
                while Date() < deadline {
                    if encrypt {
                        try cipher.encrypt(UnsafeRawBufferPointer(buffer), into: buffer, fileID: FileID(UInt64(index)), firstBlock: BlockIndex(block))
                    } else {
                        try cipher.decrypt(UnsafeRawBufferPointer(buffer), into: buffer, fileID: FileID(UInt64(index)), firstBlock: BlockIndex(block))
                    }
                    bytes += batch
                    block += 256
                }
                return bytes
            }
        }.reduce(0) { $0 + (try $1.value()) }
        return Double(total) / Date().timeIntervalSince(start) / 1e6
    }
}

extension Thread {
    /// Starts `body` on a new thread now; `value()` waits for its result.
    static func runDetachedAndWait(_ body: @escaping @Sendable () throws -> Int) throws -> PendingResult {
        let pending = PendingResult()
        let thread = Thread { pending.finish(Result { try body() }) }
        thread.start()
        return pending
    }
}

/// The result of a thread started by `runDetachedAndWait`.
final class PendingResult: @unchecked Sendable {
    // @unchecked: `result` is written once before the semaphore is signalled
    // and read only after waiting on it.
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<Int, any Error>?

    func finish(_ r: Result<Int, any Error>) {
        result = r
        done.signal()
    }

    func value() throws -> Int {
        done.wait()
        return try result!.get()
    }
}
