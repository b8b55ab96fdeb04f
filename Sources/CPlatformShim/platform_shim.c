#define _GNU_SOURCE
#include "platform_shim.h"
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <linux/fs.h>
#include <linux/falloc.h>

const int shim_O_DIRECT = O_DIRECT;
const int shim_EPOLLIN = EPOLLIN;
const int shim_FALLOC_FL_PUNCH_HOLE = FALLOC_FL_PUNCH_HOLE;
const int shim_FALLOC_FL_KEEP_SIZE = FALLOC_FL_KEEP_SIZE;
const int shim_FALLOC_FL_ZERO_RANGE = FALLOC_FL_ZERO_RANGE;

int shim_eventfd(unsigned int initval, int nonblocking) {
    return eventfd(initval, EFD_CLOEXEC | (nonblocking ? EFD_NONBLOCK : 0));
}
int shim_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }
int shim_epoll_add(int epfd, int fd, uint64_t token) {
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = token };
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}
int shim_epoll_del(int epfd, int fd) { return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }
int shim_epoll_wait(int epfd, uint64_t *tokens, int max, int timeout_ms) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) tokens[i] = evs[i].data.u64;
    return n;
}
int shim_set_thread_name(const char *name) { return pthread_setname_np(pthread_self(), name); }
long shim_gettid(void) { return syscall(SYS_gettid); }
#include <sched.h>
int shim_sched_getcpu(void) { return sched_getcpu(); }
#include <malloc.h>
int shim_mallopt_io_buffers(void) {
    return mallopt(M_MMAP_THRESHOLD, 64 << 20) && mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

int shim_blk_logical_block_size(int fd, int *out) { return ioctl(fd, BLKSSZGET, out); }
int shim_blk_physical_block_size(int fd, int *out) {
    unsigned int v = 0; int r = ioctl(fd, BLKPBSZGET, &v); *out = (int)v; return r;
}
int shim_blk_size_bytes(int fd, uint64_t *out) { return ioctl(fd, BLKGETSIZE64, out); }
int shim_blk_discard(int fd, uint64_t offset, uint64_t length) {
    uint64_t r[2] = { offset, length }; return ioctl(fd, BLKDISCARD, r);
}
int shim_blk_zeroout(int fd, uint64_t offset, uint64_t length) {
    uint64_t r[2] = { offset, length }; return ioctl(fd, BLKZEROOUT, r);
}
int shim_fallocate(int fd, int mode, int64_t offset, int64_t length) {
    return fallocate(fd, mode, offset, length);
}
int shim_fstatfs_type(int fd, int64_t *out) {
    struct statfs s; int r = fstatfs(fd, &s); if (r == 0) *out = (int64_t)s.f_type; return r;
}

#if defined(__x86_64__)
#include <cpuid.h>
int shim_crc32c_hw_available(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c & bit_SSE4_2) != 0;
}
__attribute__((target("sse4.2")))
uint32_t shim_crc32c_hw(uint32_t crc, const void *buf, size_t len) {
    const unsigned char *p = buf;
    uint64_t c = crc;
    while (len >= 8) { uint64_t v; __builtin_memcpy(&v, p, 8); c = __builtin_ia32_crc32di(c, v); p += 8; len -= 8; }
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
#else
int shim_crc32c_hw_available(void) { return 0; }
uint32_t shim_crc32c_hw(uint32_t crc, const void *buf, size_t len) { (void)buf; (void)len; return crc; }
#endif
