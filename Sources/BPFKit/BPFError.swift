#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An error from a BPF, netlink or bpffs operation, carrying the failing call, the errno it
/// produced, what it was working on, and (for program loads) the kernel verifier's log.
///
/// `description` reads like `bpf_obj_get (pin /sys/fs/bpf/x): No such file or directory [ENOENT: …]`
/// and adds a hint for the errno values whose usual cause is known (privileges, missing pins,
/// busy interfaces, unsupported XDP modes).
public struct BPFError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The C call (or BPFKit check) that failed, e.g. `bpf_object__load`.
    public var operation: String
    /// The positive errno value of the failure (EPERM, ENOENT, …).
    public var errno: Int32
    /// What the call was working on: `program icmpwall_xdp`, `map icw_rules key 3`, `interface veth0`.
    public var context: String
    /// The verifier's log for the program that failed to load, when there is one.
    public var verifierLog: String?
    /// libbpf's own warnings emitted on this thread while the operation ran (see ``BPFLog``).
    public var libbpfMessages: [String]

    /// Creates an error. `errno` must be positive.
    public init(
        operation: String, errno: Int32, context: String = "",
        verifierLog: String? = nil, libbpfMessages: [String] = []
    ) {
        self.operation = operation
        self.errno = errno
        self.context = context
        self.verifierLog = verifierLog
        self.libbpfMessages = libbpfMessages
    }

    /// The symbolic name of ``errno`` (`"EPERM"`), or `"errno N"` for rare values.
    public var errnoName: String { BPFError.symbolicName(errno) }

    /// `strerror(errno)`.
    public var message: String {
        guard let s = strerror(errno) else { return "errno \(errno)" }
        return String(cString: s)
    }

    /// What usually causes ``errno`` for this kind of operation, or nil when nothing useful is known.
    public var hint: String? {
        let op = operation
        switch errno {
        case EPERM:
            // Mounting bpffs is the one step that needs CAP_SYS_ADMIN; do not blame it elsewhere.
            let needed: [Capability] = op == "mount" ? [.sysAdmin] : [.bpf, .netAdmin, .perfmon]
            let missing = Capabilities.missing(needed)
            let which = missing.isEmpty
                ? "capabilities look present; check kernel.unprivileged_bpf_disabled, LSMs and the memlock limit"
                : "missing \(missing.joined(separator: ", "))"
            return "EPERM: BPF needs CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN) to load, CAP_NET_ADMIN to attach, CAP_SYS_ADMIN to mount bpffs; \(which)"
        case ENOENT:
            if op.contains("obj_get") || op.contains("pin") {
                return "ENOENT: nothing is pinned at that path (is bpffs mounted at /sys/fs/bpf? `ip netns exec` hides pins; nsenter --net does not)"
            }
            if op.contains("find") { return "ENOENT: no such name in the BPF object" }
            if op.contains("tc_") { return "ENOENT: no such tc filter or clsact hook on that interface" }
            return "ENOENT: the object, entry or interface does not exist"
        case EEXIST:
            if op.contains("pin") { return "EEXIST: something is already pinned at that path; unpin it first" }
            if op.contains("tc_") { return "EEXIST: a filter with that handle and priority already exists (use replace)" }
            return "EEXIST: it already exists (an existing attachment, pin or map entry)"
        case EBUSY:
            return "EBUSY: the interface already has an XDP program attached another way (netlink attach vs bpf_link, or another mode); detach it first"
        case EOPNOTSUPP:
            return "EOPNOTSUPP: the driver or kernel does not support this; for XDP try generic (skb) mode"
        case EINVAL:
            if op.contains("xdp") || op.contains("link_create") {
                return "EINVAL: the program type/attach type does not fit, or the driver rejects this XDP mode (try generic mode, check the MTU)"
            }
            if op.contains("load") {
                return "EINVAL: the kernel rejected the object (unsupported map/program feature, BTF problem or verifier error; see verifierLog and libbpfMessages)"
            }
            if op.contains("map") { return "EINVAL: wrong key/value size or flags for this map type" }
            return "EINVAL: invalid argument"
        case EACCES:
            return verifierLog == nil
                ? "EACCES: permission denied (verifier rejection or a read-only map/pin)"
                : "EACCES: the verifier rejected the program; see verifierLog"
        case ERANGE where op.contains("xdp") || op.contains("link_create"):
            return "ERANGE: the interface's MTU is too large for XDP in this mode (native XDP needs each frame to fit a page, about 3.5 KB on veth): lower the MTU or use generic mode"
        case ENODEV:
            return "ENODEV: the interface does not exist in this network namespace"
        case ENOSPC:
            return "ENOSPC: out of space (map full, or the verifier log buffer was too small)"
        case E2BIG:
            return "E2BIG: too big (program too complex, map full, or a value larger than the kernel accepts)"
        case ENOMEM:
            return "ENOMEM: out of memory (map too large for the memory cgroup or memlock limit)"
        case 524:
            return "ENOTSUPP (kernel-internal 524): this kernel lacks a feature the program or map uses"
        default:
            return nil
        }
    }

    /// The last lines of the verifier log that explain the rejection (without the trailing statistics).
    public var verifierSummary: String? {
        guard let log = verifierLog else { return nil }
        let lines = log.split(separator: "\n", omittingEmptySubsequences: true)
            .map(String.init)
            .filter { !$0.hasPrefix("processed ") && !$0.hasPrefix("verification time") && !$0.hasPrefix("stack depth") }
        guard !lines.isEmpty else { return nil }
        return lines.suffix(3).joined(separator: " | ")
    }

    public var description: String {
        var s = operation
        if !context.isEmpty { s += " (\(context))" }
        s += ": \(message)"
        if let hint { s += " [\(hint)]" }
        if let summary = verifierSummary { s += "\nverifier: \(summary)" }
        return s
    }

    static func symbolicName(_ e: Int32) -> String {
        switch e {
        case EPERM: return "EPERM"
        case ENOENT: return "ENOENT"
        case ESRCH: return "ESRCH"
        case EINTR: return "EINTR"
        case EIO: return "EIO"
        case E2BIG: return "E2BIG"
        case EBADF: return "EBADF"
        case EAGAIN: return "EAGAIN"
        case ENOMEM: return "ENOMEM"
        case EACCES: return "EACCES"
        case EFAULT: return "EFAULT"
        case EBUSY: return "EBUSY"
        case EEXIST: return "EEXIST"
        case ENODEV: return "ENODEV"
        case ENOTDIR: return "ENOTDIR"
        case EISDIR: return "EISDIR"
        case EINVAL: return "EINVAL"
        case ENOSPC: return "ENOSPC"
        case ERANGE: return "ERANGE"
        case 524: return "ENOTSUPP"
        case EOPNOTSUPP: return "EOPNOTSUPP"
        case ENOTEMPTY: return "ENOTEMPTY"
        case ELOOP: return "ELOOP"
        case ENAMETOOLONG: return "ENAMETOOLONG"
        case ENOSYS: return "ENOSYS"
        default: return "errno \(e)"
        }
    }
}

