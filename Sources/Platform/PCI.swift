import Glibc
import CPlatformShim
import Synchronization

// User-space access to a PCI function, as SPDK's env layer gives its NVMe driver:
// BAR0 mapped into the process, bus mastering switched on, and memory the device may
// reach by DMA together with the bus addresses (IOVAs) the device must be given.
// Two back ends, chosen by the kernel driver the function is bound to:
//   vfio-pci          — BAR0 and config space through the VFIO device fd; DMA memory is
//                       mapped into the function's IOMMU domain (VFIO_IOMMU_MAP_DMA), so
//                       the device sees IOVAs we choose and can reach nothing else.
//   uio_pci_generic   — BAR0 through sysfs resource0, config space through sysfs config;
//                       no IOMMU, so DMA memory is hugepages (pinned, physically contiguous
//                       per page) and the device is given physical addresses read from
//                       /proc/self/pagemap.
// Both are polled: no interrupts are set up.

/// A PCI function address, domain:bus:device.function ("0000:00:04.0"; "00:04.0" means domain 0).
public struct PCIAddress: Hashable, Sendable, CustomStringConvertible {
    public var domain: UInt32
    public var bus: UInt8
    public var device: UInt8
    public var function: UInt8

    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3 else { return nil }
        let devFn = parts[parts.count - 1].split(separator: ".", omittingEmptySubsequences: false)
        guard devFn.count == 2,
              let domain = parts.count == 3 ? UInt32(parts[0], radix: 16) : 0,
              parts.count == 2 || (1...4).contains(parts[0].count),
              parts[parts.count - 2].count <= 2, devFn[0].count <= 2, devFn[1].count == 1,
              let bus = UInt8(parts[parts.count - 2], radix: 16),
              let device = UInt8(devFn[0], radix: 16), device < 32,
              let function = UInt8(devFn[1], radix: 16), function < 8 else { return nil }
        (self.domain, self.bus, self.device, self.function) = (domain, bus, device, function)
    }

    public var description: String {
        func hex(_ v: UInt64, _ width: Int) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(hex(UInt64(domain), 4)):\(hex(UInt64(bus), 2)):\(hex(UInt64(device), 2)).\(function)"
    }

    public var sysfsPath: String { "/sys/bus/pci/devices/\(self)" }

    /// The kernel driver the function is bound to ("nvme", "vfio-pci", ...), nil when unbound.
    public var boundDriver: String? { Sysfs.linkTarget("\(sysfsPath)/driver").map(Sysfs.basename) }
    /// The IOMMU group number, nil when the function has none (IOMMU off).
    public var iommuGroup: String? { Sysfs.linkTarget("\(sysfsPath)/iommu_group").map(Sysfs.basename) }
    /// The 24-bit class code (base class, subclass, programming interface), e.g. 0x010802 for NVMe.
    public var classCode: UInt32? {
        Sysfs.readFile("\(sysfsPath)/class").flatMap { UInt32($0.trimmingPrefix("0x").prefix { !$0.isWhitespace }, radix: 16) }
    }
    /// True when the function exists in sysfs.
    public var exists: Bool { access(sysfsPath, F_OK) == 0 }
}

/// An error from user-space device access: what failed, and the errno.
public struct PCIError: Error, CustomStringConvertible {
    public var errno: Errno
    public var message: String
    public init(_ errno: Errno, _ message: String) { self.errno = errno; self.message = message }
    public var description: String { "\(message): \(errno)" }
}

