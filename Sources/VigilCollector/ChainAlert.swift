import Foundation
import VigilCore

/// The alert the collector stores beside every chain anomaly it records (gap, broken, reordered,
/// fork, seq_gap, duplicate_seq), so possible tampering shows wherever alerts do: `GET
/// /v1/alerts`, `GET /v1/events?type=alert`, `vigilctl alerts`, the dashboard, the live tail and
/// exports.
///
/// The agent did not sign it: its `origin` is `collector` (a field the wire format does not
/// carry, so no agent can forge it), its author `vigil-collector`, its rule id `vigil-chain-…`.
///
/// Keying: events are unique on `(agent_id, seq)` and an agent's seqs start at 1. A collector
/// alert is stored with `seq = -(id of its chain_anomalies row)`, a negative number no agent seq
/// can take and unique per store, while its JSON says seq 0. Everything that reads the `seq`
/// column therefore leaves it alone: seq accounting (`SeqAccount`) runs on the batch's own events
/// and the agent's stored counters, never on `max(seq)`; retention prunes a batch only by the
/// positive seqs of its range; `vigilctl verify` re-reads batches, not events; the agent's event
/// count does not include it.
///
/// Levels: a fork (two different batches signed with one sequence number: a cloned or restored
/// agent, or a stolen key) is `critical`, nothing benign explains it; a broken link (right
/// number, wrong history) and reused event seqs are `high`; missing batches or events are
/// `medium`, since a lost spool or a network fault explain them as well as deletion in transit;
/// a reordered batch is `low`: it fills a gap that was already raised, and retries across
/// several collectors cause it.
public enum ChainAlert {
    /// `Alert.origin` of the collector's own alerts.
    public static let origin = "collector"
    /// `Alert.author` of the collector's own alerts.
    public static let author = "vigil-collector"

    /// Rule id, title, level and tags for an anomaly kind; nil for a kind with no alert.
    public static func rule(for kind: String) -> (id: String, title: String, level: String, tags: [String])? {
        let chain = ["vigil.chain", "vigil.collector"]
        switch kind {
        case "fork":
            return (
                "vigil-chain-fork", "Hash chain fork: two different batches with one sequence number", "critical",
                chain + ["attack.impact", "attack.t1565.002"]
            )
        case "broken":
            return (
                "vigil-chain-broken", "Hash chain broken: batch does not link to the stored chain", "high",
                chain + ["attack.impact", "attack.t1565.002"]
            )
        case "duplicate_seq":
            return (
                "vigil-chain-duplicate-seq", "Event sequence numbers reused across batches", "high",
                chain + ["attack.impact", "attack.t1565.002"]
            )
        case "gap":
            return (
                "vigil-chain-gap", "Hash chain gap: batches missing (possible tampering)", "medium",
                chain + ["attack.defense_evasion", "attack.t1562.006"]
            )
        case "seq_gap":
            return (
                "vigil-chain-seq-gap", "Events missing with no gap record (possible tampering)", "medium",
                chain + ["attack.defense_evasion", "attack.t1562.006"]
            )
        case "reordered":
            return ("vigil-chain-reordered", "Batch arrived out of order", "low", chain)
        default:
            return nil
        }
    }

    /// The alert event for an anomaly, with seq 0; nil for a kind with no alert.
    public static func event(kind: String, batchSeq: UInt64, detail: String, at time: Timestamp) -> Event? {
        guard let rule = rule(for: kind) else { return nil }
        return Event(
            seq: 0,
            time: time,
            payload: .alert(
                Alert(
                    ruleId: rule.id,
                    title: rule.title,
                    level: rule.level,
                    tags: rule.tags,
                    author: author,
                    origin: origin,
                    detail: "batch \(batchSeq): \(detail)"
                )
            )
        )
    }

    /// The row an anomaly adds to `events`: its JSON, rule id and level; nil for a kind with no alert.
    static func row(
        kind: String,
        batchSeq: UInt64,
        detail: String,
        at time: Timestamp
    ) -> (
        json: String, ruleId: String, level: String
    )? {
        guard let event = event(kind: kind, batchSeq: batchSeq, detail: detail, at: time),
            case .alert(let alert) = event.payload
        else { return nil }
        return (event.sortedKeysJSON, alert.ruleId, alert.level)
    }
}

extension Alert {
    /// Raised by the collector (a chain anomaly), not by a rule on the agent.
    public var isCollectorGenerated: Bool { origin == ChainAlert.origin }
}
