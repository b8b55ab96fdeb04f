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

// ---- User-space PCI device access ----
#include <sys/mman.h>
#include <linux/vfio.h>
#include <string.h>

const int shim_MAP_HUGETLB = MAP_HUGETLB;
const int shim_MAP_POPULATE = MAP_POPULATE;
const int shim_MAP_LOCKED = MAP_LOCKED;
const uint32_t shim_VFIO_PCI_BAR0_REGION_INDEX = VFIO_PCI_BAR0_REGION_INDEX;
const uint32_t shim_VFIO_PCI_CONFIG_REGION_INDEX = VFIO_PCI_CONFIG_REGION_INDEX;
const uint32_t shim_VFIO_REGION_INFO_FLAG_MMAP = VFIO_REGION_INFO_FLAG_MMAP;

int shim_vfio_get_api_version(int container_fd) { return ioctl(container_fd, VFIO_GET_API_VERSION); }
int shim_vfio_type1_supported(int container_fd, int *type) {
    if (ioctl(container_fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 1) { *type = VFIO_TYPE1v2_IOMMU; return 1; }
    if (ioctl(container_fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) == 1) { *type = VFIO_TYPE1_IOMMU; return 1; }
    return 0;
}
int shim_vfio_set_iommu(int container_fd, int type) { return ioctl(container_fd, VFIO_SET_IOMMU, type); }
int shim_vfio_group_viable(int group_fd) {
    struct vfio_group_status st = { .argsz = sizeof st };
    if (ioctl(group_fd, VFIO_GROUP_GET_STATUS, &st) != 0) return -1;
    return (st.flags & VFIO_GROUP_FLAGS_VIABLE) ? 1 : 0;
}
int shim_vfio_group_set_container(int group_fd, int container_fd) {
    return ioctl(group_fd, VFIO_GROUP_SET_CONTAINER, &container_fd);
}
int shim_vfio_group_get_device_fd(int group_fd, const char *name) {
    return ioctl(group_fd, VFIO_GROUP_GET_DEVICE_FD, name);
}
int shim_vfio_region_info(int device_fd, uint32_t index, uint64_t *offset, uint64_t *size, uint32_t *flags) {
    struct vfio_region_info info = { .argsz = sizeof info, .index = index };
    if (ioctl(device_fd, VFIO_DEVICE_GET_REGION_INFO, &info) != 0) return -1;
    *offset = info.offset; *size = info.size; *flags = info.flags;
    return 0;
}
int shim_vfio_map_dma(int container_fd, uint64_t vaddr, uint64_t iova, uint64_t size) {
    struct vfio_iommu_type1_dma_map m = {
        .argsz = sizeof m, .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
        .vaddr = vaddr, .iova = iova, .size = size };
    return ioctl(container_fd, VFIO_IOMMU_MAP_DMA, &m);
}
int shim_vfio_unmap_dma(int container_fd, uint64_t iova, uint64_t size) {
    struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof u, .iova = iova, .size = size };
    return ioctl(container_fd, VFIO_IOMMU_UNMAP_DMA, &u);
}
int shim_vfio_device_reset(int device_fd) { return ioctl(device_fd, VFIO_DEVICE_RESET); }
