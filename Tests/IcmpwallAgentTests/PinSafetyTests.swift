import BPFKit
import CIcmpwallShim
import Foundation
@testable import IcmpwallDataplane
import IcmpwallFrames
import IcmpwallPolicy
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A datapath of an older ABI, attached and pinned the way that version did it: from the frozen copy of its BPF source
/// and ABI header in Tests/Fixtures/abiN (git history of bpf/), compiled here with clang; XDP link and tc egress filter.
/// - ABI 2 (0.1.x, the first release with the egress limiter) kept the last apply's identity in one 144-byte `icw_meta`.
/// - ABI 3 (0.2.0) has today's `icw_meta` and `icw_policy_meta`, and no `icw_type_decisions` (class 0 only in the hash).
///
/// Its policy is written by today's `PolicyInstaller`: the older ABI's policy, rule, counter, identity and egress maps
/// have exactly today's layouts (the test checks every shared map's value size against today's struct). Writes to maps
/// the old ABI lacks or laid out differently go to a scratch object, and ABI 2's own `icw_meta` is written in its
/// layout, as ABI 2's installer left it.
struct OldDatapath: CustomTestStringConvertible, Sendable {
    let abi: UInt32
    var testDescription: String { "ABI \(abi)" }
    static let all = [OldDatapath(abi: 2), OldDatapath(abi: 3)]
    /// The release before this one.
    static let previous = OldDatapath(abi: UInt32(IcmpwallVersion.abi) - 1)

