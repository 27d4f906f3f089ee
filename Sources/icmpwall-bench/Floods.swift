// Limit accuracy under flood: for each limit kind, a flood of at least 10x the configured rate for a few seconds,
// from one CPU and from both, through the production object with the real clock (BPF_PROG_TEST_RUN with repeat
// on pinned threads). The admitted count is compared with rate x duration + burst.
import BPFKit
import CIcmpwallShim
import Foundation
import IcmpwallDataplane
import IcmpwallFrames
import IcmpwallPolicy
import Synchronization

struct FloodResult {
    var kind: String
    var cpus: Int
    var rate: Double
    var burst: Double
    var seconds: Double
    var offered: UInt64
    var admitted: UInt64
    var expected: Double { rate * seconds + burst }
    var error: Double { (Double(admitted) - expected) / expected }
    var offeredRatio: Double { Double(offered) / seconds / rate }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Runs `frames` (cycled) through `program` from threads pinned to `cpus` for `seconds`.
/// Returns (frames offered, elapsed seconds from the first run's start to the last run's end).
func flood(_ program: BPFProgram, frames: [[UInt8]], repeatCount: UInt32, cpus: [Int], seconds: Double) -> (UInt64, Double) {
    let offered = Atomic<UInt64>(0)
    let start = monotonicSeconds()
    let deadline = start + seconds
    let group = DispatchGroup()
    for (n, cpu) in cpus.enumerated() {
        group.enter()
        let thread = Thread {
            _ = icw_pin_thread_to_cpu(Int32(cpu))
            var i = n
            while monotonicSeconds() < deadline {
                let frame = frames[i % frames.count]
                i += cpus.count
                if (try? program.testRun(data: frame, repeat: repeatCount)) != nil {
                    offered.add(UInt64(repeatCount), ordering: .relaxed)
                }
            }
            group.leave()
        }
        thread.start()
    }
    group.wait()
    return (offered.load(ordering: .relaxed), monotonicSeconds() - start)
}

func ingressPolicy(_ limit: String) -> CompiledPolicy {
    compile("""
        version: 1
        rules:
          - name: limited
            type: address-mask-reply
            action: limit
            limit: \(limit)
        """)
}

func egressPolicy(_ section: String) -> CompiledPolicy {
    compile("version: 1\negress:\n  errors:\n" + section + "\n    exempt: []\n")
}

/// Admitted by the rule named "limited" (matched - dropped), summed over CPUs.
func admittedByRule(_ maps: DatapathMaps) -> UInt64 {
    guard let s = try? CounterReader(maps: maps, interface: "bench").snapshot(),
          let r = s.rules.first(where: { $0.name == "limited" }) else { return 0 }
    return r.matched - r.dropped
}

/// Errors the egress limiter let out.
func admittedEgress(_ maps: DatapathMaps) -> UInt64 {
    guard let s = try? CounterReader(maps: maps, interface: "bench").snapshot() else { return 0 }
    return s.counters.filter { $0.direction == "egress" }.reduce(0) { $0 + $1.passed }
}

func runFloods(seconds: Double, smoke: Bool) throws -> (results: [FloodResult], spoofed: String) {
    let cpuCount = ProcessInfo.processInfo.activeProcessorCount
    let cpuSets: [[Int]] = cpuCount > 1 ? [[0], [0, 1]] : [[0]]
    let mask = FrameBuilder.icmpv4(.addressMaskReply(), from: "198.51.100.1", to: "192.0.2.2").padded().bytes
    let probe = IPv4Packet(header: IPv4Header(source: "198.51.100.1", destination: "192.0.2.2"), payload: .udp(UDPDatagram(destinationPort: 9)))
    let unreachable = FrameBuilder.icmpv4(.destinationUnreachable(code: 3, quoting: probe), from: "192.0.2.2", to: "198.51.100.1").bytes

    let kinds: [(String, Double, Double, CompiledPolicy, Bool)] = [
        ("ingress global", 20_000, 1_000, ingressPolicy("{ rate: 20000/s, burst: 1000, per: global }"), false),
        ("ingress per-source", 20_000, 1_000,
         ingressPolicy("{ rate: 20000/s, burst: 1000, per: source, backstop: { rate: 10000000/s, burst: 10000000 } }"), false),
        ("egress global", 20_000, 1_000, egressPolicy("    limit: { rate: 20000/s, burst: 1000 }"), true),
        ("egress per-destination", 20_000, 1_000, egressPolicy("    per-destination: { rate: 20000/s, burst: 1000 }"), true),
    ]
    var results: [FloodResult] = []
    for (kind, rate, burst, policy, egress) in kinds {
        for cpus in cpuSets {
            let datapath = try LoadedDatapath(policy: policy)
            let maps = try DatapathMaps(object: datapath.object)
            let program = egress ? try datapath.object.program(named: DatapathNames.egressProgram) : datapath.program
            let (offered, elapsed) = flood(program, frames: [egress ? unreachable : mask], repeatCount: smoke ? 1000 : 20_000,
                                           cpus: cpus, seconds: seconds)
            let admitted = egress ? admittedEgress(maps) : admittedByRule(maps)
            results.append(FloodResult(kind: kind, cpus: cpus.count, rate: rate, burst: burst, seconds: elapsed,
                                       offered: offered, admitted: admitted))
        }
    }

    // Spoofed sources: every frame from another address of 198.18.0.0/15 (131,072 of them), against a per-source
    // limit whose backstop must cap the total; the LRU keeps memory bounded.
    // Each source alone may send 100/s (so per-source buckets never bind in aggregate): the backstop must.
    let policy = ingressPolicy("{ rate: 100/s, burst: 20, per: source, backstop: { rate: 20000/s, burst: 1000 } }")
    let datapath = try LoadedDatapath(policy: policy)
    let maps = try DatapathMaps(object: datapath.object)
    let sources = smoke ? 2_000 : 131_072
    var spoofed: [[UInt8]] = []
    spoofed.reserveCapacity(sources)
    for i in 0..<sources {
        let address = IPv4Address(0xC612_0000 | UInt32(i))  // 198.18.0.0 + i
        spoofed.append(FrameBuilder.icmpv4(.addressMaskReply(), from: address, to: "192.0.2.2").padded().bytes)
    }
    let (offered, elapsed) = flood(datapath.program, frames: spoofed, repeatCount: 1, cpus: cpuSets.last!, seconds: seconds)
    let admitted = admittedByRule(maps)
    let lru = try datapath.object.map(named: "icw_source_buckets")
    let entries = try lru.keys().count
    let result = FloodResult(kind: "spoofed (backstop)", cpus: cpuSets.last!.count, rate: 20_000, burst: 1_000,
                             seconds: elapsed, offered: offered, admitted: admitted)
    results.append(result)
    let note = "\(min(Int(offered), sources)) distinct sources offered \(offered) frames in \(String(format: "%.1f", elapsed)) s; "
        + "the per-source LRU held \(entries) buckets (capacity \(lru.maxEntries), \(lru.maxEntries * 24 / 1024) KiB of bucket state); "
        + "the backstop admitted \(admitted) (rate x time + burst = \(Int(result.expected)))."
    return (results, note)
}
