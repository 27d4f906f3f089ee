import BPFKit
import Foundation
import IcmpwallDataplane
import IcmpwallPolicy
import Testing

/// Privileged tests run as root; in CI (CI=true) missing privileges fail loudly instead of skipping.
enum Privilege {
    static var available: Bool { Capabilities.missing().isEmpty }
    static var inCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// True when the test may run; records a failure in CI when it may not.
    static func require(sourceLocation: Testing.SourceLocation = #_sourceLocation) -> Bool {
        if available { return true }
        if inCI {
            Issue.record("CI=true but this test lacks privileges (missing \(Capabilities.missing().joined(separator: ", "))): privileged tests must run as root in CI",
                         sourceLocation: sourceLocation)
        }
        return false
    }

    /// Skip reason shown outside CI.
    static let reason = "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON) to load BPF programs; runs in CI as root"
}

/// Compiles an inline policy (fails the test on an invalid one).
func compile(_ yaml: String, file: String = "test.yaml") throws -> CompiledPolicy {
    let (policy, _) = try PolicyLoader.parse(yaml, fileName: file)
    return try PolicyCompiler.compile(policy, capacity: DatapathCapacity.compile)
}

/// A harness with a policy, for tests that judge frames.
func harness(_ yaml: String) throws -> DatapathHarness {
    try DatapathHarness(policy: compile(yaml))
}

let second: UInt64 = 1_000_000_000
