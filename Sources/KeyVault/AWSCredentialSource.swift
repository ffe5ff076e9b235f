import Foundation
import HTTPTransport

/// Finds AWS credentials where AWS tools look for them: the environment
/// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), then the shared
/// credentials and config files (~/.aws/credentials, ~/.aws/config, or
/// AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE) for a profile (--profile,
/// AWS_PROFILE, else "default"). kmsfs never copies them into its home unless asked.
public enum AWSCredentialSource {
    public static func resolve(profile explicitProfile: String?, environment: [String: String] = ProcessEnvironment.current) throws -> AWSCredentials {
        if explicitProfile == nil, let id = environment["AWS_ACCESS_KEY_ID"], !id.isEmpty,
           let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty {
            return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 })
        }
        let profile = explicitProfile ?? environment["AWS_PROFILE"].flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        let home = environment["HOME"] ?? "/root"
        let credentialsFile = environment["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials"
        let configFile = environment["AWS_CONFIG_FILE"] ?? home + "/.aws/config"
        let sections = [(credentialsFile, profile), (configFile, profile == "default" ? "default" : "profile " + profile)]
        for (file, section) in sections {
            guard let values = ini(file)[section] else { continue }
            if let id = values["aws_access_key_id"], let secret = values["aws_secret_access_key"] {
                return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: values["aws_session_token"])
            }
        }
        throw KeyVaultError.credentialsRejected(provider: "aws", reason: "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put profile '\(profile)' in \(credentialsFile) (--profile picks another)")
    }

    /// The region of a profile in the config file, if any.
    public static func region(profile: String?, environment: [String: String] = ProcessEnvironment.current) -> String? {
        if let r = environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"], !r.isEmpty { return r }
        let name = profile ?? environment["AWS_PROFILE"] ?? "default"
        let home = environment["HOME"] ?? "/root"
        let config = ini(environment["AWS_CONFIG_FILE"] ?? home + "/.aws/config")
        return config[name == "default" ? "default" : "profile " + name]?["region"]
    }

    /// A minimal INI reader: [section] headers and key = value lines; # and ; comments.
    static func ini(_ path: String) -> [String: [String: String]] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [:] }
        var result: [String: [String: String]] = [:]
        var section = ""
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                continue
            }
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            result[section, default: [:]][key] = value
        }
        return result
    }
}
