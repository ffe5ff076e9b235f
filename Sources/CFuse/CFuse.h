// Shim for libfuse3's low-level API. FUSE_USE_VERSION is the oldest libfuse3
// we support (Debian 12 ships 3.14), defined once, here.
#ifndef KMSFS_CFUSE_H
#define KMSFS_CFUSE_H
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>

// fuse_session_loop_mt is a function-like macro over a versioned symbol,
// which Swift cannot call; this names the 3.12+ variant for it.
static inline int CFuse_session_loop_mt(struct fuse_session *se, struct fuse_loop_config *config) {
    return fuse_session_loop_mt(se, config);
}

// FUSE_ARGS_INIT is a macro initialiser.
static inline struct fuse_args CFuse_args_init(int argc, char **argv) {
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    return args;
}
#endif
