/// The row root's bookkeeping (`RowRoot`): every write of an inode, entry,
/// symlink or xattr row goes through these, inside a transaction, so the
/// root moves with the rows it covers.
extension Catalog {
    func addInodeElement(_ ino: InodeNumber, sealed: [UInt8]) throws {
        guard let element = try rows.inodeElement(ino, sealed: sealed) else { return }
        rowRoot.add(element)
        inodeElements[ino.rawValue] = element
    }

    /// Takes the inode's row as it is on disk out of the root (nothing when it has none).
    func subtractInodeElement(_ ino: InodeNumber) throws {
        guard rows.keys != nil else { return }
        if let element = inodeElements.removeValue(forKey: ino.rawValue) {
            rowRoot.subtract(element)
            return
        }
        var sealed: [UInt8]?
        try db.query("SELECT sealed FROM inodes WHERE ino = ?", [.int(Int64(bitPattern: ino.rawValue))]) { sealed = $0.blob(0) }
        if let sealed, let element = try rows.inodeElement(ino, sealed: sealed) { rowRoot.subtract(element) }
    }

    func insertSymlink(_ ino: InodeNumber, sealedTarget: [UInt8]) throws {
        try transaction {
            try db.query("INSERT INTO symlinks(ino, target) VALUES(?,?)", [.int(Int64(bitPattern: ino.rawValue)), .blob(sealedTarget)])
            try rows.symlinkElement(ino, target: sealedTarget).map { rowRoot.add($0) }
        }
    }

    /// Sets an xattr row, replacing one of that name.
    func putXattr(_ ino: InodeNumber, sealedName: [UInt8], sealedValue: [UInt8]) throws {
        try transaction {
            try deleteXattr(ino, sealedName: sealedName)
            try db.query("INSERT INTO xattrs(ino, name, value) VALUES(?,?,?)", [.int(Int64(bitPattern: ino.rawValue)), .blob(sealedName), .blob(sealedValue)])
            try rows.xattrElement(ino, sealedName: sealedName, sealedValue: sealedValue).map { rowRoot.add($0) }
        }
    }

    /// Removes an xattr row; false when there was none.
    @discardableResult
    func deleteXattr(_ ino: InodeNumber, sealedName: [UInt8]) throws -> Bool {
        try transaction {
            let key: [SQLValue] = [.int(Int64(bitPattern: ino.rawValue)), .blob(sealedName)]
            var old: [UInt8]?
            try db.query("SELECT value FROM xattrs WHERE ino = ? AND name = ?", key) { old = $0.blob(0) }
            guard let old else { return false }
            try db.query("DELETE FROM xattrs WHERE ino = ? AND name = ?", key)
            try rows.xattrElement(ino, sealedName: sealedName, sealedValue: old).map { rowRoot.subtract($0) }
            return true
        }
    }

    /// Deletes an inode's row, its symlink target, its xattrs and its inline unit.
    func deleteInodeRows(_ ino: InodeNumber) throws {
        let key: [SQLValue] = [.int(Int64(bitPattern: ino.rawValue))]
        try transaction {
            try subtractInodeElement(ino)
            if rows.keys != nil {
                try db.query("SELECT target FROM symlinks WHERE ino = ?", key) { row in
                    try rows.symlinkElement(ino, target: row.blob(0)).map { rowRoot.subtract($0) }
                }
                try db.query("SELECT name, value FROM xattrs WHERE ino = ?", key) { row in
                    try rows.xattrElement(ino, sealedName: row.blob(0), sealedValue: row.blob(1)).map { rowRoot.subtract($0) }
                }
            }
            for table in ["inodes", "symlinks", "xattrs"] + (rows.keys != nil ? ["inline_units"] : []) { try db.query("DELETE FROM \(table) WHERE ino = ?", key) }
        }
    }

    /// The root of the rows as they are: every row of the four tables read once.
    func computeRowRoot() throws -> RowRoot {
        var root = RowRoot.zero
        func add(_ element: RowRoot?) { element.map { root.add($0) } }
        func number(_ value: Int64) -> InodeNumber { InodeNumber(UInt64(bitPattern: value)) }
        try db.query("SELECT ino, sealed FROM inodes") { add(try rows.inodeElement(number($0.int(0)), sealed: $0.blob(1))) }
        try db.query("SELECT parent, name, ino FROM entries") { add(try rows.entryElement(parent: number($0.int(0)), sealedName: $0.blob(1), ino: number($0.int(2)))) }
        try db.query("SELECT ino, target FROM symlinks") { add(try rows.symlinkElement(number($0.int(0)), target: $0.blob(1))) }
        try db.query("SELECT ino, name, value FROM xattrs") { add(try rows.xattrElement(number($0.int(0)), sealedName: $0.blob(1), sealedValue: $0.blob(2))) }
        return root
    }

    /// Throws `.rowsReplaced` unless the rows sum to the stored (authenticated)
    /// root: a row was put back from an older state, replaced, added or
    /// removed. With `reseal`, their root becomes the stored one instead.
    func verifyRowRoot(reseal: Bool) throws {
        let actual = try computeRowRoot()
        guard actual != rowRoot else { return }
        guard reseal else { throw MetaStoreError.rowsReplaced }
        rowRoot = actual
        try transaction { try writeCountersTag(generation: generation, nextIno: writtenNextIno) }
    }
}
