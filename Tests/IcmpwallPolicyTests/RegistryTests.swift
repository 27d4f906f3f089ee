import Foundation
import Testing
@testable import IcmpwallPolicy

@Suite("ICMP registry")
struct RegistryTests {
    @Test func canonicalNames() {
        #expect(ICMPRegistry.typeName(.ipv4, 3) == "destination-unreachable")
        #expect(ICMPRegistry.typeName(.ipv6, 2) == "packet-too-big")
        #expect(ICMPRegistry.typeName(.ipv6, 135) == "neighbor-solicitation")
        #expect(ICMPRegistry.typeName(.ipv6, 143) == "mld2-report")
        #expect(ICMPRegistry.typeName(.ipv4, 41) == nil)
        #expect(ICMPRegistry.typeName(.ipv6, 200) == nil)
        #expect(ICMPRegistry.codeName(.ipv4, type: 3, code: 4) == "fragmentation-needed")
        #expect(ICMPRegistry.codeName(.ipv4, type: 3, code: 2) == "protocol-unreachable")
        #expect(ICMPRegistry.codeName(.ipv6, type: 3, code: 0) == "hop-limit")
        #expect(ICMPRegistry.codeName(.ipv4, type: 11, code: 0) == "ttl-exceeded")
        #expect(ICMPRegistry.codeName(.ipv6, type: 1, code: 3) == "address-unreachable")
        #expect(ICMPRegistry.codeName(.ipv4, type: 3, code: 16) == nil)
        #expect(ICMPRegistry.codeName(.ipv4, type: 8, code: 0) == nil)
    }

    @Test func namesResolvePerFamily() {
        #expect(ICMPRegistry.types(named: "redirect").map { "\($0.0)/\($0.1)" } == ["ipv4/5", "ipv6/137"])
        #expect(ICMPRegistry.types(named: "echo-request").map { "\($0.0)/\($0.1)" } == ["ipv4/8", "ipv6/128"])
        #expect(ICMPRegistry.types(named: "nd-neighbor-solicit").map { "\($0.0)/\($0.1)" } == ["ipv6/135"])
        #expect(ICMPRegistry.types(named: "Echo-Request").isEmpty)
        #expect(ICMPRegistry.code(named: "frag-needed", family: .ipv4, type: 3) == 4)
        #expect(ICMPRegistry.code(named: "frag-needed", family: .ipv6, type: 1) == nil)
    }

    @Test("names are unique within a family and all lowercase")
    func namesAreUnique() {
        for family in ICMPFamily.allCases {
            let names = ICMPRegistry.allTypes.filter { $0.family == family }.flatMap { [$0.name] + $0.aliases }
            #expect(Set(names).count == names.count)
            for entry in ICMPRegistry.allTypes where entry.family == family {
                let codeNames = entry.codes.flatMap { [$0.name] + $0.aliases }
                #expect(Set(codeNames).count == codeNames.count, "\(entry.name)")
            }
        }
        for name in ICMPRegistry.allTypeNames + ICMPRegistry.allCodeNames {
            #expect(name == name.lowercased() && PolicyParser.isValidName(name), "\(name)")
        }
    }

    @Test func classes() {
        #expect(ICMPRegistry.types(in: .error, family: .ipv4) == [3, 4, 5, 11, 12])
        #expect(ICMPRegistry.types(in: .error, family: .ipv6) == Array(0...127))
        #expect(ICMPRegistry.types(in: .query, family: .ipv4) == [0, 8, 9, 10, 13, 14, 15, 16, 17, 18, 42, 43])
        #expect(ICMPRegistry.types(in: .query, family: .ipv6) == Array(128...255))
        #expect(ICMPRegistry.types(in: .deprecated, family: .ipv4) == [4, 6, 15, 16, 17, 18] + Array(30...39))
        #expect(ICMPRegistry.types(in: .deprecated, family: .ipv6) == [])
        #expect(ICMPRegistry.isError(.ipv4, 11))
        #expect(!ICMPRegistry.isError(.ipv4, 8))
        #expect(ICMPRegistry.isQuery(.ipv6, 128))
        #expect(ICMPRegistry.isDeprecated(.ipv4, 17))
        #expect(!ICMPRegistry.isDeprecated(.ipv6, 17))
    }

    @Test func protection() {
        #expect(ICMPRegistry.protection(.ipv4, type: 3, code: 4) != nil)
        #expect(ICMPRegistry.protection(.ipv4, type: 3, code: 3) == nil)
        #expect(ICMPRegistry.protection(.ipv6, type: 2, code: 200) != nil)
        #expect(ICMPRegistry.protection(.ipv6, type: 128, code: 0) == .mustNotDrop(limitAllowed: true))
        #expect(ICMPRegistry.protection(.ipv6, type: 3, code: 1) == nil)
        #expect(ICMPRegistry.protection(.ipv6, type: 4, code: 2) == .mustNotDrop(limitAllowed: false))
        #expect(ICMPRegistry.protection(.ipv6, type: 137, code: 0) == nil)
        for type: UInt8 in [130, 131, 132, 133, 134, 135, 136, 143] {
            guard case .essential = ICMPRegistry.protection(.ipv6, type: type, code: 0) else {
                Issue.record("type \(type) is not essential")
                continue
            }
        }
    }

    @Test func describe() {
        #expect(ICMPRegistry.describe(.ipv6, type: 2) == "ICMPv6 packet-too-big (type 2)")
        #expect(ICMPRegistry.describe(.ipv4, type: 3, code: 4) == "ICMPv4 destination-unreachable/fragmentation-needed (type 3 code 4)")
        #expect(ICMPRegistry.describe(.ipv4, type: 8, code: 1) == "ICMPv4 echo-request (type 8 code 1)")
        #expect(ICMPRegistry.describe(.ipv6, type: 200) == "ICMPv6 type 200")
        #expect(ICMPRegistry.describe(.ipv6, type: 200, code: 3) == "ICMPv6 type 200 code 3")
    }

    @Test("docs/policy.md carries the registry's names table, unchanged")
    func docsNameTable() throws {
        let docs = try String(contentsOfFile: packageRoot() + "/docs/policy.md", encoding: .utf8)
        #expect(docs.contains(ICMPRegistry.markdownNameTable()))
    }
}
