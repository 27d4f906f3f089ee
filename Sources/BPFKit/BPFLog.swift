import CIcmpwallShim
import CLibBPF
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Routes libbpf's diagnostic output (`libbpf_set_print`) into Swift.
///
/// BPFKit installs its sink the first time it touches libbpf. By default libbpf's chatter is
/// *not* printed to stderr; warnings are kept in a small ring so a failing operation can attach
/// the warnings its own thread produced to ``BPFError/libbpfMessages``.
///
/// libbpf's print callback is a C function pointer that cannot capture context, so the sink is a
/// process-global value guarded by a `Mutex`.
public enum BPFLog {
    /// libbpf's three message levels.
    public enum Level: Int, Comparable, Sendable, CustomStringConvertible {
        case warning = 0
        case info = 1
        case debug = 2

        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
        public var description: String {
            switch self {
            case .warning: return "warning"
            case .info: return "info"
            case .debug: return "debug"
            }
        }
    }

    /// One line libbpf printed (without its `libbpf: ` prefix and trailing newline).
    public struct Message: Sendable, CustomStringConvertible {
        public var level: Level
        public var text: String
        /// Kernel thread id of the thread that was inside libbpf.
        public var threadID: Int32
        /// Increases by one per message, process-wide.
        public var sequence: UInt64
        public var description: String { "libbpf \(level): \(text)" }
    }

    /// A point in the message stream, taken before an operation, to collect what it printed.
    struct Mark: Sendable {
        let sequence: UInt64
        let threadID: Int32
    }

    struct State {
        var level: Level = .warning
        var echo = false
        var handler: (@Sendable (Message) -> Void)?
        var ring: [Message] = []
        var capacity = 128
        var next: UInt64 = 0
        var installed = false
    }

    static let state = Mutex(State())

    /// Chooses what happens to libbpf's messages.
    ///
    /// - Parameters:
    ///   - level: messages at this level or more severe are retained and delivered (`.debug` is verbose).
    ///   - echoToStandardError: also write them to stderr, prefixed `libbpf: `, as libbpf would by default.
    ///   - handler: called (outside any lock, on the thread inside libbpf) for each delivered message.
    public static func capture(
        level: Level = .warning, echoToStandardError: Bool = false,
        handler: (@Sendable (Message) -> Void)? = nil
    ) {
        state.withLock {
            $0.level = level
            $0.echo = echoToStandardError
            $0.handler = handler
        }
        install()
    }

    /// How many recent messages are retained (default 128).
    public static func setRetainedMessageLimit(_ n: Int) {
        state.withLock {
            $0.capacity = max(1, n)
            if $0.ring.count > $0.capacity { $0.ring.removeFirst($0.ring.count - $0.capacity) }
        }
    }

    /// The retained messages, oldest first.
    public static func recentMessages() -> [Message] {
        state.withLock { $0.ring }
    }

    /// Installs the sink (idempotent). Called by every BPFKit entry point that reaches libbpf.
    public static func install() {
        let first = state.withLock { s -> Bool in
            defer { s.installed = true }
            return !s.installed
        }
        if first { _ = libbpf_set_print(bpfLogPrintCallback) }
    }

    static func mark() -> Mark {
        install()
        let seq = state.withLock { $0.next }
        return Mark(sequence: seq, threadID: icw_gettid())
    }

    /// Warnings printed on the marking thread since `mark`.
    static func messages(since mark: Mark) -> [String] {
        state.withLock { s in
            s.ring.filter { $0.sequence >= mark.sequence && $0.threadID == mark.threadID && $0.level == .warning }
                .map(\.text)
        }
    }

    static func record(level: Level, text: String) {
        let tid = icw_gettid()
        let (deliver, echo, handler, message) = state.withLock { s -> (Bool, Bool, (@Sendable (Message) -> Void)?, Message) in
            let m = Message(level: level, text: text, threadID: tid, sequence: s.next)
            s.next += 1
            guard level <= s.level else { return (false, false, nil, m) }
            s.ring.append(m)
            if s.ring.count > s.capacity { s.ring.removeFirst(s.ring.count - s.capacity) }
            return (true, s.echo, s.handler, m)
        }
        guard deliver else { return }
        if echo {
            let line = "libbpf: \(text)\n"
            var bytes = Array(line.utf8)
            _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
        }
        handler?(message)
    }
}

/// The C callback given to `libbpf_set_print`; it cannot capture, so it forwards to the global sink.
private let bpfLogPrintCallback: libbpf_print_fn_t = { level, format, args in
    guard let format, let args else { return 0 }
    let capacity = 8192
    let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
    defer { buffer.deallocate() }
    let n = vsnprintf(buffer, capacity, format, args)
    guard n >= 0 else { return 0 }
    var text = String(cString: buffer)
    if text.hasPrefix("libbpf: ") { text.removeFirst("libbpf: ".count) }
    while text.last == "\n" { text.removeLast() }
    let lvl: BPFLog.Level
    switch level {
    case LIBBPF_WARN: lvl = .warning
    case LIBBPF_INFO: lvl = .info
    default: lvl = .debug
    }
    BPFLog.record(level: lvl, text: text)
    return n
}
