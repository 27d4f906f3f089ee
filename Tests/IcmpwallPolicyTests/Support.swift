import Testing
@testable import IcmpwallPolicy

/// The file name test policies are parsed under; diagnostics start with it.
let testFile = "t.yaml"

/// Parses YAML text that must be valid.
func load(_ yaml: String, file: String = testFile) throws -> (Policy, warnings: [PolicyDiagnostic]) {
    do {
        return try PolicyLoader.parse(yaml, fileName: file)
    } catch {
        Issue.record("unexpected errors:\n\(error)")
        throw error
    }
}

/// The diagnostics of YAML text that must be refused, as `FILE:L:C: error: message` strings.
func errors(_ yaml: String, file: String = testFile) -> [String] {
    do {
        let (p, w) = try PolicyLoader.parse(yaml, fileName: file)
        Issue.record("expected errors, got a policy \(p.name) with warnings \(w)")
        return []
    } catch {
        return error.diagnostics.map(\.description)
    }
}

/// The warnings of YAML text that must be accepted.
func warnings(_ yaml: String) throws -> [String] {
    try load(yaml).warnings.map(\.description)
}

/// A minimal policy around some rule lines (each already indented by 2 spaces as list items).
func policy(rules: String, header: String = "") -> String {
    "version: 1\n" + header + "rules:\n" + rules
}

/// Locates the package root from this file's path (Tests/IcmpwallPolicyTests/Support.swift).
func packageRoot(_ file: String = #filePath) -> String {
    var parts = file.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/")
}

/// A small deterministic generator (SplitMix64), so property tests are reproducible from their seed.
struct SeededRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
