/// A file's identity in the XTS tweak. File ids are allocated from a counter
/// that only grows (MetaStore), so two files never share a tweak under one key.
public struct FileID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }
    public static func < (a: FileID, b: FileID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
}

/// Index of a 4096-byte data unit within a file.
public struct BlockIndex: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }
    public static func < (a: BlockIndex, b: BlockIndex) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
}
