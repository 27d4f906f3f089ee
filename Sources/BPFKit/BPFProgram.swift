import CLibBPF

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Owns a file descriptor obtained outside a ``BPFObject`` (pins, ids) and closes it on release.
final class OwnedDescriptor: Sendable {
    let fd: Int32
    init(_ fd: Int32) { self.fd = fd }
    deinit { close(fd) }
}

/// A kernel program type (`enum bpf_prog_type`), printed with libbpf's name (`xdp`, `sched_cls`).
public struct BPFProgramType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let xdp = BPFProgramType(rawValue: BPF_PROG_TYPE_XDP.rawValue)
    public static let schedCls = BPFProgramType(rawValue: BPF_PROG_TYPE_SCHED_CLS.rawValue)
    public var description: String {
        libbpf_bpf_prog_type_str(bpf_prog_type(rawValue: rawValue)).map { String(cString: $0) } ?? "prog_type(\(rawValue))"
    }
}

/// XDP verdicts, for reading ``TestRunResult/returnValue`` of XDP programs.
public enum XDPAction: UInt32, Sendable, CustomStringConvertible {
    case aborted = 0, drop, pass, tx, redirect
    public var description: String {
        switch self {
        case .aborted: return "XDP_ABORTED"
        case .drop: return "XDP_DROP"
        case .pass: return "XDP_PASS"
        case .tx: return "XDP_TX"
        case .redirect: return "XDP_REDIRECT"
        }
    }
}

/// The result of `BPF_PROG_TEST_RUN`.
public struct TestRunResult: Sendable, Equatable {
    /// The program's return value of the last run (an ``XDPAction`` raw value for XDP).
    public var returnValue: UInt32
    /// The kernel's name for ``returnValue``.
    public var retval: UInt32 { returnValue }
    /// Average time per run in nanoseconds, as the kernel reports it.
    public var durationNanoseconds: UInt32
    /// The packet after the program ran, when requested.
    public var dataOut: [UInt8]?
    /// `retval` read as an XDP verdict.
    public var xdpAction: XDPAction? { XDPAction(rawValue: returnValue) }
}

/// The result of a live-frames XDP run (`BPF_F_TEST_XDP_LIVE_FRAMES`).
public struct LiveFramesResult: Sendable, Equatable {
    /// Frames injected (the repeat count).
    public var frames: UInt32
    /// Average time per frame in nanoseconds, as the kernel reports it.
    public var durationNanoseconds: UInt32
    /// Frames per second implied by the per-frame duration.
    public var framesPerSecond: Double {
        durationNanoseconds == 0 ? .infinity : 1e9 / Double(durationNanoseconds)
    }
}

