import BPFKit
import Foundation
@testable import IcmpwallDataplane
import Testing

@Suite("Kernel feature probing")
struct KernelFeaturesTests {
    @Test("Kernel releases as uname -r prints them", arguments: [
        ("6.1.0-56-amd64", 6, 1, 0),
        ("6.12.117+deb12-amd64", 6, 12, 117),
        ("6.18.44-fc-v595", 6, 18, 44),
        ("5.10.0-32-cloud-amd64", 5, 10, 0),
        ("4.19.0", 4, 19, 0),
        ("6.9", 6, 9, 0),
        ("5.15.0-1051-azure", 5, 15, 0),
    ])
    func releases(release: String, major: Int, minor: Int, patch: Int) throws {
        let r = try #require(KernelRelease(parsing: release))
        #expect(r.major == major && r.minor == minor && r.patch == patch)
        #expect(r.release == release)
        #expect(r.version == "\(major).\(minor).\(patch)")
    }

    @Test("Unparsable releases and version comparisons")
    func comparisons() throws {
        #expect(KernelRelease(parsing: "linux") == nil)
        #expect(KernelRelease(parsing: "6") == nil)
        #expect(KernelRelease(parsing: "") == nil)
        let r = try #require(KernelRelease(parsing: "5.12.3-foo"))
        #expect(r.atLeast(5, 12) && r.atLeast(5, 9) && r.atLeast(4, 19))
        #expect(!r.atLeast(5, 13) && !r.atLeast(6, 0))
        #expect(try #require(KernelRelease(parsing: "6.1.0-56-amd64")).atLeast(5, 12))
        #expect(!KernelRelease.current().release.isEmpty)
    }

    @Test("Module availability: loaded, built in, module file, kernel config, unknown")
    func modules() {
        let loaded = ModuleFiles(procModules: "sch_ingress 16384 1 - Live 0x0000000000000000\nveth 36864 0 - Live 0x0\n",
                                 builtin: "", dep: "", config: "")
        #expect(loaded.availability(of: "sch_ingress").status == .yes)
        #expect(loaded.availability(of: "sch_ingress").how.contains("/proc/modules"))

        let builtin = ModuleFiles(procModules: "", builtin: "kernel/net/sched/sch_ingress.ko\nkernel/net/sched/cls_bpf.ko\n",
                                  dep: "", config: "")
        #expect(builtin.availability(of: "cls_bpf").status == .yes)
        #expect(builtin.availability(of: "cls_bpf").how.contains("built in"))

        let files = ModuleFiles(procModules: "", builtin: "kernel/fs/ext4/ext4.ko\n",
                                dep: "kernel/net/sched/sch_ingress.ko.xz:\nkernel/net/sched/cls_bpf.ko.zst: kernel/net/sched/x.ko\n",
                                config: "")
        #expect(files.availability(of: "sch_ingress").status == .yes)
        #expect(files.availability(of: "cls_bpf").status == .yes)
        #expect(files.availability(of: "cls_bpf").how.contains("on demand"))
        #expect(files.availability(of: "sch_htb").status == .no)

        let config = ModuleFiles(procModules: "", builtin: "", dep: "",
                                 config: "CONFIG_NET_SCH_INGRESS=y\n# CONFIG_NET_CLS_BPF is not set\n")
        #expect(config.availability(of: "sch_ingress").status == .yes)
        #expect(config.availability(of: "sch_ingress").how == "kernel config CONFIG_NET_SCH_INGRESS=y")
        #expect(config.availability(of: "cls_bpf").status == .no)

        let nothing = ModuleFiles(procModules: "", builtin: "", dep: "", config: "")
        #expect(nothing.availability(of: "sch_ingress").status == .unknown)
    }

    @Test("The verifier's reason is the end of its log, without the statistics")
    func verifierReason() {
        let log = """
            func#0 @0
            0: R1=ctx(off=0,imm=0) R10=fp0
            ; bpf_spin_lock(&b->lock);
            41: (85) call bpf_spin_lock#93
            42: (85) call pc+5
            function calls are not allowed while holding a lock

            processed 120 insns (limit 1000000) max_states_per_insn 0 total_states 9 peak_states 9 mark_read 3
            verification time 213 usec
            stack depth 48+0
            """
        let reason = KernelFeatures.verifierReason(log, lines: 3)
        #expect(reason == ["41: (85) call bpf_spin_lock#93", "42: (85) call pc+5", "function calls are not allowed while holding a lock"])
        #expect(KernelFeatures.verifierReason("", lines: 3).isEmpty)
    }

