import Foundation
import FuzzSupport
import VigilCore

/// The query string of `GET /v1/events`: split and percent-decoded as a URI query is, then
/// through `EventQuery.parse`, the validation the collector's route runs (the route only adapts
/// Hummingbird's decoded parameters to it; the HTTP layer itself is attacked by .ci/api-check).
///
/// Invariants: a query is either refused with a message, or accepted with a page size inside
/// the bounds, a valid agent id and a non-negative cursor.
enum QueryTarget: FuzzTarget {
    static let maxLimit = 1_000

    static func seeds() throws -> [[UInt8]] {
        [
            "agent=host-1&type=file,process&rule=6a2f1b5c&since=15m&until=2026-11-28T13:00:00Z&after=42&limit=500",
            "type=alert&limit=1", "since=1764300000&until=7d", "agent=%41%42&rule=%2e%2e%2f", "limit=0", "foo=bar",
            "type=flow&type=file&after=-1", "rule='%20OR%201=1--",
            "level=high,critical&min_level=medium&field=process.Image:/usr/bin/curl&field=flow.resp_p:4444",
            "field=alert.tags:attack.t1105&field=PROCESS.USER:root", "field=process.colour:red", "field=flow.orig_p:x",
            "min_level=HIGH", "level=low,", "field=process.Image:&field=nocolon",
            "order=desc&before=42&limit=50", "before=42", "order=desc&after=1", "order=DESC", "order=desc&before=-5",
        ].map { Array($0.utf8) }
    }

    /// `k=v&k2=v2`, each side percent-decoded (`+` is a space); undecodable text is kept as is.
    static func parameters(_ query: String) -> [(key: String, value: String)] {
        query.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ text: Substring) -> String {
                let spaced = text.replacingOccurrences(of: "+", with: " ")
                return spaced.removingPercentEncoding ?? spaced
            }
            return (key: decode(parts[0]), value: parts.count > 1 ? decode(parts[1]) : "")
        }
    }

    /// An input whose first byte is odd is parsed as `GET /v1/alerts` parses it (`alertsOnly`).
    static func test(_ input: [UInt8]) {
        let pairs = parameters(String(decoding: input, as: UTF8.self))
        let alertsOnly = (input.first ?? 0) & 1 == 1
        do {
            let query = try EventQuery.parse(pairs, maxLimit: maxLimit, alertsOnly: alertsOnly)
            FuzzCheck.require(!alertsOnly || query.types == [.alert], "an alerts query for other types")
            FuzzCheck.require(query.fields.count <= EventQuery.maxFieldFilters, "too many field filters")
            FuzzCheck.require(query.fields.allSatisfy { EventField.all.contains($0.field) }, "a field off the list")
            FuzzCheck.require(
                query.levels.map { $0 == AlertLevel.allCases.filter($0.contains) } ?? true,
                "levels out of order or repeated"
            )
            FuzzCheck.require((1...maxLimit).contains(query.limit), "limit \(query.limit) accepted")
            FuzzCheck.require(
                query.agentId.map(EventQuery.isValidAgentId) ?? true,
                "agent id \(query.agentId ?? "") accepted"
            )
            FuzzCheck.require((query.after ?? 0) >= 0 && (query.before ?? 0) >= 0, "negative cursor accepted")
            FuzzCheck.require(query.after == nil || query.order == .asc, "after accepted with order=desc")
            FuzzCheck.require(query.before == nil || query.order == .desc, "before accepted with order=asc")
            FuzzCheck.require(query.ruleId.map { (1...200).contains($0.utf8.count) } ?? true, "rule id length")
        } catch {
            FuzzCheck.require(!error.message.isEmpty, "refusal without a message")
            FuzzCheck.require(
                EventQuery.parameterNames.contains { error.message.hasPrefix($0 + ":") }
                    || error.message.hasPrefix("unknown query parameter"),
                "a refusal that names no parameter: \(error.message)"
            )
        }
    }
}

@_cdecl("FuzzQuery_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.main(QueryTarget.self, argc, argv)
}
