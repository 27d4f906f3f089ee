import BPFKit
import Foundation
import Testing

/// BPF C sources the tests compile at test time with the toolchain's clang.
enum TestPrograms {
    /// Counting classifier, rodata knobs, a spin-lock map, a tc program.
    static let main = #"""
    #include <linux/bpf.h>
    #include <bpf/bpf_helpers.h>

    struct eth_hdr { unsigned char dst[6]; unsigned char src[6]; __be16 proto; };
    struct ip4_hdr { __u8 ver_ihl; __u8 tos; __be16 tot_len; __be16 id; __be16 frag; __u8 ttl; __u8 protocol; __u16 check; __be32 saddr; __be32 daddr; };

    struct {
        __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
        __uint(max_entries, 4);
        __type(key, __u32);
        __type(value, __u64);
    } counters SEC(".maps");

    struct {
        __uint(type, BPF_MAP_TYPE_HASH);
        __uint(max_entries, 64);
        __type(key, __u32);
        __type(value, __u64);
    } table SEC(".maps");

    struct echo_val { __u64 big; __u32 answer; __u8 small; __u8 arr[3]; };
    struct {
        __uint(type, BPF_MAP_TYPE_ARRAY);
        __uint(max_entries, 1);
        __type(key, __u32);
        __type(value, struct echo_val);
    } echo SEC(".maps");

    struct locked { struct bpf_spin_lock lock; __u32 pad; __u64 count; };
    struct {
        __uint(type, BPF_MAP_TYPE_HASH);
        __uint(max_entries, 8);
        __type(key, __u32);
        __type(value, struct locked);
    } locked_map SEC(".maps");

    const volatile __u32 answer = 2; /* XDP_PASS */
    const volatile __u64 big = 0x1122334455667788ULL;
    const volatile __u8 small = 7;
    const volatile __u8 arr[3] = { 1, 2, 3 };

    static __always_inline void bump(__u32 k)
    {
        __u64 *c = bpf_map_lookup_elem(&counters, &k);
        if (c)
            *c += 1;
    }

