// A YAML document as a tree of nodes that keep the line and column where each starts, composed from libyaml's
// events. The policy and agent-configuration readers walk this tree rather than decoding into Codable types, so
// that every problem points at the node that causes it.
//
// Why not a YAML library's own tree: composing here is one pass over libyaml's events with an explicit stack (no
// recursion, whatever the nesting), scalars become Swift strings straight from libyaml's UTF-8 buffers, and nodes
// carry nothing the readers do not use (no tags, no resolver). On the 1,000-rule benchmark policy that is what
// separates libyaml's own time from the time `icmpwall apply` spends in YAML.
//
// Scalars are text: no YAML 1.1 type resolution (`yes`, `0x10`, `1_000` are just strings), since the readers
// decide what each value means where they know what it should be.

import CYAML

/// Where a node or a problem starts: 1-based line and column, as editors count them.
public struct YAMLMark: Sendable, Hashable {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
}

/// A node of a composed YAML document.
public enum YAMLNode: Sendable {
    case scalar(Scalar)
    case mapping(Mapping)
    case sequence(Sequence)

    /// A scalar's text, how it was written, and where it starts.
    public struct Scalar: Sendable {
        public enum Style: Sendable { case plain, singleQuoted, doubleQuoted, literal, folded }
        public var string: String
        public var style: Style
        public var mark: YAMLMark
    }

    /// A mapping's pairs in document order (duplicate keys are kept: the readers report them).
    public struct Mapping: Sendable, RandomAccessCollection {
        public typealias Element = (key: YAMLNode, value: YAMLNode)
        public var pairs: [Element]
        public var mark: YAMLMark
        public var startIndex: Int { pairs.startIndex }
        public var endIndex: Int { pairs.endIndex }
        public subscript(position: Int) -> Element { pairs[position] }
        /// The keys in document order.
        public var keys: [YAMLNode] { pairs.map(\.key) }
    }

    /// A sequence's items in document order.
    public struct Sequence: Sendable, RandomAccessCollection {
        public var items: [YAMLNode]
        public var mark: YAMLMark
        public var startIndex: Int { items.startIndex }
        public var endIndex: Int { items.endIndex }
        public subscript(position: Int) -> YAMLNode { items[position] }
    }

    /// Where the node starts.
    public var mark: YAMLMark {
        switch self {
        case .scalar(let s): s.mark
        case .mapping(let m): m.mark
        case .sequence(let s): s.mark
        }
    }

    /// The scalar, if the node is one.
    public var scalar: Scalar? {
        if case .scalar(let s) = self { return s }
        return nil
    }

    /// The scalar's text, if the node is one.
    public var string: String? { scalar?.string }
}

/// Why a YAML text could not be composed, with libyaml's words for it.
public struct YAMLError: Error, Sendable, CustomStringConvertible {
    /// What is wrong ("did not find expected key").
    public var problem: String
    /// Where it is. For a reader error (bad encoding, control characters) libyaml gives a byte offset instead, and
    /// the mark is derived from it.
    public var mark: YAMLMark
    /// What was being parsed, and where that began ("while parsing a block mapping" at 2:1), if libyaml says.
    public var context: (text: String, mark: YAMLMark)?

    public var description: String {
        var text = "\(problem) at \(mark.line):\(mark.column)"
        if let context { text += " (\(context.text) at \(context.mark.line):\(context.mark.column))" }
        return text
    }
}

public enum YAMLComposer {
    /// The most nodes a document may stand for once its aliases are expanded. A policy of 10,000 rules is about
    /// 150,000; a few aliases nested on each other ("billion laughs") would otherwise make every later walk of
    /// the tree exponential.
    public static let maxExpandedNodes = 4_000_000

