import Crypto
import Foundation
import VigilCore

/// A key rotation statement: the agent's signing key changes from the key `oldKeyId` to
/// `newPublicKey`, signed by the OLD key (so only the holder of the enrolled key can rotate it)
/// and also by the new one (proof that the agent holds it).
///
/// Both signatures cover the same canonical text (`signedText`): one `name:value` line each for
/// `agent_id`, `old_key_id`, `new_public_key`, `new_key_id` and `time`, after the line
/// `vigil key rotation v1`. None of the values may hold a line break, so the text is unambiguous.
/// On the wire (`POST /v1/agents/ID/keys`) and in the agent's pending-rotation file it is JSON
/// with those names plus `signature` and `new_key_signature` (base64 of the 64-byte Ed25519
/// signatures).
public struct KeyRotation: Sendable, Codable, Hashable {
    public var agentId: String
    public var oldKeyId: String
    /// Base64 of the 32 raw bytes of the new Ed25519 public key.
    public var newPublicKey: String
    public var newKeyId: String
    /// When the statement was made (RFC 3339, UTC), as the agent's clock said.
    public var time: String
    /// Base64 Ed25519 signature of `signedText` by the old key.
    public var signature: String
    /// Base64 Ed25519 signature of `signedText` by the new key.
    public var newKeySignature: String

    enum CodingKeys: String, CodingKey {
        case agentId = "agent_id"
        case oldKeyId = "old_key_id"
        case newPublicKey = "new_public_key"
        case newKeyId = "new_key_id"
        case time
        case signature
        case newKeySignature = "new_key_signature"
    }

    public init(
        agentId: String,
        oldKeyId: String,
        newPublicKey: String,
        newKeyId: String,
        time: String,
        signature: String,
        newKeySignature: String
    ) {
        self.agentId = agentId
        self.oldKeyId = oldKeyId
        self.newPublicKey = newPublicKey
        self.newKeyId = newKeyId
        self.time = time
        self.signature = signature
        self.newKeySignature = newKeySignature
    }

    /// A statement moving `old` to `new` (same agent id), signed by both.
    public static func make(
        from old: AgentIdentity,
        to new: AgentIdentity,
        at time: Timestamp = .now()
    ) throws(WireError) -> KeyRotation {
        guard old.agentId == new.agentId else {
            throw WireError(.badKey, "a rotation keeps the agent id: \(old.agentId) vs \(new.agentId)")
        }
        guard old.keyId != new.keyId else { throw WireError(.badKey, "the new key is the old key") }
        var statement = KeyRotation(
            agentId: old.agentId,
            oldKeyId: old.keyId,
            newPublicKey: new.publicKeyBase64,
            newKeyId: new.keyId,
            time: time.iso8601,
            signature: "",
            newKeySignature: ""
        )
        let text = Data(statement.signedText.utf8)
        do {
            statement.signature = try old.privateKey.signature(for: text).base64EncodedString()
            statement.newKeySignature = try new.privateKey.signature(for: text).base64EncodedString()
        } catch {
            throw WireError(.badKey, "cannot sign the rotation statement: \(error)")
        }
        return statement
    }

    /// The text both signatures cover.
    public var signedText: String {
        "vigil key rotation v1\nagent_id:\(agentId)\nold_key_id:\(oldKeyId)\nnew_public_key:\(newPublicKey)\n"
            + "new_key_id:\(newKeyId)\ntime:\(time)\n"
    }

    /// The new key, once the statement's own fields agree with each other: every field present
    /// and on one line, `new_key_id` the id of `new_public_key`, the new key's signature valid.
    /// The old key's signature is checked by `verify(oldKey:)`.
    public func newKey() throws(WireError) -> Curve25519.Signing.PublicKey {
        for (name, value) in [
            ("agent_id", agentId), ("old_key_id", oldKeyId), ("new_public_key", newPublicKey),
            ("new_key_id", newKeyId), ("time", time),
        ] {
            guard !value.isEmpty, value.count <= 128, !value.contains(where: \.isNewline) else {
                throw WireError(.badKey, "rotation statement: \(name) must be 1-128 characters on one line")
            }
        }
        let key = try AgentIdentity.publicKey(base64: newPublicKey)
        guard AgentIdentity.keyId(for: key) == newKeyId else {
            throw WireError(.badKey, "rotation statement: new_key_id is not the id of new_public_key")
        }
        guard newKeyId != oldKeyId else { throw WireError(.badKey, "rotation statement: the new key is the old key") }
        guard let signature = Data(base64Encoded: newKeySignature),
            key.isValidSignature(signature, for: Data(signedText.utf8))
        else {
            throw WireError(.badSignature, "rotation statement: new_key_signature is not the new key's signature")
        }
        return key
    }

