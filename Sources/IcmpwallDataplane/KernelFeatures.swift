import BPFKit
import CLibBPF
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// Runtime probing of what the running kernel offers icmpwall (`icmpwall version --kernel`), and the
// explanation `attach` gives when a load or an attach fails for want of one of those features.
//
// Probes are real where a side-effect-free one exists (libbpf's program, map and helper probes, a BTF blob
// with a global function, a two-instruction XDP program through BPF_PROG_TEST_RUN with and without live
// frames); otherwise they read the kernel's own BTF or module lists, and the kernel version only as a last
// resort (the `how` of each feature says which). Native XDP depends on the interface's driver and is only
// known by trying: attach does that (auto mode falls back to generic).

/// A Linux kernel release as `uname -r` prints it (`6.1.0-56-amd64`, `6.12.117+deb12-amd64`).
public struct KernelRelease: Sendable, Equatable, Codable, CustomStringConvertible {
    public var release: String
    public var major: Int
    public var minor: Int
    public var patch: Int

    /// Reads the leading `MAJOR.MINOR[.PATCH]`; nil when the release does not start with one.
    public init?(parsing release: String) {
        let numeric = release.prefix { $0.isNumber || $0 == "." }
        let parts = numeric.split(separator: ".", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count >= 2, let major = parts[0], let minor = parts[1] else { return nil }
        self.release = release
        self.major = major
        self.minor = minor
        self.patch = parts.count >= 3 ? (parts[2] ?? 0) : 0
    }

    /// The running kernel (`uname -r`).
    public static func current() -> KernelRelease {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return KernelRelease(parsing: release) ?? KernelRelease(unparsed: release)
    }

    private init(unparsed release: String) {
        self.release = release
        major = 0
        minor = 0
        patch = 0
    }

    /// Whether this is at least `major.minor` (unparsable releases are not).
    public func atLeast(_ major: Int, _ minor: Int) -> Bool {
        self.major != major ? self.major > major : self.minor >= minor
    }

    /// `6.1.0`.
    public var version: String { "\(major).\(minor).\(patch)" }
    public var description: String { release }
}

/// What a probe found.
public enum FeatureStatus: String, Sendable, Codable, Equatable {
    case yes
    case no
    /// The probe could not tell (no privileges, or it failed for another reason: see `how`).
    case unknown
    /// Only known by trying, which `attach` does (native XDP depends on the driver).
    case atAttach = "at-attach"
}

/// One kernel feature icmpwall uses, and whether this kernel has it.
public struct KernelFeature: Sendable, Codable, Equatable {
    public var id: String
    public var name: String
    public var status: FeatureStatus
    /// The mainline release that introduced it.
    public var since: String
    /// What needs it: `attach` (the command refuses without it), `replay`, `tests`; empty: informational.
    public var neededFor: [String]
    /// How it was found out.
    public var how: String
    /// What icmpwall does without it, when it has a fallback.
    public var fallback: String?

    enum CodingKeys: String, CodingKey {
        case id, name, status, since, how, fallback
        case neededFor = "needed_for"
    }
}

/// The result of loading one variant of a BPF object into the kernel (every program of it).
public struct DatapathLoadCheck: Sendable, Codable, Equatable {
    public struct Program: Sendable, Codable, Equatable {
        public var name: String
        public var type: String
        /// Instructions the verifier processed (kernel ≥ 5.16 reports it; nil before).
        public var verifiedInstructions: UInt32?
        public var jitedBytes: UInt32?

        enum CodingKeys: String, CodingKey {
            case name, type
            case verifiedInstructions = "verified_instructions"
            case jitedBytes = "jited_bytes"
        }
    }

    /// `production` (what attach loads) or `test-mode` (what replay and the datapath tests load).
    public var variant: String
    public var object: String
    public var loaded: Bool
    public var programs: [Program]
    /// The program the kernel refused, when the load failed.
    public var failedProgram: String?
    public var error: String?
    /// The verifier's reason: the last lines of its log, without its statistics.
    public var verifierReason: [String]?
    /// The whole verifier log of the refused program.
    public var verifierLog: String?

