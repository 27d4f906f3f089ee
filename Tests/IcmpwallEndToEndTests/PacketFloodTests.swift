import Foundation
import IcmpwallDataplane
import IcmpwallFrames
import Testing

/// The benchmarks' packet-socket sender (`PacketSocket.flood`, `icw_packet_flood` in the C shim), used where the
/// kernel refuses live frames: every frame it counts must arrive at the peer, byte for byte except the spoofed source,
/// with a valid IPv4 header checksum, and the sources must cycle as the live-frames sender's do.
@Suite("Packet-socket flood sender", .serialized,
       .enabled(if: Privilege.available || Privilege.inCI, "needs root to create namespaces and packet sockets; runs in CI as root"))
struct PacketFloodTests {
    /// The IPv4 header checksum of `frame` (Ethernet + IPv4) is valid: the one's-complement sum of the header is 0xffff.
    static func headerChecksumValid(_ frame: [UInt8]) -> Bool {
        guard frame.count >= 34 else { return false }
        let ihl = Int(frame[14] & 0x0f) * 4
        var sum: UInt32 = 0
        for i in stride(from: 14, to: 14 + ihl, by: 2) { sum += UInt32(frame[i]) << 8 | UInt32(frame[i + 1]) }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        return sum == 0xffff
    }

    @Test("every frame sent arrives; spoofed sources cycle from 198.18.0.0 with valid header checksums")
    func floodArrives() throws {
        guard Privilege.require() else { return }
        let topology = try LabTopology(prefix: LabTopology.uniquePrefix("icwpf"))
        defer { topology.destroy() }
        let receiver = try topology.packetSocket(namespace: topology.serverNamespace, interface: topology.serverInterface, receive: true)
        let sender = try topology.packetSocket(namespace: topology.clientNamespace, interface: topology.clientInterface, receive: false)
        let client = MACAddress(parsing: topology.clientMAC)!, server = MACAddress(parsing: topology.serverMAC)!
        let frame = FrameBuilder.icmpv4(.echoRequest(identifier: 7, sequence: 1), from: "198.18.0.0", to: "192.0.2.2")
            .addressed(from: client, to: server).padded().bytes
        _ = try receiver.drain(quiet: 0.2)  // neighbour discovery and the like

        // 250 frames over 100 sources, from frame number 40 on: sources 40...99, 0...99, 0...89.
        var sequence: UInt64 = 40
        var sent = 0
        for _ in 0..<10 where sent < 250 {
            sent += try sender.flood(frame, count: 250 - sent, batch: 64, spoofing: (0xC612_0000, 100), sequence: &sequence)
        }
        #expect(sent == 250, "a veth without XDP takes 250 frames without filling the socket buffer")
        #expect(sequence == 290)
        let echoes = try receiver.drain(quiet: 0.5).filter { FrameSummary(parsing: $0).icmpType == 8 }
        #expect(echoes.count == 250, "every frame sent arrived")
        let sources = echoes.map { FrameSummary(parsing: $0).source?.description ?? "?" }
        #expect(sources.first == "198.18.0.40" && sources.last == "198.18.0.89", "first \(sources.first ?? "-"), last \(sources.last ?? "-")")
        #expect(Set(sources).count == 100)
        #expect(echoes.allSatisfy(Self.headerChecksumValid), "a rewritten header's checksum is wrong")
        // Nothing but the source address and the header checksum differs from the frame given.
        for e in echoes {
            #expect(e.count == frame.count)
            let unchanged = (0..<frame.count).filter { !(24..<26).contains($0) && !(26..<30).contains($0) }
            #expect(unchanged.allSatisfy { e[$0] == frame[$0] })
        }

        // Without spoofing the frames go out exactly as given; bad arguments are refused before anything is sent.
        var plain: UInt64 = 0
        #expect(try sender.flood(frame, count: 20, batch: 8, sequence: &plain) == 20)
        #expect(try receiver.drain(quiet: 0.5).filter { $0 == frame }.count == 20)
        #expect(throws: DataplaneError.self) { try sender.flood(frame, count: 1, batch: 0, sequence: &plain) }
        #expect(throws: DataplaneError.self) { try sender.flood(Array(frame.prefix(20)), count: 1, sequence: &plain) }
    }
}
