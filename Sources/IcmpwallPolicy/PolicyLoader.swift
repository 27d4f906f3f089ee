// Entry points: read a policy file (or text), parse it, validate it, and return the policy with its warnings.

import Crypto

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Loads policy files. Every problem found is reported, each with its `FILE:LINE:COLUMN`, in one ``PolicyError``.
public enum PolicyLoader {
    /// Policy files larger than this are refused before parsing: a real policy of the largest compilable size
    /// (10240 rules) is a few MiB, and reading an arbitrary file by mistake should fail fast.
    public static let maxFileSize = 64 << 20

    /// Reads, parses and validates the policy file at `path`.
    ///
    /// - Returns: the policy and the warnings found (which do not stop the policy from being applied).
    /// - Throws: ``PolicyError`` with every problem; an unreadable file gives `PATH:1:1: error: cannot read policy
    ///   file: <errno text>`.
    public static func load(contentsOf path: String) throws(PolicyError) -> (Policy, warnings: [PolicyDiagnostic]) {
        let bytes: [UInt8]
        switch readFile(path) {
        case .success(let b): bytes = b
        case .failure(let message):
            throw PolicyError(diagnostics: [PolicyDiagnostic(
                severity: .error, location: SourceLocation(file: path, line: 1, column: 1),
                message: "cannot read policy file: \(message)")])
        }
        return try parse(bytes: bytes, fileName: path)
    }

    /// Parses and validates policy text. `fileName` labels diagnostics and gives the default policy name.
    /// The SHA-256 is that of the text's UTF-8 bytes, which is the file's when the file was UTF-8.
    public static func parse(_ text: String, fileName: String) throws(PolicyError) -> (Policy, warnings: [PolicyDiagnostic]) {
        try parse(validUTF8: text, sha256Hex: sha256Hex(Array(text.utf8)), fileName: fileName)
    }

