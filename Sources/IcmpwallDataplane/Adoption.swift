import BPFKit
import CIcmpwallShim
import Foundation
import IcmpwallPolicy

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The pinned state of an interface, compared with the interface as it is now (in the caller's network namespace).
public enum AttachmentHealth: Sendable, Equatable, CustomStringConvertible {
    /// No pins: icmpwall is not attached.
    case absent
    /// The pinned link carries the program on the interface's current index.
    case enforcing(linkID: UInt32, programID: UInt32)
    /// Pins exist but the interface does not (it was deleted): the maps wait for it to come back.
    case interfaceMissing
    /// Pins exist and the interface too, but the link no longer carries the program on it (the interface went away
    /// and came back, or the link pin was removed): `reattach` restores enforcement with the pinned state.
    case linkLost(programID: UInt32?)

    public var description: String {
        switch self {
        case .absent: "not attached"
        case let .enforcing(link, program): "enforcing (link \(link), program \(program))"
        case .interfaceMissing: "interface missing (pins kept)"
        case let .linkLost(program): "link lost (program \(program.map(String.init) ?? "none"))"
        }
    }
}

extension Dataplane {
    /// Compares the pins of `interface` with the interface as it is now.
    public func health(interface: String) -> AttachmentHealth {
        guard FileManager.default.fileExists(atPath: mapsDirectory(interface)) || isAttached(interface) else { return .absent }
        guard let ifindex = try? Interfaces.index(named: interface) else { return .interfaceMissing }
        guard let link = try? BPFLink.openPinned(linkPin(interface)), let info = try? link.info() else {
            return .linkLost(programID: nil)
        }
        if info.interfaceIndex == ifindex {
            return .enforcing(linkID: info.id, programID: info.programID)
        }
        return .linkLost(programID: info.programID == 0 ? nil : info.programID)
    }

    /// The datapath ABI version recorded in the pins (nil when unreadable). Read as the first 4 bytes of icw_meta,
    /// where every ABI keeps it, so pins of another ABI (another icw_meta layout) still say which they are.
    public func pinnedABIVersion(interface: String) -> UInt32? {
        guard let map = try? BPFMap.openPinned("\(mapsDirectory(interface))/icw_meta"),
              let bytes = try? map.lookup(key: [0, 0, 0, 0]), bytes.count >= 4 else { return nil }
        return bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
    }

    /// Installs a policy into the pinned maps of `interface` without the agent-ownership check: for the agent that
    /// owns the interface (`apply` refuses while an agent manages it).
    public func install(interface: String, policy compiled: CompiledPolicy) throws(DataplaneError) -> InstallResult {
        let maps = try maps(interface: interface)
        return try bpf { () throws(BPFError) in try PolicyInstaller(maps: maps).install(compiled) }
    }

    /// Restores enforcement on an interface whose pins outlived its link (`health` says `.linkLost`): attaches the
    /// program of the old link (or, when it is gone, a freshly loaded datapath that reuses the pinned maps) with a new
    /// XDP link and pins that link in place of the old one. The policy, counters and buckets continue.
    @discardableResult
    public func reattach(interface: String, mode request: AttachModeRequest) throws(DataplaneError) -> XDPAttachMode {
        let ifindex: Int32
        do { ifindex = try Interfaces.index(named: interface) } catch {
            throw .invalidInput("interface \(interface) does not exist in this network namespace")
        }
        let existing = try bpf { () throws(BPFError) in try XDP.query(interfaceIndex: ifindex) }
        if let id = existing.programID {
            let name = (try? XDP.programInfo(id: id))?.name ?? "?"
            throw .invalidInput("interface \(interface) already carries another XDP program: \(name) (id \(id)); icmpwall does not replace it")
        }
        var program: BPFProgram?
        var object: BPFObject?  // keeps a freshly loaded program alive until its link is pinned
        if let old = try? BPFLink.openPinned(linkPin(interface)), let info = try? old.info(), info.programID != 0 {
            program = try? BPFProgram.open(id: info.programID)
        }
        if program == nil {
            let loaded = try bpf { () throws(BPFError) -> BPFObject in
                let o = try DatapathLoader.open(testMode: false)
                for name in DatapathNames.pinnedMaps {
                    try o.reuseMap(named: name, pinnedAt: "\(mapsDirectory(interface))/\(name)")
                }
                try o.load()
                return o
            }
            object = loaded
            program = try bpf { () throws(BPFError) in try loaded.program(named: DatapathNames.program) }
        }
        guard let program else { throw .system("no datapath program to re-attach to \(interface)") }

        let (link, gotMode) = try attachXDP(program, interface: interface, ifindex: ifindex, request: request)
        // Pin the new link beside the old pin, then rename it over the old one: the link pin never goes missing.
        let staging = "\(pinDirectory(interface))/link_new"  // bpffs reserves names with dots
        try? BPFFS.unpin(staging, ignoreMissing: true)
        do {
            try BPFFS.makeDirectory(pinDirectory(interface))
            try link.pin(at: staging)
        } catch {
            link.detach()
            throw .bpf(error)
        }
        if rename(staging, linkPin(interface)) != 0 {
            let e = errno
            try? BPFFS.unpin(staging, ignoreMissing: true)
            link.detach()
            throw .system("cannot move the new link pin into place (\(linkPin(interface))): \(String(cString: strerror(e)))")
        }
        // The egress error limiter's tc filter went with the old device: attach it again, from a datapath that
        // shares the pinned maps (the same program when this process loaded one above).
        var createdClsact = false
        if egressFilterProgramID(interface: interface) == nil {
            do {
                let egressObject = try object ?? bpf { () throws(BPFError) -> BPFObject in
                    let o = try DatapathLoader.open(testMode: false)
                    for name in DatapathNames.pinnedMaps {
                        try o.reuseMap(named: name, pinnedAt: "\(mapsDirectory(interface))/\(name)")
                    }
                    try o.load()
                    return o
                }
                try bpf { () throws(BPFError) in
                    let egress = try egressObject.program(named: DatapathNames.egressProgram)
                    createdClsact = try TC.createHook(interfaceIndex: ifindex)
                    _ = try TC.attach(program: egress, interfaceIndex: ifindex, point: .egress, handle: UInt32(ICW_TC_HANDLE),
                                      priority: UInt32(ICW_TC_PRIORITY), replace: true)
                }
            } catch {
                // Ingress enforcement is back; report the egress half without undoing it.
                throw .system("re-attached XDP to \(interface), but not the egress error limiter: \(error)")
            }
        }
        if let meta = try? BPFMap.openPinned("\(mapsDirectory(interface))/icw_meta"),
           var value = try? meta.lookup(UInt32(0), as: icw_meta.self) {
            PolicyInstaller.setBytes(&value.attach_mode, Array(gotMode.rawValue.utf8))
            if createdClsact { value.flags |= ICW_META_CREATED_CLSACT }
            try? meta.update(UInt32(0), value)
        }
        _ = object
        securePins(interface: interface)
        return gotMode
    }
}
