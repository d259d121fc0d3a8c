extension CategoryIndex {
    /// Runs this category's rules over `fields`, calling `hit` with the global number of each
    /// matching rule (exceptions not yet applied).
    func evaluate(_ fields: some SigmaFields, scratch: inout MatchScratch, hit: (Int) -> Void) {
        scratch.nextGeneration()
        let generation = scratch.generation
        // Each field is read once per event.
        if let event = fields as? EventFields {
            event.values(of: slotFields, into: &scratch.values)
        } else {
            fields.values(of: slotNames, into: &scratch.values)
        }

        for scan in scans {
            for slot in scan.slots {
                guard let value = scratch.values[Int(slot)] else { continue }
                for p in scan.whenPresent { mark(p, &scratch) }
                if value.isEmpty {
                    for p in scan.whenEmpty { mark(p, &scratch) }
                    continue
                }
                withBytes(value) { bytes in
                    if let scanner = scan.folded {
                        if isASCII(bytes) {
                            run(scanner, bytes, folding: true, &scratch)
                        } else {
                            for p in scan.openWhenNotASCII { mark(p, &scratch) }
                            withBytes(value.lowercased()) { run(scanner, $0, folding: false, &scratch) }
                        }
                    }
                    if let scanner = scan.cased {
                        run(scanner, bytes, folding: false, &scratch)
                    }
                }
            }
        }
        for rule in alwaysEvaluated where scratch.ruleGeneration[Int(rule)] != generation {
            scratch.ruleGeneration[Int(rule)] = generation
            scratch.candidates.append(rule)
        }
        var k = 0
        while k < scratch.candidates.count {
            let rule = scratch.candidates[k]
            k += 1
            if holds(roots[Int(rule)], &scratch) { hit(ruleIDs[Int(rule)]) }
        }
    }

    /// Marks `predicate` as holding and its rules as candidates.
    @inline(__always)
    private func mark(_ predicate: Int32, _ scratch: inout MatchScratch) {
        let p = Int(predicate)
        let generation = scratch.generation
        guard scratch.predicateGeneration[p] != generation else { return }
        scratch.predicateGeneration[p] = generation
        for i in Int(ruleStart[p])..<Int(ruleStart[p + 1]) {
            let rule = predicateRules[i]
            if scratch.ruleGeneration[Int(rule)] != generation {
                scratch.ruleGeneration[Int(rule)] = generation
                scratch.candidates.append(rule)
            }
        }
    }

    /// Whether condition node `node` holds; direct tests are computed on first use.
    private func holds(_ node: Int32, _ scratch: inout MatchScratch) -> Bool {
        let n = nodes[Int(node)]
        switch n.kind {
        case .test:
            let d = Int(predicateDirect[Int(n.a)])
            if d < 0 { return scratch.predicateGeneration[Int(n.a)] == scratch.generation }
            if scratch.directGeneration[d] == scratch.generation { return scratch.directValue[d] }
            let value = holds(directs[d], &scratch)
            scratch.directGeneration[d] = scratch.generation
            scratch.directValue[d] = value
            return value
        case .and:
            for i in Int(n.a)..<Int(n.a + n.b) where !holds(children[i], &scratch) { return false }
            return true
        case .or:
            for i in Int(n.a)..<Int(n.a + n.b) where holds(children[i], &scratch) { return true }
            return false
        case .not:
            return !holds(n.a, &scratch)
        }
    }

    private func holds(_ direct: Direct, _ scratch: inout MatchScratch) -> Bool {
        if direct.gate >= 0, scratch.predicateGeneration[Int(direct.gate)] != scratch.generation { return false }
        for slot in direct.slots where holds(direct.test, scratch.values[Int(slot)], scratch.values) { return true }
        return false
    }

    private func holds(_ test: DirectTest, _ value: String?, _ values: [String?]) -> Bool {
        switch test {
        case .null: return value == nil || value == ""
        case .exists(let flag): return (value != nil) == flag
        default: break
        }
        guard let value else { return false }
        switch test {
        case .regex(let regex): return regex.matches(value)
        case .cidr(let network): return network.contains(value)
        case .numeric(let op, let bound): return Double(value).map { op.holds($0, bound) } ?? false
        case .fieldReference(let other, let anchor, let cased):
            guard let otherValue = values[Int(other)] else { return false }
            return StringPattern(sigma: otherValue, anchor: anchor, cased: cased, wildcards: false)
                .matches((cased ? value : value.lowercased()).utf8)
        case .glob(let pattern):
            return pattern.matches((pattern.cased ? value : value.lowercased()).utf8)
        case .null, .exists: return false
        }
    }

    /// Scans one value; `folding` means the automaton folds ASCII case itself, so a lower-cased
    /// copy is made (once) only if a glob must be checked.
    @inline(__always)
    private func run(
        _ scanner: Scanner,
        _ bytes: UnsafeBufferPointer<UInt8>,
        folding: Bool,
        _ scratch: inout MatchScratch
    ) {
        let n = bytes.count
        var loweredReady = !folding
        scanner.automaton.scan(bytes) { pattern, end in
            let start = end - Int(scanner.automaton.patternLengths[pattern])
            for k in Int(scanner.useStart[pattern])..<Int(scanner.useStart[pattern + 1]) {
                let entry = scanner.uses[k]
                switch entry.use {
                case .anywhere, .gate: mark(entry.predicate, &scratch)
                case .prefix: if start == 0 { mark(entry.predicate, &scratch) }
                case .suffix: if end == n { mark(entry.predicate, &scratch) }
                case .exact: if start == 0 && end == n { mark(entry.predicate, &scratch) }
                case .glob:
                    guard scratch.predicateGeneration[Int(entry.predicate)] != scratch.generation else { continue }
                    let pattern = globs[Int(entry.glob)]
                    let matched: Bool
                    if !folding || pattern.cased {
                        matched = pattern.matches(bytes)
                    } else {
                        if !loweredReady {
                            scratch.lowered.removeAll(keepingCapacity: true)
                            for b in bytes { scratch.lowered.append(b >= 65 && b <= 90 ? b + 32 : b) }
                            loweredReady = true
                        }
                        matched = pattern.matches(scratch.lowered)
                    }
                    if matched { mark(entry.predicate, &scratch) }
                }
            }
        }
    }
}

/// Whether every byte is below 0x80, eight at a time.
@inline(__always)
func isASCII(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
    guard let base = bytes.baseAddress else { return true }
    let n = bytes.count
    var i = 0
    var any: UInt64 = 0
    while i + 8 <= n {
        any |= UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)
        i += 8
    }
    while i < n {
        any |= UInt64(base[i])
        i += 1
    }
    return any & 0x8080_8080_8080_8080 == 0
}

/// Calls `body` with the UTF-8 bytes of `value`, without copying native strings.
@inline(__always)
func withBytes<R>(_ value: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
    if let r = value.utf8.withContiguousStorageIfAvailable(body) { return r }
    return Array(value.utf8).withUnsafeBufferPointer(body)
}
