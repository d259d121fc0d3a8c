import FuzzSupport
import HummingbirdCore

@testable import VigilCollector

/// The query string of `GET /v1/events`, through the same URI parsing (percent-decoding,
/// repeated keys) and validation the collector's route runs.
///
/// Invariants: a query is either refused with a 400 and a message, or accepted with a page size
/// inside the bounds, a valid agent id and a non-negative cursor.
enum QueryTarget: FuzzTarget {
    static let maxLimit = 1_000

    static func seeds() throws -> [[UInt8]] {
        [
            "agent=host-1&type=file,process&rule=6a2f1b5c&since=15m&until=2026-11-28T13:00:00Z&after=42&limit=500",
            "type=alert&limit=1", "since=1764300000&until=7d", "agent=%41%42&rule=%2e%2e%2f", "limit=0", "foo=bar",
            "type=flow&type=file&after=-1", "rule='%20OR%201=1--",
        ].map { Array($0.utf8) }
    }

    static func test(_ input: [UInt8]) {
        let uri = URI("/v1/events?" + String(decoding: input, as: UTF8.self))
        do {
            let query = try CollectorHTTP.eventQuery(uri.queryParameters, maxLimit: maxLimit)
            FuzzCheck.require((1...maxLimit).contains(query.limit), "limit \(query.limit) accepted")
            FuzzCheck.require(
                query.agentId.map(Collector.isValidAgentId) ?? true,
                "agent id \(query.agentId ?? "") accepted"
            )
            FuzzCheck.require((query.after ?? 0) >= 0, "negative cursor accepted")
        } catch let error as CollectorError {
            FuzzCheck.require(error.code.status == .badRequest, "refused with \(error.code.status), not 400: \(error)")
            FuzzCheck.require(!error.message.isEmpty, "refusal without a message")
        } catch {
            FuzzCheck.require(false, "unexpected error type: \(error)")
        }
    }
}

@_cdecl("FuzzQuery_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.main(QueryTarget.self, argc, argv)
}
