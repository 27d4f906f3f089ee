// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "icmpwall",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "icmpwall", targets: ["icmpwall"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        // Tests only: reads the Kubernetes manifests (several documents, anchors and all) the deploy tests check, and
        // is the reference the policy reader's own YAML composer is compared with on fuzzed documents.
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        // The agent (`icmpwall agent`): lifecycle and signals, Prometheus exposition, a minimal HTTP/1.1 server.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
    ],
    targets: [
        // libbpf from Debian's libbpf-dev.
        .systemLibrary(
            name: "CLibBPF",
            pkgConfig: "libbpf",
            providers: [.apt(["libbpf-dev", "libelf-dev", "zlib1g-dev"])]
        ),
        // libpcap's header from Debian's libpcap-dev: reads pcap and pcapng captures for replay. Not linked:
        // IcmpwallCapture opens the library when a capture is first read or written (Pcap.swift says why).
        .systemLibrary(
            name: "CPcap",
            providers: [.apt(["libpcap-dev"])]
        ),
        // libyaml from Debian's libyaml-dev: the event parser under the policy and agent-config readers.
        .systemLibrary(
            name: "CYAML",
            pkgConfig: "yaml-0.1",
            providers: [.apt(["libyaml-dev"]), .brew(["libyaml"])]
        ),
        // The shared ABI header (bpf/include/icmpwall_abi.h) and the few C calls Swift cannot make itself.
        .target(name: "CIcmpwallShim"),
        // Generic BPF layer: objects, programs, maps, links, typed errors with errno and verifier log.
        .target(name: "BPFKit", dependencies: ["CLibBPF", "CIcmpwallShim"]),
        // Pure-Swift policy core: model, YAML parser with locations, validator, compiler to lookup tables.
        .target(
            name: "IcmpwallPolicy",
            dependencies: [
                "CYAML",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Frame builder for tests, the lab and benchmarks (Ethernet, VLAN, IPv4/IPv6, ICMP, checksums).
        .target(name: "IcmpwallFrames"),
        // Capture reading (libpcap: pcap and pcapng, Ethernet and Linux cooked).
        .target(name: "IcmpwallCapture", dependencies: ["CPcap", "IcmpwallFrames"]),
        // The dataplane: embedded BPF object, pins, attach/apply/detach, counters, replay.
        .target(
            name: "IcmpwallDataplane",
            dependencies: [
                "BPFKit", "CIcmpwallShim", "IcmpwallPolicy", "IcmpwallCapture", "IcmpwallFrames",
                .product(name: "Logging", package: "swift-log"),
            ],
            plugins: ["EmbedBPF"]
        ),
        // The agent: config file, attach/adopt, reload on SIGHUP and file change, re-attach, metrics, /healthz.
        .target(
            name: "IcmpwallAgent",
            dependencies: [
                "IcmpwallDataplane", "IcmpwallPolicy", "BPFKit", "CIcmpwallShim",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "icmpwall",
            dependencies: [
                "IcmpwallAgent",
                "IcmpwallDataplane", "IcmpwallPolicy", "IcmpwallFrames", "IcmpwallCapture", "CIcmpwallShim",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // `make bench`: datapath cost through BPF_PROG_TEST_RUN against baselines in the same run.
        .executableTarget(
            name: "icmpwall-bench",
            dependencies: ["IcmpwallDataplane", "IcmpwallPolicy", "IcmpwallFrames", "BPFKit"]
        ),
        // Reference model of the policy semantics (pure Swift), frame and policy generators, differential runner.
        .target(name: "IcmpwallModel", dependencies: ["IcmpwallPolicy", "IcmpwallFrames"]),
        // `make fuzz`: 1,000,000+ generated frames through the real datapath and the model; policy fuzzing.
        .executableTarget(
            name: "icmpwall-fuzz",
            dependencies: ["IcmpwallDifferential", "IcmpwallModel", "IcmpwallDataplane", "IcmpwallPolicy", "IcmpwallCapture", "BPFKit"]
        ),
        // The real datapath behind the differential runner, and reproducer files (make fuzz and the test slice).
        .target(
            name: "IcmpwallDifferential",
            dependencies: ["IcmpwallModel", "IcmpwallDataplane", "IcmpwallPolicy", "IcmpwallCapture"]
        ),
        // Compiles bpf/*.bpf.c with clang -target bpf and embeds the object as Swift source.
        .plugin(name: "EmbedBPF", capability: .buildTool()),

        .testTarget(name: "IcmpwallPolicyTests", dependencies: ["IcmpwallPolicy"]),
        .testTarget(name: "IcmpwallFramesTests", dependencies: ["IcmpwallFrames", "IcmpwallCapture"]),
        .testTarget(name: "BPFKitTests", dependencies: ["BPFKit"]),
        .testTarget(
            name: "IcmpwallModelTests",
            dependencies: [
                "IcmpwallDifferential", "IcmpwallModel", "IcmpwallDataplane", "IcmpwallPolicy", "IcmpwallFrames", "IcmpwallCapture", "BPFKit",
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .testTarget(
            name: "IcmpwallDataplaneTests",
            dependencies: ["IcmpwallDataplane", "IcmpwallPolicy", "IcmpwallFrames", "BPFKit", "CIcmpwallShim"]
        ),
        .testTarget(
            name: "IcmpwallAgentTests",
            dependencies: [
                "IcmpwallAgent", "IcmpwallDataplane", "IcmpwallPolicy", "IcmpwallFrames", "BPFKit",
                .product(name: "Yams", package: "Yams"), .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "IcmpwallEndToEndTests",
            dependencies: ["IcmpwallDataplane", "IcmpwallPolicy", "IcmpwallFrames", "IcmpwallCapture", "BPFKit"]
        ),
    ]
)
