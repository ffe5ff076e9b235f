internal import CFuse
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// The C callbacks of fuse_lowlevel_ops. Each fetches the session context,
/// calls one FileSystem op, and sends exactly one reply: the result, or the
/// errno of what it threw. Nothing else in kmsfs touches fuse_req_t.
enum Trampolines {
    static func context(_ req: fuse_req_t?) -> SessionContext {
        Unmanaged<SessionContext>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }

    static func fs(_ req: fuse_req_t?) -> FileSystem { context(req).fileSystem }

    static func name(_ p: UnsafePointer<CChar>?) -> [UInt8] {
        guard let p else { return [] }
        return Array(UnsafeBufferPointer(start: UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self), count: strlen(p)))
    }

    static func caller(_ req: fuse_req_t?) -> Caller {
        let ctx = fuse_req_ctx(req)!.pointee
        return Caller(uid: ctx.uid, gid: ctx.gid, umask: ctx.umask)
    }

    static func reply(_ req: fuse_req_t?, _ body: () throws -> Void) {
        do { try body() } catch { fail(req, Errno.from(error, "request").code) }
    }

    /// Answers with an error, counted for `kmsfs status`.
    static func fail(_ req: fuse_req_t?, _ code: Int32) {
        fs(req).activity.countError(code)
        fuse_reply_err(req, code)
    }

    static func makeStat(_ a: InodeAttributes, blocks: UInt64? = nil) -> stat {
        var st = stat()
        st.st_ino = UInt(a.ino.rawValue)
        st.st_mode = a.mode
        st.st_nlink = UInt(a.nlink)
        st.st_uid = a.uid
        st.st_gid = a.gid
        st.st_rdev = UInt(a.rdev)
        st.st_size = Int(a.size)
        st.st_blksize = 4096
        st.st_blocks = Int(blocks ?? a.blocks512)
        st.st_atim = timespec(tv_sec: Int(a.atime.seconds), tv_nsec: Int(a.atime.nanoseconds))
        st.st_mtim = timespec(tv_sec: Int(a.mtime.seconds), tv_nsec: Int(a.mtime.nanoseconds))
        st.st_ctim = timespec(tv_sec: Int(a.ctime.seconds), tv_nsec: Int(a.ctime.nanoseconds))
        return st
    }

    static func entry(_ a: InodeAttributes) -> fuse_entry_param {
        var e = fuse_entry_param()
        e.ino = a.ino.rawValue
        e.generation = 1
        e.attr = makeStat(a)
        e.attr_timeout = FileSystem.cacheTimeout
        e.entry_timeout = FileSystem.cacheTimeout
        return e
    }

    static func replyEntry(_ req: fuse_req_t?, _ a: InodeAttributes) {
        var e = entry(a)
        fuse_reply_entry(req, &e)
    }

    static func replyAttr(_ req: fuse_req_t?, _ a: InodeAttributes) {
        var st = makeStat(a, blocks: a.isRegular ? fs(req).allocatedBlocks(a) : nil)
        fuse_reply_attr(req, &st, FileSystem.cacheTimeout)
    }

    static func timestamp(_ ts: timespec) -> Timestamp { Timestamp(seconds: Int64(ts.tv_sec), nanoseconds: Int64(ts.tv_nsec)) }

    static func operations() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            guard let userdata, let conn else { return }
            let context = Unmanaged<SessionContext>.fromOpaque(userdata).takeUnretainedValue()
            let want: [UInt32] = [UInt32(FUSE_CAP_ATOMIC_O_TRUNC), UInt32(FUSE_CAP_PARALLEL_DIROPS), UInt32(FUSE_CAP_ASYNC_READ)]
            for cap in want where conn.pointee.capable & cap != 0 { conn.pointee.want |= cap }
            if context.wantWriteback && conn.pointee.capable & UInt32(FUSE_CAP_WRITEBACK_CACHE) != 0 {
                conn.pointee.want |= UInt32(FUSE_CAP_WRITEBACK_CACHE)
                context.writeback = true
            }
            conn.pointee.max_write = 1 << 20
            conn.pointee.max_readahead = 1 << 20
            conn.pointee.max_background = 64
            conn.pointee.congestion_threshold = 48
        }
        ops.destroy = { userdata in
            guard let userdata else { return }
            Unmanaged<SessionContext>.fromOpaque(userdata).takeUnretainedValue().fileSystem.shutdown()
        }
        ops.lookup = { req, parent, name in
            do {
                Trampolines.replyEntry(req, try Trampolines.fs(req).lookup(parent: InodeNumber(parent), name: Trampolines.name(name)))
            } catch let error as Errno where error.code == ENOENT {
                // A negative entry the kernel may cache: kmsfs is the only
                // writer of its store, so "not there" stays true until we change it.
                var e = fuse_entry_param()
                e.entry_timeout = FileSystem.cacheTimeout
                fuse_reply_entry(req, &e)
            } catch {
                Trampolines.fail(req, Errno.from(error, "lookup").code)
            }
        }
        ops.forget = { req, ino, count in
            Trampolines.fs(req).forget(InodeNumber(ino), count: count)
            fuse_reply_none(req)
        }
        ops.forget_multi = { req, count, forgets in
            let fs = Trampolines.fs(req)
            for i in 0..<count {
                let f = forgets![i]
                fs.forget(InodeNumber(f.ino), count: f.nlookup)
            }
            fuse_reply_none(req)
        }
        ops.getattr = { req, ino, _ in
            Trampolines.reply(req) { Trampolines.replyAttr(req, try Trampolines.fs(req).attributes(InodeNumber(ino))) }
        }
        ops.setattr = { req, ino, attr, toSet, _ in
            Trampolines.reply(req) {
                let st = attr!.pointee
                var changes = AttributeChanges()
                if toSet & (1 << 0) != 0 { changes.mode = st.st_mode }
                if toSet & (1 << 1) != 0 { changes.uid = st.st_uid }
                if toSet & (1 << 2) != 0 { changes.gid = st.st_gid }
                if toSet & (1 << 3) != 0 { changes.size = UInt64(st.st_size) }
                if toSet & (1 << 7) != 0 { changes.atime = .now() } else if toSet & (1 << 4) != 0 { changes.atime = Trampolines.timestamp(st.st_atim) }
                if toSet & (1 << 8) != 0 { changes.mtime = .now() } else if toSet & (1 << 5) != 0 { changes.mtime = Trampolines.timestamp(st.st_mtim) }
                if toSet & (1 << 10) != 0 { changes.ctime = Trampolines.timestamp(st.st_ctim) }
                Trampolines.replyAttr(req, try Trampolines.fs(req).setAttributes(InodeNumber(ino), changes))
            }
        }
        ops.readlink = { req, ino in
            Trampolines.reply(req) {
                var target = try Trampolines.fs(req).readLink(InodeNumber(ino))
                target.append(0)
                _ = target.withUnsafeBufferPointer { fuse_reply_readlink(req, UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self)) }
            }
        }
        ops.mknod = { req, parent, name, mode, rdev in
            Trampolines.reply(req) { Trampolines.replyEntry(req, try Trampolines.fs(req).makeNode(parent: InodeNumber(parent), name: Trampolines.name(name), mode: mode, rdev: UInt64(rdev), caller: Trampolines.caller(req))) }
        }
        ops.mkdir = { req, parent, name, mode in
            Trampolines.reply(req) {
                Trampolines.replyEntry(req, try Trampolines.fs(req).makeNode(parent: InodeNumber(parent), name: Trampolines.name(name), mode: 0o040000 | (mode & 0o7777), rdev: 0, caller: Trampolines.caller(req)))
            }
        }
        ops.symlink = { req, link, parent, name in
            Trampolines.reply(req) {
                Trampolines.replyEntry(req, try Trampolines.fs(req).makeNode(parent: InodeNumber(parent), name: Trampolines.name(name), mode: 0o120777, rdev: 0,
                                                     caller: Trampolines.caller(req), symlinkTarget: Trampolines.name(link)))
            }
        }
        ops.unlink = { req, parent, name in
            Trampolines.reply(req) {
                try Trampolines.fs(req).unlink(parent: InodeNumber(parent), name: Trampolines.name(name), directory: false)
                fuse_reply_err(req, 0)
            }
        }
        ops.rmdir = { req, parent, name in
            Trampolines.reply(req) {
                try Trampolines.fs(req).unlink(parent: InodeNumber(parent), name: Trampolines.name(name), directory: true)
                fuse_reply_err(req, 0)
            }
        }
        ops.rename = { req, parent, name, newParent, newName, flags in
            Trampolines.reply(req) {
                try Trampolines.fs(req).rename(parent: InodeNumber(parent), name: Trampolines.name(name), newParent: InodeNumber(newParent), newName: Trampolines.name(newName), flags: flags)
                fuse_reply_err(req, 0)
            }
        }
        ops.link = { req, ino, newParent, newName in
            Trampolines.reply(req) { Trampolines.replyEntry(req, try Trampolines.fs(req).link(InodeNumber(ino), newParent: InodeNumber(newParent), newName: Trampolines.name(newName))) }
        }
        ops.open = { req, ino, fi in
            Trampolines.reply(req) {
                try Trampolines.fs(req).open(InodeNumber(ino), flags: fi!.pointee.flags)
                fi!.pointee.fh = ino
                fi!.pointee.keep_cache = 1
                fuse_reply_open(req, fi)
            }
        }
        ops.create = { req, parent, name, mode, fi in
            Trampolines.reply(req) {
                let a = try Trampolines.fs(req).create(parent: InodeNumber(parent), name: Trampolines.name(name), mode: mode, caller: Trampolines.caller(req))
                fi!.pointee.fh = a.ino.rawValue
                fi!.pointee.keep_cache = 1
                var e = Trampolines.entry(a)
                if fuse_reply_create(req, &e, fi) != 0 { Trampolines.fs(req).release(a.ino) }
            }
        }
        ops.read = { req, ino, size, offset, _ in
            Trampolines.reply(req) {
                try Trampolines.fs(req).read(InodeNumber(ino), offset: UInt64(offset), count: size) { buffer in
                    fuse_reply_buf(req, buffer.baseAddress?.assumingMemoryBound(to: CChar.self), buffer.count)
                }
            }
        }
        ops.write = { req, ino, buf, size, offset, fi in
            Trampolines.reply(req) {
                let append = !Trampolines.context(req).writeback && fi!.pointee.flags & O_APPEND != 0
                let written = try Trampolines.fs(req).write(InodeNumber(ino), offset: UInt64(offset), data: UnsafeRawBufferPointer(start: buf, count: size), append: append)
                fuse_reply_write(req, written)
            }
        }
        // Close promises no durability, and kmsfs takes no POSIX locks of its
        // own (the kernel keeps them) for a flush to release: ENOSYS makes the
        // kernel stop sending FLUSH, one request less per close. Only from
        // Linux 5.14 does the kernel still write a file's dirty pages back at
        // close (and return their error) once FLUSH is off; before, it is kept.
        ops.flush = { req, _, _ in
            fuse_reply_err(req, FuseSession.kernelWritesBackAtClose ? ENOSYS : 0)
        }
        ops.release = { req, ino, _ in
            Trampolines.fs(req).release(InodeNumber(ino))
            fuse_reply_err(req, 0)
        }
        ops.fsync = { req, ino, datasync, _ in
            Trampolines.reply(req) {
                try Trampolines.fs(req).fsync(InodeNumber(ino), dataOnly: datasync != 0)
                fuse_reply_err(req, 0)
            }
        }
        ops.fsyncdir = { req, _, _, _ in
            Trampolines.reply(req) {
                try Trampolines.fs(req).syncMetadata()
                fuse_reply_err(req, 0)
            }
        }
        ops.opendir = { req, ino, fi in
            Trampolines.reply(req) {
                guard try Trampolines.fs(req).attributes(InodeNumber(ino)).isDirectory else { throw Errno(ENOTDIR) }
                fuse_reply_open(req, fi)
            }
        }
        ops.releasedir = { req, _, _ in fuse_reply_err(req, 0) }
        ops.readdir = { req, ino, size, offset, _ in Trampolines.readDirectory(req, ino, size, offset, plus: false) }
        ops.readdirplus = { req, ino, size, offset, _ in Trampolines.readDirectory(req, ino, size, offset, plus: true) }
        ops.statfs = { req, _ in
            Trampolines.reply(req) {
                var st = try Trampolines.fs(req).statistics()
                fuse_reply_statfs(req, &st)
            }
        }
        ops.setxattr = { req, ino, name, value, size, flags in
            Trampolines.reply(req) {
                let bytes = size > 0 ? Array(UnsafeRawBufferPointer(start: value, count: size)) : []
                try Trampolines.fs(req).setXattr(InodeNumber(ino), name: Trampolines.name(name), value: bytes, flags: flags)
                fuse_reply_err(req, 0)
            }
        }
        ops.getxattr = { req, ino, name, size in
            Trampolines.reply(req) {
                let value = try Trampolines.fs(req).getXattr(InodeNumber(ino), name: Trampolines.name(name))
                Trampolines.replySized(req, value, size)
            }
        }
        ops.listxattr = { req, ino, size in
            Trampolines.reply(req) { Trampolines.replySized(req, try Trampolines.fs(req).listXattrs(InodeNumber(ino)), size) }
        }
        ops.removexattr = { req, ino, name in
            Trampolines.reply(req) {
                try Trampolines.fs(req).removeXattr(InodeNumber(ino), name: Trampolines.name(name))
                fuse_reply_err(req, 0)
            }
        }
        ops.fallocate = { req, ino, mode, offset, length, _ in
            Trampolines.reply(req) {
                guard offset >= 0, length > 0 else { throw Errno.invalid }
                try Trampolines.fs(req).allocate(InodeNumber(ino), mode: mode, offset: UInt64(offset), length: UInt64(length))
                fuse_reply_err(req, 0)
            }
        }
        return ops
    }

    /// getxattr/listxattr protocol: size 0 asks for the length; too small is ERANGE.
    static func replySized(_ req: fuse_req_t?, _ value: [UInt8], _ size: Int) {
        if size == 0 {
            fuse_reply_xattr(req, value.count)
        } else if value.count > size {
            fail(req, ERANGE)
        } else {
            _ = value.withUnsafeBufferPointer { fuse_reply_buf(req, UnsafeRawPointer($0.baseAddress)?.assumingMemoryBound(to: CChar.self), $0.count) }
        }
    }

    static func readDirectory(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int, _ offset: off_t, plus: Bool) {
        reply(req) {
            let fs = fs(req)
            let entries = try fs.readDirectory(InodeNumber(ino), after: Int64(offset), limit: max(8, size / 48))
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
            defer { buffer.deallocate() }
            var used = 0
            for item in entries {
                var nameC = item.name + [0]
                let isDot = item.name == [0x2e] || item.name == [0x2e, 0x2e]
                let needed: Int = nameC.withUnsafeMutableBufferPointer { n in
                    let cname = UnsafeRawPointer(n.baseAddress!).assumingMemoryBound(to: CChar.self)
                    if plus {
                        var e = entry(item.attributes)
                        if isDot { e.ino = 0 }  // the kernel takes no reference for "." and ".."
                        return fuse_add_direntry_plus(req, buffer + used, size - used, cname, &e, off_t(item.cookie))
                    }
                    var st = makeStat(item.attributes)
                    return fuse_add_direntry(req, buffer + used, size - used, cname, &st, off_t(item.cookie))
                }
                if needed > size - used { break }
                if plus && !isDot { fs.rememberFromReaddirPlus(item.attributes.ino) }
                used += needed
            }
            fuse_reply_buf(req, buffer, used)
        }
    }
}
