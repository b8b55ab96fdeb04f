import Testing
@testable import ToolSupport

@Suite struct ToolSupportTests {
    @Test func deviceSelection() throws {
        #expect(try DeviceSelection.from(path: "/x", malloc: nil, config: nil, bdev: nil).description == "/x")
        if case .malloc(let n) = try DeviceSelection.from(path: nil, malloc: "64M", config: nil, bdev: nil) { #expect(n == 64 << 20) }
        else { Issue.record("not malloc") }
        #expect(throws: ToolError.self) { try DeviceSelection.from(path: nil, malloc: nil, config: nil, bdev: nil) }
        #expect(throws: ToolError.self) { try DeviceSelection.from(path: "/x", malloc: "1G", config: nil, bdev: nil) }
        #expect(throws: ToolError.self) { try DeviceSelection.from(path: nil, malloc: nil, config: "c.json", bdev: nil) }
        #expect(throws: ToolError.self) { try DeviceSelection.from(path: nil, malloc: "lots", config: nil, bdev: nil) }
    }
    @Test func byteFormatting() {
        #expect(formatBytes(512) == "512 B")
        #expect(formatBytes(16 << 10) == "16 KiB")
        #expect(formatBytes(3 << 29) == "1.5 GiB")
    }
}
