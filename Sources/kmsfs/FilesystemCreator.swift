import BlockCipher
import Foundation
import KeyVault
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// Builds a new store in a hidden temporary directory and renames it into
/// place only when complete, so a failure leaves nothing half-made.
enum FilesystemCreator {
    /// - Parameter integrity: tag data units, seal the metadata and anchor the
    ///   generation (docs/FORMAT.md "Integrity"); false makes an XTS-only filesystem.
    /// - Parameter wrap: the keyslots (and threshold) for the new master secret and UUID.
    static func create(store: StorePaths, integrity: Bool, wrap: (KeyMaterial, _ uuid: [UInt8]) throws -> (slots: [Keyslot], threshold: UInt8)) throws -> Superblock {
        let uuid = try newUUID()
        let master = try FilesystemKeys.newMasterSecret()
        let keys = try FilesystemKeys(masterSecret: master, boundTo: uuid, integrity: integrity)
        let (slots, threshold) = try wrap(master.withUnsafeBytes { KeyMaterial(copying: $0) }, uuid)
        let superblock = Superblock.bound(uuid: uuid, createdAt: UInt64(time(nil)), keyCheckValue: keys.keyCheckValue,
                                          keyslots: slots, threshold: threshold, integrity: integrity)
        let parent = (store.root as NSString).deletingLastPathComponent
        let temp = StorePaths(root: parent + "/." + (store.root as NSString).lastPathComponent + ".creating")
        try? FileManager.default.removeItem(atPath: temp.root)
        guard mkdir(temp.root, 0o700) == 0 else { throw MetaStoreError.io(operation: "mkdir", path: temp.root, errno: errno) }
        do {
            try SuperblockFile.create(superblock, at: temp.superblock)
            _ = try MetadataStore(path: temp.metadata, names: keys.names, integrity: keys.integrity, create: true, rootOwner: (getuid(), getgid()))
            try DataStore.createLayout(at: temp.data)
            guard rename(temp.root, store.root) == 0 else { throw MetaStoreError.io(operation: "rename", path: store.root, errno: errno) }
        } catch {
            try? FileManager.default.removeItem(atPath: temp.root)
            throw error
        }
        return superblock
    }

    /// A random (version 4) UUID.
    static func newUUID() throws -> [UInt8] {
        var b = try SecureRandom.bytes(16)
        b[6] = (b[6] & 0x0f) | 0x40
        b[8] = (b[8] & 0x3f) | 0x80
        return b
    }
}
