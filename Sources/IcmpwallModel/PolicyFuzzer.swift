// Policy fuzzing: mutated and random YAML documents through the same path as `icmpwall check` (PolicyLoader
// on the file's bytes, then PolicyCompiler). Nothing may crash, and every rejection must name a place in the
// file: each diagnostic carries the file name and a line and column of at least 1 that lie inside the document.

import IcmpwallPolicy

/// Mutates and invents policy documents deterministically.
public struct PolicyFuzzer {
    /// The random source.
    public var rng: SeededRNG

    /// A fuzzer for `seed`.
    public init(seed: UInt64) { rng = SeededRNG(seed: seed) }

    /// Words of the policy language and YAML syntax, spliced into documents.
    static let tokens = [
        "version", "name", "mode", "default", "allow-unsafe", "rules", "guards", "egress", "family", "from", "type",
        "code", "class", "action", "limit", "rate", "burst", "per", "ipv4-prefix", "ipv6-prefix", "backstop",
        "malformed", "fragments", "bogus-errors", "broadcast-echo", "max-echo-payload",
        ": ", ":", "- ", "-", "[", "]", "{", "}", ",", "?", "? ", "#", "&a ", "*a", "!!str ", "!!int ", "!!binary ",
        "!!map ", "!!seq ", "!foo ", "<<: *a", "|", ">", "|-", ">+", "\t", "\n", "\n  ", "\n    ", "\r\n", "\r", "'",
        "\"", "\\", "---", "...", "%YAML 1.2\n", "%TAG ! tag:x,2000:\n", "\u{FEFF}", "\u{0}", "\u{7}", "\u{85}",
        "\u{2028}", "ü", "😀", "\u{200B}",
    ]

    /// Values, some valid somewhere, most not.
    static let values = [
        "1", "0", "-1", "2", "1.0", "1e3", "0x10", "0o17", "010", "1_000", ".inf", "-.inf", ".nan", "true", "false",
        "yes", "No", "on", "null", "~", "''", "\"\"", "pass", "drop", "limit", "enforce", "monitor", "ipv4", "ipv6",
        "any", "error", "query", "deprecated", "echo-request", "echo-requset", "packet-too-big", "redirect",
        "destination-unreachable", "fragmentation-needed", "port-unreachable", "255", "256", "0-255", "255-0", "3-",
        "-3", "99999999999999999999", "18446744073709551616", "1/s", "0/s", "4294967296/s", "4294967297/s",
        "1/fortnight", "5/m", "1/h", "2 / s", "1/second", "source", "global", "192.0.2.0/24", "10.0.0.1/8",
        "0.0.0.0/0", "::/0", "2001:db8::/129", "1.2.3.4/33", "1.2.3.4/", "/24", "fe80::1%eth0", "::ffff:1.2.3.4",
        "01.2.3.4", "off", "65535", "65536", "[]", "{}", "[a, b]", "{rate: 1/s}", "{ rate: 1/s, burst: 0 }",
        "[echo-request, 999]", "[1, 2, [3]]", "&a x", "*a", "*nothere", "!!str 1", "!!binary aGVsbG8=", "|\n  x",
        "'unterminated", "\"unterminated", "\"\\x00\"", "\"\\uD800\"", "x: y: z", "- - -", "? a : b",
        String(repeating: "9", count: 40), String(repeating: "a", count: 300),
    ]

    /// A mutated copy of one of `corpus` (non-empty), or now and then a document made up from scratch.
    public mutating func next(corpus: [String]) -> String {
        if rng.chance(0.1) { return randomDocument() }
        var text = rng.pick(corpus)
        for _ in 0..<rng.weighted([0, 50, 25, 15, 10]) {
            text = mutate(text, corpus: corpus)
        }
        return text
    }

