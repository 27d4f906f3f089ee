// The agent's configuration: from flags, or from a YAML file (documented in docs/agent.md), with
// FILE:LINE:COLUMN errors like the policy parser's.

import Foundation
import IcmpwallDataplane
import IcmpwallPolicy
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One interface the agent protects.
public struct InterfaceConfig: Sendable, Equatable {
    public var name: String
    /// The policy file; nil for the embedded edge-default.
    public var policy: String?
    public var mode: AttachModeRequest

    public init(name: String, policy: String?, mode: AttachModeRequest = .auto) {
        self.name = name
        self.policy = policy
        self.mode = mode
    }

    /// The policy as logs, metrics and the ownership record name it.
    public var policyLabel: String { policy ?? PolicyLoader.embeddedDefaultFileName }
}

/// Where the metrics server listens.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `HOST:PORT`, `[IPV6]:PORT` or `:PORT` (127.0.0.1). Nil when malformed.
    public init?(parsing text: String) {
        var host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        if host.isEmpty { host = "127.0.0.1" }
        guard let port = Int(portText), (0...65535).contains(port), !host.contains(where: \.isWhitespace) else { return nil }
        self.host = String(host)
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Everything the agent needs to run.
public struct AgentConfig: Sendable, Equatable {
    public var interfaces: [InterfaceConfig] = []
    /// nil: no metrics server.
    public var metricsAddress: ListenAddress? = AgentConfig.defaultMetricsAddress
    public var logLevel: Logger.Level = .info
    public var detachOnExit = false
    /// The config file it came from, if any.
    public var configFile: String?

    public static let defaultMetricsAddress = ListenAddress(host: "127.0.0.1", port: 9464)

    public init() {}

    /// Distinct policy files (nil: the embedded default), in config order.
    public var policyFiles: [String?] {
        var seen: [String?] = []
        for i in interfaces where !seen.contains(i.policy) { seen.append(i.policy) }
        return seen
    }
}

/// A config file that cannot be used: every problem, each with FILE:LINE:COLUMN.
public struct AgentConfigError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [PolicyDiagnostic]
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// Parses the agent's YAML config.
///
/// ```yaml
/// interfaces:                 # required: names, or mappings {name, policy, mode}
///   - eth0
///   - name: eth1
///     policy: strict.yaml     # relative paths are relative to this file's folder
///     mode: generic           # auto (default), native or generic
/// policy: /etc/icmpwall/policies/edge-default.yaml   # for interfaces without their own (default: built-in edge-default)
/// mode: auto                  # for interfaces without their own
/// metrics-address: 127.0.0.1:9464                    # "off" disables the metrics server
/// log-level: info             # trace, debug, info, notice, warning, error, critical
/// detach-on-exit: false       # true: stopping the agent removes enforcement (default: pins stay, fail-static)
/// ```
public enum AgentConfigParser {
    static let topKeys = ["interfaces", "policy", "mode", "metrics-address", "log-level", "detach-on-exit"]
    static let interfaceKeys = ["name", "policy", "mode"]

    public static func load(contentsOf path: String) throws(AgentConfigError) -> AgentConfig {
        let text: String
        switch readFile(path) {
        case .success(let bytes):
            guard let t = String(validating: bytes, as: UTF8.self) else {
                throw AgentConfigError(diagnostics: [diag(path, 1, 1, "the agent config file is not valid UTF-8")])
            }
            text = t
        case .failure(let reason):
            throw AgentConfigError(diagnostics: [diag(path, 1, 1, "cannot read agent config file: \(reason.text)")])
        }
        return try parse(text, fileName: path)
    }

    public static func parse(_ text: String, fileName: String) throws(AgentConfigError) -> AgentConfig {
        var errors: [PolicyDiagnostic] = []
        func error(_ node: Node?, _ message: String) {
            let mark = node?.mark
            errors.append(diag(fileName, mark?.line ?? 1, mark?.column ?? 1, message))
        }
        let root: Node?
        do {
            root = try YAMLComposer.compose(text)
        } catch {
            throw AgentConfigError(diagnostics: [diag(fileName, error.mark.line, error.mark.column, "invalid YAML: \(error.problem)")])
        }
        guard let root, case .mapping(let mapping) = root else {
            throw AgentConfigError(diagnostics: [diag(fileName, 1, 1, "the agent config must be a mapping with at least 'interfaces:'")])
        }
        let base = (fileName as NSString).deletingLastPathComponent
        func resolve(_ path: String) -> String {
            path.hasPrefix("/") || base.isEmpty ? path : (base as NSString).appendingPathComponent(path)
        }
        func scalar(_ node: Node, _ key: String) -> String? {
            guard case .scalar(let s) = node, !s.string.isEmpty else {
                error(node, "'\(key)' must be a single value")
                return nil
            }
            return s.string
        }
        func mode(_ node: Node) -> AttachModeRequest? {
            guard let s = scalar(node, "mode") else { return nil }
            guard let m = AttachModeRequest(rawValue: s) else {
                error(node, "invalid mode '\(s)': expected auto, native or generic")
                return nil
            }
            return m
        }

        var config = AgentConfig()
        config.configFile = fileName
        var fields: [String: (Node, Node)] = [:]
        for (key, value) in mapping {
            guard case .scalar(let k) = key, Self.topKeys.contains(k.string) else {
                error(key, "unknown key '\(key.string ?? "?")' (expected one of: \(Self.topKeys.joined(separator: ", ")))")
                continue
            }
            if fields[k.string] != nil {
                error(key, "duplicate key '\(k.string)'")
                continue
            }
            fields[k.string] = (key, value)
        }
        let defaultPolicy = fields["policy"].flatMap { scalar($0.1, "policy") }.map(resolve)
        let defaultMode = fields["mode"].flatMap { mode($0.1) } ?? .auto
        if let (_, v) = fields["metrics-address"], let s = scalar(v, "metrics-address") {
            if s == "off" || s == "none" {
                config.metricsAddress = nil
            } else if let a = ListenAddress(parsing: s) {
                config.metricsAddress = a
            } else {
                error(v, "invalid metrics-address '\(s)': expected HOST:PORT, [IPV6]:PORT or off")
            }
        }
        if let (_, v) = fields["log-level"], let s = scalar(v, "log-level") {
            if let l = Logger.Level(rawValue: s) { config.logLevel = l } else {
                error(v, "invalid log-level '\(s)': expected one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        if let (_, v) = fields["detach-on-exit"], let s = scalar(v, "detach-on-exit") {
            switch s {
            case "true": config.detachOnExit = true
            case "false": config.detachOnExit = false
            default: error(v, "invalid detach-on-exit '\(s)': expected true or false")
            }
        }
        if let (key, v) = fields["interfaces"] {
            if case .sequence(let items) = v, !items.isEmpty {
                for item in items {
                    switch item {
                    case .scalar(let s):
                        if let problem = interfaceNameProblem(s.string) { error(item, problem); continue }
                        config.interfaces.append(InterfaceConfig(name: s.string, policy: defaultPolicy, mode: defaultMode))
                    case .mapping(let m):
                        var entry = InterfaceConfig(name: "", policy: defaultPolicy, mode: defaultMode)
                        var named = false
                        for (k, value) in m {
                            switch k.string {
                            case "name":
                                if let s = scalar(value, "name") {
                                    if let problem = interfaceNameProblem(s) { error(value, problem) } else { entry.name = s; named = true }
                                }
                            case "policy": entry.policy = scalar(value, "policy").map(resolve)
                            case "mode": entry.mode = mode(value) ?? defaultMode
                            default:
                                error(k, "unknown key '\(k.string ?? "?")' in an interface (expected one of: \(Self.interfaceKeys.joined(separator: ", ")))")
                            }
                        }
                        if named { config.interfaces.append(entry) } else if !m.keys.contains(where: { $0.string == "name" }) {
                            error(item, "an interface needs 'name:'")
                        }
                    default:
                        error(item, "an interface is a name or a mapping {name, policy, mode}")
                    }
                }
                var seen: [String: Node] = [:]
                for (index, entry) in config.interfaces.enumerated() {
                    if seen[entry.name] != nil {
                        error(items.count > index ? items[index] : key, "interface \(entry.name) is listed twice")
                    }
                    seen[entry.name] = items.count > index ? items[index] : key
                }
            } else {
                error(v, "'interfaces' must be a non-empty list of interface names")
            }
        } else {
            error(mapping.first?.key ?? root, "missing 'interfaces:' (the interfaces to protect)")
        }
        if !errors.isEmpty {
            throw AgentConfigError(diagnostics: errors.sorted { ($0.location.line, $0.location.column) < ($1.location.line, $1.location.column) })
        }
        return config
    }

    /// Why `name` cannot be an interface name, or nil.
    public static func interfaceNameProblem(_ name: String) -> String? {
        guard !name.isEmpty, name.utf8.count < 16, !name.contains("/"), name != ".", name != "..",
              !name.contains(where: \.isWhitespace) else {
            return "'\(name)' is not a valid interface name (1-15 characters, no '/' or spaces)"
        }
        return nil
    }

    typealias ReadFailure = PolicyLoader.ReadFailure

    /// Reads a whole (small) file with the policy loader's reader; a config or policy file others could have
    /// written is refused, since the agent enforces what it reads.
    static func readFile(_ path: String) -> Result<[UInt8], ReadFailure> {
        if let reason = FileTrust.problem(with: path) {
            return .failure(ReadFailure(text: "refusing to enforce this file: \(reason)"))
        }
        return PolicyLoader.readFile(path)
    }

    static func diag(_ file: String, _ line: Int, _ column: Int, _ message: String) -> PolicyDiagnostic {
        PolicyDiagnostic(severity: .error, location: SourceLocation(file: file, line: line, column: column), message: message)
    }
}

/// Where the agent's configuration comes from: an optional config file and the flags given beside it, which override
/// the file. The agent keeps it to re-read the file on SIGHUP or when it changes, with the same flags on top.
public struct AgentConfigSource: Sendable {
    public var file: String?
    public var interfaces: [String] = []
    public var policy: String?
    public var mode: AttachModeRequest?
    /// nil: as the file says; .some(nil): off.
    public var metricsAddress: ListenAddress??
    public var logLevel: Logger.Level?
    public var detachOnExit = false
    /// Relative policy paths given as flags are relative to this folder (the agent's starting folder).
    public var workingDirectory: String

    public init(file: String?, workingDirectory: String = FileManager.default.currentDirectoryPath) {
        self.file = file
        self.workingDirectory = workingDirectory
    }

    /// The file (if any) with the flags applied; every problem with FILE:LINE:COLUMN.
    public func load() throws(AgentConfigError) -> AgentConfig {
        var c = AgentConfig()
        if let file {
            c = try AgentConfigParser.load(contentsOf: file)
        }
        if !interfaces.isEmpty {
            let shared = policy ?? (c.policyFiles.count == 1 ? c.policyFiles[0] : nil)
            c.interfaces = interfaces.map { InterfaceConfig(name: $0, policy: shared, mode: mode ?? .auto) }
        } else {
            if let policy { for i in c.interfaces.indices { c.interfaces[i].policy = policy } }
            if let mode { for i in c.interfaces.indices { c.interfaces[i].mode = mode } }
        }
        // Absolute paths: the ownership record and logs name them, and the agent may change folder.
        for i in c.interfaces.indices {
            if let p = c.interfaces[i].policy, !p.hasPrefix("/") {
                c.interfaces[i].policy = workingDirectory + "/" + p
            }
        }
        if let metricsAddress { c.metricsAddress = metricsAddress }
        if let logLevel { c.logLevel = logLevel }
        if detachOnExit { c.detachOnExit = true }
        c.configFile = file
        return c
    }
}

private typealias Node = YAMLNode
