import Foundation
import KeyVault

/// The parameter rules of `kmsfs security kms set`, as the WEKA seed's table
/// states them. Every violation is a one-line usage error raised before any
/// network call.
enum KMSParameters {
    static let reservedNamespaces: Set<String> = ["root", "sys", "audit", "auth", "cubbyhole", "identity"]

    /// Checks the raw arguments; `tokenGiven` says whether --token, --token-file or $VAULT_TOKEN supplied one.
    static func validate(type rawType: String, address: String, keyIdentifier: String, tokenGiven: Bool, tokenFromArguments: Bool,
                         namespace: String?, caCert: String?, clientCert: String?, clientKey: String?, transitMount: String?,
                         anchorMount: String? = nil) throws -> KMSConfiguration {
        func usage(_ message: String) -> UserFacingError { UserFacingError(message, exitCode: ExitCodes.usage) }
        guard let type = KMSType(rawValue: rawType), type != .local else {
            throw usage("KMS type must be 'vault', 'kmip' or 'aws', not '\(rawType)'")
        }
        guard !keyIdentifier.isEmpty, !keyIdentifier.contains(where: { $0.isWhitespace }), type == .aws || !keyIdentifier.contains("/") else {
            throw usage("key identifier '\(keyIdentifier)' is empty or contains spaces or '/'")
        }
        switch type {
        case .vault:
            guard let url = URLComponents(string: address), let scheme = url.scheme, ["http", "https"].contains(scheme),
                  let host = url.host, !host.isEmpty, url.path.isEmpty || url.path == "/", url.query == nil,
                  url.fragment == nil, url.user == nil, url.password == nil, !address.contains("@") else {
                throw usage("vault address must be a URL such as https://vault.example.com:8200, not '\(address)'")
            }
            guard tokenGiven else { throw usage("--token (or --token-file, or $VAULT_TOKEN) is mandatory for vault") }
            guard clientCert == nil else { throw usage("--client-cert is not allowed for vault (it is for kmip)") }
            guard clientKey == nil else { throw usage("--client-key is not allowed for vault (it is for kmip)") }
            if let namespace { try validateNamespace(namespace) }
            for (option, value) in [("--transit-mount", transitMount), ("--anchor-mount", anchorMount)] {
                if let mount = value, mount.isEmpty || mount.hasPrefix("/") || mount.hasSuffix("/") || mount.contains(where: { $0.isWhitespace || $0 == "?" || $0 == "#" }) {
                    throw usage("\(option) '\(mount)' must be a path such as 'transit' or 'secret', without leading or trailing '/'")
                }
            }
        case .kmip:
            try validateHostPort(address)
            guard !tokenFromArguments else { throw usage("--token is not allowed for kmip (it authenticates with --client-cert and --client-key)") }
            guard clientCert != nil else { throw usage("--client-cert is mandatory for kmip") }
            guard clientKey != nil else { throw usage("--client-key is mandatory for kmip") }
            guard namespace == nil else { throw usage("--namespace is not allowed for kmip (it is a vault setting)") }
            guard transitMount == nil, anchorMount == nil else { throw usage("--transit-mount and --anchor-mount are not allowed for kmip (they are vault settings)") }
        case .aws:
            try validateAWS(address: address, keyIdentifier: keyIdentifier)
            guard !tokenFromArguments else { throw usage("--token is not allowed for aws (credentials come from the AWS environment or --profile)") }
            guard clientCert == nil, clientKey == nil else { throw usage("--client-cert and --client-key are not allowed for aws") }
            guard namespace == nil else { throw usage("--namespace is not allowed for aws (it is a vault setting)") }
            guard transitMount == nil, anchorMount == nil else { throw usage("--transit-mount and --anchor-mount are not allowed for aws (they are vault settings)") }
        case .local:
            throw usage("KMS type must be 'vault', 'kmip' or 'aws', not '\(rawType)'")
        }
        for (option, path) in [("--ca-cert", caCert), ("--client-cert", clientCert), ("--client-key", clientKey)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) {
                throw usage("\(option) \(path): no such readable file")
            }
        }
        var config = KMSConfiguration(type: type, address: address.hasSuffix("/") ? String(address.dropLast()) : address,
                                      keyIdentifier: keyIdentifier, namespace: namespace, transitMount: transitMount,
                                      caCert: caCert.map(Home.absolute), clientCert: clientCert.map(Home.absolute),
                                      clientKey: clientKey.map(Home.absolute))
        config.anchorMount = anchorMount
        return config
    }

    /// Namespace names must not end with "/", contain no spaces, and are not reserved.
    static func validateNamespace(_ namespace: String) throws {
        func usage(_ why: String) -> UserFacingError { UserFacingError("invalid namespace '\(namespace)': \(why)", exitCode: ExitCodes.usage) }
        guard !namespace.isEmpty else { throw usage("it is empty") }
        guard !namespace.hasSuffix("/") else { throw usage("it must not end with '/'") }
        guard !namespace.contains(where: { $0.isWhitespace }) else { throw usage("it must not contain spaces") }
        let first = namespace.split(separator: "/").first.map(String.init) ?? namespace
        guard !reservedNamespaces.contains(namespace), !reservedNamespaces.contains(first) else {
            throw usage("'\(reservedNamespaces.contains(namespace) ? namespace : first)' is reserved (root, sys, audit, auth, cubbyhole, identity)")
        }
    }

    /// A region (us-east-1) or an endpoint URL; a key id, key ARN, alias/name or alias ARN.
    static func validateAWS(address: String, keyIdentifier: String) throws {
        let isRegion = address.range(of: #"^[a-z]{2}(-[a-z]+)+-[0-9]+$"#, options: .regularExpression) != nil
        let url = URLComponents(string: address)
        let isURL = url.map { ["http", "https"].contains($0.scheme ?? "") && !($0.host ?? "").isEmpty && $0.fragment == nil && $0.query == nil } ?? false
            && !address.contains("@")
        guard isRegion || isURL else {
            throw UserFacingError("aws address must be a region (us-east-1) or an endpoint URL (https://kms.us-east-1.amazonaws.com), not '\(address)'", exitCode: ExitCodes.usage)
        }
        let patterns = [#"^alias/[A-Za-z0-9/_-]{1,250}$"#, #"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/[A-Za-z0-9/_-]+$"#,
                        #"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"#, #"^mrk-[0-9a-f]{32}$"#]
        guard patterns.contains(where: { keyIdentifier.range(of: $0, options: .regularExpression) != nil }) else {
            throw UserFacingError("aws key must be a key id, key ARN, alias/NAME or alias ARN, not '\(keyIdentifier)'", exitCode: ExitCodes.usage)
        }
    }

    /// hostname:port with a port in 1...65535.
    static func validateHostPort(_ address: String) throws {
        let usage = UserFacingError("kmip address must be hostname:port (e.g. kms.example.com:5696), not '\(address)'", exitCode: ExitCodes.usage)
        guard let colon = address.lastIndex(of: ":") else { throw usage }
        let host = address[..<colon], port = address[address.index(after: colon)...]
        guard !host.isEmpty, !host.contains("/"), !host.contains(" "), let p = Int(port), (1...65535).contains(p) else { throw usage }
    }
}
