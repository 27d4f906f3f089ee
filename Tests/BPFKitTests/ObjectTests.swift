@testable import BPFKit
import Foundation
import Testing

/// Load, test-run, maps and pins: needs BPF privileges, touches no interfaces.
@Suite("BPFKit objects, programs and maps", .enabled(if: Privilege.runPrivileged, Privilege.skipReason))
struct ObjectTests {
    func loaded(_ configure: (BPFObject) throws -> Void = { _ in }) throws -> BPFObject {
        let obj = try BPFObject(bytes: try TestPrograms.compile(TestPrograms.main, name: "main"), name: "bpfkit")
        try configure(obj)
        try obj.load()
        return obj
    }

    @Test("load, test-run an ICMP and a UDP frame, per-CPU counters add up")
    func testRunAndPerCPU() throws {
        let obj = try loaded()
        let prog = try obj.program(named: "count_icmp")
        #expect(prog.type == .xdp)
        #expect(prog.fd >= 0)

        let icmp = try prog.testRun(data: Frames.icmpEcho(), dataOut: true)
        #expect(icmp.xdpAction == .drop)
        #expect(icmp.dataOut == Frames.icmpEcho())
        let udp = try prog.testRun(data: Frames.udp())
        #expect(udp.xdpAction == .pass)
        #expect(udp.dataOut == nil)

        let n: UInt32 = 1000
        let many = try prog.testRun(data: Frames.icmpEcho(), repeat: n)
        #expect(many.xdpAction == .drop)
        #expect(many.durationNanoseconds > 0)

        let counters = try obj.map(named: "counters")
        #expect(counters.type == .percpuArray)
        #expect(counters.keySize == 4 && counters.valueSize == 8 && counters.maxEntries == 4)
        let perCPU = try counters.lookupPerCPU(UInt32(0), as: UInt64.self)
        #expect(perCPU.count == (try BPFMap.possibleCPUs()))
        #expect(perCPU.reduce(0, +) == UInt64(n) + 2)
        #expect(try counters.lookupPerCPU(UInt32(1), as: UInt64.self).reduce(0, +) == UInt64(n) + 1)

        let rows = try counters.lookupBatchPerCPU(keyType: UInt32.self, as: UInt64.self)
        #expect(rows.map(\.key) == [0, 1, 2, 3])
        #expect(rows[0].values.reduce(0, +) == UInt64(n) + 2)
        #expect(rows[1].values.reduce(0, +) == UInt64(n) + 1)
        #expect(rows[2].values.allSatisfy { $0 == 0 })

        try counters.zeroPerCPU(UInt32(0))
        #expect(try counters.lookupPerCPU(UInt32(0), as: UInt64.self).reduce(0, +) == 0)
        let cpus = try BPFMap.possibleCPUs()
        try counters.updatePerCPU(UInt32(3), (0..<cpus).map { UInt64($0 + 1) })
        #expect(try counters.lookupPerCPU(UInt32(3), as: UInt64.self) == (0..<cpus).map { UInt64($0 + 1) })
        #expect(try counters.lookup(key: [3, 0, 0, 0])?.count == cpus * 8)
        // Folded: each row's CPUs summed (row 3 holds 1, 2, ... on CPUs 0, 1, ...), or combined any other way.
        let sums = try counters.lookupBatchPerCPUFolded(keyType: UInt32.self, as: UInt64.self) { $0 &+= $1 }
        #expect(sums.map(\.key) == [0, 1, 2, 3])
        #expect(sums.map(\.value) == [0, UInt64(n) + 1, 0, UInt64(cpus * (cpus + 1) / 2)])
        let maxima = try counters.lookupBatchPerCPUFolded(keyType: UInt32.self, as: UInt64.self) { $0 = max($0, $1) }
        #expect(maxima[3].value == UInt64(cpus))
        #expect(throws: BPFError.self) { try counters.lookupBatchPerCPUFolded(keyType: UInt16.self, as: UInt64.self) { $0 &+= $1 } }

        let info = try prog.info()
        #expect(info.name == "count_icmp")
        #expect(info.tag.count == 16)
        #expect(info.type == .xdp)
        #expect(info.mapIDs.contains(try counters.info().id))
        #expect(try XDP.programInfo(id: info.id).tag == info.tag)
        #expect(try BPFProgram.open(id: info.id).name == "count_icmp")
    }