/// Verifier flags of `BPF_PROG_LOAD` (`prog_flags`), set with ``BPFObject/addLoadFlags(_:)`` before load.
public struct BPFLoadFlags: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `BPF_F_STRICT_ALIGNMENT`: every memory access must be naturally aligned, as on architectures without
    /// efficient unaligned access, and packet data is assumed to start 2 bytes past an aligned address
    /// (`NET_IP_ALIGN`), so IP headers read through packet pointers are checked as the strictest drivers place them.
    public static let strictAlignment = BPFLoadFlags(rawValue: 1 << 0)
    /// `BPF_F_TEST_RND_HI32` (testing): the verifier fills the upper 32 bits of registers a 32-bit operation wrote
    /// with random values, so a program that relies on them being zero misbehaves at once.
    public static let testRandomHigh32 = BPFLoadFlags(rawValue: 1 << 2)
    /// `BPF_F_TEST_STATE_FREQ` (testing): the verifier checkpoints its state at every jump, which exercises state
    /// pruning far more than a normal load does.
    public static let testStateFrequency = BPFLoadFlags(rawValue: 1 << 3)
    /// `BPF_F_TEST_REG_INVARIANTS` (testing, Linux 6.7+): the verifier checks its own register bounds invariants and
    /// refuses the program when they break, instead of warning.
    public static let testRegisterInvariants = BPFLoadFlags(rawValue: 1 << 7)

    /// The testing flags the verifier offers (they make the load stricter or more thorough, and the program runs the
    /// same): the strict-verifier test loads every program with all of them that this kernel has.
    public static let testing: BPFLoadFlags = [.testRandomHigh32, .testStateFrequency, .testRegisterInvariants]

    /// Which of `candidates` this kernel accepts: each is tried alone on a two-instruction XDP program. A kernel
    /// refuses a flag it does not know with EINVAL before verifying anything. Needs CAP_BPF.
    public static func supported(among candidates: BPFLoadFlags = [.strictAlignment, .testRandomHigh32, .testStateFrequency,
                                                                   .testRegisterInvariants]) -> BPFLoadFlags {
        // r0 = XDP_PASS (2); exit.  BPF_ALU64|BPF_MOV|BPF_K = 0xb7, BPF_JMP|BPF_EXIT = 0x95.
        let insns: [UInt64] = [UInt64(0xb7) | (UInt64(2) << 32), UInt64(0x95)]
        var result: BPFLoadFlags = []
        for bit in 0..<32 {
            let flag = BPFLoadFlags(rawValue: 1 << UInt32(bit))
            guard candidates.contains(flag) else { continue }
            let fd: Int32 = withOptions(bpf_prog_load_opts.self) { opts in
                opts.pointee.prog_flags = flag.rawValue
                return insns.withUnsafeBytes { raw in
                    bpf_prog_load(BPF_PROG_TYPE_XDP, "icw_flag_probe", "GPL",
                                  raw.baseAddress!.assumingMemoryBound(to: bpf_insn.self), 2, opts)
                }
            }
            if fd >= 0 {
                close(fd)
                result.insert(flag)
            }
        }
        return result
    }

    public var description: String {
        let names: [(BPFLoadFlags, String)] = [
            (.strictAlignment, "BPF_F_STRICT_ALIGNMENT"), (.testRandomHigh32, "BPF_F_TEST_RND_HI32"),
            (.testStateFrequency, "BPF_F_TEST_STATE_FREQ"), (.testRegisterInvariants, "BPF_F_TEST_REG_INVARIANTS"),
        ]
        let known = names.filter { contains($0.0) }.map(\.1)
        let rest = subtracting(BPFLoadFlags(names.map(\.0)))
        return (known + (rest.isEmpty ? [] : ["0x" + String(rest.rawValue, radix: 16)])).joined(separator: "|")
    }
}

/// What the kernel reports about a loaded program (`bpf_obj_get_info_by_fd`).
public struct ProgramInfo: Sendable, Equatable {
    public var id: UInt32
    /// The kernel's name (at most 15 characters of the function name).
    public var name: String
    /// The program tag (hex of the 8-byte hash of its instructions), as `bpftool` prints it.
    public var tag: String
    public var type: BPFProgramType
    public var jitedSize: UInt32
    public var translatedSize: UInt32
    /// Instructions the verifier processed (kernel ≥ 5.16).
    public var verifiedInstructions: UInt32
    /// Nanoseconds since boot when it was loaded.
    public var loadTime: UInt64
    /// Ids of the maps it uses.
    public var mapIDs: [UInt32]
    public var btfID: UInt32
    /// Run statistics (only counted while `kernel.bpf_stats_enabled=1`).
    public var runTimeNanoseconds: UInt64
    public var runCount: UInt64
}

/// A loaded BPF program: its kernel fd plus whatever keeps that fd open (the object it came
/// from, or an fd owned by this value's storage).
public struct BPFProgram: Sendable {
    /// The function name (for programs opened by id or pin: the kernel's name).
    public let name: String
    public let fd: Int32
    public let type: BPFProgramType
    let owner: any AnyObject & Sendable

    init(name: String, fd: Int32, type: BPFProgramType, owner: any AnyObject & Sendable) {
        self.name = name
        self.fd = fd
        self.type = type
        self.owner = owner
    }

