import FuzzSupport
import VigilPolicy

// AgentConfiguration.swift here is a symbolic link to the agent's own file
// (Sources/VigilAgent/AgentConfiguration.swift): the same parser, compiled without the agent's
// HTTP client and server stack, which keeps the sanitized fuzz build short.

/// The agent's `vigild.yaml` and the policy's `collection.yaml`. Input: one byte choosing which
/// (even: agent configuration, odd: collection settings), then the YAML text.
///
/// Invariants: a refusal names the file and a line and column inside the text; an accepted
/// agent configuration has absolute state and policy directories and an http(s) collector URL.
enum ConfigTarget: FuzzTarget {
    static let file = "/etc/vigil/fuzz.yaml"

    static func seeds() throws -> [[UInt8]] {
        let agent = """
            collector:
              url: [http://127.0.0.1:8440, https://backup.example:8443/]
              enroll_token: abc
            state_dir: ../state
            policies_dir: policies
            log_level: debug
            shipping: {batch_max_events: 500, batch_max_bytes: 65536, batch_max_age_ms: 250}
            spool: {max_bytes: 1048576}
            sandbox: {enabled: true, default_action: eperm}
            """
        var seeds: [[UInt8]] = [[0] + Array(agent.utf8)]
        for path in [FuzzPaths.repository + "/Policies/collection.yaml"] {
            if let text = FuzzPaths.contents(path) { seeds.append([1] + text) }
        }
        seeds.append(
            [1]
                + Array(
                    "files:\n  watch: [/etc, relative]\n  exclude: ['*.swp']\nnetwork:\n  interface: lo\n  snap_length: 96\n"
                        .utf8
                )
        )
        return seeds
    }

    static func test(_ input: [UInt8]) {
        guard let selector = input.first else { return }
        let text = String(decoding: input.dropFirst(), as: UTF8.self)
        // YAML's line breaks: LF, CR LF, and a lone CR.
        let bytes = Array(text.utf8)
        let lines =
            1
            + bytes.indices.filter {
                bytes[$0] == 0x0a || (bytes[$0] == 0x0d && $0 + 1 < bytes.count && bytes[$0 + 1] != 0x0a)
            }.count
        func check(_ error: PolicyError) {
            FuzzCheck.require(error.file == file, "error names \(error.file), not the file")
            FuzzCheck.require(
                error.line >= 1 && error.line <= lines + 1 && error.column >= 1,
                "error at \(error.line):\(error.column) outside the text of \(lines) lines: \(error)"
            )
        }
        if selector % 2 == 0 {
            do {
                let config = try AgentConfiguration.parse(yaml: text, file: file)
                FuzzCheck.require(
                    config.stateDirectory.hasPrefix("/") && config.policiesDirectory.hasPrefix("/"),
                    "relative directories accepted: \(config)"
                )
                FuzzCheck.require(
                    config.collectorURL.hasPrefix("http://") || config.collectorURL.hasPrefix("https://"),
                    "collector URL \(config.collectorURL)"
                )
            } catch {
                check(error)
            }
        } else {
            do {
                _ = try CollectionSettings.parse(yaml: text, file: file)
            } catch {
                check(error)
            }
        }
    }
}

@_cdecl("FuzzConfig_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.main(ConfigTarget.self, argc, argv)
}
