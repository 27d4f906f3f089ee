import Testing
@testable import IcmpwallPolicy

@Suite("Egress section")
struct EgressPolicyTests {
    @Test func parsesAllFields() throws {
        let (p, _) = try load("""
            version: 1
            egress:
              errors:
                limit: { rate: 1000/s, burst: 50 }
                per-destination: { rate: 10/s, burst: 6, ipv4-prefix: 24, ipv6-prefix: 48 }
                exempt: [fragmentation-needed, packet-too-big, time-exceeded]
            """)
        let e = try #require(p.egress)
        #expect(e.global == TokenBucketSpec(rate: Rate(count: 1000, periodNanoseconds: Rate.second), burst: 50))
        #expect(e.perDestination == TokenBucketSpec(rate: Rate(count: 10, periodNanoseconds: Rate.second), burst: 6))
        #expect(e.ipv4Prefix == 24 && e.ipv6Prefix == 48)
        #expect(e.isExempt(family: .ipv4, type: 3, code: 4))
        #expect(!e.isExempt(family: .ipv4, type: 3, code: 3))
        #expect(e.isExempt(family: .ipv6, type: 2, code: 0))
        #expect(e.isExempt(family: .ipv4, type: 11, code: 1) && e.isExempt(family: .ipv6, type: 3, code: 0), "a type name exempts every code, in both families")
    }

    @Test func defaults() throws {
        let (p, _) = try load("version: 1\negress:\n  errors:\n    per-destination: { rate: 10/s }\n")
        let e = try #require(p.egress)
        #expect(e.global == nil)
        #expect(e.perDestination?.burst == 10, "burst defaults to the per-second rate")
        #expect(e.ipv4Prefix == 32 && e.ipv6Prefix == 64)
        #expect(e.exempt == EgressPolicy.defaultExempt, "PMTUD messages are exempt by default")
        #expect(try load("version: 1\n").0.egress == nil, "no egress section: errors are counted, not limited")
        let none = try #require(try load("version: 1\negress:\n  errors:\n    limit: { rate: 5/s }\n    exempt: []\n").0.egress)
        #expect(none.exempt.isEmpty)
    }

    @Test func badInput() {
        #expect(errors("version: 1\negress:\n  errors:\n    limit: { rate: 0/s, burst: 5 }\n")
                == ["t.yaml:4:20: error: invalid rate '0/s': the count must be 1-4294967296"])
        #expect(errors("version: 1\negress:\n  errors:\n    limit: { rate: 5/s, burst: 0 }\n")
                == ["t.yaml:4:32: error: invalid burst '0': expected a whole number of packets, at least 1"])
        #expect(errors("version: 1\negress:\n  errors:\n    per-destination: { rate: 5/s, ipv4-prefix: 33 }\n")
                == ["t.yaml:4:48: error: invalid ipv4-prefix '33': expected a prefix length 0-32"])
        #expect(errors("version: 1\negress:\n  errors:\n    limit: { rate: 5/s }\n    exempt: [frag-neded]\n")
                == ["t.yaml:5:14: error: unknown ICMP error 'frag-neded' in exempt; did you mean 'frag-needed'?"])
        #expect(errors("version: 1\negress:\n  errors:\n    limit: { rate: 5/s }\n    exempt: [echo-request]\n")
                .first?.hasPrefix("t.yaml:5:14: error: 'echo-request' is not an ICMP error") == true)
        #expect(errors("version: 1\negress:\n  errors:\n    exempt: [packet-too-big]\n")
                == ["t.yaml:3:3: error: egress errors sets no limit: give 'limit' (global), 'per-destination', or both"])
        #expect(errors("version: 1\negress:\n  errors:\n    limt: { rate: 5/s }\n")
                .contains("t.yaml:4:5: error: unknown key 'limt' in egress errors; did you mean 'limit'?"))
        #expect(errors("version: 1\negress:\n  limit: { rate: 5/s }\n").first?.hasPrefix("t.yaml:3:3: error: unknown key 'limit' in egress") == true)
    }
}
