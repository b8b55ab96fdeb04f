import XCTest
import BDev
import Platform
import ToolSupport

/// bdev_rbd_register_cluster / bdev_rbd_create parsing and the POOL/IMAGE syntax: no
/// cluster needed.
final class RBDConfigTests: XCTestCase {
    private func parse(_ entries: String) throws(BDevConfigError) -> BDevConfig {
        try BDevConfig.parse(json: #"{"subsystems": [{"subsystem": "bdev", "config": ["# + entries + "]}]}", source: "c.json")
    }
    private func message(_ entries: String) -> String {
        do throws(BDevConfigError) { _ = try parse(entries); return "" } catch { return error.message }
    }

    func testRegisteredCluster() throws {
        let cfg = try parse("""
            {"method": "bdev_rbd_register_cluster", "params": {"name": "ceph0", "user_id": "blobfs",
              "config_file": "/etc/ceph/ceph.conf", "key_file": "/k", "config_param": {"rados_osd_op_timeout": "5", "keyring": "/kr"}}},
            {"method": "bdev_rbd_create", "params": {"name": "Rbd0", "pool_name": "rbd", "rbd_name": "vol", "block_size": 512,
              "cluster_name": "ceph0"}}
            """)
        let client = CephClientConfig(configFile: "/etc/ceph/ceph.conf", userID: "blobfs", keyFile: "/k",
                                      options: [.init("keyring", "/kr"), .init("rados_osd_op_timeout", "5")])
        XCTAssertEqual(try cfg.entry(named: "Rbd0"), .rbd(name: "Rbd0", pool: "rbd", image: "vol", blockSize: 512, client: client))
        XCTAssertEqual(cfg.entries.count, 1, "a registered cluster is not a bdev")
    }

    func testInlineClient() throws {
        let cfg = try parse("""
            {"method": "bdev_rbd_create", "params": {"name": "Rbd0", "pool_name": "rbd", "rbd_name": "vol", "block_size": 4096,
              "user_id": "admin", "config": {"mon_host": "127.0.0.1"}}}
            """)
        XCTAssertEqual(cfg.entries, [.rbd(name: "Rbd0", pool: "rbd", image: "vol", blockSize: 4096,
                                          client: CephClientConfig(userID: "admin", options: [.init("mon_host", "127.0.0.1")]))])
    }

    func testErrorsNameThePath() {
        XCTAssertEqual(message(#"{"method": "bdev_rbd_create", "params": {"name": "R", "pool_name": "p", "rbd_name": "i"}}"#),
                       "c.json: subsystems[0].config[0].params: missing required \"block_size\" (bdev_rbd_create)")
        XCTAssertEqual(message(#"{"method": "bdev_rbd_create", "params": {"name": "R", "pool_name": "p", "rbd_name": "i", "block_size": 2048}}"#),
                       "c.json: subsystems[0].config[0].params.block_size: an RBD bdev's block size must be 512 or 4096, got 2048")
        XCTAssertEqual(message("""
            {"method": "bdev_rbd_register_cluster", "params": {"name": "a"}},
            {"method": "bdev_rbd_create", "params": {"name": "R", "pool_name": "p", "rbd_name": "i", "block_size": 4096, "cluster_name": "b"}}
            """), "c.json: subsystems[0].config[1].params.cluster_name: no RBD cluster \"b\" registered before this entry (bdev_rbd_register_cluster); registered: a")
        XCTAssertEqual(message("""
            {"method": "bdev_rbd_register_cluster", "params": {"name": "a"}},
            {"method": "bdev_rbd_create", "params": {"name": "R", "pool_name": "p", "rbd_name": "i", "block_size": 4096, "cluster_name": "a", "user_id": "x"}}
            """), "c.json: subsystems[0].config[1].params: give either \"cluster_name\" or \"user_id\", not both (bdev_rbd_create)")
        XCTAssertEqual(message("""
            {"method": "bdev_rbd_register_cluster", "params": {"name": "a"}},
            {"method": "bdev_rbd_register_cluster", "params": {"name": "a"}}
            """), "c.json: subsystems[0].config[1]: duplicate RBD cluster name \"a\" (already registered at subsystems[0].config[0])")
        XCTAssertEqual(message(#"{"method": "bdev_rbd_register_cluster", "params": {"name": "a", "config_param": {"x": true}}}"#),
                       "c.json: subsystems[0].config[0].params.config_param.x: expected a string (Ceph options are given as strings), got true")
    }

    func testPoolImageSyntax() {
        let t = RBDTarget.parse("rbd/vol")
        XCTAssertEqual(t?.pool, "rbd")
        XCTAssertEqual(t?.image, "vol")
        for bad in ["rbd", "/vol", "rbd/", "a/b/c", ""] { XCTAssertNil(RBDTarget.parse(bad), bad) }
    }

    /// --rbd and its Ceph options on the command line.
    func testDeviceSelection() throws {
        let ceph = CephClientConfig(configFile: "/c.conf", userID: "u", keyring: "/k")
        guard case .rbd(let t, let br) = try DeviceSelection.from(path: nil, malloc: nil, config: nil, bdev: nil,
                                                                   rbd: "p/i", ceph: ceph, breakLock: true) else {
            return XCTFail("not an rbd selection")
        }
        XCTAssertEqual(t, RBDTarget(pool: "p", image: "i", client: ceph))
        XCTAssertTrue(br)
        func usage(_ body: () throws(ToolError) -> DeviceSelection) -> String {
            do throws(ToolError) { _ = try body(); return "" } catch { XCTAssertEqual(error.exitCode, 2); return error.message }
        }
        XCTAssertEqual(usage { () throws(ToolError) -> DeviceSelection in try DeviceSelection.from(path: "x.img", malloc: nil, config: nil, bdev: nil, rbd: "p/i") },
                       "give only one of DEVICE/IMAGE, --malloc, -c/--config, --nvme and --rbd")
        XCTAssertEqual(usage { () throws(ToolError) -> DeviceSelection in try DeviceSelection.from(path: nil, malloc: nil, config: nil, bdev: "B", rbd: "p/i") },
                       "-b/--bdev goes with -c/--config")
        XCTAssertEqual(usage { () throws(ToolError) -> DeviceSelection in try DeviceSelection.from(path: nil, malloc: nil, config: nil, bdev: nil, rbd: "p/i/x") },
                       "--rbd: expected POOL/IMAGE (a pool name and an image name), got \"p/i/x\"")
        XCTAssertEqual(usage { () throws(ToolError) -> DeviceSelection in try DeviceSelection.from(path: "x.img", malloc: nil, config: nil, bdev: nil, ceph: ceph) },
                       "--ceph-conf, --ceph-id and --keyring go with --rbd")
        XCTAssertEqual(usage { () throws(ToolError) -> DeviceSelection in try DeviceSelection.from(path: "x.img", malloc: nil, config: nil, bdev: nil, breakLock: true) },
                       "--break-lock goes with --rbd")
    }
}
