import Foundation
import IcmpwallDataplane
import Logging
import NIOHTTP1
import ServiceLifecycle
import UnixSignals

/// The agent as a ServiceLifecycle service: re-checks interfaces every 0.5 s, reloads policies on SIGHUP and when
/// their files change, and on graceful shutdown (SIGTERM, SIGINT) leaves enforcement pinned (or detaches with
/// detach-on-exit).
public struct AgentService: Service {
    public let agent: Agent
    let logger: Logger
    /// How often interfaces are re-checked (a returning interface is re-attached within about this long).
    public var reconcileInterval: Duration = .milliseconds(500)

    public init(agent: Agent, logger: Logger) {
        self.agent = agent
        self.logger = logger
    }

    public func run() async throws {
        let agent = self.agent
        let interval = reconcileInterval
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let watcher = PolicyWatcher(paths: agent.watchedPaths, logger: logger)
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await _ in hangups {
                        agent.reloadConfig(reason: "SIGHUP", force: true)
                        agent.reloadPolicies(reason: "SIGHUP", force: true)
                    }
                }
                group.addTask {
                    for await _ in watcher.events {
                        // Let a burst of events (an editor's rename dance, a ConfigMap swap) settle first.
                        try? await Task.sleep(for: .milliseconds(150))
                        agent.reloadConfig(reason: "config file changed", force: false)
                        agent.reloadPolicies(reason: "policy file changed", force: false)
                    }
                }
                group.addTask {
                    var tick = 0
                    while !Task.isCancelled {
                        try? await Task.sleep(for: interval)
                        if Task.isCancelled { break }
                        agent.reconcile()
                        tick += 1
                        if tick % 4 == 0 {
                            agent.reloadConfig(reason: "config file changed", force: false)
                            agent.reloadPolicies(reason: "policy file changed", force: false)
                        }
                    }
                }
                await group.waitForAll()
            }
        }
        watcher.stop()
        agent.shutdown()
    }
}

/// Runs the agent until SIGTERM or SIGINT: loads the policies, claims the interfaces, binds the metrics server,
/// attaches or adopts, then serves. Errors before serving are thrown (nothing enforced is changed by them).
public enum AgentRunner {
    public static func run(config: AgentConfig, source: AgentConfigSource? = nil, logger: Logger) async throws(AgentError) {
        let agent = Agent(config: config, source: source, logger: logger)
        try agent.prepare()
        var server: MetricsServer?
        if let address = config.metricsAddress {
            let exposition = MetricsExposition(interfaces: { agent.interfaceNames }, dataplane: agent.dataplane, metrics: agent.metrics)
            do {
                server = try await MetricsServer.bind(address, logger: logger) { _, path in
                    switch path {
                    case "/metrics":
                        return HTTPReply(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: exposition.render())
                    case "/healthz", "/readyz":
                        let (ready, detail) = agent.readiness()
                        return HTTPReply(status: ready ? .ok : .serviceUnavailable, body: detail)
                    case "/":
                        return HTTPReply(status: .ok, body: "icmpwall agent: /metrics, /healthz\n")
                    default:
                        return HTTPReply(status: .notFound, body: "not found\n")
                    }
                }
            } catch {
                agent.shutdown(keepingPins: true)
                throw error
            }
        }
        do {
            try agent.start()
        } catch {
            await server?.close()
            agent.shutdown(keepingPins: true)
            throw error
        }
        logger.info("agent running", metadata: [
            "interfaces": "\(config.interfaces.map(\.name).joined(separator: ","))",
            "metrics": "\(server != nil ? config.metricsAddress?.description ?? "off" : "off")",
            "detach_on_exit": "\(config.detachOnExit)", "pid": "\(getpid())", "version": "\(IcmpwallVersion.string)"])

        var services: [any Service] = []
        if let server { services.append(server) }
        services.append(AgentService(agent: agent, logger: logger))
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await group.run()
        } catch {
            agent.shutdown()
            throw AgentError("agent stopped: \(error)", exitCode: 3)
        }
        logger.info("agent stopped")
    }
}
