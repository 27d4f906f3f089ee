// The only file that sees libpcap's C API; everything else calls these wrappers, which use
// Swift types only.
//
// Why `@_implementationOnly`: <pcap/pcap.h> includes <pcap/bpf.h>, whose `struct bpf_insn` (classic BPF)
// differs from the `struct bpf_insn` (eBPF) of <linux/bpf.h> that CLibBPF and CIcmpwallShim bring in.
// A plain (or `internal`) import makes every client of IcmpwallCapture load the CPcap clang module too,
// and a client that also imports CIcmpwallShim (IcmpwallDataplane) then fails to compile with
// "'bpf_insn::k' from module 'CPcap' is not present in definition of 'struct bpf_insn' in module
// 'CIcmpwallShim'". An implementation-only import keeps CPcap out of this module's interface. The
// compiler warns that this is unsafe without library evolution when an imported type affects the layout
// of a type clients see; here none does: public types hold only Swift standard library types, and the
// pcap handles are stored as `OpaquePointer` in private properties.
@_implementationOnly import CPcap
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum Pcap {
    /// DLT_ values of the link types this module supports.
    static let dltEthernet = Int32(DLT_EN10MB)
    static let dltLinuxSLL = Int32(DLT_LINUX_SLL)
    static let dltLinuxSLL2 = Int32(DLT_LINUX_SLL2)
    static let dltRaw = Int32(DLT_RAW)
    static let dltIPv4 = Int32(DLT_IPV4)
    static let dltIPv6 = Int32(DLT_IPV6)

    /// libpcap's name for a DLT_ value, or `DLT <n>` when libpcap has none.
    static func linkTypeName(_ dataLinkType: Int32) -> String {
        guard let name = pcap_datalink_val_to_name(dataLinkType) else { return "DLT \(dataLinkType)" }
        return String(cString: name)
    }

    // MARK: Reading

    /// Opens a pcap or pcapng file with nanosecond timestamps; libpcap's message on failure.
    static func openOffline(path: String) -> Result<OpaquePointer, PcapMessage> {
        var errorBuffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        // Nanosecond precision makes libpcap scale microsecond files up instead of rounding nanosecond
        // files down, so timestamps are exact for both.
        guard let handle = pcap_open_offline_with_tstamp_precision(
            path, UInt32(PCAP_TSTAMP_PRECISION_NANO), &errorBuffer)
        else {
            return .failure(PcapMessage(text: cString(errorBuffer)))
        }
        return .success(handle)
    }

    static func dataLinkType(_ handle: OpaquePointer) -> Int32 { pcap_datalink(handle) }

    static func snapshotLength(_ handle: OpaquePointer) -> Int { Int(pcap_snapshot(handle)) }

    static func close(_ handle: OpaquePointer) { pcap_close(handle) }

    /// One record as libpcap returns it.
    struct Record {
        var seconds: Int64
        /// Nanoseconds (the handle was opened with nanosecond precision).
        var nanoseconds: Int64
        var originalLength: Int
        var bytes: [UInt8]
    }

    enum NextResult {
        case record(Record)
        case end
        case error(String)
    }

    /// The next record (`pcap_next_ex`).
    static func next(_ handle: OpaquePointer) -> NextResult {
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<u_char>?
        let status = pcap_next_ex(handle, &header, &data)
        switch status {
        case 1:
            guard let header else { return .error("libpcap returned a record without a header") }
            let capturedLength = Int(header.pointee.caplen)
            let bytes: [UInt8] = capturedLength == 0 || data == nil
                ? [] : Array(UnsafeBufferPointer(start: data, count: capturedLength))
            return .record(Record(seconds: Int64(header.pointee.ts.tv_sec),
                                  nanoseconds: Int64(header.pointee.ts.tv_usec),
                                  originalLength: Int(header.pointee.len), bytes: bytes))
        case PCAP_ERROR_BREAK: // no more records in a savefile
            return .end
        default:
            return .error(pcap_geterr(handle).map { String(cString: $0) } ?? "pcap_next_ex returned \(status)")
        }
    }

    // MARK: Writing

    /// A pcap_t for writing plus its dumper.
    struct Dump {
        var deadHandle: OpaquePointer
        var dumper: OpaquePointer
    }

    /// Creates `path` as a pcap file of `dataLinkType`; libpcap's message on failure.
    static func openDump(path: String, dataLinkType: Int32, snapshotLength: Int,
                         nanosecond: Bool) -> Result<Dump, PcapMessage> {
        let precision = nanosecond ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO
        guard let deadHandle = pcap_open_dead_with_tstamp_precision(
            dataLinkType, Int32(snapshotLength), UInt32(precision))
        else {
            return .failure(PcapMessage(text: "pcap_open_dead failed for link type \(linkTypeName(dataLinkType))"))
        }
        guard let dumper = pcap_dump_open(deadHandle, path) else {
            let message = String(cString: pcap_geterr(deadHandle))
            pcap_close(deadHandle)
            return .failure(PcapMessage(text: message))
        }
        return .success(Dump(deadHandle: deadHandle, dumper: dumper))
    }

    /// Appends a record (`pcap_dump`); false when the stream's error flag is set afterwards, since
    /// pcap_dump itself reports nothing.
    static func dump(_ dump: Dump, seconds: UInt64, fraction: UInt64, originalLength: Int, bytes: [UInt8]) -> Bool {
        var header = pcap_pkthdr()
        header.ts.tv_sec = .init(seconds)
        // libpcap stores whatever tv_usec holds; nanosecond files read it back as nanoseconds.
        header.ts.tv_usec = .init(fraction)
        header.caplen = UInt32(bytes.count)
        header.len = UInt32(clamping: originalLength)
        bytes.withUnsafeBufferPointer { buffer in
            // pcap_dump's first argument is the dumper disguised as a u_char * (a pcap_handler user argument).
            pcap_dump(UnsafeMutableRawPointer(dump.dumper).assumingMemoryBound(to: u_char.self), &header,
                      buffer.baseAddress)
        }
        return ferror(pcap_dump_file(dump.dumper)) == 0
    }

    /// Flushes the dump; the C library's error text on failure.
    static func flush(_ dump: Dump) -> String? {
        pcap_dump_flush(dump.dumper) == 0 ? nil : String(cString: strerror(errno))
    }

    static func close(_ dump: Dump) {
        pcap_dump_close(dump.dumper)
        pcap_close(dump.deadHandle)
    }
}

/// libpcap's error text, as an Error for `Result`.
struct PcapMessage: Error {
    var text: String
}

/// The NUL-terminated text in a C character buffer.
private func cString(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}
