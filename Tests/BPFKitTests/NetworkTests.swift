@testable import BPFKit
import Foundation
import Testing

/// XDP and tc attachment on veth pairs inside throwaway namespaces.
@Suite("BPFKit XDP and tc on veth", .serialized, .enabled(if: Privilege.runPrivileged, Privilege.skipReason))
struct NetworkTests {
    func loaded() throws -> BPFObject {
        let obj = try BPFObject(bytes: try TestPrograms.compile(TestPrograms.main, name: "main"), name: "bpfkit")
        try obj.load()
        return obj
    }

    @Test("XDP link attach in native and generic mode; query shows it; closing detaches", arguments: XDPAttachMode.allCases)
    func attachModes(mode: XDPAttachMode) throws {
        let ns = try TestNamespace()
        defer { ns.destroy() }
        try ns.addVethPair()
        let obj = try loaded()
        let prog = try obj.program(named: "xdp_pass_all")
        let progID = try prog.info().id

        try NetworkNamespace.run(in: ns.name) {
            let ifindex = try Interfaces.index(named: "veth-a")
            try ensureEqual(try XDP.query(interfaceIndex: ifindex).programID, nil)
            let link = try XDP.attachLink(program: prog, interfaceIndex: ifindex, mode: mode)
            let status = try XDP.query(interfaceIndex: ifindex)
            try ensureEqual(status.programID, progID)
            try ensureEqual(status.mode, mode)
            try ensureEqual(mode == .native ? status.nativeProgramID : status.genericProgramID, progID)
            let info = try link.info()
            try ensureEqual(info.type, "xdp")
            try ensureEqual(info.programID, progID)
            try ensureEqual(info.interfaceIndex, ifindex)
            try ensureEqual(try XDP.link(interfaceIndex: ifindex)?.info().id, info.id)

            // A second attachment is refused while the link holds the interface.
            try ensureThrows(errno: EBUSY, containing: "detach it first") {
                _ = try XDP.attachLink(program: prog, interfaceIndex: ifindex, mode: mode)
            }

            link.close()
            try ensure(try eventually { try XDP.query(interfaceIndex: ifindex).programID == nil }, "closing the link did not detach")
        }
    }

    @Test("link update swaps the program in place; BPF_F_REPLACE guards it; detach() detaches")
    func linkUpdate() throws {
        let ns = try TestNamespace()
        defer { ns.destroy() }
        try ns.addVethPair()
        let obj = try loaded()
        let counting = try obj.program(named: "count_icmp")
        let passing = try obj.program(named: "xdp_pass_all")
        let countingID = try counting.info().id
        let passingID = try passing.info().id

        try NetworkNamespace.run(in: ns.name) {
            let ifindex = try Interfaces.index(named: "veth-a")
            let link = try XDP.attachLink(program: counting, interfaceIndex: ifindex, mode: .native)
            let linkID = try link.info().id
            try ensureEqual(try XDP.query(interfaceIndex: ifindex).programID, countingID)

            try link.update(program: passing)
            try ensureEqual(try XDP.query(interfaceIndex: ifindex).programID, passingID)
            try ensureEqual(try link.info().id, linkID)
            try ensureEqual(try link.info().programID, passingID)

            // Expecting the wrong current program fails and changes nothing.
            try ensureThrows(errno: EPERM) { try link.update(program: counting, expecting: counting) }
            try ensureEqual(try XDP.query(interfaceIndex: ifindex).programID, passingID)
            try link.update(program: counting, expecting: passing)
            try ensureEqual(try XDP.query(interfaceIndex: ifindex).programID, countingID)

            try link.detachOrThrow()
            try ensureEqual(try XDP.query(interfaceIndex: ifindex).programID, nil)
            try ensureEqual(try link.info().interfaceIndex, 0)
            // Detaching again is harmless for the kernel; detach() also closes the fd.
            try ensure(link.detach(), "detach of a defunct link")
            try ensureEqual(link.fd, -1)
            try ensure(link.detach() == false, "detach after close must report failure")
        }
    }

