import Glibc

/// uid → user name from the passwd file, read directly (no NSS: no network lookups and no
/// extra syscalls under the agent's sandbox). Names of directory-service users are unknown
/// and events then carry the uid alone. The file is read again on a miss, at most every
/// `refreshInterval`.
final class UserNames {
    private let path: String
    private var names: [UInt32: String] = [:]
    private var lastLoad: ContinuousClock.Instant?
    private let refreshInterval: Duration

    init(path: String = "/etc/passwd", refreshInterval: Duration = .seconds(30)) {
        self.path = path
        self.refreshInterval = refreshInterval
    }

    func name(of uid: UInt32) -> String? {
        if let name = names[uid] { return name }
        let now = ContinuousClock.now
        if let lastLoad, now - lastLoad < refreshInterval { return nil }
        lastLoad = now
        names = Self.parse(Self.readFile(path) ?? [])
        return names[uid]
    }

    static func parse(_ bytes: [UInt8]) -> [UInt32: String] {
        var names: [UInt32: String] = [:]
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            let fields = line.split(separator: UInt8(ascii: ":"), maxSplits: 3, omittingEmptySubsequences: false)
            guard fields.count >= 3, !fields[0].isEmpty, fields[0].first != UInt8(ascii: "#"),
                let uid = UInt32(decimal: fields[2])
            else { continue }
            if names[uid] == nil { names[uid] = String(decoding: fields[0], as: UTF8.self) }
        }
        return names
    }

    private static func readFile(_ path: String) -> [UInt8]? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while result.count < 16 << 20 {
            let n = fread(&chunk, 1, chunk.count, file)
            if n <= 0 { break }
            result += chunk[0..<n]
        }
        return result
    }
}
