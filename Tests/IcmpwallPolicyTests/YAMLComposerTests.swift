import Testing
@testable import IcmpwallPolicy

/// The YAML composer under the policy and agent-config readers: positions, styles, aliases, and its refusals.
@Suite("YAML composer")
struct YAMLComposerTests {
    private func compose(_ text: String) throws -> YAMLNode? { try YAMLComposer.compose(text) }

    private func composeError(_ text: String) -> YAMLError? {
        do {
            _ = try YAMLComposer.compose(text)
            return nil
        } catch {
            return error
        }
    }

    @Test func nodesKeepTheirPositions() throws {
        let root = try #require(try compose("a: 1\nlist:\n  - x\n  - { k: 'v' }\n"))
        guard case .mapping(let top) = root else { Issue.record("root is not a mapping"); return }
        #expect(top.count == 2)
        #expect(top[0].key.string == "a" && top[0].key.mark == YAMLMark(line: 1, column: 1))
        #expect(top[0].value.string == "1" && top[0].value.mark == YAMLMark(line: 1, column: 4))
        guard case .sequence(let list) = top[1].value else { Issue.record("list is not a sequence"); return }
        #expect(list.mark == YAMLMark(line: 3, column: 3))
        #expect(list[0].string == "x" && list[0].mark == YAMLMark(line: 3, column: 5))
        guard case .mapping(let flow) = list[1] else { Issue.record("item 2 is not a mapping"); return }
        #expect(flow.mark == YAMLMark(line: 4, column: 5))
        #expect(flow[0].value.scalar?.style == .singleQuoted && flow[0].value.string == "v")
    }

    @Test func scalarsAreTextWithTheirStyle() throws {
        let root = try #require(try compose("- yes\n- 0x10\n- ''\n- \"null\"\n- ~\n- |\n  two\n  lines\n"))
        guard case .sequence(let items) = root else { Issue.record("not a sequence"); return }
        #expect(items.map(\.string) == ["yes", "0x10", "", "null", "~", "two\nlines\n"])
        #expect(items.map { $0.scalar?.style } == [.plain, .plain, .singleQuoted, .doubleQuoted, .plain, .literal])
    }

    @Test func emptyStreamsHaveNoDocument() throws {
        #expect(try compose("") == nil)
        #expect(try compose("# only a comment\n\n") == nil)
    }

    @Test func duplicateKeysAreKeptForTheReaders() throws {
        let root = try #require(try compose("a: 1\na: 2\n"))
        guard case .mapping(let m) = root else { Issue.record("not a mapping"); return }
        #expect(m.keys.map(\.string) == ["a", "a"])
    }

    @Test func aliasesStandForTheirAnchoredNode() throws {
        let root = try #require(try compose("base: &b { rate: 5/s }\nother: *b\n"))
        guard case .mapping(let m) = root, case .mapping(let other) = m[1].value else { Issue.record("shape"); return }
        #expect(other[0].key.string == "rate" && other[0].value.string == "5/s")
        #expect(composeError("a: *missing\n")?.problem == "found undefined alias 'missing'")
        #expect(composeError("a: *missing\n")?.mark == YAMLMark(line: 1, column: 4))
    }

    @Test func aliasBombsAreRefused() {
        // Nine levels of ten aliases each stand for 10^9 nodes in a few hundred bytes.
        var text = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
        for level in 1...9 {
            let refs = Array(repeating: "*l\(level - 1)", count: 10).joined(separator: ", ")
            text += "l\(level): &l\(level) [\(refs)]\n"
        }
        let error = composeError(text)
        #expect(error?.problem.contains("once its aliases are expanded") == true)
        // Levels 0-5 stand for about 1.2 million nodes together (level n for 1.1 x 10^n); level 6's third alias
        // crosses 4 million.
        #expect(error?.mark.line == 7)
    }

    @Test func oneDocumentOnly() {
        let error = composeError("a: 1\n---\nb: 2\n")
        #expect(error?.problem == "but found another document")
        #expect(error?.mark == YAMLMark(line: 2, column: 1))
        #expect(error?.context?.text == "expected a single document in the stream")
        #expect(error?.context?.mark == YAMLMark(line: 1, column: 1))
    }

    @Test func syntaxErrorsKeepLibyamlsWordsAndPlace() {
        let error = composeError("a: [1, 2\n")
        #expect(error?.problem == "did not find expected ',' or ']'")
        #expect(error?.mark.line == 2)
        #expect(error?.context?.text == "while parsing a flow sequence")
        #expect(error?.context?.mark == YAMLMark(line: 1, column: 4))
    }

    @Test func readerErrorsCountCharactersNotBytes() {
        // "é" is two bytes: the control character is the 6th character of line 2, its 7th byte.
        let error = composeError("a: 1\nb: 'é\u{1}'\n")
        #expect(error?.problem == "control characters are not allowed")
        #expect(error?.mark == YAMLMark(line: 2, column: 6))
    }
}
