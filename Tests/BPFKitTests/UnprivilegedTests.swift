@testable import BPFKit
import Foundation
import Testing

@Suite("BPFKit without privileges")
struct UnprivilegedTests {
    @Test("CI runs the privileged tests with privileges")
    func privilegedInCI() {
        if Privilege.isCI {
            #expect(Privilege.available, "CI=true but this process lacks \(Capabilities.missing()): the privileged BPFKit tests cannot pass")
        } else {
            #expect(Privilege.runPrivileged == Privilege.available)
        }
    }

    @Test("BPFError description names operation, context, strerror and a hint")
    func errorDescription() {
        let e = BPFError(operation: "bpf_obj_get", errno: ENOENT, context: "pin /sys/fs/bpf/x")
        #expect(e.description.hasPrefix("bpf_obj_get (pin /sys/fs/bpf/x): No such file or directory [ENOENT:"))
        #expect(e.description.contains("bpffs"))
        #expect(e.errnoName == "ENOENT")

        let perm = BPFError(operation: "bpf_object__load", errno: EPERM, context: "program p")
        #expect(perm.description.contains("CAP_BPF"))
        #expect(perm.description.contains("CAP_NET_ADMIN"))
        #expect(perm.description.contains("CAP_PERFMON"))
        #expect(!BPFError(operation: "bpf_prog_load", errno: EPERM).description.contains("missing CAP_SYS_ADMIN"))

        let busy = BPFError(operation: "bpf_link_create", errno: EBUSY, context: "x")
        #expect(busy.hint?.contains("already has an XDP program") == true)
        #expect(BPFError(operation: "bpf_obj_pin", errno: EEXIST).hint?.contains("unpin") == true)
        #expect(BPFError(operation: "bpf_link_create", errno: EOPNOTSUPP).hint?.contains("generic") == true)
        #expect(BPFError(operation: "bpf_link_create", errno: EINVAL).hint?.contains("generic") == true)

        let verifier = BPFError(operation: "bpf_object__load", errno: EACCES, context: "program bad",
                                verifierLog: "0: (61) r0 = *(u32 *)(r1 +64)\ninvalid access to packet\nprocessed 2 insns (limit 1000000)\n")
        #expect(verifier.verifierSummary?.contains("invalid access to packet") == true)
        #expect(verifier.verifierSummary?.contains("processed") == false)
        #expect(verifier.description.contains("\nverifier: "))
    }

    @Test("CapEff parsing and the CAP_SYS_ADMIN superset rule")
    func capabilities() {
        #expect(Capabilities.parseCapEff(line: "CapEff:\t000001ffffffffff\n") == 0x1ff_ffff_ffff)
        #expect(Capabilities.parseCapEff(line: "CapPrm:\t0") == nil)
        let none: UInt64 = 0
        #expect(Capabilities.missing(mask: none) == ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_SYS_ADMIN"])
        let netAdminOnly: UInt64 = 1 << 12
        #expect(Capabilities.missing([.bpf, .netAdmin], mask: netAdminOnly) == ["CAP_BPF"])
        let sysAdmin: UInt64 = 1 << 21
        #expect(Capabilities.missing([.bpf, .perfmon], mask: sysAdmin).isEmpty)
        #expect(Capabilities.effectiveMask() != nil)
    }

    @Test("mountinfo lines parse, with octal escapes")
    func mountInfo() {
        let line = "35 24 0:31 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:14 - bpf bpf rw,mode=700"
        #expect(BPFFS.parseMountInfo(line: line)?.mountPoint == "/sys/fs/bpf")
        #expect(BPFFS.parseMountInfo(line: line)?.type == "bpf")
        let spaced = "36 24 0:32 / /mnt/with\\040space rw - tmpfs tmpfs rw"
        #expect(BPFFS.parseMountInfo(line: spaced)?.mountPoint == "/mnt/with space")
        #expect(BPFFS.isMounted(at: "/proc") == false)
        #expect(BPFFS.fileSystemType(of: "/proc/self") == "proc")
    }

