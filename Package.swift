// swift-tools-version: 6.2
// BlobFS-FUSE: a FUSE filesystem over an SPDK-compatible blobstore, in Swift.
// Layers (bottom up), one module each: Platform (C wrappers) → BDev → Reactor →
// Blobstore → BlobFS → FUSEFrontend; executables are thin shells over them.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    // Async functions that are not actor-isolated run on the caller's executor, so
    // blobstore code awaited from the reactor stays on the reactor thread.
    .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
    .enableUpcomingFeature("ExistentialAny"),
    .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release)),
]

let package = Package(
    name: "blobfs-fuse",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "blobfs-fuse", targets: ["BlobFSFuse"]),
        .executable(name: "mkfs.blobfs", targets: ["MkfsBlobFS"]),
        .executable(name: "blobfs-bench", targets: ["BlobFSBench"]),
        .executable(name: "fsck.blobfs", targets: ["FsckBlobFS"]),
        .executable(name: "blobfs-inspect", targets: ["BlobFSInspect"]),
        .executable(name: "blobfs-nvme", targets: ["BlobFSNVMe"]),
        .executable(name: "blobfs-crashcheck", targets: ["BlobFSCrashCheck"]),
        .library(name: "Blobstore", targets: ["Blobstore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
    ],
    targets: [
        // C libraries, each wrapped once (Platform) and not imported elsewhere.
        .systemLibrary(name: "CFuse3", path: "Sources/C/CFuse3", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .systemLibrary(name: "CLibAIO", path: "Sources/C/CLibAIO", providers: [.apt(["libaio-dev"])]),
        .systemLibrary(name: "CNuma", path: "Sources/C/CNuma", pkgConfig: "numa", providers: [.apt(["libnuma-dev"])]),
        // librados + librbd (no .pc files: the module map links them by name).
        .systemLibrary(name: "CRBD", path: "Sources/C/CRBD", providers: [.apt(["librbd-dev", "librados-dev"])]),
        .target(name: "CPlatformShim", path: "Sources/C/CPlatformShim"),
        .target(name: "Platform", dependencies: [
            "CPlatformShim", "CLibAIO", "CNuma", "CRBD",
            .product(name: "SystemPackage", package: "swift-system"),
        ],
                swiftSettings: swiftSettings),

        .target(name: "Reactor", dependencies: ["Platform"], swiftSettings: swiftSettings),
        // The user-space NVMe driver (controller, queues, PRPs); BDev adapts it to BlockDevice.
        .target(name: "NVMe", dependencies: ["Platform", "CPlatformShim"], swiftSettings: swiftSettings),
        .target(name: "BDev", dependencies: ["Platform", "Reactor", "NVMe"], swiftSettings: swiftSettings),
        .target(name: "Blobstore", dependencies: ["BDev", "Reactor", "Platform"], swiftSettings: swiftSettings),
        .target(name: "BlobFS", dependencies: ["Blobstore", "BDev", "Reactor", "Platform"], swiftSettings: swiftSettings),
        .target(name: "FUSEFrontend", dependencies: ["BlobFS", "Reactor", "Platform", "CFuse3"], swiftSettings: swiftSettings),
        .target(name: "ToolSupport", dependencies: [
            "BDev", "Blobstore", "Reactor", "Platform",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "Sources/Support/ToolSupport", swiftSettings: swiftSettings),

        .executableTarget(name: "BlobFSFuse", dependencies: [
            "ToolSupport", "BlobFS", "FUSEFrontend", "Blobstore", "BDev", "Reactor", "Platform",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "Sources/Tools/BlobFSFuse", swiftSettings: swiftSettings),
        .executableTarget(name: "MkfsBlobFS", dependencies: [
            "ToolSupport", "Blobstore", "BDev", "Reactor", "BlobFS",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Tools/MkfsBlobFS", swiftSettings: swiftSettings),
        .executableTarget(name: "BlobFSBench", dependencies: [
            "ToolSupport", "Blobstore", "BlobFS", "Fsck", "BDev", "Reactor", "Platform",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Tools/Benchmarks", swiftSettings: swiftSettings),

        .executableTarget(name: "BlobFSNVMe", dependencies: [
            "ToolSupport", "Blobstore", "BDev", "Reactor", "Platform",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Tools/BlobFSNVMe", swiftSettings: swiftSettings),

        // fsck.blobfs / blobfs-inspect: checker, repairer and inspector over the raw format.
        .target(name: "Fsck", dependencies: ["Blobstore", "BlobFS", "BDev", "Reactor", "Platform"], swiftSettings: swiftSettings),
        .executableTarget(name: "FsckBlobFS", dependencies: [
            "Fsck", "ToolSupport", "Blobstore", "BDev", "Reactor", "Platform",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Tools/FsckBlobFS", swiftSettings: swiftSettings),
        .executableTarget(name: "BlobFSInspect", dependencies: [
            "Fsck", "ToolSupport", "Blobstore", "BDev", "Reactor", "Platform",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Tools/BlobFSInspect", swiftSettings: swiftSettings),

        // The power-cut harness: crash states from a recorded device, a model, an oracle.
        .target(name: "CrashCheck", dependencies: ["Fsck", "BlobFS", "Blobstore", "BDev", "Reactor", "Platform"],
                swiftSettings: swiftSettings),
        .executableTarget(name: "BlobFSCrashCheck", dependencies: [
            "CrashCheck", "ToolSupport", "Fsck", "BlobFS", "Blobstore", "BDev", "Reactor", "Platform",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Tools/BlobFSCrashCheck", swiftSettings: swiftSettings),

        .target(name: "TestSupport", dependencies: ["BDev", "Reactor"], path: "Sources/Support/TestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "PlatformTests", dependencies: ["Platform"], swiftSettings: swiftSettings),
        .testTarget(name: "ReactorTests", dependencies: ["Reactor", "Platform"], swiftSettings: swiftSettings),
        .testTarget(name: "NVMeTests", dependencies: ["NVMe", "Platform"], swiftSettings: swiftSettings),
        .testTarget(name: "BDevTests", dependencies: ["BDev", "Reactor", "Platform", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "BlobstoreFormatTests", dependencies: ["Blobstore", "Platform", "TestSupport"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "BlobstoreTests", dependencies: ["Blobstore", "BlobFS", "BDev", "Reactor", "Platform", "TestSupport", "CrashCheck"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "BlobFSTests", dependencies: ["BlobFS", "Blobstore", "BDev", "Reactor", "Platform", "TestSupport"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "IntegrationTests", dependencies: ["TestSupport", "Platform", "Blobstore", "BDev", "Reactor"], swiftSettings: swiftSettings),
        .testTarget(name: "ToolTests", dependencies: ["ToolSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "FsckTests", dependencies: ["Fsck", "BlobFS", "Blobstore", "BDev", "Reactor", "Platform", "TestSupport"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "CrashTests", dependencies: ["CrashCheck", "BlobFS", "Blobstore", "BDev", "Reactor", "Platform", "TestSupport"],
                    swiftSettings: swiftSettings),
        // Needs a Ceph cluster (scripts/ceph-cluster; scripts/test starts one): skipped without.
        .testTarget(name: "RBDTests", dependencies: ["TestSupport", "ToolSupport", "BDev", "Reactor", "Platform"], swiftSettings: swiftSettings),
        .testTarget(name: "FUSEFrontendTests", dependencies: ["FUSEFrontend", "BlobFS", "Reactor", "Platform", "TestSupport"],
                    swiftSettings: swiftSettings),
    ]
)
