import Foundation
import GRDB
import Testing
import VigilSQLite

@Suite("Binding values to a prepared statement")
struct StatementBindTests {
    @Test("every storage class round-trips; a wrong count and a failing step throw, and the statement is usable after")
    func roundTrip() throws {
        let queue = try DatabaseQueue()
        try queue.write { db in
            try db.execute(sql: "CREATE TABLE t (i INTEGER, d REAL, s TEXT, b BLOB, n, UNIQUE (i))")
            let insert = try db.makeStatement(sql: "INSERT INTO t VALUES (?, ?, ?, ?, ?), (?, ?, ?, ?, ?)")
            let text = "naïve \u{0} nul, 😀"
            try insert.executeBinding([
                Int64.max.databaseValue, 2.5.databaseValue, text.databaseValue, Data([0, 1, 255]).databaseValue,
                .null,
                1.databaseValue, (-0.0).databaseValue, "".databaseValue, Data().databaseValue, .null,
            ])
            let rows = try Row.fetchAll(
                db,
                sql: "SELECT i, d, s, hex(s) AS sx, b, n, typeof(b) AS bt FROM t ORDER BY i"
            )
            #expect(rows.count == 2)
            #expect(rows[1]["i"] as Int64 == Int64.max)
            #expect(rows[1]["d"] as Double == 2.5)
            // All the bytes, the NUL inside too (GRDB's String reading stops at a NUL; hex does not).
            let hex = text.utf8.map { String(format: "%02X", $0) }.joined()
            #expect(rows[1]["sx"] as String == hex)
            #expect(rows[1]["b"] as Data == Data([0, 1, 255]))
            #expect((rows[1]["n"] as DatabaseValue).isNull)
            #expect(rows[0]["bt"] as String == "blob", "an empty blob is a blob, not NULL")
            #expect(rows[0]["s"] as String == "")

            #expect(throws: DatabaseError.self) { try insert.executeBinding([1.databaseValue]) }
            // A duplicate of i = 1: the constraint fails the step.
            let one: [DatabaseValue] = [1.databaseValue, .null, .null, .null, .null]
            let three: [DatabaseValue] = [3.databaseValue, .null, .null, .null, .null]
            #expect { try insert.executeBinding(one + three) } throws: { error in
                (error as? DatabaseError)?.resultCode == .SQLITE_CONSTRAINT
                    && (error as? DatabaseError)?.message?.contains("UNIQUE") == true
            }
            try insert.executeBinding(
                [4.databaseValue, .null, .null, .null, .null] + three
            )
            #expect(try Int.fetchOne(db, sql: "SELECT count(*) FROM t") == 4)
        }
    }
}
