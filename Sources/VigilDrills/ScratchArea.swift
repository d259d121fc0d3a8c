import Foundation

/// The only places drills write: `/tmp/vigil-drill.TOKEN` and `/dev/shm/vigil-drill.TOKEN`,
/// both created fresh (mode 0700, refused if they exist) and removed with everything in them.
/// Network namespaces and interfaces drills create carry the same token in their names.
public struct ScratchArea: Sendable {
    /// Random, 10 lower-case hex digits: in every path and name of this run.
    public let token: String
    /// `/tmp/vigil-drill.TOKEN`.
    public let root: String
    /// `/dev/shm/vigil-drill.TOKEN`.
    public let sharedMemoryRoot: String

    public static let prefix = "vigil-drill."

    /// Creates both directories. `/tmp` is fixed on purpose: the default collection settings
    /// watch it, and the temp-directory rules name it.
    public static func create() throws -> ScratchArea {
        let token = (0..<5).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        let area = ScratchArea(
            token: token,
            root: "/tmp/" + prefix + token,
            sharedMemoryRoot: "/dev/shm/" + prefix + token
        )
        for dir in [area.root, area.sharedMemoryRoot] {
            guard mkdir(dir, 0o700) == 0 else {
                let reason = String(cString: strerror(errno))
                area.remove()
                throw DrillError("cannot create the scratch directory \(dir): \(reason)")
            }
        }
        return area
    }

    /// Makes the directories drills write into before any sensor looks.
    public func prepare(_ drills: [Drill]) throws {
        for drill in drills {
            var dirs = [root + "/" + drill.id, sharedMemoryRoot + "/" + drill.id]
            for dir in drill.directories {
                dirs.append(dir.hasPrefix("/") ? root + dir : root + "/" + drill.id + "/" + dir)
            }
            for dir in dirs {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            }
        }
    }

    /// Throws unless `path` is inside the scratch area (a guard against a drill's mistake).
    public func checkInside(_ path: String) throws {
        let normalized = (path as NSString).standardizingPath
        guard normalized.hasPrefix(root + "/") || normalized.hasPrefix(sharedMemoryRoot + "/") else {
            throw DrillError("refusing to touch \(path): outside the scratch area \(root)")
        }
    }

    /// Removes both directories and everything in them. Idempotent.
    public func remove() {
        for dir in [root, sharedMemoryRoot] {
            try? FileManager.default.removeItem(atPath: dir)
        }
    }
}
