import Foundation
@testable import IcmpwallAgent
import IcmpwallDataplane
import IcmpwallPolicy
import Logging
import Testing

@Suite("Agent config, labels, logs (unprivileged)")
struct AgentConfigTests {
    @Test("a full config: interfaces as names and mappings, relative policy paths, defaults and overrides")
    func fullConfig() throws {
        let text = """
            interfaces:
              - eth0
              - name: eth1
                policy: strict.yaml
                mode: generic
            policy: /etc/icmpwall/policies/edge-default.yaml
            mode: native
            metrics-address: "[::1]:9100"
            log-level: debug
            detach-on-exit: true
            """
        let c = try AgentConfigParser.parse(text, fileName: "/etc/icmpwall/agent.yaml")
        #expect(c.interfaces == [
            InterfaceConfig(name: "eth0", policy: "/etc/icmpwall/policies/edge-default.yaml", mode: .native),
            InterfaceConfig(name: "eth1", policy: "/etc/icmpwall/strict.yaml", mode: .generic),
        ])
        #expect(c.metricsAddress == ListenAddress(host: "::1", port: 9100))
        #expect(c.logLevel == .debug)
        #expect(c.detachOnExit)
        #expect(c.policyFiles == ["/etc/icmpwall/policies/edge-default.yaml", "/etc/icmpwall/strict.yaml"])
    }

    @Test("defaults: built-in policy, 127.0.0.1:9464, info, fail-static; metrics can be turned off")
    func defaults() throws {
        let c = try AgentConfigParser.parse("interfaces: [eth0]\n", fileName: "a.yaml")
        #expect(c.interfaces == [InterfaceConfig(name: "eth0", policy: nil, mode: .auto)])
        #expect(c.metricsAddress == ListenAddress(host: "127.0.0.1", port: 9464))
        #expect(c.logLevel == .info && !c.detachOnExit)
        #expect(c.policyFiles == [nil])
        let off = try AgentConfigParser.parse("interfaces: [eth0]\nmetrics-address: off\n", fileName: "a.yaml")
        #expect(off.metricsAddress == nil)
    }

    @Test("every problem is reported with FILE:LINE:COLUMN")
    func errors() {
        let text = """
            interfaces:
              - eth0
              - name: this-name-is-far-too-long
              - name: eth2
                moed: generic
            mode: sideways
            metrics-address: nowhere
            log-level: loud
            colour: blue
            """
        do {
            _ = try AgentConfigParser.parse(text, fileName: "agent.yaml")
            Issue.record("the config was accepted")
        } catch {
            let d = error.description
            #expect(d.contains("agent.yaml:3:11: error: 'this-name-is-far-too-long' is not a valid interface name"), "\(d)")
            #expect(d.contains("agent.yaml:5:5: error: unknown key 'moed'"), "\(d)")
            #expect(d.contains("agent.yaml:6:7: error: invalid mode 'sideways'"), "\(d)")
            #expect(d.contains("agent.yaml:7:18: error: invalid metrics-address 'nowhere'"), "\(d)")
            #expect(d.contains("agent.yaml:8:12: error: invalid log-level 'loud'"), "\(d)")
            #expect(d.contains("agent.yaml:9:1: error: unknown key 'colour'"), "\(d)")
        }
        #expect(throws: AgentConfigError.self) { try AgentConfigParser.parse("policy: x.yaml\n", fileName: "a.yaml") }
        #expect(throws: AgentConfigError.self) { try AgentConfigParser.parse("interfaces: [eth0, eth0]\n", fileName: "a.yaml") }
        do {
            _ = try AgentConfigParser.parse("interfaces: [eth0\n", fileName: "y.yaml")
        } catch {
            #expect(error.description.hasPrefix("y.yaml:"), "\(error.description)")
            #expect(error.description.contains("invalid YAML"))
        }
        do {
            _ = try AgentConfigParser.load(contentsOf: "/nonexistent/agent.yaml")
        } catch {
            #expect(error.description.contains("/nonexistent/agent.yaml:1:1: error: cannot read agent config file"), "\(error.description)")
        }
    }

    @Test("listen addresses")
    func addresses() {
        #expect(ListenAddress(parsing: "127.0.0.1:9464") == ListenAddress(host: "127.0.0.1", port: 9464))
        #expect(ListenAddress(parsing: ":9464") == ListenAddress(host: "127.0.0.1", port: 9464))
        #expect(ListenAddress(parsing: "[::]:80") == ListenAddress(host: "::", port: 80))
        #expect(ListenAddress(parsing: "0.0.0.0:65535")?.description == "0.0.0.0:65535")
        #expect(ListenAddress(parsing: "[::1]:9464")?.description == "[::1]:9464")
        for bad in ["9464", "host:", "host:99999", "::1:80", "[::1]80", "a b:1"] {
            #expect(ListenAddress(parsing: bad) == nil, "\(bad)")
        }
    }

    @Test("metric labels are bounded: unnamed types and codes fold into other")
    func labels() {
        #expect(MetricsExposition.labels(family: "ipv4", type: 8, code: 0) == ("echo-request", "0"))
        #expect(MetricsExposition.labels(family: "ipv4", type: 3, code: 4) == ("destination-unreachable", "fragmentation-needed"))
        #expect(MetricsExposition.labels(family: "ipv4", type: 3, code: nil) == ("destination-unreachable", "other"))
        #expect(MetricsExposition.labels(family: "ipv4", type: 8, code: 7) == ("echo-request", "other"))
        #expect(MetricsExposition.labels(family: "ipv4", type: 200, code: 3) == ("other", "other"))
        #expect(MetricsExposition.labels(family: "ipv6", type: 128, code: 0) == ("echo-request", "0"))
        #expect(MetricsExposition.labels(family: "ipv6", type: nil, code: nil) == ("unreadable", "unreadable"))
        // Every label value, over every possible type and code, comes from a small fixed set.
        var values = Set<String>()
        for family in ["ipv4", "ipv6"] {
            for t in 0..<256 {
                for c in 0..<256 {
                    let l = MetricsExposition.labels(family: family, type: t, code: c)
                    values.insert("\(family)/\(l.type)/\(l.code)")
                }
            }
        }
        #expect(values.count < 400, "\(values.count) label combinations")
    }

    @Test("log lines: logfmt, one line per event, syslog priority under journald")
    func logLines() {
        #expect(LogfmtLogHandler.quote("simple") == "simple")
        #expect(LogfmtLogHandler.quote("two words") == "\"two words\"")
        #expect(LogfmtLogHandler.quote("a\nb \"c\"") == "\"a\\nb \\\"c\\\"\"")
        #expect(LogfmtLogHandler.quote("") == "\"\"")
        #expect(LogfmtLogHandler.syslogPriority(.error) == 3 && LogfmtLogHandler.syslogPriority(.info) == 6)
    }
}
