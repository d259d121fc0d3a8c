import Crypto
import Foundation
import VigilCore

/// An agent's identity: its id and its Ed25519 signing key.
///
/// On disk (`vigilctl keygen`, or the agent's first run) it is a small JSON document, mode 0600:
/// `{"agent_id": "...", "private_key": "<base64 of the 32-byte Ed25519 seed>"}`.
public struct AgentIdentity: Sendable {
    public let agentId: String
    public let privateKey: Curve25519.Signing.PrivateKey

    public init(agentId: String, privateKey: Curve25519.Signing.PrivateKey) {
        self.agentId = agentId
        self.privateKey = privateKey
    }

    /// A new random identity.
    public static func generate() -> AgentIdentity {
        AgentIdentity(agentId: UUID().uuidString.lowercased(), privateKey: Curve25519.Signing.PrivateKey())
    }

    public var publicKey: Curve25519.Signing.PublicKey { privateKey.publicKey }

    /// The key id carried in batch headers: the first 16 hex digits of SHA-256 of the raw public key.
    public var keyId: String { Self.keyId(for: publicKey) }

    public static func keyId(for publicKey: Curve25519.Signing.PublicKey) -> String {
        String(Hex.encode(SHA256.hash(data: publicKey.rawRepresentation)).prefix(16))
    }

    /// The public key as base64 of its 32 raw bytes, as enrollment sends it.
    public var publicKeyBase64: String { publicKey.rawRepresentation.base64EncodedString() }

    public static func publicKey(base64: String) throws(WireError) -> Curve25519.Signing.PublicKey {
        guard let raw = Data(base64Encoded: base64), raw.count == 32 else {
            throw WireError(.badKey, "public key must be base64 of 32 bytes")
        }
        do {
            return try Curve25519.Signing.PublicKey(rawRepresentation: raw)
        } catch {
            throw WireError(.badKey, "invalid Ed25519 public key: \(error)")
        }
    }

    private struct File: Codable {
        var agent_id: String
        var private_key: String
    }

    /// Reads an identity file, refusing one that others can read.
    public static func load(from path: String) throws(WireError) -> AgentIdentity {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw WireError(.badKey, "\(path): cannot read key file (\(String(cString: strerror(errno))))")
        }
        guard st.st_mode & 0o077 == 0 else {
            throw WireError(
                .badKey,
                "\(path): key file is readable by others (mode \(String(st.st_mode & 0o777, radix: 8))); chmod 600 it"
            )
        }
        let data: Data
        let file: File
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
            file = try JSONDecoder().decode(File.self, from: data)
        } catch {
            throw WireError(.badKey, "\(path): not a Vigil key file: \(error)")
        }
        guard let seed = Data(base64Encoded: file.private_key), seed.count == 32 else {
            throw WireError(.badKey, "\(path): private_key must be base64 of a 32-byte Ed25519 seed")
        }
        guard !file.agent_id.isEmpty else { throw WireError(.badKey, "\(path): agent_id is empty") }
        do {
            return AgentIdentity(
                agentId: file.agent_id,
                privateKey: try Curve25519.Signing.PrivateKey(rawRepresentation: seed)
            )
        } catch {
            throw WireError(.badKey, "\(path): invalid Ed25519 key: \(error)")
        }
    }

    /// Writes the identity with mode 0600, atomically; refuses to overwrite an existing file.
    public func save(to path: String) throws(WireError) {
        try Self.writeFile(try encoded(), to: path, replacing: false)
    }

    /// Installs the identity over the file at `path` in one `rename(2)`: a crash leaves either
    /// the old identity or the new one there, never a torn file. Used when a key rotation is
    /// confirmed.
    public func replace(at path: String) throws(WireError) {
        try Self.writeFile(try encoded(), to: path, replacing: true)
    }

    private func encoded() throws(WireError) -> Data {
        let file = File(agent_id: agentId, private_key: privateKey.rawRepresentation.base64EncodedString())
        do {
            return try JSONEncoder().encode(file)
        } catch {
            throw WireError(.badKey, "cannot encode key file: \(error)")
        }
    }

    /// Writes `data` to a temporary file (mode 0600), syncs it, then installs it at `path`: with
    /// `link(2)` (which fails if `path` exists) or, `replacing`, with `rename(2)`; then syncs the
    /// directory so the new name survives a crash.
    static func writeFile(_ data: Data, to path: String, replacing: Bool) throws(WireError) {
        let tmp = path + ".tmp.\(getpid())"
        unlink(tmp)  // left by a crash of an earlier process with this pid
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw WireError(.badKey, "\(tmp): cannot create key file (\(String(cString: strerror(errno))))")
        }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == data.count, synced == 0 else {
            unlink(tmp)
            throw WireError(.badKey, "\(tmp): cannot write key file")
        }
        if replacing {
            guard rename(tmp, path) == 0 else {
                let err = errno
                unlink(tmp)
                throw WireError(.badKey, "\(path): cannot replace key file (\(String(cString: strerror(err))))")
            }
        } else {
            // link(2) fails if the target exists: never replace an identity by accident.
            guard link(tmp, path) == 0 else {
                let err = errno
                unlink(tmp)
                throw WireError(.badKey, "\(path): cannot install key file (\(String(cString: strerror(err))))")
            }
            unlink(tmp)
        }
        let directory = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            _ = fsync(directory)
            close(directory)
        }
    }
}
