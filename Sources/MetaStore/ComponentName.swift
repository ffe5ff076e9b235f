/// The one rule for names that become path components: filesystem, snapshot
/// and passkey names, whether a user typed them or a listing (an S3 bucket,
/// a bundle directory) returned them.
public enum ComponentName {
    public static let rule = "use 1-64 letters, digits, '-', '_' or '.', not starting with '.' or '-'"

    public static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...64).contains(bytes.count), bytes[0] != UInt8(ascii: "."), bytes[0] != UInt8(ascii: "-") else { return false }
        return bytes.allSatisfy { b in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(b)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) || b == UInt8(ascii: "-") || b == UInt8(ascii: "_") || b == UInt8(ascii: ".")
        }
    }
}