    mutating func mutate(_ text: String, corpus: [String]) -> String {
        var chars = Array(text.unicodeScalars)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        func joined() -> String { lines.joined(separator: "\n") }
        switch rng.int(0..<11) {
        case 0:  // delete a span
            guard !chars.isEmpty else { return text }
            let a = rng.int(0..<chars.count)
            chars.removeSubrange(a..<min(chars.count, a + rng.int(1...12)))
        case 1:  // insert a token
            let at = rng.int(0...chars.count)
            chars.insert(contentsOf: rng.pick(Self.tokens).unicodeScalars, at: at)
        case 2:  // duplicate a line
            guard !lines.isEmpty else { return text }
            let i = rng.int(0..<lines.count)
            lines.insert(lines[i], at: rng.int(0...lines.count))
            return joined()
        case 3:  // delete a line
            guard !lines.isEmpty else { return text }
            lines.remove(at: rng.int(0..<lines.count))
            return joined()
        case 4:  // swap two lines
            guard lines.count > 1 else { return text }
            lines.swapAt(rng.int(0..<lines.count), rng.int(0..<lines.count))
            return joined()
        case 5:  // change the indentation of a line
            guard !lines.isEmpty else { return text }
            let i = rng.int(0..<lines.count)
            let body = lines[i].drop { $0 == " " }
            lines[i] = (rng.chance(0.15) ? "\t" : String(repeating: " ", count: rng.int(0...8))) + body
            return joined()
        case 6:  // replace a value
            guard !lines.isEmpty else { return text }
            let i = rng.int(0..<lines.count)
            if let colon = lines[i].firstIndex(of: ":") {
                lines[i] = String(lines[i][...colon]) + " " + rng.pick(Self.values)
            } else {
                lines[i] += " " + rng.pick(Self.values)
            }
            return joined()
        case 7:  // truncate
            guard !chars.isEmpty else { return text }
            chars.removeSubrange(rng.int(0..<chars.count)...)
        case 8:  // replace a character
            guard !chars.isEmpty else { return text }
            let pool = Array(" :-[]{},#&*!|>'\"\\\t\n%@`?".unicodeScalars) + [Unicode.Scalar(rng.int(0x20...0x7e))!, "é", "\u{0}"]
            chars[rng.int(0..<chars.count)] = rng.pick(pool)
        case 9:  // splice lines of another document
            let other = rng.pick(corpus).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            guard !other.isEmpty else { return text }
            let a = rng.int(0..<other.count)
            let piece = other[a..<min(other.count, a + rng.int(1...6))]
            lines.insert(contentsOf: piece, at: rng.int(0...lines.count))
            return joined()
        default:  // nest: wrap a value in brackets or braces, sometimes deeply
            let depth = rng.chance(0.9) ? rng.int(1...4) : rng.int(5...64)
            let open = rng.chance(0.5) ? "[" : "{"
            let close = open == "[" ? "]" : "}"
            let at = rng.int(0...chars.count)
            let balanced = rng.chance(0.7)
            let inner = String(repeating: open, count: depth) + rng.pick(Self.values) + (balanced ? String(repeating: close, count: depth) : "")
            chars.insert(contentsOf: inner.unicodeScalars, at: at)
        }
        var s = ""
        s.unicodeScalars.append(contentsOf: chars)
        return s
    }

    /// A document made of random mappings, lists and scalars, mostly with the policy language's keys.
    public mutating func randomDocument() -> String {
        var out = ""
        randomNode(depth: 0, indent: 0, into: &out)
        return out
    }

    mutating func randomNode(depth: Int, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        switch depth > 3 ? 2 : rng.weighted([45, 20, 35]) {
        case 0:
            for _ in 0..<rng.int(1...5) {
                let key = rng.chance(0.85) ? rng.pick(Array(Self.tokens.prefix(26))) : rng.pick(Self.values)
                out += "\(pad)\(key):"
                if rng.chance(0.5) {
                    out += "\n"
                    randomNode(depth: depth + 1, indent: indent + 2, into: &out)
                } else {
                    out += " \(rng.pick(Self.values))\n"
                }
            }
        case 1:
            for _ in 0..<rng.int(1...4) {
                out += "\(pad)- "
                if rng.chance(0.5) {
                    out += "\n"
                    randomNode(depth: depth + 1, indent: indent + 2, into: &out)
                } else {
                    out += "\(rng.pick(Self.values))\n"
                }
            }
        default:
            out += "\(pad)\(rng.pick(Self.values))\n"
        }
    }

