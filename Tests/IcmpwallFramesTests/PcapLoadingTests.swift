import Testing
@testable import IcmpwallCapture

#if os(Linux)
/// libpcap is opened on first use of a capture file (Pcap.swift): where it is missing or too old, capture commands
/// say so instead of the whole binary failing to start.
@Suite("libpcap opened at run time")
struct PcapLoadingTests {
    @Test func theInstalledLibraryServes() {
        #expect(Pcap.loadProblem(soname: "libpcap.so.0.8") == nil)
    }

    @Test func aMissingLibraryIsNamedWithThePackageToInstall() throws {
        let problem = try #require(Pcap.loadProblem(soname: "libpcap-icmpwall-test-missing.so.0"))
        #expect(problem.hasPrefix("cannot load libpcap, which reading and writing capture files needs:"))
        #expect(problem.contains("libpcap-icmpwall-test-missing.so.0"), "dlerror names the file: \(problem)")
        #expect(problem.hasSuffix("(on Debian: apt install libpcap0.8)"))
    }

    @Test func aLibraryWithoutPcapsEntryPointsIsRefused() throws {
        // zlib is loaded by libbpf anyway: a real shared library with none of libpcap's symbols.
        let problem = try #require(Pcap.loadProblem(soname: "libz.so.1"))
        #expect(problem.contains("lacks pcap_datalink_val_to_name, pcap_open_offline_with_tstamp_precision"))
    }
}
#endif
