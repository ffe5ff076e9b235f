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
#endif