    var fixture: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appending(path: "Fixtures/abi\(abi)")
    }
    /// Maps of today's installer that this ABI does not have in today's layout.
    var scratchMaps: Set<String> { abi == 2 ? ["icw_meta", "icw_policy_meta", "icw_type_decisions"] : ["icw_type_decisions"] }
    var pinnedMaps: [String] {
        DatapathNames.pinnedMaps.filter { $0 != "icw_type_decisions" && (abi != 2 || $0 != "icw_policy_meta") }
    }

    /// The clang that builds the datapath (the EmbedBPF plugin uses the toolchain's): $CLANG, else on PATH, else the
    /// Swift toolchain's (the kernel-matrix guests run with a PATH that lacks it).
    static var clang: String {
        if let env = ProcessInfo.processInfo.environment["CLANG"], !env.isEmpty { return env }
        if Tool.exists("clang") { return "clang" }
        return "/opt/swift/usr/bin/clang"
    }

    func compile(into dir: TemporaryDirectory) throws -> [UInt8] {
        let output = "\(dir.path)/icmpwall-abi\(abi).bpf.o"
        var arch = utsname()
        uname(&arch)
        let machine = withUnsafeBytes(of: arch.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        try Tool.run([Self.clang, "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror", "-Wno-unused-function",
                      "-I", fixture.appending(path: "include").path, "-I", "/usr/include/\(machine)-linux-gnu",
                      "-c", fixture.appending(path: "icmpwall.bpf.c").path, "-o", output])
        return Array(try Data(contentsOf: URL(fileURLWithPath: output)))
    }

    /// ABI 2's `icw_meta` (144 bytes): abi_version, generation, attached_at_ns, applied_at_ns, policy_sha256[32],
    /// policy_name[64], attach_mode[16], rule_count, flags.
    static func abi2Meta(_ identity: icw_policy_meta, attachedAt: UInt64, mode: String, flags: UInt32) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 144)
        func put<T: FixedWidthInteger>(_ v: T, at o: Int) { withUnsafeBytes(of: v.littleEndian) { bytes.replaceSubrange(o..<o + $0.count, with: $0) } }
        put(UInt32(2), at: 0)
        put(identity.generation, at: 4)
        put(attachedAt, at: 8)
        put(identity.applied_at_ns, at: 16)
        withUnsafeBytes(of: identity.policy_sha256) { bytes.replaceSubrange(24..<56, with: $0) }
        withUnsafeBytes(of: identity.policy_name) { bytes.replaceSubrange(56..<120, with: $0) }
        let m = Array(mode.utf8.prefix(15))
        bytes.replaceSubrange(120..<120 + m.count, with: m)
        put(identity.rule_count, at: 136)
        put(flags, at: 140)
        return bytes
    }

    /// Loads the old ABI, installs `policy`, attaches it to the server interface with an XDP link (generic mode) and
    /// its tc egress filter, and pins link and maps under /sys/fs/bpf/icmpwall/IF/ with the loose modes of ABI 2's
    /// umask-dependent mkdir (folders 0755, pins 0644), so the upgrade's tightening shows.
    func attach(_ topology: LabTopology, policy yaml: String, dir: TemporaryDirectory) throws {
        let object = try BPFObject(bytes: try compile(into: dir), name: "icmpwall")
        try object.load()
        let scratch = try DatapathLoader.load(testMode: false)  // only a sink for writes the old ABI has no map for
        let maps = try DatapathMaps { (name: String) throws(BPFError) -> BPFMap in
            try (scratchMaps.contains(name) ? scratch : object).map(named: name)
        }
        for (map, size) in [(maps.config, MemoryLayout<icw_config>.size), (maps.control, MemoryLayout<icw_control>.size),
                            (maps.rules, MemoryLayout<icw_rule>.size),
                            (maps.counters, MemoryLayout<icw_type_counter>.size), (maps.ruleCounters, MemoryLayout<icw_rule_counter>.size),
                            (maps.ruleIDs, MemoryLayout<icw_rule_identity>.size), (maps.guardCounters, MemoryLayout<icw_guard_counter>.size),
                            (maps.egressConfig, MemoryLayout<icw_egress_config>.size)] {
            #expect(Int(map.valueSize) == size, "ABI \(abi)'s \(map.name) has today's value size")
        }
        #expect(try object.map(named: "icw_meta").valueSize == (abi == 2 ? 144 : 32), "ABI \(abi)'s icw_meta layout")
        #expect((try? object.map(named: "icw_type_decisions")) == nil, "ABI \(abi) has no per-type array")
        let compiled = try PolicyCompiler.compile(try PolicyLoader.parse(bytes: Array(yaml.utf8), fileName: "abi\(abi).yaml").0,
                                                  capacity: DatapathCapacity.compile)
        _ = try PolicyInstaller(maps: maps).install(compiled)
        let identity = try #require(try PolicyInstaller(maps: maps).runningPolicy())

        let pins = "/sys/fs/bpf/icmpwall/\(topology.serverInterface)"
        try BPFFS.makeDirectory("\(pins)/maps", mode: 0o755)
        chmod("/sys/fs/bpf/icmpwall", 0o755)
        for name in pinnedMaps {
            try object.map(named: name).pin(at: "\(pins)/maps/\(name)")
            chmod("\(pins)/maps/\(name)", 0o644)
        }
        let program = try object.program(named: "icmpwall_xdp")
        let egress = try object.program(named: "icmpwall_tc_egress")
        let interface = topology.serverInterface
        let (link, createdClsact) = try NetworkNamespace.run(in: topology.serverNamespace) { () throws -> (BPFLink, Bool) in
            let ifindex = try Interfaces.index(named: interface)
            let link = try XDP.attachLink(program: program, interfaceIndex: ifindex, mode: .generic)
            let created = try TC.createHook(interfaceIndex: ifindex)
            _ = try TC.attach(program: egress, interfaceIndex: ifindex, point: .egress, handle: UInt32(ICW_TC_HANDLE),
                              priority: UInt32(ICW_TC_PRIORITY), replace: true)
            return (link, created)
        }
        let attachedAt = PolicyInstaller.nanoseconds(Date())
        let flags = createdClsact ? ICW_META_CREATED_CLSACT : 0
        if abi == 2 {
            try object.map(named: "icw_meta").update(
                key: [0, 0, 0, 0], value: Self.abi2Meta(identity, attachedAt: attachedAt, mode: "generic", flags: flags))
        } else {
            var meta = icw_meta()
            meta.abi_version = abi
            meta.attached_at_ns = attachedAt
            meta.flags = flags
            PolicyInstaller.setBytes(&meta.attach_mode, Array("generic".utf8))
            try object.map(named: "icw_meta").update(UInt32(0), meta)
        }
        try link.pin(at: "\(pins)/link")
        chmod("\(pins)/link", 0o644)
    }
}

