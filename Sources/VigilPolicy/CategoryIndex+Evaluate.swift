extension CategoryIndex {
    /// Runs this category's rules over `fields`, calling `hit` with the global number of each
    /// matching rule (exceptions not yet applied).
    func evaluate(_ fields: some SigmaFields, scratch: inout MatchScratch, hit: (Int) -> Void) {
        scratch.nextGeneration()
        let generation = scratch.generation

        @inline(__always)
        func mark(_ predicate: Int32, _ scratch: inout MatchScratch) {
            let p = Int(predicate)
            guard scratch.predicateGeneration[p] != generation else { return }
            scratch.predicateGeneration[p] = generation
            for rule in predicateRules[p] where scratch.ruleGeneration[Int(rule)] != generation {
                scratch.ruleGeneration[Int(rule)] = generation
                scratch.candidates.append(rule)
            }
        }

        for scan in scans {
            for field in scan.fields {
                guard var value = fields.value(of: field) else { continue }
                for p in scan.whenPresent { mark(p, &scratch) }
                if value.isEmpty {
                    for p in scan.whenEmpty { mark(p, &scratch) }
                    continue
                }
                if let scanner = scan.folded {
                    var isASCII = true
                    value.withUTF8 { bytes in
                        for b in bytes where b >= 0x80 {
                            isASCII = false
                            break
                        }
                    }
                    if isASCII {
                        value.withUTF8 { run(scanner, $0, folding: true, &scratch, mark) }
                    } else {
                        var lowered = value.lowercased()
                        lowered.withUTF8 { run(scanner, $0, folding: false, &scratch, mark) }
                    }
                }
                if let scanner = scan.cased {
                    value.withUTF8 { run(scanner, $0, folding: false, &scratch, mark) }
                }
            }
        }
        for direct in directs where scratch.predicateGeneration[Int(direct.predicate)] != generation {
            if direct.fields.contains(where: { holds(direct.test, field: $0, fields) }) {
                mark(direct.predicate, &scratch)
            }
        }
        for rule in alwaysEvaluated where scratch.ruleGeneration[Int(rule)] != generation {
            scratch.ruleGeneration[Int(rule)] = generation
            scratch.candidates.append(rule)
        }
        let marks = scratch.predicateGeneration
        for rule in scratch.candidates {
            if expressions[Int(rule)].evaluate({ marks[Int($0)] == generation }) {
                hit(ruleIDs[Int(rule)])
            }
        }
    }

    /// Scans one value; `folding` means the automaton folds ASCII case itself and `lowered`
    /// must be derived for glob checks.
    @inline(__always)
    private func run(
        _ scanner: Scanner,
        _ bytes: UnsafeBufferPointer<UInt8>,
        folding: Bool,
        _ scratch: inout MatchScratch,
        _ mark: (Int32, inout MatchScratch) -> Void
    ) {
        let n = bytes.count
        var loweredReady = !folding || scanner.cased
        let generation = scratch.generation
        scanner.automaton.scan(bytes) { pattern, end in
            let start = end - Int(scanner.automaton.patternLengths[pattern])
            for entry in scanner.uses[pattern] {
                switch entry.use {
                case .anywhere: mark(entry.predicate, &scratch)
                case .prefix: if start == 0 { mark(entry.predicate, &scratch) }
                case .suffix: if end == n { mark(entry.predicate, &scratch) }
                case .exact: if start == 0 && end == n { mark(entry.predicate, &scratch) }
                case .glob(let pattern):
                    guard scratch.predicateGeneration[Int(entry.predicate)] != generation else { continue }
                    let matched: Bool
                    if loweredReady && !folding {
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

    private func holds(_ test: DirectTest, field: String, _ fields: some SigmaFields) -> Bool {
        let value = fields.value(of: field)
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
            guard let otherValue = fields.value(of: other) else { return false }
            return StringPattern(sigma: otherValue, anchor: anchor, cased: cased, wildcards: false)
                .matches(Array((cased ? value : value.lowercased()).utf8))
        case .glob(let pattern):
            return pattern.matches(Array((pattern.cased ? value : value.lowercased()).utf8))
        case .null, .exists: return false
        }
    }
}
