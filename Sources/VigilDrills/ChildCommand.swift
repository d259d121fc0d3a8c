import Foundation
import Synchronization

/// Runs external programs for the drills: no input, output kept only for error messages,
/// killed on timeout and on task cancellation.
enum ChildCommand {
    static func run(
        _ executable: String,
        _ arguments: [String],
        directory: String? = nil,
        timeout: Duration = .seconds(10),
        hold: Duration? = nil
    ) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.standardInput = FileHandle.nullDevice
        // With `hold`, standard output is a pipe filled to capacity: the program runs until its
        // first write and then waits there, alive with its command line, until the pipe is
        // drained `hold` later.
        var held: (read: Int32, write: Int32)?
        if hold != nil {
            held = try fullPipe()
            process.standardOutput = FileHandle(fileDescriptor: held!.write, closeOnDealloc: false)
        } else {
            process.standardOutput = FileHandle.nullDevice
        }
        let errors = Pipe()
        process.standardError = errors
        let exited = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let done = Atomic<Bool>(false)
        process.terminationHandler = { _ in
            done.store(true, ordering: .sequentiallyConsistent)
            exited.withLock { $0.take() }?.resume()
        }
        do {
            try process.run()
        } catch {
            if let held {
                close(held.write)
                close(held.read)
            }
            throw DrillError("cannot start \(executable): \(error)")
        }
        if let held { close(held.write) }
        let pid = process.processIdentifier
        if let hold, let held {
            try? await Task.sleep(for: hold)
            let fd = held.read
            let drained = Thread {
                var buffer = [UInt8](repeating: 0, count: 65536)
                while read(fd, &buffer, buffer.count) > 0 {}
                close(fd)  // end of file: the program and its children are gone
            }
            drained.start()
        }
        let timer = Task {
            try await Task.sleep(for: timeout)
            kill(pid, SIGKILL)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                exited.withLock { $0 = continuation }
                if done.load(ordering: .sequentiallyConsistent) { exited.withLock { $0.take() }?.resume() }
            }
        } onCancel: {
            kill(pid, SIGKILL)
        }
        timer.cancel()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile().prefix(2000), as: UTF8.self)
        try Task.checkCancellation()
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            let how =
                process.terminationReason == .exit
                ? "exit status \(process.terminationStatus)" : "signal \(process.terminationStatus)"
            let line = ([executable] + arguments).joined(separator: " ")
            let detail = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            throw DrillError("\(line): \(how)\(detail.isEmpty ? "" : ": " + detail)")
        }
    }

    /// A pipe whose buffer is full (a write to it blocks until the other end reads).
    static func fullPipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw DrillError("pipe: \(String(cString: strerror(errno)))") }
        let flags = fcntl(fds[1], F_GETFL)
        _ = fcntl(fds[1], F_SETFL, flags | O_NONBLOCK)
        let chunk = [UInt8](repeating: 0x2e, count: 4096)
        while write(fds[1], chunk, chunk.count) > 0 {}
        var one: UInt8 = 0x2e
        while write(fds[1], &one, 1) > 0 {}
        _ = fcntl(fds[1], F_SETFL, flags)
        return (fds[0], fds[1])
    }

    /// Runs a clean-up command synchronously, ignoring failures (undo steps are best effort
    /// and idempotent: the thing may already be gone).
    static func runQuietly(_ executable: String, _ arguments: [String]) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return }
        process.waitUntilExit()
    }
}
