import BPFKit
import CIcmpwallShim
import Foundation
import IcmpwallPolicy

/// How to attach the XDP program.
public enum AttachModeRequest: String, Sendable, CaseIterable {
    /// Native (driver) mode when the driver supports it, generic otherwise.
    case auto
    case native
    case generic
}

/// What `attach` did.
public struct AttachResult: Sendable {
    public var interface: String
    public var mode: XDPAttachMode
    public var programID: UInt32
    public var pinDirectory: String
    public var install: InstallResult
    /// Set when attach found pins of an older datapath ABI and upgraded them in place (no gap).
    public var upgrade: UpgradeReport?
    /// Set when attach found pins whose link had gone (its pin removed, or the interface came back) and attached
    /// their program again: policy, counters and buckets continue.
    public var restoredLink = false
}

/// One interface icmpwall protects, as `status` reports it.
public struct AttachmentStatus: Sendable, Codable {
    public var interface: String
    public var mode: String
    public var programID: UInt32?
    public var linkID: UInt32?
    public var policyName: String
    public var policySHA256: String
    public var generation: UInt32
    public var ruleCount: UInt32
    public var attachedAt: Date?
    public var appliedAt: Date?
    public var pinDirectory: String
    /// False when the pins exist but the link no longer carries the program (e.g. the interface went away).
    public var enforcing: Bool
    /// The program id of the egress error limiter's tc filter, nil when it is not attached.
    public var egressProgramID: UInt32?
    /// False when the link pin is gone (removed by hand): without an agent holding the link, that detached the
    /// program; `attach` restores it from the pinned maps.
    public var linkPinned: Bool = true
    /// The datapath ABI the pins were written by (another than this icmpwall's: pins an older version left
    /// enforcing, which `attach` upgrades in place).
    public var abiVersion: UInt32 = UInt32(ICW_ABI_VERSION)

    enum CodingKeys: String, CodingKey {
        case interface, mode, enforcing, generation
        case programID = "program_id"
        case linkID = "link_id"
        case policyName = "policy_name"
        case policySHA256 = "policy_sha256"
        case ruleCount = "rule_count"
        case attachedAt = "attached_at"
        case appliedAt = "applied_at"
        case pinDirectory = "pin_directory"
        case egressProgramID = "egress_program_id"
        case linkPinned = "link_pinned"
        case abiVersion = "abi_version"
    }
}

/// Attaches, re-policies and detaches icmpwall on interfaces. All state lives in pins under
/// `/sys/fs/bpf/icmpwall/<interface>/` (`link` and `maps/`), so enforcement continues after the
/// command exits and any later command (or the agent) finds it.
public struct Dataplane: Sendable {
    public var pinRoot: String

    public init(pinRoot: String = DatapathNames.pinRoot) {
        self.pinRoot = pinRoot
    }

    public func pinDirectory(_ interface: String) -> String { DatapathNames.pinDirectory(interface: interface, root: pinRoot) }
    func linkPin(_ interface: String) -> String { "\(pinDirectory(interface))/link" }
    func mapsDirectory(_ interface: String) -> String { "\(pinDirectory(interface))/maps" }

    /// True when icmpwall has pins for this interface.
    public func isAttached(_ interface: String) -> Bool {
        FileManager.default.fileExists(atPath: linkPin(interface))
    }