    @Test("a pinned link survives closing its fd; removing the pin detaches")
    func pinnedLink() throws {
        let ns = try TestNamespace()
        defer { ns.destroy() }
        let dir = try TestPinDirectory()
        defer { dir.destroy() }
        try ns.addVethPair()
        let obj = try loaded()
        let prog = try obj.program(named: "count_icmp")
        let progID = try prog.info().id
        let pin = dir.path + "/link"

        try NetworkNamespace.run(in: ns.name) {
            let ifindex = try Interfaces.index(named: "veth-b")
            do {
                let link = try XDP.attachLink(program: prog, interfaceIndex: ifindex, mode: .generic)
                try link.pin(at: pin)
                try ensureThrows(errno: EEXIST, containing: "unpin it first") { try link.pin(at: pin) }
                link.close()
                try ensureThrows(errno: EBADF) { try link.pin(at: pin + "2") }
            }
            try ensureEqual(try XDP.query(interfaceIndex: ifindex).programID, progID)
            try ensureEqual(try XDP.query(interfaceIndex: ifindex).mode, .generic)
            let reopened = try BPFLink.openPinned(pin)
            try ensureEqual(try reopened.info().programID, progID)
            try ensureEqual(try reopened.info().interfaceIndex, ifindex)
            reopened.close()
            try ensureEqual(try XDP.query(interfaceIndex: ifindex).programID, progID)

            try BPFFS.unpin(pin)
            try ensure(try eventually { try XDP.query(interfaceIndex: ifindex).programID == nil }, "removing the pin did not detach")
        }
    }

