import ArgumentParser
import Foundation
import VigilPolicy

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Validate Sigma policies and test them against recorded events.",
        subcommands: [PolicyCheckCommand.self, PolicyTestCommand.self]
    )
}

struct PolicyCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate rule files: file:line:column errors and a summary of the rules loaded.",
        discussion: """
            Reads every .yml/.yaml file under the given files and directories (collection.yaml is skipped).
            A rule Vigil cannot evaluate (e.g. logsource service auditd) is listed as not applicable with
            the reason. Exits 1 when any file has an error.
            Example: vigilctl policy check /etc/vigil/policies/rules
            """
    )

    @Argument(help: ArgumentHelp("Rule files or directories.", valueName: "path"))
    var paths: [String]

    @Flag(help: "Print one JSON object: files, loaded, applicable, not_applicable, errors.")
    var json = false

    func validate() throws {
        if paths.isEmpty { throw ValidationError("give at least one rule file or directory") }
    }

    func run() throws {
        let report = PolicyLoader.load(paths: paths).report
        if json {
            print(jsonLine(CheckSummary(report)))
        } else {
            for error in report.errors { printError(error.description) }
            let notApplicable = report.notApplicable
            print(
                "\(report.files.count) files: \(report.rules.count) rules loaded, \(report.applicable.count) applicable, "
                    + "\(notApplicable.count) not applicable, \(report.errors.count) errors"
            )
            let byReason = Dictionary(grouping: notApplicable, by: { $0.notApplicableReason ?? "" })
            for (reason, rules) in byReason.sorted(by: { ($0.value.count, $1.key) > ($1.value.count, $0.key) }) {
                print("  \(rules.count) not applicable: \(reason)")
                for rule in rules { print("    \(rule.id)  \(rule.file):\(rule.line)") }
            }
        }
        if !report.errors.isEmpty { throw ExitCode(1) }
    }
}

struct PolicyTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Run rules over recorded events (JSON lines) and print or check the matches.",
        discussion: """
            Each event line is a JSON object of Sigma field names plus "category", e.g.
              {"category":"process_creation","Image":"/usr/bin/curl","CommandLine":"curl -o /tmp/x http://..."}
            Matches print as LINE: RULE-ID TITLE, or with --json as {"event": LINE, "rule": "ID", "title": "..."}.
            --expect takes the same JSON lines and exits 1 on any difference, printing it.
            vigil exceptions apply; rate limits and suppression do not.
            """
    )

    @Argument(help: ArgumentHelp("The policies directory (or a rule file).", valueName: "dir"))
    var directory: String

    @Option(help: ArgumentHelp("Events, one JSON object per line.", valueName: "file"))
    var events: String

    @Option(help: ArgumentHelp("Expected matches, one {\"event\": N, \"rule\": \"ID\"} per line.", valueName: "file"))
    var expect: String?

    @Flag(help: "Print one JSON object per match.")
    var json = false

    func run() throws {
        let policy: PolicySet
        do {
            policy = try PolicySet.load(directory: directory).0
        } catch {
            for e in error.errors { printError(e.description) }
            throw ExitCode(1)
        }
        let matches: [PolicyTest.Match]
        var expected: [PolicyTest.Match]?
        do {
            matches = PolicyTest.run(policy, events: try PolicyTest.parseEvents(try readText(events), file: events))
            if let expect { expected = try PolicyTest.parseMatches(try readText(expect), file: expect) }
        } catch {
            printError(error.description)
            throw ExitCode(1)
        }
        for match in matches {
            print(json ? jsonLine(match) : "\(events):\(match.event): \(match.rule) \(match.title ?? "")")
        }
        guard let expected else { return }
        let difference = PolicyTest.compare(expected: expected, actual: matches)
        for m in difference.missing {
            printError("missing: event \(m.event) rule \(m.rule)\(m.title.map { " (\($0))" } ?? "")")
        }
        for m in difference.unexpected { printError("unexpected: event \(m.event) rule \(m.rule) (\(m.title ?? ""))") }
        if !difference.isEmpty {
            printError("\(difference.missing.count) missing, \(difference.unexpected.count) unexpected")
            throw ExitCode(1)
        }
    }

    private func readText(_ path: String) throws(PolicyError) -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PolicyError(file: path, line: 1, column: 1, message: "cannot read file")
        }
        return String(decoding: data, as: UTF8.self)
    }
}

/// The `--json` form of `policy check`.
private struct CheckSummary: Encodable {
    struct NotApplicable: Encodable {
        var id: String
        var title: String
        var file: String
        var reason: String
    }

    struct Located: Encodable {
        var file: String
        var line: Int
        var column: Int
        var message: String
    }

    var files: Int
    var loaded: Int
    var applicable: Int
    var not_applicable: [NotApplicable]
    var errors: [Located]

    init(_ report: PolicyReport) {
        files = report.files.count
        loaded = report.rules.count
        applicable = report.applicable.count
        not_applicable = report.notApplicable.map {
            NotApplicable(id: $0.id, title: $0.title, file: $0.file, reason: $0.notApplicableReason ?? "")
        }
        errors = report.errors.map { Located(file: $0.file, line: $0.line, column: $0.column, message: $0.message) }
    }
}

private func jsonLine(_ value: some Encodable) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
}

private func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
