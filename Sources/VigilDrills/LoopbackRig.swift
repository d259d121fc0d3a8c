import AsyncHTTPClient
import Foundation
import Logging
import ServiceLifecycle
import VigilAgent
import VigilCollector
import VigilCore

/// A real agent and a real collector in this process, on loopback, as `vigild --demo` runs
/// them: enrollment with a one-time token, signed and chained batches, an SQLite store; the
/// agent runs the drill profile. Everything lives in `/tmp/vigil-selftest.XXXXXX`, removed at
/// the end.
enum LoopbackRig {
    static func with<T: Sendable>(
        policies: String,
        scratch: ScratchArea,
        logger: Logger,
        _ body: @escaping @Sendable (_ base: String, _ agentSocket: String) async throws -> T
    ) async throws -> T {
        var template = Array("/tmp/vigil-selftest.XXXXXX".utf8CString)
        guard
            let work = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }).map({ String(cString: $0) }
            )
        else {
            throw DrillError("cannot create a working directory under /tmp: \(String(cString: strerror(errno)))")
        }
        defer { try? FileManager.default.removeItem(atPath: work) }
        try DrillProfile.write(policies: policies, scratch: scratch, into: work + "/policies")
        let storePath = work + "/collector.sqlite"
        let store = try SQLiteEventStore(path: storePath)
        let token = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        let collector = Collector(
            store: store,
            configuration: CollectorConfiguration(
                host: "127.0.0.1",
                port: 0,
                store: .sqlite(path: storePath),
                enrollToken: token
            ),
            logger: logger
        )
        let (agentPorts, agentContinuation) = AsyncStream<Int>.makeStream()
        let (bodyPorts, bodyContinuation) = AsyncStream<Int>.makeStream()
        let app = try CollectorServer.makeApplication(collector: collector, logger: logger) { port in
            for continuation in [agentContinuation, bodyContinuation] {
                continuation.yield(port)
                continuation.finish()
            }
        }
        let agentClient = CollectorClient.makeHTTPClient()
        let agent = RigAgent(
            ports: agentPorts,
            work: work,
            token: token,
            logger: logger,
            httpClient: agentClient
        )
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: app), .init(service: agent)],
                gracefulShutdownSignals: [],
                logger: logger
            )
        )
        let outcome: Result<T, any Error> = await withTaskGroup(of: RigTaskEnd<T>.self) { tasks in
            tasks.addTask {
                do {
                    try await group.run()
                    return .services(nil)
                } catch {
                    return .services(error)
                }
            }
            tasks.addTask {
                var ports = bodyPorts.makeAsyncIterator()
                guard let port = await ports.next() else {
                    return .body(.failure(DrillError("the selftest's collector did not start listening")))
                }
                do {
                    let socket = work + "/state/" + AgentControl.socketName
                    return .body(.success(try await body("http://127.0.0.1:\(port)", socket)))
                } catch {
                    return .body(.failure(error))
                }
            }
            // The body ends first: the agent drains and both stop gracefully. The services end
            // first: something broke, and the body is cancelled.
            var result: Result<T, any Error>
            switch await tasks.next() {
            case .body(let value)?:
                result = value
                await group.triggerGracefulShutdown()
            case .services(let error)?:
                result = .failure(
                    DrillError("the selftest's agent or collector stopped: \(error.map { "\($0)" } ?? "early")")
                )
                tasks.cancelAll()
            case nil:
                result = .failure(CancellationError())
            }
            while let next = await tasks.next() {
                if case .success = result, case .services(let error?) = next {
                    result = .failure(DrillError("the selftest's agent or collector failed on shutdown: \(error)"))
                }
            }
            return result
        }
        try? await agentClient.shutdown()
        try? await store.close()
        return try outcome.get()
    }
}

/// Which of the rig's two tasks ended, and how.
private enum RigTaskEnd<T: Sendable>: Sendable {
    case services((any Error)?)
    case body(Result<T, any Error>)
}

/// Waits for the collector's port, then runs a real `Agent` against it.
struct RigAgent: Service {
    let ports: AsyncStream<Int>
    let work: String
    let token: String
    let logger: Logger
    let httpClient: HTTPClient

    func run() async throws {
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { return }
        let configuration = AgentConfiguration(
            collectorURL: "http://127.0.0.1:\(port)",
            enrollToken: token,
            stateDirectory: work + "/state",
            policiesDirectory: work + "/policies",
            shipping: .init(batchMaxEvents: 500, batchMaxBytes: 1 << 20, batchMaxAgeMilliseconds: 100)
        )
        let agent = Agent(configuration: configuration, logger: logger, httpClient: httpClient)
        try await agent.run()
    }
}
