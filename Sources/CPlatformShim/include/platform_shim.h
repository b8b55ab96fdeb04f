// Thin C shims for Linux facilities Swift's Glibc module does not import
// (variadic syscall(), eventfd/epoll headers, _GNU_SOURCE flags, ioctls).
// Every function here is a direct pass-through: no policy, no state.
#ifndef BLOBFS_PLATFORM_SHIM_H
#define BLOBFS_PLATFORM_SHIM_H
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

extern const int shim_O_DIRECT;
extern const int shim_EPOLLIN;
extern const int shim_FALLOC_FL_PUNCH_HOLE;
extern const int shim_FALLOC_FL_KEEP_SIZE;
extern const int shim_FALLOC_FL_ZERO_RANGE;

int shim_eventfd(unsigned int initval, int nonblocking);
int shim_epoll_create(void);
int shim_epoll_add(int epfd, int fd, uint64_t token);
int shim_epoll_del(int epfd, int fd);
/// Returns number of ready entries (tokens written to `tokens`), or -1 with errno.
int shim_epoll_wait(int epfd, uint64_t *tokens, int max, int timeout_ms);

int shim_set_thread_name(const char *name);
long shim_gettid(void);
int shim_sched_getcpu(void);
/// mallopt(M_MMAP_THRESHOLD, 64 MiB) and M_TRIM_THRESHOLD likewise; returns 1 on success.
int shim_mallopt_io_buffers(void);

/// Block-device geometry. Return 0 or -1 with errno.
int shim_blk_logical_block_size(int fd, int *out);
int shim_blk_physical_block_size(int fd, int *out);
int shim_blk_size_bytes(int fd, uint64_t *out);
int shim_blk_discard(int fd, uint64_t offset, uint64_t length);
int shim_blk_zeroout(int fd, uint64_t offset, uint64_t length);

int shim_fallocate(int fd, int mode, int64_t offset, int64_t length);
/// statfs f_type of the filesystem holding fd (for O_DIRECT policy and diagnostics).
int shim_fstatfs_type(int fd, int64_t *out);

/// Hardware CRC32C step over `len` bytes (SSE4.2 when available, else returns -1 from shim_crc32c_hw_available).
int shim_crc32c_hw_available(void);
uint32_t shim_crc32c_hw(uint32_t crc, const void *buf, size_t len);
#endif
