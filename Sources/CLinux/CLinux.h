// Shim for Linux-only libc calls that Swift's Glibc module hides behind
// _GNU_SOURCE. Declarations only; glibc provides the symbols.
#ifndef KMSFS_CLINUX_H
#define KMSFS_CLINUX_H
#include <sys/types.h>

// fallocate(2): hole punching and preallocation of ciphertext files.
extern int fallocate(int fd, int mode, off_t offset, off_t len);

#define CLINUX_FALLOC_FL_KEEP_SIZE 0x01
#define CLINUX_FALLOC_FL_PUNCH_HOLE 0x02
#define CLINUX_FALLOC_FL_ZERO_RANGE 0x10

// syncfs(2): a snapshot first pushes the kernel's dirty pages of a mount to the daemon.
extern int syncfs(int fd);

// SO_PEERCRED's struct ucred (glibc hides it behind _GNU_SOURCE): the mount
// daemon's control socket answers only its own uid and root.
struct clinux_ucred { int pid; unsigned int uid; unsigned int gid; };
#define CLINUX_SO_PEERCRED 17

// lseek(2) whences for walking the data extents of sparse snapshot delta files.
#define CLINUX_SEEK_DATA 3
#define CLINUX_SEEK_HOLE 4

#include <sys/prctl.h>
#include <sys/resource.h>

// prctl(2) is variadic, which Swift cannot call. A process that holds keys
// is made non-dumpable: no core file, and /proc/<pid>/mem, environ and
// ptrace are closed to its own uid (root keeps CAP_SYS_PTRACE).
static inline int clinux_set_nondumpable(void) {
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}
// No core files at all, whatever the shell's ulimit -c or core_pattern.
static inline int clinux_disable_core_files(void) {
    struct rlimit none = { 0, 0 };
    return setrlimit(RLIMIT_CORE, &none);
}
#include <malloc.h>

// Keeps read and write buffers (up to a few MiB each) in the heap instead of
// fresh mmaps, and freed heap tops instead of giving them back: each FUSE
// request then reuses pages instead of faulting in zeroed ones.
// Bounded: buffers up to 2 MiB stay, at most 8 MiB free per arena is kept,
// and the FUSE workers share 4 arenas (RSS stays near the working set).
static inline void clinux_keep_io_buffers(void) {
    mallopt(M_MMAP_THRESHOLD, 2 << 20);
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    mallopt(M_ARENA_MAX, 4);
}
#endif
