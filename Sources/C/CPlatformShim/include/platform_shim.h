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

// ---- User-space PCI device access (NVMe driver) ----

/// Memory-mapped device registers: volatile accesses the compiler may not merge,
/// reorder or elide. x86 keeps MMIO accesses in program order; the fences order
/// ordinary memory (DMA rings) against them.
static inline uint32_t shim_mmio_read32(const volatile void *base, size_t off) {
    return *(const volatile uint32_t *)((const volatile char *)base + off);
}
static inline void shim_mmio_write32(volatile void *base, size_t off, uint32_t v) {
    *(volatile uint32_t *)((volatile char *)base + off) = v;
}
/// Volatile load of ordinary memory a device writes by DMA (completion queue entries).
static inline uint32_t shim_dma_read32(const volatile void *p) { return *(const volatile uint32_t *)p; }
/// Full fence: stores to DMA memory are visible before a following doorbell write.
static inline void shim_memory_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
/// Acquire fence: loads of a completion entry happen after its phase bit was seen.
static inline void shim_acquire_fence(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }

extern const int shim_MAP_HUGETLB;
extern const int shim_MAP_POPULATE;
extern const int shim_MAP_LOCKED;
extern const uint32_t shim_VFIO_PCI_BAR0_REGION_INDEX;
extern const uint32_t shim_VFIO_PCI_CONFIG_REGION_INDEX;
extern const uint32_t shim_VFIO_REGION_INFO_FLAG_MMAP;

/// VFIO ioctls (linux/vfio.h). Each returns the ioctl's result, -1 with errno on failure.
int shim_vfio_get_api_version(int container_fd);
/// 1 when the container supports the type1 IOMMU (v2 preferred), with *type set to it.
int shim_vfio_type1_supported(int container_fd, int *type);
int shim_vfio_set_iommu(int container_fd, int type);
/// 1 when every device of the group is bound to a VFIO driver (viable), 0 when not.
int shim_vfio_group_viable(int group_fd);
int shim_vfio_group_set_container(int group_fd, int container_fd);
int shim_vfio_group_get_device_fd(int group_fd, const char *name);
int shim_vfio_region_info(int device_fd, uint32_t index, uint64_t *offset, uint64_t *size, uint32_t *flags);
int shim_vfio_map_dma(int container_fd, uint64_t vaddr, uint64_t iova, uint64_t size);
int shim_vfio_unmap_dma(int container_fd, uint64_t iova, uint64_t size);
int shim_vfio_device_reset(int device_fd);
#endif
