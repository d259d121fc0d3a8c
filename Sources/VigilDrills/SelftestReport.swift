import Foundation

/// The selftest's output: a table for people, JSON lines for machines.
public enum SelftestReport {
    /// One row per drill, then a summary line.
    public static func table(_ results: [DrillResult]) -> String {
        let header = ["TECHNIQUE", "DRILL", "RULE", "RESULT", "LATENCY"]
        var rows: [[String]] = results.map { r in
            let latency: String
            if let ms = r.latencyMilliseconds {
                latency = "\(ms) ms" + (r.agentLatencyMilliseconds.map { " (agent \($0) ms)" } ?? "")
            } else {
                latency = "-"
            }
            let result =
                switch r.outcome {
                case .detected: "detected"
                case .missed: "MISSED"
                case .failed: "FAILED"
                case .skipped: "skipped"
                }
            return [r.technique, r.drill, r.ruleTitle ?? r.rule, result, latency]
        }
        rows.insert(header, at: 0)
        var widths = [Int](repeating: 0, count: header.count)
        for row in rows {
            for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
        }
        var out = ""
        for row in rows {
            let cells = row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }
            out += cells.joined(separator: "  ") + "\n"
        }
        for r in results where r.error != nil && r.outcome != .detected {
            out += "\(r.drill): \(r.error!)\n"
        }
        out += summary(results) + "\n"
        return out
    }

    /// `N drills: D detected, M missed, F failed, S skipped`.
    public static func summary(_ results: [DrillResult]) -> String {
        func count(_ o: DrillResult.Outcome) -> Int { results.filter { $0.outcome == o }.count }
        var line =
            "\(results.count) drills: \(count(.detected)) detected, \(count(.missed)) missed, \(count(.failed)) failed"
        if count(.skipped) > 0 { line += ", \(count(.skipped)) skipped" }
        return line
    }

    /// One JSON object per drill, one per line.
    public static func jsonLines(_ results: [DrillResult]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return results.map { String(decoding: (try? encoder.encode($0)) ?? Data(), as: UTF8.self) + "\n" }.joined()
    }

    /// The catalog, for `--list`.
    public static func catalog(_ drills: [Drill]) -> String {
        let rows =
            [["TECHNIQUE", "DRILL", "RULE", "WHAT"]]
            + drills.map { [$0.technique, $0.id, $0.rule, $0.name + ($0.needsProfile ? " [drill profile]" : "")] }
        var widths = [Int](repeating: 0, count: 4)
        for row in rows { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
        return rows.map { row in
            row.enumerated().map { i, c in i == 3 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}
