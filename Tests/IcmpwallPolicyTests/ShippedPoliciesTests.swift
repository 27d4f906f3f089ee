import Foundation
import Testing
@testable import IcmpwallPolicy

@Suite("Shipped policies")
struct ShippedPoliciesTests {
    static let policyFiles = ["edge-default.yaml", "monitor-only.yaml", "strict.yaml", "rfc4890-host.yaml"]

    @Test("every shipped policy loads without warnings and compiles", arguments: policyFiles)
    func shippedPolicyLoads(_ name: String) throws {
        let path = packageRoot() + "/Policies/" + name
        let (policy, warnings) = try PolicyLoader.load(contentsOf: path)
        #expect(warnings.isEmpty, "\(warnings)")
        #expect(policy.name == String(name.dropLast(5)))
        #expect(policy.fileName == path)
        #expect(policy.sha256Hex.count == 64)
        let compiled = try PolicyCompiler.compile(policy)
        #expect(!compiled.decisions.isEmpty || policy.rules.isEmpty)
    }

    @Test("Policies/ holds exactly the policies this suite checks")
    func noUntestedPolicy() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: packageRoot() + "/Policies")
            .filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files == Self.policyFiles.sorted())
    }

    @Test func embeddedDefaultMatchesFile() throws {
        let bytes = try #require(FileManager.default.contents(atPath: packageRoot() + "/Policies/edge-default.yaml"))
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(PolicyLoader.embeddedDefault == text)
        let embedded = try PolicyLoader.loadEmbeddedDefault()
        let file = try PolicyLoader.load(contentsOf: packageRoot() + "/Policies/edge-default.yaml").0
        #expect(embedded.sha256Hex == file.sha256Hex)
        #expect(embedded.name == "edge-default")
    }
}
