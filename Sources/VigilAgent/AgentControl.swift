import Foundation
import Logging
import Synchronization
import SystemPackage
import VigilCore
import VigilLinux

/// The agent's local control socket, `STATE_DIR/control.sock` (mode 0600 in the 0700 state
/// directory: root, or the agent's own user, only). One request per connection, one JSON
/// line each way:
///
/// ```
/// → {"selftest":{"drills":24,"detected":24,"missed":0,"skipped":0,"latency_ms_max":812,"missed_drills":[]}}
/// ← {"ok":true}
/// ```
///
/// A selftest report becomes an agent-health event of kind `selftest` in the agent's signed
/// stream, so the collector's inventory shows when each agent last passed its drills.
/// Anything else is answered `{"ok":false,"error":"..."}` and changes nothing.
public enum AgentControl {
    public static let socketName = "control.sock"

    /// What `vigilctl selftest` ran and found.
    public struct SelftestReport: Codable, Sendable, Hashable {
        public var drills: Int
        public var detected: Int
        public var missed: Int
        public var skipped: Int
        public var latencyMillisecondsMax: Int
        /// The ids of the drills that were not detected.
        public var missedDrills: [String]

        public init(
            drills: Int,
            detected: Int,
            missed: Int,
            skipped: Int,
            latencyMillisecondsMax: Int,
            missedDrills: [String]
        ) {
            self.drills = drills
            self.detected = detected
            self.missed = missed
            self.skipped = skipped
            self.latencyMillisecondsMax = latencyMillisecondsMax
            self.missedDrills = missedDrills
        }

        /// Passed: something was detected and nothing that ran was missed.
        public var passed: Bool { missed == 0 && detected > 0 }

        enum CodingKeys: String, CodingKey {
            case drills, detected, missed, skipped
            case latencyMillisecondsMax = "latency_ms_max"
            case missedDrills = "missed_drills"
        }

        /// Why the report cannot be taken, if it cannot.
        var problem: String? {
            let counts = [drills, detected, missed, skipped, latencyMillisecondsMax]
            if counts.contains(where: { $0 < 0 || $0 > 1_000_000 }) { return "counts must be between 0 and 1000000" }
            if detected + missed + skipped != drills { return "detected + missed + skipped must equal drills" }
            if missedDrills.count > 256
                || missedDrills.contains(where: {
                    $0.isEmpty || $0.utf8.count > 64 || !$0.allSatisfy(\.isDrillIdCharacter)
                })
            {
                return "missed_drills must be at most 256 drill ids (letters, digits, '.', '-', '_')"
            }
            return nil
        }

        /// The agent-health event the report becomes.
        public var healthEvent: Event {
            let message =
                passed
                ? "selftest passed: \(detected) of \(drills) drills detected"
                    + (skipped > 0 ? ", \(skipped) skipped" : "")
                : "selftest FAILED: \(missed) of \(drills) drills missed"
                    + (missedDrills.isEmpty ? "" : " (\(missedDrills.joined(separator: ", ")))")
            return Event(
                payload: .health(
                    AgentHealth(
                        kind: "selftest",
                        message: message,
                        counters: [
                            "drills": UInt64(drills), "detected": UInt64(detected), "missed": UInt64(missed),
                            "skipped": UInt64(skipped), "latency_ms_max": UInt64(latencyMillisecondsMax),
                        ]
                    )
                )
            )
        }
    }

    struct Request: Codable {
        var selftest: SelftestReport?
    }

    struct Reply: Codable {
        var ok: Bool
        var error: String?
    }