    @Test("A failure names the missing kernel feature, or stays the BPF error it was")
    func explanations() throws {
        let error = BPFError(operation: "bpf_link_create", errno: EINVAL, context: "program icmpwall_xdp on ifindex 3, native XDP")
        let kernel = try #require(KernelRelease(parsing: "5.4.0-150-generic"))
        let link = KernelFeature(id: "xdp-link", name: "XDP links (bpf_link_create for XDP)", status: .no, since: "5.9",
                                 neededFor: ["attach"], how: "kernel BTF: struct bpf_xdp_link absent")
        let explained = KernelFeatures.explain(error, missing: [link], kernel: kernel)
        #expect(explained.exitCode == 3)
        #expect(explained.description.contains("kernel 5.4.0-150-generic lacks XDP links (bpf_link_create for XDP) (Linux 5.9+)"))
        #expect(explained.description.contains("bpf_link_create (program icmpwall_xdp"), "keeps the original error: \(explained)")
        guard case .bpf(let same) = KernelFeatures.explain(error, missing: [], kernel: kernel) else {
            Issue.record("nothing missing: the error stays a BPF error")
            return
        }
        #expect(same == error)
    }

    @Test("Problems: missing features attach needs, refused programs, missing privileges")
    func problems() {
        let features = [
            KernelFeature(id: "lpm-trie", name: "LPM trie maps", status: .no, since: "4.11", neededFor: ["attach"], how: "probe"),
            KernelFeature(id: "test-run-live-frames", name: "BPF_F_TEST_XDP_LIVE_FRAMES", status: .no, since: "5.18",
                          neededFor: ["tests"], how: "probe"),
            KernelFeature(id: "xdp-native", name: "native XDP", status: .atAttach, since: "4.8", neededFor: [], how: "driver"),
        ]
        let refused = DatapathLoadCheck(variant: "production", object: "x", loaded: false, programs: [],
                                        failedProgram: "icmpwall_xdp", error: "bpf_object__load: Permission denied",
                                        verifierReason: ["R1 invalid mem access 'scalar'"])
        let p = KernelFeatures.problems(features: features, loads: [refused], privileged: true)
        #expect(p == ["kernel lacks LPM trie maps (Linux 4.11+)",
                      "the production datapath does not load: program icmpwall_xdp refused: R1 invalid mem access 'scalar'"])
        #expect(KernelFeatures.problems(features: [], loads: [], privileged: false).count == 1)
    }

    @Test("Without privileges the probes say unknown, never no")
    func unprivileged() {
        let features = KernelFeatures.probeAll(privileged: false)
        for f in features where ["xdp-program", "tc-program", "spin-lock", "lpm-trie", "lru-hash", "percpu-array",
                                 "test-run-xdp", "test-run-live-frames"].contains(f.id) {
            #expect(f.status == .unknown, "\(f.id): \(f.status) (\(f.how))")
            #expect(f.how.contains("CAP_BPF"))
        }
        #expect(features.first { $0.id == "xdp-native" }?.status == .atAttach)
    }

    @Test("Probing this kernel: the features the datapath needs, and every program loads",
          .enabled(if: Privilege.available || Privilege.inCI, "needs root (CAP_BPF, CAP_PERFMON) to probe and load BPF; runs in CI as root"))
    func probeThisKernel() throws {
        guard Privilege.require() else { return }
        let report = KernelFeatures.report()
        let byID = Dictionary(uniqueKeysWithValues: report.features.map { ($0.id, $0) })
        for id in ["xdp-program", "tc-program", "xdp-link", "test-run-xdp", "spin-lock", "lpm-trie", "lru-hash",
                   "percpu-array", "global-functions", "bpffs"] {
            #expect(byID[id]?.status == .yes, "\(id): \(byID[id].map { "\($0.status) (\($0.how))" } ?? "not probed")")
        }
        #expect(byID["xdp-native"]?.status == .atAttach)
        #expect(report.datapath.map(\.variant) == ["production", "test-mode"])
        for load in report.datapath {
            #expect(load.loaded, "\(load.variant): \(load.error ?? "") \(load.verifierReason?.joined(separator: " | ") ?? "")")
            #expect(load.programs.contains { $0.name == DatapathNames.program && $0.type == "xdp" })
        }
        #expect(report.ok, "problems: \(report.problems)")
        let json = try JSONEncoder().encode(report)
        #expect(String(decoding: json, as: UTF8.self).contains("\"needed_for\""))
    }
}
