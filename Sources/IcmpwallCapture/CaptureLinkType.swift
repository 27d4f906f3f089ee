/// The link-layer header types this module reads (converting to Ethernet) and writes.
public enum CaptureLinkType: Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// DLT_EN10MB: Ethernet frames, stored as is.
    case ethernet
    /// DLT_LINUX_SLL: Linux cooked capture v1 (16-byte header), what `tcpdump -i any` wrote before libpcap 1.10.
    case linuxSLL
    /// DLT_LINUX_SLL2: Linux cooked capture v2 (20-byte header), what `tcpdump -i any` writes now.
    case linuxSLL2
    /// DLT_RAW: raw IPv4 or IPv6 packets, told apart by the version nibble.
    case rawIP
    /// DLT_IPV4: raw IPv4 packets.
    case ipv4
    /// DLT_IPV6: raw IPv6 packets.
    case ipv6

    /// The libpcap DLT_ value.
    public var dataLinkType: Int32 {
        switch self {
        case .ethernet: Pcap.dltEthernet
        case .linuxSLL: Pcap.dltLinuxSLL
        case .linuxSLL2: Pcap.dltLinuxSLL2
        case .rawIP: Pcap.dltRaw
        case .ipv4: Pcap.dltIPv4
        case .ipv6: Pcap.dltIPv6
        }
    }

    /// The type for a libpcap DLT_ value, nil when unsupported.
    public init?(dataLinkType: Int32) {
        guard let type = CaptureLinkType.allCases.first(where: { $0.dataLinkType == dataLinkType }) else {
            return nil
        }
        self = type
    }

    /// libpcap's name for this link type (`EN10MB`, `LINUX_SLL`, `LINUX_SLL2`, `RAW`, `IPV4`, `IPV6`).
    public var description: String { Pcap.linkTypeName(dataLinkType) }
}
