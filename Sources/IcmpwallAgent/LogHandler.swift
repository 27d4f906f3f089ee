import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One line per event on stderr, as logfmt: `level=info msg="policy applied" interface=eth0 policy=edge ...`.
///
/// Under systemd (stderr connected to the journal: `$JOURNAL_STREAM` is set) each line starts with the syslog
/// priority (`<6>`), which journald turns into the entry's priority, and carries no timestamp (the journal has
/// one); elsewhere lines start with an RFC 3339 timestamp.
public struct LogfmtLogHandler: LogHandler {
    /// The process-wide level every handler follows unless it was given its own: a reload of the agent's config
    /// changes it for loggers already handed out.
    public static let level = SharedLogLevel()

    private var ownLevel: Logger.Level?
    public var logLevel: Logger.Level {
        get { ownLevel ?? Self.level.get() }
        set { ownLevel = newValue }
    }
    public var metadata: Logger.Metadata = [:]
    public let label: String
    let journald: Bool

    private static let lock = NSLock()

    /// `level` nil: follow ``level`` (the shared one).
    public init(label: String, level: Logger.Level? = nil, journald: Bool = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil) {
        self.label = label
        self.ownLevel = level
        self.journald = journald
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = ""
        if journald {
            line += "<\(Self.syslogPriority(event.level))>"
        } else {
            line += "ts=\(Self.timestamp()) "
        }
        line += "level=\(event.level.rawValue) msg=\(Self.quote(event.message.description))"
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        for key in merged.keys.sorted() {
            line += " \(Self.key(key))=\(Self.quote(Self.flatten(merged[key]!)))"
        }
        line += "\n"
        Self.lock.lock()
        defer { Self.lock.unlock() }
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func flatten(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let s): s
        case .stringConvertible(let c): c.description
        case .array(let a): a.map(flatten).joined(separator: ",")
        case .dictionary(let d): d.keys.sorted().map { "\($0):\(flatten(d[$0]!))" }.joined(separator: ",")
        }
    }

    static func key(_ k: String) -> String {
        String(k.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." ? $0 : "_" })
    }

    /// Bare when safe, else double-quoted with \\, \" and \n escaped (one event is always one line).
    static func quote(_ s: String) -> String {
        let safe = !s.isEmpty && s.allSatisfy { c in c.isASCII && !c.isWhitespace && c != "\"" && c != "=" && c != "\\" && c.asciiValue.map { $0 >= 0x21 && $0 < 0x7f } == true }
        if safe { return s }
        var out = "\""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default: out.append(c)
            }
        }
        return out + "\""
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = time_t(ts.tv_sec)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(tmv.tm_year) + 1900, Int(tmv.tm_mon) + 1, Int(tmv.tm_mday),
                      Int(tmv.tm_hour), Int(tmv.tm_min), Int(tmv.tm_sec), Int(ts.tv_nsec / 1_000_000))
    }
}

/// A log level shared by every handler of the process, changeable while it runs.
public final class SharedLogLevel: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Logger.Level = .info

    public func get() -> Logger.Level { lock.withLock { value } }
    public func set(_ level: Logger.Level) { lock.withLock { value = level } }
}