/// Mode bits of a path (nil when it does not exist).
func mode(_ path: String) -> mode_t? {
    var st = stat()
    return lstat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
}

/// Every pin of an interface is private: folders 0700, pins 0600.
func pinsArePrivate(_ interface: String) -> [String] {
    let dir = "/sys/fs/bpf/icmpwall/\(interface)"
    var wrong: [String] = []
    for d in ["/sys/fs/bpf/icmpwall", dir, "\(dir)/maps"] where mode(d) != 0o700 { wrong.append("\(d) \(String(mode(d) ?? 0, radix: 8))") }
    let pins = ["\(dir)/link"] + ((try? FileManager.default.contentsOfDirectory(atPath: "\(dir)/maps")) ?? []).map { "\(dir)/maps/\($0)" }
    for p in pins where mode(p) != 0o600 { wrong.append("\(p) \(String(mode(p) ?? 0, radix: 8))") }
    return wrong
}

/// Dropped echo requests (IPv4 type 8 code 0) read straight from the pinned counter map, whatever ABI wrote it
/// (the row layout is the same in ABI 2, 3 and 4).
func droppedEchoFromPins(_ interface: String) -> UInt64? {
    guard let map = try? BPFMap.openPinned("/sys/fs/bpf/icmpwall/\(interface)/maps/icw_counters"),
          let perCPU = try? map.lookupPerCPU(icw_counter_row(UInt32(ICW_FAMILY_IPV4.rawValue), 8, 0), as: icw_type_counter.self)
    else { return nil }
    return perCPU.reduce(0) { $0 &+ $1.dropped_packets }
}

@Suite("Pins: upgrades in place, removal underneath, permissions", .serialized,
       .enabled(if: Privilege.available || Privilege.inCI, "needs root to create namespaces and attach XDP; runs in CI as root"))
final class PinSafetyTests {
    /// Drops address-mask replies and every echo request: the flood tests count what gets through.
    static let dropEcho = AgentEndToEndTests.policy(name: "drop-echo", echo: "drop")

    func statusJSON(_ topology: LabTopology) throws -> [String: Any] {
        let r = try cli(topology, ["status", "--interface", topology.serverInterface, "--json"])
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        return (json?["attachments"] as? [[String: Any]])?.first ?? [:]
    }

    func statsRow(_ topology: LabTopology, type: Int, direction: String = "ingress") throws -> [String: Any]? {
        let r = try cli(topology, ["stats", "--interface", topology.serverInterface, "--json"])
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        return (json?["counters"] as? [[String: Any]])?.first {
            $0["family"] as? String == "ipv4" && $0["type"] as? Int == type && $0["direction"] as? String == direction
        }
    }

    func ruleDropped(_ topology: LabTopology, _ rule: String) throws -> UInt64? {
        let r = try cli(topology, ["stats", "--interface", topology.serverInterface, "--json"])
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let row = (json?["rules"] as? [[String: Any]])?.first { $0["name"] as? String == rule }
        return (row?["dropped"] as? NSNumber)?.uint64Value
    }