/// Device registers mapped into the process. Every access is a volatile 32-bit load or
/// store (64-bit registers are two accesses, low half first, as the NVMe spec allows).
public struct MMIORegion: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let size: Int
    public init(base: UnsafeMutableRawPointer, size: Int) { self.base = base; self.size = size }

    @inline(__always) public func read32(_ offset: Int) -> UInt32 {
        assert(offset >= 0 && offset + 4 <= size && offset % 4 == 0, "MMIO read outside the BAR")
        return shim_mmio_read32(base, offset)
    }
    @inline(__always) public func write32(_ offset: Int, _ value: UInt32) {
        assert(offset >= 0 && offset + 4 <= size && offset % 4 == 0, "MMIO write outside the BAR")
        shim_mmio_write32(base, offset, value)
    }
    public func read64(_ offset: Int) -> UInt64 {
        UInt64(read32(offset)) | UInt64(read32(offset + 4)) << 32
    }
    public func write64(_ offset: Int, _ value: UInt64) {
        write32(offset, UInt32(truncatingIfNeeded: value))
        write32(offset + 4, UInt32(truncatingIfNeeded: value >> 32))
    }
}

/// Memory the device can reach by DMA, with the address the device must use for each byte.
/// Invariant: the region is pinned (locked, never moved) for as long as its device is open;
/// `granule`-sized pieces are contiguous in IOVA space.
public final class DMARegion: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let size: Int
    /// A power of two; IOVAs are contiguous within each granule-aligned piece.
    public let granule: Int
    /// The IOVA of each granule.
    private let granuleIOVA: [UInt64]
    /// Bytes handed out by `carve`.
    private var used = 0

    init(base: UnsafeMutableRawPointer, size: Int, granule: Int, granuleIOVA: [UInt64]) {
        precondition(granule > 0 && granule & (granule - 1) == 0 && granuleIOVA.count * granule >= size)
        self.base = base
        self.size = size
        self.granule = granule
        self.granuleIOVA = granuleIOVA
    }

    public func contains(_ p: UnsafeRawPointer, count: Int = 1) -> Bool {
        let off = UnsafeRawPointer(base).distance(to: p)
        return off >= 0 && off + count <= size
    }

    /// The bus address of `p`, which must lie in the region.
    @inline(__always) public func iova(of p: UnsafeRawPointer) -> UInt64 {
        let off = UnsafeRawPointer(base).distance(to: p)
        precondition(off >= 0 && off < size, "address outside the DMA region")
        return granuleIOVA[off / granule] + UInt64(off % granule)
    }

    /// The bus address of `count` bytes at `p` when they are contiguous in IOVA space (in one granule).
    public func contiguousIOVA(of p: UnsafeRawPointer, count: Int) -> UInt64? {
        let off = UnsafeRawPointer(base).distance(to: p)
        guard off >= 0, off + count <= size, off / granule == (off + count - 1) / granule else { return nil }
        return granuleIOVA[off / granule] + UInt64(off % granule)
    }

    /// A piece of the region, aligned to `alignment`; nil when the region is used up.
    /// Pieces are never returned: the region is sized for its owner's lifetime at open.
    public func carve(_ byteCount: Int, alignment: Int = 4096) -> UnsafeMutableRawPointer? {
        let start = (used + alignment - 1) & ~(alignment - 1)
        guard start + byteCount <= size else { return nil }
        used = start + byteCount
        return base + start
    }
}

/// Buffers in DMA memory for a device's callers, so their data needs no copy: power-of-two
/// blocks from 4 KiB to `maxBlock`, each size on its own free list, carved from `region`
/// on first use and reused after (no coalescing: I/O buffer sizes repeat). Thread-safe:
/// buffers are freed wherever their last reference goes. `allocate` returns nil when the
/// pool is exhausted or the size is above `maxBlock`; the caller falls back to ordinary memory.
public final class DMABufferPool: Sendable {
    public let region: DMARegion
    public static let minBlock = 4096
    public let maxBlock: Int
    private struct State {
        /// Free blocks per size class, as addresses.
        var free: [[UInt]]
    }
    private let state: Mutex<State>
    private let classCount: Int

    public init(region: DMARegion, maxBlock: Int) {
        precondition(maxBlock >= Self.minBlock && maxBlock & (maxBlock - 1) == 0)
        self.region = region
        self.maxBlock = maxBlock
        classCount = maxBlock.trailingZeroBitCount - Self.minBlock.trailingZeroBitCount + 1
        state = Mutex(State(free: Array(repeating: [], count: classCount)))
    }

