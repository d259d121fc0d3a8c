import ArgumentParser
import Foundation
import VigilCollector
import VigilWire

struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Create an agent identity: an agent id and an Ed25519 signing key (file mode 0600).",
        discussion: """
            vigild creates its key on first start if none exists; use keygen to provision it ahead of time
            (e.g. from configuration management) or to learn the public key to pre-register.
            Example: vigilctl keygen --out /var/lib/vigil/agent.key
            """
    )

    @Option(help: ArgumentHelp("Where to write the key file. Refuses to overwrite an existing one.", valueName: "path"))
    var out: String

    @Option(help: ArgumentHelp("The agent id to use (default: a random UUID).", valueName: "id"))
    var agentId: String?

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        var identity = AgentIdentity.generate()
        if let agentId {
            guard Collector.isValidAgentId(agentId) else {
                throw ValidationError("--agent-id must be 1-64 characters of [A-Za-z0-9._-]")
            }
            identity = AgentIdentity(agentId: agentId, privateKey: identity.privateKey)
        }
        do {
            try identity.save(to: out)
        } catch {
            throw CommandFailure(error.message)
        }
        if json {
            print(
                "{\"agent_id\":\"\(identity.agentId)\",\"key_id\":\"\(identity.keyId)\",\"public_key\":\"\(identity.publicKeyBase64)\",\"path\":\"\(out)\"}"
            )
        } else {
            print("agent id    \(identity.agentId)")
            print("key id      \(identity.keyId)")
            print("public key  \(identity.publicKeyBase64)")
            print("written to  \(out) (mode 0600)")
        }
    }
}
