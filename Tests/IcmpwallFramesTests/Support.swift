import Foundation
import Testing

/// The folded one's complement sum of `bytes` (big-endian 16-bit words, odd tail padded with zero).
/// Written independently of `InternetChecksum` so the tests do not verify the builder with itself:
/// a region whose checksum field is correct sums to 0xffff.
func onesComplementSum(_ bytes: [UInt8]) -> UInt16 {
    var sum: UInt32 = 0
    var index = 0
    while index < bytes.count {
        let high = UInt32(bytes[index]) << 8
        let low = index + 1 < bytes.count ? UInt32(bytes[index + 1]) : 0
        sum += high | low
        sum = (sum & 0xffff) + (sum >> 16)
        index += 2
    }
    return UInt16(sum)
}

/// Big-endian 16-bit field.
func be16(_ bytes: [UInt8], _ offset: Int) -> UInt16 {
    UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
}

/// Big-endian 32-bit field.
func be32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    UInt32(be16(bytes, offset)) << 16 | UInt32(be16(bytes, offset + 2))
}

/// The IPv6 pseudo-header (RFC 8200 8.1) built by hand from the addresses in an IPv6 header at `ipOffset`.
func ipv6PseudoHeader(frame: [UInt8], ipOffset: Int, upperLayerLength: Int, nextHeader: UInt8) -> [UInt8] {
    var bytes = Array(frame[(ipOffset + 8)..<(ipOffset + 40)])
    bytes += [UInt8(upperLayerLength >> 24 & 0xff), UInt8(upperLayerLength >> 16 & 0xff),
              UInt8(upperLayerLength >> 8 & 0xff), UInt8(upperLayerLength & 0xff)]
    bytes += [0, 0, 0, nextHeader]
    return bytes
}

/// The IPv4 pseudo-header (RFC 793) built by hand from the IPv4 header at `ipOffset`.
func ipv4PseudoHeader(frame: [UInt8], ipOffset: Int, upperLayerLength: Int, protocolNumber: UInt8) -> [UInt8] {
    Array(frame[(ipOffset + 12)..<(ipOffset + 20)])
        + [0, protocolNumber, UInt8(upperLayerLength >> 8), UInt8(upperLayerLength & 0xff)]
}

/// A fresh directory for one test's files, removed by `cleanup()`.
struct TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("icmpwall-frames-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    func cleanup() { try? FileManager.default.removeItem(at: url) }
}

/// Where tcpdump is installed, if it is.
let tcpdumpPath: String? = ["/usr/bin/tcpdump", "/usr/sbin/tcpdump", "/usr/local/bin/tcpdump", "/usr/local/sbin/tcpdump"]
    .first { FileManager.default.isExecutableFile(atPath: $0) }

/// In CI (CI=true) a missing tcpdump must fail the cross-checks instead of silently skipping them.
let runningInCI = ProcessInfo.processInfo.environment["CI"]?.lowercased() == "true"

/// Runs tcpdump with `arguments`; returns (exit status, stdout, stderr).
func runTcpdump(_ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
    guard let tcpdumpPath else {
        Issue.record("""
            tcpdump is not installed (looked in /usr/bin, /usr/sbin, /usr/local/bin, /usr/local/sbin), \
            but CI=true requires the tcpdump cross-checks: install the tcpdump package
            """)
        return (-1, "", "")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tcpdumpPath)
    process.arguments = arguments
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    // Read before waiting so a large listing cannot block on a full pipe.
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    let errorData = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outputData, as: UTF8.self),
            String(decoding: errorData, as: UTF8.self))
}
