import BPFKit
import Foundation
import IcmpwallDataplane
import Testing

enum Privilege {
    static var available: Bool { Capabilities.missing().isEmpty }
    static var inCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// True when the test may run; records a failure in CI when it may not (privileged tests never skip there).
    static func require(sourceLocation: Testing.SourceLocation = #_sourceLocation) -> Bool {
        if available { return true }
        if inCI {
            Issue.record("CI=true but this test lacks privileges (missing \(Capabilities.missing().joined(separator: ", "))): end-to-end tests must run as root in CI",
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
        url = FileManager.default.temporaryDirectory.appending(path: "icmpwall-e2e-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }

    func write(_ name: String, _ text: String) throws -> String {
        let path = url.appending(path: name).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        // Enforcing commands refuse files others could write: do not depend on the caller's umask.
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        return path
    }
}

extension LabTopology {
    /// Runs the `icmpwall` binary inside a namespace, the server's by default (nsenter keeps the bpffs pins visible).
    func icmpwall(_ arguments: [String], namespace: String? = nil) throws -> Tool.Result {
        try run(in: namespace ?? serverNamespace, [Binary.path] + arguments, timeout: 120, check: false)
    }

    /// `stats --json` of the server's interface.
    func stats() throws -> StatsJSON {
        let r = try icmpwall(["stats", "--interface", serverInterface, "--json"])
        guard r.status == 0 else { throw DataplaneError.system("stats failed: \(r.stderr)") }
        return try JSONDecoder().decode(StatsJSON.self, from: Data(r.stdout.utf8))
    }
}

/// Decoded `stats --json`.
struct StatsJSON: Decodable {
    struct Row: Decodable {
        var interface: String
        var direction: String
        var family: String
        var type: Int?
        var code: Int?
        var passed: UInt64
        var dropped: UInt64
        var passed_bytes: UInt64
        var dropped_bytes: UInt64
    }
    struct RuleRow: Decodable { var interface: String; var name: String; var matched: UInt64; var dropped: UInt64 }
    struct GuardRow: Decodable { var interface: String; var name: String; var dropped: UInt64 }
    var counters: [Row]
    var rules: [RuleRow]
    var guards: [GuardRow]

    func row(_ family: String, _ type: Int, _ code: Int = 0, direction: String = "ingress") -> Row? {
        counters.first { $0.direction == direction && $0.family == family && $0.type == type && $0.code == code }
    }
    func rule(_ name: String) -> RuleRow? { rules.first { $0.name == name } }
}
