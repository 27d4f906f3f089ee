import BPFKit
import Foundation
import IcmpwallDataplane
import IcmpwallFrames
import Testing

#if canImport(Glibc)
import Glibc
#endif

enum Privilege {
    static var available: Bool { Capabilities.missing().isEmpty }
    static var inCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// True when the test may run; records a failure in CI when it may not (privileged tests never skip there).
    static func require(sourceLocation: Testing.SourceLocation = #_sourceLocation) -> Bool {
        if available { return true }
        if inCI {
            Issue.record("CI=true but this test lacks privileges (missing \(Capabilities.missing().joined(separator: ", "))): agent tests must run as root in CI",
                         sourceLocation: sourceLocation)
        }
        return false
    }
}

/// The `icmpwall` binary under test: $ICMPWALL_BIN (set by `make test`), else next to the test bundle.
enum Binary {
    static var path: String {
        if let env = ProcessInfo.processInfo.environment["ICMPWALL_BIN"], !env.isEmpty { return env }
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [bundle.appending(path: "icmpwall"), bundle.deletingLastPathComponent().appending(path: "icmpwall")]
        where FileManager.default.isExecutableFile(atPath: candidate.path) {
            return candidate.path
        }
        return bundle.appending(path: "icmpwall").path
    }

    static func available(sourceLocation: Testing.SourceLocation = #_sourceLocation) -> Bool {
        if FileManager.default.isExecutableFile(atPath: path) { return true }
        Issue.record("icmpwall binary not found at \(path): run `swift build` first (make test does) or set ICMPWALL_BIN",
                     sourceLocation: sourceLocation)
        return false
    }
}

/// A temporary directory removed at deinit.
final class TemporaryDirectory {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appending(path: "icmpwall-agent-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }

    var path: String { url.path }

    /// Writes atomically (a rename, as editors and config management do).
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let path = url.appending(path: name).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        // Enforcing commands refuse files others could write: do not depend on the caller's umask.
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        return path
    }
}

/// A policy folder laid out exactly as the kubelet lays out a ConfigMap volume: `policy.yaml -> ..data/policy.yaml`,
/// `..data -> ..VERSION/`; an update writes a new `..VERSION/`, points `..data_tmp` at it and renames it over `..data`.
final class ConfigMapFolder {
    let root: String
    private var version = 0

    init(root: String, initial: String) throws {
        self.root = root
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try update(initial)
        try FileManager.default.createSymbolicLink(atPath: "\(root)/policy.yaml", withDestinationPath: "..data/policy.yaml")
    }

    var policyPath: String { "\(root)/policy.yaml" }

    func update(_ text: String) throws {
        version += 1
        let dir = "..2026_01_01_00_00_00.\(version)"
        try FileManager.default.createDirectory(atPath: "\(root)/\(dir)", withIntermediateDirectories: true)
        try text.write(toFile: "\(root)/\(dir)/policy.yaml", atomically: false, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: "\(root)/\(dir)/policy.yaml")
        try? FileManager.default.removeItem(atPath: "\(root)/..data_tmp")
        try FileManager.default.createSymbolicLink(atPath: "\(root)/..data_tmp", withDestinationPath: dir)
        guard rename("\(root)/..data_tmp", "\(root)/..data") == 0 else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
    }
}

/// An `icmpwall agent` process inside a namespace (nsenter execs it: the pid is the agent's), its output in a file.
final class AgentProcess {
    let process = Process()
    let logPath: String
    private(set) var exited = false

    init(namespace: String, arguments: [String], logPath: String) throws {
        self.logPath = logPath
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["nsenter", "--net=/run/netns/\(namespace)", Binary.path, "agent"] + arguments
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    deinit { kill9() }

    var pid: Int32 { process.processIdentifier }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func signal(_ signo: Int32) { if process.isRunning { kill(pid, signo) } }

    func kill9() {
        guard process.isRunning else { return }
        kill(pid, SIGKILL)
        process.waitUntilExit()
    }

    /// Waits for the process to exit (at most `timeout` seconds, then SIGKILL); returns its status.
    @discardableResult
    func waitForExit(timeout: TimeInterval = 20) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning {
            kill9()
            return nil
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Waits until the log contains `text` `count` times (bounded); false on timeout or exit.
    func waitForLog(_ text: String, count: Int = 1, timeout: TimeInterval = 30) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if log.components(separatedBy: text).count - 1 >= count { return true }
            if !process.isRunning { return log.components(separatedBy: text).count - 1 >= count }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return false
    }
}

/// Polls `condition` until it holds (bounded).
func eventually(timeout: TimeInterval = 30, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: 0.1)
    }
    return try condition()
}

