import CLibBPF

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A clsact attach point.
public enum TCAttachPoint: String, Sendable, CaseIterable {
    case ingress, egress

    var raw: bpf_tc_attach_point {
        switch self {
        case .ingress: return BPF_TC_INGRESS
        case .egress: return BPF_TC_EGRESS
        }
    }
}

/// A tc BPF filter (direct-action) on a clsact hook.
public struct TCFilter: Sendable, Equatable {
    public var interfaceIndex: Int32
    public var attachPoint: TCAttachPoint
    public var handle: UInt32
    public var priority: UInt32
    public var programID: UInt32
}

/// tc BPF filters through libbpf's netlink API (`bpf_tc_*`; libbpf 1.1 has no tcx links).
///
/// Filters and the clsact qdisc are persistent: they outlive the process until detached.
/// Interface indexes belong to the calling thread's network namespace.
public enum TC {
    /// Calls `body` with a zeroed hook and filter options (see `withOptions`).
    private static func withHook<R>(
        _ ifindex: Int32, _ point: bpf_tc_attach_point,
        _ body: (UnsafeMutablePointer<bpf_tc_hook>, UnsafeMutablePointer<bpf_tc_opts>) -> R
    ) -> R {
        withOptions(bpf_tc_hook.self) { hook in
            withOptions(bpf_tc_opts.self) { opts in
                hook.pointee.ifindex = ifindex
                hook.pointee.attach_point = point
                return body(hook, opts)
            }
        }
    }

    private static func validate(_ operation: String, handle: UInt32, priority: UInt32) throws(BPFError) {
        guard handle != 0, (1...0xffff).contains(priority) else {
            throw BPFError(operation: operation, errno: EINVAL,
                           context: "handle must be non-zero and priority 1...65535 (got handle \(handle), priority \(priority))")
        }
    }

    /// Creates the clsact qdisc on an interface if it has none (EEXIST is success).
    /// Returns true if it was created.
    @discardableResult
    public static func createHook(interfaceIndex: Int32) throws(BPFError) -> Bool {
        BPFLog.install()
        let r = withHook(interfaceIndex, BPF_TC_INGRESS) { hook, _ in bpf_tc_hook_create(hook) }
        if r == -EEXIST { return false }
        try check(r, "bpf_tc_hook_create", "clsact on ifindex \(interfaceIndex)")
        return true
    }

    /// Removes the clsact qdisc and with it every tc filter on both directions of the interface.
    /// Only call this when nothing else uses clsact there.
    public static func destroyHook(interfaceIndex: Int32) throws(BPFError) {
        BPFLog.install()
        let both = bpf_tc_attach_point(rawValue: BPF_TC_INGRESS.rawValue | BPF_TC_EGRESS.rawValue)
        let r = withHook(interfaceIndex, both) { hook, _ in bpf_tc_hook_destroy(hook) }
        try check(r, "bpf_tc_hook_destroy", "clsact on ifindex \(interfaceIndex)")
    }

    /// Attaches a `SEC("tc")` program as a direct-action filter, creating clsact if needed.
    ///
    /// - Parameters:
    ///   - handle: non-zero filter handle; with `priority` (1…65535) it identifies the filter.
    ///   - replace: replace an existing filter with the same handle and priority instead of
    ///     failing with EEXIST.
    public static func attach(
        program: BPFProgram, interfaceIndex: Int32, point: TCAttachPoint,
        handle: UInt32, priority: UInt32, replace: Bool = false
    ) throws(BPFError) -> TCFilter {
        try validate("bpf_tc_attach", handle: handle, priority: priority)
        try createHook(interfaceIndex: interfaceIndex)
        let (r, programID) = withHook(interfaceIndex, point.raw) { hook, opts in
            opts.pointee.handle = handle
            opts.pointee.priority = priority
            opts.pointee.prog_fd = program.fd
            if replace { opts.pointee.flags = UInt32(BPF_TC_F_REPLACE.rawValue) }
            return (bpf_tc_attach(hook, opts), opts.pointee.prog_id)
        }
        try check(r, "bpf_tc_attach",
                  "program \(program.name) on ifindex \(interfaceIndex) \(point) handle \(handle) priority \(priority)")
        return TCFilter(interfaceIndex: interfaceIndex, attachPoint: point, handle: handle,
                        priority: priority, programID: programID)
    }

    /// The filter with this handle and priority, or nil if there is none.
    ///
    /// The kernel answers EINVAL, not ENOENT, when the interface has no clsact qdisc or no filter
    /// chain at that priority; with the arguments validated first, both mean "no such filter".
    public static func query(interfaceIndex: Int32, point: TCAttachPoint, handle: UInt32, priority: UInt32) throws(BPFError) -> TCFilter? {
        BPFLog.install()
        try validate("bpf_tc_query", handle: handle, priority: priority)
        let (r, programID) = withHook(interfaceIndex, point.raw) { hook, opts in
            opts.pointee.handle = handle
            opts.pointee.priority = priority
            return (bpf_tc_query(hook, opts), opts.pointee.prog_id)
        }
        if r == -ENOENT || r == -EINVAL { return nil }
        try check(r, "bpf_tc_query", "ifindex \(interfaceIndex) \(point) handle \(handle) priority \(priority)")
        return TCFilter(interfaceIndex: interfaceIndex, attachPoint: point, handle: handle, priority: priority, programID: programID)
    }

    /// Removes the filter with this handle and priority (ENOENT/EINVAL if absent). Leaves clsact in place.
    public static func detach(interfaceIndex: Int32, point: TCAttachPoint, handle: UInt32, priority: UInt32) throws(BPFError) {
        BPFLog.install()
        try validate("bpf_tc_detach", handle: handle, priority: priority)
        let r = withHook(interfaceIndex, point.raw) { hook, opts in
            opts.pointee.handle = handle
            opts.pointee.priority = priority
            return bpf_tc_detach(hook, opts)
        }
        try check(r, "bpf_tc_detach", "ifindex \(interfaceIndex) \(point) handle \(handle) priority \(priority)")
    }
}
