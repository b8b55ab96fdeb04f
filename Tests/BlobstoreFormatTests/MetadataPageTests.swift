import Testing
import Blobstore
import Platform

/// §5.1 struct pages.
@Suite struct MetadataPageTests {
    @Test func layoutAndRoundTrip() throws {
        let descs: [Descriptor] = [.flags(BlobFlags(invalid: 4)),
                                   .xattr(Xattr(name: "k", value: [1, 2, 3]), internal: false)]
        let p = MetadataPage(id: 0x1_0000_0005, sequence: 2, descriptors: descs, next: 6)
        #expect(p.area.count == 4072)
        #expect(p.crcValid && p.storedCRC == p.computedCRC)
        let b = p.encode()
        #expect(b.count == 4096)
        #expect(Array(b[0..<16]) == hexBytes("05 00 00 00 01 00 00 00 02 00 00 00 00 00 00 00"))
        #expect(b[16] == 3 && b[45] == 2)
        #expect(b[16 + 29 + 13..<4088].allSatisfy { $0 == 0 })
        #expect(b[16 + 29 + 12] == 3)
        #expect(le32(b, 4088) == 6)
        #expect(le32(b, 4092) == CRC32C.checksum(b[0..<4092]))
        #expect(le32(b, 4092) == p.storedCRC)
        let d = MetadataPage.decode(b)
        #expect(d == p)
        #expect(try d.descriptors() == descs)
        #expect(d.isRoot(ofIndex: 5) == false)   // sequence 2
        #expect(MetadataPage(id: 0x1_0000_0005, sequence: 0, descriptors: [], next: FormatConstants.noPage).isRoot(ofIndex: 5))
        #expect(!MetadataPage(id: 5, sequence: 0, descriptors: [], next: FormatConstants.noPage).isRoot(ofIndex: 5))
    }

    /// The CRC covers `next` (§11.3): changing it changes the CRC.
    @Test func crcCoversNext() {
        var p = MetadataPage(id: 0x1_0000_0000, sequence: 0, descriptors: [.flags(BlobFlags())], next: FormatConstants.noPage)
        let a = p.encode()
        p.next = 0
        let b = p.encode()
        #expect(le32(a, 4092) != le32(b, 4092))
        #expect(le32(b, 4092) == CRC32C.checksum(b[0..<4092]))
        #expect(MetadataPage.decode(b).crcValid)
    }

    @Test func corruptionDetected() {
        var b = MetadataPage(id: 0x1_0000_0003, sequence: 0, descriptors: [.flags(BlobFlags())], next: FormatConstants.noPage).encode()
        let stored = le32(b, 4092)
        b[2000] ^= 0x40
        let d = MetadataPage.decode(b)
        #expect(!d.crcValid)
        #expect(d.storedCRC == stored)
        #expect(d.computedCRC == CRC32C.checksum(b[0..<4092]))
        #expect(formatError { try d.checkCRC("page 3") } == .badCRC(what: "page 3", stored: stored, computed: d.computedCRC))
    }

    /// A zeroed (deleted) page is never valid: its CRC would be 0xA732586E (§3.1).
    @Test func zeroPageInvalid() throws {
        let d = MetadataPage.decode([UInt8](repeating: 0, count: 4096))
        #expect(!d.crcValid)
        #expect(d.storedCRC == 0 && d.computedCRC == 0xA732_586E)
        #expect(d.id == 0 && d.sequence == 0 && d.next == 0)
        #expect(try d.descriptors() == [])
    }

    /// Only the first 4096 bytes of a larger md page matter (§5.4).
    @Test func largerPageTailIgnored() {
        let p = MetadataPage(id: 0x1_0000_0001, sequence: 0, descriptors: [.flags(BlobFlags(invalid: 1))], next: FormatConstants.noPage)
        let b = p.encode() + [UInt8](repeating: 0xEE, count: 12288)
        #expect(MetadataPage.decode(b) == p)
    }

    @Test func rawAreaInit() throws {
        var area = [UInt8](repeating: 0, count: 4072)
        area[0] = 9
        area[1] = 1
        area[5] = 0x42
        let p = MetadataPage(id: 1, sequence: 0, reserved0: 7, area: area, next: 3)
        let d = MetadataPage.decode(p.encode())
        #expect(d.reserved0 == 7 && d.area == area && d.crcValid)
        #expect(try d.descriptors() == [.unknown(type: 9, body: [0x42])])
    }

    @Test func descriptorsPropagateErrors() {
        var area = [UInt8](repeating: 0, count: 4072)
        area[0] = 3
        area[1] = 20
        let p = MetadataPage(id: 1, sequence: 0, area: area, next: 3)
        #expect(invalidMessage { try p.descriptors() } == "FLAGS descriptor at offset 0 of the descriptor area: invalid length 20")
    }

    /// A full 4072-byte area of descriptors fits; the exact fit leaves no terminator.
    @Test func exactFit() throws {
        let x = Descriptor.xattr(Xattr(name: "a", value: [UInt8](repeating: 1, count: 4072 - 29 - 10)), internal: false)
        let p = MetadataPage(id: 1, sequence: 0, descriptors: [.flags(BlobFlags()), x], next: FormatConstants.noPage)
        #expect(try MetadataPage.decode(p.encode()).descriptors() == [.flags(BlobFlags()), x])
    }
}