    /// Opens a loaded program by id (`bpf_prog_get_fd_by_id`).
    public static func open(id: UInt32) throws(BPFError) -> BPFProgram {
        let fd = try check(bpf_prog_get_fd_by_id(id), "bpf_prog_get_fd_by_id", "program id \(id)")
        let owner = OwnedDescriptor(fd)
        let info = try BPFProgram.programInfo(fd: fd, context: "program id \(id)")
        return BPFProgram(name: info.name, fd: fd, type: info.type, owner: owner)
    }

    /// Opens a pinned program (`bpf_obj_get`).
    public static func openPinned(_ path: String) throws(BPFError) -> BPFProgram {
        let fd = try check(path.withCString { bpf_obj_get($0) }, "bpf_obj_get", "pin \(path)")
        let owner = OwnedDescriptor(fd)
        let info = try BPFProgram.programInfo(fd: fd, context: "pin \(path)")
        return BPFProgram(name: info.name, fd: fd, type: info.type, owner: owner)
    }

    /// What the kernel reports about this program.
    public func info() throws(BPFError) -> ProgramInfo {
        try BPFProgram.programInfo(fd: fd, context: "program \(name)")
    }

    /// Pins the program in bpffs (`bpf_obj_pin`); fails with EEXIST if the path exists.
    public func pin(at path: String) throws(BPFError) {
        try check(path.withCString { bpf_obj_pin(fd, $0) }, "bpf_obj_pin", "program \(name) at \(path)")
    }

    /// Runs the program once or `count` times on `data` in the kernel (`BPF_PROG_TEST_RUN`).
    ///
    /// - Parameters:
    ///   - data: the packet (for XDP and tc: a full Ethernet frame).
    ///   - count: repetitions; the reported duration is the kernel's average per run.
    ///   - dataOut: return the packet as the program left it.
    ///   - ingressInterfaceIndex: XDP only: pass an `xdp_md` context with this ingress ifindex
    ///     (and `rxQueueIndex`); the interface must exist in the calling thread's namespace.
    public func testRun(
        data: [UInt8], repeat count: UInt32 = 1, dataOut: Bool = false,
        ingressInterfaceIndex: Int32? = nil, rxQueueIndex: UInt32 = 0
    ) throws(BPFError) -> TestRunResult {
        var ctx = xdp_md()
        ctx.data_end = UInt32(data.count)
        ctx.ingress_ifindex = UInt32(bitPattern: ingressInterfaceIndex ?? 0)
        ctx.rx_queue_index = rxQueueIndex
        let outCapacity = dataOut ? data.count + 4096 : 0
        var out = [UInt8](repeating: 0, count: outCapacity)
        let (r, retval, duration, outSize) = withOptions(bpf_test_run_opts.self) { opts in
            let r: Int32 = data.withUnsafeBytes { din in
                out.withUnsafeMutableBytes { dout in
                    withUnsafeMutableBytes(of: &ctx) { c in
                        opts.pointee.repeat = Int32(clamping: count)
                        opts.pointee.data_in = din.baseAddress
                        opts.pointee.data_size_in = UInt32(din.count)
                        if dataOut {
                            opts.pointee.data_out = dout.baseAddress
                            opts.pointee.data_size_out = UInt32(dout.count)
                        }
                        if ingressInterfaceIndex != nil {
                            opts.pointee.ctx_in = UnsafeRawPointer(c.baseAddress)
                            opts.pointee.ctx_size_in = UInt32(c.count)
                        }
                        return bpf_prog_test_run_opts(fd, opts)
                    }
                }
            }
            return (r, opts.pointee.retval, opts.pointee.duration, opts.pointee.data_size_out)
        }
        try check(r, "bpf_prog_test_run_opts", "program \(name), \(data.count) bytes")
        return TestRunResult(
            returnValue: retval, durationNanoseconds: duration,
            dataOut: dataOut ? Array(out.prefix(Int(outSize))) : nil)
    }