    public func allocate(byteCount: Int) -> AlignedBuffer? {
        let size = max(Self.minBlock, byteCount)
        guard size <= maxBlock else { return nil }
        let blockClass = (Int.bitWidth - (size - 1).leadingZeroBitCount) - Self.minBlock.trailingZeroBitCount
        let blockSize = Self.minBlock << blockClass
        let address: UInt? = state.withLock { s in
            if let a = s.free[blockClass].popLast() { return a }
            // Aligned to its own size (up to a granule), a block never straddles granules:
            // it stays IOVA-contiguous (one SGL descriptor) under UIO's hugepages too.
            return region.carve(blockSize, alignment: min(blockSize, region.granule)).map { UInt(bitPattern: $0) }
        }
        guard let address, let block = UnsafeMutableRawPointer(bitPattern: address) else { return nil }
        return AlignedBuffer(borrowing: block, count: byteCount) { [self] _ in
            state.withLock { $0.free[blockClass].append(address) }
        }
    }
}

/// A PCI function driven from user space.
public protocol UserPCIDevice: AnyObject {
    var address: PCIAddress { get }
    /// "vfio" or "uio".
    var accessKind: String { get }
    /// BAR0, mapped.
    var bar0: MMIORegion { get }
    /// Set Memory Space Enable and Bus Master Enable in the command register.
    func enableBusMaster() throws(PCIError)
    /// Zeroed, pinned memory the device can reach; freed by `close()`.
    func allocateDMA(byteCount: Int) throws(PCIError) -> DMARegion
    /// Unmap BAR0 and every DMA region, release the device. Idempotent.
    func close()
}

public enum UserPCI {
    /// Open `address` for user-space access through the driver it is bound to.
    public static func open(_ address: PCIAddress) throws(PCIError) -> any UserPCIDevice {
        guard address.exists else {
            throw PCIError(.noSuchFileOrDirectory, "PCI function \(address) not found (\(address.sysfsPath))")
        }
        switch address.boundDriver {
        case "vfio-pci": return try VFIOPCIDevice(address)
        case "uio_pci_generic": return try UIOPCIDevice(address)
        case let other:
            let bound = other.map { "bound to the kernel driver \"\($0)\"" } ?? "not bound to any driver"
            throw PCIError(.resourceBusy, "PCI function \(address) is \(bound); bind it to vfio-pci or uio_pci_generic "
                                      + "first (scripts/nvme-setup bind \(address) vfio|uio)")
        }
    }
}

// MARK: - Back ends

enum Sysfs {
    static func linkTarget(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    static func basename(_ path: String) -> String { String(path.split(separator: "/").last ?? "") }

    static func readFile(_ path: String) -> String? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var buf = [UInt8](repeating: 0, count: 8192)
        let n = read(fd, &buf, buf.count)
        guard n >= 0 else { return nil }
        return String(decoding: buf[..<n], as: UTF8.self)
    }
}

/// Set the memory-space and bus-master bits of the command register (config offset 4)
/// through `configFD` at `configBase`.
private func enableBusMaster(configFD: Int32, configBase: Int, what: String) throws(PCIError) {
    var command: UInt16 = 0
    guard pread(configFD, &command, 2, off_t(configBase + 4)) == 2 else {
        throw PCIError(Errno(rawValue: errno), "\(what): cannot read the PCI command register")
    }
    command |= 0x0006
    guard pwrite(configFD, &command, 2, off_t(configBase + 4)) == 2 else {
        throw PCIError(Errno(rawValue: errno), "\(what): cannot enable bus mastering")
    }
}

