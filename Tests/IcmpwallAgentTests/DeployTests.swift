import Foundation
import IcmpwallAgent
import IcmpwallDataplane
import IcmpwallPolicy
import Testing
import Yams

/// The shipped deployment files: the configs and policies in them load, the unit passes systemd-analyze.
@Suite("Deployment files (unprivileged)")
struct DeployTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func text(_ path: String) throws -> String {
        try String(contentsOf: Self.root.appending(path: path), encoding: .utf8)
    }

    @Test("the Kubernetes ConfigMap's agent.yaml and policy.yaml are valid")
    func configMap() throws {
        let documents = try Array(Yams.load_all(yaml: text("deploy/kubernetes/configmap.yaml")))
        let map = try #require(documents.first as? [String: Any])
        let data = try #require(map["data"] as? [String: String])
        let config = try AgentConfigParser.parse(try #require(data["agent.yaml"]), fileName: "/etc/icmpwall/agent.yaml")
        #expect(config.interfaces.first?.policy == "/etc/icmpwall/policy.yaml")
        let (policy, _) = try PolicyLoader.parse(try #require(data["policy.yaml"]), fileName: "/etc/icmpwall/policy.yaml")
        _ = try PolicyCompiler.compile(policy, capacity: DatapathCapacity.compile)
        let daemonSet = try text("deploy/kubernetes/daemonset.yaml")
        #expect(daemonSet.contains("hostNetwork: true") && daemonSet.contains("path: /sys/fs/bpf"))
        #expect(!daemonSet.contains("subPath:"), "subPath mounts never see ConfigMap updates")
    }

    @Test("the systemd example agent.yaml is valid; the unit passes systemd-analyze verify")
    func systemd() throws {
        let config = try AgentConfigParser.parse(try text("deploy/systemd/agent.yaml"), fileName: "/etc/icmpwall/agent.yaml")
        #expect(config.interfaces.map(\.name) == ["eth0"] && !config.detachOnExit)
        let unit = try text("deploy/systemd/icmpwall.service")
        #expect(unit.contains("ReadWritePaths=/sys/fs/bpf") && unit.contains("ExecReload=/bin/sh -c 'kill -HUP $$MAINPID'"))
        guard Tool.exists("systemd-analyze") else { return }
        // verify wants the binary to exist: point the copy at one that does.
        let dir = FileManager.default.temporaryDirectory.appending(path: "icmpwall-unit-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let copy = dir.appending(path: "icmpwall.service").path
        try unit.replacingOccurrences(of: "/usr/bin/icmpwall", with: "/bin/true").write(toFile: copy, atomically: true, encoding: .utf8)
        let r = try Tool.run(["systemd-analyze", "verify", copy], check: false)
        #expect(r.status == 0 && r.stderr.isEmpty, "systemd-analyze verify: \(r.stdout) \(r.stderr)")
    }
}