    /// Byte-level damage for the UTF-8 check: invalid sequences, stray continuation bytes, NULs.
    public mutating func damageBytes(_ text: String) -> [UInt8] {
        var bytes = Array(text.utf8)
        for _ in 0..<rng.int(1...3) {
            let bad: [UInt8] = rng.pick([[0xff], [0xc3], [0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0], [0xe2, 0x82]])
            bytes.insert(contentsOf: bad, at: rng.int(0...bytes.count))
        }
        return bytes
    }
}

/// What checking one fuzzed document found.
public struct PolicyCheckOutcome: Sendable {
    /// The policy was accepted (and compiled).
    public var accepted: Bool
    /// The diagnostics (errors when refused, warnings when accepted).
    public var diagnostics: [PolicyDiagnostic]
    /// Broken promises: a diagnostic without a usable location, a refusal without an error. Empty when fine.
    public var violations: [String]
}

/// The `icmpwall check` path, with the promises about diagnostics checked.
public enum PolicyCheck {
    /// Parses, validates and compiles `bytes` as the file `fileName`, as `icmpwall check` does, and checks that
    /// every diagnostic names the file and a line and column inside it.
    public static func run(bytes: [UInt8], fileName: String, capacity: CompileCapacity = CompileCapacity()) -> PolicyCheckOutcome {
        // Lines as libyaml counts them (\n, \r\n, \r, and the Unicode line breaks it knows); one more for EOF.
        let text = String(decoding: bytes, as: UTF8.self)
        var lineCount = 1
        var previous: Unicode.Scalar = " "
        for s in text.unicodeScalars {
            if s == "\n" && previous == "\r" { previous = s; continue }
            if s == "\n" || s == "\r" || s == "\u{85}" || s == "\u{2028}" || s == "\u{2029}" { lineCount += 1 }
            previous = s
        }
        var violations = [String]()
        func checkLocations(_ diagnostics: [PolicyDiagnostic], refused: Bool) {
            if refused && !diagnostics.contains(where: { $0.severity == .error }) {
                violations.append("refused without an error diagnostic")
            }
            for d in diagnostics {
                let l = d.location
                if l.file != fileName { violations.append("diagnostic names file '\(l.file)', not '\(fileName)': \(d)") }
                if l.line < 1 || l.column < 1 { violations.append("diagnostic without a location (line and column from 1): \(d)") }
                if l.line > lineCount + 1 { violations.append("diagnostic at line \(l.line) of a \(lineCount)-line file: \(d)") }
                if d.message.isEmpty { violations.append("diagnostic without a message at \(l)") }
            }
        }
        let policy: Policy
        let warnings: [PolicyDiagnostic]
        do {
            (policy, warnings) = try PolicyLoader.parse(bytes: bytes, fileName: fileName)
        } catch {
            checkLocations(error.diagnostics, refused: true)
            return PolicyCheckOutcome(accepted: false, diagnostics: error.diagnostics, violations: violations)
        }
        checkLocations(warnings, refused: false)
        do {
            let compiled = try PolicyCompiler.compile(policy, capacity: capacity)
            // The accepted policy must also mean the same compiled as written (a few probes).
            var rng = SeededRNG(seed: UInt64(truncatingIfNeeded: bytes.count) &* 31 &+ UInt64(policy.rules.count))
            for _ in 0..<64 {
                let family: ICMPFamily = rng.chance(0.5) ? .ipv4 : .ipv6
                let source = family == .ipv4 ? rng.pick(AddressPools.v4Sources) : rng.pick(AddressPools.v6Sources)
                let (t, c) = (rng.byte(), rng.chance(0.5) ? 0 : rng.byte())
                let a = policy.firstMatch(family: family, type: t, code: c, source: source)
                let b = compiled.lookup(family: family, type: t, code: c, source: source)
                if a != b {
                    violations.append("compiled lookup \(b.map(String.init) ?? "default") != first match \(a.map(String.init) ?? "default") for \(family) type \(t) code \(c) from \(IPPrefix.formatAddress(source))")
                    break
                }
            }
        } catch {
            checkLocations(error.diagnostics, refused: true)
            return PolicyCheckOutcome(accepted: false, diagnostics: error.diagnostics, violations: violations)
        }
        return PolicyCheckOutcome(accepted: true, diagnostics: warnings, violations: violations)
    }
}
