import Foundation
import VigilCore
import VigilWire

/// The rule both stores apply to a verified rotation statement, under the agent's row lock,
/// given the agent's keys (oldest first, the current one last).
enum KeyRotationRule {
    enum Verdict {
        case rotate
        /// This statement was taken before: answer as then, change nothing.
        case already
        case refuse(CollectorError)
    }

    static func judge(_ statement: KeyRotation, keys: [AgentKeyRecord]) -> Verdict {
        guard let current = keys.last else {
            return .refuse(CollectorError(.unknownAgent, "agent \(statement.agentId) is not enrolled"))
        }
        let retired = keys.dropLast()
        if current.keyId == statement.newKeyId {
            if current.rotation?.oldKeyId == statement.oldKeyId {
                return .already
            }
            return .refuse(
                CollectorError(.keyReused, "key \(statement.newKeyId) is already agent \(statement.agentId)'s key")
            )
        }
        if current.keyId != statement.oldKeyId {
            if let old = retired.first(where: { $0.keyId == statement.oldKeyId }) {
                return .refuse(
                    CollectorError(
                        .keyRetired,
                        "key \(statement.oldKeyId) was retired at \(old.retiredAt?.iso8601 ?? "?"); agent \(statement.agentId)'s key is now \(current.keyId), and only it can rotate (a replayed or stale statement)"
                    )
                )
            }
            return .refuse(
                CollectorError(
                    .unknownKey,
                    "old_key_id \(statement.oldKeyId) is not a key of agent \(statement.agentId) (its key is \(current.keyId))"
                )
            )
        }
        if let used = retired.first(where: { $0.keyId == statement.newKeyId }) {
            return .refuse(
                CollectorError(
                    .keyReused,
                    "key \(statement.newKeyId) was agent \(statement.agentId)'s key before (retired at \(used.retiredAt?.iso8601 ?? "?")); rotate to a new key"
                )
            )
        }
        return .rotate
    }
}

extension KeyRotation {
    /// The statement as the stores keep it (JSON, sorted keys).
    func encodedJSON() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// A stored statement; nil for none (or one that cannot be read, which the verifier reports).
    static func decoded(_ json: String?) -> KeyRotation? {
        guard let json else { return nil }
        return try? JSONDecoder().decode(KeyRotation.self, from: Data(json.utf8))
    }
}
