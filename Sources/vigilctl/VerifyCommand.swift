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
            enrolled key, each body against the SHA-256 in its signed header, each event count and seq
            range, and that every header links to the previous one with no batch missing.
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
        var prevHash: [UInt8]? = nil
        var expectedSeq: UInt64 = 1
        var nextEventSeq: UInt64? = nil
        var batches = 0
        var events = 0
        var breaks: [String] = []
        // Every event seq is stored or inside a gap record's declared range.
        var account = SeqAccount()
        let zstd = Zstd()
        while true {
            let data = try await getJSON(base + "/v1/agents/\(percentEncode(agent))/batches?after=\(after)&limit=500")
            let page = try JSONDecoder().decode(CollectorHTTP.BatchPage.self, from: data)
            let key = try AgentIdentity.publicKey(base64: page.publicKey)
            if page.batches.isEmpty { break }
            for item in page.batches {
                after = item.batchSeq
                batches += 1
                guard let header = Data(base64Encoded: item.header),
                    let signature = Data(base64Encoded: item.signature),
                    let body = Data(base64Encoded: item.body)
                else {
                    breaks.append("batch \(item.batchSeq): stored bytes are not valid base64")
                    continue
                }
                let envelope = SealedBatch.envelope(
                    headerBytes: Array(header),
                    signature: Array(signature),
                    body: Array(body)
                )
                do {
                    let batch = try BatchOpener.parse(envelope, limits: BatchLimits(maxBatchBytes: Int.max))
                    if batch.header.agentId != agent {
                        breaks.append("batch \(item.batchSeq): header names agent \(batch.header.agentId)")
                    }
                    if batch.header.batchSeq != item.batchSeq {
                        breaks.append("batch \(item.batchSeq): header says batch \(batch.header.batchSeq)")
                    }
                    if batch.header.batchSeq != expectedSeq {
                        breaks.append(
                            batch.header.batchSeq > expectedSeq
                                ? "batches \(expectedSeq)-\(batch.header.batchSeq - 1) are missing"
                                : "batch \(batch.header.batchSeq) is out of order"
                        )
                    } else if batch.header.prevHeaderHash != (prevHash ?? genesisHeaderHash) {
                        breaks.append(
                            "batch \(batch.header.batchSeq) does not link to batch \(expectedSeq - 1) (chain broken)"
                        )
                    }
                    let inOrder = batch.header.batchSeq == expectedSeq
                    let decoded = try BatchOpener.verify(batch, publicKey: key, zstd: zstd)
                    if let missing = account.admit(
                        firstSeq: batch.header.firstSeq,
                        lastSeq: batch.header.lastSeq,
                        events: decoded,
                        inOrder: inOrder
                    ) {
                        breaks.append("batch \(batch.header.batchSeq): \(missing)")
                    }
                    if let next = nextEventSeq, let first = decoded.first?.seq, first < next {
                        breaks.append("batch \(batch.header.batchSeq) repeats event seqs from \(first)")
                    }
                    events += decoded.count
                    nextEventSeq = decoded.last.map { $0.seq + 1 } ?? nextEventSeq
                    prevHash = batch.headerHash
                    expectedSeq = batch.header.batchSeq + 1
                } catch {
                    breaks.append("batch \(item.batchSeq): \(error)")
                    expectedSeq = item.batchSeq + 1
                    prevHash = nil
                }
            }
        }
        if json {
            let summary: [String: Any] = [
                "agent_id": agent, "batches": batches, "events": events, "whole": breaks.isEmpty, "breaks": breaks,
                "declared_gaps": account.gapRecords, "dropped_events": account.droppedEvents,
            ]
            print(
                String(
                    decoding: try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys]),
                    as: UTF8.self
                )
            )
        } else {
            print("agent \(agent): \(batches) batch(es), \(events) event(s) checked")
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
