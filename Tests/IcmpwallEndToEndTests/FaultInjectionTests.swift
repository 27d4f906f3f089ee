import BPFKit
import Foundation
import IcmpwallDataplane
import IcmpwallFrames
import Testing

/// Faults injected end to end, in namespaces of the tests' own: maps filled by a spoofed-source flood, the interface
/// deleted while applies run. (kill -9 during apply: EndToEndTests.killDuringApply.)
@Suite("Fault injection in namespaces", .serialized,
       .enabled(if: Privilege.available || Privilege.inCI, "needs root to create namespaces and attach XDP; runs in CI as root"))
final class FaultInjectionTests {
    /// The kernel's accounting of a map's memory (`memlock:` of /proc/self/fdinfo).
    static func memlock(_ map: BPFMap) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/self/fdinfo/\(map.fd)", encoding: .utf8) else { return nil }
        return text.split(separator: "\n").first { $0.hasPrefix("memlock:") }
            .flatMap { UInt64($0.dropFirst("memlock:".count).trimmingCharacters(in: .whitespaces)) }
    }

    /// Frames the veth driver dropped on the client's side (`ip -s link`: TX dropped), for the failure messages.
    static func transmitDrops(_ topology: LabTopology) -> String {
        (try? topology.ip(topology.clientNamespace, ["-s", "-o", "link", "show", topology.clientInterface]).stdout) ?? "?"
    }

    @Test("spoofed-source flood: the per-source LRU churns at its capacity, memory stays as configured, every source gets exactly its own limit, a legitimate source keeps its own limit, other traffic passes, counters agree")
    func spoofedFlood() throws {
        guard Privilege.require(), Binary.available() else { return }
        let topology = try LabTopology(prefix: LabTopology.uniquePrefix("icwf"))
        defer { topology.destroy() }
        let dir = try TemporaryDirectory()
        // Rates of one per hour: within any run of this test the buckets refill by less than one token, so the
        // admitted counts below are exact whatever the machine's speed. The backstop is larger than the flood: a
        // frame that meets an empty backstop is dropped before it touches the per-source map (docs/policy.md), so
        // only a backstop with tokens lets every spoofed source claim a bucket and churn the LRU.
        let policy = try dir.write("flood.yaml", """
            version: 1
            name: flood
            default: pass
            rules:
              - name: trusted-echo
                from: [192.0.2.0/24]
                type: echo-request
                action: limit
                limit: { rate: 1/h, burst: 110 }
              - name: echo
                type: echo-request
                action: limit
                limit: { rate: 1/h, burst: 1, per: source, backstop: { rate: 1/h, burst: 1000000 } }
            """)
        defer { _ = try? topology.icmpwall(["detach", "--interface", topology.serverInterface]) }
        let attach = try topology.icmpwall(["attach", "--interface", topology.serverInterface, "--policy", policy])
        try #require(attach.status == 0, "\(attach.stderr)")

        let lru = try BPFMap.openPinned("/sys/fs/bpf/icmpwall/\(topology.serverInterface)/maps/icw_source_buckets")
        #expect(lru.type == .lruHash && Int(lru.maxEntries) == DatapathCapacity.sourceBuckets)
        let memoryBefore = try #require(Self.memlock(lru))
        #expect(try lru.keys().isEmpty)

        // The server's namespace has no route to 198.18.0.0/15: nothing it might answer leaves it.
        let routes = try Tool.run(["ip", "-n", topology.serverNamespace, "route", "get", "198.18.0.1"], check: false)
        #expect(routes.status != 0 && routes.stderr.contains("unreachable"), "no route back: \(routes.stdout)")

        let sender = try topology.packetSocket(namespace: topology.clientNamespace, interface: topology.clientInterface, receive: false)
        let client = MACAddress(parsing: topology.clientMAC)!, server = MACAddress(parsing: topology.serverMAC)!
        let template = FrameBuilder.icmpv4(.echoRequest(identifier: 99), from: "198.18.0.0", to: "192.0.2.2")
            .addressed(from: client, to: server).padded().bytes
        func spoofed(_ i: Int) -> [UInt8] {
            var frame = template
            let source = IPv4Address(0xC612_0000 + UInt32(i)).bytes  // 198.18.0.0 + i, inside 198.18.0.0/15
            frame.replaceSubrange(26..<30, with: source)
            frame[24] = 0
            frame[25] = 0
            let sum = InternetChecksum.compute(frame[14..<34])
            frame[24] = UInt8(sum >> 8)
            frame[25] = UInt8(sum & 0xff)
            return frame
        }
        let trusted = FrameBuilder.icmpv4(.echoRequest(identifier: 7), from: "192.0.2.1", to: "192.0.2.2")
            .addressed(from: client, to: server).padded().bytes
        let udp = FrameBuilder.ipv4(IPv4Header(source: "192.0.2.1", destination: "192.0.2.2"),
                                    .udp(UDPDatagram(sourcePort: 4000, destinationPort: 9, payload: [1, 2, 3, 4])))
            .addressed(from: client, to: server).padded().bytes

        // 100,000 distinct spoofed sources (the LRU holds 65,536), one echo each; a legitimate echo after every
        // 1,000. A short pause every 256 frames keeps the veth's ring from overflowing.
        let sources = 100_000, every = 1_000
        var trustedSent = 0
        for i in 0..<sources {
            try sender.send(spoofed(i))
            if i % every == every - 1 {
                try sender.send(trusted)
                trustedSent += 1
            }
            if i % 256 == 255 { usleep(500) }
        }
        usleep(300_000)

        // The LRU: full, never beyond its capacity; its memory is what was allocated at attach.
        let keys = try lru.keys()
        let entries = keys.count
        // It churned: the newest sources hold buckets, the oldest were evicted to make room (icw_source_key: rule id,
        // family, pad, address).
        let held = Set(keys.filter { $0.count >= 12 && $0[4] == 0 && $0[8] == 198 && ($0[9] & 0xfe) == 18 }
            .map { (Int($0[9] & 1) << 16) | (Int($0[10]) << 8) | Int($0[11]) })
        let newest = held.filter { $0 >= sources - 10_000 }.count, oldest = held.filter { $0 < 10_000 }.count
        #expect(newest >= 9_000 && oldest <= 1_000, "LRU keeps the newest sources (\(newest) of the last 10,000), evicts the oldest (\(oldest) of the first 10,000 left)")
        #expect(entries <= DatapathCapacity.sourceBuckets, "LRU holds \(entries) > \(DatapathCapacity.sourceBuckets)")
        #expect(entries >= DatapathCapacity.sourceBuckets * 9 / 10, "the flood filled the LRU: \(entries) entries")
        #expect(Self.memlock(lru) == memoryBefore, "map memory unchanged by the flood: \(memoryBefore) bytes")

        // After the churn: the legitimate source still meets its own rule and bucket (110 tokens: 100 used during
        // the flood, so exactly 10 of the next 20 pass), and non-ICMP traffic passes untouched.
        let receiver = try topology.packetSocket(namespace: topology.serverNamespace, interface: topology.serverInterface, receive: true)
        let udpSent = 100
        for i in 0..<udpSent {
            try sender.send(udp)
            if i < 20 { try sender.send(trusted) }
        }
        trustedSent += 20
        let arrived = try receiver.drain(quiet: 0.5, maxSeconds: 30).map(FrameSummary.init(parsing:))

        let s = try topology.stats()
        let echoRule = try #require(s.rule("echo")), trustedRule = try #require(s.rule("trusted-echo"))
        let echoRow = try #require(s.row("ipv4", 8))
        print("flood: \(sources) spoofed sources sent, \(echoRule.matched) judged, LRU \(entries) of \(lru.maxEntries) entries (newest 10,000: \(newest), oldest 10,000: \(oldest)), \(memoryBefore) bytes memlock; trusted \(trustedRule.matched) judged")
        // Most of the flood reached XDP, with more distinct sources than the LRU holds.
        #expect(echoRule.matched > UInt64(DatapathCapacity.sourceBuckets) + 20_000,
                "flood frames judged: \(echoRule.matched) of \(sources); veth: \(Self.transmitDrops(topology))")
        // Every spoofed source sent once and got exactly its own bucket's one token: an evicted source's bucket is
        // never handed to another, so none was dropped.
        #expect(echoRule.dropped == 0, "flood echoes dropped: \(echoRule.dropped) of \(echoRule.matched)")
        // The legitimate source: its own rule and bucket, exactly its burst of 110 (refill under one token).
        #expect(trustedRule.matched == UInt64(trustedSent), "trusted judged \(trustedRule.matched) of \(trustedSent)")
        #expect(trustedRule.matched - trustedRule.dropped == 110, "trusted source admitted \(trustedRule.matched - trustedRule.dropped)")
        // Counters agree with each other: every echo request is in its type row and in exactly one rule.
        #expect(echoRow.passed + echoRow.dropped == echoRule.matched + trustedRule.matched)
        #expect(echoRow.passed == echoRule.matched + 110 && echoRow.dropped == trustedRule.dropped)
        #expect(s.guards.allSatisfy { $0.dropped == 0 }, "no guard fired: \(s.guards)")
        // What the receiver saw behind XDP after the flood: exactly 10 of the 20 trusted echoes, every datagram.
        let echoes = arrived.filter { $0.icmpType == 8 && $0.source == "192.0.2.1" }
        #expect(echoes.count == 10, "trusted echo requests behind XDP after the flood: \(echoes.count)")
        let datagrams = arrived.filter { $0.ipProtocol == 17 && $0.destinationPort == 9 }.count
        #expect(datagrams == udpSent, "every UDP datagram passed: \(datagrams) of \(udpSent); veth: \(Self.transmitDrops(topology))")
    }

    /// Decoded `status --json` (the fields these tests read).
    struct StatusJSON: Decodable {
        struct Attachment: Decodable {
            var interface: String
            var enforcing: Bool
            var policy_name: String
            var policy_sha256: String
            var generation: UInt32
            var egress_program_id: UInt32?
        }
        var attachments: [Attachment]
    }

    static func status(_ topology: LabTopology) throws -> StatusJSON.Attachment {
        let r = try topology.icmpwall(["status", "--interface", topology.serverInterface, "--json"])
        guard r.status == 0 else { throw DataplaneError.system("status failed (exit \(r.status)): \(r.stderr)") }
        let decoded = try JSONDecoder().decode(StatusJSON.self, from: Data(r.stdout.utf8))
        guard let first = decoded.attachments.first else { throw DataplaneError.system("status lists nothing: \(r.stdout)") }
        return first
    }

    @Test("interface deleted while applies run, 6 times: every apply succeeds or fails clearly, status tells the truth, attach resumes with the same policy and counters")
    func interfaceRemovedMidApply() throws {
        guard Privilege.require(), Binary.available() else { return }
        let topology = try LabTopology(prefix: LabTopology.uniquePrefix("icwd"))
        defer { topology.destroy() }
        let dir = try TemporaryDirectory()
        // Two policies that disagree on two messages; filler rules make each apply write a few thousand entries.
        func policy(_ name: String, echo: String, mask: String) -> String {
            var text = "version: 1\nname: \(name)\nrules:\n"
            text += "  - { name: echo, type: echo-request, action: \(echo) }\n"
            text += "  - { name: mask, type: address-mask-reply, action: \(mask) }\n"
            for i in 0..<400 {
                text += "  - { name: f\(i), from: [198.18.\(i / 250).\(i % 250 + 1)/32], type: timestamp-request, action: drop }\n"
            }
            return text
        }
        let paths = ["policy-a": try dir.write("a.yaml", policy("policy-a", echo: "drop", mask: "pass")),
                     "policy-b": try dir.write("b.yaml", policy("policy-b", echo: "pass", mask: "drop"))]
        let pins = "/sys/fs/bpf/icmpwall/\(topology.serverInterface)"
        defer {
            _ = try? topology.icmpwall(["detach", "--interface", topology.serverInterface])
            try? BPFFS.removeTree(pins)
        }
        try #require(try topology.icmpwall(["attach", "--interface", topology.serverInterface, "--policy", paths["policy-a"]!]).status == 0)

        /// What the datapath does now: (echo passed, mask passed), from frames a receiver behind XDP sees.
        func behaviour() throws -> (echo: Bool, mask: Bool) {
            let receiver = try topology.packetSocket(namespace: topology.serverNamespace, interface: topology.serverInterface, receive: true)
            let sender = try topology.packetSocket(namespace: topology.clientNamespace, interface: topology.clientInterface, receive: false)
            let client = MACAddress(parsing: topology.clientMAC)!, server = MACAddress(parsing: topology.serverMAC)!
            _ = try receiver.drain(quiet: 0.05, maxSeconds: 1)
            try sender.send(FrameBuilder.icmpv4(.echoRequest(identifier: 55), from: "192.0.2.1", to: "192.0.2.2")
                .addressed(from: client, to: server).padded().bytes)
            try sender.send(FrameBuilder.icmpv4(.addressMaskReply(), from: "192.0.2.1", to: "192.0.2.2")
                .addressed(from: client, to: server).padded().bytes)
            let seen = try receiver.drain(quiet: 0.2, maxSeconds: 2).map(FrameSummary.init(parsing:))
            return (seen.contains { $0.icmpType == 8 }, seen.contains { $0.icmpType == 18 })
        }
        func ruleCounts() throws -> (echo: UInt64, mask: UInt64) {
            let s = try topology.stats()
            return (s.rule("echo")?.matched ?? 0, s.rule("mask")?.matched ?? 0)
        }
        #expect(try behaviour() == (false, true), "policy A runs")

        var outcomes: [String: Int] = [:]
        for round in 0..<6 {
            // Four applies in a row on another thread; the interface is deleted part-way through them.
            let order = round % 2 == 0 ? ["policy-b", "policy-a", "policy-b", "policy-a"] : ["policy-a", "policy-b", "policy-a", "policy-b"]
            let results = ResultBox()
            let applier = Thread {
                for name in order {
                    let r = try? topology.icmpwall(["apply", "--interface", topology.serverInterface, paths[name]!])
                    results.append((name, r))
                }
                results.finish()
            }
            applier.start()
            usleep(UInt32.random(in: 0...400_000))
            try topology.deleteLink()
            let finished = results.wait(seconds: 120)
            try #require(finished, "round \(round): the applies finished")

            var lastApplied: String?
            for (name, r) in results.items {
                guard let r else { Issue.record("round \(round): apply \(name) could not be run"); continue }
                #expect(r.status < 128, "round \(round): apply \(name) crashed (exit \(r.status)): \(r.stderr)")
                if r.status == 0 {
                    lastApplied = name
                    outcomes["succeeded", default: 0] += 1
                } else {
                    #expect([1, 3].contains(r.status) && r.stderr.contains(topology.serverInterface),
                            "round \(round): a failed apply says why, naming the interface: exit \(r.status) \(r.stderr)")
                    outcomes["failed", default: 0] += 1
                }
            }
            // The interface is gone: status says the pins are not enforcing, and which policy they hold.
            let gone = try Self.status(topology)
            #expect(!gone.enforcing && gone.egress_program_id == nil, "round \(round): \(gone)")
            if let lastApplied { #expect(gone.policy_name == lastApplied, "round \(round): status names the last apply that succeeded") }
            let held = gone.policy_name
            let countsBefore = try ruleCounts()

            // The interface comes back (new index, new MAC); attach resumes from the pins.
            try topology.createLink()
            let resumed = try topology.icmpwall(["attach", "--interface", topology.serverInterface])
            #expect(resumed.status == 0 && resumed.stdout.contains("re-attached"), "round \(round): \(resumed.stdout) \(resumed.stderr)")
            let back = try Self.status(topology)
            #expect(back.enforcing && back.egress_program_id != nil, "round \(round): \(back)")
            #expect(back.policy_name == held && back.policy_sha256 == gone.policy_sha256 && back.generation == gone.generation,
                    "round \(round): the same policy continues: \(gone) then \(back)")
            let b = try behaviour()
            #expect(b == (held == "policy-b" ? (true, false) : (false, true)), "round \(round): \(held) is what runs: \(b)")
            let countsAfter = try ruleCounts()
            #expect(countsAfter.echo == countsBefore.echo + 1 && countsAfter.mask == countsBefore.mask + 1,
                    "round \(round): counters continue from the pins: \(countsBefore) then \(countsAfter)")
        }
        #expect(outcomes["succeeded", default: 0] > 0, "\(outcomes)")
        // A --policy that differs from the pinned one is applied after resuming.
        try topology.deleteLink()
        try topology.createLink()
        let other = try Self.status(topology).policy_name == "policy-a" ? "policy-b" : "policy-a"
        let r = try topology.icmpwall(["attach", "--interface", topology.serverInterface, "--policy", paths[other]!])
        #expect(r.status == 0 && r.stdout.contains("re-attached") && r.stdout.contains("applied \(other)"), "\(r.stdout) \(r.stderr)")
        #expect(try Self.status(topology).policy_name == other)
        #expect(try behaviour() == (other == "policy-b" ? (true, false) : (false, true)))
    }
}

/// Results handed from the applying thread to the test.
final class ResultBox: @unchecked Sendable {
    private let condition = NSCondition()
    private var results: [(String, Tool.Result?)] = []
    private var done = false

    func append(_ item: (String, Tool.Result?)) { condition.lock(); results.append(item); condition.unlock() }
    func finish() { condition.lock(); done = true; condition.broadcast(); condition.unlock() }
    var items: [(String, Tool.Result?)] { condition.lock(); defer { condition.unlock() }; return results }

    func wait(seconds: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while !done && condition.wait(until: deadline) {}
        return done
    }
}