/// Anonymous memory, zeroed and populated; hugepage-backed when `hugepages`
/// (then `byteCount` is rounded up to the hugepage size). Returns the mapping and its size.
private func mapPinnedMemory(_ byteCount: Int, hugepages: Bool) -> (UnsafeMutableRawPointer, Int)? {
    let page = hugepages ? HugePages.pageSize : Int(sysconf(Int32(_SC_PAGESIZE)))
    let size = (max(byteCount, 1) + page - 1) / page * page
    // MAP_SHARED: a fork (blobfs-fuse daemonizing) must not turn pages copy-on-write.
    var flags = MAP_SHARED | MAP_ANONYMOUS | shim_MAP_POPULATE
    if hugepages { flags |= shim_MAP_HUGETLB }
    let p = mmap(nil, size, PROT_READ | PROT_WRITE, flags, -1, 0)
    // Not mlock'ed: hugetlb pages are never swapped or moved, and VFIO_IOMMU_MAP_DMA pins
    // ordinary pages for as long as they are mapped.
    guard let p, p != MAP_FAILED else { return nil }
    return (p, size)
}

public enum HugePages {
    /// The default hugepage size (/proc/meminfo Hugepagesize), 2 MiB if unreadable.
    public static let pageSize: Int = {
        guard let info = Sysfs.readFile("/proc/meminfo"),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("Hugepagesize:") }),
              let kib = Int(line.split(separator: " ").dropFirst().first ?? "") else { return 2 << 20 }
        return kib * 1024
    }()
    /// Free hugepages of the default size (HugePages_Free).
    public static var free: Int {
        guard let info = Sysfs.readFile("/proc/meminfo"),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("HugePages_Free:") }) else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }
}

/// vfio-pci: container + group + device fds; DMA memory mapped at IOVAs from 4 GiB up
/// (below any IOMMU's address-width limit, above the MSI window at 0xFEE00000).
final class VFIOPCIDevice: UserPCIDevice {
    let address: PCIAddress
    let accessKind = "vfio"
    private(set) var bar0: MMIORegion
    private var containerFD: Int32 = -1
    private var groupFD: Int32 = -1
    private var deviceFD: Int32 = -1
    private var configOffset = 0
    private var mappings: [(base: UnsafeMutableRawPointer, size: Int, iova: UInt64)] = []
    private var nextIOVA: UInt64 = 1 << 32

    init(_ address: PCIAddress) throws(PCIError) {
        self.address = address
        let what = "VFIO \(address)"
        guard let group = address.iommuGroup else {
            throw PCIError(.noSuchFileOrDirectory, "\(what): no IOMMU group (is the IOMMU on? intel_iommu=on / amd_iommu=on)")
        }
        var fds: [Int32] = []  // closed again unless the whole set-up succeeds
        var ok = false
        defer { if !ok { fds.forEach { _ = Glibc.close($0) } } }
        let container = Glibc.open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC)
        guard container >= 0 else { throw PCIError(Errno(rawValue: errno), "\(what): cannot open /dev/vfio/vfio") }
        fds.append(container)
        guard shim_vfio_get_api_version(container) == 0 else {
            throw PCIError(.notSupported, "\(what): unknown VFIO API version")
        }
        var type1: Int32 = 0
        guard shim_vfio_type1_supported(container, &type1) == 1 else {
            throw PCIError(.notSupported, "\(what): the VFIO container has no type1 IOMMU")
        }
        let groupFD = Glibc.open("/dev/vfio/\(group)", O_RDWR | O_CLOEXEC)
        guard groupFD >= 0 else {
            throw PCIError(Errno(rawValue: errno), "\(what): cannot open /dev/vfio/\(group)"
                           + (errno == EBUSY ? " (another process drives this controller: "
                              + (FileHolder.describe(holdersOf: "/dev/vfio/\(group)") ?? "unknown")
                              + ")" : ""))
        }
        fds.append(groupFD)
        switch shim_vfio_group_viable(groupFD) {
        case 1: break
        case 0: throw PCIError(.resourceBusy, "\(what): IOMMU group \(group) is not viable: bind every device in it to vfio-pci")
        default: throw PCIError(Errno(rawValue: errno), "\(what): VFIO_GROUP_GET_STATUS")
        }
        guard shim_vfio_group_set_container(groupFD, container) == 0 else {
            throw PCIError(Errno(rawValue: errno), "\(what): VFIO_GROUP_SET_CONTAINER")
        }
        guard shim_vfio_set_iommu(container, type1) == 0 else {
            throw PCIError(Errno(rawValue: errno), "\(what): VFIO_SET_IOMMU")
        }
        let device = shim_vfio_group_get_device_fd(groupFD, address.description)
        guard device >= 0 else { throw PCIError(Errno(rawValue: errno), "\(what): VFIO_GROUP_GET_DEVICE_FD") }
        fds.append(device)