    @Test("live frames: XDP_TX on one veth end reaches the XDP program on the other (or the kernel refuses the flag)")
    func liveFrames() throws {
        let ns = try TestNamespace()
        defer { ns.destroy() }
        try ns.addVethPair()
        let obj = try loaded()
        let tx = try obj.program(named: "xdp_tx_all")
        let counter = try obj.program(named: "count_icmp")
        let counters = try obj.map(named: "counters")
        let frames: UInt32 = 2000

        // Some hardened kernels refuse BPF_F_TEST_XDP_LIVE_FRAMES even to root (live frames transmit). There the
        // error must say so, typed, while a plain run of the same program works: the refusal is the flag's.
        do {
            _ = try tx.testRunLiveFrames(data: Frames.icmpEcho(), repeat: 1, batchSize: 1)
        } catch {
            guard error.errno == EPERM else { throw error }
            #expect(error.errnoName == "EPERM")
            #expect("\(error)".contains("live frames"), "the error names what was refused: \(error)")
            #expect(try tx.testRun(data: Frames.icmpEcho()).returnValue == 3, "a plain run of xdp_tx_all returns XDP_TX")
            print("liveFrames: this kernel refuses BPF_F_TEST_XDP_LIVE_FRAMES (EPERM); checked the typed error and a plain run")
            return
        }

        let result = try NetworkNamespace.run(in: ns.name) { () throws -> LiveFramesResult in
            let a = try Interfaces.index(named: "veth-a")
            let b = try Interfaces.index(named: "veth-b")
            // veth delivers XDP_TX'd frames only to a peer running XDP (and needs XDP on the sender for NAPI).
            let peer = try XDP.attachLink(program: counter, interfaceIndex: b, mode: .native)
            defer { peer.close() }
            let sender = try XDP.attachLink(program: try obj.program(named: "xdp_pass_all"), interfaceIndex: a, mode: .native)
            defer { sender.close() }
            let r = try tx.testRunLiveFrames(data: Frames.icmpEcho(), repeat: frames, batchSize: 64, ingressInterfaceIndex: a)
            _ = eventually(1) { ((try? counters.lookupPerCPU(UInt32(1), as: UInt64.self).reduce(0, +)) ?? 0) >= UInt64(frames) }
            return r
        }
        #expect(result.frames == frames)
        #expect(result.durationNanoseconds > 0)
        // counters[1] counts only our ICMP frames (counters[0] also sees the kernel's own IPv6 ND traffic).
        let icmp = try counters.lookupPerCPU(UInt32(1), as: UInt64.self).reduce(0, +)
        #expect(icmp > 0, "no live frame reached the peer")
        #expect(icmp <= UInt64(frames))

        #expect {
            _ = try tx.testRunLiveFrames(data: Frames.icmpEcho(), repeat: 1, batchSize: 100_000)
        } throws: { ($0 as? BPFError)?.errno == E2BIG }
    }

    @Test("tc egress: attach with handle and priority, query, detach, destroy the hook")
    func tcEgress() throws {
        let ns = try TestNamespace()
        defer { ns.destroy() }
        try ns.addVethPair()
        let obj = try loaded()
        let prog = try obj.program(named: "tc_ok")
        #expect(prog.type == .schedCls)
        let progID = try prog.info().id

        try NetworkNamespace.run(in: ns.name) {
            let ifindex = try Interfaces.index(named: "veth-a")
            try ensureEqual(try TC.query(interfaceIndex: ifindex, point: .egress, handle: 1, priority: 1), nil, "before clsact")
            let filter = try TC.attach(program: prog, interfaceIndex: ifindex, point: .egress, handle: 1, priority: 1)
            try ensureEqual(filter.programID, progID)
            try ensureEqual(filter.handle, 1)
            try ensureEqual(filter.priority, 1)
            try ensureEqual(try TC.query(interfaceIndex: ifindex, point: .egress, handle: 1, priority: 1)?.programID, progID)
            try ensureEqual(try TC.query(interfaceIndex: ifindex, point: .egress, handle: 2, priority: 1), nil, "other handle")
            try ensureEqual(try TC.query(interfaceIndex: ifindex, point: .ingress, handle: 1, priority: 1), nil, "ingress")
            try ensureThrows(errno: EINVAL) { _ = try TC.query(interfaceIndex: ifindex, point: .egress, handle: 0, priority: 1) }

            try ensureThrows(errno: EEXIST) {
                _ = try TC.attach(program: prog, interfaceIndex: ifindex, point: .egress, handle: 1, priority: 1)
            }
            let replaced = try TC.attach(program: prog, interfaceIndex: ifindex, point: .egress, handle: 1, priority: 1, replace: true)
            try ensureEqual(replaced.programID, progID)

            try TC.detach(interfaceIndex: ifindex, point: .egress, handle: 1, priority: 1)
            try ensureEqual(try TC.query(interfaceIndex: ifindex, point: .egress, handle: 1, priority: 1), nil, "after detach")
            do {
                try TC.detach(interfaceIndex: ifindex, point: .egress, handle: 1, priority: 1)
                throw TestFailure("detaching a missing filter succeeded")
            } catch let e as BPFError {
                try ensure(e.errno == ENOENT || e.errno == EINVAL, "\(e)")
            }

            try ensureEqual(try TC.createHook(interfaceIndex: ifindex), false)
            try TC.destroyHook(interfaceIndex: ifindex)
            try ensureEqual(try TC.createHook(interfaceIndex: ifindex), true)
            try TC.destroyHook(interfaceIndex: ifindex)
        }
        let qdiscs = try Shell.run("ip", ["-n", ns.name, "-j", "qdisc", "show", "dev", "veth-a"])
        #expect(!qdiscs.output.contains("clsact"))
    }

    @Test("NetworkNamespace.run sees the namespace's interfaces; the caller does not")
    func namespaceThread() throws {
        let ns = try TestNamespace()
        defer { ns.destroy() }
        try ns.addVethPair("bpfkit-x", "bpfkit-y")
        let inside = try NetworkNamespace.run(in: ns.name) { try Interfaces.index(named: "bpfkit-x") }
        #expect(inside > 0)
        #expect(throws: BPFError.self) { try Interfaces.index(named: "bpfkit-x") }
        #expect {
            try NetworkNamespace.run(in: ns.name) { () throws -> Int in throw TestFailure("boom") }
        } throws: { "\($0)" == "boom" }
    }
}