    /// A request the agent refused, or a socket that could not be reached.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Sends a selftest report to the agent listening at `socketPath`; returns once the agent
    /// has queued its health event.
    public static func send(
        _ report: SelftestReport,
        to socketPath: String,
        timeout: Duration = .seconds(5)
    ) throws(Failure) {
        let reply: Reply
        do {
            let connection = try UnixConnection.connect(path: socketPath, timeout: timeout)
            var line = try JSONEncoder().encode(Request(selftest: report))
            line.append(UInt8(ascii: "\n"))
            try connection.write(Array(line))
            reply = try JSONDecoder().decode(Reply.self, from: Data(try connection.readLine()))
        } catch let error as Errno {
            throw Failure(description: "agent control socket \(socketPath): \(error)")
        } catch {
            throw Failure(description: "agent control socket \(socketPath): unreadable reply (\(error))")
        }
        guard reply.ok else {
            throw Failure(description: "the agent refused the report: \(reply.error ?? "no reason")")
        }
    }
}

extension Character {
    fileprivate var isDrillIdCharacter: Bool {
        isASCII && (isLetter || isNumber || self == "." || self == "-" || self == "_")
    }
}

/// Serves the control socket on a thread of its own (`vigil-control`): accepts, reads one
/// request line (2 s timeout, 64 KiB at most), hands a valid report to `deliver`, answers,
/// closes. Peers other than root and the agent's own user are refused.
final class ControlServer: Sendable {
    private let listener: UnixListener
    private let wake: EventFD
    private let stopRequested = Atomic<Bool>(false)
    private let thread = Mutex<PosixThread?>(nil)
    private let logger: Logger

    /// Binds `STATE_DIR/control.sock`; vigild calls this before the sandbox closes.
    init(stateDirectory: String, logger: Logger) throws(Errno) {
        listener = try UnixListener(path: stateDirectory + "/" + AgentControl.socketName)
        wake = try EventFD()
        self.logger = logger
    }

    func start(deliver: @escaping @Sendable (Event) -> Void) throws(Errno) {
        let spawned = try PosixThread.spawn(name: "vigil-control") { [self] in serve(deliver) }
        thread.withLock { $0 = spawned }
    }

    /// Stops the thread and removes the socket file.
    func stop() {
        stopRequested.store(true, ordering: .releasing)
        try? wake.signal()
        thread.withLock { $0.take() }?.join()
        listener.remove()
    }

    private func serve(_ deliver: @Sendable (Event) -> Void) {
        let me = geteuid()
        while !stopRequested.load(ordering: .acquiring) {
            let ready = try? Poll.waitReadable(listener.fileDescriptor, wake.fileDescriptor, timeoutMilliseconds: 1000)
            if stopRequested.load(ordering: .acquiring) { break }
            guard ready?.first == true, let connection = try? listener.accept() else { continue }
            let reply: AgentControl.Reply
            if let peer = connection.peer, peer.uid == 0 || peer.uid == me {
                reply = handle(connection, deliver)
            } else {
                reply = AgentControl.Reply(ok: false, error: "only root may use the agent's control socket")
            }
            if var bytes = try? JSONEncoder().encode(reply) {
                bytes.append(UInt8(ascii: "\n"))
                try? connection.write(Array(bytes))
            }
        }
    }

    private func handle(_ connection: UnixConnection, _ deliver: @Sendable (Event) -> Void) -> AgentControl.Reply {
        let line: [UInt8]
        do {
            line = try connection.readLine()
        } catch {
            return AgentControl.Reply(ok: false, error: "cannot read the request: \(error)")
        }
        guard let request = try? JSONDecoder().decode(AgentControl.Request.self, from: Data(line)),
            let report = request.selftest
        else {
            return AgentControl.Reply(ok: false, error: "expected one JSON line: {\"selftest\":{...}}")
        }
        if let problem = report.problem {
            return AgentControl.Reply(ok: false, error: "selftest: \(problem)")
        }
        logger.notice(
            "selftest reported",
            metadata: ["passed": "\(report.passed)", "detected": "\(report.detected)", "drills": "\(report.drills)"]
        )
        deliver(report.healthEvent)
        return AgentControl.Reply(ok: true, error: nil)
    }
}
