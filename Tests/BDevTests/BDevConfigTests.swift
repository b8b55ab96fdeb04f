import Testing
import Foundation
import Platform
import BDev

private let example = """
{"subsystems":[{"subsystem":"bdev","config":[
  {"method":"bdev_malloc_create","params":{"name":"Malloc0","num_blocks":262144,"block_size":4096}},
  {"method":"bdev_aio_create","params":{"name":"Aio0","filename":"/tmp/x.img","block_size":4096}},
  {"method":"bdev_nvme_attach_controller","params":{"name":"Nvme0","trtype":"PCIe","traddr":"0000:00:04.0"}}]}]}
"""

/// A config whose bdev subsystem holds exactly `calls` (JSON objects).
private func bdevConfig(_ calls: String...) -> String {
    #"{"subsystems": [{"subsystem": "bdev", "config": [\#(calls.joined(separator: ","))]}]}"#
}

/// The message `parse` fails with, or nil.
private func parseError(_ json: String) -> String? {
    do {
        _ = try BDevConfig.parse(json: json, source: "cfg.json")
        return nil
    } catch {
        return error.message
    }
}

@Suite struct BDevConfigTests {
    @Test func exampleParses() throws {
        let config = try BDevConfig.parse(json: example, source: "cfg.json")
        #expect(config.entries == [
            .malloc(name: "Malloc0", numBlocks: 262_144, blockSize: 4096, numaNode: nil),
            .aio(name: "Aio0", filename: "/tmp/x.img", blockSize: 4096),
            .nvme(name: "Nvme0", trtype: "PCIe", traddr: "0000:00:04.0"),
        ])
        #expect(try config.entry(named: "Aio0") == .aio(name: "Aio0", filename: "/tmp/x.img", blockSize: 4096))
        #expect(try config.entry(named: "Nvme0n1") == .nvme(name: "Nvme0", trtype: "PCIe", traddr: "0000:00:04.0"))
        #expect(config.entries.map(\.bdevName) == ["Malloc0", "Aio0", "Nvme0n1"])
    }

    @Test func unknownNamesListTheDefinedOnes() throws {
        let config = try BDevConfig.parse(json: example, source: "cfg.json")
        #expect(throws: BDevConfigError("cfg.json: no bdev named \"Aio1\"; defined: Malloc0, Aio0, Nvme0n1")) {
            try config.entry(named: "Aio1")
        }
        #expect(throws: BDevConfigError("cfg.json: no bdev named \"Nvme0\" (\"Nvme0\" is an NVMe controller; "
                                        + "its namespace bdev is \"Nvme0n1\"); defined: Malloc0, Aio0, Nvme0n1")) {
            try config.entry(named: "Nvme0")
        }
        let empty = try BDevConfig.parse(json: #"{"subsystems": []}"#, source: "e.json")
        #expect(throws: BDevConfigError("e.json: no bdev named \"Aio0\"; the config defines no bdevs")) {
            try empty.entry(named: "Aio0")
        }
    }

    @Test func otherMethodsAndSubsystemsAreIgnored() throws {
        let json = """
        {"subsystems": [
          {"subsystem": "accel", "config": [{"method": "accel_set_options", "params": {"whatever": [1, 2]}}]},
          {"subsystem": "vhost_blk", "config": null},
          {"subsystem": "bdev", "config": [
            {"method": "bdev_set_options", "params": {"bdev_io_pool_size": 65535}},
            {"method": "bdev_aio_create", "params": {"name": "A", "filename": "/f", "block_size": 0, "readonly": false}},
            {"method": "bdev_malloc_create", "params": {"name": "M", "num_blocks": 8, "block_size": 512, "numa_id": 0}},
            {"method": "bdev_malloc_create", "params": {"name": "M2", "num_blocks": 8, "block_size": 512, "numa_id": -1}},
            {"method": "bdev_wait_for_examine"}]}]}
        """
        let config = try BDevConfig.parse(json: json, source: "cfg.json")
        #expect(config.entries == [
            .aio(name: "A", filename: "/f", blockSize: nil),
            .malloc(name: "M", numBlocks: 8, blockSize: 512, numaNode: 0),
            .malloc(name: "M2", numBlocks: 8, blockSize: 512, numaNode: nil),
        ])
    }

    @Test func malformedJSONNamesThePosition() {
        let message = parseError("{\n  \"subsystems\": [,]\n}")
        #expect(message?.hasPrefix("cfg.json: not valid JSON: ") == true)
        #expect(message?.hasSuffix("(line 2, column 18)") == true, "\(message ?? "")")
        #expect(parseError(" \n") == "cfg.json: empty, expected a JSON object")
    }

    @Test(arguments: [
        // Structure.
        ("[1]", "cfg.json: expected a JSON object with \"subsystems\" at the top level, got an array"),
        ("{}", "cfg.json: missing \"subsystems\""),
        (#"{"subsystems": {}}"#, "cfg.json: subsystems: expected an array, got an object"),
        (#"{"subsystems": [3]}"#, "cfg.json: subsystems[0]: expected an object, got 3"),
        (#"{"subsystems": [{"config": []}]}"#, "cfg.json: subsystems[0]: missing \"subsystem\""),
        (#"{"subsystems": [{"subsystem": "bdev", "config": "x"}]}"#,
         "cfg.json: subsystems[0].config: expected an array, got \"x\""),
        (bdevConfig(#"{"params": {}}"#), "cfg.json: subsystems[0].config[0]: missing \"method\""),
        (bdevConfig(#"{"method": 5}"#), "cfg.json: subsystems[0].config[0].method: expected a string, got 5"),
        (bdevConfig(#"{"method": "bdev_malloc_create"}"#),
         "cfg.json: subsystems[0].config[0]: missing \"params\" (bdev_malloc_create)"),
        (bdevConfig(#"{"method": "bdev_aio_create", "params": [1]}"#),
         "cfg.json: subsystems[0].config[0].params: expected an object, got an array"),
        // Types and values.
        (bdevConfig(#"{"method": "bdev_aio_create", "params": {"name": "A", "filename": "/f"}}"#,
                    #"{"method": "bdev_malloc_create", "params": {"name": "M", "num_blocks": "abc", "block_size": 4096}}"#),
         "cfg.json: subsystems[0].config[1].params.num_blocks: expected a positive integer, got \"abc\""),
        (bdevConfig(#"{"method": "bdev_malloc_create", "params": {"name": "M", "num_blocks": 0, "block_size": 4096}}"#),
         "cfg.json: subsystems[0].config[0].params.num_blocks: expected a positive integer, got 0"),
        (bdevConfig(#"{"method": "bdev_malloc_create", "params": {"name": "M", "num_blocks": 1.5, "block_size": 4096}}"#),
         "cfg.json: subsystems[0].config[0].params.num_blocks: expected a positive integer, got 1.5"),
        (bdevConfig(#"{"method": "bdev_malloc_create", "params": {"name": "M", "num_blocks": true, "block_size": 4096}}"#),
         "cfg.json: subsystems[0].config[0].params.num_blocks: expected a positive integer, got true"),
        (bdevConfig(#"{"method": "bdev_malloc_create", "params": {"name": "M", "num_blocks": 8, "block_size": 1000}}"#),
         "cfg.json: subsystems[0].config[0].params.block_size: block size must be a power of two ≥ 512, got 1000"),
        (bdevConfig(#"{"method": "bdev_malloc_create", "params": {"name": "M", "num_blocks": 8, "block_size": 256}}"#),
         "cfg.json: subsystems[0].config[0].params.block_size: block size must be a power of two ≥ 512, got 256"),
        (bdevConfig(#"{"method": "bdev_aio_create", "params": {"name": "A", "filename": "/f", "block_size": -4096}}"#),
         "cfg.json: subsystems[0].config[0].params.block_size: expected a positive integer, got -4096"),
        (bdevConfig(#"{"method": "bdev_malloc_create", "params": {"name": "M", "num_blocks": 8, "block_size": 512, "numa_id": -2}}"#),
         "cfg.json: subsystems[0].config[0].params.numa_id: expected a NUMA node id or -1, got -2"),
        (bdevConfig(#"{"method": "bdev_aio_create", "params": {"name": "", "filename": "/f"}}"#),
         "cfg.json: subsystems[0].config[0].params.name: expected a non-empty string, got \"\""),
        (bdevConfig(#"{"method": "bdev_aio_create", "params": {"name": null, "filename": "/f"}}"#),
         "cfg.json: subsystems[0].config[0].params.name: expected a non-empty string, got null"),
        // Missing params.
        (bdevConfig(#"{"method": "bdev_aio_create", "params": {"name": "A"}}"#),
         "cfg.json: subsystems[0].config[0].params: missing required \"filename\" (bdev_aio_create)"),
        (bdevConfig(#"{"method": "bdev_malloc_create", "params": {"name": "M", "block_size": 512}}"#),
         "cfg.json: subsystems[0].config[0].params: missing required \"num_blocks\" (bdev_malloc_create)"),
        (bdevConfig(#"{"method": "bdev_nvme_attach_controller", "params": {"name": "Nvme0", "trtype": "PCIe"}}"#),
         "cfg.json: subsystems[0].config[0].params: missing required \"traddr\" (bdev_nvme_attach_controller)"),
        // Duplicate names, also through the NVMe namespace naming.
        (bdevConfig(#"{"method": "bdev_aio_create", "params": {"name": "X", "filename": "/f"}}"#,
                    #"{"method": "bdev_malloc_create", "params": {"name": "X", "num_blocks": 8, "block_size": 512}}"#),
         "cfg.json: subsystems[0].config[1]: duplicate bdev name \"X\" (already defined at subsystems[0].config[0])"),
        (bdevConfig(#"{"method": "bdev_nvme_attach_controller", "params": {"name": "N", "trtype": "PCIe", "traddr": "0000:00:04.0"}}"#,
                    #"{"method": "bdev_aio_create", "params": {"name": "Nn1", "filename": "/f"}}"#),
         "cfg.json: subsystems[0].config[1]: duplicate bdev name \"Nn1\" (already defined at subsystems[0].config[0])"),
    ])
    func invalidConfigsGivePreciseErrors(json: String, expected: String) {
        #expect(parseError(json) == expected)
    }

    @Test func loadReadsFilesAndReportsUnreadableOnes() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        let path = dir.path("bdev.json")
        #expect(FileManager.default.createFile(atPath: path, contents: Data(example.utf8)))
        let config = try BDevConfig.load(path: path)
        #expect(config.source == path)
        #expect(config.entries.count == 3)

        let missing = dir.path("missing.json")
        #expect(throws: BDevConfigError("cannot read bdev config \(missing): No such file or directory")) {
            try BDevConfig.load(path: missing)
        }
        #expect(throws: BDevConfigError("cannot read bdev config \(dir.url.path): Is a directory")) {
            try BDevConfig.load(path: dir.url.path)
        }
    }

    @Test func openBDevBuildsMallocAndAioAndExplainsNVMeProblems() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        let malloc = try openBDev(.malloc(name: "M", numBlocks: 64, blockSize: 512, numaNode: nil))
        #expect(malloc.kind == "malloc" && malloc.name == "M" && malloc.blockCount == 64 && malloc.blockSize == 512)
        malloc.close()

        let path = dir.path("a.img")
        #expect(FileManager.default.createFile(atPath: path, contents: Data(count: 1 << 20)))
        let aio = try openBDev(.aio(name: "A", filename: path, blockSize: nil))
        #expect(aio.kind == "aio" && aio.blockSize == 4096 && aio.blockCount == 256)
        aio.close()

        // No NVMe hardware here: the driver itself runs in a QEMU guest (scripts/nvme-vm).
        #expect(throws: BDevError(.notSupported, "bdev Nvme0n1 (NVMe controller Nvme0): transport type \"TCP\" is not "
                                                 + "supported; only PCIe (a local controller driven from user space)")) {
            try openBDev(.nvme(name: "Nvme0", trtype: "TCP", traddr: "127.0.0.1"))
        }
        #expect(throws: BDevError(.invalidArgument, "nvme bdev Nvme0n1 (00:04): invalid PCI address "
                                                    + "(expected DDDD:BB:DD.F, e.g. 0000:00:04.0)")) {
            try openBDev(.nvme(name: "Nvme0", trtype: "PCIe", traddr: "00:04"))
        }
        #expect(throws: BDevError(.noSuchFileOrDirectory, "nvme bdev Nvme0n1 (0000:ff:1f.7): PCI function 0000:ff:1f.7 "
                                                          + "not found (/sys/bus/pci/devices/0000:ff:1f.7)")) {
            try openBDev(.nvme(name: "Nvme0", trtype: "pcie", traddr: "0000:ff:1f.7"))
        }
    }

    @Test(arguments: [
        ("4096", 4096), ("512K", 512 << 10), ("64M", 64 << 20), ("1G", 1 << 30), ("2T", 2 << 40),
        ("64m", 64 << 20), ("64MiB", 64 << 20), ("64mb", 64 << 20), ("4096B", 4096), ("1.5G", 3 << 29),
        ("0.5K", 512), ("1.50G", 3 << 29), (" 8 KiB ", 8192), ("16777215T", 16_777_215 << 40),
    ] as [(String, UInt64)])
    func byteSizesParse(text: String, bytes: UInt64) throws {
        #expect(try parseByteSize(text) == bytes)
    }

    @Test(arguments: [
        ("", "expected a number with an optional K, M, G or T suffix (powers of 1024), e.g. 4096, 512K, 64M, 1.5G"),
        ("abc", "expected a number with an optional K, M, G or T suffix (powers of 1024), e.g. 4096, 512K, 64M, 1.5G"),
        ("-1", "expected a number with an optional K, M, G or T suffix (powers of 1024), e.g. 4096, 512K, 64M, 1.5G"),
        ("12Q", "expected a number with an optional K, M, G or T suffix (powers of 1024), e.g. 4096, 512K, 64M, 1.5G"),
        ("1.K", "expected a number with an optional K, M, G or T suffix (powers of 1024), e.g. 4096, 512K, 64M, 1.5G"),
        ("4iB", "expected a number with an optional K, M, G or T suffix (powers of 1024), e.g. 4096, 512K, 64M, 1.5G"),
        ("0", "must be greater than zero"),
        ("0.0M", "must be greater than zero"),
        ("1.5", "not a whole number of bytes"),
        ("0.1K", "not a whole number of bytes"),
        ("16777216T", "too large (the maximum is 18446744073709551615 bytes)"),
        ("18446744073709551616", "too large (the maximum is 18446744073709551615 bytes)"),
    ])
    func badByteSizesAreRejected(text: String, reason: String) {
        #expect(throws: BDevConfigError("invalid size \"\(text)\": \(reason)")) { try parseByteSize(text) }
    }
}
