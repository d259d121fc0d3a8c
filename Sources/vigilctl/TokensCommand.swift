import ArgumentParser
import Foundation
import VigilCollector
import VigilCore

struct TokensCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokens",
        abstract: "Enrollment tokens of a collector: create one, list them (the default), or revoke one.",
        discussion: """
            Agents enroll with a token (collector.enroll_token in vigild.yaml). A token created here
            looks like vgl_<id>_<secret>: the id is public (listings, logs, revoke), the secret is
            shown once, at creation; the collector keeps only its SHA-256. A one-time token
            (--once) enrolls one agent; a reusable one any number, until it expires or is revoked.
            An agent that enrolled keeps working when its token is spent, expires or is revoked:
            it re-enrolls with the same key at every start and is answered already_enrolled.

            These routes need VIGIL_API_TOKEN when the collector has an API token (otherwise it
            answers loopback clients only). The collector's --enroll-token keeps working as well:
            a reusable token that never expires and is not listed here.
            """,
        subcommands: [TokensListCommand.self, TokensCreateCommand.self, TokensRevokeCommand.self],
        defaultSubcommand: TokensListCommand.self
    )
}

struct TokensCreateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create an enrollment token; print it (only this once) on standard output.",
        discussion: """
            Standard output gets the token alone, so it can be captured:
              TOKEN=$(vigilctl tokens create --once --expires-in 24h --label web-42 --collector URL)
            What was created is described on standard error (or, with --json, printed as JSON with
            the token in its "token" field). Without --expires-in or --expires-at the token never
            expires; without --once it is reusable.
            """
    )

    @Option(help: ArgumentHelp("The collector's base URL.", valueName: "url"))
    var collector: String

    @Option(help: ArgumentHelp("A note for the listing (at most 200 characters).", valueName: "text"))
    var label = ""

    @Flag(help: "One-time: the token enrolls one agent, then it is spent.")
    var once = false

    @Option(
        help: ArgumentHelp(
            "Expire this long from now: a number with s, m, h or d (90m, 24h, 7d); at most ten years.",
            valueName: "duration"
        )
    )
    var expiresIn: String?

    @Option(
        help: ArgumentHelp(
            "Expire at this time: 2026-12-31T23:59:59Z, 2026-12-31 or epoch seconds.",
            valueName: "time"
        )
    )
    var expiresAt: String?

    @Flag(help: "Print JSON (with the token) instead of the token and a description.")
    var json = false

    func validate() throws {
        _ = try collectorBase(collector)
        if expiresIn != nil, expiresAt != nil {
            throw ValidationError("give --expires-in or --expires-at, not both")
        }
        _ = try expiryFields()
    }

    /// `expires_in` seconds and `expires_at` nanoseconds from the flags.
    func expiryFields() throws -> [String: Any] {
        if let expiresIn {
            guard let seconds = Self.seconds(expiresIn), seconds > 0 else {
                throw ValidationError("--expires-in: '\(expiresIn)' is not a duration like 90m, 24h or 7d")
            }
            return ["expires_in": seconds]
        }
        if let expiresAt {
            // Durations mean "ago" to TimeSpec; here they would be in the past, so refuse them.
            guard let last = expiresAt.last, !"smhd".contains(last), let time = TimeSpec.parse(expiresAt) else {
                throw ValidationError("--expires-at: '\(expiresAt)' is not a time like 2026-12-31T23:59:59Z")
            }
            return ["expires_at": time.nanosecondsSinceEpoch]
        }
        return [:]
    }

    /// Whole seconds of `90s`, `15m`, `24h`, `7d`; nil for anything else or over ten years.
    static func seconds(_ text: String) -> Int64? {
        let units: [String: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        guard let last = text.last, let unit = units[String(last)],
            let n = Int64(text.dropLast()), n >= 0, n <= 10 * 366 * 86_400 / unit
        else { return nil }
        return n * unit
    }

    func run() async throws {
        var fields = try expiryFields()
        fields["label"] = label
        fields["once"] = once
        let data = try await requestJSON(
            try collectorBase(collector) + "/v1/tokens",
            method: .POST,
            body: try JSONSerialization.data(withJSONObject: fields)
        )
        let created = try JSONDecoder().decode(Collector.CreatedToken.self, from: data)
        if json {
            print(try prettyJSON(created))
            return
        }
        print(created.token)
        let info = created.info
        let kind = info.once ? "one-time" : "reusable"
        let expiry = info.expiresAt.map { "expires \($0.iso8601)" } ?? "never expires"
        let label = info.label.isEmpty ? "" : ", label \"\(info.label)\""
        FileHandle.standardError.write(
            Data(
                """
                created enrollment token \(info.id): \(kind), \(expiry)\(label)
                the token above is shown only now (the collector keeps only its hash): put it in the
                agent's vigild.yaml as collector.enroll_token

                """.utf8
            )
        )
    }
}

struct TokensListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List a collector's enrollment tokens: id, label, kind, status, uses, expiry. Never secrets."
    )

    @Option(help: ArgumentHelp("The collector's base URL.", valueName: "url"))
    var collector: String

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func validate() throws { _ = try collectorBase(collector) }

    struct List: Codable {
        var tokens: [Collector.TokenInfo]
    }

    func run() async throws {
        let data = try await getJSON(try collectorBase(collector) + "/v1/tokens")
        let list = try JSONDecoder().decode(List.self, from: data)
        if json {
            print(try prettyJSON(list))
            return
        }
        func day(_ t: Timestamp?, _ none: String) -> String {
            t.map { String($0.iso8601.prefix(16)).replacingOccurrences(of: "T", with: " ") } ?? none
        }
        print(
            "ID            KIND      STATUS   USES  CREATED           EXPIRES           LAST USED         LABEL"
        )
        for t in list.tokens {
            print(
                "\(t.id.padded(13)) \((t.once ? "one-time" : "reusable").padded(9)) \(t.status.rawValue.padded(8)) \(String(t.uses).padded(5)) \(day(t.createdAt, "").padded(17)) \(day(t.expiresAt, "never").padded(17)) \(day(t.lastUsedAt, "never").padded(17)) \(t.label)"
            )
        }
    }
}

struct TokensRevokeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Revoke an enrollment token: it enrolls no new agent from now on.",
        discussion: """
            Agents that enrolled with it stay enrolled (revoke those with vigilctl agents revoke).
            Revoking twice keeps the first time.
            Example: vigilctl tokens revoke 3f2c0a9b1d4e --collector https://collector.example:8443
            """
    )

    @Argument(help: ArgumentHelp("The token's id (from tokens list; the part after vgl_).", valueName: "token-id"))
    var id: String

    @Option(help: ArgumentHelp("The collector's base URL.", valueName: "url"))
    var collector: String

    @Flag(help: "Print the token's fields as JSON.")
    var json = false

    func validate() throws { _ = try collectorBase(collector) }

    func run() async throws {
        let data = try await requestJSON(
            try collectorBase(collector) + "/v1/tokens/\(percentEncode(id))/revoke",
            method: .POST
        )
        let info = try JSONDecoder().decode(Collector.TokenInfo.self, from: data)
        if json {
            print(try prettyJSON(info))
            return
        }
        print("enrollment token \(info.id) revoked at \(info.revokedAt?.iso8601 ?? "?")")
    }
}

private func prettyJSON(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
