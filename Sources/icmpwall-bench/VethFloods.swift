// Floods over a veth pair, side by side with nftables: frames injected in the sender namespace with
// BPF_PROG_RUN live frames (icw_bench_tx returns XDP_TX, so each frame leaves the sender's veth), or through a
// packet socket where the kernel refuses live frames (Injector), and judged
// on the receiver's veth by one of several receivers, attached in turn, in interleaved rounds. Every count
// comes from the receivers' own counters (BPF maps, nft rule counters) over a measured window.
import BPFKit
import CIcmpwallShim
import Foundation
import IcmpwallDataplane
import IcmpwallFrames
import IcmpwallPolicy

/// What judged the flood on the receiver's veth.
enum Receiver: String, CaseIterable {
    /// icw_bench_drop: parse, count, XDP_DROP: the least an XDP program can do (the ceiling).
    case ceiling = "minimal XDP drop"
    /// The real datapath with the embedded edge-default policy, attached as `icmpwall attach` does.
    case icmpwall = "icmpwall edge-default"
    /// icw_bench_pass (count, XDP_PASS) then an nftables netdev ingress chain.
    case nftables = "nftables netdev ingress"
}

/// One receiver over one measured window.
struct Window {
    var offered: UInt64 = 0
    var received: UInt64 = 0
    var dropped: UInt64 = 0
    var admitted: UInt64 = 0
    var seconds: Double = 0
    var receivedRate: Double { Double(received) / max(seconds, 1e-9) }
    var offeredRate: Double { Double(offered) / max(seconds, 1e-9) }
    var droppedRate: Double { Double(dropped) / max(seconds, 1e-9) }
    var admittedRate: Double { Double(admitted) / max(seconds, 1e-9) }
}

/// Per receiver: the window with the median received rate, and every round's rate.
struct FloodComparison {
    var title: String
    var windows: [Receiver: [Window]] = [:]
    var median: [Receiver: Window] {
        windows.mapValues { w in w.sorted { $0.receivedRate < $1.receivedRate }[w.count / 2] }
    }
    /// Problems found by the checks that each receiver really did what it should (empty: all fine).
    var problems: [String] = []
    /// The receiver's XDP program in a separate window with the kernel's run-time statistics on.
    var profiles: [Receiver: ProgramProfile] = [:]
    /// How the frames were sent.
    var injector: Injector = .liveFrames
}

/// The kernel's view of the receiver's XDP program during a flood: mean run time (BPF_ENABLE_STATS) and size.
struct ProgramProfile {
    var nanosecondsPerRun: Double
    var runs: UInt64
    var translatedBytes: UInt32
    var jitedBytes: UInt32
    var verifiedInstructions: UInt32
}

/// How frames enter the sender's veth.
enum Injector: Equatable {
    /// BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES running icw_bench_tx (XDP_TX): no socket buffers, the
    /// cheapest sender there is, so the receivers' differences weigh the most.
    case liveFrames
    /// An AF_PACKET socket with the qdisc bypassed, sendmmsg in batches of 64: each frame is a socket buffer that
    /// veth turns into an XDP frame for the receiver. Used where the kernel refuses live frames (`reason`).
    case packetSocket(reason: String)
}

/// The namespaces, the bench programs and the receivers' set-up and counters.
final class VethBench: @unchecked Sendable {
    let topology: LabTopology
    let object: BPFObject
    let tx: BPFProgram
    let counts: BPFMap
    let config: BPFMap
    let edgeDefault: CompiledPolicy
    let senderIndex: Int32
    let receiverIndex: Int32
    private var senderLink: BPFLink?
    private var receiverLink: BPFLink?
    private var icmpwallAttached = false
    private var nftLoaded = false
    /// Run the receiver's NAPI in a thread on its own CPU (see separateReceiverCPU).
    let separateCPU: Bool
    /// Live frames where the kernel allows them, else a packet socket.
    private(set) var injector: Injector = .liveFrames
    /// Spoofed IPv4 sources of the current flood (0: the frame's own source), and the packet socket's frame count.
    private var spoofedSources: UInt32 = 0
    private var packetSequence: UInt64 = 0

