import Platform

/// Create the bdev a config entry describes. `access` applies to aio and rbd bdevs; a
/// user-space NVMe controller is always exclusive (its VFIO group or its lock), and malloc
/// is private. `breakLock`: an rbd bdev blocklists the holder of its image's lock and takes it.
public func openBDev(_ entry: BDevConfig.Entry, access: VolumeAccess = .exclusive,
                     breakLock: Bool = false) throws(BDevError) -> any BlockDevice {
    switch entry {
    case .malloc(let name, let numBlocks, let blockSize, let numaNode):
        let (byteCount, overflow) = numBlocks.multipliedReportingOverflow(by: UInt64(blockSize))
        guard !overflow else {
            throw BDevError(.invalidArgument, "malloc bdev \(name): \(numBlocks) blocks of \(blockSize) bytes is too large")
        }
        if let numaNode { return try MallocBDev(name: name, byteCount: byteCount, blockSize: blockSize, numaNode: numaNode) }
        return try MallocBDev(name: name, byteCount: byteCount, blockSize: blockSize)
    case .aio(let name, let filename, let blockSize):
        return try AIOBDev(name: name, path: filename, blockSize: blockSize, access: access)
    case .nvme(let name, let trtype, let traddr):
        guard trtype.lowercased() == "pcie" else {
            throw BDevError(.notSupported, "bdev \(entry.bdevName) (NVMe controller \(name)): transport type \"\(trtype)\" "
                                          + "is not supported; only PCIe (a local controller driven from user space)")
        }
        return try NVMeBDev(name: entry.bdevName, address: traddr)
    case .rbd(let name, let pool, let image, let blockSize, let client):
        return try RBDBDev(name: name, target: RBDTarget(pool: pool, image: image, client: client), blockSize: blockSize,
                           access: access, breakLock: breakLock)
    }
}
