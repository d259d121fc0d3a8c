import GRDB
import GRDBSQLite

extension Statement {
    /// Binds `values` to the statement's parameters, in order, and runs it to completion, through
    /// SQLite's C API on the statement GRDB prepared.
    ///
    /// For the hot multi-row INSERTs of the agent's spool and the collector's SQLite store:
    /// `execute(arguments: StatementArguments(values))` maps every value through a key path
    /// when it builds the arguments, then validates and copies them again, which took a tenth
    /// of the collector's CPU under ingest. Strings and blobs are copied by SQLite
    /// (`SQLITE_TRANSIENT`), as GRDB does for statements with many parameters. Runs inside the
    /// caller's transaction; throws `DatabaseError` with SQLite's message when a step fails
    /// (a constraint, say), after which the statement is reset and can be used again.
    public func executeBinding(_ values: [DatabaseValue]) throws {
        let statement = sqliteStatement
        sqlite3_reset(statement)
        sqlite3_clear_bindings(statement)
        let expected = Int(sqlite3_bind_parameter_count(statement))
        guard values.count == expected else {
            throw DatabaseError(
                resultCode: .SQLITE_MISUSE,
                message: "\(values.count) values for \(expected) parameters",
                sql: sql
            )
        }
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        for (offset, value) in values.enumerated() {
            let index = CInt(offset + 1)
            let code: CInt
            switch value.storage {
            case .null:
                code = sqlite3_bind_null(statement, index)
            case .int64(let number):
                code = sqlite3_bind_int64(statement, index, number)
            case .double(let number):
                code = sqlite3_bind_double(statement, index, number)
            case .string(var text):
                code = text.withUTF8 { bytes in
                    sqlite3_bind_text(statement, index, bytes.baseAddress, CInt(bytes.count), transient)
                }
            case .blob(let data):
                code = data.withUnsafeBytes { bytes in
                    // A non-null pointer even for an empty blob: null would bind NULL.
                    sqlite3_bind_blob(
                        statement,
                        index,
                        bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1),
                        CInt(bytes.count),
                        transient
                    )
                }
            }
            guard code == SQLITE_OK else { throw failure(code) }
        }
        var code = sqlite3_step(statement)
        while code == SQLITE_ROW { code = sqlite3_step(statement) }
        guard code == SQLITE_DONE else {
            let error = failure(code)
            sqlite3_reset(statement)
            throw error
        }
        sqlite3_reset(statement)
        sqlite3_clear_bindings(statement)
    }

    private func failure(_ code: CInt) -> DatabaseError {
        DatabaseError(
            resultCode: ResultCode(rawValue: code),
            message: String(cString: sqlite3_errmsg(sqlite3_db_handle(sqliteStatement))),
            sql: sql
        )
    }
}
