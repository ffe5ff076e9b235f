import Locking
#if canImport(Glibc)
import Glibc
#endif

/// A debug-build-only fault hook for the fault-injection tests: with
/// `KMSFS_FAULT=OP:ERRNO:AFTER` (OP read, write or fsync), every OP on a
/// ciphertext file after the first AFTER fails with ERRNO, as a failing disk
/// would. Release builds compile it to nothing.
public enum FaultInjection {
    enum Operation: String { case read, write, fsync }

    #if DEBUG
    private static let spec: (operation: Operation, errno: Int32, after: Int)? = {
        guard let raw = getenv("KMSFS_FAULT").map({ String(cString: $0) }) else { return nil }
        let parts = raw.split(separator: ":")
        guard parts.count == 3, let op = Operation(rawValue: String(parts[0])), let code = Int32(parts[1]), let after = Int(parts[2]) else { return nil }
        return (op, code, after)
    }()
    private static let count = Locked(0)

    /// The errno to fail `operation` with, or nil.
    static func failure(_ operation: Operation) -> Int32? {
        guard let spec, spec.operation == operation else { return nil }
        let n = count.withLock { c -> Int in c += 1; return c }
        return n > spec.after ? spec.errno : nil
    }

    private static let crashSpec: (point: String, at: Int)? = {
        guard let raw = getenv("KMSFS_CRASH_AT").map({ String(cString: $0) }), !raw.isEmpty else { return nil }
        let parts = raw.split(separator: ":")
        return (String(parts[0]), parts.count > 1 ? Int(parts[1]) ?? 1 : 1)
    }()
    private static let crashCount = Locked(0)

    /// With `KMSFS_CRASH_AT=POINT[:N]`, the process kills itself with SIGKILL
    /// (as `kill -9` would) the Nth time it reaches `point`: the crash tests of
    /// multi-step changes (fs upgrade) stop exactly between two steps.
    public static func crashPoint(_ point: String) {
        guard let crashSpec, crashSpec.point == point else { return }
        if crashCount.withLock({ c -> Int in c += 1; return c }) >= crashSpec.at { kill(getpid(), SIGKILL) }
    }
    #else
    @inline(__always) static func failure(_ operation: Operation) -> Int32? { nil }
    @inline(__always) public static func crashPoint(_ point: String) {}
    #endif
}