    /// Loads the datapath, installs `compiled`, attaches it to `interface` and pins everything.
    /// On any failure nothing is left behind (no link, no pins).
    ///
    /// Over pins whose link was lost (the interface went away and came back, or the link pin was removed), attach
    /// resumes enforcement from the pins: the pinned policy, counters and buckets continue, and `compiled` is
    /// installed only when it differs from the pinned policy and `policyGiven` says the user named it (a plain
    /// `attach` with the built-in default must not replace the policy the pins hold).
    public func attach(interface: String, policy compiled: CompiledPolicy, mode request: AttachModeRequest,
                       policyGiven: Bool = true) throws(DataplaneError) -> AttachResult {
        try validateInterfaceName(interface)
        let ifindex: Int32
        do { ifindex = try Interfaces.index(named: interface) } catch {
            throw .invalidInput("interface \(interface) does not exist in this network namespace")
        }
        if FileManager.default.fileExists(atPath: mapsDirectory(interface)) {
            return try attachOverPins(interface: interface, policy: compiled, mode: request, policyGiven: policyGiven)
        }
        if isAttached(interface) {
            throw .invalidInput("icmpwall is already attached to \(interface) (pins in \(pinDirectory(interface))); use `icmpwall apply --interface \(interface) POLICY` to change its policy, or `icmpwall detach --interface \(interface)` first")
        }
        let existing = try bpf { () throws(BPFError) in try XDP.query(interfaceIndex: ifindex) }
        if let id = existing.programID {
            let name = (try? XDP.programInfo(id: id))?.name ?? "?"
            throw .invalidInput("interface \(interface) already carries another XDP program: \(name) (id \(id)\(existing.mode.map { ", \($0.rawValue) mode" } ?? "")); icmpwall does not replace it. Detach it first (e.g. `ip link set dev \(interface) xdp off`)")
        }
        // Mounting bpffs ourselves is right on a host that has none, but not in a mount namespace of our own: the pins,
        // and with the link pin the XDP program, would vanish when this process exits, leaving only the tc filter.
        let bpfRoot = (pinRoot as NSString).deletingLastPathComponent
        if !BPFFS.isMounted(at: bpfRoot), BPFFS.inPrivateMountNamespace() == true {
            throw .system("\(bpfRoot) is not a bpffs mount in this process's mount namespace, which is not the host's (as under `ip netns exec`, which mounts a /sys of its own): a bpffs mounted here would vanish when the command exits, and the pins and the XDP program with it. Enter only the network namespace (`nsenter --net=/run/netns/NAME icmpwall ...`), or mount bpffs at \(bpfRoot) where the pins should live")
        }
        try bpf { () throws(BPFError) in try BPFFS.ensureMounted(at: bpfRoot) }

        let object = try kernelChecked(.load) { () throws(BPFError) in try DatapathLoader.load(testMode: false) }
        let maps = try bpf { () throws(BPFError) in try DatapathMaps(object: object) }
        let install = try bpf { () throws(BPFError) in try PolicyInstaller(maps: maps).install(compiled) }
        let program = try bpf { () throws(BPFError) in try object.program(named: DatapathNames.program) }

        let (link, gotMode) = try attachXDP(program, interface: interface, ifindex: ifindex, request: request)

        // The egress error limiter: icmpwall's own tc filter (fixed handle and priority) on clsact egress.
        var createdClsact = false
        do {
            let egress = try object.program(named: DatapathNames.egressProgram)
            createdClsact = try TC.createHook(interfaceIndex: ifindex)
            _ = try TC.attach(program: egress, interfaceIndex: ifindex, point: .egress, handle: UInt32(ICW_TC_HANDLE),
                              priority: UInt32(ICW_TC_PRIORITY), replace: true)
        } catch {
            Self.removeEgressFilter(interface: interface, ifindex: ifindex, removeClsact: createdClsact)
            link.detach()
            throw KernelFeatures.explain(error, during: .tcAttach)
        }

        let directory = pinDirectory(interface)
        do {
            // A concurrent last detach may rmdir the empty root between our mkdirs: try once more.
            do { try BPFFS.makeDirectory(mapsDirectory(interface)) } catch where error.errno == ENOENT {
                try BPFFS.makeDirectory(mapsDirectory(interface))
            }
            for name in DatapathNames.pinnedMaps {
                try object.map(named: name).pin(at: "\(mapsDirectory(interface))/\(name)")
            }
            var meta = try maps.meta.lookup(UInt32(0), as: icw_meta.self) ?? icw_meta()
            meta.attached_at_ns = PolicyInstaller.nanoseconds(Date())
            PolicyInstaller.setBytes(&meta.attach_mode, Array(gotMode.rawValue.utf8))
            meta.flags = createdClsact ? ICW_META_CREATED_CLSACT : 0
            try maps.meta.update(UInt32(0), meta)
            // The link pin last: once it exists, the attachment is complete.
            try link.pin(at: linkPin(interface))
            securePins(interface: interface)
        } catch {
            try? BPFFS.removeTree(directory)
            Self.removeEgressFilter(interface: interface, ifindex: ifindex, removeClsact: createdClsact)
            link.detach()
            throw .bpf(error)
        }
        return AttachResult(interface: interface, mode: gotMode, programID: program.fd >= 0 ? (try? program.info().id) ?? 0 : 0,
                            pinDirectory: directory, install: install)
    }

