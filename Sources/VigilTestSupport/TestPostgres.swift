import Foundation
import Testing

/// The PostgreSQL server the tests use: `VIGIL_TEST_POSTGRES_URL`, by default
/// `postgres://vigil:vigil@127.0.0.1:5432/vigil_test` (what `.ci/postgres` sets up). Each test
/// gets a database of its own, created through `psql` and dropped afterwards.
public enum TestPostgres {
    public static let defaultURL = "postgres://vigil:vigil@127.0.0.1:5432/vigil_test"

    /// The server's admin URL: its role may create databases.
    public static var url: String {
        let value = ProcessInfo.processInfo.environment["VIGIL_TEST_POSTGRES_URL"] ?? ""
        return value.isEmpty ? defaultURL : value
    }

    static let psql = "/usr/bin/psql"

    /// Why PostgreSQL cannot be used for tests, or nil when it can.
    public static func unavailableReason() async -> String? {
        guard FileManager.default.isExecutableFile(atPath: psql) else {
            return "psql is not installed (run .ci/deps, which installs and starts PostgreSQL)"
        }
        do {
            let result = try await runCommand(psql, ["-X", "-q", "-tA", url, "-c", "SELECT 1"], timeout: .seconds(20))
            if result.status == 0 { return nil }
            return
                "PostgreSQL at \(redacted(url)) is not reachable (\(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))); run .ci/postgres or set VIGIL_TEST_POSTGRES_URL"
        } catch {
            return "cannot run psql: \(error)"
        }
    }

    /// Runs SQL as the test role on the database at `url` (the admin database by default).
    @discardableResult
    public static func run(_ sql: String, on databaseURL: String? = nil) async throws -> String {
        let result = try await runCommand(
            psql,
            ["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", databaseURL ?? url, "-c", sql],
            timeout: .seconds(60)
        )
        guard result.status == 0 else {
            throw TestPostgresError(message: "psql failed (\(result.status)) on \(sql): \(result.stderr)")
        }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Creates an empty database and returns its URL (same server and role).
    public static func createDatabase() async throws -> TestDatabase {
        let name = "vigil_t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        try await run("CREATE DATABASE \(name)")
        guard var components = URLComponents(string: url) else {
            throw TestPostgresError(message: "VIGIL_TEST_POSTGRES_URL is not a URL")
        }
        components.path = "/" + name
        guard let databaseURL = components.string else {
            throw TestPostgresError(message: "cannot build a URL for \(name)")
        }
        return TestDatabase(name: String(name), url: databaseURL)
    }

    /// A fresh database for the current test; without a server, the test is cancelled with the
    /// reason, and under `CI=true` it fails instead.
    public static func requireDatabase() async throws -> TestDatabase {
        if let reason = await unavailableReason() {
            if TestEnvironment.isCI {
                Issue.record("CI must have PostgreSQL: \(reason)")
                throw TestPostgresError(message: reason)
            }
            print("skipping a PostgreSQL test: \(reason)")
            try Test.cancel("PostgreSQL is not available: \(reason)")
        }
        return try await createDatabase()
    }

    static func redacted(_ text: String) -> String {
        guard var components = URLComponents(string: text), components.password != nil else { return text }
        components.password = "***"
        return components.string ?? text
    }
}

/// A database made for one test. `drop()` removes it, closing its connections.
public struct TestDatabase: Sendable {
    public let name: String
    /// `postgres://USER:PASSWORD@HOST:PORT/NAME`: what `--store` takes.
    public let url: String

    public func drop() async {
        _ = try? await TestPostgres.run("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    /// Runs SQL in this database (for checks behind the collector's back).
    @discardableResult
    public func run(_ sql: String) async throws -> String {
        try await TestPostgres.run(sql, on: url)
    }
}

public struct TestPostgresError: Error, CustomStringConvertible {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}
