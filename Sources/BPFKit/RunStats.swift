import CLibBPF

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Kernel run-time statistics of every BPF program (`BPF_ENABLE_STATS`, `BPF_STATS_RUN_TIME`): while a value of
/// this type lives, ``ProgramInfo/runTimeNanoseconds`` and ``ProgramInfo/runCount`` count. Unlike the
/// `kernel.bpf_stats_enabled` sysctl, the kernel turns them off again when the fd closes, even if the process dies.
/// Timing every run costs a few tens of nanoseconds per run, so measure throughput without it.
public final class BPFRunStats: Sendable {
    private let fd: Int32

    public init() throws(BPFError) {
        fd = try check(bpf_enable_stats(BPF_STATS_RUN_TIME), "bpf_enable_stats", "BPF_STATS_RUN_TIME")
    }

    deinit { close(fd) }
}
