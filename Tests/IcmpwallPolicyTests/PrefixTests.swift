import Testing
@testable import IcmpwallPolicy

@Suite("IP prefixes")
struct PrefixTests {
    @Test("valid prefixes and their canonical text", arguments: [
        ("192.0.2.0/24", "192.0.2.0/24"), ("10.1.2.3", "10.1.2.3/32"), ("0.0.0.0/0", "0.0.0.0/0"),
        ("2001:db8::/32", "2001:db8::/32"), ("2001:DB8:0:0:0:0:0:1", "2001:db8::1/128"), ("::/0", "::/0"),
        ("::1", "::1/128"), ("fe80::/10", "fe80::/10"), ("2001:db8:0:1:0:0:0:0/64", "2001:db8:0:1::/64"),
        ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1/128"), ("2001:0:0:1:1:0:0:1", "2001::1:1:0:0:1/128"), ("2001:db8::0:1:0:0:1", "2001:db8::1:0:0:1/128"),
        ("::ffff:192.0.2.1", "::ffff:c000:201/128"), ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8/128"),
        ("1:0:3:4:5:6:7:8", "1:0:3:4:5:6:7:8/128"), ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0/128"),
    ])
    func parses(_ text: String, _ canonical: String) throws {
        let p = try #require(IPPrefix(parsing: text))
        #expect(p.description == canonical)
        #expect(IPPrefix(parsing: canonical) == p)
    }

    @Test("invalid prefixes", arguments: [
        "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4/33", "1.2.3.4/-1", "1.2.3.4/", "1.2.3.4/24/1",
        "2001:db8::/129", "2001:db8:::1", "1::2::3", "12345::", "fe80::1%eth0", "::g", "1:2:3:4:5:6:7:8:9", "1.2.3.4::",
        "10.0.0.0/ 8", " 10.0.0.0/8", "::1.2.3", "1:2:3:4:5:6:7:8::",
        // Digits that are numbers but not ASCII, and a combining mark after a separator, are refused too.
        "\u{FF11}92.0.2.0/24", "192.0.2.0/\u{FF12}4", "2001:db8::/3\u{FF12}", "2001:db8::\u{FF41}", "192.0.2.0/\u{301}24",
        "1.2.3.4/024/", "2001:db8:::/32", ":1::", "1::2:",
    ])
    func refuses(_ text: String) {
        #expect(IPPrefix(parsing: text) == nil)
        #expect(IPPrefix.parseLenient(text) == nil)
    }

    @Test func hostBits() throws {
        #expect(IPPrefix(parsing: "10.0.0.1/8") == nil)
        let lenient = try #require(IPPrefix.parseLenient("10.0.0.1/8"))
        #expect(lenient.hasHostBits)
        #expect(lenient.prefix.description == "10.0.0.0/8")
        #expect(IPPrefix.parseLenient("2001:db8::1/127")?.prefix.description == "2001:db8::/127")
        #expect(IPPrefix.parseLenient("10.0.0.0/8")?.hasHostBits == false)
    }

    @Test func containment() throws {
        let p = try #require(IPPrefix(parsing: "10.128.0.0/9"))
        #expect(p.family == .ipv4)
        #expect(p.bytes == [10, 128, 0, 0])
        #expect(p.length == 9)
        #expect(p.contains([10, 200, 1, 1]))
        #expect(!p.contains([10, 127, 255, 255]))
        #expect(!p.contains([10, 200, 1]))
        #expect(!p.contains(Array(repeating: 0, count: 16)))
        #expect(IPPrefix(parsing: "0.0.0.0/0")!.contains([1, 2, 3, 4]))
        let v6 = try #require(IPPrefix(parsing: "2001:db8::/33"))
        #expect(v6.contains([0x20, 0x01, 0x0d, 0xb8, 0x7f] + Array(repeating: 0xff, count: 11)))
        #expect(!v6.contains([0x20, 0x01, 0x0d, 0xb8, 0x80] + Array(repeating: 0, count: 11)))
        #expect(IPPrefix(parsing: "10.0.0.0/8")!.contains(IPPrefix(parsing: "10.1.0.0/16")!))
        #expect(!IPPrefix(parsing: "10.1.0.0/16")!.contains(IPPrefix(parsing: "10.0.0.0/8")!))
        #expect(IPPrefix(bytes: [192, 0, 2, 255], length: 24).description == "192.0.2.0/24")
        #expect(IPPrefix(parsing: "10.1.0.0/16")!.truncated(to: 8).description == "10.0.0.0/8")
    }

    @Test func ordering() {
        let sorted = ["2001:db8::/32", "10.0.0.0/16", "10.0.0.0/8", "9.0.0.0/8"].map { IPPrefix(parsing: $0)! }.sorted()
        #expect(sorted.map(\.description) == ["9.0.0.0/8", "10.0.0.0/8", "10.0.0.0/16", "2001:db8::/32"])
    }
}
