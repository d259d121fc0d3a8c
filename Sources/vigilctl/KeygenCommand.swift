import ArgumentParser
import Foundation
import VigilCollector
import VigilWire

struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Create an agent identity (agent id and Ed25519 signing key, file mode 0600), or rotate its key.",
        discussion: """
            vigild creates its key on first start if none exists; use keygen to provision it ahead of time
            (e.g. from configuration management) or to learn the public key to pre-register.
            Example: vigilctl keygen --out /var/lib/vigil/agent.key

            --rotate KEYFILE makes a new key for that identity and a rotation statement signed by the
            current key (and by the new one), written to KEYFILE.next (mode 0600); KEYFILE is left as it
            is. The running agent notices the file within a second or so (or at its next start), sends
            what it already sealed with the old key, presents the statement to the collector
            (POST /v1/agents/ID/keys) and, once the collector took it, installs the new key over
            KEYFILE and signs every later batch with it. The collector refuses batches signed with the
            retired key from then on; the hash chain goes on unbroken.
            Example: vigilctl keygen --rotate /var/lib/vigil/agent.key
            """
    )

    @Option(help: ArgumentHelp("Where to write the key file. Refuses to overwrite an existing one.", valueName: "path"))
    var out: String?

    @Option(
        help: ArgumentHelp(
            "Rotate the key of this identity file: write a new key and its signed statement to PATH.next.",
            valueName: "path"
        )
    )
    var rotate: String?

    @Option(help: ArgumentHelp("The agent id to use (default: a random UUID).", valueName: "id"))
    var agentId: String?

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard (out == nil) != (rotate == nil) else { throw ValidationError("give either --out or --rotate") }
        if rotate != nil, agentId != nil {
            throw ValidationError("--rotate keeps the identity's agent id; drop --agent-id")
        }
    }

    func run() throws {
        if let rotate { return try rotateKey(rotate) }
        guard let out else { return }
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

    private func rotateKey(_ path: String) throws {
        let pendingPath = PendingKeyRotation.path(forKeyAt: path)
        let pending: PendingKeyRotation
        do {
            let current = try AgentIdentity.load(from: path)
            if let waiting = try PendingKeyRotation.load(from: pendingPath) {
                throw CommandFailure(
                    "\(pendingPath): a rotation to key \(waiting.identity.keyId) is already waiting for the agent to present it"
                )
            }
            pending = try PendingKeyRotation.make(rotating: current)
            try pending.save(to: pendingPath)
        } catch let error as WireError {
            throw CommandFailure(error.message)
        }
        let statement = pending.statement
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(statement), as: UTF8.self))
        } else {
            print("agent id      \(statement.agentId)")
            print("old key id    \(statement.oldKeyId)")
            print("new key id    \(statement.newKeyId)")
            print("new key       \(statement.newPublicKey)")
            print("written to    \(pendingPath) (mode 0600); the agent presents it to the collector and then switches")
        }
    }
}