    enum CodingKeys: String, CodingKey {
        case variant, object, loaded, programs, error
        case failedProgram = "failed_program"
        case verifierReason = "verifier_reason"
        case verifierLog = "verifier_log"
    }
}

/// Everything `icmpwall version --kernel` reports.
public struct KernelReport: Sendable, Codable, Equatable {
    public var kernel: String
    public var version: String
    public var machine: String
    /// Whether the probes ran with the privileges BPF needs (without them most probes say `unknown`).
    public var privileged: Bool
    public var features: [KernelFeature]
    public var datapath: [DatapathLoadCheck]
    /// What keeps `attach` from working here: missing features it needs, refused programs.
    public var problems: [String]
    /// True when nothing keeps attach from working.
    public var ok: Bool
}

/// Which step of attach failed, for ``KernelFeatures/explain(_:during:kernel:)``.
public enum KernelStage: Sendable {
    /// Loading the datapath object (maps and programs).
    case load
    /// Creating the XDP link.
    case xdpAttach
    /// The clsact qdisc and the tc filter of the egress program.
    case tcAttach
}

/// Runs a BPFKit step of attach; a failure names the missing kernel feature when there is one
/// (``KernelFeatures/explain(_:during:kernel:)``), else it is the BPF error as it was.
@inline(__always)
func kernelChecked<T>(_ stage: KernelStage, _ body: () throws(BPFError) -> T) throws(DataplaneError) -> T {
    do { return try body() } catch { throw KernelFeatures.explain(error, during: stage) }
}

public enum KernelFeatures {
    /// The lowest release tested in CI (the kernel matrix); `README.md`, "Supported kernels".
    public static let minimumTested = "6.1"

    // MARK: - Probing

    /// Probes every feature. `datapath`: also load the embedded datapath (production and test mode) to
    /// see whether this kernel's verifier accepts every program; `object` replaces the embedded one.
    public static func report(datapath: Bool = true, object: (bytes: [UInt8], name: String)? = nil) -> KernelReport {
        BPFLog.install()
        let kernel = KernelRelease.current()
        let privileged = Capabilities.missing([.bpf, .perfmon]).isEmpty
        let features = probeAll(kernel: kernel, privileged: privileged)
        var loads: [DatapathLoadCheck] = []
        if datapath && privileged {
            let bytes = object?.bytes ?? EmbeddedDatapath.icmpwall
            let name = object?.name ?? "embedded icmpwall.bpf.o"
            loads.append(loadCheck(bytes: bytes, object: name, testMode: false))
            // Objects without icw_test_mode (a foreign --object) have no test-mode variant.
            if object == nil || objectHasTestMode(bytes) {
                loads.append(loadCheck(bytes: bytes, object: name, testMode: true))
            }
        }
        var m = utsname()
        uname(&m)
        let machine = withUnsafeBytes(of: m.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let problems = problems(features: features, loads: loads, privileged: privileged)
        return KernelReport(kernel: kernel.release, version: kernel.version, machine: machine, privileged: privileged,
                            features: features, datapath: loads, problems: problems, ok: problems.isEmpty)
    }

    /// What keeps attach from working, from the probes and the loads.
    static func problems(features: [KernelFeature], loads: [DatapathLoadCheck], privileged: Bool) -> [String] {
        var out: [String] = []
        if !privileged {
            out.append("not running with CAP_BPF + CAP_PERFMON (or as root): most features could not be probed and the datapath was not loaded")
        }
        for f in features where f.status == .no && f.neededFor.contains("attach") {
            out.append("kernel lacks \(f.name) (Linux \(f.since)+)")
        }
        for l in loads where !l.loaded {
            var s = "the \(l.variant) datapath does not load"
            if let p = l.failedProgram { s += ": program \(p) refused" }
            if let reason = l.verifierReason?.last { s += ": \(reason)" } else if let e = l.error { s += ": \(e)" }
            out.append(s)
        }
        return out
    }

    /// Runs every probe.
    public static func probeAll(kernel: KernelRelease = .current(), privileged: Bool = true) -> [KernelFeature] {
        var f: [KernelFeature] = []
        let noPrivileges = "needs CAP_BPF + CAP_PERFMON (run as root)"

        // libbpf's probes answer "no" for any refusal, EPERM included: without privileges they cannot tell.
        func libbpfProbe(_ probe: @autoclosure () -> Int32, _ what: String) -> (FeatureStatus, String) {
            guard privileged else { return (.unknown, "probe: \(what): \(noPrivileges)") }
            let r = probe()
            if r == 1 { return (.yes, "probe: \(what)") }
            if r == 0 { return (.no, "probe: \(what)") }
            if -r == EPERM || -r == EACCES { return (.unknown, "probe: \(what): \(noPrivileges)") }
            return (.unknown, "probe: \(what) failed: \(String(cString: strerror(-r)))")
        }

        let (xdpStatus, xdpHow) = libbpfProbe(libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_XDP, nil), "load an XDP program")
        f.append(KernelFeature(id: "xdp-program", name: "XDP programs", status: xdpStatus, since: "4.8",
                               neededFor: ["attach", "replay"], how: xdpHow))
        f.append(KernelFeature(id: "xdp-native", name: "native (driver) XDP on the interface", status: .atAttach, since: "4.8",
                               neededFor: [], how: "depends on the interface's driver: attach tries it",
                               fallback: "attach --mode auto falls back to generic XDP and says so"))
        let (tcStatus, tcHow) = libbpfProbe(libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SCHED_CLS, nil), "load a sched_cls program")
        f.append(KernelFeature(id: "tc-program", name: "tc BPF programs (sched_cls)", status: tcStatus, since: "4.1",
                               neededFor: ["attach"], how: tcHow))
        let modules = ModuleFiles.read(release: kernel.release)
        for (id, module, name, since) in [("tc-clsact", "sch_ingress", "the clsact qdisc (sch_ingress)", "4.5"),
                                          ("tc-cls-bpf", "cls_bpf", "tc BPF filters (cls_bpf)", "4.1")] {
            let a = modules.availability(of: module)
            f.append(KernelFeature(id: id, name: name, status: a.status, since: since, neededFor: ["attach"], how: a.how))
        }