        var barOffset: UInt64 = 0, barSize: UInt64 = 0, flags: UInt32 = 0
        guard shim_vfio_region_info(device, shim_VFIO_PCI_BAR0_REGION_INDEX, &barOffset, &barSize, &flags) == 0 else {
            throw PCIError(Errno(rawValue: errno), "\(what): BAR0 region info")
        }
        guard barSize > 0, flags & shim_VFIO_REGION_INFO_FLAG_MMAP != 0 else {
            throw PCIError(.notSupported, "\(what): BAR0 cannot be memory-mapped")
        }
        var configOffset: UInt64 = 0, configSize: UInt64 = 0
        guard shim_vfio_region_info(device, shim_VFIO_PCI_CONFIG_REGION_INDEX, &configOffset, &configSize, &flags) == 0 else {
            throw PCIError(Errno(rawValue: errno), "\(what): config region info")
        }
        let p = mmap(nil, Int(barSize), PROT_READ | PROT_WRITE, MAP_SHARED, device, off_t(barOffset))
        guard let p, p != MAP_FAILED else { throw PCIError(Errno(rawValue: errno), "\(what): cannot map BAR0") }
        // Start from a clean function: a function-level reset where the device supports one.
        _ = shim_vfio_device_reset(device)
        bar0 = MMIORegion(base: p, size: Int(barSize))
        (containerFD, self.groupFD, deviceFD) = (container, groupFD, device)
        self.configOffset = Int(configOffset)
        ok = true
    }

    func enableBusMaster() throws(PCIError) {
        try Platform.enableBusMaster(configFD: deviceFD, configBase: configOffset, what: "VFIO \(address)")
    }

    func allocateDMA(byteCount: Int) throws(PCIError) -> DMARegion {
        // Hugepages when reserved (fewer IOMMU entries), else ordinary pages: the map pins them.
        guard let (p, size) = (HugePages.free > 0 ? mapPinnedMemory(byteCount, hugepages: true) : nil)
                ?? mapPinnedMemory(byteCount, hugepages: false) else {
            throw PCIError(.noMemory, "VFIO \(address): cannot allocate \(byteCount) bytes of DMA memory")
        }
        let iova = nextIOVA
        guard shim_vfio_map_dma(containerFD, UInt64(UInt(bitPattern: p)), iova, UInt64(size)) == 0 else {
            let e = Errno(rawValue: errno)
            munmap(p, size)
            throw PCIError(e, "VFIO \(address): VFIO_IOMMU_MAP_DMA of \(size) bytes at IOVA 0x\(String(iova, radix: 16))")
        }
        nextIOVA += UInt64(size)
        mappings.append((p, size, iova))
        var granule = 1
        while granule < size { granule <<= 1 }
        return DMARegion(base: p, size: size, granule: granule, granuleIOVA: [iova])
    }

    func close() {
        for m in mappings {
            _ = shim_vfio_unmap_dma(containerFD, m.iova, UInt64(m.size))
            munmap(m.base, m.size)
        }
        mappings = []
        if bar0.size > 0 { munmap(bar0.base, bar0.size); bar0 = MMIORegion(base: bar0.base, size: 0) }
        closeDescriptors()
    }

    private func closeDescriptors() {
        for fd in [deviceFD, groupFD, containerFD] where fd >= 0 { Glibc.close(fd) }
        (deviceFD, groupFD, containerFD) = (-1, -1, -1)
    }

    deinit { close() }
}