    SEC("xdp")
    int count_icmp(struct xdp_md *ctx)
    {
        void *data = (void *)(long)ctx->data;
        void *end = (void *)(long)ctx->data_end;
        bump(0);
        struct eth_hdr *eth = data;
        if ((void *)(eth + 1) > end)
            return XDP_PASS;
        if (eth->proto != __builtin_bswap16(0x0800))
            return XDP_PASS;
        struct ip4_hdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end)
            return XDP_PASS;
        if (ip->protocol == 1) {
            bump(1);
            return XDP_DROP;
        }
        return XDP_PASS;
    }

    SEC("xdp")
    int return_answer(struct xdp_md *ctx)
    {
        __u32 k = 0;
        struct echo_val *v = bpf_map_lookup_elem(&echo, &k);
        if (v) {
            v->big = big;
            v->answer = answer;
            v->small = small;
            v->arr[0] = arr[0];
            v->arr[1] = arr[1];
            v->arr[2] = arr[2];
        }
        return answer;
    }

    SEC("xdp")
    int xdp_pass_all(struct xdp_md *ctx)
    {
        return XDP_PASS;
    }

    SEC("xdp")
    int xdp_tx_all(struct xdp_md *ctx)
    {
        return XDP_TX;
    }

    SEC("xdp")
    int lock_inc(struct xdp_md *ctx)
    {
        __u32 k = 1;
        struct locked *v = bpf_map_lookup_elem(&locked_map, &k);
        if (!v)
            return XDP_ABORTED;
        bpf_spin_lock(&v->lock);
        v->count++;
        bpf_spin_unlock(&v->lock);
        return XDP_PASS;
    }

    SEC("tc")
    int tc_ok(struct __sk_buff *skb)
    {
        return 0; /* TC_ACT_OK */
    }

    char LICENSE[] SEC("license") = "GPL";
    """#

    /// A good program followed by one the verifier must reject (unchecked packet read).
    static let bad = #"""
    #include <linux/bpf.h>
    #include <bpf/bpf_helpers.h>

    SEC("xdp")
    int good_first(struct xdp_md *ctx)
    {
        return XDP_PASS;
    }

    SEC("xdp")
    int bad_read(struct xdp_md *ctx)
    {
        void *data = (void *)(long)ctx->data;
        return *(__u32 *)(data + 64);
    }

    char LICENSE[] SEC("license") = "GPL";
    """#

    /// A bounds-checked 4-byte packet read at offset 12 (the EtherType): with the NET_IP_ALIGN of 2 that strict mode
    /// assumes it lands at 14, not a multiple of 4. Fine on x86, refused under BPF_F_STRICT_ALIGNMENT.
    static let misaligned = #"""
    #include <linux/bpf.h>
    #include <bpf/bpf_helpers.h>

    SEC("xdp")
    int misaligned_read(struct xdp_md *ctx)
    {
        void *data = (void *)(long)ctx->data;
        void *end = (void *)(long)ctx->data_end;
        if (data + 18 > end)
            return XDP_PASS;
        return *(__u32 *)(data + 12) == 0 ? XDP_DROP : XDP_PASS;
    }

    char LICENSE[] SEC("license") = "GPL";
    """#

    /// Read-only variables only, compiled without -g (no BTF): exercises the ELF-symbol fallback.
    static let noBTF = #"""
    #include <linux/bpf.h>
    #include <bpf/bpf_helpers.h>

    const volatile __u32 verdict = 2;
    const volatile __u8 pad_byte = 9;

    SEC("xdp")
    int verdict_prog(struct xdp_md *ctx)
    {
        return verdict + pad_byte - 9;
    }

    char LICENSE[] SEC("license") = "GPL";
    """#

    static func clang() throws -> String {
        if let env = ProcessInfo.processInfo.environment["BPF_CLANG"] { return env }
        var candidates = ["/opt/swift/usr/bin/clang"]
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            if FileManager.default.isExecutableFile(atPath: "\(dir)/swift") { candidates.insert("\(dir)/clang", at: 0) }
        }
        guard let c = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw TestFailure("no clang with the BPF target found next to swift (set BPF_CLANG)")
        }
        return c
    }

    private static let cache = CompileCache()

    /// Compiles `source` (cached per process) and returns the object bytes.
    static func compile(_ source: String, name: String, debugInfo: Bool = true) throws -> [UInt8] {
        try cache.object(key: "\(name)-\(debugInfo)") {
            let dir = FileManager.default.temporaryDirectory
                .appendingPathComponent("bpfkit-tests-\(getpid())-\(name)-\(UInt32.random(in: 0...UInt32.max))")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let src = dir.appendingPathComponent("\(name).bpf.c")
            let obj = dir.appendingPathComponent("\(name)\(debugInfo ? "" : "-nobtf").bpf.o")
            try source.write(to: src, atomically: true, encoding: .utf8)
            var args = ["-O2", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c", src.path, "-o", obj.path]
            if debugInfo { args.insert("-g", at: 0) }
            let out = try Shell.run(try clang(), args)
            guard out.status == 0 else { throw TestFailure("clang failed for \(name):\n\(out.output)") }
            return [UInt8](try Data(contentsOf: obj))
        }
    }
}

final class CompileCache: @unchecked Sendable {
    private let lock = NSLock()
    private var objects: [String: [UInt8]] = [:]

    func object(key: String, _ make: () throws -> [UInt8]) throws -> [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        if let o = objects[key] { return o }
        let o = try make()
        objects[key] = o
        return o
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

enum Shell {
    /// Runs a program (resolved via PATH when not absolute), capturing stdout+stderr.
    @discardableResult
    static func run(_ program: String, _ args: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        if program.hasPrefix("/") {
            p.executableURL = URL(fileURLWithPath: program)
            p.arguments = args
        } else {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = [program] + args
        }
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Runs and throws if the exit status is not 0.
    static func must(_ program: String, _ args: [String]) throws {
        let r = try run(program, args)
        guard r.status == 0 else {
            throw TestFailure("\(program) \(args.joined(separator: " ")) failed (\(r.status)): \(r.output)")
        }
    }
}

/// Who may run the privileged tests.
enum Privilege {
    static let available = geteuid() == 0 || Capabilities.missing([.bpf, .netAdmin, .perfmon, .sysAdmin]).isEmpty
    static let isCI = ProcessInfo.processInfo.environment["CI"] == "true"
    /// Privileged suites run when privileged, and also in CI, where lacking privileges must fail.
    static let runPrivileged = available || isCI
    static let skipReason: Comment = "needs root or CAP_BPF+CAP_NET_ADMIN+CAP_PERFMON+CAP_SYS_ADMIN (with CI=true these tests run and fail)"
}

/// Test frames (documentation addresses only).
enum Frames {
    static func ethernet(type: UInt16, payload: [UInt8]) -> [UInt8] {
        [0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, UInt8(type >> 8), UInt8(type & 0xff)] + payload
    }

    static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i + 1 < bytes.count { sum += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]); i += 2 }
        if i < bytes.count { sum += UInt32(bytes[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }

    /// IPv4 192.0.2.1 -> 192.0.2.2 carrying `proto`.
    static func ipv4(proto: UInt8, payload: [UInt8]) -> [UInt8] {
        let total = 20 + payload.count
        var h: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 1, 0, 0, 64, proto, 0, 0,
                          192, 0, 2, 1, 192, 0, 2, 2]
        let c = checksum(h)
        h[10] = UInt8(c >> 8)
        h[11] = UInt8(c & 0xff)
        return ethernet(type: 0x0800, payload: h + payload)
    }

    static func icmpEcho() -> [UInt8] {
        var icmp: [UInt8] = [8, 0, 0, 0, 0x12, 0x34, 0, 1] + Array("bpfkit".utf8)
        let c = checksum(icmp)
        icmp[2] = UInt8(c >> 8)
        icmp[3] = UInt8(c & 0xff)
        return ipv4(proto: 1, payload: icmp)
    }

    static func udp() -> [UInt8] {
        ipv4(proto: 17, payload: [0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4])
    }
}

/// A network namespace with a unique name, deleted by `destroy()` (call it from `defer`).
final class TestNamespace {
    let name: String

    init() throws {
        name = "bpfkit-\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        try Shell.must("ip", ["netns", "add", name])
    }

    /// Adds a veth pair `a`/`b` inside the namespace, both up.
    func addVethPair(_ a: String = "veth-a", _ b: String = "veth-b") throws {
        try Shell.must("ip", ["-n", name, "link", "add", a, "type", "veth", "peer", "name", b])
        try Shell.must("ip", ["-n", name, "link", "set", a, "up"])
        try Shell.must("ip", ["-n", name, "link", "set", b, "up"])
        try Shell.must("ip", ["-n", name, "addr", "add", "192.0.2.1/24", "dev", a])
        try Shell.must("ip", ["-n", name, "addr", "add", "192.0.2.2/24", "dev", b])
    }

    func destroy() {
        _ = try? Shell.run("ip", ["netns", "del", name])
    }
}

/// A unique directory in bpffs, removed by `destroy()`.
final class TestPinDirectory {
    let path: String

    init() throws {
        try BPFFS.ensureMounted()
        path = "/sys/fs/bpf/bpfkit-test-\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        try BPFFS.makeDirectory(path)
    }

    func destroy() {
        try? BPFFS.removeTree(path)
    }
}

/// Polls `condition` for up to `seconds`.
func eventually(_ seconds: Double = 2, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    repeat {
        if try condition() { return true }
        usleep(20_000)
    } while Date() < deadline
    return try condition()
}

// Checks for code inside `NetworkNamespace.run`, whose body runs on a plain thread that Swift
// Testing cannot attribute `#expect` issues to: these throw, and the error surfaces in the test.

func ensure(_ condition: @autoclosure () throws -> Bool, _ message: @autoclosure () -> String = "",
            file: StaticString = #fileID, line: UInt = #line) throws {
    guard try condition() else { throw TestFailure("\(file):\(line): check failed \(message())") }
}

func ensureEqual<T: Equatable>(_ a: T, _ b: T, _ message: @autoclosure () -> String = "",
                               file: StaticString = #fileID, line: UInt = #line) throws {
    guard a == b else { throw TestFailure("\(file):\(line): \(a) != \(b) \(message())") }
}

/// Requires `body` to throw a BPFError with `errno` (and, if given, a description containing `text`).
func ensureThrows(errno expected: Int32, containing text: String? = nil, file: StaticString = #fileID, line: UInt = #line,
                  _ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as BPFError {
        guard e.errno == expected else {
            throw TestFailure("\(file):\(line): expected \(BPFError(operation: "", errno: expected).errnoName), got \(e)")
        }
        if let text, !e.description.contains(text) {
            throw TestFailure("\(file):\(line): error lacks \"\(text)\": \(e)")
        }
        return
    }
    throw TestFailure("\(file):\(line): expected an error with errno \(expected), none thrown")
}