        let vmlinux = "/sys/kernel/btf/vmlinux"
        let hasBTF = FileManager.default.fileExists(atPath: vmlinux)
        f.append(KernelFeature(id: "btf-vmlinux", name: "kernel BTF (\(vmlinux))", status: hasBTF ? .yes : .no, since: "5.4",
                               neededFor: [], how: "file \(vmlinux)",
                               fallback: hasBTF ? nil : "not needed: icmpwall uses no CO-RE; probes fall back to the kernel version"))

        // XDP links: the kernel's BTF has struct bpf_xdp_link from 5.9 on. Creating one would attach.
        var linkStatus: FeatureStatus = kernel.atLeast(5, 9) ? .yes : .no
        var linkHow = "kernel version \(kernel.version) (no kernel BTF to read)"
        if hasBTF, let found = vmlinuxHasType("bpf_xdp_link", kind: 4) {
            linkStatus = found ? .yes : .no
            linkHow = "kernel BTF: struct bpf_xdp_link \(found ? "present" : "absent")"
        }
        f.append(KernelFeature(id: "xdp-link", name: "XDP links (bpf_link_create for XDP)", status: linkStatus, since: "5.9",
                               neededFor: ["attach"], how: linkHow))

        let (runStatus, runHow, liveStatus, liveHow) = privileged ? testRunProbes() : (.unknown, noPrivileges, .unknown, noPrivileges)
        f.append(KernelFeature(id: "test-run-xdp", name: "BPF_PROG_TEST_RUN for XDP", status: runStatus, since: "4.12",
                               neededFor: ["replay", "tests"], how: runHow))
        f.append(KernelFeature(id: "test-run-live-frames", name: "BPF_F_TEST_XDP_LIVE_FRAMES", status: liveStatus, since: "5.18",
                               neededFor: ["tests"], how: liveHow,
                               fallback: "only tests and benchmarks use it (the benchmarks fall back to a packet socket); nothing in attach or replay"))

        let (lockStatus, lockHow) = libbpfProbe(libbpf_probe_bpf_helper(BPF_PROG_TYPE_XDP, BPF_FUNC_spin_lock, nil), "bpf_spin_lock from XDP")
        f.append(KernelFeature(id: "spin-lock", name: "bpf_spin_lock", status: lockStatus, since: "5.1",
                               neededFor: ["attach", "replay"], how: lockHow))
        for (id, type, name, since, what) in [("lpm-trie", BPF_MAP_TYPE_LPM_TRIE, "LPM trie maps", "4.11", "create an LPM trie"),
                                              ("lru-hash", BPF_MAP_TYPE_LRU_HASH, "LRU hash maps", "4.10", "create an LRU hash"),
                                              ("percpu-array", BPF_MAP_TYPE_PERCPU_ARRAY, "per-CPU array maps", "4.6", "create a per-CPU array")] {
            let (s, how) = libbpfProbe(libbpf_probe_bpf_map_type(type, nil), what)
            f.append(KernelFeature(id: id, name: name, status: s, since: since, neededFor: ["attach", "replay"], how: how))
        }

