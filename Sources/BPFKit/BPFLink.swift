import CLibBPF
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What the kernel reports about a link.
public struct LinkInfo: Sendable, Equatable {
    public var id: UInt32
    /// libbpf's name for the link type (`xdp`, `tcx`, …).
    public var type: String
    public var typeRawValue: UInt32
    /// The attached program.
    public var programID: UInt32
    /// For XDP links: the interface (0 once the interface is gone or the link was detached).
    public var interfaceIndex: Int32?
}

/// A BPF link (`bpf_link_create`): an attachment that lives while its fd or a bpffs pin exists.
///
/// Closing the last fd of an unpinned link detaches the program; a pinned link survives the
/// process and goes away when its pin is removed. ``detach()`` forcibly detaches even if pinned.
///
/// Thread safety: the only state is the fd, guarded by a `Mutex`; link operations are syscalls.
public final class BPFLink: Sendable {
    private let state: Mutex<Int32>

    init(fd: Int32) { state = Mutex(fd) }

    deinit {
        let fd = state.withLock { $0 }
        if fd >= 0 { Glibc.close(fd) }
    }

    /// The link's fd, or -1 after ``close()``.
    public var fd: Int32 { state.withLock { $0 } }

    /// Opens a pinned link (`bpf_obj_get`).
    public static func openPinned(_ path: String) throws(BPFError) -> BPFLink {
        BPFLink(fd: try check(path.withCString { bpf_obj_get($0) }, "bpf_obj_get", "pin \(path)"))
    }

    /// Opens a link by id (`bpf_link_get_fd_by_id`).
    public static func open(id: UInt32) throws(BPFError) -> BPFLink {
        BPFLink(fd: try check(bpf_link_get_fd_by_id(id), "bpf_link_get_fd_by_id", "link id \(id)"))
    }

    /// Pins the link (`bpf_obj_pin`), so it outlives this process; EEXIST if the path exists.
    public func pin(at path: String) throws(BPFError) {
        let fd = try liveFD("bpf_obj_pin")
        try check(path.withCString { bpf_obj_pin(fd, $0) }, "bpf_obj_pin", "link at \(path)")
    }

    /// Atomically replaces the attached program (`bpf_link_update`): no moment without a program.
    ///
    /// - Parameter expected: if given, the update fails (EPERM) unless this is the program
    ///   currently attached (`BPF_F_REPLACE`), guarding against concurrent updaters.
    public func update(program: BPFProgram, expecting expected: BPFProgram? = nil) throws(BPFError) {
        let fd = try liveFD("bpf_link_update")
        let r = withOptions(bpf_link_update_opts.self) { opts in
            if let expected {
                opts.pointee.flags = UInt32(BPF_F_REPLACE)
                opts.pointee.old_prog_fd = UInt32(bitPattern: expected.fd)
            }
            return bpf_link_update(fd, program.fd, opts)
        }
        try check(r, "bpf_link_update", "link fd \(fd) to program \(program.name)")
    }

    /// Detaches the program now (`bpf_link_detach`), even if the link is pinned, then closes
    /// this fd. Best effort: returns false if the kernel refused (see ``detachOrThrow()``).
    /// The link object itself stays (defunct) until its other fds and pins are gone.
    @discardableResult
    public func detach() -> Bool {
        defer { close() }
        do {
            try detachOrThrow()
            return true
        } catch {
            return false
        }
    }

    /// Detaches the program now (`bpf_link_detach`), even if the link is pinned, and reports
    /// failures. The fd stays open (``info()`` then shows no interface).
    public func detachOrThrow() throws(BPFError) {
        let fd = try liveFD("bpf_link_detach")
        try check(bpf_link_detach(fd), "bpf_link_detach", "link fd \(fd)")
    }

    /// Closes this fd. An unpinned link with no other fds is detached by this.
    public func close() {
        let fd = state.withLock { s -> Int32 in
            defer { s = -1 }
            return s
        }
        if fd >= 0 { Glibc.close(fd) }
    }

    /// What the kernel reports about the link.
    public func info() throws(BPFError) -> LinkInfo {
        let fd = try liveFD("bpf_obj_get_info_by_fd")
        return try BPFLink.linkInfo(fd: fd, context: "link fd \(fd)")
    }

    static func linkInfo(fd: Int32, context: String) throws(BPFError) -> LinkInfo {
        let (r, info) = withZeroed(bpf_link_info.self) { p in
            var len = UInt32(MemoryLayout<bpf_link_info>.size)
            return (bpf_obj_get_info_by_fd(fd, p, &len), p.pointee)
        }
        try check(r, "bpf_obj_get_info_by_fd", context)
        let name = libbpf_bpf_link_type_str(bpf_link_type(rawValue: info.type)).map { String(cString: $0) } ?? "link_type(\(info.type))"
        let isXDP = info.type == BPF_LINK_TYPE_XDP.rawValue
        return LinkInfo(id: info.id, type: name, typeRawValue: info.type, programID: info.prog_id,
                        interfaceIndex: isXDP ? Int32(bitPattern: info.xdp.ifindex) : nil)
    }

    private func liveFD(_ operation: String) throws(BPFError) -> Int32 {
        let fd = state.withLock { $0 }
        guard fd >= 0 else { throw BPFError(operation: operation, errno: EBADF, context: "link already closed") }
        return fd
    }
}