    /// Runs an XDP program on `count` copies of `data` as *live frames*
    /// (`BPF_F_TEST_XDP_LIVE_FRAMES`): XDP_TX and XDP_REDIRECT really transmit, which makes this
    /// a packet generator. Frames appear to arrive on `ingressInterfaceIndex` (default: loopback of
    /// the calling thread's namespace); XDP_TX sends them out of that interface.
    ///
    /// - Parameters:
    ///   - batchSize: frames per kernel batch (1…256; 0 lets the kernel choose 64).
    public func testRunLiveFrames(
        data: [UInt8], repeat count: UInt32, batchSize: UInt32 = 64,
        ingressInterfaceIndex: Int32? = nil, rxQueueIndex: UInt32 = 0
    ) throws(BPFError) -> LiveFramesResult {
        var ctx = xdp_md()
        ctx.data_end = UInt32(data.count)
        ctx.ingress_ifindex = UInt32(bitPattern: ingressInterfaceIndex ?? 0)
        ctx.rx_queue_index = rxQueueIndex
        let (r, duration) = withOptions(bpf_test_run_opts.self) { opts in
            let r: Int32 = data.withUnsafeBytes { din in
                withUnsafeMutableBytes(of: &ctx) { c in
                    opts.pointee.repeat = Int32(clamping: count)
                    opts.pointee.flags = UInt32(BPF_F_TEST_XDP_LIVE_FRAMES)
                    opts.pointee.batch_size = batchSize
                    opts.pointee.data_in = din.baseAddress
                    opts.pointee.data_size_in = UInt32(din.count)
                    if ingressInterfaceIndex != nil {
                        opts.pointee.ctx_in = UnsafeRawPointer(c.baseAddress)
                        opts.pointee.ctx_size_in = UInt32(c.count)
                    }
                    return bpf_prog_test_run_opts(fd, opts)
                }
            }
            return (r, opts.pointee.duration)
        }
        // EPERM here, for root too, is usually the kernel refusing the flag (live frames transmit), not privileges.
        try check(r, "bpf_prog_test_run_opts", "program \(name), live frames x\(count), batch \(batchSize)"
                  + (-r == EPERM ? "; a hardened kernel may refuse live frames to everyone while plain test runs work" : ""))
        return LiveFramesResult(frames: count, durationNanoseconds: duration)
    }

    static func programInfo(fd: Int32, context: String) throws(BPFError) -> ProgramInfo {
        let (r, info) = withZeroed(bpf_prog_info.self) { p in
            var len = UInt32(MemoryLayout<bpf_prog_info>.size)
            return (bpf_obj_get_info_by_fd(fd, p, &len), p.pointee)
        }
        try check(r, "bpf_obj_get_info_by_fd", context)
        var mapIDs: [UInt32] = []
        let nMaps = Int(info.nr_map_ids)
        if nMaps > 0 {
            mapIDs = [UInt32](repeating: 0, count: nMaps)
            let (r, returned) = mapIDs.withUnsafeMutableBufferPointer { ids in
                withZeroed(bpf_prog_info.self) { p in
                    var len = UInt32(MemoryLayout<bpf_prog_info>.size)
                    p.pointee.nr_map_ids = UInt32(nMaps)
                    p.pointee.map_ids = UInt64(UInt(bitPattern: ids.baseAddress))
                    return (bpf_obj_get_info_by_fd(fd, p, &len), p.pointee.nr_map_ids)
                }
            }
            try check(r, "bpf_obj_get_info_by_fd", "\(context) map ids")
            mapIDs = Array(mapIDs.prefix(min(nMaps, Int(returned))))
        }
        let tag = withUnsafeBytes(of: info.tag) { $0.map { byte in
            let h = String(byte, radix: 16)
            return h.count == 1 ? "0" + h : h
        }.joined() }
        return ProgramInfo(
            id: info.id, name: String(fixedCString: info.name), tag: tag,
            type: BPFProgramType(rawValue: info.type), jitedSize: info.jited_prog_len,
            translatedSize: info.xlated_prog_len, verifiedInstructions: info.verified_insns,
            loadTime: info.load_time, mapIDs: mapIDs, btfID: info.btf_id,
            runTimeNanoseconds: info.run_time_ns, runCount: info.run_cnt)
    }
}