/// uio_pci_generic: BAR0 and config space through sysfs; DMA memory is hugepages whose
/// physical addresses the device is given (no IOMMU in between).
final class UIOPCIDevice: UserPCIDevice {
    let address: PCIAddress
    let accessKind = "uio"
    private(set) var bar0: MMIORegion
    private var configFD: Int32 = -1
    private var mappings: [(base: UnsafeMutableRawPointer, size: Int)] = []

    init(_ address: PCIAddress) throws(PCIError) {
        self.address = address
        let what = "UIO \(address)"
        let resource = "\(address.sysfsPath)/resource0"
        let fd = Glibc.open(resource, O_RDWR | O_SYNC | O_CLOEXEC)
        guard fd >= 0 else { throw PCIError(Errno(rawValue: errno), "\(what): cannot open \(resource)") }
        defer { Glibc.close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0 else { throw PCIError(.invalidArgument, "\(what): BAR0 has no size") }
        let p = mmap(nil, Int(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else { throw PCIError(Errno(rawValue: errno), "\(what): cannot map BAR0") }
        bar0 = MMIORegion(base: p, size: Int(st.st_size))
        configFD = Glibc.open("\(address.sysfsPath)/config", O_RDWR | O_CLOEXEC)
        guard configFD >= 0 else {
            munmap(p, Int(st.st_size))
            throw PCIError(Errno(rawValue: errno), "\(what): cannot open the config space")
        }
        // uio lets any number of processes map the BAR; one driver at a time is ours to
        // enforce (VFIO's group enforces it for us): a flock on the config space file,
        // held until this device is closed.
        if (try? VolumeLock.tryExclusive(configFD)) != true {
            Glibc.close(configFD)
            munmap(p, Int(st.st_size))
            throw PCIError(.resourceBusy, "\(what): another process drives this controller"
                           + (FileHolder.describe(holdersOf: "\(address.sysfsPath)/config").map { " (\($0))" } ?? ""))
        }
    }

    func enableBusMaster() throws(PCIError) {
        try Platform.enableBusMaster(configFD: configFD, configBase: 0, what: "UIO \(address)")
    }

    func allocateDMA(byteCount: Int) throws(PCIError) -> DMARegion {
        let what = "UIO \(address)"
        let page = HugePages.pageSize
        let needed = (byteCount + page - 1) / page
        guard let (p, size) = mapPinnedMemory(byteCount, hugepages: true) else {
            throw PCIError(.noMemory, "\(what): cannot allocate \(needed) hugepage(s) of \(page / 1024) KiB for DMA "
                           + "(\(HugePages.free) free; reserve more: scripts/nvme-setup hugepages N)")
        }
        mappings.append((p, size))
        // Physical address of each hugepage from /proc/self/pagemap: 8 bytes per 4 KiB
        // virtual page, bit 63 = present, bits 0-54 = page frame number.
        let pagemap = Glibc.open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard pagemap >= 0 else { throw PCIError(Errno(rawValue: errno), "\(what): cannot open /proc/self/pagemap") }
        defer { Glibc.close(pagemap) }
        var physical: [UInt64] = []
        for i in 0..<size / page {
            let va = UInt(bitPattern: p + i * page)
            var entry: UInt64 = 0
            guard pread(pagemap, &entry, 8, off_t(va / 4096 * 8)) == 8 else {
                throw PCIError(Errno(rawValue: errno), "\(what): cannot read /proc/self/pagemap")
            }
            let pfn = entry & ((1 << 55) - 1)
            guard entry >> 63 == 1, pfn != 0 else {
                throw PCIError(.permissionDenied, "\(what): physical addresses are hidden in /proc/self/pagemap (needs CAP_SYS_ADMIN)")
            }
            physical.append(pfn * 4096)
        }
        return DMARegion(base: p, size: size, granule: page, granuleIOVA: physical)
    }

    func close() {
        for m in mappings { munmap(m.base, m.size) }
        mappings = []
        if bar0.size > 0 { munmap(bar0.base, bar0.size); bar0 = MMIORegion(base: bar0.base, size: 0) }
        if configFD >= 0 { Glibc.close(configFD); configFD = -1 }
    }

    deinit { close() }
}
