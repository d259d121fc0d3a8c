import Foundation
import Synchronization

/// Runs the package's built executables from tests, as real processes.
public enum BuiltProducts {
    /// The directory holding the built executables: the test bundle's own directory
    /// (`swift test` builds products and tests into the same folder).
    public static var directory: String {
        let exe =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = (exe as NSString).deletingLastPathComponent
        // The test binary may sit inside NAME.xctest/ on some layouts.
        while !dir.isEmpty, dir != "/", !FileManager.default.fileExists(atPath: dir + "/vigild") {
            dir = (dir as NSString).deletingLastPathComponent
        }
        return dir
    }

    public static func path(_ name: String) -> String { directory + "/" + name }
}

/// A child process whose output goes to files (so a chatty child never blocks on a full pipe).
public final class ChildProcess: @unchecked Sendable {
    public let process = Process()
    public let stdoutPath: String
    public let stderrPath: String

    public init(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        directory: String? = nil
    ) throws {
        let base = NSTemporaryDirectory() + "vigil-child-\(UUID().uuidString)"
        stdoutPath = base + ".out"
        stderrPath = base + ".err"
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: stdoutPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        defer {
            // The child has its own copies now. Ours would stay open as long as `process` lives:
            // a run that starts hundreds of children then holds over a thousand descriptors, and
            // Foundation's Process learns of child exits through CFSocket, whose manager thread
            // waits in select(2), which cannot watch descriptors past FD_SETSIZE (1024): the whole
            // test run hung there, every task waiting on an exit never reported.
            try? out.close()
            try? err.close()
        }
        try process.run()
    }

    public var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    public var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
    public var isRunning: Bool { process.isRunning }

    /// Sends `signal` without waiting (SIGSTOP and SIGCONT, say).
    public func send(_ signal: Int32) {
        if process.isRunning { kill(process.processIdentifier, signal) }
    }

    /// Sends `signal` and waits up to `timeout` for exit; SIGKILL after that. Returns the exit status.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(15)) async -> Int32 {
        if process.isRunning { kill(process.processIdentifier, signal) }
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        return process.terminationStatus
    }

    /// Waits for the process to exit by itself, up to `timeout` (then kills it).
    public func wait(timeout: Duration = .seconds(60)) async -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        return await stop(signal: SIGKILL, timeout: .seconds(5))
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        unlink(stdoutPath)
        unlink(stderrPath)
    }
}

/// Runs a command to completion and returns its status and output.
public func runCommand(
    _ executable: String,
    _ arguments: [String],
    timeout: Duration = .seconds(60)
) async throws -> (status: Int32, stdout: String, stderr: String) {
    let child = try ChildProcess(executable, arguments)
    let status = await child.wait(timeout: timeout)
    return (status, child.stdout, child.stderr)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// Taken below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`, 32768-60999 by
/// default), at random: a port the kernel hands out for binding to port 0 is also one it hands
/// out as the local port of any outgoing connection, so between this call and the server's
/// bind another test's client could take it (a collector in CI once failed with "Address
/// already in use" that way). Never the same port twice in one test process: tests run
/// concurrently, and two of them drawing the same port at random, both free at the time, made
/// the second one's collector fail the same way in CI.
public func freeLoopbackPort() -> Int {
    let ephemeralLow =
        (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
        .flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } } ?? 32768
    let candidates = 10_000..<max(ephemeralLow, 10_001)
    return handedOutPorts.withLock { handedOut in
        for _ in 0..<256 {
            let port = Int.random(in: candidates)
            if !handedOut.contains(port), bindLoopback(port: port) == port {
                handedOut.insert(port)
                return port
            }
        }
        return bindLoopback(port: 0)
    }
}

/// The ports `freeLoopbackPort` has returned in this process.
private let handedOutPorts = Mutex<Set<Int>>([])

/// Binds a TCP socket to 127.0.0.1:`port` (0: any), closes it and returns the port it got;
/// 0 when the bind failed.
private func bindLoopback(port: Int) -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    let bound = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { return 0 }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// Polls `condition` until it holds or `timeout` passes (a deadline for slow machines, not a
/// speed assertion). Returns whether it held.
public func eventually(
    timeout: Duration = .seconds(30),
    every interval: Duration = .milliseconds(200),
    _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}

/// True when the tests run in CI (`CI=true`), where a missing privilege or kernel feature must
/// fail a test instead of skipping it.
public var runningInCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

/// Every row of one query on an SQLite file, through the sqlite3 CLI (waiting up to 5 s on a
/// lock held by the process under test), each row's columns split on `|`.
public func sqliteRows(_ database: String, _ sql: String) async throws -> [[String]] {
    let result = try await runCommand("/usr/bin/sqlite3", ["-cmd", ".timeout 5000", database, sql])
    return result.stdout.split(separator: "\n").map {
        $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
    }
}

/// What `curl(_:)` got back.
public struct HTTPAnswer: Sendable {
    public var status: Int
    /// The raw response header block (status line and `Name: value` lines, CRLF-separated).
    public var headers: String
    public var contentType: String
    public var body: String

    /// The values of every response header called `name` (case-insensitive).
    public func header(_ name: String) -> [String] {
        headers.split(separator: "\r\n").compactMap { line in
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == name.lowercased() else { return nil }
            return parts[1].trimmingCharacters(in: .whitespaces)
        }
    }
}

/// One HTTP request with the curl CLI: a GET, or a POST of `body` as `contentType`; `token` as a
/// bearer token, `method` overriding the verb, `extra` passed to curl before the URL.
public func curl(
    _ url: String,
    post body: [UInt8]? = nil,
    contentType: String = "application/x-vigil-batch",
    token: String? = nil,
    method: String? = nil,
    extra: [String] = []
) async throws -> HTTPAnswer {
    let base = NSTemporaryDirectory() + "vigil-curl-\(UUID().uuidString)"
    let headerFile = base + ".headers"
    defer { unlink(headerFile) }
    var args = ["-sS", "-D", headerFile, "-o", "-", "-w", "\n%{content_type}\n%{http_code}"]
    if let token { args += ["-H", "Authorization: Bearer \(token)"] }
    if let method { args += ["-X", method] }
    if let body {
        let bodyFile = base + ".body"
        try Data(body).write(to: URL(fileURLWithPath: bodyFile))
        args += ["-H", "Content-Type: \(contentType)", "--data-binary", "@\(bodyFile)"]
    }
    defer { unlink(base + ".body") }
    let result = try await runCommand("/usr/bin/curl", args + extra + [url])
    var lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
    let status = Int(lines.popLast() ?? "") ?? -1
    let type = String(lines.popLast() ?? "")
    return HTTPAnswer(
        status: status,
        headers: (try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? "",
        contentType: type,
        body: lines.joined(separator: "\n")
    )
}
