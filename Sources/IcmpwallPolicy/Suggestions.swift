// "Did you mean ...?" for unknown keys and names: the closest candidate by edit distance, if close enough.

enum Suggestions {
    /// The candidate closest to `input` (optimal string alignment distance, so a swapped pair of letters costs 1),
    /// or nil if none is close enough to be a plausible typo. Compared case-insensitively so `Echo-Request`
    /// finds `echo-request`.
    static func closest(to input: String, among candidates: [String]) -> String? {
        let needle = Array(input.lowercased().unicodeScalars)
        let threshold = Swift.max(2, needle.count / 3)
        var best: (String, Int)?
        for candidate in candidates {
            let d = distance(needle, Array(candidate.unicodeScalars))
            if d <= threshold, best.map({ d < $0.1 }) ?? true { best = (candidate, d) }
        }
        if let best { return best.0 }
        // An abbreviation (`frag` for `fragments`) is too far by edit distance but still plainly meant.
        if needle.count >= 3 {
            let lowered = input.lowercased()
            let prefixed = candidates.filter { $0.hasPrefix(lowered) }
            if prefixed.count == 1 { return prefixed[0] }
        }
        return nil
    }

    /// `; did you mean 'x'?` or the empty string.
    static func didYouMean(_ input: String, among candidates: [String]) -> String {
        guard let s = closest(to: input, among: candidates) else { return "" }
        if s == input.lowercased() && s != input { return "; names are lowercase: did you mean '\(s)'?" }
        return "; did you mean '\(s)'?"
    }

    /// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
    static func distance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous2 = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                var v = Swift.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { v = Swift.min(v, previous2[j - 2] + 1) }
                current[j] = v
            }
            (previous2, previous, current) = (previous, current, previous2)
        }
        return previous[b.count]
    }
}
