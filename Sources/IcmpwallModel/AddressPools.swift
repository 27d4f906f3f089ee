// Small pools of nested prefixes and of addresses inside, at the edges of and outside them, shared by the frame
// and policy generators so that generated sources actually fall into (and just out of) generated `from` rules
// and per-source buckets.

/// Prefixes and addresses the generators draw from.
public enum AddressPools {
    /// IPv4 `from` prefixes (canonical: no host bits), nested and overlapping.
    public static let v4Prefixes = [
        "192.0.2.0/24", "192.0.2.0/25", "192.0.2.128/26", "192.0.2.7", "192.0.2.6/31", "198.51.100.0/24",
        "198.51.100.0/22", "203.0.113.0/24", "10.0.0.0/8", "0.0.0.0/0", "192.0.0.0/8", "224.0.0.0/4",
    ]
    /// IPv6 `from` prefixes (canonical), nested and overlapping.
    public static let v6Prefixes = [
        "2001:db8::/32", "2001:db8::/64", "2001:db8:1::/48", "2001:db8::1", "2001:db8::/127", "fe80::/10",
        "::/0", "2001:db8:0:1::/64", "2001:db8:1:2::/64", "ff00::/8",
    ]
    /// IPv4 sources: inside, at the edge of and outside the prefixes above.
    public static let v4Sources: [[UInt8]] = [
        [192, 0, 2, 1], [192, 0, 2, 7], [192, 0, 2, 6], [192, 0, 2, 8], [192, 0, 2, 127], [192, 0, 2, 128],
        [192, 0, 2, 130], [192, 0, 2, 200], [198, 51, 100, 5], [198, 51, 100, 77], [198, 51, 101, 3],
        [198, 51, 104, 1], [203, 0, 113, 9], [203, 0, 113, 10], [10, 1, 2, 3], [10, 200, 0, 1], [172, 16, 0, 1],
        [0, 0, 0, 0], [255, 255, 255, 255], [224, 0, 0, 5], [192, 1, 1, 1],
    ]
    /// IPv6 sources: inside, at the edge of and outside the prefixes above.
    public static let v6Sources: [[UInt8]] = [
        v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2), v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        v6(0x2001, 0xdb8, 0, 0, 0, 0, 1, 5), v6(0x2001, 0xdb8, 0, 0, 0x8000, 0, 0, 9), v6(0x2001, 0xdb8, 1, 0, 0, 0, 0, 9),
        v6(0x2001, 0xdb8, 1, 2, 0, 0, 0, 1), v6(0x2001, 0xdb8, 1, 2, 0, 0, 0, 0x99), v6(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1),
        v6(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x77), v6(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1), v6(0xfe80, 0, 0, 0, 0, 0, 0, 1),
        v6(0xfebf, 0xffff, 0, 0, 0, 0, 0, 1), v6(0, 0, 0, 0, 0, 0, 0, 0), v6(0, 0, 0, 0, 0, 0, 0, 1),
        v6(0x2001, 0xdb9, 0, 0, 0, 0, 0, 1), v6(0xff02, 0, 0, 0, 0, 0, 0, 1),
    ]
    /// IPv4 destinations: unicast, limited broadcast, multicast, a directed broadcast (not a group address). The
    /// unicast ones share /24, /22 and /16 prefixes, so the egress limiter's per-destination prefixes group them.
    public static let v4Destinations: [[UInt8]] = [
        [198, 51, 100, 1], [192, 0, 2, 2], [255, 255, 255, 255], [224, 0, 0, 1], [239, 255, 255, 250],
        [192, 0, 2, 255], [223, 255, 255, 255], [240, 0, 0, 1], [255, 255, 255, 254],
        [198, 51, 100, 2], [198, 51, 101, 9], [198, 51, 200, 1], [192, 0, 2, 3],
    ]
    /// IPv6 destinations: unicast (sharing /64 and /48 prefixes), multicast.
    public static let v6Destinations: [[UInt8]] = [
        v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2), v6(0xff02, 0, 0, 0, 0, 0, 0, 1), v6(0xff02, 0, 0, 0, 0, 1, 0xff00, 2),
        v6(0xfe80, 0, 0, 0, 0, 0, 0, 2), v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3), v6(0x2001, 0xdb8, 0, 7, 0, 0, 0, 2),
    ]

    /// An IPv6 address from eight 16-bit groups.
    public static func v6(_ g: Int...) -> [UInt8] {
        g.flatMap { [UInt8(truncatingIfNeeded: $0 >> 8), UInt8(truncatingIfNeeded: $0)] }
    }
}
