import VigilCore

extension Collector {
    /// One page of a query, as `GET /v1/events` and `GET /v1/alerts` serve it.
    public struct QueryPage: Sendable, Hashable {
        /// The matching events in the query's order.
        public var events: [StoredEvent]
        /// The cursor of the next page (`after` for `order=asc`, `before` for `order=desc`); nil
        /// when nothing more matches now.
        public var nextCursor: Int64?

        public init(events: [StoredEvent], nextCursor: Int64?) {
            self.events = events
            self.nextCursor = nextCursor
        }
    }

    /// One page of `query`, as read.
    ///
    /// ## Paging near the head on PostgreSQL
    ///
    /// On PostgreSQL, event ids come from a sequence when a row is inserted, not when its
    /// transaction commits: an ingest holding id 10 may commit after id 11 is visible, and a
    /// client paging on with `after=11` never sees 10. Pages are nevertheless served as read:
    /// clamping them to the live tail's horizon (`LiveTail`) was tried, and since that horizon is
    /// cluster-wide (any transaction left open anywhere on the server holds it back), pages came
    /// back short or empty for as long as some unrelated transaction stayed open. A client that
    /// must see every row exactly once follows `GET /v1/events/stream`, which waits for the
    /// horizon instead; pages over rows older than a second or so are exact. SQLite has one
    /// writer, so its ids become visible in order and pages are always exact.
    public func page(_ query: EventQuery) async throws -> QueryPage {
        let events = try await store.events(query)
        return QueryPage(events: events, nextCursor: events.count == query.limit ? events.last?.id : nil)
    }
}
