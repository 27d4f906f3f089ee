import IcmpwallFrames
import Testing

@Suite("Addresses")
struct AddressTests {
    @Test func macAddressParsesAndPrints() throws {
        let mac = try #require(MACAddress(parsing: "AA:bb:0c:d:EE:ff"))
        #expect(mac.bytes == [0xaa, 0xbb, 0x0c, 0x0d, 0xee, 0xff])
        #expect(mac.description == "aa:bb:0c:0d:ee:ff")
        #expect(MACAddress(parsing: "aa-bb-cc-dd-ee-ff")?.bytes == [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff])
        #expect(MACAddress.broadcast.description == "ff:ff:ff:ff:ff:ff")
        #expect(MACAddress.broadcast.isMulticast)
        #expect(!MACAddress.defaultSource.isMulticast)
        // Locally administered bit set, group bit clear.
        #expect(MACAddress.defaultSource.bytes[0] & 0x03 == 0x02)
        #expect(MACAddress.defaultDestination.bytes[0] & 0x03 == 0x02)
    }

    @Test(arguments: ["", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00", "aa:bb:cc:dd:ee:fg", "aaa:bb:cc:dd:ee:ff",
                      "aa:bb:cc:dd:ee:", "aa::cc:dd:ee:ff"])
    func macAddressRejects(_ text: String) {
        #expect(MACAddress(parsing: text) == nil)
    }

    @Test func ipv4ParsesAndPrints() throws {
        let address = try #require(IPv4Address(parsing: "192.0.2.1"))
        #expect(address.bytes == [192, 0, 2, 1])
        #expect(address.value == 0xC000_0201)
        #expect(IPv4Address(0xC633_6401).description == "198.51.100.1")
        #expect(IPv4Address(parsing: "255.255.255.255")?.value == 0xffff_ffff)
    }

    @Test(arguments: ["", "1.2.3", "1.2.3.4.5", "256.0.0.1", "a.b.c.d", "1..2.3", "1.2.3.-4", "+1.2.3.4", " 1.2.3.4",
                      "1.2.3.0004"])
    func ipv4Rejects(_ text: String) {
        #expect(IPv4Address(parsing: text) == nil)
    }

    @Test func ipv6Parses() throws {
        #expect(IPv6Address(parsing: "2001:db8::1")?.bytes
            == [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        #expect(IPv6Address(parsing: "::")?.bytes == [UInt8](repeating: 0, count: 16))
        #expect(IPv6Address(parsing: "::1")?.bytes == [UInt8](repeating: 0, count: 15) + [1])
        #expect(IPv6Address(parsing: "fe80::")?.bytes == [0xfe, 0x80] + [UInt8](repeating: 0, count: 14))
        #expect(IPv6Address(parsing: "1:2:3:4:5:6:7:8")?.bytes
            == [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8])
        #expect(IPv6Address(parsing: "::ffff:192.0.2.1")?.bytes
            == [UInt8](repeating: 0, count: 10) + [0xff, 0xff, 192, 0, 2, 1])
        #expect(IPv6Address(parsing: "64:ff9b::198.51.100.7")?.bytes.suffix(4) == [198, 51, 100, 7])
    }

    @Test(arguments: ["", ":", ":::", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "g::1",
                      "2001:db8::1%eth0", "1:2:3:4:5:6:7:8::", "::1.2.3", "1.2.3.4::", ":1::2", "1::2:"])
    func ipv6Rejects(_ text: String) {
        #expect(IPv6Address(parsing: text) == nil)
    }

    /// RFC 5952 canonical text, as inet_ntop and tcpdump print it.
    @Test(arguments: [
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("0:0:0:0:0:0:0:0", "::"),
        ("ff02:0:0:0:0:0:0:1", "ff02::1"),
        ("1:0:0:0:0:0:0:0", "1::"),
        ("::ffff:c000:0201", "::ffff:192.0.2.1"),
    ])
    func ipv6PrintsCanonically(_ input: String, _ expected: String) throws {
        let address = try #require(IPv6Address(parsing: input))
        #expect(address.description == expected)
    }

    @Test func solicitedNodeMulticast() {
        let address: IPv6Address = "2001:db8::12:3456:789a"
        #expect(address.solicitedNodeMulticast.description == "ff02::1:ff56:789a")
        #expect(address.solicitedNodeMulticast.isMulticast)
    }

    @Test func ipAddressEitherFamily() {
        #expect(IPAddress(parsing: "192.0.2.1") == .v4("192.0.2.1"))
        #expect(IPAddress(parsing: "2001:db8::1") == .v6("2001:db8::1"))
        #expect(IPAddress(parsing: "bogus") == nil)
        let literal: IPAddress = "2001:db8::1"
        #expect(literal.bytes.count == 16)
    }
}
