import CLibBPF

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// How an XDP program runs on an interface.
public enum XDPAttachMode: String, Sendable, CaseIterable {
    /// In the driver (`XDP_FLAGS_DRV_MODE`), before an skb exists. veth supports it.
    case native
    /// In the generic network stack (`XDP_FLAGS_SKB_MODE`), on any interface, slower.
    case generic

    var flags: UInt32 {
        switch self {
        case .native: return XDP_FLAGS_DRV_MODE
        case .generic: return XDP_FLAGS_SKB_MODE
        }
    }
}

/// Which XDP program an interface runs (`bpf_xdp_query`).
public struct XDPStatus: Sendable, Equatable {
    /// The program attached (native preferred if both native and generic are attached), or nil.
    public var programID: UInt32?
    /// How `programID` is attached.
    public var mode: XDPAttachMode?
    public var nativeProgramID: UInt32?
    public var genericProgramID: UInt32?
    /// Hardware-offloaded program, if any (not a ``XDPAttachMode``).
    public var offloadProgramID: UInt32?
}

/// Attaching and inspecting XDP programs. Interface indexes belong to the calling thread's
/// network namespace (see ``NetworkNamespace``).
public enum XDP {
    /// Attaches `program` to an interface as a BPF link (`bpf_link_create`, `BPF_XDP`).
    ///
    /// The attachment lasts while the returned link (or a pin of it, ``BPFLink/pin(at:)``)
    /// exists. Fails with EBUSY if the interface already has a program attached by netlink
    /// (`ip link set … xdp`, `bpf_xdp_attach`) or by another link.
    public static func attachLink(program: BPFProgram, interfaceIndex: Int32, mode: XDPAttachMode) throws(BPFError) -> BPFLink {
        BPFLog.install()
        let r = withOptions(bpf_link_create_opts.self) { opts in
            opts.pointee.flags = mode.flags
            return bpf_link_create(program.fd, interfaceIndex, BPF_XDP, opts)
        }
        let fd = try check(r, "bpf_link_create",
                           "program \(program.name) on ifindex \(interfaceIndex), \(mode) XDP")
        return BPFLink(fd: fd)
    }

    /// Which program is attached to an interface, and how.
    public static func query(interfaceIndex: Int32) throws(BPFError) -> XDPStatus {
        BPFLog.install()
        let (r, opts) = withOptions(bpf_xdp_query_opts.self) { p in
            (bpf_xdp_query(interfaceIndex, 0, p), p.pointee)
        }
        try check(r, "bpf_xdp_query", "ifindex \(interfaceIndex)")
        func id(_ v: UInt32) -> UInt32? { v == 0 ? nil : v }
        var status = XDPStatus(nativeProgramID: id(opts.drv_prog_id), genericProgramID: id(opts.skb_prog_id),
                               offloadProgramID: id(opts.hw_prog_id))
        switch Int(opts.attach_mode) {
        case XDP_ATTACHED_DRV:
            status.programID = id(opts.prog_id) ?? status.nativeProgramID
            status.mode = .native
        case XDP_ATTACHED_SKB:
            status.programID = id(opts.prog_id) ?? status.genericProgramID
            status.mode = .generic
        case XDP_ATTACHED_HW:
            status.programID = id(opts.prog_id) ?? status.offloadProgramID
        case XDP_ATTACHED_MULTI:
            if let n = status.nativeProgramID {
                status.programID = n
                status.mode = .native
            } else if let g = status.genericProgramID {
                status.programID = g
                status.mode = .generic
            } else {
                status.programID = status.offloadProgramID
            }
        default:
            break
        }
        return status
    }

    /// Name, tag, type … of a loaded program by id.
    public static func programInfo(id: UInt32) throws(BPFError) -> ProgramInfo {
        try BPFProgram.open(id: id).info()
    }

    /// The XDP link that attaches the interface's current program, if it was attached with a link
    /// (nil for netlink attachments). Useful to detach when the pin is lost.
    public static func link(interfaceIndex: Int32) throws(BPFError) -> BPFLink? {
        let status = try query(interfaceIndex: interfaceIndex)
        guard let programID = status.programID else { return nil }
        var id: UInt32 = 0
        while true {
            var next: UInt32 = 0
            let r = bpf_link_get_next_id(id, &next)
            if r == -ENOENT { return nil }
            try check(r, "bpf_link_get_next_id", "after link id \(id)")
            id = next
            // Links can vanish between listing and opening.
            guard let link = try? BPFLink.open(id: id), let info = try? link.info() else { continue }
            if info.typeRawValue == BPF_LINK_TYPE_XDP.rawValue, info.interfaceIndex == interfaceIndex,
               info.programID == programID {
                return link
            }
        }
    }
}