    init(object: BPFObject, separateCPU: Bool) throws {
        self.object = object
        self.separateCPU = separateCPU
        tx = try object.program(named: "icw_bench_tx")
        counts = try object.map(named: "icw_bench_counts")
        config = try object.map(named: "icw_bench_cfg")
        let (policy, _) = try PolicyLoader.parse(PolicyLoader.embeddedDefault, fileName: "edge-default.yaml")
        edgeDefault = try PolicyCompiler.compile(policy, capacity: DatapathCapacity.compile)
        topology = try LabTopology(prefix: LabTopology.uniquePrefix("icwbn"))
        Cleanup.add { [topology] in topology.destroy() }
        let t = topology
        senderIndex = try NetworkNamespace.run(in: t.clientNamespace) { try Interfaces.index(named: t.clientInterface) }
        receiverIndex = try NetworkNamespace.run(in: t.serverNamespace) { try Interfaces.index(named: t.serverInterface) }
        // veth runs XDP (and so NAPI) on an end only when a program is attached there.
        let pass = try object.program(named: "icw_baseline_parse")
        let sender = senderIndex
        senderLink = try NetworkNamespace.run(in: t.clientNamespace) { try XDP.attachLink(program: pass, interfaceIndex: sender, mode: .native) }
        injector = try chooseInjector()
    }

    /// One live frame: if the kernel refuses the flag (a hardened kernel may answer EPERM even to root, since live
    /// frames can transmit on any interface), the floods go through a packet socket instead, and the report says so.
    private func chooseInjector() throws -> Injector {
        let t = topology, index = senderIndex, program = tx
        let probe = frame(.echoRequest(identifier: 1, sequence: 1), from: IPv4Address(parsing: t.clientIPv4)!)
        do {
            _ = try NetworkNamespace.run(in: t.clientNamespace) {
                try program.testRunLiveFrames(data: probe, repeat: 1, batchSize: 1, ingressInterfaceIndex: index)
            }
            return .liveFrames
        } catch let error as BPFError {
            guard [EPERM, EINVAL, EOPNOTSUPP].contains(error.errno) else { throw error }
            return .packetSocket(reason: "this kernel refuses BPF_F_TEST_XDP_LIVE_FRAMES (\(error.errnoName))")
        }
    }

    /// Detaches whatever is attached and removes the namespaces (idempotent; also run by Cleanup).
    func destroy() {
        teardown()
        senderLink?.close()
        senderLink = nil
        topology.destroy()
    }

    /// An Ethernet frame from the sender's veth to the receiver's.
    func frame(_ message: ICMPv4Message, from source: IPv4Address) -> [UInt8] {
        let client = MACAddress(parsing: topology.clientMAC)!, server = MACAddress(parsing: topology.serverMAC)!
        return FrameBuilder.icmpv4(message, from: source, to: IPv4Address(parsing: topology.serverIPv4)!)
            .addressed(from: client, to: server).padded().bytes
    }

    func setUp(_ receiver: Receiver, nftRules: String) throws {
        let t = topology, index = receiverIndex
        switch receiver {
        case .ceiling, .nftables:
            let program = try object.program(named: receiver == .ceiling ? "icw_bench_drop" : "icw_bench_pass")
            receiverLink = try NetworkNamespace.run(in: t.serverNamespace) { try XDP.attachLink(program: program, interfaceIndex: index, mode: .native) }
            if receiver == .nftables {
                let file = FileManager.default.temporaryDirectory.appendingPathComponent("icwbench-\(getpid()).nft").path
                let ruleset = """
                    table netdev icwbench {
                      set echo_sources { type ipv4_addr; size 131072; flags dynamic,timeout; timeout 60s; }
                      chain in {
                        type filter hook ingress device "\(t.serverInterface)" priority -500; policy accept;
                    \(nftRules)
                      }
                    }
                    """
                try ruleset.write(toFile: file, atomically: true, encoding: .utf8)
                defer { try? FileManager.default.removeItem(atPath: file) }
                nftLoaded = true
                try t.run(in: t.serverNamespace, ["nft", "-f", file])
            }
        case .icmpwall:
            icmpwallAttached = true
            let policy = edgeDefault
            _ = try NetworkNamespace.run(in: t.serverNamespace) { try Dataplane().attach(interface: t.serverInterface, policy: policy, mode: .native) }
        }
        try separateReceiverCPU()
    }

