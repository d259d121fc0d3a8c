/// A byte-level Aho–Corasick automaton compiled to a dense DFA over byte classes: one table
/// lookup per input byte, whatever the number of patterns.
///
/// With `foldASCII`, `A`–`Z` share the class of `a`–`z`, so lower-cased patterns match values
/// of any ASCII case without copying them.
final class AhoCorasick: Sendable {
    /// Byte → class; class 0 is "a byte no pattern contains".
    let byteClass: [UInt8]
    let classCount: Int
    /// `transitions[state * classCount + class]`.
    let transitions: [Int32]
    /// Patterns ending at each state (its own and via suffix links): `outputs[outputStart[s]..<outputStart[s+1]]`.
    let outputStart: [Int32]
    let outputs: [Int32]
    let patternLengths: [Int32]

    /// Patterns must be non-empty. Pattern ids are their indices.
    init(patterns: [[UInt8]], foldASCII: Bool) {
        var classes = [UInt8](repeating: 0, count: 256)
        var next = 1
        for pattern in patterns {
            for b in pattern where classes[Int(b)] == 0 {
                precondition(next < 256)  // 255 distinct bytes at most, so this always holds
                classes[Int(b)] = UInt8(next)
                next += 1
            }
        }
        if foldASCII {
            for upper in UInt8(ascii: "A")...UInt8(ascii: "Z") {
                let lower = upper + 32
                if classes[Int(lower)] != 0 { classes[Int(upper)] = classes[Int(lower)] }
            }
        }
        byteClass = classes
        classCount = next

        // Trie.
        var children: [[Int32]] = [[Int32](repeating: -1, count: next)]
        var own: [[Int32]] = [[]]
        for (id, pattern) in patterns.enumerated() {
            var state = 0
            for b in pattern {
                let c = Int(classes[Int(b)])
                if children[state][c] < 0 {
                    children[state][c] = Int32(children.count)
                    children.append([Int32](repeating: -1, count: next))
                    own.append([])
                }
                state = Int(children[state][c])
            }
            own[state].append(Int32(id))
        }
        // Breadth-first: failure links, full transitions, merged outputs.
        let stateCount = children.count
        var table = [Int32](repeating: 0, count: stateCount * next)
        var fail = [Int32](repeating: 0, count: stateCount)
        var merged = own
        var queue: [Int] = []
        for c in 0..<next {
            let child = children[0][c]
            if child >= 0 {
                table[c] = child
                queue.append(Int(child))
            }
        }
        var head = 0
        while head < queue.count {
            let state = queue[head]
            head += 1
            merged[state] += merged[Int(fail[state])]
            for c in 0..<next {
                let child = children[state][c]
                let viaFail = table[Int(fail[state]) * next + c]
                if child >= 0 {
                    fail[Int(child)] = viaFail
                    table[state * next + c] = child
                    queue.append(Int(child))
                } else {
                    table[state * next + c] = viaFail
                }
            }
        }
        transitions = table
        var starts: [Int32] = [0]
        var flat: [Int32] = []
        for list in merged {
            flat += list
            starts.append(Int32(flat.count))
        }
        outputStart = starts
        outputs = flat
        patternLengths = patterns.map { Int32($0.count) }
    }

    /// Calls `match(pattern, end)` for every occurrence, `end` being the index after its last byte.
    @inline(__always)
    func scan(_ bytes: UnsafeBufferPointer<UInt8>, _ match: (Int, Int) -> Void) {
        transitions.withUnsafeBufferPointer { table in
            byteClass.withUnsafeBufferPointer { classes in
                outputStart.withUnsafeBufferPointer { starts in
                    var state = 0
                    for i in 0..<bytes.count {
                        state = Int(table[state &* classCount &+ Int(classes[Int(bytes[i])])])
                        let lo = Int(starts[state])
                        let hi = Int(starts[state &+ 1])
                        if lo != hi {
                            for k in lo..<hi { match(Int(outputs[k]), i + 1) }
                        }
                    }
                }
            }
        }
    }
}