    @Test("unknown interface gives ENODEV naming it")
    func missingInterface() {
        #expect {
            try Interfaces.index(named: "nosuchif0")
        } throws: { error in
            guard let e = error as? BPFError else { return false }
            return e.errno == ENODEV && e.description.contains("interface nosuchif0 does not exist")
        }
        #expect((try? Interfaces.index(named: "lo")) == 1)
        #expect((try? Interfaces.name(index: 1)) == "lo")
    }

    @Test("opening garbage fails with a BPFError from bpf_object__open_mem")
    func openGarbage() {
        #expect {
            _ = try BPFObject(bytes: [1, 2, 3, 4], name: "garbage")
        } throws: { error in
            guard let e = error as? BPFError else { return false }
            return e.operation == "bpf_object__open_mem" && e.errno != 0
        }
    }

    @Test("read-only variable layouts: BTF and ELF symbols agree; sizes are checked before load")
    func readOnlyLayouts() throws {
        let obj = try BPFObject(bytes: try TestPrograms.compile(TestPrograms.main, name: "main"), name: "bpfkit")
        for (name, size) in [("answer", 4), ("big", 8), ("small", 1), ("arr", 3)] {
            let layouts = obj.variableLayouts(name, section: ".rodata")
            let btf = try #require(layouts.btf, "BTF layout of \(name)")
            let elf = try #require(layouts.elf, "ELF layout of \(name)")
            #expect(btf.offset == elf.offset && btf.size == elf.size, "\(name): BTF \(btf) vs ELF \(elf)")
            #expect(btf.size == size)
        }
        #expect(try obj.readOnlyVariable("answer") == [2, 0, 0, 0])
        try obj.setReadOnlyVariable("answer", to: UInt32(1))
        #expect(try obj.readOnlyVariable("answer") == [1, 0, 0, 0])
        try obj.setReadOnlyVariable("arr", to: [9, 8, 7])
        #expect(try obj.readOnlyVariable("arr") == [9, 8, 7])
        #expect(try obj.readOnlyVariable("big") == [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11])

        #expect {
            try obj.setReadOnlyVariable("answer", to: UInt64(1))
        } throws: { ($0 as? BPFError)?.errno == EINVAL && "\($0)".contains("variable is 4 bytes, got 8") }
        #expect {
            try obj.setReadOnlyVariable("no_such_variable", to: UInt8(1))
        } throws: { ($0 as? BPFError)?.errno == ENOENT }
        #expect {
            _ = try obj.program(named: "count_icmp")
        } throws: { ($0 as? BPFError)?.context.contains("load() the object first") == true }
        #expect {
            _ = try obj.program(named: "nope")
        } throws: { ($0 as? BPFError)?.context.contains("count_icmp") == true }
        #expect(obj.programNames.contains("return_answer"))
        #expect(obj.mapNames.contains("counters"))
        #expect(obj.mapNames.contains { $0.hasSuffix(".rodata") })
    }

    @Test("objects without BTF fall back to ELF symbols")
    func noBTFLayouts() throws {
        let obj = try BPFObject(bytes: try TestPrograms.compile(TestPrograms.noBTF, name: "nobtf", debugInfo: false), name: "nobtf")
        let layouts = obj.variableLayouts("verdict", section: ".rodata")
        #expect(layouts.btf == nil)
        #expect(layouts.elf?.size == 4)
        try obj.setReadOnlyVariable("verdict", to: UInt32(1))
        #expect(try obj.readOnlyVariable("verdict") == [1, 0, 0, 0])
        #expect(try obj.readOnlyVariable("pad_byte") == [9])
    }

    @Test("NetworkNamespace.run reports a missing namespace")
    func missingNamespace() {
        #expect {
            try NetworkNamespace.run(in: "bpfkit-does-not-exist-\(getpid())") { 1 }
        } throws: { ($0 as? BPFError)?.errno == ENOENT }
    }
}
