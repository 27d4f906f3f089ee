import Foundation
import IcmpwallDataplane
import Testing

/// `make bench` must not rot: a tiny run of every part (datapath cost, limits, veth floods against the minimal XDP
/// program and nftables, the control plane and the agent) must finish, clean up and report sane numbers.
/// Nothing here is about speed: only that each figure exists and is non-zero.
@Suite("Benchmark smoke run", .serialized)
struct BenchSmokeTests {
    struct Summary: Decodable {
        struct Flood: Decodable {
            var title: String
            var judgedMpps: [String: Double]
            var droppedMpps: [String: Double]
            var admittedPerSecond: [String: Double]
            var icmpwallVsCeiling: Double
            var icmpwallVsNftables: Double
        }
        var mixBaselineNs: Double
        var mixEdgeDefaultNs: Double
        var floods: [Flood]
        var applyMilliseconds: [String: Double]
        var installMilliseconds: [String: Double]
        var statsMilliseconds: Double
        var agentColdStartMilliseconds: Double
        var agentRSSMiB: Double
        var leftovers: [String]
    }

    @Test("icmpwall-bench --smoke runs every part, leaves nothing behind and reports non-zero figures")
    func smoke() throws {
        guard Privilege.require(), Binary.available() else { return }
        let bench = URL(fileURLWithPath: Binary.path).deletingLastPathComponent().appending(path: "icmpwall-bench").path
        try #require(FileManager.default.isExecutableFile(atPath: bench), "icmpwall-bench not built beside \(Binary.path)")
        let dir = try TemporaryDirectory()
        let json = dir.url.appending(path: "summary.json").path
        let pinsBefore = Set((try? FileManager.default.contentsOfDirectory(atPath: Dataplane().pinRoot)) ?? [])
        let namespacesBefore = try Tool.run(["ip", "netns", "list"]).stdout

        let run = try Tool.run([bench, "--smoke", "--icmpwall", Binary.path, "--json", json], timeout: 300, check: false)
        #expect(run.status == 0, "icmpwall-bench --smoke failed (exit \(run.status)):\n\(run.stdout)\n\(run.stderr)")
        let summary = try JSONDecoder().decode(Summary.self, from: Data(contentsOf: URL(fileURLWithPath: json)))

        #expect(summary.mixBaselineNs > 0 && summary.mixEdgeDefaultNs > 0)
        #expect(summary.floods.count == 2)
        for flood in summary.floods {
            for receiver in ["minimal XDP drop", "icmpwall edge-default", "nftables netdev ingress"] {
                #expect((flood.judgedMpps[receiver] ?? 0) > 0, "\(flood.title): \(receiver) judged nothing")
                #expect((flood.droppedMpps[receiver] ?? 0) > 0, "\(flood.title): \(receiver) dropped nothing")
            }
            #expect(flood.icmpwallVsCeiling > 0 && flood.icmpwallVsNftables > 0)
        }
        // The spoofed echo flood: icmpwall and nftables both admit some echoes (the burst) and drop the rest.
        let echo = try #require(summary.floods.last)
        #expect((echo.admittedPerSecond["icmpwall edge-default"] ?? 0) > 0)
        #expect((echo.admittedPerSecond["nftables netdev ingress"] ?? 0) > 0)
        #expect(summary.applyMilliseconds.count == 2 && summary.applyMilliseconds.values.allSatisfy { $0 > 0 })
        #expect(summary.installMilliseconds.values.allSatisfy { $0 > 0 })
        #expect(summary.statsMilliseconds > 0)
        #expect(summary.agentColdStartMilliseconds > 0)
        #expect(summary.agentRSSMiB > 1, "agent RSS \(summary.agentRSSMiB) MiB is not a running process's")

        #expect(summary.leftovers.isEmpty, "left behind: \(summary.leftovers)")
        // Only the bench's own names: other tests may be attaching and detaching meanwhile.
        let pinsAfter = Set((try? FileManager.default.contentsOfDirectory(atPath: Dataplane().pinRoot)) ?? [])
        let newPins = pinsAfter.subtracting(pinsBefore).filter { $0.hasPrefix("icwbn") }
        #expect(newPins.isEmpty, "pins left behind: \(newPins)")
        let newNamespaces = try Tool.run(["ip", "netns", "list"]).stdout.split(separator: "\n")
            .filter { $0.hasPrefix("icwbn") && !namespacesBefore.contains(String($0)) }
        #expect(newNamespaces.isEmpty, "namespaces left behind: \(newNamespaces)")
    }
}