    /// Parses and validates the raw bytes of a policy file (which must be UTF-8).
    public static func parse(bytes: [UInt8], fileName: String) throws(PolicyError) -> (Policy, warnings: [PolicyDiagnostic]) {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            // Point at the first byte that is not UTF-8 so the operator can find it.
            var line = 1, column = 1
            var decoder = UTF8()
            var iterator = bytes.makeIterator()
            loop: while true {
                switch decoder.decode(&iterator) {
                case .scalarValue(let s):
                    if s == "\n" { line += 1; column = 1 } else { column += 1 }
                case .emptyInput, .error: break loop
                }
            }
            throw PolicyError(diagnostics: [PolicyDiagnostic(
                severity: .error, location: SourceLocation(file: fileName, line: line, column: column),
                message: "the policy file is not valid UTF-8")])
        }
        return try parse(validUTF8: text, sha256Hex: sha256Hex(bytes), fileName: fileName)
    }

    /// The built-in policy applied when none is given: the text of Policies/edge-default.yaml.
    public static var embeddedDefault: String { EmbeddedPolicies.edgeDefault }

    /// The file name diagnostics of ``embeddedDefault`` carry.
    public static let embeddedDefaultFileName = "<embedded>/edge-default.yaml"

    /// Parses ``embeddedDefault``. It is tested to load without errors or warnings.
    public static func loadEmbeddedDefault() throws(PolicyError) -> Policy {
        try parse(embeddedDefault, fileName: embeddedDefaultFileName).0
    }

    // MARK: - Internals

    /// The deepest nesting a policy may use. Real policies need about six levels; a document nested thousands of
    /// levels deep is refused with its position before libyaml spends memory on every level.
    public static let maxNesting = 64

    /// Where `text` nests deeper than ``maxNesting`` (flow brackets, block indentation or `- ` items on one
    /// line), judged by a cheap scan before YAML parsing; nil when it does not.
    static func excessiveNesting(_ text: String) -> (line: Int, column: Int)? {
        // A native string's UTF-8 is contiguous: scanning the buffer avoids the UTF8View's per-byte index checks.
        if let found = text.utf8.withContiguousStorageIfAvailable({ excessiveNesting(bytes: $0) }) { return found }
        return excessiveNesting(bytes: Array(text.utf8))
    }

    private static func excessiveNesting<Bytes: Collection<UInt8>>(bytes: Bytes) -> (line: Int, column: Int)? {
        var depth = 0, line = 1
        var quote: UInt8? = nil
        var lineStart = true, indent = 0, dashes = 0, column = 0
        for byte in bytes {
            column += 1
            if byte == UInt8(ascii: "\n") {
                line += 1; column = 0; lineStart = true; indent = 0; dashes = 0; quote = nil
                continue
            }
            if let q = quote {
                if byte == q { quote = nil }
                continue
            }
            if lineStart {
                if byte == UInt8(ascii: " ") { indent += 1; if indent / 2 > maxNesting { return (line, column) }; continue }
                if byte == UInt8(ascii: "-") { dashes += 1; if dashes + indent / 2 > maxNesting { return (line, column) }; continue }
                lineStart = false
            }
            switch byte {
            case UInt8(ascii: "#"): quote = UInt8(ascii: "\n")  // a comment runs to the end of the line
            case UInt8(ascii: "'"), UInt8(ascii: "\""): quote = byte
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > maxNesting { return (line, column) }
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth = max(0, depth - 1)
            default: break
            }
        }
        return nil
    }

    static func parse(validUTF8 text: String, sha256Hex: String, fileName: String) throws(PolicyError) -> (Policy, warnings: [PolicyDiagnostic]) {
        if let (line, column) = excessiveNesting(text) {
            throw PolicyError(diagnostics: [PolicyDiagnostic(
                severity: .error, location: SourceLocation(file: fileName, line: line, column: column),
                message: "the document nests deeper than \(maxNesting) levels here; a policy needs far fewer")])
        }
        var parser = PolicyParser(file: fileName)
        let policy = parser.parseDocument(text, sha256Hex: sha256Hex)
        var errors = parser.diagnostics
        var warnings = [PolicyDiagnostic]()
        if errors.isEmpty, let policy {
            // The safety and reachability checks read whole rules, so they only run on a policy that parsed cleanly:
            // on a half-parsed one they would report consequences of the errors already reported.
            for d in PolicyValidator.check(policy) {
                if d.severity == .error { errors.append(d) } else { warnings.append(d) }
            }
        }
        if !errors.isEmpty || policy == nil {
            throw PolicyError(diagnostics: sorted(errors))
        }
        return (policy!, sorted(warnings))
    }

    /// File order (stable for diagnostics at the same place).
    static func sorted(_ diagnostics: [PolicyDiagnostic]) -> [PolicyDiagnostic] {
        diagnostics.enumerated().sorted { a, b in
            let (la, lb) = (a.element.location, b.element.location)
            if la.line != lb.line { return la.line < lb.line }
            if la.column != lb.column { return la.column < lb.column }
            return a.offset < b.offset
        }.map(\.element)
    }

    static func sha256Hex(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// Reads a whole file with POSIX calls so a failure reports the errno text ("No such file or directory"),
    /// which is what an operator searches for.
    public static func readFile(_ path: String) -> Result<[UInt8], ReadFailure> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return .failure(ReadFailure(errno: errno)) }
        defer { close(fd) }
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(ReadFailure(errno: errno))
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
            if out.count > maxFileSize {
                return .failure(ReadFailure(text: "larger than \(maxFileSize) bytes"))
            }
        }
        return .success(out)
    }

    /// Why a file could not be read, as the operator should read it (the errno text, or the size limit).
    public struct ReadFailure: Error, CustomStringConvertible, Sendable {
        public var text: String
        public init(text: String) { self.text = text }
        init(errno code: Int32) { text = String(cString: strerror(code)) }
        public var description: String { text }
    }
}
