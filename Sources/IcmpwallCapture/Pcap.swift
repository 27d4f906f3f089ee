// The only file that sees libpcap's C API; everything else calls these wrappers, which use
// Swift types only.
//
// libpcap is opened with dlopen the first time a capture file is read or written, not linked: linked, it and the
// eight libraries it brings (D-Bus, systemd, gcrypt, compression) were loaded and relocated at every start of
// every command, about 0.9 ms of each, for the few commands that touch captures. The header still provides the
// types and constants.
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

/// libpcap's entry points, resolved from the shared library on first use.
private struct PcapLibrary: @unchecked Sendable {
    #if os(Linux)
    static let soname = "libpcap.so.0.8"
    #else
    static let soname = "libpcap.A.dylib"
    #endif

    let datalinkValToName: @convention(c) (Int32) -> UnsafePointer<CChar>?
    let openOffline: @convention(c) (UnsafePointer<CChar>?, UInt32, UnsafeMutablePointer<CChar>?) -> OpaquePointer?
    let datalink: @convention(c) (OpaquePointer?) -> Int32
    let snapshot: @convention(c) (OpaquePointer?) -> Int32
    let close: @convention(c) (OpaquePointer?) -> Void
    let nextEx: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UnsafeMutablePointer<pcap_pkthdr>?>?,
                                UnsafeMutablePointer<UnsafePointer<u_char>?>?) -> Int32
    let geterr: @convention(c) (OpaquePointer?) -> UnsafeMutablePointer<CChar>?
    let openDead: @convention(c) (Int32, Int32, UInt32) -> OpaquePointer?
    let dumpOpen: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> OpaquePointer?
    let dump: @convention(c) (UnsafeMutablePointer<u_char>?, UnsafePointer<pcap_pkthdr>?, UnsafePointer<u_char>?) -> Void
    let dumpFlush: @convention(c) (OpaquePointer?) -> Int32
    let dumpFile: @convention(c) (OpaquePointer?) -> UnsafeMutablePointer<FILE>?
    let dumpClose: @convention(c) (OpaquePointer?) -> Void

    /// The library, or why it cannot be used; loaded once, by the first caller.
    static let shared: Result<PcapLibrary, PcapMessage> = load(soname)

    /// The library once loaded: only callers holding a handle it returned use this.
    static var loaded: PcapLibrary {
        guard case .success(let library) = shared else { preconditionFailure("libpcap handle without libpcap") }
        return library
    }

    static func load(_ soname: String) -> Result<PcapLibrary, PcapMessage> {
        guard let handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "not found"
            return .failure(PcapMessage(text: "cannot load libpcap, which reading and writing capture files needs: \(reason) (on Debian: apt install libpcap0.8)"))
        }
        var missing: [String] = []
        func symbol<T>(_ name: String, _ type: T.Type) -> T? {
            guard let address = dlsym(handle, name) else { missing.append(name); return nil }
            return unsafeBitCast(address, to: T.self)
        }
        let library = PcapLibrary(
            datalinkValToName: symbol("pcap_datalink_val_to_name", (@convention(c) (Int32) -> UnsafePointer<CChar>?).self),
            openOffline: symbol("pcap_open_offline_with_tstamp_precision",
                                (@convention(c) (UnsafePointer<CChar>?, UInt32, UnsafeMutablePointer<CChar>?) -> OpaquePointer?).self),
            datalink: symbol("pcap_datalink", (@convention(c) (OpaquePointer?) -> Int32).self),
            snapshot: symbol("pcap_snapshot", (@convention(c) (OpaquePointer?) -> Int32).self),
            close: symbol("pcap_close", (@convention(c) (OpaquePointer?) -> Void).self),
            nextEx: symbol("pcap_next_ex", (@convention(c) (OpaquePointer?, UnsafeMutablePointer<UnsafeMutablePointer<pcap_pkthdr>?>?,
                                                            UnsafeMutablePointer<UnsafePointer<u_char>?>?) -> Int32).self),
            geterr: symbol("pcap_geterr", (@convention(c) (OpaquePointer?) -> UnsafeMutablePointer<CChar>?).self),
            openDead: symbol("pcap_open_dead_with_tstamp_precision", (@convention(c) (Int32, Int32, UInt32) -> OpaquePointer?).self),
            dumpOpen: symbol("pcap_dump_open", (@convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> OpaquePointer?).self),
            dump: symbol("pcap_dump", (@convention(c) (UnsafeMutablePointer<u_char>?, UnsafePointer<pcap_pkthdr>?, UnsafePointer<u_char>?) -> Void).self),
            dumpFlush: symbol("pcap_dump_flush", (@convention(c) (OpaquePointer?) -> Int32).self),
            dumpFile: symbol("pcap_dump_file", (@convention(c) (OpaquePointer?) -> UnsafeMutablePointer<FILE>?).self),
            dumpClose: symbol("pcap_dump_close", (@convention(c) (OpaquePointer?) -> Void).self))
        guard missing.isEmpty, let library else {
            dlclose(handle)
            return .failure(PcapMessage(text: "the libpcap found (\(soname)) lacks \(missing.joined(separator: ", ")): it is older than 1.5"))
        }
        return .success(library)
    }

    private init?(datalinkValToName: (@convention(c) (Int32) -> UnsafePointer<CChar>?)?,
                  openOffline: (@convention(c) (UnsafePointer<CChar>?, UInt32, UnsafeMutablePointer<CChar>?) -> OpaquePointer?)?,
                  datalink: (@convention(c) (OpaquePointer?) -> Int32)?,
                  snapshot: (@convention(c) (OpaquePointer?) -> Int32)?,
                  close: (@convention(c) (OpaquePointer?) -> Void)?,
                  nextEx: (@convention(c) (OpaquePointer?, UnsafeMutablePointer<UnsafeMutablePointer<pcap_pkthdr>?>?,
                                           UnsafeMutablePointer<UnsafePointer<u_char>?>?) -> Int32)?,
                  geterr: (@convention(c) (OpaquePointer?) -> UnsafeMutablePointer<CChar>?)?,
                  openDead: (@convention(c) (Int32, Int32, UInt32) -> OpaquePointer?)?,
                  dumpOpen: (@convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> OpaquePointer?)?,
                  dump: (@convention(c) (UnsafeMutablePointer<u_char>?, UnsafePointer<pcap_pkthdr>?, UnsafePointer<u_char>?) -> Void)?,
                  dumpFlush: (@convention(c) (OpaquePointer?) -> Int32)?,
                  dumpFile: (@convention(c) (OpaquePointer?) -> UnsafeMutablePointer<FILE>?)?,
                  dumpClose: (@convention(c) (OpaquePointer?) -> Void)?) {
        guard let datalinkValToName, let openOffline, let datalink, let snapshot, let close, let nextEx, let geterr,
              let openDead, let dumpOpen, let dump, let dumpFlush, let dumpFile, let dumpClose else { return nil }
        self.datalinkValToName = datalinkValToName
        self.openOffline = openOffline
        self.datalink = datalink
        self.snapshot = snapshot
        self.close = close
        self.nextEx = nextEx
        self.geterr = geterr
        self.openDead = openDead
        self.dumpOpen = dumpOpen
        self.dump = dump
        self.dumpFlush = dumpFlush
        self.dumpFile = dumpFile
        self.dumpClose = dumpClose
    }
}

