import Testing
@testable import IcmpwallPolicy

@Suite("Nesting limit")
struct NestingTests {
    @Test func deepFlowNestingIsRefusedWithALocation() {
        let text = "version: 1\nrules: " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + "\n"
        #expect(errors(text) == ["t.yaml:2:72: error: the document nests deeper than 64 levels here; a policy needs far fewer"])
    }

    @Test func deepBlockNestingIsRefused() {
        let text = "version: 1\nrules:\n  " + String(repeating: "- ", count: 5000) + "x\n"
        #expect(errors(text).first?.hasPrefix("t.yaml:3:") == true)
    }

    @Test func bracketsInQuotesAndCommentsDoNotCount() throws {
        let brackets = String(repeating: "[", count: 100)
        let (p, _) = try load("version: 1\nname: x # \(brackets)\nrules:\n  - { name: a, type: echo-request, action: drop } # \(brackets)\n")
        #expect(p.rules.count == 1)
    }
}
