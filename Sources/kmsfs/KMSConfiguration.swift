import Foundation
import KeyVault
#if canImport(Glibc)
import Glibc
#endif

/// The KMS new filesystem keys are wrapped with, saved as kms.json (0600) in
/// the home. Absent file: the embedded local key file.
struct KMSConfiguration: Codable, Equatable {
    var type: KMSType
    var address: String
    var keyIdentifier: String

    static let local = KMSConfiguration(type: .local, address: "", keyIdentifier: "keyfile")

    static func load(_ home: Home) throws -> KMSConfiguration {
        guard let data = FileManager.default.contents(atPath: home.kmsConfig) else { return .local }
        do { return try JSONDecoder().decode(KMSConfiguration.self, from: data) } catch {
            throw UserFacingError("KMS configuration \(home.kmsConfig) is unreadable: \(error)", exitCode: ExitCodes.badConfig)
        }
    }

    /// A KeyManager for this configuration; for local, the home's key file.
    func keyManager(home: Home? = nil) throws -> any KeyManager {
        switch type {
        case .local:
            let path = home?.localKey ?? address
            return LocalKeyManager(source: .keyFile(path: path))
        default:
            throw UserFacingError("KMS type \(type.rawValue) is not available in this build", exitCode: ExitCodes.badConfig)
        }
    }
}