        // Global functions: BTF with a BTF_FUNC_GLOBAL function loads from 5.6 on (a real probe); passing them
        // pointers to the caller's stack, as icw_judge(ctx, &frame) does, is verifier logic from 5.12 on.
        let btfGlobal = privileged ? probeGlobalFunctionBTF() : nil
        let pointerArgs = kernel.atLeast(5, 12)
        let globalStatus: FeatureStatus = btfGlobal == false || !pointerArgs ? .no : .yes
        let globalHow = (btfGlobal.map { "probe: BTF with a global function \($0 ? "loads" : "is refused")" } ?? "BTF probe \(privileged ? "failed" : "skipped: \(noPrivileges)")")
            + "; pointer arguments by kernel version \(kernel.version)"
        f.append(KernelFeature(id: "global-functions", name: "global BPF functions with pointer arguments", status: globalStatus,
                               since: "5.12", neededFor: ["attach", "replay"], how: globalHow))

        let filesystems = (try? String(contentsOfFile: "/proc/filesystems", encoding: .utf8)) ?? ""
        let bpffs = filesystems.split(separator: "\n").contains { $0.split(whereSeparator: { $0 == "\t" || $0 == " " }).last == "bpf" }
        f.append(KernelFeature(id: "bpffs", name: "bpffs (pins under /sys/fs/bpf)", status: bpffs ? .yes : .no, since: "4.4",
                               neededFor: ["attach"], how: "/proc/filesystems\(BPFFS.isMounted() ? "; mounted at /sys/fs/bpf" : "; attach mounts it")"))

