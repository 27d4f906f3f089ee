import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What a running agent records about an interface it manages (`/run/icmpwall/IF.agent`, JSON).
public struct AgentOwnershipRecord: Codable, Sendable, Equatable {
    public var pid: Int32
    public var interface: String
    /// The policy file the agent enforces on the interface ("<embedded>/edge-default.yaml" for the built-in one).
    public var policy: String
    /// The agent's config file, when it was started with one.
    public var config: String?

    public init(pid: Int32, interface: String, policy: String, config: String?) {
        self.pid = pid
        self.interface = interface
        self.policy = policy
        self.config = config
    }
}

/// The claim an `icmpwall agent` holds on an interface, so that `icmpwall apply` and a second agent do not fight it.
///
/// The claim is a file `RUN_DIR/IF.agent` (RUN_DIR is /run/icmpwall, or `$ICMPWALL_RUN_DIR`) holding the agent's
/// pid and policy path, and an exclusive `flock` on it. The lock, not the file, is what counts: it goes away with the
/// process however it ends (kill -9 included), so a record left by a dead agent is stale and ignored.
public final class AgentOwnership: @unchecked Sendable {
    public let path: String
    public let record: AgentOwnershipRecord
    private var fd: Int32

    /// Where claims live: `$ICMPWALL_RUN_DIR`, else /run/icmpwall.
    public static var defaultRunDirectory: String {
        let env = ProcessInfo.processInfo.environment["ICMPWALL_RUN_DIR"] ?? ""
        return env.isEmpty ? "/run/icmpwall" : env
    }

    public static func path(interface: String, runDirectory: String = defaultRunDirectory) -> String {
        "\(runDirectory)/\(interface).agent"
    }

    private init(path: String, record: AgentOwnershipRecord, fd: Int32) {
        self.path = path
        self.record = record
        self.fd = fd
    }

    deinit { release() }

    /// Claims `record.interface` for this process. Fails with the owner's pid and policy when a live agent holds it.
    public static func claim(_ record: AgentOwnershipRecord, runDirectory: String = defaultRunDirectory) throws(DataplaneError) -> AgentOwnership {
        let path = path(interface: record.interface, runDirectory: runDirectory)
        do {
            try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
        } catch {
            throw .system("cannot create \(runDirectory) for the agent's interface claims: \(error.localizedDescription)")
        }
        // A checker (`apply`) holds a shared lock for an instant: retry briefly before calling the claim taken.
        for _ in 0..<40 {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                throw .system("cannot open \(path): \(String(cString: strerror(errno)))")
            }
            if flock(fd, LOCK_EX | LOCK_NB) != 0 {
                let e = errno
                close(fd)
                if e == EWOULDBLOCK || e == EINTR {
                    usleep(25_000)
                    continue
                }
                throw .system("cannot lock \(path): \(String(cString: strerror(e)))")
            }
            // The previous owner may have removed the file between our open and our lock: lock the file at the path.
            var held = stat(), current = stat()
            if fstat(fd, &held) != 0 || stat(path, &current) != 0 || held.st_ino != current.st_ino || held.st_dev != current.st_dev {
                close(fd)
                continue
            }
            var data = (try? JSONEncoder().encode(record)) ?? Data()
            data.append(0x0a)
            _ = ftruncate(fd, 0)
            let written = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
            if written != data.count {
                close(fd)
                throw .system("cannot write \(path): \(String(cString: strerror(errno)))")
            }
            return AgentOwnership(path: path, record: record, fd: fd)
        }
        if let owner = owner(of: record.interface, runDirectory: runDirectory) {
            throw .invalidInput("interface \(record.interface) is already managed by icmpwall agent pid \(owner.pid) (policy \(owner.policy)); one agent per interface (claim \(path))")
        }
        throw .system("cannot claim \(record.interface): \(path) stays locked")
    }

    /// Gives the claim up (removes the file, then unlocks). Idempotent.
    public func release() {
        guard fd >= 0 else { return }
        unlink(path)
        close(fd)
        fd = -1
    }

    /// The live agent managing `interface`, or nil (no claim, or a stale one of an agent that is gone).
    public static func owner(of interface: String, runDirectory: String = defaultRunDirectory) -> AgentOwnershipRecord? {
        let path = path(interface: interface, runDirectory: runDirectory)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil  // nobody holds it: the agent that wrote it is gone
        }
        var bytes = [UInt8](repeating: 0, count: 8192)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        if n > 0, let record = try? JSONDecoder().decode(AgentOwnershipRecord.self, from: Data(bytes.prefix(n))) {
            return record
        }
        // Locked but not written yet: an agent is starting.
        return AgentOwnershipRecord(pid: 0, interface: interface, policy: "?", config: nil)
    }

    /// Throws when a live agent other than this process manages `interface` (used by `Dataplane.apply`).
    public static func refuseIfManaged(interface: String, runDirectory: String = defaultRunDirectory) throws(DataplaneError) {
        guard let owner = owner(of: interface, runDirectory: runDirectory), owner.pid != getpid() else { return }
        let pid = owner.pid > 0 ? "\(owner.pid)" : "PID"
        throw .invalidInput("interface \(interface) is managed by icmpwall agent pid \(pid): it enforces \(owner.policy). Change the policy there (the agent reloads it when the file changes) or edit it and send the agent SIGHUP (`kill -HUP \(pid)`, or `systemctl reload icmpwall`); `icmpwall apply` would fight the agent. stats, status and detach work beside it")
    }
}