    @Test("attach over older pins upgrades in place under traffic: no echo gets through, counters carried over and never go backwards, pins made private",
          arguments: OldDatapath.all)
    func upgradeWithCLI(old: OldDatapath) throws {
        guard Privilege.require(), Binary.available() else { return }
        let topology = try LabTopology(prefix: LabTopology.uniquePrefix("icwu"))
        defer { cleanUp(topology, []) }
        let dir = try TemporaryDirectory()
        let interface = topology.serverInterface
        try old.attach(topology, policy: Self.dropEcho, dir: dir)
        let before = try statusJSON(topology)
        #expect(before["abi_version"] as? Int == Int(old.abi) && before["enforcing"] as? Bool == true, "\(before)")
        #expect(before["policy_name"] as? String == "drop-echo", "status reads the older pins' identity: \(before)")
        let oldLink = before["link_id"] as? Int
        let oldProgram = before["program_id"] as? Int
        let oldEgress = try #require(before["egress_program_id"] as? Int, "ABI \(old.abi) has its egress filter: \(before)")
        #expect(try cli(topology, ["apply", "--interface", interface, try dir.write("p.yaml", Self.dropEcho)]).stderr
                .contains("hold datapath ABI \(old.abi)"), "apply refuses to write into older pins")
        let stats = try cli(topology, ["stats", "--interface", interface])
        #expect(stats.status == 1 && stats.stderr.contains("hold datapath ABI \(old.abi)") && stats.stderr.contains("upgrades them in place"),
                "stats names the ABI and the way out: \(stats.stderr)")
        let text = try cli(topology, ["status", "--interface", interface]).stdout
        #expect(text.contains("pins of datapath ABI \(old.abi)"), "\(text)")
        #expect(!pinsArePrivate(interface).isEmpty, "the fixture's pins start loose")

        let (flood, out) = try Ping.start(topology, count: 300, interval: "0.01")
        var samples: [UInt64] = []
        for _ in 0..<10 {
            Thread.sleep(forTimeInterval: 0.05)
            if let v = droppedEchoFromPins(interface) { samples.append(v) }
        }
        let policy = try dir.write("new.yaml", AgentEndToEndTests.policy(name: "drop-echo-v2", echo: "drop"))
        let upgrade = Process()
        upgrade.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        upgrade.arguments = ["nsenter", "--net=/run/netns/\(topology.serverNamespace)", Binary.path, "attach", "--interface", interface, "--policy", policy]
        let upgradeOut = Pipe()
        upgrade.standardOutput = upgradeOut
        upgrade.standardError = upgradeOut
        try upgrade.run()
        let deadline = Date().addingTimeInterval(60)
        while upgrade.isRunning && Date() < deadline {
            if let v = droppedEchoFromPins(interface) { samples.append(v) }
            Thread.sleep(forTimeInterval: 0.01)
        }
        upgrade.waitUntilExit()
        let said = String(decoding: upgradeOut.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(upgrade.terminationStatus == 0 && said.contains("from datapath ABI \(old.abi) to \(IcmpwallVersion.abi) without a gap"), "\(said)")
        for _ in 0..<10 {
            Thread.sleep(forTimeInterval: 0.1)
            if let v = droppedEchoFromPins(interface) { samples.append(v) }
        }
        let output = Ping.finish(flood, out)
        samples.append(droppedEchoFromPins(interface) ?? 0)
        let sent = try #require(Ping.transmitted(output))

        #expect(Ping.received(output) == 0, "no echo request got through, before, during or after the switch: \(output)")
        #expect(zip(samples, samples.dropFirst()).allSatisfy { $0 <= $1 }, "the counter never went backwards: \(samples)")
        #expect(samples.last == UInt64(sent), "every echo request counted exactly once across the upgrade: \(samples.last ?? 0) of \(sent)")
        #expect(try ruleDropped(topology, "echo") == UInt64(sent), "the rule's counter carried over by name")

        let after = try statusJSON(topology)
        #expect(after["abi_version"] as? Int == IcmpwallVersion.abi && after["enforcing"] as? Bool == true, "\(after)")
        #expect(after["policy_name"] as? String == "drop-echo-v2")
        #expect(after["link_id"] as? Int == oldLink && after["program_id"] as? Int != oldProgram, "the same link, a new program: \(after)")
        #expect((after["egress_program_id"] as? Int).map { $0 != oldEgress } == true, "the egress filter was replaced in place: \(after)")
        #expect((after["generation"] as? Int ?? 0) >= 2, "generations continue from the older pins': \(after)")
        #expect(pinsArePrivate(interface).isEmpty, "folders 0700, pins 0600 after the upgrade: \(pinsArePrivate(interface))")
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/bpf/icmpwall/\(interface)/maps_next"), "no staging folder left")
        let apply = try cli(topology, ["apply", "--interface", interface, try dir.write("again.yaml", Self.dropEcho)])
        #expect(apply.status == 0, "the upgraded pins take applies: \(apply.stderr)")
        #expect(try cli(topology, ["detach", "--interface", interface]).status == 0)
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/bpf/icmpwall/\(interface)"))
    }

    @Test("an upgrade killed after staging or after the switch leaves one datapath enforcing; apply refuses the half-done pins; attach finishes it")
    func upgradeKilled() throws {
        guard Privilege.require(), Binary.available() else { return }
        let topology = try LabTopology(prefix: LabTopology.uniquePrefix("icwk"))
        defer { cleanUp(topology, []) }
        let dir = try TemporaryDirectory()
        let interface = topology.serverInterface
        let old = OldDatapath.previous
        try old.attach(topology, policy: Self.dropEcho, dir: dir)
        let policy = try dir.write("p.yaml", Self.dropEcho)
        let oldProgram = try statusJSON(topology)["program_id"] as? Int
        let (flood, out) = try Ping.start(topology, count: 300, interval: "0.01")
        func attach(crash: String?) throws -> Tool.Result {
            try topology.run(in: topology.serverNamespace, (crash.map { ["env", "ICMPWALL_UPGRADE_CRASH=\($0)"] } ?? [])
                             + [Binary.path, "attach", "--interface", interface, "--policy", policy], timeout: 120, check: false)
        }

        #expect(try attach(crash: "staged").status != 0, "killed after staging")
        var status = try statusJSON(topology)
        #expect(status["abi_version"] as? Int == Int(old.abi) && status["program_id"] as? Int == oldProgram && status["enforcing"] as? Bool == true,
                "the old datapath still enforces: \(status)")
        #expect(FileManager.default.fileExists(atPath: "/sys/fs/bpf/icmpwall/\(interface)/maps_next"), "a stale staging folder")

        #expect(try attach(crash: "switched").status != 0, "killed after the switch")
        status = try statusJSON(topology)
        #expect(status["abi_version"] as? Int == Int(old.abi) && status["program_id"] as? Int != oldProgram && status["enforcing"] as? Bool == true,
                "the new program enforces behind pins that still say the old ABI: \(status)")
        let apply = try cli(topology, ["apply", "--interface", interface, policy])
        #expect(apply.status == 1 && apply.stderr.contains("hold datapath ABI \(old.abi)"), "apply does not write into them: \(apply.stderr)")

        let finish = try attach(crash: nil)
        #expect(finish.status == 0 && finish.stdout.contains("from datapath ABI \(old.abi) to \(IcmpwallVersion.abi)"), "\(finish.stdout) \(finish.stderr)")
        let output = Ping.finish(flood, out)
        let sent = try #require(Ping.transmitted(output))
        #expect(Ping.received(output) == 0, "no echo got through across two kills and the upgrade: \(output)")
        #expect(droppedEchoFromPins(interface) == UInt64(sent), "every echo counted once in the shared counters")
        status = try statusJSON(topology)
        #expect(status["abi_version"] as? Int == IcmpwallVersion.abi && status["enforcing"] as? Bool == true, "\(status)")
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/bpf/icmpwall/\(interface)/maps_next"))
        #expect(pinsArePrivate(interface).isEmpty, "\(pinsArePrivate(interface))")
    }

    @Test("the agent upgrades older pins it finds at start, under traffic, and serves their carried counters",
          arguments: OldDatapath.all)
    func upgradeByAgent(old: OldDatapath) throws {
        guard Privilege.require(), Binary.available() else { return }
        let topology = try LabTopology(prefix: LabTopology.uniquePrefix("icwa"))
        var agent: AgentProcess?
        defer { cleanUp(topology, [agent]) }
        let dir = try TemporaryDirectory()
        let interface = topology.serverInterface
        try old.attach(topology, policy: Self.dropEcho, dir: dir)
        let policy = try dir.write("p.yaml", Self.dropEcho)
        let (flood, out) = try Ping.start(topology, count: 200, interval: "0.01")
        Thread.sleep(forTimeInterval: 0.3)
        agent = try AgentProcess(namespace: topology.serverNamespace,
                                 arguments: ["--interface", interface, "--policy", policy, "--metrics-address", "127.0.0.1:9510"],
                                 logPath: "\(dir.path)/agent.log")
        #expect(agent!.waitForLog("msg=\"agent running\""), "\(agent!.log)")
        #expect(agent!.log.contains("upgraded the pinned datapath in place") && agent!.log.contains("from_abi=\(old.abi)"), "\(agent!.log)")
        let output = Ping.finish(flood, out)
        let sent = try #require(Ping.transmitted(output))
        #expect(Ping.received(output) == 0, "enforcement never stopped: \(output)")
        Thread.sleep(forTimeInterval: 0.3)
        let text = try httpGet(namespace: topology.serverNamespace, port: 9510, path: "/metrics").body
        #expect(metric(text, "icmpwall_rule_dropped_total", ["interface": interface, "rule": "echo"]) == Double(sent),
                "counters from before the upgrade carried over: \(text)")
        #expect(metric(text, "icmpwall_interface_enforcing", ["interface": interface]) == 1)
        #expect(try statusJSON(topology)["abi_version"] as? Int == IcmpwallVersion.abi)
        #expect(pinsArePrivate(interface).isEmpty, "\(pinsArePrivate(interface))")
    }

    @Test("rm -r of the pins under a running agent: enforcement never stops, the agent pins its held link and maps again, stats continue")
    func pinsRemovedUnderAgent() throws {
        guard Privilege.require(), Binary.available() else { return }
        let topology = try LabTopology(prefix: LabTopology.uniquePrefix("icwr"))
        var agent: AgentProcess?
        defer { cleanUp(topology, [agent]) }
        let dir = try TemporaryDirectory()
        let interface = topology.serverInterface
        let policy = try dir.write("p.yaml", Self.dropEcho)
        agent = try AgentProcess(namespace: topology.serverNamespace,
                                 arguments: ["--interface", interface, "--policy", policy, "--metrics-address", "127.0.0.1:9511"],
                                 logPath: "\(dir.path)/agent.log")
        #expect(agent!.waitForLog("msg=\"agent running\""), "\(agent!.log)")
        #expect(pinsArePrivate(interface).isEmpty, "pins are private from creation: \(pinsArePrivate(interface))")
        let linkBefore = try statusJSON(topology)["link_id"] as? Int

        let (flood, out) = try Ping.start(topology, count: 300, interval: "0.01")
        Thread.sleep(forTimeInterval: 0.5)
        // rm may race with the agent's restore (a folder refilled while rm empties it): its status does not matter.
        _ = try Tool.run(["rm", "-rf", "/sys/fs/bpf/icmpwall/\(interface)"], check: false)
        #expect(agent!.waitForLog("pins were removed underneath the agent"), "\(agent!.log)")
        #expect(eventually { FileManager.default.fileExists(atPath: "/sys/fs/bpf/icmpwall/\(interface)/link") }, "the pins came back")
        let output = Ping.finish(flood, out)
        let sent = try #require(Ping.transmitted(output))
        #expect(Ping.received(output) == 0, "enforcement never stopped: \(output)")
        Thread.sleep(forTimeInterval: 0.3)

        let row = try #require(try statsRow(topology, type: 8), "stats works on the restored pins")
        #expect((row["dropped"] as? NSNumber)?.intValue == sent, "the held maps kept counting: \(row) of \(sent)")
        let status = try statusJSON(topology)
        #expect(status["enforcing"] as? Bool == true && status["link_id"] as? Int == linkBefore, "the same link: \(status)")
        #expect(pinsArePrivate(interface).isEmpty, "restored pins are private: \(pinsArePrivate(interface))")
        let text = try httpGet(namespace: topology.serverNamespace, port: 9511, path: "/metrics").body
        #expect((metric(text, "icmpwall_pins_restored_total", ["interface": interface]) ?? 0) >= 1, "\(text)")
        #expect(!agent!.log.contains("attached afresh"), "no fresh attach (counters would restart): \(agent!.log)")
    }

    @Test("an agent adopting pins that others could read makes them private (and says so); enforcement continues")
    func adoptLoosePins() throws {
        guard Privilege.require(), Binary.available() else { return }
        let topology = try LabTopology(prefix: LabTopology.uniquePrefix("icwp"))
        var agent: AgentProcess?
        defer { cleanUp(topology, [agent]) }
        let dir = try TemporaryDirectory()
        let interface = topology.serverInterface
        let policy = try dir.write("p.yaml", Self.dropEcho)
        #expect(try cli(topology, ["attach", "--interface", interface, "--policy", policy]).status == 0)
        #expect(pinsArePrivate(interface).isEmpty, "attach creates them private: \(pinsArePrivate(interface))")
        let pins = "/sys/fs/bpf/icmpwall/\(interface)"
        chmod(pins, 0o755)
        chmod("\(pins)/maps", 0o755)
        chmod("\(pins)/maps/icw_counters", 0o644)
        chmod("\(pins)/link", 0o666)
        agent = try AgentProcess(namespace: topology.serverNamespace,
                                 arguments: ["--interface", interface, "--policy", policy, "--metrics-address", "127.0.0.1:9512"],
                                 logPath: "\(dir.path)/agent.log")
        #expect(agent!.waitForLog("msg=\"agent running\""), "\(agent!.log)")
        #expect(agent!.log.contains("pins were readable by others: made private") && agent!.log.contains("\(pins)/maps/icw_counters"), "\(agent!.log)")
        #expect(agent!.log.contains("adopted the pinned state"), "\(agent!.log)")
        #expect(pinsArePrivate(interface).isEmpty, "\(pinsArePrivate(interface))")
        let ping = try topology.run(in: topology.clientNamespace, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", topology.serverIPv4], check: false)
        #expect(Ping.received(ping.stdout) == 0, "still enforcing: \(ping.stdout)")
    }

    @Test("without an agent, removing the link pin detaches; status says so; attach restores with the pinned counters")
    func linkPinRemovedWithoutAgent() throws {
        guard Privilege.require(), Binary.available() else { return }
        let topology = try LabTopology(prefix: LabTopology.uniquePrefix("icwl"))
        defer { cleanUp(topology, []) }
        let dir = try TemporaryDirectory()
        let interface = topology.serverInterface
        let policy = try dir.write("p.yaml", Self.dropEcho)
        #expect(try cli(topology, ["attach", "--interface", interface, "--policy", policy, "--mode", "generic"]).status == 0)
        var ping = try topology.run(in: topology.clientNamespace, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", topology.serverIPv4], check: false)
        #expect(Ping.received(ping.stdout) == 0)

        try BPFFS.unpin("/sys/fs/bpf/icmpwall/\(interface)/link")
        let status = try statusJSON(topology)
        #expect(status["enforcing"] as? Bool == false && status["link_pinned"] as? Bool == false, "\(status)")
        let text = try cli(topology, ["status", "--interface", interface]).stdout
        #expect(text.contains("link pin removed") && text.contains("icmpwall attach --interface \(interface)"), "\(text)")
        ping = try topology.run(in: topology.clientNamespace, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", topology.serverIPv4], check: false)
        #expect(Ping.received(ping.stdout) == 3, "the program was detached with its link pin: \(ping.stdout)")

        let restore = try cli(topology, ["attach", "--interface", interface, "--policy", policy, "--mode", "generic"])
        #expect(restore.status == 0 && restore.stdout.contains("re-attached to \(interface)"), "\(restore.stdout) \(restore.stderr)")
        ping = try topology.run(in: topology.clientNamespace, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", topology.serverIPv4], check: false)
        #expect(Ping.received(ping.stdout) == 0, "enforcing again: \(ping.stdout)")
        let row = try #require(try statsRow(topology, type: 8))
        #expect((row["dropped"] as? NSNumber)?.intValue == 6, "counters continued from the pinned maps: \(row)")
        #expect(try statusJSON(topology)["link_pinned"] as? Bool == true)
        #expect(pinsArePrivate(interface).isEmpty, "\(pinsArePrivate(interface))")
    }
}