    /// Replaces the policy running on `interface`, atomically.
    public func apply(interface: String, policy compiled: CompiledPolicy) throws(DataplaneError) -> InstallResult {
        try validateInterfaceName(interface)
        try AgentOwnership.refuseIfManaged(interface: interface)  // an agent owns it: point to its policy file and SIGHUP
        guard isAttached(interface) else {
            throw .invalidInput("icmpwall is not attached to \(interface); run `icmpwall attach --interface \(interface) --policy FILE` first")
        }
        try refuseOtherABI(interface, command: "apply")
        let maps = try bpf { () throws(BPFError) in try DatapathMaps(pinDirectory: pinDirectory(interface)) }
        return try bpf { () throws(BPFError) in try PolicyInstaller(maps: maps).install(compiled) }
    }

    /// Removes icmpwall from `interface`: deleting the link pin detaches the program; the maps go with it.
    public func detach(interface: String) throws(DataplaneError) {
        try validateInterfaceName(interface)
        let directory = pinDirectory(interface)
        guard FileManager.default.fileExists(atPath: directory) else {
            throw .invalidInput("icmpwall is not attached to \(interface) (no pins in \(directory))")
        }
        if let link = try? BPFLink.openPinned(linkPin(interface)) {
            link.detach()
        }
        // The egress filter: only icmpwall's own (handle, priority); clsact only if attach created it and
        // nothing else uses it now. An interface that is gone took both with it.
        if let ifindex = try? Interfaces.index(named: interface) {
            let meta = (try? BPFMap.openPinned("\(mapsDirectory(interface))/icw_meta"))
                .flatMap { try? $0.lookup(UInt32(0), as: icw_meta.self) }
            Self.removeEgressFilter(interface: interface, ifindex: ifindex,
                                    removeClsact: (meta?.flags ?? 0) & ICW_META_CREATED_CLSACT != 0)
        }
        try bpf { () throws(BPFError) in try BPFFS.removeTree(directory) }
        // The last detach leaves no empty icmpwall folder behind either.
        // rmdir(2), not a recursive removal: if another attach just created its folder, the root stays.
        _ = rmdir(pinRoot)
    }