        let jit = (try? String(contentsOfFile: "/proc/sys/net/core/bpf_jit_enable", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        f.append(KernelFeature(id: "bpf-jit", name: "BPF JIT", status: jit == nil ? .unknown : (jit == "0" ? .no : .yes), since: "3.16",
                               neededFor: [], how: "/proc/sys/net/core/bpf_jit_enable = \(jit ?? "unreadable")",
                               fallback: jit == "0" ? "the interpreter runs the datapath, several times slower" : nil))
        return f
    }

    // MARK: - Explaining a failed attach

    /// Turns a failed load or attach into an error that names the missing kernel feature when a probe finds
    /// one the failed step needs; otherwise the BPF error as it was (with the verifier's reason, if any).
    public static func explain(_ error: BPFError, during stage: KernelStage, kernel: KernelRelease = .current()) -> DataplaneError {
        let ids: Set<String> = switch stage {
        case .load: ["xdp-program", "tc-program", "spin-lock", "lpm-trie", "lru-hash", "percpu-array", "global-functions"]
        case .xdpAttach: ["xdp-link", "xdp-program"]
        case .tcAttach: ["tc-program", "tc-clsact", "tc-cls-bpf"]
        }
        let features = probeAll(kernel: kernel, privileged: Capabilities.missing([.bpf, .perfmon]).isEmpty)
            .filter { ids.contains($0.id) }
        return explain(error, missing: features.filter { $0.status == .no }, kernel: kernel)
    }

    /// The message for a failure given the features found missing (separate for tests).
    static func explain(_ error: BPFError, missing: [KernelFeature], kernel: KernelRelease) -> DataplaneError {
        guard !missing.isEmpty else { return .bpf(error) }
        let names = missing.map { "\($0.name) (Linux \($0.since)+)" }
        return .system("kernel \(kernel.release) lacks \(names.joined(separator: ", ")), which icmpwall needs "
            + "(tested on Linux \(minimumTested) and later; `icmpwall version --kernel` lists what this kernel has): \(error.description)")
    }

    // MARK: - Datapath load

    /// Loads every program of `bytes` (production or test mode) and reports what the verifier said.
    public static func loadCheck(bytes: [UInt8], object name: String, testMode: Bool) -> DatapathLoadCheck {
        let variant = testMode ? "test-mode" : "production"
        var check = DatapathLoadCheck(variant: variant, object: name, loaded: false, programs: [])
        do {
            let object = try DatapathLoader.open(testMode: testMode, bytes: bytes)
            try object.load()
            check.loaded = true
            for programName in object.programNames {
                let program = try object.program(named: programName)
                let info = try? program.info()
                check.programs.append(.init(name: programName, type: program.type.description,
                                            verifiedInstructions: info.flatMap { $0.verifiedInstructions == 0 ? nil : $0.verifiedInstructions },
                                            jitedBytes: info.flatMap { $0.jitedSize == 0 ? nil : $0.jitedSize }))
            }
        } catch {
            check.error = error.description
            if error.context.hasPrefix("program ") {
                check.failedProgram = String(error.context.dropFirst("program ".count))
            }
            check.verifierLog = error.verifierLog
            check.verifierReason = error.verifierLog.map { verifierReason($0) }
        }
        return check
    }

    /// The verifier's reason for a refusal: the last `lines` lines of its log before the statistics it
    /// appends (`processed N insns …`, `verification time`, `stack depth`), without blank lines.
    public static func verifierReason(_ log: String, lines: Int = 8) -> [String] {
        let all = log.split(separator: "\n", omittingEmptySubsequences: true).map { String($0) }
            .filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            .filter { !$0.hasPrefix("processed ") && !$0.hasPrefix("verification time") && !$0.hasPrefix("stack depth")
                && !$0.hasPrefix("-- END PROG LOAD LOG --") }
        return Array(all.suffix(lines))
    }

    static func objectHasTestMode(_ bytes: [UInt8]) -> Bool {
        guard let object = try? BPFObject(bytes: bytes, name: DatapathNames.objectName) else { return false }
        return (try? object.setReadOnlyVariable("icw_test_mode", to: [1])) != nil
    }

    // MARK: - Probes

    /// Whether the kernel's BTF has a type of this name and kind (4: struct); nil when it cannot be read.
    static func vmlinuxHasType(_ name: String, kind: UInt32) -> Bool? {
        guard let btf = btf__load_vmlinux_btf() else { return nil }
        defer { btf__free(btf) }
        return btf__find_by_name_kind(btf, name, kind) > 0
    }

    /// Loads BTF holding one global function (`int f(void)`, BTF_FUNC_GLOBAL) into the kernel.
    static func probeGlobalFunctionBTF() -> Bool? {
        guard let btf = btf__new_empty() else { return nil }
        defer { btf__free(btf) }
        let int = btf__add_int(btf, "int", 4, Int32(BTF_INT_SIGNED))
        guard int > 0 else { return nil }
        let proto = btf__add_func_proto(btf, int)
        guard proto > 0, btf__add_func(btf, "icw_probe", BTF_FUNC_GLOBAL, proto) > 0 else { return nil }
        let r = btf__load_into_kernel(btf)
        if r == 0 { return true }
        return -r == EPERM ? nil : false
    }

    /// BPF_PROG_TEST_RUN on a two-instruction XDP program (`return XDP_DROP`), plainly and with live frames
    /// (a live frame the program drops goes nowhere). Kernels without live frames refuse the flag (EINVAL).
    static func testRunProbes() -> (FeatureStatus, String, FeatureStatus, String) {
        // r0 = XDP_DROP (1); exit.  BPF_ALU64|BPF_MOV|BPF_K = 0xb7, BPF_JMP|BPF_EXIT = 0x95.
        let insns: [UInt64] = [UInt64(0xb7) | (UInt64(1) << 32), UInt64(0x95)]
        let fd: Int32 = insns.withUnsafeBytes { raw in
            bpf_prog_load(BPF_PROG_TYPE_XDP, "icw_probe", "GPL", raw.baseAddress!.assumingMemoryBound(to: bpf_insn.self), 2, nil)
        }
        guard fd >= 0 else {
            let e = -fd
            let how = "loading a two-instruction XDP program failed: \(String(cString: strerror(e)))"
            return (.unknown, how, .unknown, how)
        }
        defer { close(fd) }
        let frame = [UInt8](repeating: 0, count: 64)
        func run(live: Bool) -> Int32 {
            let size = MemoryLayout<bpf_test_run_opts>.size
            let raw = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<bpf_test_run_opts>.stride, alignment: 16)
            defer { raw.deallocate() }
            raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<bpf_test_run_opts>.stride)
            let opts = raw.bindMemory(to: bpf_test_run_opts.self, capacity: 1)
            opts.pointee.sz = size
            return frame.withUnsafeBytes { data in
                opts.pointee.data_in = data.baseAddress
                opts.pointee.data_size_in = UInt32(data.count)
                opts.pointee.repeat = 1
                if live {
                    opts.pointee.flags = UInt32(BPF_F_TEST_XDP_LIVE_FRAMES)
                    opts.pointee.batch_size = 1
                }
                let r = bpf_prog_test_run_opts(fd, opts)
                // A plain run reports the program's verdict; live frames report none.
                return r == 0 && !live && opts.pointee.retval != 1 ? -EIO : r
            }
        }
        func describe(_ r: Int32, _ what: String) -> (FeatureStatus, String) {
            if r == 0 { return (.yes, "probe: \(what)") }
            if -r == EINVAL || -r == EOPNOTSUPP || -r == 524 { return (.no, "probe: \(what): \(String(cString: strerror(-r)))") }
            return (.unknown, "probe: \(what) failed: \(String(cString: strerror(-r)))")
        }
        let plainResult = run(live: false), liveResult = run(live: true)
        let plain = describe(plainResult, "test-run of an XDP program")
        var live = describe(liveResult, "test-run with BPF_F_TEST_XDP_LIVE_FRAMES")
        // The same process may run the same program plainly: EPERM for live frames alone is the kernel's policy
        // (a hardened kernel may refuse them even to root, since live frames transmit), not missing privileges.
        if plainResult == 0 && -liveResult == EPERM {
            live = (.no, "probe: test-run with BPF_F_TEST_XDP_LIVE_FRAMES: refused by this kernel (EPERM) while plain test-runs work")
        }
        return (plain.0, plain.1, live.0, live.1)
    }
}

