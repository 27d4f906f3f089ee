import BPFKit
import Foundation
import IcmpwallDataplane
import IcmpwallPolicy
import Logging

/// Why the agent could not start. `exitCode` follows the README: 1 invalid input, 3 system failure.
public struct AgentError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var exitCode: Int32
    public var description: String { message }

    public init(_ message: String, exitCode: Int32 = 1) {
        self.message = message
        self.exitCode = exitCode
    }

    init(_ error: DataplaneError) {
        self.init(error.description, exitCode: error.exitCode)
    }
}

/// The agent's work: keeps every configured interface attached with its policy, adopts pinned state it finds,
/// reloads policies when asked or when their files change, re-attaches interfaces that come back.
///
/// All operations are serialized by one lock; they are short syscalls (BPF map updates, netlink), so callers may be
/// tasks of the cooperative pool. Metrics are read from the pins, beside it.
public final class Agent: @unchecked Sendable {
    /// The configuration in force (replaced by a valid reload of the config file).
    public var config: AgentConfig { lock.withLock { current } }
    private var current: AgentConfig
    /// Where the configuration comes from, to re-read it; nil: flags only, nothing to re-read.
    let source: AgentConfigSource?
    /// The config file's bytes last read (a change of the file is a change of these).
    private var configBytes: [UInt8]?
    public let dataplane: Dataplane
    public let metrics: AgentMetrics
    let logger: Logger
    private let lock = NSLock()

    /// What the agent knows of one policy file (key nil: the embedded edge-default).
    struct PolicyState {
        /// The bytes last read (valid or not): a change of the file is a change of these.
        var bytes: [UInt8]?
        var readError: String?
        /// The last valid version: what the agent enforces.
        var compiled: CompiledPolicy
    }

    struct InterfaceState {
        var config: InterfaceConfig
        var ownership: AgentOwnership?
        /// The last health logged (to log transitions once, not every tick).
        var lastReported = ""
        /// The sha256 of the policy installed by this agent (nil until it installs or adopts one).
        var installedSHA: String?
        var lastError = ""
        /// The link and maps, held open while this agent enforces the interface: removing the pins then neither
        /// detaches the program nor loses the maps, and the agent pins them again.
        var held: HeldAttachment?
    }

    private var policies: [String?: PolicyState] = [:]
    private var interfaces: [InterfaceState] = []
    private var stopped = false

    public init(config: AgentConfig, source: AgentConfigSource? = nil, logger: Logger, dataplane: Dataplane = Dataplane()) {
        self.current = config
        self.source = source?.file == nil ? nil : source
        if let file = source?.file { configBytes = try? Self.read(file) }
        self.logger = logger
        self.dataplane = dataplane
        self.metrics = AgentMetrics(interfaces: config.interfaces.map(\.name))
        interfaces = config.interfaces.map { InterfaceState(config: $0) }
    }

    // MARK: - Start

    /// Loads and compiles every policy, then claims every interface. Nothing is attached or changed yet: an invalid
    /// policy or an interface another agent manages stops the agent before it touches the datapath.
    public func prepare() throws(AgentError) {
        lock.lock()
        defer { lock.unlock() }
        var problems: [String] = []
        for file in current.policyFiles {
            do {
                let bytes = try file.map(Self.read) ?? Array(PolicyLoader.embeddedDefault.utf8)
                let compiled = try Self.compile(bytes: bytes, file: file ?? PolicyLoader.embeddedDefaultFileName, logger: logger)
                policies[file] = PolicyState(bytes: bytes, compiled: compiled)
            } catch let error as PolicyError {
                problems.append(error.description)
            } catch {
                problems.append("\(file ?? "?"):1:1: error: cannot read policy file: \(error)")  // as PolicyLoader says it
            }
        }
        if !problems.isEmpty {
            throw AgentError(problems.joined(separator: "\n"))
        }
        for index in interfaces.indices {
            let c = interfaces[index].config
            do {
                interfaces[index].ownership = try AgentOwnership.claim(AgentOwnershipRecord(
                    pid: getpid(), interface: c.name, policy: c.policyLabel, config: current.configFile))
            } catch {
                releaseClaims()
                throw AgentError(error)
            }
        }
    }

    /// Attaches or adopts every interface. An interface that does not exist (yet) is waited for; anything else that
    /// fails here (another XDP program on the interface, pins of another datapath ABI, the kernel) stops the start.
    public func start() throws(AgentError) {
        lock.lock()
        defer { lock.unlock() }
        for index in interfaces.indices {
            do {
                try ensure(index, starting: true)
            } catch {
                throw AgentError(error)
            }
        }
    }

