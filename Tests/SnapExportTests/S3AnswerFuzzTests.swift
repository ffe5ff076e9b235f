import Foundation
import HTTPTransport
@testable import SnapExport
import TestSupport
import Testing

/// Damaged and hostile S3 answers (ListObjectsV2, <Error> bodies,
/// CreateMultipartUpload) fed to the parsers S3BundleStore uses: each gives a
/// valid result or a BundleError, never a trap, and error messages stay one
/// bounded line. Seeds are printed so a failure reproduces.
@Suite("S3 answers under mutation")
struct S3AnswerFuzzTests {
    static let prefix = "backup/manifests/"
    static let listing = """
        <?xml version="1.0" encoding="UTF-8"?>
        <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name><Prefix>backup/manifests/</Prefix>\
        <KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>\
        <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>\
        <Contents><Key>backup/manifests/nightly.jsonl</Key><Size>4096</Size><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag></Contents>\
        <Contents><Key>backup/manifests/weekly.jsonl</Key><Size>8192</Size></Contents></ListBucketResult>
        """
    static let error = """
        <?xml version="1.0" encoding="UTF-8"?>
        <Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>
        """
    static let upload = """
        <?xml version="1.0" encoding="UTF-8"?>
        <InitiateMultipartUploadResult><Bucket>bucket</Bucket><Key>backup/chunks/ab/abcd</Key>\
        <UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId></InitiateMultipartUploadResult>
        """

    /// A store that is never contacted: only its answer parsers run.
    static func store() throws -> S3BundleStore {
        try S3BundleStore(url: "s3://bucket/backup", endpointURL: "http://127.0.0.1:9", profile: nil,
                          environment: ["AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "secret"])
    }

    /// Runs every parser over `text`: the listing parser, the error-answer parser, the scraper.
    static func feed(_ text: String, to store: S3BundleStore, round: Int) {
        do {
            let page = try S3BundleStore.listPage(text, prefix: prefix, location: store.location)
            for key in page.keys { #expect(key.hasPrefix(prefix) && BundleKeys.isValid(key), "round \(round): accepted key \(key)") }
            if let next = page.next { #expect(!next.isEmpty) }
        } catch {
            #expect(error is BundleError, "round \(round): \(error)")
        }
        let failure = store.failure(HTTPResponse(status: 403, headers: [:], body: Array(text.utf8)), "GET x")
        #expect(!failure.description.contains("\n") && failure.description.count < 1000, "round \(round): \(failure.description.debugDescription)")
        _ = XMLElements.texts("UploadId", in: text)
    }

    static let inserts = ["<Key>", "</Key>", "<Key>backup/manifests/../../etc/x.jsonl</Key>", "<Key>other/x</Key>", "&amp;", "&", "<",
                          "<IsTruncated>true</IsTruncated>", "<NextContinuationToken></NextContinuationToken>", "\n", "\u{0}", "\u{ff}",
                          String(repeating: "<Message>", count: 50), String(repeating: "m", count: 5000)]

    @Test("the intact answers parse as expected")
    func intact() throws {
        let page = try S3BundleStore.listPage(Self.listing, prefix: Self.prefix, location: "s3://bucket/backup")
        #expect(page.keys == ["backup/manifests/nightly.jsonl", "backup/manifests/weekly.jsonl"])
        #expect(page.next == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        #expect(XMLElements.texts("ETag", in: Self.listing) == ["\"9b2cf535f27731c974343645a3985328\""])
        #expect(XMLElements.first("UploadId", in: Self.upload) == "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA")
        let failure = try Self.store().failure(HTTPResponse(status: 403, body: Array(Self.error.utf8)), "GET x")
        #expect(failure.description == "s3://bucket/backup: GET x was refused (AccessDenied): Access Denied")
    }

    @Test("keys outside the prefix or with unsafe paths are not listed; an endless listing is refused")
    func hostileKeys() throws {
        for key in ["backup/manifests/../../../etc/passwd.jsonl", "other/x.jsonl", "backup/manifests//x.jsonl", "backup/manifests/a b.jsonl", ""] {
            let text = "<ListBucketResult><Contents><Key>\(key)</Key></Contents><Contents><Key>backup/manifests/ok.jsonl</Key></Contents></ListBucketResult>"
            #expect(try S3BundleStore.listPage(text, prefix: Self.prefix, location: "s3://b").keys == ["backup/manifests/ok.jsonl"], "\(key)")
        }
        let endless = "<IsTruncated>true</IsTruncated><NextContinuationToken></NextContinuationToken>"
        #expect(throws: BundleError.self) { try S3BundleStore.listPage(endless, prefix: Self.prefix, location: "s3://b") }
    }

    @Test("2,000 seeded mutations of listing, error and multipart answers give a result or a BundleError")
    func mutations() throws {
        let seed: UInt64 = 0x53_2026
        print("S3AnswerFuzzTests.mutations seed \(seed)")
        let store = try Self.store()
        var rng = SplitMix(seed: seed)
        let samples = [Self.listing, Self.error, Self.upload]
        for round in 0..<2000 {
            var text = samples[round % samples.count]
            for _ in 0..<(1 + rng.next() % 3) { text = String(decoding: rng.mutated(Array(text.utf8), inserting: Self.inserts), as: UTF8.self) }
            Self.feed(text, to: store, round: round)
        }
    }
}
