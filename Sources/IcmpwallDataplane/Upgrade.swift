import BPFKit
import CIcmpwallShim
import Foundation
import IcmpwallPolicy

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What an in-place upgrade of pinned state did.
public struct UpgradeReport: Sendable {
    public var fromABI: UInt32
    public var toABI: UInt32
    /// Maps the new program uses as they are (same layout and meaning): their counters and state simply continue.
    public var carried: [String]
    /// Maps the new program starts afresh (policy tables re-installed from the policy, maps the old ABI lacked).
    public var fresh: [String]
    /// The program the link carried before, and carries now.
    public var oldProgramID: UInt32
    public var newProgramID: UInt32
    public var install: InstallResult
}

/// How pins of an older datapath ABI become pins of this one.
///
/// `shared` lists the maps whose type, key, value and meaning did not change: the new object reuses the pinned map
/// itself (`bpf_map__reuse_fd`, which also checks the shape), so counters and buckets continue exactly, with no window
/// in which increments could be lost. Every other map is the new object's own: the policy tables are installed from
/// the policy, `icw_control`'s generation and `icw_meta`'s attach time, mode and flags are copied.
struct UpgradePlan {
    var shared: [String]

    static func from(abi: UInt32) -> UpgradePlan? {
        switch abi {
        case 2, 3:
            // ABI 2 -> 3 moved the policy's identity out of icw_meta into icw_policy_meta (one entry per slot, so
            // status flips with the datapath); ABI 3 -> 4 added icw_type_decisions (class 0 resolved per type) and
            // the sources flags of icw_config. Every counter, bucket and egress map kept its layout and meaning
            // (bpf/include/icmpwall_abi.h, git history; Tests/Fixtures/abi2, Tests/Fixtures/abi3).
            return UpgradePlan(shared: [
                "icw_counters", "icw_rule_counters", "icw_guard_counters",
                "icw_rule_ids", "icw_buckets", "icw_source_buckets", "icw_source_locks",
                "icw_egress_bucket", "icw_egress_destinations", "icw_egress_counters",
            ])
        default:
            // ABI 1 (before the egress limiter) is not upgraded in place: detach and attach again.
            return nil
        }
    }
}

extension Dataplane {
    /// Fault injection for the crash tests: `ICMPWALL_UPGRADE_CRASH=staged` or `=switched` kills the process with
    /// SIGKILL right after that step, as a power cut or `kill -9` would.
    static func crashPoint(_ step: String) {
        if ProcessInfo.processInfo.environment["ICMPWALL_UPGRADE_CRASH"] == step { kill(getpid(), SIGKILL) }
    }

    /// Where an upgrade pins the new maps before it swaps them with the pinned ones (bpffs names cannot hold dots).
    func stagingMapsDirectory(_ interface: String) -> String { "\(pinDirectory(interface))/maps_next" }

    /// True when the pins of `interface` were written by a datapath of another ABI version.
    public func pinsNeedUpgrade(interface: String) -> Bool {
        guard let abi = pinnedABIVersion(interface: interface), abi != 0 else { return false }
        return Int(abi) != IcmpwallVersion.abi
    }

