import BPFKit
import CIcmpwallShim
import Foundation

/// Runs external tools (ip, ping, nsenter, tc, nft) with argument vectors: no shell, no string
/// splicing of user input.
public enum Tool {
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs `arguments[0]` (looked up in PATH) and waits, killing it after `timeout` seconds.
    ///
    /// Built on posix_spawnp, poll and waitpid rather than Foundation's Process: Process learns that its child
    /// exited through a CFSocket wake-up pair on 127.0.0.1, which cannot be made in a network namespace whose
    /// loopback is down, and then waits forever.
    @discardableResult
    public static func run(_ arguments: [String], timeout: TimeInterval = 60, check: Bool = true) throws -> Result {
        precondition(!arguments.isEmpty, "no command")
        var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
        guard pipe(&outPipe) == 0, pipe(&errPipe) == 0 else {
            throw DataplaneError.system("pipe: \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        for fd in outPipe + errPipe { posix_spawn_file_actions_addclose(&actions, fd) }

        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid = pid_t()
        let spawned = posix_spawnp(&pid, arguments[0], &actions, nil, argv, envp)
        close(outPipe[1])
        close(errPipe[1])
        defer { close(outPipe[0]); close(errPipe[0]) }
        guard spawned == 0 else {
            throw DataplaneError.system("cannot run `\(arguments[0])`: \(String(cString: strerror(spawned)))")
        }

        // Drain both pipes until they close (the child and anything it started have exited) or time runs out.
        var out = [UInt8](), err = [UInt8]()
        var open = [outPipe[0], errPipe[0]]
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        var timedOut = false
        while !open.isEmpty {
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { timedOut = true; break }
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&fds, nfds_t(fds.count), Int32(min(remaining, 1) * 1000))
            if ready < 0 && errno != EINTR { break }
            for entry in fds where entry.revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    if entry.fd == outPipe[0] { out += buffer[0..<n] } else { err += buffer[0..<n] }
                } else if n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN) {
                    open.removeAll { $0 == entry.fd }
                }
            }
        }
        if timedOut { kill(pid, SIGKILL) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift does not import.
        let exitCode: Int32 = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let result = Result(status: exitCode, stdout: String(decoding: out, as: UTF8.self),
                            stderr: String(decoding: err, as: UTF8.self) + (timedOut ? "\n(killed after \(Int(timeout)) s)" : ""))
        if check && result.status != 0 {
            throw DataplaneError.system("`\(arguments.joined(separator: " "))` failed (exit \(result.status)): \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return result
    }

    /// True when `name` is an executable in PATH (looked up as posix_spawnp would, without a shell).
    public static func exists(_ name: String) -> Bool {
        if name.contains("/") { return access(name, X_OK) == 0 }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return path.split(separator: ":").contains { access("\($0)/\(name)", X_OK) == 0 }
    }
}

/// Two network namespaces joined by a veth pair, with documentation addresses: the "client" sends,
/// the "server" carries icmpwall. Names share a unique prefix; `destroy()` removes everything (deleting
/// a namespace removes its veth end, its XDP program and its qdiscs).
public final class LabTopology: @unchecked Sendable {
    public let prefix: String
    public let clientNamespace: String
    public let serverNamespace: String
    public let clientInterface: String
    public let serverInterface: String
    public let clientIPv4 = "192.0.2.1"
    public let serverIPv4 = "192.0.2.2"
    public let clientIPv6 = "2001:db8::1"
    public let serverIPv6 = "2001:db8::2"
    public private(set) var clientMAC = ""
    public private(set) var serverMAC = ""
    private var destroyed = false
    /// Held for the whole of destroy(): a second caller (a signal handler racing normal cleanup) waits
    /// until the namespaces are really gone instead of returning early.
    private let destroyLock = NSLock()

    /// A prefix unique to this process and moment: short enough for interface names (15 bytes).
    public static func uniquePrefix(_ base: String = "icw") -> String {
        String(base.prefix(6)) + String(format: "%04d%02d", Int(getpid()) % 10_000, Int.random(in: 0..<100))
    }

    public init(prefix: String = LabTopology.uniquePrefix()) throws {
        guard prefix.utf8.count <= 12 else {
            throw DataplaneError.invalidInput("namespace prefix \(prefix) is longer than 12 bytes (interface names hold 15)")
        }
        self.prefix = prefix
        clientNamespace = "\(prefix)-client"
        serverNamespace = "\(prefix)-server"
        clientInterface = "\(prefix)c"
        serverInterface = "\(prefix)s"
        do {
            try Tool.run(["ip", "netns", "add", clientNamespace])
            try Tool.run(["ip", "netns", "add", serverNamespace])
            for ns in [clientNamespace, serverNamespace] { try ip(ns, ["link", "set", "lo", "up"]) }
            try createLink()
        } catch {
            destroy()
            throw error
        }
    }

    /// Creates the veth pair between the namespaces, with the addresses (again, after `deleteLink()`: new MACs).
    public func createLink() throws {
        try Tool.run(["ip", "link", "add", "name", clientInterface, "netns", clientNamespace, "type", "veth",
                      "peer", "name", serverInterface, "netns", serverNamespace])
        for (ns, ifname, v4, v6) in [(clientNamespace, clientInterface, clientIPv4, clientIPv6),
                                     (serverNamespace, serverInterface, serverIPv4, serverIPv6)] {
            try ip(ns, ["addr", "add", "\(v4)/24", "dev", ifname])
            try ip(ns, ["-6", "addr", "add", "\(v6)/64", "dev", ifname, "nodad"])
            // An MTU above 1500 lets the lab send oversized echoes unfragmented; native XDP on veth needs frames
            // to fit a page, so it stays under 3.5 KB.
            try ip(ns, ["link", "set", ifname, "mtu", "3000", "up"])
        }
        clientMAC = try mac(clientNamespace, clientInterface)
        serverMAC = try mac(serverNamespace, serverInterface)
    }

    /// Deletes the veth pair (both ends), as an interface removed underneath icmpwall.
    public func deleteLink() throws {
        try ip(serverNamespace, ["link", "del", serverInterface])
    }

    deinit { destroy() }

    /// Removes both namespaces (and with them the veth pair and anything attached to it).
    public func destroy() {
        destroyLock.lock()
        defer { destroyLock.unlock() }
        if destroyed { return }
        destroyed = true
        _ = try? Tool.run(["ip", "netns", "del", clientNamespace], check: false)
        _ = try? Tool.run(["ip", "netns", "del", serverNamespace], check: false)
    }

    /// `ip -n NS ...`
    @discardableResult
    public func ip(_ namespace: String, _ arguments: [String]) throws -> Tool.Result {
        try Tool.run(["ip", "-n", namespace] + arguments)
    }

    /// Runs a command inside a namespace with nsenter (unlike `ip netns exec`, it keeps /sys and so the
    /// bpffs pins visible).
    @discardableResult
    public func run(in namespace: String, _ arguments: [String], timeout: TimeInterval = 60, check: Bool = true) throws -> Tool.Result {
        try Tool.run(["nsenter", "--net=/run/netns/\(namespace)"] + arguments, timeout: timeout, check: check)
    }

    private func mac(_ namespace: String, _ ifname: String) throws -> String {
        let out = try ip(namespace, ["-o", "link", "show", ifname]).stdout
        guard let range = out.range(of: "link/ether ") else { throw DataplaneError.system("no MAC address on \(ifname)") }
        return String(out[range.upperBound...].prefix(17))
    }

    /// A raw packet socket on an interface inside a namespace.
    public func packetSocket(namespace: String, interface: String, receive: Bool) throws -> PacketSocket {
        try NetworkNamespace.run(in: namespace) { () throws -> PacketSocket in
            try PacketSocket(interface: interface, receive: receive)
        }
    }
}

/// An AF_PACKET socket bound to one interface: sends frames exactly as built, receives what arrives
/// (what XDP let through). The socket keeps the namespace it was opened in.
public final class PacketSocket: @unchecked Sendable {
    public let fd: Int32
    public let interfaceIndex: Int32

    public init(interface: String, receive: Bool) throws {
        let index = Int32(if_nametoindex(interface))
        guard index > 0 else { throw DataplaneError.invalidInput("interface \(interface) does not exist") }
        interfaceIndex = index
        let fd = icw_packet_open(index, receive ? 1 : 0)
        guard fd >= 0 else { throw DataplaneError.system("AF_PACKET socket on \(interface): \(String(cString: strerror(-fd)))") }
        self.fd = fd
    }

    deinit { close(fd) }

    public func send(_ frame: [UInt8]) throws {
        let r = frame.withUnsafeBytes { icw_packet_send(fd, interfaceIndex, $0.baseAddress, UInt($0.count)) }
        guard r == 0 else { throw DataplaneError.system("sending a frame: \(String(cString: strerror(-r)))") }
    }

    /// Sends `count` copies of an Ethernet + IPv4 `frame` in batches of `batch` (sendmmsg, the qdisc bypassed): a
    /// flood for benchmarks where live frames are refused. With `spoofing` (base, count), frame k from `sequence`
    /// on gets the IPv4 source base + (k mod count) and a fixed header checksum. Returns the frames sent: fewer
    /// than `count` when the socket buffer fills, which paces the sender to what the receiver takes.
    public func flood(_ frame: [UInt8], count: Int, batch: Int = 64, spoofing: (base: UInt32, count: UInt32)? = nil,
                      sequence: inout UInt64) throws -> Int {
        var next = sequence
        let r = frame.withUnsafeBytes {
            icw_packet_flood(fd, interfaceIndex, $0.baseAddress, UInt($0.count), UInt(count), UInt32(batch),
                             spoofing?.base ?? 0, spoofing?.count ?? 0, &next)
        }
        guard r >= 0 else { throw DataplaneError.system("flooding \(count) frames: \(String(cString: strerror(Int32(-r))))") }
        sequence = next
        return r
    }

    /// The next frame that arrives within `timeout` seconds, or nil.
    public func receive(timeout: TimeInterval) throws -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { icw_packet_recv(fd, $0.baseAddress, UInt($0.count), Int32(timeout * 1000)) }
        if n < 0 { throw DataplaneError.system("receiving: \(String(cString: strerror(Int32(-n))))") }
        return n == 0 ? nil : Array(buffer.prefix(Int(n)))
    }

    /// Collects frames until `quiet` seconds pass without one (or `limit` frames / `maxSeconds`).
    public func drain(quiet: TimeInterval = 0.3, maxSeconds: TimeInterval = 10, limit: Int = 100_000) throws -> [[UInt8]] {
        var frames: [[UInt8]] = []
        let deadline = Date().addingTimeInterval(maxSeconds)
        while frames.count < limit && Date() < deadline, let f = try receive(timeout: quiet) {
            frames.append(f)
        }
        return frames
    }
}