    /// Interfaces with icmpwall pins.
    public func attachedInterfaces() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: pinRoot)) ?? []
        return names.filter { FileManager.default.fileExists(atPath: "\(pinRoot)/\($0)/maps") }.sorted()
    }

    /// What is attached where.
    public func status(interface: String? = nil) throws(DataplaneError) -> [AttachmentStatus] {
        let interfaces = interface.map { [$0] } ?? attachedInterfaces()
        var result: [AttachmentStatus] = []
        for name in interfaces {
            guard FileManager.default.fileExists(atPath: mapsDirectory(name)) else {
                throw .invalidInput("icmpwall is not attached to \(name) (no pins in \(pinDirectory(name)))")
            }
            let abi = pinnedABIVersion(interface: name) ?? 0
            var meta = icw_meta()
            var running = icw_policy_meta()
            if abi == 0 || Int(abi) == IcmpwallVersion.abi {
                let maps = try bpf { () throws(BPFError) in try DatapathMaps(pinDirectory: pinDirectory(name)) }
                meta = try bpf { () throws(BPFError) in try maps.meta.lookup(UInt32(0), as: icw_meta.self) } ?? icw_meta()
                // The slot icw_control names, not the last write: exactly the policy the datapath runs.
                running = try bpf { () throws(BPFError) in try PolicyInstaller(maps: maps).runningPolicy() } ?? icw_policy_meta()
            } else if let old = legacyMetadata(interface: name) {
                (meta, running) = old  // pins of an older icmpwall, still enforcing: reported, never written
            }
            var programID: UInt32?
            var linkID: UInt32?
            var enforcing = false
            if let link = try? BPFLink.openPinned(linkPin(name)), let info = try? link.info() {
                programID = info.programID
                linkID = info.id
                enforcing = info.interfaceIndex != 0
            }
            result.append(AttachmentStatus(
                interface: name,
                mode: Self.string(meta.attach_mode),
                programID: programID, linkID: linkID,
                policyName: Self.string(running.policy_name),
                policySHA256: Self.hex(running.policy_sha256),
                generation: running.generation,
                ruleCount: running.rule_count,
                attachedAt: meta.attached_at_ns == 0 ? nil : Date(timeIntervalSince1970: Double(meta.attached_at_ns) / 1e9),
                appliedAt: running.applied_at_ns == 0 ? nil : Date(timeIntervalSince1970: Double(running.applied_at_ns) / 1e9),
                pinDirectory: pinDirectory(name),
                enforcing: enforcing,
                egressProgramID: egressFilterProgramID(interface: name),
                linkPinned: BPFFS.exists(linkPin(name)), abiVersion: abi))
        }
        return result
    }

    /// The metadata of pins an older icmpwall left enforcing, for `status` beside them and for their upgrade: ABI 3's
    /// icw_meta and icw_policy_meta have today's layouts (ABI 4 added a map); ABI 2 held the last apply's identity in
    /// one icw_meta of 144 bytes. Nil for any other layout.
    func legacyMetadata(interface: String) -> (icw_meta, icw_policy_meta)? {
        guard let map = try? BPFMap.openPinned("\(mapsDirectory(interface))/icw_meta") else { return nil }
        if map.valueSize == UInt32(MemoryLayout<icw_meta>.size) {
            guard let meta = try? map.lookup(UInt32(0), as: icw_meta.self),
                  let control = try? BPFMap.openPinned("\(mapsDirectory(interface))/icw_control"),
                  let policyMeta = try? BPFMap.openPinned("\(mapsDirectory(interface))/icw_policy_meta"),
                  policyMeta.valueSize == UInt32(MemoryLayout<icw_policy_meta>.size) else { return nil }
            let running = (try? PolicyInstaller.runningPolicy(control: control, policyMeta: policyMeta)) ?? nil
            return (meta, running ?? icw_policy_meta())
        }
        guard map.valueSize == 144, let bytes = try? map.lookup(key: [0, 0, 0, 0]), bytes.count >= 144 else { return nil }
        func u32(_ o: Int) -> UInt32 { bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self) } }
        func u64(_ o: Int) -> UInt64 { bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt64.self) } }
        var meta = icw_meta()
        meta.abi_version = u32(0)
        meta.attached_at_ns = u64(8)
        PolicyInstaller.setBytes(&meta.attach_mode, Array(bytes[120..<136]))
        meta.flags = u32(140)
        var running = icw_policy_meta()
        running.generation = u32(4)
        running.applied_at_ns = u64(16)
        PolicyInstaller.setBytes(&running.policy_sha256, Array(bytes[24..<56]))
        PolicyInstaller.setBytes(&running.policy_name, Array(bytes[56..<120]))
        running.rule_count = u32(136)
        return (meta, running)
    }

    /// The pinned maps of an attached interface.
    public func maps(interface: String) throws(DataplaneError) -> DatapathMaps {
        try validateInterfaceName(interface)
        guard FileManager.default.fileExists(atPath: mapsDirectory(interface)) else {
            throw .invalidInput("icmpwall is not attached to \(interface) (no pins in \(pinDirectory(interface)))")
        }
        try refuseOtherABI(interface, command: "stats")
        return try bpf { () throws(BPFError) in try DatapathMaps(pinDirectory: pinDirectory(interface)) }
    }

    /// `attach` on an interface that already has pins: pins of an older ABI are upgraded in place; pins whose link
    /// is gone get their program attached again (then the policy is installed, counters continue); pins that
    /// enforce are refused as before.
    private func attachOverPins(interface: String, policy compiled: CompiledPolicy,
                                mode request: AttachModeRequest, policyGiven: Bool) throws(DataplaneError) -> AttachResult {
        try AgentOwnership.refuseIfManaged(interface: interface)  // the agent restores and upgrades its own
        if pinsNeedUpgrade(interface: interface) {
            let report = try upgrade(interface: interface, policy: compiled)
            let meta = (try? BPFMap.openPinned("\(mapsDirectory(interface))/icw_meta")).flatMap { try? $0.lookup(UInt32(0), as: icw_meta.self) }
            return AttachResult(interface: interface, mode: XDPAttachMode(rawValue: meta.map { Self.string($0.attach_mode) } ?? "") ?? .generic,
                                programID: report.newProgramID, pinDirectory: pinDirectory(interface), install: report.install,
                                upgrade: report)
        }
        switch health(interface: interface) {
        case .linkLost:
            try refuseOtherABI(interface, command: "attach")
            let mode = try reattach(interface: interface, mode: request)
            let maps = try maps(interface: interface)
            let running = try bpf { () throws(BPFError) in try PolicyInstaller(maps: maps).runningPolicy() }
            let install: InstallResult
            if let running, !policyGiven || Self.hex(running.policy_sha256) == compiled.policy.sha256Hex {
                let slot = (try? maps.control.lookup(UInt32(0), as: icw_control.self))?.active_slot ?? 0
                install = InstallResult(generation: running.generation, slot: slot, decisionEntries: 0, sourcePrefixes: 0,
                                        resumed: true)
            } else {
                install = try self.install(interface: interface, policy: compiled)
            }
            securePins(interface: interface)
            let programID = (try? BPFLink.openPinned(linkPin(interface)).info().programID) ?? 0
            return AttachResult(interface: interface, mode: mode, programID: programID, pinDirectory: pinDirectory(interface),
                                install: install, restoredLink: true)
        case .interfaceMissing, .enforcing, .absent:
            throw .invalidInput("icmpwall is already attached to \(interface) (pins in \(pinDirectory(interface))); use `icmpwall apply --interface \(interface) POLICY` to change its policy, or `icmpwall detach --interface \(interface)` first")
        }
    }

    /// Refuses to write into pins of another datapath ABI (their maps may not mean what this version writes).
    func refuseOtherABI(_ interface: String, command: String) throws(DataplaneError) {
        guard pinsNeedUpgrade(interface: interface), let abi = pinnedABIVersion(interface: interface) else { return }
        throw .invalidInput("the pins of \(interface) (\(pinDirectory(interface))) hold datapath ABI \(abi), this icmpwall speaks ABI \(IcmpwallVersion.abi); `\(command)` does not read or write their maps. `icmpwall attach --interface \(interface) --policy FILE` upgrades them in place without a gap")
    }

    // MARK: - helpers

    /// Creates the XDP link in the requested mode (`auto`: native, else generic). Shared by attach and the agent's
    /// re-attach; a failure names the missing kernel feature when there is one.
    func attachXDP(_ program: BPFProgram, interface: String, ifindex: Int32,
                   request: AttachModeRequest) throws(DataplaneError) -> (BPFLink, XDPAttachMode) {
        let modes: [XDPAttachMode] = switch request {
        case .auto: [.native, .generic]
        case .native: [.native]
        case .generic: [.generic]
        }
        var lastError: BPFError?
        for mode in modes {
            do {
                return (try XDP.attachLink(program: program, interfaceIndex: ifindex, mode: mode), mode)
            } catch {
                lastError = error
            }
        }
        throw KernelFeatures.explain(lastError ?? BPFError(operation: "bpf_link_create", errno: EINVAL, context: "interface \(interface)"),
                                     during: .xdpAttach)
    }

    /// Removes icmpwall's egress filter, and the clsact qdisc when asked and no other filter uses it.
    static func removeEgressFilter(interface: String, ifindex: Int32, removeClsact: Bool) {
        try? TC.detach(interfaceIndex: ifindex, point: .egress, handle: UInt32(ICW_TC_HANDLE), priority: UInt32(ICW_TC_PRIORITY))
        guard removeClsact else { return }
        // Another tool's filter on either direction keeps the qdisc (destroying it would remove theirs).
        for direction in ["ingress", "egress"] {
            guard let r = try? Tool.run(["tc", "filter", "show", "dev", interface, direction], check: false),
                  r.status == 0, r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return }
        }
        try? TC.destroyHook(interfaceIndex: ifindex)
    }

    /// The program id of icmpwall's egress filter on `interface`, if it is there.
    public func egressFilterProgramID(interface: String) -> UInt32? {
        guard let ifindex = try? Interfaces.index(named: interface),
              let filter = try? TC.query(interfaceIndex: ifindex, point: .egress, handle: UInt32(ICW_TC_HANDLE),
                                         priority: UInt32(ICW_TC_PRIORITY)) else { return nil }
        return filter.programID
    }

    private func validateInterfaceName(_ name: String) throws(DataplaneError) {
        // IFNAMSIZ is 16 with the NUL; the name also becomes a path component.
        guard !name.isEmpty, name.utf8.count < 16, !name.contains("/"), name != ".", name != ".." ,
              name.allSatisfy({ !$0.isWhitespace }) else {
            throw .invalidInput("'\(name)' is not a valid interface name")
        }
    }

    static func string<T>(_ field: T) -> String {
        withUnsafeBytes(of: field) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
    }

    static func hex<T>(_ field: T) -> String {
        withUnsafeBytes(of: field) { raw in raw.map { String(format: "%02x", $0) }.joined() }
    }
}

/// Runs a BPFKit call, turning its error into a DataplaneError.
@inline(__always)
func bpf<T>(_ body: () throws(BPFError) -> T) throws(DataplaneError) -> T {
    do { return try body() } catch { throw .bpf(error) }
}