/// A plain HTTP GET to 127.0.0.1:port inside a namespace (the agent's loopback is the namespace's).
func httpGet(namespace: String, port: Int, path: String) throws -> (status: Int, body: String) {
    try NetworkNamespace.run(in: namespace) { () throws -> (Int, String) in
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .ECONNREFUSED) }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        for _ in 0..<10_000 {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            response += chunk[0..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let headerEnd = text.range(of: "\r\n\r\n") else { throw POSIXError(.EPROTO) }
        let statusLine = text[..<headerEnd.lowerBound].split(separator: "\r\n").first ?? ""
        let status = statusLine.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        return (status, String(text[headerEnd.upperBound...]))
    }
}

/// Holds a TCP port in a namespace (to test "address already in use").
func listen(namespace: String, port: Int) throws -> Int32 {
    try NetworkNamespace.run(in: namespace) { () throws -> Int32 in
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1  // scrapes of the agent that listened here before may linger in TIME_WAIT
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0, Glibc.listen(fd, 4) == 0 else { close(fd); throw POSIXError(.EADDRINUSE) }
        return fd
    }
}

/// A sample value from the text exposition: the line of `name` whose labels include all of `labels`.
func metric(_ text: String, _ name: String, _ labels: [String: String] = [:]) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(name + "{") || line.hasPrefix(name + " ") {
        let parts = line.split(separator: " ")
        guard parts.count >= 2 else { continue }
        let head = String(parts[0])
        if !labels.allSatisfy({ head.contains("\($0.key)=\"\($0.value)\"") }) { continue }
        return Double(parts[1])
    }
    return nil
}

/// `promtool check metrics` on an exposition; nil when promtool is not installed (outside CI).
func promtoolCheck(_ text: String, in dir: TemporaryDirectory) throws -> Tool.Result? {
    guard Tool.exists("promtool") else {
        if Privilege.inCI { Issue.record("promtool is missing in CI: `make deps` installs Debian's prometheus package") }
        return nil
    }
    let file = try dir.write("metrics-\(UInt32.random(in: 0...UInt32.max)).txt", text)
    return try Tool.run(["sh", "-c", "promtool check metrics < \"$0\"", file], check: false)
}

/// Counts from `ping` output.
enum Ping {
    static func transmitted(_ output: String) -> Int? {
        guard let r = output.range(of: #"(\d+) packets transmitted"#, options: .regularExpression) else { return nil }
        return Int(output[r].split(separator: " ")[0])
    }

    static func received(_ output: String) -> Int? {
        guard let r = output.range(of: #"(\d+) received"#, options: .regularExpression) else { return nil }
        return Int(output[r].split(separator: " ")[0])
    }

    /// A ping running in the background from the client namespace.
    static func start(_ topology: LabTopology, count: Int, interval: String) throws -> (Process, Pipe) {
        let ping = Process()
        ping.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        ping.arguments = ["nsenter", "--net=/run/netns/\(topology.clientNamespace)", "ping", "-n", "-c", "\(count)", "-i", interval, "-W", "1", topology.serverIPv4]
        let out = Pipe()
        ping.standardOutput = out
        ping.standardError = FileHandle.nullDevice
        try ping.run()
        return (ping, out)
    }

    static func finish(_ ping: Process, _ out: Pipe, timeout: TimeInterval = 60) -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while ping.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        if ping.isRunning { ping.interrupt() }
        ping.waitUntilExit()
        return String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }
}

/// Crafted address-mask replies from the client to the server (a type every test policy drops); returns the frame size.
@discardableResult
func sendMaskReplies(_ topology: LabTopology, count: Int) throws -> Int {
    let sender = try topology.packetSocket(namespace: topology.clientNamespace, interface: topology.clientInterface, receive: false)
    let client = MACAddress(parsing: topology.clientMAC)!, server = MACAddress(parsing: topology.serverMAC)!
    let frame = FrameBuilder.icmpv4(.addressMaskReply(), from: "192.0.2.1", to: "192.0.2.2").addressed(from: client, to: server).padded().bytes
    for _ in 0..<count { try sender.send(frame) }
    return frame.count
}

/// Runs the CLI inside the server namespace.
func cli(_ topology: LabTopology, _ arguments: [String]) throws -> Tool.Result {
    try topology.run(in: topology.serverNamespace, [Binary.path] + arguments, timeout: 120, check: false)
}

/// Removes what an agent test left: the agents, the pins and claims of `interfaces` (default: the server's), the
/// namespaces.
func cleanUp(_ topology: LabTopology, _ agents: [AgentProcess?], interfaces: [String]? = nil) {
    for a in agents { a?.kill9() }
    for name in interfaces ?? [topology.serverInterface] {
        _ = try? cli(topology, ["detach", "--interface", name])
        try? BPFFS.removeTree("/sys/fs/bpf/icmpwall/\(name)")
        try? FileManager.default.removeItem(atPath: AgentOwnership.path(interface: name))
    }
    topology.destroy()
}