    @Test("setReadOnlyVariable changes behaviour (u32 verdict, u64, u8, array)")
    func readOnlyVariables() throws {
        let defaults = try loaded()
        #expect(try defaults.program(named: "return_answer").testRun(data: Frames.udp()).xdpAction == .pass)

        struct Echo: BitwiseCopyable, Equatable {
            var big: UInt64
            var answer: UInt32
            var small: UInt8
            var arr: (UInt8, UInt8, UInt8)
            static func == (a: Echo, b: Echo) -> Bool {
                a.big == b.big && a.answer == b.answer && a.small == b.small && a.arr == b.arr
            }
        }
        let obj = try loaded { obj in
            try obj.setReadOnlyVariable("answer", to: UInt32(1))
            try obj.setReadOnlyVariable("big", to: UInt64(0xdead_beef_0bad_f00d))
            try obj.setReadOnlyVariable("small", to: UInt8(42))
            try obj.setReadOnlyVariable("arr", to: [4, 5, 6])
        }
        let run = try obj.program(named: "return_answer").testRun(data: Frames.udp())
        #expect(run.xdpAction == .drop)
        let echo = try #require(try obj.map(named: "echo").lookup(UInt32(0), as: Echo.self))
        #expect(echo == Echo(big: 0xdead_beef_0bad_f00d, answer: 1, small: 42, arr: (4, 5, 6)))

        #expect {
            try obj.setReadOnlyVariable("answer", to: UInt32(2))
        } throws: { ($0 as? BPFError)?.errno == EBUSY }
    }

    @Test("a rejected program yields EACCES, its name and the verifier log")
    func verifierRejection() throws {
        for level: UInt32 in [0, 1] {
            let obj = try BPFObject(bytes: try TestPrograms.compile(TestPrograms.bad, name: "bad"), name: "bad")
            do {
                try obj.load(verifierLogLevel: level)
                Issue.record("the verifier accepted an unchecked packet read (level \(level))")
            } catch {
                #expect(error.operation == "bpf_object__load")
                #expect(error.errno == EACCES || error.errno == EINVAL)
                #expect(error.context == "program bad_read", "level \(level): \(error.context)")
                let log = try #require(error.verifierLog, "no verifier log at level \(level)")
                #expect(log.contains("invalid access to packet") || log.contains("outside of the packet"), "\(log)")
                #expect(log.contains("r0 = *(u32 *)"), "log should show the instruction: \(log)")
                #expect(error.description.contains("verifier:"))
                #expect(error.libbpfMessages.contains { $0.contains("bad_read") })
            }
            #expect(!obj.isLoaded)
            #expect {
                try obj.load()
            } throws: { ($0 as? BPFError)?.context.contains("cannot be retried") == true }
        }
    }

    @Test("load flags reach the verifier: strict alignment refuses a misaligned packet read that loads without it")
    func loadFlags() throws {
        let supported = BPFLoadFlags.supported()
        #expect(supported.contains(.strictAlignment) && supported.contains(.testRandomHigh32) && supported.contains(.testStateFrequency),
                "every kernel since 5.x has these: \(supported)")
        #expect(!BPFLoadFlags.supported(among: BPFLoadFlags(rawValue: 1 << 31)).contains(BPFLoadFlags(rawValue: 1 << 31)),
                "an unknown flag is refused")
        let bytes = try TestPrograms.compile(TestPrograms.misaligned, name: "misaligned")
        let plain = try BPFObject(bytes: bytes, name: "plain")
        try plain.load()
        let strict = try BPFObject(bytes: bytes, name: "strict")
        try strict.addLoadFlags(.strictAlignment)
        do {
            try strict.load()
            Issue.record("BPF_F_STRICT_ALIGNMENT accepted a 4-byte read at packet offset 12")
        } catch {
            #expect(error.context == "program misaligned_read")
            #expect(error.verifierLog?.contains("misaligned packet access") == true, "\(error.verifierLog ?? "")")
        }
        #expect(throws: BPFError.self) { try plain.addLoadFlags(.strictAlignment) }
        #expect(BPFLoadFlags([.strictAlignment, .testStateFrequency]).description == "BPF_F_STRICT_ALIGNMENT|BPF_F_TEST_STATE_FREQ")
    }

    @Test("verifier log on success when a level is asked for")
    func verifierLogOnSuccess() throws {
        let obj = try BPFObject(bytes: try TestPrograms.compile(TestPrograms.main, name: "main"), name: "bpfkit")
        try obj.load(verifierLogLevel: 4)  // statistics only
        #expect(obj.verifierLog(program: "count_icmp")?.contains("processed") == true)
        let plain = try loaded()
        #expect(plain.verifierLog(program: "count_icmp") == nil)
    }

    @Test("hash map: raw and typed lookup, update flags, delete, keys, batch")
    func hashMap() throws {
        let obj = try loaded()
        let table = try obj.map(named: "table")
        #expect(table.type == .hash)
        #expect(try table.lookup(UInt32(7), as: UInt64.self) == nil)
        try table.update(UInt32(7), UInt64(700))
        try table.update(key: [8, 0, 0, 0], value: [0x20, 3, 0, 0, 0, 0, 0, 0])
        #expect(try table.lookup(UInt32(8), as: UInt64.self) == 800)
        #expect(try table.lookup(key: [7, 0, 0, 0]) == [0xbc, 2, 0, 0, 0, 0, 0, 0])

        #expect {
            try table.update(UInt32(7), UInt64(1), flags: .noExist)
        } throws: { ($0 as? BPFError)?.errno == EEXIST }
        #expect {
            try table.update(UInt32(9), UInt64(1), flags: .exist)
        } throws: { ($0 as? BPFError)?.errno == ENOENT }

        #expect(Set(try table.keys(as: UInt32.self)) == [7, 8])
        let batch = try table.lookupBatch(keyType: UInt32.self, as: UInt64.self)
        #expect(Dictionary(uniqueKeysWithValues: batch.map { ($0.key, $0.value) }) == [7: 700, 8: 800])

        #expect(try table.delete(UInt32(7)) == true)
        #expect(try table.delete(UInt32(7)) == false)
        #expect(try table.keys().count == 1)
    }

    @Test("typed access with the wrong sizes or kind is a clear error")
    func typedMismatch() throws {
        let obj = try loaded()
        let counters = try obj.map(named: "counters")
        #expect {
            _ = try counters.lookupPerCPU(UInt64(0), as: UInt64.self)
        } throws: { error in
            let e = error as? BPFError
            return e?.errno == EINVAL && e?.context.contains("key type UInt64 is 8 bytes, map key size is 4") == true
        }
        #expect {
            _ = try counters.lookupPerCPU(UInt32(0), as: UInt32.self)
        } throws: { ($0 as? BPFError)?.context.contains("value type UInt32 is 4 bytes, map value size is 8") == true }
        #expect {
            _ = try counters.lookup(UInt32(0), as: UInt64.self)
        } throws: { ($0 as? BPFError)?.context.contains("use lookupPerCPU") == true }
        let table = try obj.map(named: "table")
        #expect {
            _ = try table.lookupPerCPU(UInt32(0), as: UInt64.self)
        } throws: { ($0 as? BPFError)?.context.contains("not a per-CPU map") == true }
        #expect {
            try table.update(key: [1, 2, 3], value: [UInt8](repeating: 0, count: 8))
        } throws: { ($0 as? BPFError)?.context.contains("key is 3 bytes") == true }
        #expect {
            try table.update(key: [1, 0, 0, 0], value: [1])
        } throws: { ($0 as? BPFError)?.context.contains("value is 1 bytes, map needs 8") == true }
        #expect {
            _ = try obj.map(named: "nope")
        } throws: { ($0 as? BPFError)?.errno == ENOENT }
    }

    @Test("spin-lock map (BTF): BPF_F_LOCK update/lookup and a locking program")
    func spinLock() throws {
        struct Locked: BitwiseCopyable { var lock: UInt32; var pad: UInt32; var count: UInt64 }
        let obj = try loaded()
        let map = try obj.map(named: "locked_map")
        #expect(map.valueSize == 16)
        #expect(try map.info().btfID != 0)
        try map.update(UInt32(1), Locked(lock: 0, pad: 0, count: 40), flags: .lock)
        let prog = try obj.program(named: "lock_inc")
        #expect(try prog.testRun(data: Frames.udp(), repeat: 2).xdpAction == .pass)
        let v = try #require(try map.lookup(UInt32(1), as: Locked.self, flags: .lock))
        #expect(v.count == 42)
        #expect(try prog.testRun(data: Frames.udp()).xdpAction == .pass)
        #expect(try map.lookup(UInt32(1), as: Locked.self, flags: .lock)?.count == 43)
    }

    @Test("pin, openPinned, EEXIST on re-pin, unpin; reuse a pinned map in a new object")
    func pinsAndReuse() throws {
        let dir = try TestPinDirectory()
        defer { dir.destroy() }
        #expect(BPFFS.isMounted(at: dir.path))

        let first = try loaded()
        let table = try first.map(named: "table")
        let path = dir.path + "/table"
        try table.pin(at: path)
        #expect {
            try table.pin(at: path)
        } throws: { ($0 as? BPFError)?.errno == EEXIST }
        try table.update(UInt32(5), UInt64(99))

        let opened = try BPFMap.openPinned(path)
        #expect(opened.name == "table")
        #expect(opened.type == .hash && opened.keySize == 4 && opened.valueSize == 8 && opened.maxEntries == 64)
        #expect(try opened.info().id == table.info().id)
        #expect(try opened.lookup(UInt32(5), as: UInt64.self) == 99)

        // A second object shares the pinned map.
        let second = try loaded { try $0.reuseMap(named: "table", pinnedAt: path) }
        let shared = try second.map(named: "table")
        #expect(try shared.info().id == table.info().id)
        #expect(try shared.lookup(UInt32(5), as: UInt64.self) == 99)

        // A mismatching definition is refused with the difference named.
        let third = try BPFObject(bytes: try TestPrograms.compile(TestPrograms.main, name: "main"), name: "bpfkit")
        try third.setMaxEntries(map: "table", 128)
        #expect {
            try third.reuseMap(named: "table", pinnedAt: path)
        } throws: { ($0 as? BPFError)?.context.contains("max_entries 64 vs 128") == true }

        // Programs pin too.
        let prog = try first.program(named: "xdp_pass_all")
        try prog.pin(at: dir.path + "/prog")
        #expect(try BPFProgram.openPinned(dir.path + "/prog").info().id == prog.info().id)

        try BPFFS.unpin(path)
        #expect {
            _ = try BPFMap.openPinned(path)
        } throws: { ($0 as? BPFError)?.errno == ENOENT && "\($0)".contains("nothing is pinned") }
        try BPFFS.unpin(path, ignoreMissing: true)
    }

    @Test("BPFFS mounts a fresh bpffs, recognises it, and removeTree empties nested pins")
    func bpffsMount() throws {
        let mountPoint = FileManager.default.temporaryDirectory
            .appendingPathComponent("bpfkit-mnt-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        #expect(!BPFFS.isMounted(at: mountPoint))
        #expect(try BPFFS.ensureMounted(at: mountPoint) == true)
        defer {
            umount2(mountPoint, Int32(MNT_DETACH))
            rmdir(mountPoint)
        }
        #expect(BPFFS.isMounted(at: mountPoint))
        #expect(BPFFS.fileSystemType(of: mountPoint) == "bpf")
        #expect(try BPFFS.ensureMounted(at: mountPoint) == false)

        let obj = try loaded()
        let nested = mountPoint + "/tool/eth0/maps"
        try BPFFS.makeDirectory(nested)
        try BPFFS.makeDirectory(nested)  // idempotent
        try obj.map(named: "table").pin(at: nested + "/table")
        try obj.map(named: "counters").pin(at: mountPoint + "/tool/counters")
        #expect(BPFFS.exists(nested + "/table"))
        try BPFFS.removeTree(mountPoint + "/tool")
        #expect(!BPFFS.exists(mountPoint + "/tool"))
        try BPFFS.removeTree(mountPoint + "/tool")  // missing is fine
        try obj.map(named: "table").pin(at: mountPoint + "/file")
        #expect {
            try BPFFS.makeDirectory(mountPoint + "/file/sub")
        } throws: { ($0 as? BPFError)?.errno == ENOTDIR }
    }

    @Test("libbpf messages are captured, not printed")
    func logCapture() throws {
        let obj = try BPFObject(bytes: try TestPrograms.compile(TestPrograms.bad, name: "bad"), name: "bad")
        #expect(throws: BPFError.self) { try obj.load() }
        #expect(BPFLog.recentMessages().contains { $0.level == .warning && $0.text.contains("bad_read") })
    }
}
