import IcmpwallDifferential
import BPFKit
import Foundation
import IcmpwallCapture
import IcmpwallDataplane
import IcmpwallModel
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
}

/// Parses and compiles an inline policy (fails the test on an invalid one).
func policy(_ yaml: String) throws -> Policy {
    try PolicyLoader.parse(yaml, fileName: "test.yaml").0
}



let second: UInt64 = 1_000_000_000