enum Pcap {
    /// Why the shared library `soname` cannot serve as libpcap, or nil if it can: what a capture command reports
    /// where libpcap is missing or too old.
    static func loadProblem(soname: String) -> String? {
        switch PcapLibrary.load(soname) {
        case .success: nil
        case .failure(let message): message.text
        }
    }

    /// DLT_ values of the link types this module supports.
    static let dltEthernet = Int32(DLT_EN10MB)
    static let dltLinuxSLL = Int32(DLT_LINUX_SLL)
    static let dltLinuxSLL2 = Int32(DLT_LINUX_SLL2)
    static let dltRaw = Int32(DLT_RAW)
    static let dltIPv4 = Int32(DLT_IPV4)
    static let dltIPv6 = Int32(DLT_IPV6)

    /// libpcap's name for a DLT_ value, or `DLT <n>` when libpcap has none.
    static func linkTypeName(_ dataLinkType: Int32) -> String {
        guard case .success(let library) = PcapLibrary.shared, let name = library.datalinkValToName(dataLinkType) else {
            return "DLT \(dataLinkType)"
        }
        return String(cString: name)
    }

    // MARK: Reading

    /// Opens a pcap or pcapng file with nanosecond timestamps; libpcap's message on failure.
    static func openOffline(path: String) -> Result<OpaquePointer, PcapMessage> {
        let library: PcapLibrary
        switch PcapLibrary.shared {
        case .success(let loaded): library = loaded
        case .failure(let message): return .failure(message)
        }
        var errorBuffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        // Nanosecond precision makes libpcap scale microsecond files up instead of rounding nanosecond
        // files down, so timestamps are exact for both.
        guard let handle = library.openOffline(
            path, UInt32(PCAP_TSTAMP_PRECISION_NANO), &errorBuffer)
        else {
            return .failure(PcapMessage(text: cString(errorBuffer)))
        }
        return .success(handle)
    }

    static func dataLinkType(_ handle: OpaquePointer) -> Int32 { PcapLibrary.loaded.datalink(handle) }

    static func snapshotLength(_ handle: OpaquePointer) -> Int { Int(PcapLibrary.loaded.snapshot(handle)) }

    static func close(_ handle: OpaquePointer) { PcapLibrary.loaded.close(handle) }

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
        let library = PcapLibrary.loaded
        let status = library.nextEx(handle, &header, &data)
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
            return .error(library.geterr(handle).map { String(cString: $0) } ?? "pcap_next_ex returned \(status)")
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
        let library: PcapLibrary
        switch PcapLibrary.shared {
        case .success(let loaded): library = loaded
        case .failure(let message): return .failure(message)
        }
        let precision = nanosecond ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO
        guard let deadHandle = library.openDead(
            dataLinkType, Int32(snapshotLength), UInt32(precision))
        else {
            return .failure(PcapMessage(text: "pcap_open_dead failed for link type \(linkTypeName(dataLinkType))"))
        }
        guard let dumper = library.dumpOpen(deadHandle, path) else {
            let message = library.geterr(deadHandle).map { String(cString: $0) } ?? "pcap_dump_open failed"
            library.close(deadHandle)
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
            PcapLibrary.loaded.dump(UnsafeMutableRawPointer(dump.dumper).assumingMemoryBound(to: u_char.self), &header,
                                    buffer.baseAddress)
        }
        return ferror(PcapLibrary.loaded.dumpFile(dump.dumper)) == 0
    }

    /// Flushes the dump; the C library's error text on failure.
    static func flush(_ dump: Dump) -> String? {
        PcapLibrary.loaded.dumpFlush(dump.dumper) == 0 ? nil : String(cString: strerror(errno))
    }

    static func close(_ dump: Dump) {
        PcapLibrary.loaded.dumpClose(dump.dumper)
        PcapLibrary.loaded.close(dump.deadHandle)
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