// MARK: - Internal helpers for calling C

/// The current thread's errno, read immediately after a failing call.
@inline(__always)
func currentErrno() -> Int32 { Glibc.errno }

/// Converts a libbpf-style return value (negative errno on failure; libbpf 1.x also sets errno)
/// into a thrown ``BPFError``. Returns the non-negative result (often an fd).
@discardableResult
@inline(__always)
func check(
    _ result: Int32, _ operation: @autoclosure () -> String, _ context: @autoclosure () -> String,
    messagesSince mark: BPFLog.Mark? = nil
) throws(BPFError) -> Int32 {
    if result >= 0 { return result }
    // libbpf 1.x returns -errno from every int-returning API (and also sets errno), so -1 is EPERM.
    let e = -result
    throw BPFError(
        operation: operation(), errno: e, context: context(),
        libbpfMessages: mark.map { BPFLog.messages(since: $0) } ?? [])
}

/// For calls that return -1 and set errno (libc).
@inline(__always)
func checkErrno(
    _ result: Int32, _ operation: @autoclosure () -> String, _ context: @autoclosure () -> String
) throws(BPFError) -> Int32 {
    if result >= 0 { return result }
    let e = currentErrno()
    throw BPFError(operation: operation(), errno: e == 0 ? EIO : e, context: context())
}

extension String {
    /// Reads a fixed-size C char array (e.g. `char name[16]`) imported as a tuple.
    init<T>(fixedCString tuple: T) {
        self = withUnsafeBytes(of: tuple) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }
}

/// Runs `body` with a libbpf options struct (`bpf_*_opts`, `bpf_tc_hook`) in zeroed memory, its
/// leading `size_t sz` already set to the C `sizeof`.
///
/// libbpf rejects options whose bytes past the last field it knows are non-zero ("has non-zero
/// extra bytes" → EINVAL). Those bytes are the struct's tail padding (e.g. `bpf_tc_opts` has 4,
/// `bpf_xdp_query_opts` 7), and Swift does not keep padding bytes zero when it copies a struct
/// value, so a `var o = bpf_tc_opts()` on the stack fails at random. Build options only through
/// this function and set fields in place (`p.pointee.field = …` stores just that field).
func withOptions<T, R, E: Error>(_: T.Type, _ body: (UnsafeMutablePointer<T>) throws(E) -> R) throws(E) -> R {
    try withZeroed(T.self) { (p: UnsafeMutablePointer<T>) throws(E) -> R in
        UnsafeMutableRawPointer(p).storeBytes(of: MemoryLayout<T>.size, as: Int.self)
        return try body(p)
    }
}

/// Runs `body` with a `T` in zeroed memory, padding included (for structs the kernel reads,
/// such as `bpf_prog_info`, whose unnamed pad fields Swift does not keep zero).
func withZeroed<T, R, E: Error>(_: T.Type, _ body: (UnsafeMutablePointer<T>) throws(E) -> R) throws(E) -> R {
    let raw = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<T>.stride, alignment: max(MemoryLayout<T>.alignment, 8))
    defer { raw.deallocate() }
    raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.stride)
    return try body(raw.bindMemory(to: T.self, capacity: 1))
}