    /// With `--separate-cpu`: moves the receiver's veth NAPI poll into its own kernel thread
    /// (`/sys/class/net/IF/threaded`) pinned to the last CPU, away from the sender on CPU 0, so the receiver judges
    /// frames at its own pace and what it cannot take overflows the veth ring on the sender's side. Not the
    /// default: the thread's wake-ups and its competition with whatever else runs on that CPU weigh more than the
    /// programs compared (measured on a shared 2-CPU machine: the ratios swung by 2x between rounds), while the
    /// default (the receiver's NAPI in the sender's softirq, on one CPU) gives stable ratios. veth has NAPI only
    /// while XDP is attached, so this runs after every attach. Returns false when not separating.
    @discardableResult
    func separateReceiverCPU() throws -> Bool {
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        guard separateCPU, cpus > 1 else { return false }
        let t = topology
        try Tool.run(["ip", "netns", "exec", t.serverNamespace, "sh", "-c", "echo 1 > /sys/class/net/\(t.serverInterface)/threaded"])
        // The thread is napi/IF-ID; comm holds 15 bytes, and the first 10 of the interface name are the bench's own.
        let comm = "napi/" + t.serverInterface.prefix(10)
        for _ in 0..<50 {
            let threads = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { Int($0) != nil }.filter { pid in
                ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "").hasPrefix(comm)
            }
            if !threads.isEmpty {
                for pid in threads { try Tool.run(["taskset", "-p", "-c", "\(cpus - 1)", pid]) }
                return true
            }
            usleep(10_000)
        }
        throw DataplaneError.system("no NAPI thread \(comm)* after enabling threaded NAPI on \(t.serverInterface)")
    }

    /// Removes the receiver's program, pins and nft table (each only if set up).
    func teardown() {
        let t = topology
        if nftLoaded {
            _ = try? t.run(in: t.serverNamespace, ["nft", "delete", "table", "netdev", "icwbench"], check: false)
            nftLoaded = false
        }
        receiverLink?.close()
        receiverLink = nil
        if icmpwallAttached {
            _ = try? NetworkNamespace.run(in: t.serverNamespace) { try Dataplane().detach(interface: t.serverInterface) }
            icmpwallAttached = false
        }
    }

    private func count(_ slot: UInt32) throws -> UInt64 {
        try counts.lookupPerCPU(slot, as: UInt64.self).reduce(0, +)
    }

    /// (received, dropped, admitted) so far, from the receiver's own counters.
    func counters(_ receiver: Receiver) throws -> (UInt64, UInt64, UInt64) {
        let t = topology
        switch receiver {
        case .ceiling:
            let n = try count(0)
            return (n, n, 0)
        case .icmpwall:
            let snapshot = try NetworkNamespace.run(in: t.serverNamespace) { () throws -> CounterSnapshot in
                try CounterReader(maps: try Dataplane().maps(interface: t.serverInterface), interface: t.serverInterface).snapshot()
            }
            let ingress = snapshot.counters.filter { $0.direction == "ingress" }
            let dropped = ingress.reduce(0) { $0 + $1.dropped }, passed = ingress.reduce(0) { $0 + $1.passed }
            return (dropped + passed, dropped, passed)
        case .nftables:
            let listing = try t.run(in: t.serverNamespace, ["nft", "list", "chain", "netdev", "icwbench", "in"]).stdout
            var dropped: UInt64 = 0, accepted: UInt64 = 0
            for line in listing.split(separator: "\n") {
                guard let r = line.range(of: #"counter packets \d+"#, options: .regularExpression),
                      let n = UInt64(line[r].split(separator: " ")[2]) else { continue }
                if line.hasSuffix(" drop") { dropped += n } else if line.hasSuffix(" accept") { accepted += n }
            }
            return (try count(1), dropped, accepted)
        }
    }

    /// Injects `frame` from the sender for `seconds` on one pinned CPU; returns (frames offered, seconds).
    func inject(_ frame: [UInt8], seconds: Double, chunk: UInt32) throws -> (UInt64, Double) {
        let t = topology, index = senderIndex, program = tx, injector = injector, sources = spoofedSources
        let first = packetSequence
        let (offered, elapsed, next) = try NetworkNamespace.run(in: t.clientNamespace) { () throws -> (UInt64, Double, UInt64) in
            _ = icw_pin_thread_to_cpu(0)
            var sequence = first
            var offered: UInt64 = 0
            let start = monotonicSeconds()
            switch injector {
            case .liveFrames:
                while monotonicSeconds() - start < seconds {
                    let r = try program.testRunLiveFrames(data: frame, repeat: chunk, batchSize: 64, ingressInterfaceIndex: index)
                    offered += UInt64(r.frames)
                }
            case .packetSocket:
                let socket = try PacketSocket(interface: t.clientInterface, receive: false)
                // The live-frames sender's spoofing: 198.18.0.0 + (frame number mod sources).
                let spoofing: (base: UInt32, count: UInt32)? = sources > 0 ? (0xC612_0000, sources) : nil
                while monotonicSeconds() - start < seconds {
                    offered += UInt64(try socket.flood(frame, count: 4_096, batch: 64, spoofing: spoofing, sequence: &sequence))
                }
            }
            return (offered, monotonicSeconds() - start, sequence)
        }
        packetSequence = next
        return (offered, elapsed)
    }

    /// One window: warm up, read counters, inject, let the receiver finish, read counters again.
    func measure(_ receiver: Receiver, frame: [UInt8], seconds: Double, chunk: UInt32) throws -> Window {
        _ = try inject(frame, seconds: min(0.2, seconds / 4), chunk: chunk)
        let before = try counters(receiver)
        let (offered, elapsed) = try inject(frame, seconds: seconds, chunk: chunk)
        Thread.sleep(forTimeInterval: 0.02)
        let after = try counters(receiver)
        return Window(offered: offered, received: after.0 - before.0, dropped: after.1 - before.1,
                      admitted: after.2 - before.2, seconds: elapsed)
    }

    /// A window with run-time statistics on: the mean cost of the receiver's XDP program on the real path.
    func profile(_ receiver: Receiver, frame: [UInt8], seconds: Double, chunk: UInt32) throws -> ProgramProfile {
        let t = topology, index = receiverIndex
        let program = try NetworkNamespace.run(in: t.serverNamespace) { () throws -> BPFProgram in
            guard let id = try XDP.query(interfaceIndex: index).programID else { throw DataplaneError.system("no XDP program on \(t.serverInterface)") }
            return try BPFProgram.open(id: id)
        }
        let stats = try BPFRunStats()
        let before = try program.info()
        _ = try inject(frame, seconds: seconds, chunk: chunk)
        let after = try program.info()
        withExtendedLifetime(stats) {}
        let runs = after.runCount - before.runCount
        return ProgramProfile(nanosecondsPerRun: Double(after.runTimeNanoseconds - before.runTimeNanoseconds) / Double(max(runs, 1)),
                              runs: runs, translatedBytes: after.translatedSize, jitedBytes: after.jitedSize,
                              verifiedInstructions: after.verifiedInstructions)
    }

    /// Rounds of every receiver in turn (the order rotates each round), fresh set-up for each window.
    func compare(title: String, frame: [UInt8], sources: UInt32, nftRules: String, rounds: Int, seconds: Double,
                 chunk: UInt32, check: (Receiver, Window) -> String?) throws -> FloodComparison {
        try config.update(UInt32(0), sources)
        spoofedSources = sources
        var result = FloodComparison(title: title)
        result.injector = injector
        let receivers = Receiver.allCases
        for round in 0..<rounds {
            for k in 0..<receivers.count {
                let receiver = receivers[(round + k) % receivers.count]
                try setUp(receiver, nftRules: nftRules)
                defer { teardown() }
                let w = try measure(receiver, frame: frame, seconds: seconds, chunk: chunk)
                if let problem = check(receiver, w) { result.problems.append("\(receiver.rawValue), round \(round + 1): \(problem)") }
                result.windows[receiver, default: []].append(w)
            }
        }
        for receiver in receivers {
            try setUp(receiver, nftRules: nftRules)
            defer { teardown() }
            result.profiles[receiver] = try profile(receiver, frame: frame, seconds: seconds / 2, chunk: chunk)
        }
        return result
    }
}

