import Locking
import Synchronization

/// What a mount has done since it started, for `kmsfs status`: operations and
/// bytes read and written, files open, and the errors it answered, by errno.
/// Counting is a relaxed atomic add per request (errors, rare, take a lock).
public final class MountStatistics: Sendable {
    private let readOps = Atomic<Int>(0)
    private let readBytes = Atomic<Int>(0)
    private let writeOps = Atomic<Int>(0)
    private let writeBytes = Atomic<Int>(0)
    private let openFiles = Atomic<Int>(0)
    private let integrityFailures = Atomic<Int>(0)
    private let errors = Locked<[Int32: Int]>([:])

    public init() {}

    /// A consistent-enough copy of the counters (each is read once).
    public struct Counters: Sendable {
        public var readOperations: Int
        public var readBytes: Int
        public var writeOperations: Int
        public var writeBytes: Int
        public var openFiles: Int
        /// Requests answered with an error, by errno (ENOENT from lookups included).
        public var errors: [Int32: Int]
        /// Requests that met a unit or row that did not verify (answered EIO).
        public var integrityFailures: Int
    }

    public var counters: Counters {
        Counters(readOperations: readOps.load(ordering: .relaxed), readBytes: readBytes.load(ordering: .relaxed),
                 writeOperations: writeOps.load(ordering: .relaxed), writeBytes: writeBytes.load(ordering: .relaxed),
                 openFiles: openFiles.load(ordering: .relaxed), errors: errors.withLock { $0 },
                 integrityFailures: integrityFailures.load(ordering: .relaxed))
    }

    func countRead(_ bytes: Int) {
        readOps.add(1, ordering: .relaxed)
        readBytes.add(bytes, ordering: .relaxed)
    }

    func countWrite(_ bytes: Int) {
        writeOps.add(1, ordering: .relaxed)
        writeBytes.add(bytes, ordering: .relaxed)
    }

    func countOpen(_ delta: Int) { openFiles.add(delta, ordering: .relaxed) }

    func countError(_ code: Int32) { errors.withLock { $0[code, default: 0] += 1 } }

    func countIntegrityFailure() { integrityFailures.add(1, ordering: .relaxed) }
}
