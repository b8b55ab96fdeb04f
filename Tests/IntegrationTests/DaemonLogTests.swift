import Foundation
import Glibc
import Testing
import TestSupport
import Platform

/// What a daemon in the background has to say reaches syslog (ident blobfs-fuse, the
/// volume on every line): the mount, recovery after a crash, ENOSPC once per burst, and
/// why it unmounted. With no syslog daemon here, the test is the syslog daemon: it
/// listens on /dev/log (a datagram socket) for its duration.
@Suite(.serialized, .timeLimit(.minutes(3))) struct DaemonLogTests {
    @Test func aBackgroundDaemonLogsToSyslog() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-log")
        let received = dir.path + "/syslog.txt"
        var listener: Child? = nil
        let ownSocket = access("/dev/log", F_OK) != 0
        if ownSocket {
            let script = """
            import socket, sys
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind("/dev/log")
            out = open(sys.argv[1], "ab", buffering=0)
            print("listening", flush=True)
            while True:
                out.write(s.recv(65536).rstrip(b"\\0") + b"\\n")
            """
            listener = try Child(["python3", "-c", script, received], outputPath: dir.path + "/listener.log")
            let deadline = Date().addingTimeInterval(10)
            while access("/dev/log", F_OK) != 0 && Date() < deadline { usleep(10_000) }
        }
        defer {
            if let l = listener { l.signal(SIGKILL); _ = l.wait(); unlink("/dev/log") }
        }
        let started = Int(Date().timeIntervalSince1970)
        func logText() -> String {
            if ownSocket { return (try? String(contentsOfFile: received, encoding: .utf8)) ?? "" }
            return (try? run(["journalctl", "-t", "blobfs-fuse", "-o", "cat", "--since", "@\(started)"]).output) ?? ""
        }
        func waitFor(_ text: String) -> Bool {
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                if logText().contains(text) { return true }
                usleep(20_000)
            }
            return false
        }

        let img = dir.path + "/small.img", mnt = dir.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        defer { if mounted(mnt) { _ = try? run(["fusermount3", "-u", mnt]); _ = try? run(["umount", "-l", mnt]) } }
        #expect(try run([Tools.mkfs, "-q", "-s", "16M", img]).status == 0)
        let volume = "[\(img)]"

        // Mount in the background; fill the volume: ENOSPC is said once for the burst.
        #expect(try run([Tools.blobfsFuse, img, mnt]).status == 0)
        #expect(waitFor("\(volume) mounted at \(mnt) (read-write"), "\(logText())")
        _ = try sh("dd if=/dev/zero of='\(mnt)/big' bs=64k count=1000 2>/dev/null; for i in 1 2 3 4 5; do echo x >> '\(mnt)/big' 2>/dev/null; done; true")
        #expect(waitFor("No space left on device (the volume is full) returned to an application"), "\(logText())")
        #expect(logText().components(separatedBy: "No space left on device").count == 2, "one line per burst: \(logText())")
        #expect(try run(["rm", "-f", "\(mnt)/big"]).status == 0)

        // kill -9, then the next mount's recovery is logged.
        let pid = try daemonPID(img)
        #expect(pid != nil)
        if let p = pid { kill(p, SIGKILL) }
        // The lock goes when the dying process has closed its files (after in-flight AIO).
        try waitUntilReleased(img)
        _ = try run(["fusermount3", "-u", "-z", mnt])
        let remount = try run([Tools.blobfsFuse, img, mnt])
        #expect(remount.status == 0, "\(remount.output)")
        #expect(waitFor("\(volume) \(img) was not unmounted cleanly; recovered"), "\(logText())")

        // Why it unmounted: fusermount3 -u, then SIGTERM.
        #expect(try run(["fusermount3", "-u", mnt]).status == 0)
        #expect(waitFor("\(volume) unmounting \(mnt): unmounted (umount or fusermount3 -u)"), "\(logText())")
        #expect(waitFor("\(volume) unmounted \(mnt); the volume is clean"), "\(logText())")
        try waitUntilReleased(img)
        #expect(try run([Tools.blobfsFuse, img, mnt]).status == 0)
        if let p = try daemonPID(img) { kill(p, SIGTERM) }
        #expect(waitFor("\(volume) unmounting \(mnt): got SIGTERM"), "\(logText())")
        #expect(waitFor("unmounted \(mnt); the volume is clean"))
        if ownSocket { #expect(logText().contains("blobfs-fuse[")) }   // ident and pid
        try waitUntilReleased(img)
        #expect(try run([Tools.fsck, "-n", "-f", img]).status == 0)
    }

    /// --log-level and -o log_level= choose what the foreground daemon says on stderr.
    @Test func logLevels() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-loglevel")
        let img = try makeImage(dir, size: "64M")
        let quiet = try Mount([img], options: ["--log-level", "error"], dir: dir)
        #expect(quiet.stop() == 0)
        #expect(!quiet.logText.contains("mounted at"), "\(quiet.logText)")
        let chatty = try Mount([img], options: ["-o", "log_level=notice"], dir: dir)
        #expect(chatty.stop() == 0)
        #expect(chatty.logText.contains("mounted at") && chatty.logText.contains("the volume is clean"), "\(chatty.logText)")
        let bad = try run([Tools.blobfsFuse, "-f", "--log-level", "loud", img, dir.path + "/mnt"])
        #expect(bad.status == 64 && bad.output.contains("--log-level takes one of trace, debug, info, notice, warning, error, critical"), "\(bad.output)")
    }
}

/// The pid of the blobfs-fuse daemon serving `image`: the process holding it open (the
/// parent that started it in the background never opens it).
private func daemonPID(_ image: String) throws -> Int32? {
    FileHolder.holders(of: image).first { $0.command == "blobfs-fuse" }?.pid
}

/// Wait (up to 10 s) until no process holds `image`'s lock.
private func waitUntilReleased(_ image: String) throws {
    let deadline = Date().addingTimeInterval(10)
    while try run(["flock", "-n", image, "true"]).status != 0 && Date() < deadline { usleep(10_000) }
}
