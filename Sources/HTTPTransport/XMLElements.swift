/// The one XML scraper of kmsfs, for the flat answers of S3 and of AWS
/// emulators (ListObjectsV2, CreateMultipartUpload, <Error> bodies). It finds
/// `<name>text</name>` pairs by plain search, so any input gives a (possibly
/// empty) list and never a trap; callers validate each value they use.
public enum XMLElements {
    /// The text of every `<name>...</name>` element, in order, with the five predefined entities decoded.
    public static func texts(_ name: String, in text: String) -> [String] {
        var out: [String] = []
        // Searched as bytes: no Character (grapheme) rules can make a tag go unseen.
        var rest = text.utf8[...]
        let open = Array("<\(name)>".utf8), close = Array("</\(name)>".utf8)
        while let start = rest.firstRange(of: open), let end = rest[start.upperBound...].firstRange(of: close) {
            out.append(decodeEntities(String(decoding: rest[start.upperBound..<end.lowerBound], as: UTF8.self)))
            rest = rest[end.upperBound...]
        }
        return out
    }

    /// The text of the first `<name>` element, or "" if there is none.
    public static func first(_ name: String, in text: String) -> String { texts(name, in: text).first ?? "" }

    /// Escapes text for an element's content (ETags carry quotes; nothing else is expected).
    public static func escape(_ text: String) -> String {
        text.replacing("&", with: "&amp;").replacing("<", with: "&lt;").replacing(">", with: "&gt;")
    }

    static func decodeEntities(_ raw: String) -> String {
        guard raw.utf8.contains(UInt8(ascii: "&")) else { return raw }
        // &amp; last, so "&amp;lt;" stays "&lt;".
        return raw.replacing("&quot;", with: "\"").replacing("&apos;", with: "'")
            .replacing("&lt;", with: "<").replacing("&gt;", with: ">").replacing("&amp;", with: "&")
    }
}