    /// Checks the whole statement against the key it claims to retire; returns the new key.
    public func verify(oldKey: Curve25519.Signing.PublicKey) throws(WireError) -> Curve25519.Signing.PublicKey {
        let key = try newKey()
        guard AgentIdentity.keyId(for: oldKey) == oldKeyId else {
            throw WireError(.badKey, "rotation statement: old_key_id \(oldKeyId) is not the id of the key checked")
        }
        guard let signature = Data(base64Encoded: self.signature),
            oldKey.isValidSignature(signature, for: Data(signedText.utf8))
        else {
            throw WireError(.badSignature, "rotation statement: signature is not key \(oldKeyId)'s signature")
        }
        return key
    }
}

/// A rotation made but not yet confirmed by the collector: the agent's next identity and the
/// statement that introduces it. `vigilctl keygen --rotate` writes it beside the identity file
/// (`agent.key.next`, mode 0600); the agent presents the statement, and once the collector took
/// it, installs the new identity over `agent.key` (an atomic rename) and removes this file.
public struct PendingKeyRotation: Sendable {
    public var identity: AgentIdentity
    public var statement: KeyRotation

    public init(identity: AgentIdentity, statement: KeyRotation) {
        self.identity = identity
        self.statement = statement
    }

    /// Where the pending rotation of the identity file `keyPath` lives.
    public static func path(forKeyAt keyPath: String) -> String { keyPath + ".next" }

    private struct File: Codable {
        var agent_id: String
        var private_key: String
        var statement: KeyRotation
    }

    /// A new key for `current` and its statement.
    public static func make(
        rotating current: AgentIdentity,
        at time: Timestamp = .now()
    ) throws(WireError)
        -> PendingKeyRotation
    {
        let next = AgentIdentity(agentId: current.agentId, privateKey: Curve25519.Signing.PrivateKey())
        return PendingKeyRotation(identity: next, statement: try KeyRotation.make(from: current, to: next, at: time))
    }

    /// Reads a pending rotation; nil when there is none. Refuses a file others can read, or one
    /// whose key and statement disagree.
    public static func load(from path: String) throws(WireError) -> PendingKeyRotation? {
        var st = stat()
        guard stat(path, &st) == 0 else {
            if errno == ENOENT { return nil }
            throw WireError(.badKey, "\(path): cannot read pending key rotation (\(String(cString: strerror(errno))))")
        }
        guard st.st_mode & 0o077 == 0 else {
            throw WireError(
                .badKey,
                "\(path): pending key rotation is readable by others (mode \(String(st.st_mode & 0o777, radix: 8))); chmod 600 it"
            )
        }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw WireError(.badKey, "\(path): not a Vigil pending key rotation: \(error)")
        }
        guard let seed = Data(base64Encoded: file.private_key), seed.count == 32,
            let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed)
        else {
            throw WireError(.badKey, "\(path): private_key must be base64 of a 32-byte Ed25519 seed")
        }
        let identity = AgentIdentity(agentId: file.agent_id, privateKey: key)
        guard file.statement.agentId == identity.agentId, file.statement.newKeyId == identity.keyId else {
            throw WireError(.badKey, "\(path): the statement does not introduce this file's key")
        }
        _ = try file.statement.newKey()
        return PendingKeyRotation(identity: identity, statement: file.statement)
    }

    /// Writes the pending rotation (mode 0600, atomically); refuses to replace one.
    public func save(to path: String) throws(WireError) {
        let file = File(
            agent_id: identity.agentId,
            private_key: identity.privateKey.rawRepresentation.base64EncodedString(),
            statement: statement
        )
        let data: Data
        do {
            data = try JSONEncoder().encode(file)
        } catch {
            throw WireError(.badKey, "cannot encode pending key rotation: \(error)")
        }
        try AgentIdentity.writeFile(data, to: path, replacing: false)
    }
}