    /// Replaces the pinned datapath of an older ABI with this binary's, in place and without a gap in enforcement.
    ///
    /// Steps, and what a crash after each leaves:
    /// 1. load the new object, sharing the maps ``UpgradePlan`` allows, and install `policy` into its own maps; pin
    ///    them under `maps_next/`. A crash: the old program still enforces with its pins; `maps_next/` is stale and
    ///    the next upgrade removes it.
    /// 2. switch the pinned XDP link to the new program (`bpf_link_update`, expecting the old one): every frame is
    ///    judged by one program or the other, never by none. A crash: the new program enforces, the pins still say
    ///    the old ABI, so `apply` refuses and the next `attach` or agent upgrades again (idempotent).
    /// 3. replace icmpwall's tc egress filter at its own handle and priority (netlink replace: no moment without it;
    ///    an ABI without an egress program gets one now).
    /// 4. swap `maps_next/` and `maps/` with one `renameat2(RENAME_EXCHANGE)`, so a complete pin set exists at every
    ///    moment, then remove the old pins (now in `maps_next/`). The link pin never changes: it is the same link.
    public func upgrade(interface: String, policy compiled: CompiledPolicy) throws(DataplaneError) -> UpgradeReport {
        guard let oldABI = pinnedABIVersion(interface: interface) else {
            throw .invalidInput("icmpwall is not attached to \(interface) (no readable pins in \(pinDirectory(interface)))")
        }
        guard Int(oldABI) != IcmpwallVersion.abi else {
            throw .invalidInput("the pins of \(interface) already hold datapath ABI \(oldABI): nothing to upgrade")
        }
        guard let plan = UpgradePlan.from(abi: oldABI) else {
            throw .invalidInput("the pins of \(interface) (\(pinDirectory(interface))) hold datapath ABI \(oldABI), which this version (ABI \(IcmpwallVersion.abi)) cannot upgrade in place\(Int(oldABI) > IcmpwallVersion.abi ? " (they are newer)" : ""); they stay enforcing as they are. `icmpwall detach --interface \(interface)` then attach, accepting a short gap")
        }
        let ifindex: Int32
        do { ifindex = try Interfaces.index(named: interface) } catch {
            throw .invalidInput("interface \(interface) does not exist in this network namespace")
        }
        // The link is held open from here on: whatever happens to the pins, it keeps enforcing.
        let link = try bpf { () throws(BPFError) in try BPFLink.openPinned(linkPin(interface)) }
        let linkInfo = try bpf { () throws(BPFError) in try link.info() }
        guard linkInfo.interfaceIndex == ifindex, linkInfo.programID != 0 else {
            throw .invalidInput("the pinned link of \(interface) does not carry a program on it (it went away and came back, or was detached): the older datapath is not enforcing, so there is nothing to upgrade without a gap; `icmpwall detach --interface \(interface)` then attach")
        }
        let oldProgram = try bpf { () throws(BPFError) in try BPFProgram.open(id: linkInfo.programID) }
        let maps = mapsDirectory(interface)
        let staging = stagingMapsDirectory(interface)
        try bpf { () throws(BPFError) in try BPFFS.removeTree(staging) }  // left by an interrupted upgrade

        // 1. The new datapath beside the old one.
        let object = try kernelChecked(.load) { () throws(BPFError) -> BPFObject in
            let o = try DatapathLoader.open(testMode: false)
            for name in plan.shared { try o.reuseMap(named: name, pinnedAt: "\(maps)/\(name)") }
            try o.load()
            return o
        }
        let newMaps = try bpf { () throws(BPFError) in try DatapathMaps(object: object) }
        let oldControl = (try? BPFMap.openPinned("\(maps)/icw_control")).flatMap { try? $0.lookup(UInt32(0), as: icw_control.self) }
        // The attachment's facts (attach time and mode, whether attach created the clsact qdisc) and the generation,
        // from the older ABI's layouts.
        let oldMeta = legacyMetadata(interface: interface)
        var install: InstallResult
        do {
            // Generations keep counting (bucket epochs are generations: a new rule must not meet a stale bucket).
            try newMaps.control.update(UInt32(0), icw_control(active_slot: 0, generation: oldControl?.generation ?? oldMeta?.1.generation ?? 0))
            var meta = icw_meta()
            meta.abi_version = UInt32(ICW_ABI_VERSION)
            if let (old, _) = oldMeta {
                meta.attached_at_ns = old.attached_at_ns
                meta.attach_mode = old.attach_mode
                meta.flags = old.flags & ICW_META_CREATED_CLSACT
            }
            try newMaps.meta.update(UInt32(0), meta)
            install = try PolicyInstaller(maps: newMaps).install(compiled)
            try BPFFS.makeDirectory(staging)
            for name in DatapathNames.pinnedMaps {
                try object.map(named: name).pin(at: "\(staging)/\(name)")
            }
        } catch {
            try? BPFFS.removeTree(staging)
            throw .bpf(error)
        }
        let newProgram = try bpf { () throws(BPFError) in try object.program(named: DatapathNames.program) }
        Self.crashPoint("staged")

        // 2. The switch.
        do {
            try link.update(program: newProgram, expecting: oldProgram)
        } catch {
            try? BPFFS.removeTree(staging)
            throw .bpf(error)
        }
        Self.crashPoint("switched")

        // 3. The egress filter, replaced in place (created if it is missing).
        var egressError: String?
        do {
            let egress = try object.program(named: DatapathNames.egressProgram)
            let created = try TC.createHook(interfaceIndex: ifindex)
            _ = try TC.attach(program: egress, interfaceIndex: ifindex, point: .egress, handle: UInt32(ICW_TC_HANDLE),
                              priority: UInt32(ICW_TC_PRIORITY), replace: true)
            if created, var meta = try newMaps.meta.lookup(UInt32(0), as: icw_meta.self) {
                meta.flags |= ICW_META_CREATED_CLSACT
                try newMaps.meta.update(UInt32(0), meta)
            }
        } catch {
            egressError = "\(error)"
        }

        // 4. The pins: one atomic swap, then the old set goes.
        let swapped = icw_rename_exchange(staging, maps)
        if swapped == -EINVAL || swapped == -ENOSYS {
            // A kernel whose bpffs cannot exchange: two renames, the second right after the first.
            let old = "\(pinDirectory(interface))/maps_old"
            try? BPFFS.removeTree(old)
            guard rename(maps, old) == 0, rename(staging, maps) == 0 else {
                throw .system("upgraded \(interface) to ABI \(IcmpwallVersion.abi) (the new program enforces), but could not move its pins into place: \(String(cString: strerror(errno))); run `icmpwall attach --interface \(interface)` again to finish")
            }
            try? BPFFS.removeTree(old)
        } else if swapped != 0 {
            throw .system("upgraded \(interface) to ABI \(IcmpwallVersion.abi) (the new program enforces), but could not swap its pins into place: \(String(cString: strerror(-swapped))); run `icmpwall attach --interface \(interface)` again to finish")
        } else {
            try? BPFFS.removeTree(staging)
        }
        securePins(interface: interface)
        if let egressError {
            throw .system("upgraded \(interface) to ABI \(IcmpwallVersion.abi) (ingress enforces the new datapath), but not the egress error limiter: \(egressError)")
        }
        return UpgradeReport(
            fromABI: oldABI, toABI: UInt32(ICW_ABI_VERSION), carried: plan.shared,
            fresh: DatapathNames.pinnedMaps.filter { !plan.shared.contains($0) },
            oldProgramID: linkInfo.programID, newProgramID: (try? newProgram.info().id) ?? 0, install: install)
    }
}
