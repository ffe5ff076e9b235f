#if canImport(Glibc)
import Glibc
#endif

/// CLOCK_MONOTONIC: for intervals that a change of the wall clock must not stretch or cut.
public enum MonotonicClock {
    public static func nanoseconds() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }

    public static func seconds() -> Int { Int(nanoseconds() / 1_000_000_000) }
}