    /// Composes the single document of `text`: nil for a stream with no document (empty, or only comments).
    public static func compose(_ text: String) throws(YAMLError) -> YAMLNode? {
        var text = text
        let result: Result<YAMLNode?, YAMLError> = text.withUTF8 { buffer in
            var parser = yaml_parser_t()
            guard yaml_parser_initialize(&parser) == 1 else {
                return .failure(YAMLError(problem: "out of memory", mark: YAMLMark(line: 1, column: 1)))
            }
            defer { yaml_parser_delete(&parser) }
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
            var composer = Composer()
            do throws(YAMLError) {
                return .success(try composer.run(&parser, text: buffer))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    private struct Composer {
        /// A collection being composed: its items so far (a mapping's keys and values alternate).
        struct Open {
            var isMapping: Bool
            var mark: YAMLMark
            var anchor: String?
            var items: [YAMLNode] = []
            var expanded = 1
        }

        var stack: [Open] = []
        var anchors: [String: (node: YAMLNode, expanded: Int)] = [:]
        var document: YAMLNode?
        var documentMark: YAMLMark?
        var expandedTotal = 0

        mutating func run(_ parser: inout yaml_parser_t, text: UnsafeBufferPointer<UInt8>) throws(YAMLError) -> YAMLNode? {
            var event = yaml_event_t()
            while true {
                guard yaml_parser_parse(&parser, &event) == 1 else { throw Self.parserError(parser, text: text) }
                defer { yaml_event_delete(&event) }
                let mark = Self.mark(event.start_mark)
                switch event.type {
                case YAML_DOCUMENT_START_EVENT:
                    if let first = documentMark {
                        throw YAMLError(problem: "but found another document", mark: mark,
                                        context: ("expected a single document in the stream", first))
                    }
                    documentMark = mark
                case YAML_SCALAR_EVENT:
                    let s = event.data.scalar
                    let string = s.value.map { String(decoding: UnsafeBufferPointer(start: $0, count: s.length), as: UTF8.self) } ?? ""
                    let node = YAMLNode.scalar(.init(string: string, style: Self.style(s.style), mark: mark))
                    try add(node, expanded: 1, cost: 1, anchor: Self.string(s.anchor), at: mark)
                case YAML_SEQUENCE_START_EVENT:
                    stack.append(Open(isMapping: false, mark: mark, anchor: Self.string(event.data.sequence_start.anchor)))
                case YAML_MAPPING_START_EVENT:
                    stack.append(Open(isMapping: true, mark: mark, anchor: Self.string(event.data.mapping_start.anchor)))
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    let open = stack.removeLast()
                    let node: YAMLNode
                    if open.isMapping {
                        var pairs: [YAMLNode.Mapping.Element] = []
                        pairs.reserveCapacity(open.items.count / 2)
                        var i = 0
                        while i + 1 < open.items.count {
                            pairs.append((open.items[i], open.items[i + 1]))
                            i += 2
                        }
                        node = .mapping(.init(pairs: pairs, mark: open.mark))
                    } else {
                        node = .sequence(.init(items: open.items, mark: open.mark))
                    }
                    try add(node, expanded: open.expanded, cost: 1, anchor: open.anchor, at: open.mark)
                case YAML_ALIAS_EVENT:
                    let name = Self.string(event.data.alias.anchor) ?? ""
                    guard let target = anchors[name] else {
                        throw YAMLError(problem: "found undefined alias '\(name)'", mark: mark)
                    }
                    try add(target.node, expanded: target.expanded, cost: target.expanded, anchor: nil, at: mark)
                case YAML_STREAM_END_EVENT:
                    return document
                default:
                    break  // stream start, document end: nothing to compose
                }
            }
        }

        /// Adds a finished node to the collection being composed, or makes it the document. `expanded`: the nodes
        /// it stands for; `cost`: those not counted yet (a collection's items were counted as they came).
        mutating func add(_ node: YAMLNode, expanded: Int, cost: Int, anchor: String?, at mark: YAMLMark) throws(YAMLError) {
            expandedTotal += cost
            if expandedTotal > YAMLComposer.maxExpandedNodes {
                throw YAMLError(problem: "the document stands for more than \(YAMLComposer.maxExpandedNodes) nodes once its aliases are expanded",
                                mark: mark)
            }
            if let anchor { anchors[anchor] = (node, expanded) }
            if stack.isEmpty {
                document = node
            } else {
                stack[stack.count - 1].items.append(node)
                stack[stack.count - 1].expanded += expanded
            }
        }

        static func mark(_ m: yaml_mark_t) -> YAMLMark { YAMLMark(line: m.line + 1, column: m.column + 1) }

        static func string(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? {
            p.map { String(cString: $0) }
        }

        static func style(_ s: yaml_scalar_style_t) -> YAMLNode.Scalar.Style {
            switch s {
            case YAML_SINGLE_QUOTED_SCALAR_STYLE: .singleQuoted
            case YAML_DOUBLE_QUOTED_SCALAR_STYLE: .doubleQuoted
            case YAML_LITERAL_SCALAR_STYLE: .literal
            case YAML_FOLDED_SCALAR_STYLE: .folded
            default: .plain
            }
        }

        /// libyaml's error, with the position it names. A reader error (bad UTF-8, a control character) has a byte
        /// offset rather than a mark.
        static func parserError(_ parser: yaml_parser_t, text: UnsafeBufferPointer<UInt8>) -> YAMLError {
            let problem = parser.problem.map { String(cString: $0) } ?? "unknown error"
            var mark = Self.mark(parser.problem_mark)
            if parser.error == YAML_READER_ERROR {
                var line = 1, column = 1
                for byte in text.prefix(parser.problem_offset) where byte & 0xC0 != 0x80 {
                    if byte == UInt8(ascii: "\n") { line += 1; column = 1 } else { column += 1 }
                }
                mark = YAMLMark(line: line, column: column)
            }
            let context = parser.context.map { (String(cString: $0), Self.mark(parser.context_mark)) }
            return YAMLError(problem: problem, mark: mark, context: context)
        }
    }
}
