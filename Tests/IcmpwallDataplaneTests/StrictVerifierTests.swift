import BPFKit
import Foundation
import IcmpwallDataplane
import Testing

/// Every BPF program icmpwall ships, loaded with the strictest verifier settings the running kernel offers.
@Suite("Strictest verifier settings", .serialized, .enabled(if: Privilege.available || Privilege.inCI, "needs root (CAP_BPF, CAP_PERFMON) to load BPF programs; runs in CI as root"))
struct StrictVerifierTests {
    @Test("Production and test-mode programs load with strict alignment and every testing flag of this kernel")
    func strictest() throws {
        guard Privilege.require() else { return }
        // What attach, reattach, replay and `version --kernel` load with.
        #expect(DatapathLoader.loadFlags.contains(.strictAlignment))
        let testing = BPFLoadFlags.supported(among: BPFLoadFlags.testing)
        #expect(testing.contains(.testRandomHigh32) && testing.contains(.testStateFrequency), "offered since Linux 5.x: \(testing)")
        if KernelRelease.current().atLeast(6, 7) {
            #expect(testing.contains(.testRegisterInvariants), "Linux 6.7+ offers BPF_F_TEST_REG_INVARIANTS")
        }

        var report: [String] = []
        for testMode in [false, true] {
            for extra in [BPFLoadFlags(), testing] {
                let flags = DatapathLoader.loadFlags.union(extra)
                let label = "\(testMode ? "test-mode" : "production") [\(flags)]"
                let object = try DatapathLoader.open(testMode: testMode, extraFlags: extra)
                do {
                    try object.load()
                } catch {
                    Issue.record("\(label): refused: \(error)\n\(KernelFeatures.verifierReason(error.verifierLog ?? "", lines: 12).joined(separator: "\n"))")
                    continue
                }
                for name in [DatapathNames.program, DatapathNames.egressProgram] {
                    let info = try object.program(named: name).info()
                    #expect(info.verifiedInstructions < 1_000_000, "\(label) \(name): \(info.verifiedInstructions)")
                    report.append("\(label) \(name): \(info.verifiedInstructions) instructions processed")
                }
            }
        }
        // The benchmark baselines (icmpwall-bench) too.
        for extra in [BPFLoadFlags(), testing] {
            let baseline = try BPFObject(bytes: EmbeddedDatapath.baseline, name: "baseline")
            try baseline.addLoadFlags(DatapathLoader.loadFlags.union(extra))
            do {
                try baseline.load()
                report.append("baseline [\(DatapathLoader.loadFlags.union(extra))]: \(baseline.programNames.count) programs load")
            } catch {
                Issue.record("baseline: refused: \(error)")
            }
        }
        // Recorded for the README's kernel table (the kernel matrix prints it per kernel).
        print("verifier on \(KernelRelease.current().release):\n  " + report.joined(separator: "\n  "))
    }
}