/// Part 2: an address-mask-reply flood (one source) that every receiver must drop entirely.
func maskFlood(_ bench: VethBench, rounds: Int, seconds: Double, chunk: UInt32) throws -> FloodComparison {
    let frame = bench.frame(.addressMaskReply(), from: "198.51.100.1")
    return try bench.compare(title: "address-mask-reply flood", frame: frame, sources: 0,
                             nftRules: "    icmp type address-mask-reply counter drop", rounds: rounds, seconds: seconds, chunk: chunk) { _, w in
        if w.received == 0 { return "received nothing" }
        if w.dropped < w.received * 99 / 100 { return "dropped \(w.dropped) of \(w.received)" }
        return nil
    }
}

/// Part 3: echo requests from 100,000 spoofed sources against edge-default's echo rule (20/s, burst 50 per
/// source, backstop 2,000/s, burst 5,000 for the rule) and the same limits in nftables.
func spoofedEchoFlood(_ bench: VethBench, sources: UInt32, rounds: Int, seconds: Double, chunk: UInt32) throws -> FloodComparison {
    let frame = bench.frame(.echoRequest(identifier: 7, sequence: 1), from: "198.18.0.0")
    let rules = """
            icmp type echo-request update @echo_sources { ip saddr limit rate over 20/second burst 50 packets } counter drop
            icmp type echo-request limit rate over 2000/second burst 5000 packets counter drop
            icmp type echo-request counter accept
        """
    return try bench.compare(title: "echo flood from \(sources) spoofed sources", frame: frame, sources: sources,
                             nftRules: rules, rounds: rounds, seconds: seconds, chunk: chunk) { receiver, w in
        if receiver == .ceiling { return w.received == 0 ? "received nothing" : nil }
        if w.received == 0 { return "received nothing" }
        if w.dropped == 0 { return "dropped nothing" }
        if w.dropped + w.admitted < w.received * 99 / 100 { return "judged \(w.dropped + w.admitted) of \(w.received)" }
        // The backstop (2,000/s after a burst of 5,000) caps what passes, whatever the sources.
        if Double(w.admitted) > 2_000 * w.seconds + 5_000 + 2_000 { return "admitted \(w.admitted) in \(w.seconds) s, over the backstop" }
        return nil
    }
}
