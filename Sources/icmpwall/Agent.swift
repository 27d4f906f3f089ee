import ArgumentParser
import Foundation
import IcmpwallAgent
import IcmpwallDataplane
import Logging

struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run as a daemon: keep interfaces protected, reload policies, serve Prometheus metrics.",
        discussion: """
        Attaches the policy to each interface (adopting pinned state it finds: no gap, counters continue) and runs \
        until SIGTERM or SIGINT. Reloads the policy files on SIGHUP and when they change (their folders are watched, \
        so a Kubernetes ConfigMap's symlink swap counts); an invalid policy is logged with its FILE:LINE:COLUMN errors \
        and the running one stays; SIGHUP and a change of --config's file also re-read the agent config (interfaces added \
        and removed, policy paths, log level). An interface that goes away is re-attached when it comes back; pins \
        removed underneath are pinned again; pins of an older datapath ABI are upgraded in place. Stopping the agent \
        leaves enforcement pinned (fail-static) unless --detach-on-exit. Metrics: http://127.0.0.1:9464/metrics, \
        readiness: /healthz. Flags override the config file (schema: docs/agent.md).
        """)

    @Option(name: .long, help: "The agent config file (YAML; see docs/agent.md).") var config: String?
    @Option(name: .long, help: "An interface to protect (repeatable).") var interface: [String] = []
    @Option(name: .long, help: "The policy file for every interface (default: the embedded edge-default).") var policy: String?
    @Option(name: .long, help: "XDP mode: auto, native or generic.") var mode: AttachModeRequest?
    @Option(name: .long, help: "Where to serve /metrics and /healthz: HOST:PORT, [IPV6]:PORT, or off (default 127.0.0.1:9464).") var metricsAddress: String?
    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical (default info).") var logLevel: String?
    @Flag(name: .long, help: "Detach from every interface when the agent stops (default: enforcement stays pinned).") var detachOnExit = false

    func validate() throws {
        if config == nil && interface.isEmpty {
            throw ValidationError("give --interface IF (repeatable) or --config FILE")
        }
        for name in interface { try validateInterface(name) }
        if let metricsAddress, metricsAddress != "off", ListenAddress(parsing: metricsAddress) == nil {
            throw ValidationError("--metrics-address takes HOST:PORT, [IPV6]:PORT or off, not '\(metricsAddress)'")
        }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level takes \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")), not '\(logLevel)'")
        }
    }

    /// The config file and the flags that override it (also on every reload of the file).
    func configSource() -> AgentConfigSource {
        var source = AgentConfigSource(file: config)
        source.interfaces = interface
        source.policy = policy
        source.mode = mode
        if let metricsAddress { source.metricsAddress = .some(metricsAddress == "off" ? nil : ListenAddress(parsing: metricsAddress)) }
        source.logLevel = logLevel.flatMap(Logger.Level.init(rawValue:))
        source.detachOnExit = detachOnExit
        return source
    }

    func resolvedConfig() throws -> AgentConfig {
        do { return try configSource().load() } catch {
            throw CLIError.invalid("invalid agent config:\n\(error.description)")
        }
    }

    func run() throws {
        let source = configSource()
        let config = try resolvedConfig()
        LogfmtLogHandler.level.set(config.logLevel)
        LoggingSystem.bootstrap { label in LogfmtLogHandler(label: label) }
        let logger = Logger(label: "icmpwall.agent")

        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var failure: AgentError?
        Task {
            do throws(AgentError) {
                try await AgentRunner.run(config: config, source: source, logger: logger)
            } catch {
                failure = error
            }
            done.signal()
        }
        done.wait()
        if let failure {
            logger.error("agent failed", metadata: ["error": "\(failure.message)"])
            throw CLIError(message: failure.message, code: failure.exitCode)
        }
    }
}
