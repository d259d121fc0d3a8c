import ArgumentParser
import Foundation
import VigilCollector
import VigilCore
import VigilWire

struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Re-check the signatures and hash chain of an agent's stored batches.",
        discussion: """
            Fetches every batch the collector stored for the agent, exactly as received, and checks here,
            independently of the collector's own bookkeeping: each Ed25519 signature against the agent's
            key of the time (after key rotations, each rotation statement against the key before it), each body against the SHA-256 in its signed header, each event count and seq
            range, and that every header links to the previous one with no batch missing. Batches
            whose events retention deleted keep their signed headers: those and the links are checked.
            Exits 1 when anything is broken, listing each break.
            Example: vigilctl verify --collector http://127.0.0.1:8443 --agent 3f2c...
            """
    )

    @Option(help: ArgumentHelp("The collector's base URL.", valueName: "url"))
    var collector: String

    @Option(help: ArgumentHelp("The agent whose stream to verify.", valueName: "id"))
    var agent: String

    @Flag(help: "Print a JSON summary.")
    var json = false

    func validate() throws { _ = try collectorBase(collector) }

    func run() async throws {
        let base = try collectorBase(collector)
        var after: UInt64 = 0
        var verifier: ChainVerifier?
        while true {
            let data = try await getJSON(base + "/v1/agents/\(percentEncode(agent))/batches?after=\(after)&limit=500")
            let page = try JSONDecoder().decode(CollectorHTTP.BatchPage.self, from: data)
            if verifier == nil {
                // An agent that rotated its key: each batch against the key that signed it, each
                // rotation statement against the key before.
                if let keys = page.keys, !keys.isEmpty {
                    verifier = ChainVerifier(agentId: agent, keys: keys)
                } else {
                    verifier = ChainVerifier(
                        agentId: agent,
                        publicKey: try AgentIdentity.publicKey(base64: page.publicKey)
                    )
                }
            }
            if page.batches.isEmpty { break }
            for item in page.batches {
                after = item.batchSeq
                guard let header = Data(base64Encoded: item.header),
                    let signature = Data(base64Encoded: item.signature),
                    let body = Data(base64Encoded: item.body)
                else {
                    verifier?.note("batch \(item.batchSeq): stored bytes are not valid base64")
                    continue
                }
                verifier?.check(
                    StoredBatch(
                        batchSeq: item.batchSeq,
                        headerBytes: Array(header),
                        signature: Array(signature),
                        body: Array(body),
                        pruned: item.pruned ?? false
                    )
                )
            }
        }
        guard let verifier else { return }
        let (batches, events, breaks, account) = (verifier.batches, verifier.events, verifier.breaks, verifier.account)
        if json {
            let summary: [String: Any] = [
                "agent_id": agent, "batches": batches, "events": events, "whole": breaks.isEmpty, "breaks": breaks,
                "declared_gaps": account.gapRecords, "dropped_events": account.droppedEvents,
                "pruned_batches": verifier.pruned,
            ]
            print(
                String(
                    decoding: try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys]),
                    as: UTF8.self
                )
            )
        } else {
            print("agent \(agent): \(batches) batch(es), \(events) event(s) checked")
            if verifier.pruned > 0 {
                print(
                    "retention: \(verifier.pruned) batch(es) hold no events any more; their signed headers and links were checked"
                )
            }
            if account.gapRecords > 0 {
                print(
                    "gap: the agent declared \(account.droppedEvents) dropped event(s) in \(account.gapRecords) signed gap record(s)"
                )
            }
            if breaks.isEmpty {
                print("chain whole: every signature, body hash and link verified")
            } else {
                for b in breaks { print("BREAK: \(b)") }
            }
        }
        if !breaks.isEmpty { throw ExitCode(1) }
    }
}
