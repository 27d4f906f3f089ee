import CIcmpwallShim

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - bpffs

/// The BPF filesystem, where maps, programs and links are pinned.
public enum BPFFS {
    /// `BPF_FS_MAGIC`.
    public static let magic: UInt = 0xcafe_4a11

    /// Whether `path` is on a bpffs mount: the file system type of the mount that contains it
    /// (per /proc/self/mountinfo; Glibc's Swift module does not export statfs).
    public static func isMounted(at path: String = "/sys/fs/bpf") -> Bool {
        fileSystemType(of: path) == "bpf"
    }

    /// The type of the innermost mount containing `path` (`"bpf"`, `"sysfs"`, …).
    public static func fileSystemType(of path: String) -> String? {
        var resolved = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let p = realpath(path, &resolved) != nil
            ? String(decoding: resolved.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            : path
        guard let f = fopen("/proc/self/mountinfo", "r") else { return nil }
        defer { fclose(f) }
        var best: (length: Int, type: String)? = nil
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, Int32(line.count), f) != nil {
            let text = String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard let entry = parseMountInfo(line: text) else { continue }
            let mp = entry.mountPoint
            let contains = mp == "/" || p == mp || p.hasPrefix(mp + "/")
            // Later lines are mounted on top of earlier ones: >= keeps the last of equal length.
            if contains, mp.count >= (best?.length ?? -1) { best = (mp.count, entry.type) }
        }
        return best?.type
    }

    /// Mount point and file system type from one /proc/self/mountinfo line.
    static func parseMountInfo(line: String) -> (mountPoint: String, type: String)? {
        let fields = line.split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count >= 10, let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count else { return nil }
        return (unescapeMountField(String(fields[4])), String(fields[dash + 1]))
    }

    private static func unescapeMountField(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count, let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether this process runs in a mount namespace other than PID 1's, as under `ip netns exec` (which unshares
    /// the mount namespace to mount a /sys of its own, without /sys/fs/bpf): a bpffs mounted there vanishes with the
    /// process, and every pin in it. Where PID 1's namespace cannot be read (a sandbox's init), the parent's stands in:
    /// `ip netns exec` unshares and then runs the command in its own process, so the parent is the caller. nil when
    /// neither can be read.
    public static func inPrivateMountNamespace() -> Bool? {
        func target(_ path: String) -> String? {
            var buffer = [CChar](repeating: 0, count: 256)
            let n = readlink(path, &buffer, buffer.count - 1)
            guard n > 0 else { return nil }
            return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        guard let mine = target("/proc/self/ns/mnt") else { return nil }
        if let initial = target("/proc/1/ns/mnt") { return mine != initial }
        if let parent = target("/proc/\(getppid())/ns/mnt") { return mine != parent }
        return nil
    }

    /// Mounts bpffs at `path` (creating the directory) unless it is already a bpffs mount.
    /// Mounting needs CAP_SYS_ADMIN. Returns true if it mounted.
    @discardableResult
    public static func ensureMounted(at path: String = "/sys/fs/bpf") throws(BPFError) -> Bool {
        if isMounted(at: path) { return false }
        try makeDirectory(path, mode: 0o755)
        let r = mount("bpf", path, "bpf", 0, "mode=0700")
        _ = try checkErrno(r, "mount", "bpffs at \(path)")
        guard isMounted(at: path) else {
            throw BPFError(operation: "statfs", errno: EINVAL, context: "\(path) is still not bpffs after mount")
        }
        return true
    }

    /// `mkdir -p` (existing directories are fine).
    public static func makeDirectory(_ path: String, mode: mode_t = 0o700) throws(BPFError) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, mode) != 0 {
                let e = currentErrno()
                if e == EEXIST {
                    var st = stat()
                    if stat(prefix, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { continue }
                    throw BPFError(operation: "mkdir", errno: ENOTDIR, context: prefix)
                }
                throw BPFError(operation: "mkdir", errno: e, context: prefix)
            }
        }
    }

    /// Removes a pin (a file in bpffs). Removing a link's last pin detaches it if no fd holds it.
    /// - Parameter ignoreMissing: treat ENOENT as success.
    public static func unpin(_ path: String, ignoreMissing: Bool = false) throws(BPFError) {
        if unlink(path) != 0 {
            let e = currentErrno()
            if e == ENOENT && ignoreMissing { return }
            throw BPFError(operation: "unlink", errno: e, context: "pin \(path)")
        }
    }

    /// Whether something exists at `path`.
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// Recursively removes a directory of pins (like `rm -r`; symlinks are not followed).
    /// A missing path is not an error.
    public static func removeTree(_ path: String) throws(BPFError) {
        var st = stat()
        if lstat(path, &st) != 0 {
            let e = currentErrno()
            if e == ENOENT { return }
            throw BPFError(operation: "lstat", errno: e, context: path)
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            guard let dir = opendir(path) else {
                throw BPFError(operation: "opendir", errno: currentErrno(), context: path)
            }
            var names: [String] = []
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(dir)
            for name in names { try removeTree(path + "/" + name) }
            _ = try checkErrno(rmdir(path), "rmdir", path)
        } else {
            _ = try checkErrno(unlink(path), "unlink", path)
        }
    }
}

// MARK: - Interfaces

/// Interface names and indexes in the calling thread's network namespace.
public enum Interfaces {
    /// `if_nametoindex`; throws ENODEV "interface X does not exist".
    public static func index(named name: String) throws(BPFError) -> Int32 {
        let i = if_nametoindex(name)
        if i == 0 {
            let e = currentErrno()
            throw BPFError(operation: "if_nametoindex", errno: e == 0 ? ENODEV : e, context: "interface \(name) does not exist")
        }
        return Int32(bitPattern: i)
    }

