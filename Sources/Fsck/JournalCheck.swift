import Blobstore

// fsck.blobfs and the metadata journal (docs/FSCK.md, "The journal"). A volume that went
// down with batches in its journal has pages in place that are older than the namespace
// it last showed. In check mode (-n) fsck reads every metadata page through the journal's
// images, as the next mount will see them after replay; in a repair mode it replays the
// journal first (in place, flushed, then an empty journal), as the mount would, and then
// checks what it got.
extension FsckRun {
    func readJournal() async throws(FsckFailure) {
        guard geo.problems.isEmpty else { return }
        let sbID = sb.superBlob == FormatConstants.noBlob ? nil : BlobID(rawValue: sb.superBlob)
        let io = MetadataIO(bdev: dev.bdev, pageSize: geo.pageSize, mdStart: geo.mdStart, mdLen: UInt32(geo.mdLen))
        guard let g = await Blobstore.locateJournal(io: io, superBlob: sbID, clusterSize: geo.clusterSize, blockSize: dev.blockSize,
                                                    dataClusters: geo.metadataClusters..<geo.totalClusters) else { return }
        let scan: JournalScan?
        do { scan = try await JournalScan.read(dev.bdev, g, skippingGaps: options.journalReplay == .unsafeEveryValidBatch) } catch { throw FsckFailure("\(dev.bdev.name): \(error.message)") }
        guard let scan else {
            note("the metadata journal (blob \(g.blobID)) has no valid header: nothing to replay (the next writable mount starts it afresh)")
            return
        }
        summary.journalBlocks = g.ringBlocks
        guard !scan.isEmpty else { return }
        let apply = scan.applicable(options.journalReplay)
        let left = scan.batches.count - apply.count
        let how = scan.trustsUncommitted(options.journalReplay)
            ? "written during this boot, so the daemon, not the machine, went down: all of them count"
            : "after a reboot or power cut only the \(apply.count) committed ones count"
        let images = scan.images(options.journalReplay)
        if options.mode == .check {
            journalOverlay.load(images)
            note("the metadata journal holds \(scan.batches.count) batch(es) not yet in place (\(how)); checked as the next mount will replay them (\(images.count) pages)"
                 + (left > 0 ? "; \(left) uncommitted batch(es) are left out" : ""))
        } else {
            do { try await Blobstore.applyJournal(scan, policy: options.journalReplay, io: io) }
            catch { throw FsckFailure("\(dev.bdev.name): journal replay failed: \(error.message)") }
            wrote = true
            note("replayed the metadata journal: \(apply.count) batch(es), \(images.count) pages written in place (\(how))"
                 + (left > 0 ? "; \(left) uncommitted batch(es) left out" : ""))
        }
    }
}