/// The kernel's module lists, to tell whether a module is built in, loaded, or loadable.
struct ModuleFiles: Sendable {
    var procModules: String
    var builtin: String
    var dep: String
    var config: String

    static func read(release: String) -> ModuleFiles {
        func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        var config = text("/boot/config-\(release)")
        if config.isEmpty, FileManager.default.fileExists(atPath: "/proc/config.gz") {
            config = (try? Tool.run(["zcat", "/proc/config.gz"], timeout: 10, check: false).stdout) ?? ""
        }
        return ModuleFiles(procModules: text("/proc/modules"), builtin: text("/lib/modules/\(release)/modules.builtin"),
                           dep: text("/lib/modules/\(release)/modules.dep"), config: config)
    }

    /// Whether `module` is there, from /proc/modules, modules.builtin, modules.dep and the kernel config
    /// (/boot/config-RELEASE or /proc/config.gz: CONFIG_NET_SCH_INGRESS for sch_ingress, CONFIG_NET_CLS_BPF
    /// for cls_bpf), in that order.
    func availability(of module: String) -> (status: FeatureStatus, how: String) {
        let name = module.replacingOccurrences(of: "-", with: "_")
        if procModules.split(separator: "\n").contains(where: { $0.split(separator: " ").first.map(String.init) == name }) {
            return (.yes, "module \(name) loaded (/proc/modules)")
        }
        func listed(_ text: String) -> Bool {
            text.split(separator: "\n").contains { line in
                let path = line.split(separator: ":").first.map(String.init) ?? ""
                var base = path.split(separator: "/").last.map(String.init) ?? ""
                for suffix in [".xz", ".zst", ".gz"] where base.hasSuffix(suffix) { base = String(base.dropLast(suffix.count)) }
                return base.replacingOccurrences(of: "-", with: "_") == name + ".ko"
            }
        }
        if listed(builtin) { return (.yes, "built in (modules.builtin)") }
        if listed(dep) { return (.yes, "module \(name) available (modules.dep), loaded on demand") }
        let option: String? = switch name {
        case "sch_ingress": "CONFIG_NET_SCH_INGRESS"
        case "cls_bpf": "CONFIG_NET_CLS_BPF"
        default: nil
        }
        if let option {
            for line in config.split(separator: "\n") where line.hasPrefix(option + "=") {
                let value = line.dropFirst(option.count + 1)
                return (value == "y" || value == "m" ? .yes : .no, "kernel config \(option)=\(value)")
            }
            if config.contains("# \(option) is not set") { return (.no, "kernel config: \(option) is not set") }
        }
        if builtin.isEmpty && dep.isEmpty && config.isEmpty {
            return (.unknown, "no /lib/modules/RELEASE lists or kernel config to read; attach will tell")
        }
        return (.no, "not loaded, not built in, no module file")
    }
}
