// swift-tools-version: 6.0
// kmsfs: an encrypted FUSE filesystem whose data key is wrapped by a KMS.
// Dependencies are kept deliberately small (see README "Dependencies"): the
// crypto, TLS and HTTP come from the system's OpenSSL and libcurl through thin
// C shims, so a cold build on 2 cores stays around a minute.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "kmsfs",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "kmsfs", targets: ["kmsfs"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // L0: system libraries, each a module map plus one shim header.
        .systemLibrary(name: "CFuse", path: "Sources/CFuse", pkgConfig: "fuse3"),
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "openssl"),
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite", pkgConfig: "sqlite3"),
        .systemLibrary(name: "CLinux", path: "Sources/CLinux"),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl"),

        // L1
        .target(name: "Locking", swiftSettings: swiftSettings),
        .target(name: "BlockCipher", dependencies: ["COpenSSL", "Locking"], swiftSettings: swiftSettings),
        .target(name: "HTTPTransport", dependencies: ["CCurl", "COpenSSL"], swiftSettings: swiftSettings),
        .target(name: "KeyVault", dependencies: ["COpenSSL", "HTTPTransport", "Locking"], swiftSettings: swiftSettings),
        // L2
        .target(name: "MetaStore", dependencies: ["BlockCipher", "CSQLite", "CLinux", "Locking"], swiftSettings: swiftSettings),
        // L3
        .target(name: "FuseFrontend", dependencies: ["MetaStore", "BlockCipher", "CFuse", "CLinux", "Locking"], swiftSettings: swiftSettings),
        .target(name: "SnapExport", dependencies: ["MetaStore", "KeyVault", "BlockCipher", "HTTPTransport", "CLinux", "Locking"], swiftSettings: swiftSettings),
        // L4
        .executableTarget(
            name: "kmsfs",
            dependencies: [
                "FuseFrontend", "SnapExport", "MetaStore", "KeyVault", "BlockCipher", "HTTPTransport", "CLinux", "Locking",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),

        .testTarget(name: "BlockCipherTests", dependencies: ["BlockCipher"],
                    resources: [.copy("Vectors")], swiftSettings: swiftSettings),
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "KeyVaultTests", dependencies: ["KeyVault", "HTTPTransport", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "MetaStoreTests", dependencies: ["MetaStore", "BlockCipher", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "SnapExportTests", dependencies: ["SnapExport", "BlockCipher", "HTTPTransport", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "IntegrationTests", dependencies: ["kmsfs"], exclude: ["Scripts", "Fixtures"], swiftSettings: swiftSettings),
    ]
)