    /// `if_indextoname`; throws ENXIO/ENODEV if there is no such interface.
    public static func name(index: Int32) throws(BPFError) -> String {
        var buf = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(UInt32(bitPattern: index), &buf) != nil else {
            let e = currentErrno()
            throw BPFError(operation: "if_indextoname", errno: e == 0 ? ENODEV : e, context: "interface index \(index) does not exist")
        }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

// MARK: - Network namespaces

/// Runs code inside a network namespace.
///
/// `setns(2)` changes only the calling thread, so the body runs on a fresh dedicated thread that
/// enters the namespace and ends afterwards; the calling thread waits (it blocks, so keep bodies
/// short when calling from Swift concurrency). Everything namespace-relative in the body —
/// interface indexes, netlink (XDP query, tc), `if_nametoindex`, live-frame test runs — sees the
/// namespace. bpffs pins stay visible (unlike `ip netns exec`, nothing is remounted).
public enum NetworkNamespace {
    /// Runs `body` in `/run/netns/NAME` (as created by `ip netns add NAME`).
    public static func run<T>(in name: String, _ body: @Sendable () throws -> T) throws -> T {
        try run(atPath: "/run/netns/\(name)", body)
    }

    /// Runs `body` in the namespace at `path` (`/run/netns/NAME`, `/proc/PID/ns/net`).
    public static func run<T>(atPath path: String, _ body: @Sendable () throws -> T) throws -> T {
        try withoutActuallyEscaping(body) { body in
            try runOnThread(path: path, body)
        }
    }

    private static func runOnThread<T>(path: String, _ body: @escaping @Sendable () throws -> T) throws -> T {
        let task = NamespaceTask(path: path, body: body)
        let context = Unmanaged.passRetained(task as NamespaceTaskBase).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let task = Unmanaged<NamespaceTaskBase>.fromOpaque(raw!).takeRetainedValue()
            task.execute()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<NamespaceTaskBase>.fromOpaque(context).release()
            throw BPFError(operation: "pthread_create", errno: rc, context: "thread for network namespace \(path)")
        }
        pthread_join(thread, nil)
        return try task.result!.get()
    }
}

/// Type-erased base so the C thread entry point can call `execute()`.
class NamespaceTaskBase: @unchecked Sendable {
    func execute() {}
}

/// Handed to exactly one thread, read by the caller only after `pthread_join` (which orders the
/// memory accesses); never accessed concurrently, hence `@unchecked Sendable`.
final class NamespaceTask<T>: NamespaceTaskBase, @unchecked Sendable {
    let path: String
    let body: @Sendable () throws -> T
    var result: Result<T, any Error>?

    init(path: String, body: @escaping @Sendable () throws -> T) {
        self.path = path
        self.body = body
    }

    override func execute() {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            result = .failure(BPFError(operation: "open", errno: currentErrno(), context: "network namespace \(path)"))
            return
        }
        let r = icw_setns_net(fd)
        close(fd)
        guard r == 0 else {
            result = .failure(BPFError(operation: "setns", errno: -r, context: "network namespace \(path)"))
            return
        }
        result = Result { try body() }
    }
}

// MARK: - Capabilities

/// Linux capabilities BPFKit's operations need.
public enum Capability: Int, CaseIterable, Sendable, CustomStringConvertible {
    case netAdmin = 12
    case sysAdmin = 21
    case perfmon = 38
    case bpf = 39

    public var description: String {
        switch self {
        case .netAdmin: return "CAP_NET_ADMIN"
        case .sysAdmin: return "CAP_SYS_ADMIN"
        case .perfmon: return "CAP_PERFMON"
        case .bpf: return "CAP_BPF"
        }
    }
}

/// Checks the process's effective capabilities (`CapEff` in /proc/self/status).
public enum Capabilities {
    /// The effective capability bit mask, or nil if /proc is unreadable.
    public static func effectiveMask() -> UInt64? {
        guard let f = fopen("/proc/self/status", "r") else { return nil }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, Int32(line.count), f) != nil {
            let s = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if let mask = parseCapEff(line: s) { return mask }
        }
        return nil
    }

    /// Parses a `CapEff:\t000001ffffffffff` line.
    public static func parseCapEff(line: String) -> UInt64? {
        guard line.hasPrefix("CapEff:") else { return nil }
        let hex = line.dropFirst("CapEff:".count).trimmingPrefix(while: { $0 == " " || $0 == "\t" })
            .prefix { $0.isHexDigit }
        return UInt64(hex, radix: 16)
    }

    /// Whether the process has `cap` (CAP_SYS_ADMIN also grants CAP_BPF's and CAP_PERFMON's powers).
    public static func has(_ cap: Capability, mask: UInt64? = effectiveMask()) -> Bool {
        guard let mask else { return false }
        func bit(_ c: Capability) -> Bool { mask & (1 << UInt64(c.rawValue)) != 0 }
        switch cap {
        case .bpf, .perfmon: return bit(cap) || bit(.sysAdmin)
        default: return bit(cap)
        }
    }

    /// Names of the needed capabilities the process lacks, e.g. `["CAP_BPF", "CAP_NET_ADMIN"]`.
    /// By default checks CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON and CAP_SYS_ADMIN (for mounting bpffs).
    public static func missing(_ needed: [Capability] = [.bpf, .netAdmin, .perfmon, .sysAdmin], mask: UInt64? = effectiveMask()) -> [String] {
        needed.filter { !has($0, mask: mask) }.map(\.description)
    }
}