    // MARK: - Reconcile

    /// Brings every interface to its desired state; failures are logged (once per distinct message) and retried on
    /// the next call.
    public func reconcile() {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return }
        for index in interfaces.indices {
            do {
                try ensure(index, starting: false)
                interfaces[index].lastError = ""
            } catch {
                if interfaces[index].lastError != error.description {
                    interfaces[index].lastError = error.description
                    logger.error("cannot restore enforcement; retrying", metadata: [
                        "interface": "\(interfaces[index].config.name)", "error": "\(error.description)"])
                }
            }
        }
    }

    private func ensure(_ index: Int, starting: Bool) throws(DataplaneError) {
        let c = interfaces[index].config
        guard let policy = policies[c.policy]?.compiled else { return }
        var meta: Logger.Metadata = ["interface": "\(c.name)"]
        try checkHeld(index)
        defer { holdIfNeeded(index) }
        let health = dataplane.health(interface: c.name)
        switch health {
        case .absent:
            guard (try? Interfaces.index(named: c.name)) != nil else {
                report(index, "waiting", .warning, "interface does not exist; waiting for it", meta)
                return
            }
            let result = try dataplane.attach(interface: c.name, policy: policy, mode: c.mode)
            interfaces[index].installedSHA = policy.policy.sha256Hex
            meta["mode"] = "\(result.mode.rawValue)"
            meta["policy"] = "\(policy.policy.name)"
            meta["sha256"] = "\(policy.policy.sha256Hex)"
            meta["generation"] = "\(result.install.generation)"
            meta["pins"] = "\(result.pinDirectory)"
            if !starting { logger.warning("pins were missing: attached afresh (counters restart)", metadata: meta) }
            report(index, "enforcing", .info, "attached", meta)
        case .interfaceMissing:
            report(index, "missing", .warning, "interface is gone; pinned state kept, waiting for it to come back", meta)
        case .linkLost:
            try checkABI(c.name)
            let mode = try dataplane.reattach(interface: c.name, mode: c.mode)
            metrics.reattached(c.name)
            meta["mode"] = "\(mode.rawValue)"
            report(index, "enforcing", .notice, "re-attached with the pinned state (policy, counters and buckets continue)", meta, force: true)
            try installIfNeeded(index, policy, reason: "re-attach")
        case .enforcing:
            if interfaces[index].installedSHA == nil {
                if dataplane.pinsNeedUpgrade(interface: c.name) {
                    let u = try dataplane.upgrade(interface: c.name, policy: policy)
                    interfaces[index].installedSHA = policy.policy.sha256Hex
                    meta["from_abi"] = "\(u.fromABI)"
                    meta["to_abi"] = "\(u.toABI)"
                    meta["carried"] = "\(u.carried.joined(separator: ","))"
                    meta["fresh"] = "\(u.fresh.joined(separator: ","))"
                    meta["policy"] = "\(policy.policy.name)"
                    meta["generation"] = "\(u.install.generation)"
                    report(index, "enforcing", .notice, "upgraded the pinned datapath in place (no gap; counters carried over)", meta)
                    return
                }
                let loosened = dataplane.securePins(interface: c.name)
                if !loosened.isEmpty {
                    logger.warning("pins were readable by others: made private (folders 0700, pins 0600)", metadata: [
                        "interface": "\(c.name)", "paths": "\(loosened.joined(separator: ","))"])
                }
                report(index, "enforcing", .info, "adopted the pinned state (no gap; counters continue)", meta)
            }
            try installIfNeeded(index, policy, reason: starting ? "start" : "reconcile")
        }
    }

    private func checkABI(_ interface: String) throws(DataplaneError) {
        if let abi = dataplane.pinnedABIVersion(interface: interface), abi != 0, Int(abi) != IcmpwallVersion.abi {
            throw .invalidInput("the pins of \(interface) (\(dataplane.pinDirectory(interface))) hold datapath ABI \(abi), this agent speaks ABI \(IcmpwallVersion.abi), and their link is not enforcing: an in-place upgrade needs the old program running (`icmpwall detach --interface \(interface)` lets the agent attach afresh, counters restart)")
        }
    }

    /// Checks the link and maps this agent holds. While the held link still carries the program on the interface,
    /// missing pins (removed by `rm -r`, a bpffs remount, a careless script) are pinned again: enforcement never
    /// stopped, since the held descriptors kept the link and the maps alive. A held link that no longer carries the
    /// program (the interface went away, or `icmpwall detach` detached it) is let go; the pins decide from there.
    private func checkHeld(_ index: Int) throws(DataplaneError) {
        guard let held = interfaces[index].held else { return }
        let name = interfaces[index].config.name
        guard let ifindex = try? Interfaces.index(named: name), held.interfaceIndex == ifindex else {
            interfaces[index].held = nil
            return
        }
        if dataplane.pinnedLinkDiffers(held) {
            interfaces[index].held = nil  // someone attached anew over it: hold theirs
            return
        }
        let missing = dataplane.missingPins(held)
        guard !missing.isEmpty else { return }
        let restored = try dataplane.restorePins(held)
        metrics.pinsRestored(name)
        logger.warning("pins were removed underneath the agent; the held link kept enforcing, pinned them again", metadata: [
            "interface": "\(name)", "pins": "\(dataplane.pinDirectory(name))", "restored": "\(restored.count)"])
    }

    /// Holds the pinned link and maps once the interface enforces (after attach, adoption, re-attach, upgrade).
    private func holdIfNeeded(_ index: Int) {
        let name = interfaces[index].config.name
        guard interfaces[index].held == nil, case .enforcing = dataplane.health(interface: name) else { return }
        interfaces[index].held = try? dataplane.hold(interface: name)
    }

    /// Installs `policy` unless the pins already run exactly it.
    private func installIfNeeded(_ index: Int, _ policy: CompiledPolicy, reason: String) throws(DataplaneError) {
        let name = interfaces[index].config.name
        let sha = policy.policy.sha256Hex
        if interfaces[index].installedSHA == nil,
           let status = try? dataplane.status(interface: name).first, status.policySHA256 == sha {
            interfaces[index].installedSHA = sha
            return
        }
        guard interfaces[index].installedSHA != sha else { return }
        let result = try dataplane.install(interface: name, policy: policy)
        interfaces[index].installedSHA = sha
        logger.info("policy applied", metadata: [
            "interface": "\(name)", "policy": "\(policy.policy.name)", "sha256": "\(sha)",
            "generation": "\(result.generation)", "rules": "\(policy.policy.rules.count)", "reason": "\(reason)"])
    }

    private func report(_ index: Int, _ state: String, _ level: Logger.Level, _ message: String, _ metadata: Logger.Metadata, force: Bool = false) {
        guard force || interfaces[index].lastReported != state else { return }
        interfaces[index].lastReported = state
        logger.log(level: level, "\(message)", metadata: metadata)
    }

    // MARK: - Reload

    /// Re-reads the policy files. A file whose bytes changed (or every file, with `force`) is parsed and compiled; a
    /// valid policy is installed atomically on its interfaces, an invalid one is logged with its FILE:LINE:COLUMN
    /// errors and the running policy stays. Both outcomes count in `icmpwall_policy_reloads_total`.
    public func reloadPolicies(reason: String, force: Bool) {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return }
        for file in current.policyFiles {
            guard let file, var state = policies[file] else { continue }  // the embedded policy never changes
            let users = interfaces.indices.filter { interfaces[$0].config.policy == file }
            let bytes: [UInt8]
            do {
                bytes = try Self.read(file)
            } catch {
                let text = "\(error)"
                if force || state.readError != text {
                    state.readError = text
                    state.bytes = nil
                    policies[file] = state
                    for i in users { metrics.reload(interfaces[i].config.name, ok: false) }
                    logger.error("policy reload failed: cannot read the policy file; the running policy stays", metadata: [
                        "file": "\(file)", "error": "\(text)", "reason": "\(reason)",
                        "running": "\(state.compiled.policy.name)"])
                }
                continue
            }
            if !force && state.bytes == bytes && state.readError == nil { continue }
            state.bytes = bytes
            state.readError = nil
            policies[file] = state
            let compiled: CompiledPolicy
            do {
                compiled = try Self.compile(bytes: bytes, file: file, logger: logger)
            } catch {
                for i in users { metrics.reload(interfaces[i].config.name, ok: false) }
                logger.error("policy rejected; the running policy stays", metadata: [
                    "file": "\(file)", "reason": "\(reason)", "running": "\(state.compiled.policy.name)",
                    "errors": "\(error.diagnostics.map(\.description).joined(separator: "; "))"])
                continue
            }
            state.compiled = compiled
            policies[file] = state
            for i in users {
                let name = interfaces[i].config.name
                if force { interfaces[i].installedSHA = interfaces[i].installedSHA == nil ? nil : "" }
                switch dataplane.health(interface: name) {
                case .enforcing:
                    do {
                        try installIfNeeded(i, compiled, reason: reason)
                        metrics.reload(name, ok: true)
                    } catch {
                        metrics.reload(name, ok: false)
                        logger.error("policy reload failed: the kernel refused it; the running policy stays", metadata: [
                            "interface": "\(name)", "file": "\(file)", "error": "\(error.description)"])
                    }
                default:
                    metrics.reload(name, ok: true)
                    logger.notice("policy accepted; it is applied when the interface is back", metadata: [
                        "interface": "\(name)", "file": "\(file)", "policy": "\(compiled.policy.name)"])
                }
            }
        }
    }

    // MARK: - Stop

    /// Fail-static by default: the pins keep enforcing after the agent. With detach-on-exit (unless `keepingPins`,
    /// for a start that failed), removes them.
    public func shutdown(keepingPins: Bool = false) {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return }
        stopped = true
        for state in interfaces {
            let name = state.config.name
            if current.detachOnExit && !keepingPins {
                do {
                    if dataplane.health(interface: name) != .absent { try dataplane.detach(interface: name) }
                    logger.notice("detached (detach-on-exit)", metadata: ["interface": "\(name)"])
                } catch {
                    logger.error("detach failed", metadata: ["interface": "\(name)", "error": "\(error.description)"])
                }
            } else {
                logger.info("stopping; enforcement stays pinned (fail-static)", metadata: [
                    "interface": "\(name)", "pins": "\(dataplane.pinDirectory(name))"])
            }
        }
        releaseClaims()
    }

    private func releaseClaims() {
        for index in interfaces.indices {
            interfaces[index].ownership?.release()
            interfaces[index].ownership = nil
        }
    }

    // MARK: - Readiness

    /// Ready when every configured interface is enforcing.
    public func readiness() -> (ready: Bool, detail: String) {
        var lines: [String] = []
        var ready = true
        for c in config.interfaces {
            let health = dataplane.health(interface: c.name)
            if case .enforcing = health {} else { ready = false }
            lines.append("\(c.name): \(health)")
        }
        return (ready, (ready ? "ok\n" : "not ready\n") + lines.joined(separator: "\n") + "\n")
    }

    /// Directories to watch for policy changes.
    public var watchedPaths: [String] {
        let c = config
        return c.policyFiles.compactMap { $0 } + (c.configFile.map { [$0] } ?? [])
    }

    /// The interfaces configured now (metrics follow them).
    public var interfaceNames: [String] { config.interfaces.map(\.name) }

    // MARK: - Config reload

    /// Re-reads the agent's config file (with the flags given beside it on top). Unless `force`, only a change of its
    /// bytes counts. A valid config whose policies are valid and whose new interfaces can be claimed replaces the
    /// running one: interfaces added are attached (on this call), interfaces removed are released (detached only
    /// under detach-on-exit, as at exit; otherwise their pins keep enforcing), a changed policy path is read and
    /// installed, the log level changes at once. The metrics address and a changed XDP mode need a restart (logged).
    /// An invalid config is logged with every FILE:LINE:COLUMN error and the running one stays. Both outcomes count
    /// in `icmpwall_config_reloads_total`.
    public func reloadConfig(reason: String, force: Bool) {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped, let source, let file = source.file else { return }
        let bytes = try? Self.read(file)
        if !force && bytes == configBytes { return }
        configBytes = bytes
        let next: AgentConfig
        do {
            next = try source.load()
        } catch {
            metrics.configReload(ok: false)
            logger.error("agent config rejected; the running configuration stays", metadata: [
                "file": "\(file)", "reason": "\(reason)", "errors": "\(error.diagnostics.map(\.description).joined(separator: "; "))"])
            return
        }
        // Every policy the new config names must be valid before anything changes.
        var newPolicies: [String?: PolicyState] = [:]
        var problems: [String] = []
        for policyFile in next.policyFiles where policies[policyFile] == nil {
            do {
                let bytes = try policyFile.map(Self.read) ?? Array(PolicyLoader.embeddedDefault.utf8)
                newPolicies[policyFile] = PolicyState(bytes: bytes, compiled: try Self.compile(
                    bytes: bytes, file: policyFile ?? PolicyLoader.embeddedDefaultFileName, logger: logger))
            } catch let error as PolicyError {
                problems.append(error.description)
            } catch {
                problems.append("\(policyFile ?? "?"):1:1: error: cannot read policy file: \(error)")
            }
        }
        let oldNames = Set(current.interfaces.map(\.name))
        let added = next.interfaces.filter { !oldNames.contains($0.name) }
        var claims: [String: AgentOwnership] = [:]
        if problems.isEmpty {
            for c in added {
                do {
                    claims[c.name] = try AgentOwnership.claim(AgentOwnershipRecord(
                        pid: getpid(), interface: c.name, policy: c.policyLabel, config: next.configFile))
                } catch {
                    problems.append(error.description)
                    break
                }
            }
        }
        guard problems.isEmpty else {
            for claim in claims.values { claim.release() }
            metrics.configReload(ok: false)
            logger.error("agent config rejected; the running configuration stays", metadata: [
                "file": "\(file)", "reason": "\(reason)", "errors": "\(problems.joined(separator: "; "))"])
            return
        }

        policies.merge(newPolicies) { old, _ in old }
        let newNames = Set(next.interfaces.map(\.name))
        for state in interfaces where !newNames.contains(state.config.name) {
            let name = state.config.name
            if next.detachOnExit {
                if dataplane.health(interface: name) != .absent { try? dataplane.detach(interface: name) }
                logger.notice("interface removed from the config: detached (detach-on-exit)", metadata: ["interface": "\(name)"])
            } else {
                logger.notice("interface removed from the config: released; enforcement stays pinned", metadata: [
                    "interface": "\(name)", "pins": "\(dataplane.pinDirectory(name))"])
            }
            state.ownership?.release()
        }
        var updated: [InterfaceState] = []
        for c in next.interfaces {
            if var state = interfaces.first(where: { $0.config.name == c.name }) {
                if state.config.policy != c.policy {
                    if state.installedSHA != nil { state.installedSHA = "" }  // install the new file's policy
                    logger.info("interface policy changed in the config", metadata: [
                        "interface": "\(c.name)", "policy": "\(c.policyLabel)"])
                }
                if state.config.mode != c.mode {
                    logger.warning("a changed XDP mode takes effect when the interface is attached again (restart the agent after detaching)", metadata: [
                        "interface": "\(c.name)", "mode": "\(c.mode.rawValue)"])
                }
                state.config = c
                updated.append(state)
            } else {
                var state = InterfaceState(config: c)
                state.ownership = claims[c.name]
                metrics.register(interface: c.name)
                logger.info("interface added to the config", metadata: ["interface": "\(c.name)", "policy": "\(c.policyLabel)"])
                updated.append(state)
            }
        }
        interfaces = updated
        let inUse = Set(next.policyFiles.map { $0 ?? "" })
        policies = policies.filter { inUse.contains($0.key ?? "") }
        if next.metricsAddress != current.metricsAddress {
            logger.warning("a changed metrics address takes effect on restart", metadata: [
                "running": "\(current.metricsAddress?.description ?? "off")", "configured": "\(next.metricsAddress?.description ?? "off")"])
        }
        if next.logLevel != current.logLevel {
            LogfmtLogHandler.level.set(next.logLevel)
            logger.notice("log level changed", metadata: ["level": "\(next.logLevel.rawValue)"])
        }
        current = next
        logger.debug("config in force", metadata: [
            "interfaces": "\(next.interfaces.map { "\($0.name):\($0.policyLabel)" }.joined(separator: ","))",
            "log_level": "\(next.logLevel.rawValue)", "detach_on_exit": "\(next.detachOnExit)"])
        metrics.configReload(ok: true)
        logger.info("agent config reloaded", metadata: [
            "file": "\(file)", "reason": "\(reason)", "interfaces": "\(next.interfaces.map(\.name).joined(separator: ","))"])
        for index in interfaces.indices {
            do {
                try ensure(index, starting: false)
            } catch {
                interfaces[index].lastError = error.description
                logger.error("cannot enforce on the interface yet; retrying", metadata: [
                    "interface": "\(interfaces[index].config.name)", "error": "\(error.description)"])
            }
        }
    }

    // MARK: - Helpers

    static func read(_ path: String) throws(AgentConfigParser.ReadFailure) -> [UInt8] {
        try AgentConfigParser.readFile(path).get()
    }

    static func compile(bytes: [UInt8], file: String, logger: Logger) throws(PolicyError) -> CompiledPolicy {
        let (policy, warnings) = try PolicyLoader.parse(bytes: bytes, fileName: file)
        for w in warnings {
            logger.warning("policy warning", metadata: ["file": "\(file)", "warning": "\(w.description)"])
        }
        return try PolicyCompiler.compile(policy, capacity: DatapathCapacity.compile)
    }
}
